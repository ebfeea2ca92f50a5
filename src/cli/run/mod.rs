//! `knactor run`: a node.

mod build;
mod channels;
mod flags;
mod listen;
mod routes;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::{App, HttpServer};
use anyhow::Context as _;
use clap::Args;
use knactor_actors::actor::{Drain, DrainReport, Role, SetSourcesActive};
use knactor_actors::resources::Strictness;
use knactor_gateway::admin::AdminAccess;
use knactor_gateway::console::ConsoleSettings;
use knactor_gateway::ingress::{configure, configure_admin, AdminApi, GatewayState};
use knactor_gateway::limits::Limits;
use knactor_gateway::server::{serve_ingress, serve_probes};
use tracing::{error, info, warn};

use crate::config::{parse_duration_flag, ConfigSource, ReadLimitArgs};
use build::{build, ClusterArgs, DeliveryArgs, Lease, Pieces};
use channels::{KafkaArgs, MemoryChannelArgs};
use listen::{ListenArgs, Listeners};

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

/// What the node does on SIGTERM (or Ctrl-C).
#[derive(Args)]
struct DrainArgs {
    /// On SIGTERM (or Ctrl-C), how long the node may take to finish what it accepted before it
    /// exits: it takes no new events, delivers what it owes (on the memory channel: every event
    /// it accepted; on Kafka: what it handed out, the rest stays for the next reader), commits
    /// and flushes its traces. Keep it below the pod's termination grace period.
    #[arg(long, env = "KNACTOR_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration_flag)]
    drain_timeout: Duration,
    /// On SIGTERM, how long the node still takes events, not ready any more, before it refuses
    /// new ones and drains: time for the Services in front of it to stop sending (in Kubernetes,
    /// a few seconds; on a laptop, none).
    #[arg(long, env = "KNACTOR_DRAIN_DELAY", default_value = "0s", value_parser = parse_duration_flag)]
    drain_delay: Duration,
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
        let Pieces {
            node,
            ingress,
            metrics,
            sources,
            source_board,
            lease,
            admission,
        } = pieces;
        let Listeners {
            ingress: listener,
            bound,
            admin: admin_listener,
            probes: probe_listener,
            advertise: console_ingress,
            ..
        } = listeners;
        let admin_token = checked.admin_token;
        let state = GatewayState {
            ingress,
            node,
            metrics,
            sources: source_board,
            max_body_bytes: args.max_body_bytes,
            role: args.role,
            admin_access: AdminAccess::for_listener(admin_token.as_ref(), bound),
            limits: Limits::new(args.ingress_limits.checked_limits()),
            console: ConsoleSettings {
                jaeger_ui_url: args.telemetry.jaeger_ui_url.clone(),
                node: args.kafka.node_id().unwrap_or_else(hostname),
                started_at: std::time::SystemTime::now(),
                ingress: Some(console_ingress),
            }
            .shared(),
        };
        // Signals are the node's to handle: a stop drains before the listeners close.
        let admin = match admin_listener {
            Some(admin_listener) => {
                let admin_bound = admin_listener.local_addr()?;
                let admin_state = GatewayState {
                    admin_access: AdminAccess::for_listener(admin_token.as_ref(), admin_bound),
                    ..state.clone()
                };
                let server = HttpServer::new(move || {
                    App::new().configure(configure_admin(admin_state.clone()))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(5)
                .listen(admin_listener)?
                .run();
                println!("knactor admin API on http://{admin_bound}");
                Some(server)
            }
            None => None,
        };
        let placement = if admin.is_some() {
            AdminApi::Elsewhere
        } else {
            AdminApi::Here
        };
        let drain_node = state.node.clone();
        let drain_ingress = state.ingress.clone();
        let probes = match probe_listener {
            Some(probe_listener) => {
                let probe_bound = probe_listener.local_addr()?;
                let probes = serve_probes(probe_listener, state.clone())?;
                println!("knactor probes on http://{probe_bound}");
                Some(probes)
            }
            None => None,
        };
        let limits = state.limits.clone();
        let server = serve_ingress(listener, args.http_workers, limits, move || {
            App::new().configure(configure(state.clone(), placement))
        })?;
        println!("knactor listening on http://{bound}");
        info!("node running; brokers at http://{bound}/<namespace>/<broker>");
        let mut handles = vec![server.handle()];
        let mut serving = vec![actix_rt::spawn(server)];
        for other in [admin, probes, admission].into_iter().flatten() {
            handles.push(other.handle());
            serving.push(actix_rt::spawn(other));
        }
        // A listener that fails ends the node; a signal drains it first.
        let stop = tokio::select! {
            (ended, _, _) = futures::future::select_all(serving.iter_mut()) => {
                ended.context("the HTTP server stopped")??;
                anyhow::bail!("the HTTP server stopped");
            }
            signal = stop_signal() => signal?,
        };
        info!(signal = stop, delay = ?args.drain.drain_delay, timeout = ?args.drain.drain_timeout, "stopping: not ready any more; after the delay no more events are taken and what was accepted is finished");
        drain_ingress.stop_being_ready();
        tokio::time::sleep(args.drain.drain_delay).await;
        let _ = sources.send(SetSourcesActive(false)).await;
        if let Some(Lease { give_up, holding }) = lease {
            // The sources stopped here: another replica may run them now.
            give_up.notify_one();
            let _ = tokio::time::timeout(Duration::from_secs(5), holding).await;
        }
        let reports = drain_node
            .send(Drain {
                timeout: args.drain.drain_timeout,
            })
            .await
            .unwrap_or_default();
        report_drain(&reports);
        for handle in handles {
            handle.stop(true).await;
        }
        Ok(ExitCode::SUCCESS)
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

/// Waits for SIGTERM (what an orchestrator sends) or SIGINT (Ctrl-C); says which.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use actix_rt::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

/// Says, per broker, what the drain finished and what it could not: on the memory channel the
/// events lost with the process, by number; on Kafka the offsets the next reader starts from.
fn report_drain(reports: &[DrainReport]) {
    for report in reports {
        let broker = &report.broker;
        if report.durable {
            let left: Vec<String> = report
                .left
                .iter()
                .map(|left| {
                    let committed = left.committed.map_or("?".into(), |o| o.to_string());
                    let end = left.end.map_or("?".into(), |o| o.to_string());
                    format!("{}@{committed}/{end}", left.partition)
                })
                .collect();
            if report.finished {
                info!(%broker, "drained: every delivery handed out is final; partitions left to the next reader at (partition@committed/end) {}", left.join(" "));
            } else {
                warn!(%broker, "drain timed out with deliveries still running: the next reader delivers them again from (partition@committed/end) {}", left.join(" "));
            }
        } else if report.finished {
            info!(%broker, "drained: every accepted event is final");
        } else {
            error!(%broker, lost = report.lost, "drain timed out: {} accepted event(s) not yet final for every trigger are lost (the memory channel does not outlive the node; raise --drain-timeout or use Kafka)", report.lost);
        }
    }
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

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "knactor".into())
}
