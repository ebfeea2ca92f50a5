//! `SourceActor` (one per running source) and the `SourceManager` that keeps the set of them
//! equal to the routes' sources.
//!
//! A source whose task ends (an error it cannot get past, a panic) is started again after a backoff
//! that grows with each failure in a row (1 s, 2 s, 4 s... up to a minute) and resets once it ran
//! for a minute. It resumes from its saved position, so a restart loses nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{error, info, warn};

use super::Shutdown;
use crate::retry::Backoff;
use crate::routes::{ApiServerSource, SourceDefinition, SourceRoute};
use crate::source::{
    HealthReporter, PingTask, SinkSender, SourceBoard, SourceContext, SourceId, SourceTask,
    StateStore,
};
use crate::transport::Transport;

/// How often the manager looks for sources to (re)start.
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(500);
/// How long a source that died waits before it starts again: 1 s, doubling, at most a minute.
const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// A source that ran this long without failing starts its backoff afresh.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Makes the tasks of ApiServerSources (given by `knactor-kube` when the node has a cluster).
pub trait ApiServerSourceRuntime: fmt::Debug + Send + Sync + 'static {
    fn task(&self, source: Arc<ApiServerSource>) -> Box<dyn SourceTask>;
}

/// Runs one source's task until the task ends or the actor is told to stop.
pub struct SourceActor {
    id: SourceId,
    start: Option<(Box<dyn SourceTask>, SourceContext)>,
    board: Arc<SourceBoard>,
}

impl fmt::Debug for SourceActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceActor")
            .field("id", &self.id)
            .field("started", &self.start.is_none())
            .finish_non_exhaustive()
    }
}

impl Actor for SourceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some((task, context)) = self.start.take() else {
            return ctx.stop();
        };
        self.board
            .set_running(&self.id, context.sink.counters().clone());
        let future = task.run(context);
        ctx.spawn(future.into_actor(self).map(|outcome, actor, ctx| {
            let problem = match outcome {
                Ok(()) => None,
                Err(problem) => {
                    error!(kind = actor.id.0, source = %actor.id.1, "source stopped: {problem}");
                    Some(problem.to_string())
                }
            };
            actor.board.set_stopped(&actor.id, problem);
            ctx.stop();
        }));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.board.set_stopped(&self.id, None);
    }
}

impl Handler<Shutdown> for SourceActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The sources to run now (replaces the previous set).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplySources(pub Vec<Arc<SourceRoute>>);

/// Whether this node runs sources at all (in a cluster: only the replica that holds the lease).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetSourcesActive(pub bool);

#[derive(Debug)]
struct Running {
    route: Arc<SourceRoute>,
    actor: Option<Addr<SourceActor>>,
    failures: u32,
    started: Instant,
    /// When a failed source may start again.
    retry_at: Option<Instant>,
}

#[derive(Debug)]
pub struct SourceManager {
    transport: Arc<dyn Transport>,
    state: Arc<dyn StateStore>,
    board: Arc<SourceBoard>,
    api_server: Option<Arc<dyn ApiServerSourceRuntime>>,
    /// Per-attempt timeout of sends to sinks.
    sink_timeout: Duration,
    wanted: Vec<Arc<SourceRoute>>,
    running: BTreeMap<SourceId, Running>,
    active: bool,
}

impl SourceManager {
    pub fn new(
        transport: Arc<dyn Transport>,
        state: Arc<dyn StateStore>,
        api_server: Option<Arc<dyn ApiServerSourceRuntime>>,
    ) -> Self {
        Self {
            transport,
            state,
            board: Arc::default(),
            api_server,
            sink_timeout: Duration::from_secs(30),
            wanted: Vec::new(),
            running: BTreeMap::new(),
            active: true,
        }
    }

    /// Starts inactive (for a cluster node that does not hold the lease yet).
    pub fn inactive(mut self) -> Self {
        self.active = false;
        self
    }

    /// The board of every source's health.
    pub fn board(&self) -> Arc<SourceBoard> {
        self.board.clone()
    }

    fn reconcile(&mut self) {
        let wanted: BTreeMap<SourceId, Arc<SourceRoute>> = if self.active {
            self.wanted
                .iter()
                .map(|route| (id_of(route), route.clone()))
                .collect()
        } else {
            BTreeMap::new()
        };
        self.running.retain(|id, running| {
            let keep = wanted.get(id).is_some_and(|route| *route == running.route);
            if !keep {
                if let Some(actor) = &running.actor {
                    actor.do_send(Shutdown);
                }
                info!(kind = id.0, source = %id.1, "source stopped");
            }
            keep
        });
        let board_ids: Vec<SourceId> = self.board.all().into_iter().map(|(id, _)| id).collect();
        for id in board_ids {
            if !wanted.contains_key(&id) {
                self.board.remove(&id);
            }
        }
        let now = Instant::now();
        for (id, route) in wanted {
            let running = self.running.entry(id.clone()).or_insert_with(|| Running {
                route: route.clone(),
                actor: None,
                failures: 0,
                started: now,
                retry_at: None,
            });
            if running.actor.as_ref().is_some_and(Addr::connected) {
                continue;
            }
            if running.actor.take().is_some() {
                // It died: back off before starting it again.
                if running.started.elapsed() >= STABLE_AFTER {
                    running.failures = 0;
                }
                running.failures += 1;
                let backoff = RESTART_BACKOFF.after(running.failures);
                warn!(kind = id.0, source = %id.1, "source restarts in {backoff:?}");
                running.retry_at = Some(now + backoff);
            }
            if running.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            running.retry_at = None;
            let Some(task) = task_for(&route, self.api_server.as_ref(), &self.board) else {
                continue;
            };
            let sink = SinkSender::new(
                self.transport.clone(),
                route.sink.clone(),
                &id.1.namespace,
                self.sink_timeout,
            );
            let context = SourceContext {
                sink,
                state: self.state.clone(),
                health: HealthReporter::new(id.clone(), self.board.clone()),
            };
            info!(kind = id.0, source = %id.1, sink = %route.sink, "source started");
            running.started = Instant::now();
            running.actor = Some(
                SourceActor {
                    id: id.clone(),
                    start: Some((task, context)),
                    board: self.board.clone(),
                }
                .start(),
            );
        }
    }
}

fn task_for(
    route: &SourceRoute,
    api_server: Option<&Arc<dyn ApiServerSourceRuntime>>,
    board: &SourceBoard,
) -> Option<Box<dyn SourceTask>> {
    match &route.source {
        SourceDefinition::Ping(source) => Some(Box::new(PingTask::new(source.clone()))),
        SourceDefinition::ApiServer(source) => match api_server {
            Some(runtime) => Some(runtime.task(source.clone())),
            None => {
                board.set_stopped(
                    &id_of(route),
                    Some("an ApiServerSource needs a Kubernetes API server: start knactor with --kubeconfig".into()),
                );
                None
            }
        },
    }
}

fn id_of(route: &SourceRoute) -> SourceId {
    (route.source.kind(), route.source.key().clone())
}

impl Actor for SourceManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(WATCHDOG_INTERVAL, |manager, _| manager.reconcile());
    }
}

impl Handler<ApplySources> for SourceManager {
    type Result = ();

    fn handle(&mut self, message: ApplySources, _ctx: &mut Context<Self>) {
        self.wanted = message.0;
        self.reconcile();
    }
}

impl Handler<SetSourcesActive> for SourceManager {
    type Result = ();

    fn handle(&mut self, message: SetSourcesActive, _ctx: &mut Context<Self>) {
        if self.active != message.0 {
            info!(
                active = message.0,
                "sources {}",
                if message.0 {
                    "run on this node"
                } else {
                    "stop on this node"
                }
            );
            self.active = message.0;
            self.reconcile();
        }
    }
}
