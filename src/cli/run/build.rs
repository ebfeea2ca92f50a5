//! `knactor run`'s node, built and started: the channels and the state its actors share, the
//! cluster it talks to, its sources, and where its resources come from (the controller and its
//! Lease in cluster mode, the configuration and its reloader with --config). [`build`] does it
//! in that order and hands back the [`Pieces`] the servers and the drain need.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::task::JoinHandle;
use actix_web::dev::Server;
use anyhow::Context as _;
use clap::Args;
use knactor_actors::actor::{
    ApiServerSourceRuntime, IngressTable, LocalIngress, Node, NodeOptions, Shared, SourceManager,
};
use knactor_actors::metrics::Metrics;
use knactor_actors::retry::RetryLimits;
use knactor_actors::source::{FileStateStore, SourceBoard, StateStore};
use knactor_gateway::client::HttpTransport;
use knactor_kube::kube;
use tokio::sync::Notify;
use tracing::info;
use url::Url;

use super::channels::{channel_defaults, channels};
use super::flags::Checked;
use super::routes::Routing;
use super::{hostname, RunArgs};
use crate::config::{parse_duration_flag, ConfigSource};

/// In cluster mode: the Lease that elects the replica running the controller and the sources,
/// and the namespaces that get a default Broker.
#[derive(Args)]
pub(super) struct ClusterArgs {
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
pub(super) struct DeliveryArgs {
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

/// The running node: what the gateway serves and what a stop drains.
pub(super) struct Pieces {
    pub node: Addr<Node>,
    pub ingress: Arc<IngressTable>,
    pub metrics: Arc<Metrics>,
    pub sources: Addr<SourceManager>,
    pub source_board: Arc<SourceBoard>,
    /// In cluster mode: the Lease this replica holds, or waits for.
    pub lease: Option<Lease>,
    /// The admission webhook (cluster mode, --admission-listen): started here, where the cluster
    /// client is, and served with the other listeners.
    pub admission: Option<Server>,
}

/// The task holding the Lease, and what tells it to give the Lease up when the node stops.
pub(super) struct Lease {
    pub give_up: Arc<Notify>,
    pub holding: JoinHandle<()>,
}

/// Builds the node and starts its actors, the controller and the reloader; the listeners are
/// bound already (`advertise` names the ingress), the servers not started yet.
pub(super) async fn build(
    args: &RunArgs,
    checked: &Checked,
    advertise: &Url,
    mut source: Option<ConfigSource>,
    admission_listener: Option<TcpListener>,
) -> anyhow::Result<Pieces> {
    let transport = Arc::new(HttpTransport::new().context("cannot build the HTTP client")?);
    let options = node_options(args, advertise);
    let shared = Shared::new(channels(args), transport.clone(), options);
    let kube_config = kube_config(args).await?;
    let lease_namespace = args.cluster.lease_namespace();
    // In cluster mode (no --config), the client the controller, the lease and the sources'
    // positions share.
    let cluster_client = match (&kube_config, checked.cluster_mode) {
        (Some(config), true) => Some(
            kube::Client::try_from(config.clone()).context("cannot build the Kubernetes client")?,
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
        Arc::new(knactor_kube::apiserver::KubeSourceRuntime::new(
            config.clone(),
        )) as _
    });
    let state: Arc<dyn StateStore> = match &cluster_client {
        Some(client) => Arc::new(knactor_kube::state::ConfigMapStateStore::new(
            client.clone(),
            &lease_namespace,
        )),
        None => Arc::new(open_state_dir(args)?),
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
    let sources = if checked.cluster_mode {
        sources.inactive()
    } else {
        sources
    };
    let mut pieces = Pieces {
        node,
        ingress,
        metrics: shared.metrics.clone(),
        source_board: sources.board(),
        sources: sources.start(),
        lease: None,
        admission,
    };

    let routing = Routing {
        advertise: advertise.clone(),
        channels: channel_defaults(args),
        knative_default: checked.knative_default.clone(),
    };
    if let Some(source) = source.as_mut() {
        routing.apply(source, &pieces.node, &pieces.sources)?;
    }
    if let (Some(client), Some(config)) = (cluster_client, &kube_config) {
        let lease = start_cluster(args, client, config, lease_namespace, &routing, &pieces);
        pieces.lease = Some(lease);
    }
    if let Some(source) = source {
        routing.spawn_reloader(
            args.reload_interval,
            source,
            pieces.node.clone(),
            pieces.sources.clone(),
        )?;
    }
    Ok(pieces)
}

fn node_options(args: &RunArgs, advertise: &Url) -> NodeOptions {
    NodeOptions {
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
    }
}

/// The cluster the node talks to, if any: its kubeconfig's, or (--kubernetes) the pod's own.
async fn kube_config(args: &RunArgs) -> anyhow::Result<Option<kube::Config>> {
    let path = args.kubeconfig_path();
    if path.is_none() && !args.kubernetes {
        return Ok(None);
    }
    // The error's own words already hold its cause: as a message, not a chain printed twice.
    knactor_kube::client_config(path.as_deref())
        .await
        .map(Some)
        .map_err(anyhow::Error::msg)
}

/// In cluster mode: holds the Lease (or waits for it) and runs the controller, which turns the
/// cluster's objects into routes and runs the sources while this replica holds the Lease.
fn start_cluster(
    args: &RunArgs,
    client: kube::Client,
    config: &kube::Config,
    lease_namespace: String,
    routing: &Routing,
    pieces: &Pieces,
) -> Lease {
    let give_up = Arc::new(Notify::new());
    let leader = Arc::new(AtomicBool::new(false));
    let identity = args
        .kafka
        .node_id()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let holding = actix_rt::spawn(knactor_kube::lease::hold(
        client.clone(),
        lease_namespace.clone(),
        args.cluster.lease_name.clone(),
        identity,
        leader.clone(),
        give_up.clone(),
    ));
    let options = knactor_kube::cluster::ClusterOptions {
        advertise: routing.advertise.clone(),
        api_server: config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string(),
        default_broker_selector: Some(args.cluster.default_broker_selector.clone())
            .filter(|selector| !selector.trim().is_empty()),
        channels: routing.channels.clone(),
        default_delivery: routing.knative_default.clone(),
    };
    let handles = knactor_kube::cluster::ClusterHandles {
        node: pieces.node.clone(),
        sources: pieces.sources.clone(),
        board: pieces.source_board.clone(),
        leader,
    };
    info!(cluster = %config.cluster_url, lease = %format!("{lease_namespace}/{}", args.cluster.lease_name), "resources come from the cluster");
    actix_rt::spawn(knactor_kube::cluster::run(client, options, handles));
    Lease { give_up, holding }
}

/// --state-dir, else the default: where sources keep their positions outside a cluster.
fn open_state_dir(args: &RunArgs) -> anyhow::Result<FileStateStore> {
    let dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    FileStateStore::open(&dir).with_context(|| {
        format!(
            "cannot use {} as the state directory (--state-dir)",
            dir.display()
        )
    })
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
