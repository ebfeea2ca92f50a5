//! `knactor run`: a node.

mod channels;
mod flags;
mod listen;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{App, HttpServer};
use anyhow::Context as _;
use clap::Args;
use knactor_actors::actor::{
    ApiServerSourceRuntime, ApplyRoutes, ApplySources, Drain, DrainReport, LocalIngress, Node,
    NodeOptions, Role, SetSourcesActive, Shared, SourceManager,
};
use knactor_actors::resources::Strictness;
use knactor_actors::retry::RetryLimits;
use knactor_actors::routes::{Catalog, ChannelDefaults, Delivery, Routes};
use knactor_actors::source::{FileStateStore, StateStore};
use knactor_gateway::admin::AdminAccess;
use knactor_gateway::client::HttpTransport;
use knactor_gateway::console::ConsoleSettings;
use knactor_gateway::ingress::{configure, configure_admin, AdminApi, GatewayState};
use knactor_gateway::limits::Limits;
use knactor_gateway::server::{serve_ingress, serve_probes};
use tracing::{error, info, warn};
use url::Url;

use crate::config::{parse_duration_flag, ConfigSource, ReadLimitArgs};
use channels::{KafkaArgs, MemoryChannelArgs};
use flags::Checked;
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

/// In cluster mode: the Lease that elects the replica running the controller and the sources,
/// and the namespaces that get a default Broker.
#[derive(Args)]
struct ClusterArgs {
    /// Namespace of the controller's Lease and of the sources' saved positions (default:
    /// POD_NAMESPACE, else default).
    #[arg(long, env = "KNACTOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the Lease that elects the one replica running the controller and the sources.
    #[arg(long, env = "KNACTOR_LEASE_NAME", default_value = "knactor-controller")]
    lease_name: String,
    /// Namespaces matching this label selector get a Broker named default (in a cluster);
    /// empty: none.
    #[arg(
        long,
        env = "KNACTOR_DEFAULT_BROKER_SELECTOR",
        default_value = "knative-eventing-injection=enabled"
    )]
    default_broker_selector: String,
}

impl ClusterArgs {
    /// `--lease-namespace`, else `POD_NAMESPACE`, else default.
    fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".into())
    }
}

/// How triggers deliver: how much each holds and runs at once, and how long attempts and the
/// waits between them may take.
#[derive(Args)]
struct DeliveryArgs {
    /// Deliveries a trigger may have outstanding before it falls behind and catches up on its own.
    #[arg(long, env = "KNACTOR_TRIGGER_QUEUE", default_value_t = 1000)]
    trigger_queue: usize,
    /// Deliveries an unordered trigger runs at once.
    #[arg(long, env = "KNACTOR_TRIGGER_CONCURRENCY", default_value_t = 64)]
    trigger_concurrency: usize,
    /// Requests in flight to one subscriber endpoint, across all triggers.
    #[arg(long, env = "KNACTOR_ENDPOINT_CONCURRENCY", default_value_t = 256)]
    endpoint_concurrency: usize,
    /// Longest wait between two attempts of a delivery.
    #[arg(long, env = "KNACTOR_RETRY_BACKOFF_MAX", default_value = "5m", value_parser = parse_duration_flag)]
    retry_backoff_max: Duration,
    /// Longest Retry-After honoured when a delivery spec has no retryAfterMax.
    #[arg(long, env = "KNACTOR_RETRY_AFTER_MAX", default_value = "60s", value_parser = parse_duration_flag)]
    retry_after_max: Duration,
    /// Per-attempt timeout when a delivery spec has none.
    #[arg(long, env = "KNACTOR_DELIVERY_TIMEOUT", default_value = "30s", value_parser = parse_duration_flag)]
    delivery_timeout: Duration,
    /// How often dispatchers commit the offsets of finished deliveries: shorter means fewer
    /// redeliveries after a crash, longer means fewer commit requests.
    #[arg(long, env = "KNACTOR_COMMIT_INTERVAL", default_value = "20ms", value_parser = parse_duration_flag)]
    commit_interval: Duration,
}

impl DeliveryArgs {
    fn retry_limits(&self) -> RetryLimits {
        RetryLimits {
            max_backoff: self.retry_backoff_max,
            retry_after_max: self.retry_after_max,
            default_timeout: self.delivery_timeout,
        }
    }
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
    let Checked {
        cluster_mode,
        knative_default,
        admin_token,
    } = checked;
    let _telemetry = args.telemetry.init(&super::limits::log_filter(&args.log))?;
    if let Some(dir) = &args.kafka_auth_dir {
        let auth = channels::kafka_auth(dir)?;
        args.kafka.kafka_config.extend(auth);
    }
    let strictness = if args.strict {
        Strictness::Strict
    } else {
        Strictness::Lenient
    };
    let mut source = match &args.config {
        Some(config) => {
            Some(ConfigSource::new(config, strictness)?.with_limits(args.config_limits.limits()))
        }
        None => None,
    };
    let Listeners {
        ingress: listener,
        bound,
        admin: admin_listener,
        probes: probe_listener,
        admission: admission_listener,
        advertise,
    } = Listeners::bind(&args, cluster_mode)?;
    let system = actix_rt::System::new();
    system.block_on(settled(async move {
        let transport = Arc::new(HttpTransport::new().context("cannot build the HTTP client")?);
        let options = NodeOptions {
            role: args.role,
            max_ttl: args.max_ttl,
            retry_limits: args.delivery.retry_limits(),
            trigger_queue: args.delivery.trigger_queue,
            trigger_concurrency: args.delivery.trigger_concurrency,
            endpoint_concurrency: args.delivery.endpoint_concurrency,
            workers: args.dispatch_workers,
            commit_interval: args.delivery.commit_interval,
            ingress: Some(advertise.clone()),
            fault_injection: args.fault_injection,
            delete_topics: args.kafka.kafka_delete_topics,
            journal_events: args.telemetry.trace_journal_events,
            journal_bytes: args.telemetry.trace_journal_bytes,
        };
        let channels = channels::channels(&args);
        let shared = Shared::new(channels, transport.clone(), options);
        let kube_config = match args.kubeconfig_path() {
            Some(path) => Some(
                knactor_kube::client_config(Some(&path))
                    .await
                    .map_err(anyhow::Error::msg)?,
            ),
            None if args.kubernetes => Some(
                knactor_kube::client_config(None)
                    .await
                    .map_err(anyhow::Error::msg)?,
            ),
            None => None,
        };
        let lease_namespace = args.cluster.lease_namespace();
        // In cluster mode (no --config), the client the controller, the lease and the sources'
        // positions share.
        let cluster_client = match (&kube_config, cluster_mode) {
            (Some(config), true) => Some(
                knactor_kube::kube::Client::try_from(config.clone())
                    .context("cannot build the Kubernetes client")?,
            ),
            _ => None,
        };
        let admission = match (admission_listener, &cluster_client) {
            (Some(listener), Some(client)) => Some(args.admission.serve(
                listener,
                client.clone(),
                &args.kafka.default_broker_class,
                &hostname(),
            )?),
            _ => None,
        };
        let api_server: Option<Arc<dyn ApiServerSourceRuntime>> = kube_config.as_ref().map(|config| {
            info!(cluster = %config.cluster_url, "ApiServerSources watch this cluster");
            Arc::new(knactor_kube::apiserver::KubeSourceRuntime::new(config.clone())) as _
        });
        let state: Arc<dyn StateStore> = match &cluster_client {
            Some(client) => Arc::new(knactor_kube::state::ConfigMapStateStore::new(
                client.clone(),
                &lease_namespace,
            )),
            None => Arc::new(open_state_dir(&args)?),
        };
        let node = Node::new(shared.clone());
        let ingress = node.ingress();
        let node = node.start();
        // Sources whose sink is one of this node's broker addresses publish to the broker's actor.
        let sink_transport = Arc::new(LocalIngress::new(
            advertise.clone(),
            ingress.clone(),
            transport,
        ));
        let sources = SourceManager::new(sink_transport, state, api_server);
        let sources = if cluster_mode { sources.inactive() } else { sources };
        let source_board = sources.board();
        let sources = sources.start();

        let channels = channels::channel_defaults(&args);
        if let Some(source) = source.as_mut() {
            apply_config(source, &node, &sources, &advertise, &channels, &knative_default)?;
        }
        let console_ingress = advertise.clone();
        let reload_node = node.clone();
        let reload_every = args.reload_interval;
        // In cluster mode: what gives the Lease up when the node stops, and its task.
        let mut lease = None;
        let give_up = Arc::new(tokio::sync::Notify::new());
        if let (Some(client), Some(config)) = (cluster_client, &kube_config) {
            let leader = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let identity = args.kafka.node_id().unwrap_or_else(|| {
                format!("{}-{}", hostname(), std::process::id())
            });
            lease = Some((
                give_up.clone(),
                actix_rt::spawn(knactor_kube::lease::hold(
                    client.clone(),
                    lease_namespace.clone(),
                    args.cluster.lease_name.clone(),
                    identity,
                    leader.clone(),
                    give_up.clone(),
                )),
            ));
            let options = knactor_kube::cluster::ClusterOptions {
                advertise: advertise.clone(),
                api_server: config.cluster_url.to_string().trim_end_matches('/').to_string(),
                default_broker_selector: Some(args.cluster.default_broker_selector.clone())
                    .filter(|selector| !selector.trim().is_empty()),
                channels: channels.clone(),
                default_delivery: knative_default.clone(),
            };
            let handles = knactor_kube::cluster::ClusterHandles {
                node: node.clone(),
                sources: sources.clone(),
                board: source_board.clone(),
                leader,
            };
            info!(cluster = %config.cluster_url, lease = %format!("{lease_namespace}/{}", args.cluster.lease_name), "resources come from the cluster");
            actix_rt::spawn(knactor_kube::cluster::run(client, options, handles));
        }
        let reload_sources = sources.clone();
        // Reading files blocks (a slow disk, a hung mount): never on the thread the node's actor
        // runs on. A failure is said once, not at every interval.
        if let Some(mut source) = source {
            std::thread::Builder::new()
                .name("config-reload".into())
                .spawn(move || {
                    let mut failing = None;
                    loop {
                        std::thread::sleep(reload_every);
                        match apply_config(
                            &mut source,
                            &reload_node,
                            &reload_sources,
                            &advertise,
                            &channels,
                            &knative_default,
                        ) {
                            Ok(()) => failing = None,
                            Err(failure) => {
                                let failure = format!("{failure:#}");
                                if failing.as_ref() != Some(&failure) {
                                    error!("reloading the configuration failed, keeping what runs: {failure}");
                                }
                                failing = Some(failure);
                            }
                        }
                    }
                })
                .context("cannot start the configuration reloader")?;
        }

        let state = GatewayState {
            ingress,
            node,
            metrics: shared.metrics.clone(),
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
        if let Some((give_up, holding)) = lease {
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
    /// `--kubeconfig`, else `KUBECONFIG` (its first file).
    fn kubeconfig_path(&self) -> Option<PathBuf> {
        self.kubeconfig.clone().or_else(|| {
            let paths = std::env::var_os("KUBECONFIG")?;
            std::env::split_paths(&paths).find(|path| !path.as_os_str().is_empty())
        })
    }
}

fn open_state_dir(args: &RunArgs) -> anyhow::Result<FileStateStore> {
    let dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    FileStateStore::open(&dir).with_context(|| {
        format!(
            "cannot use {} as the state directory (--state-dir)",
            dir.display()
        )
    })
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "knactor".into())
}

/// `$XDG_STATE_HOME/knactor`, else `~/.local/state/knactor`, else `.knactor-state`.
fn default_state_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(state).join("knactor");
    }
    match std::env::var_os("HOME").filter(|dir| !dir.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/knactor"),
        None => PathBuf::from(".knactor-state"),
    }
}

/// Reads the configuration if it changed, says what was refused, and hands the node new routes.
fn apply_config(
    source: &mut ConfigSource,
    node: &Addr<Node>,
    sources: &Addr<SourceManager>,
    advertise: &Url,
    channels: &ChannelDefaults,
    knative_default: &Delivery,
) -> anyhow::Result<()> {
    let Some(snapshot) = source.poll()? else {
        return Ok(());
    };
    for line in &snapshot.refused {
        error!("refused: {line}");
    }
    for line in &snapshot.warnings {
        warn!("{line}");
    }
    for line in &snapshot.kept {
        warn!("{line}");
    }
    let (catalog, duplicates) = Catalog::from_report(&snapshot.report);
    for refusal in duplicates {
        error!("refused: {refusal}");
    }
    let resolver = catalog.addressables(Some(advertise.clone()));
    let default_delivery = catalog
        .settings
        .default_delivery
        .clone()
        .unwrap_or_else(|| knative_default.clone());
    let routes = Routes::build(&catalog, &resolver, channels, &default_delivery);
    info!(
        brokers = catalog.brokers.len(),
        triggers = catalog.triggers.len(),
        sources = routes.sources().len(),
        not_running = routes.issues().len(),
        "configuration loaded"
    );
    sources.do_send(ApplySources(routes.sources().to_vec()));
    node.do_send(ApplyRoutes(Arc::new(routes)));
    Ok(())
}
