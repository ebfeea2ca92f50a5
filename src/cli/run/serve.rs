//! `knactor run`'s servers and its stop: the gateway on the ingress listener, and the admin,
//! probe and admission servers beside it, until a listener fails (the node ends with its error)
//! or a signal comes (the node drains first).

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_rt::task::JoinHandle;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer};
use anyhow::Context as _;
use clap::Args;
use knactor_actors::actor::{
    Drain, DrainReport, IngressTable, Node, SetSourcesActive, SourceManager,
};
use knactor_gateway::admin::AdminAccess;
use knactor_gateway::console::ConsoleSettings;
use knactor_gateway::ingress::{configure, configure_admin, AdminApi, GatewayState};
use knactor_gateway::limits::Limits;
use knactor_gateway::server::{serve_ingress, serve_probes};
use tracing::{error, info, warn};

use super::build::{Lease, Pieces};
use super::listen::Listeners;
use super::{hostname, RunArgs};
use crate::config::parse_duration_flag;

/// What the node does on SIGTERM (or Ctrl-C).
#[derive(Args)]
pub(super) struct DrainArgs {
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

/// Serves the node on its listeners until a signal, then drains it; a listener that fails ends
/// the node with its error.
pub(super) async fn serve(
    args: &RunArgs,
    admin_token: Option<Arc<str>>,
    listeners: Listeners,
    pieces: Pieces,
) -> anyhow::Result<ExitCode> {
    let Listeners {
        ingress: listener,
        bound,
        admin: admin_listener,
        probes: probe_listener,
        advertise,
        ..
    } = listeners;
    let state = GatewayState {
        ingress: pieces.ingress,
        node: pieces.node,
        metrics: pieces.metrics,
        sources: pieces.source_board,
        max_body_bytes: args.max_body_bytes,
        role: args.role,
        admin_access: AdminAccess::for_listener(admin_token.as_ref(), bound),
        limits: Limits::new(args.ingress_limits.checked_limits()),
        console: ConsoleSettings {
            jaeger_ui_url: args.telemetry.jaeger_ui_url.clone(),
            node: args.kafka.node_id().unwrap_or_else(hostname),
            started_at: std::time::SystemTime::now(),
            ingress: Some(advertise),
        }
        .shared(),
    };
    let admin = match admin_listener {
        Some(admin_listener) => Some(serve_admin(admin_listener, &state, admin_token.as_ref())?),
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
    let mut servers = Servers::start([Some(server), admin, probes, pieces.admission]);
    let signal = servers.until_signal().await?;
    drain(
        &args.drain,
        signal,
        &drain_ingress,
        &pieces.sources,
        pieces.lease,
        &drain_node,
    )
    .await;
    servers.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// The admin API on a listener of its own (--admin-listen), with the access that listener's
/// address allows.
fn serve_admin(
    listener: TcpListener,
    state: &GatewayState,
    admin_token: Option<&Arc<str>>,
) -> anyhow::Result<Server> {
    let admin_bound = listener.local_addr()?;
    let admin_state = GatewayState {
        admin_access: AdminAccess::for_listener(admin_token, admin_bound),
        ..state.clone()
    };
    // Signals are the node's to handle: a stop drains before the listeners close.
    let server =
        HttpServer::new(move || App::new().configure(configure_admin(admin_state.clone())))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(5)
            .listen(listener)?
            .run();
    println!("knactor admin API on http://{admin_bound}");
    Ok(server)
}

/// The node's HTTP servers, running.
struct Servers {
    handles: Vec<ServerHandle>,
    serving: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Servers {
    fn start(servers: impl IntoIterator<Item = Option<Server>>) -> Self {
        let mut running = Servers {
            handles: Vec::new(),
            serving: Vec::new(),
        };
        for server in servers.into_iter().flatten() {
            running.handles.push(server.handle());
            running.serving.push(actix_rt::spawn(server));
        }
        running
    }

    /// Waits for a stop signal and says which; a server that ends first (its listener failed)
    /// is an error.
    async fn until_signal(&mut self) -> anyhow::Result<&'static str> {
        tokio::select! {
            (ended, _, _) = futures::future::select_all(self.serving.iter_mut()) => {
                ended.context("the HTTP server stopped")??;
                anyhow::bail!("the HTTP server stopped");
            }
            signal = stop_signal() => signal,
        }
    }

    /// Stops every server, letting the requests in flight finish.
    async fn stop(self) {
        for handle in self.handles {
            handle.stop(true).await;
        }
    }
}

/// Stops the node after `signal`, in the order that loses nothing: not ready any more (the
/// Services in front stop sending); after --drain-delay, the sources stop (and another replica
/// may take the Lease and run them); then the brokers finish what they accepted, within
/// --drain-timeout.
async fn drain(
    args: &DrainArgs,
    signal: &'static str,
    ingress: &IngressTable,
    sources: &Addr<SourceManager>,
    lease: Option<Lease>,
    node: &Addr<Node>,
) {
    info!(signal, delay = ?args.drain_delay, timeout = ?args.drain_timeout, "stopping: not ready any more; after the delay no more events are taken and what was accepted is finished");
    ingress.stop_being_ready();
    tokio::time::sleep(args.drain_delay).await;
    let _ = sources.send(SetSourcesActive(false)).await;
    if let Some(Lease { give_up, holding }) = lease {
        // The sources stopped here: another replica may run them now.
        give_up.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(5), holding).await;
    }
    let reports = node
        .send(Drain {
            timeout: args.drain_timeout,
        })
        .await
        .unwrap_or_default();
    report_drain(&reports);
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
