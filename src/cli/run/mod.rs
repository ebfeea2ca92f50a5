//! `knactor run`: a node. [`run`] reads as its life: check the flags (`flags`, which also answers
//! `--dry-run`), bind the listeners (`listen`), build and start the node (`build`, with the
//! brokers' `channels` and the `routes` its resources become), then serve until a signal and drain
//! (`serve`). Each group of flags is declared beside the step that uses it; `RunArgs` lists them
//! in their `--help` order.

mod build;
mod channels;
mod flags;
mod listen;
mod routes;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use knactor_actors::actor::Role;
use knactor_actors::resources::Strictness;

use crate::config::{parse_duration_flag, ConfigSource, ReadLimitArgs};
use build::{build, ClusterArgs, DeliveryArgs};
use channels::{KafkaArgs, MemoryChannelArgs};
use listen::{ListenArgs, Listeners};
use serve::{serve, DrainArgs};

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Resource YAML: a file, or a directory read recursively (*.yaml, *.yml). Re-read on change.
    /// Without it, the node takes its resources from a cluster (--kubernetes or --kubeconfig).
    #[arg(long, env = "KNACTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Take the resources from the cluster this pod runs in (its ServiceAccount). Implied inside a
    /// pod (KUBERNETES_SERVICE_HOST set) when neither --config nor a kubeconfig is given.
    #[arg(long, env = "KNACTOR_KUBERNETES")]
    kubernetes: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Delivery of brokers and triggers that give none, as a Knative DeliverySpec in JSON (default:
    /// Knative's: retry 10, exponential, PT0.2S).
    #[arg(long, env = "KNACTOR_DEFAULT_DELIVERY")]
    default_delivery: Option<String>,
    /// What this node does: all (takes events in and delivers them), ingress (takes events in and
    /// appends them to the brokers' Kafka topics) or dispatch (reads the topics and delivers;
    /// answers 421 to events). ingress and dispatch need Kafka brokers.
    #[arg(long, env = "KNACTOR_ROLE", default_value = "all", value_parser = parse_role)]
    role: Role,
    /// The channel of brokers without a class annotation: memory or kafka (sets
    /// --default-broker-class).
    #[arg(long, env = "KNACTOR_CHANNEL", value_parser = ["memory", "kafka"])]
    channel: Option<String>,
    /// A directory holding Knative's Kafka Secret keys as files (protocol, sasl.mechanism, user,
    /// password, ca.crt, user.crt, user.key): the node's Kafka credentials.
    #[arg(long, env = "KNACTOR_KAFKA_AUTH_DIR")]
    kafka_auth_dir: Option<PathBuf>,
    #[command(flatten)]
    listen: ListenArgs,
    /// Refuse exactly what Knative's webhook refuses, instead of loading its docs' shapes with a warning.
    #[arg(long, env = "KNACTOR_STRICT")]
    strict: bool,
    /// Requests larger than this get 413.
    #[arg(long, env = "KNACTOR_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Hop budget of a new event (knativebrokerttl).
    #[arg(long, env = "KNACTOR_MAX_TTL", default_value_t = 255)]
    max_ttl: i32,
    #[command(flatten)]
    delivery: DeliveryArgs,
    #[command(flatten)]
    memory: MemoryChannelArgs,
    #[command(flatten)]
    drain: DrainArgs,
    /// How often the configuration is checked for changes.
    #[arg(long, env = "KNACTOR_RELOAD_INTERVAL", default_value = "1s", value_parser = parse_duration_flag)]
    reload_interval: Duration,
    #[command(flatten)]
    admission: super::admission::AdmissionArgs,
    #[command(flatten)]
    config_limits: ReadLimitArgs,
    #[command(flatten)]
    ingress_limits: super::limits::IngressLimitArgs,
    /// Threads serving HTTP.
    #[arg(long, env = "KNACTOR_HTTP_WORKERS", default_value_t = super::default_threads())]
    http_workers: usize,
    /// Threads running broker actors.
    #[arg(long, env = "KNACTOR_DISPATCH_WORKERS", default_value_t = super::default_threads())]
    dispatch_workers: usize,
    // With --default-broker-class, which --help lists among the Kafka flags.
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Where sources keep their positions across restarts (a PingSource's last tick, an
    /// ApiServerSource's resourceVersions). Default: $XDG_STATE_HOME/knactor, else
    /// ~/.local/state/knactor.
    #[arg(long, env = "KNACTOR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// kubeconfig of the cluster ApiServerSources watch (with --config), or whose Knative resources
    /// the node runs (without --config). Falls back to KUBECONFIG.
    #[arg(long, env = "KNACTOR_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, or a RUST_LOG directive).
    #[arg(long, env = "KNACTOR_LOG", default_value = "info")]
    log: String,
    #[command(flatten)]
    telemetry: super::telemetry::TelemetryArgs,
    /// Check the flags and --config (as validate does), print what the node would run, and exit
    /// without starting it: non-zero when a resource would be refused.
    #[arg(long)]
    dry_run: bool,
    /// Allow POST /-/faults/... to crash actors (supervision tests only).
    #[arg(long, env = "KNACTOR_FAULT_INJECTION", hide = true)]
    fault_injection: bool,
}

pub(crate) fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let checked = flags::check(&mut args)?;
    if args.dry_run {
        return flags::dry_run(&args, &checked);
    }
    let _telemetry = args.telemetry.init(&super::limits::log_filter(&args.log))?;
    if let Some(dir) = &args.kafka_auth_dir {
        let auth = channels::kafka_auth(dir)?;
        args.kafka.kafka_config.extend(auth);
    }
    let source = args.config_source()?;
    let mut listeners = Listeners::bind(&args, checked.cluster_mode)?;
    let system = actix_rt::System::new();
    system.block_on(settled(async move {
        let admission = listeners.admission.take();
        let pieces = build(&args, &checked, &listeners.advertise, source, admission).await?;
        serve(&args, checked.admin_token, listeners, pieces).await
    }))
}

/// Runs the node's start and life; when it fails, first lets the actors started so far run once.
/// An actor that was never polled is started by actix while the runtime is being dropped, outside
/// any reactor, and its first timer panics ("there is no reactor running"): a failed start must
/// end with its one-line error only.
async fn settled<T>(
    node: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let outcome = node.await;
    if outcome.is_err() {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }
    outcome
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

impl RunArgs {
    /// The configuration --config names, to be read (none in cluster mode).
    fn config_source(&self) -> anyhow::Result<Option<ConfigSource>> {
        let strictness = if self.strict {
            Strictness::Strict
        } else {
            Strictness::Lenient
        };
        Ok(match &self.config {
            Some(config) => Some(
                ConfigSource::new(config, strictness)?.with_limits(self.config_limits.limits()),
            ),
            None => None,
        })
    }

    /// `--kubeconfig`, else `KUBECONFIG` (its first file).
    fn kubeconfig_path(&self) -> Option<PathBuf> {
        self.kubeconfig.clone().or_else(|| {
            let paths = std::env::var_os("KUBECONFIG")?;
            std::env::split_paths(&paths).find(|path| !path.as_os_str().is_empty())
        })
    }
}

/// This machine's name (HOSTNAME, else /etc/hostname): it names the node (in the console, in its
/// Lease identity) when --node-id does not, and is a host of a generated webhook certificate.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "knactor".into())
}
