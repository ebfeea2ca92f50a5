//! What the node answers besides its routes (the admin API, `knactor` commands, SIGTERM):
//! [`Drain`], [`ExplainMatch`], [`GetStatus`], [`GetRoutes`], [`ParkedOf`], [`RedriveOf`] and
//! [`InjectFault`], with the answers' types and [`NodeError`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{lock, Cell, Node};
use crate::actor::broker::{BrokerActor, ListParked, ParkedList, Redrive, RedriveReport};
use crate::actor::dispatcher::{DispatcherActor, DrainBroker, DrainReport};
use crate::actor::{Crash, Role};
use crate::channel::{ChannelError, Partition};
use crate::metrics::PartitionGauges;
use crate::resources::ObjectKey;
use crate::routes::{IssueReason, RouteIssue, Routes};

/// Stop gracefully (SIGTERM): take no more events, wait for the ingress requests under way,
/// then let every broker finish what it owes (`DrainBroker`), commit, and report, within
/// `timeout`.
#[derive(Debug, Message)]
#[rtype(result = "Vec<DrainReport>")]
pub struct Drain {
    pub timeout: Duration,
}

impl Handler<Drain> for Node {
    type Result = ResponseFuture<Vec<DrainReport>>;

    /// Drains every broker at once; answers when all are done or the time is up.
    fn handle(&mut self, drain: Drain, _: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        self.ingress.start_draining();
        let deadline = Instant::now() + drain.timeout;
        let ingress = self.ingress.clone();
        let dispatchers: Vec<Addr<DispatcherActor>> = self
            .cells
            .values()
            .filter_map(|cell| cell.dispatcher.clone())
            .collect();
        Box::pin(async move {
            while ingress.in_flight() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let reports = dispatchers
                .iter()
                .map(|dispatcher| dispatcher.send(DrainBroker { deadline }));
            futures::future::join_all(reports)
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect()
        })
    }
}

/// Why each trigger of a broker takes an event or not (`knactor trace`).
#[derive(Debug, Message)]
#[rtype(result = "Vec<TriggerVerdict>")]
pub struct ExplainMatch {
    pub broker: ObjectKey,
    pub event: Arc<crate::envelope::Envelope>,
}

/// One trigger's answer to an event.
#[derive(Debug, Clone)]
pub struct TriggerVerdict {
    pub trigger: ObjectKey,
    /// Why its filter refuses the event; `None` when it takes it.
    pub refused_because: Option<String>,
}

impl Handler<ExplainMatch> for Node {
    type Result = MessageResult<ExplainMatch>;

    /// Evaluates each trigger's filter of the broker, as it runs now, against the event.
    fn handle(&mut self, explain: ExplainMatch, _: &mut Context<Self>) -> Self::Result {
        let verdicts = self
            .routes
            .broker(&explain.broker)
            .map(|route| {
                route
                    .triggers
                    .iter()
                    .map(|trigger| TriggerVerdict {
                        trigger: trigger.key.clone(),
                        refused_because: trigger.filter.explain(explain.event.event()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        MessageResult(verdicts)
    }
}

/// What the node runs.
#[derive(Debug, Message)]
#[rtype(result = "NodeStatus")]
pub struct GetStatus;

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub role: Role,
    pub ready: bool,
    pub brokers: Vec<BrokerStatus>,
    /// Brokers no longer in the routes whose topics are still being deleted.
    pub removing: Vec<ObjectKey>,
    pub issues: Vec<RouteIssue>,
}

#[derive(Debug, Clone)]
pub struct BrokerStatus {
    pub key: ObjectKey,
    /// `memory` or `kafka`.
    pub channel: &'static str,
    pub topic: String,
    /// Its actors run on this node.
    pub running: bool,
    pub restarts: u32,
    /// Why its channel does not store events now (its last append or probe failed), if it does not.
    pub channel_problem: Option<String>,
    pub triggers: Vec<ObjectKey>,
    /// The partitions this node's dispatcher reads, with their positions.
    pub partitions: Vec<(Partition, PartitionGauges)>,
    /// Where each trigger stands on this node.
    pub trigger_progress: Vec<TriggerStatus>,
}

/// A trigger's deliveries on this node.
#[derive(Debug, Clone)]
pub struct TriggerStatus {
    pub key: ObjectKey,
    /// Waiting for a slot in the trigger.
    pub queued: u64,
    /// Running.
    pub in_flight: u64,
    /// Records it has yet to read itself after falling behind, summed over partitions.
    pub behind: u64,
    /// Partitions on which it fell behind.
    pub lagging_partitions: u64,
}

impl Handler<GetStatus> for Node {
    type Result = MessageResult<GetStatus>;

    /// Brokers, triggers, and what is not running.
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let brokers = self
            .routes
            .brokers()
            .map(|route| {
                use std::sync::atomic::Ordering::Relaxed;
                let cell = self.cells.get(route.key());
                let metrics = &self.shared.metrics;
                let broker = metrics.broker(route.key());
                let partitions = lock(&broker.partitions)
                    .iter()
                    .map(|(&partition, &gauges)| (partition, gauges))
                    .collect();
                let trigger_progress = route
                    .triggers
                    .iter()
                    .map(|trigger| {
                        let counts = metrics.trigger(route.key(), &trigger.key);
                        TriggerStatus {
                            key: trigger.key.clone(),
                            queued: counts.queued.load(Relaxed),
                            in_flight: counts.in_flight.load(Relaxed),
                            behind: counts.behind.load(Relaxed),
                            lagging_partitions: counts.lagging_partitions.load(Relaxed),
                        }
                    })
                    .collect();
                BrokerStatus {
                    key: route.key().clone(),
                    channel: route.channel.kind.name(),
                    topic: route.channel.topic.clone(),
                    running: cell.is_some_and(Cell::alive),
                    restarts: cell.map_or(0, |cell| cell.restarts),
                    channel_problem: cell.and_then(|_| broker.channel.problem()),
                    triggers: route.triggers.iter().map(|t| t.key.clone()).collect(),
                    partitions,
                    trigger_progress,
                }
            })
            .collect();
        let mut issues = self.routes.issues().to_vec();
        issues.extend(self.failures.iter().map(|(key, reason)| RouteIssue {
            kind: "Broker",
            key: key.clone(),
            reason: IssueReason::ChannelUnavailable,
            message: reason.clone(),
        }));
        MessageResult(NodeStatus {
            role: self.shared.options.role,
            ready: self.ingress.is_ready(),
            brokers,
            removing: lock(&self.removing).iter().cloned().collect(),
            issues,
        })
    }
}

/// The routes the node runs now (what the console draws).
#[derive(Debug, Message)]
#[rtype(result = "Arc<Routes>")]
pub struct GetRoutes;

impl Handler<GetRoutes> for Node {
    type Result = MessageResult<GetRoutes>;

    /// The current snapshot.
    fn handle(&mut self, _: GetRoutes, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.routes.clone())
    }
}

/// Why a request about a broker could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("broker {0} does not exist")]
    UnknownBroker(ObjectKey),
    #[error("trigger {0} does not exist")]
    UnknownTrigger(ObjectKey),
    #[error("broker {0} is not running yet")]
    NotRunning(ObjectKey),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("fault injection is off (start the node with --fault-injection)")]
    FaultInjectionOff,
    #[error("this node does not dispatch (--role ingress)")]
    NotDispatching,
}

/// List a broker's parked events.
#[derive(Debug, Message)]
#[rtype(result = "Result<ParkedList, NodeError>")]
pub struct ParkedOf {
    pub broker: ObjectKey,
    pub max: usize,
}

impl Handler<ParkedOf> for Node {
    type Result = ResponseFuture<Result<ParkedList, NodeError>>;

    /// Asks the broker's actor.
    fn handle(&mut self, request: ParkedOf, _: &mut Context<Self>) -> Self::Result {
        let broker = self.broker_addr(&request.broker);
        Box::pin(async move {
            let parked = broker?.send(ListParked { max: request.max }).await;
            parked
                .map_err(|_| NodeError::NotRunning(request.broker))?
                .map_err(NodeError::from)
        })
    }
}

/// Re-drive a broker's parked events (all of them, one trigger's, or those at the parking lot's
/// positions listed in `only`).
#[derive(Debug, Message)]
#[rtype(result = "Result<RedriveReport, NodeError>")]
pub struct RedriveOf {
    pub broker: ObjectKey,
    pub trigger: Option<ObjectKey>,
    pub only: Option<BTreeSet<(Partition, crate::channel::Offset)>>,
}

impl Handler<RedriveOf> for Node {
    type Result = ResponseFuture<Result<RedriveReport, NodeError>>;

    /// Asks the broker's actor.
    fn handle(&mut self, request: RedriveOf, _: &mut Context<Self>) -> Self::Result {
        let broker = self.broker_addr(&request.broker);
        let unknown_trigger = request.trigger.clone().filter(|trigger| {
            self.routes
                .broker(&request.broker)
                .is_none_or(|route| route.trigger(trigger).is_none())
        });
        Box::pin(async move {
            if let Some(trigger) = unknown_trigger {
                return Err(NodeError::UnknownTrigger(trigger));
            }
            let report = broker?
                .send(Redrive {
                    trigger: request.trigger,
                    only: request.only,
                })
                .await;
            report
                .map_err(|_| NodeError::NotRunning(request.broker))?
                .map_err(NodeError::from)
        })
    }
}

impl Node {
    fn broker_addr(&self, key: &ObjectKey) -> Result<Addr<BrokerActor>, NodeError> {
        if self.routes.broker(key).is_none() {
            return Err(NodeError::UnknownBroker(key.clone()));
        }
        self.cells
            .get(key)
            .map(|cell| cell.broker_actor.clone())
            .ok_or_else(|| NodeError::NotRunning(key.clone()))
    }
}

/// Which actor to crash.
#[derive(Debug, Clone)]
pub enum FaultTarget {
    Broker(ObjectKey),
    Dispatcher(ObjectKey),
    Trigger {
        broker: ObjectKey,
        trigger: ObjectKey,
    },
}

/// Crash an actor (only with fault injection on), to exercise supervision.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), NodeError>")]
pub struct InjectFault(pub FaultTarget);

impl Handler<InjectFault> for Node {
    type Result = Result<(), NodeError>;

    /// Sends the actor a `Crash`.
    fn handle(&mut self, fault: InjectFault, _: &mut Context<Self>) -> Self::Result {
        if !self.shared.options.fault_injection {
            return Err(NodeError::FaultInjectionOff);
        }
        let cell_of = |key: &ObjectKey| {
            self.cells
                .get(key)
                .ok_or_else(|| match self.routes.broker(key) {
                    Some(_) => NodeError::NotRunning(key.clone()),
                    None => NodeError::UnknownBroker(key.clone()),
                })
        };
        match fault.0 {
            FaultTarget::Broker(key) => cell_of(&key)?.broker_actor.do_send(Crash),
            FaultTarget::Dispatcher(key) => cell_of(&key)?
                .dispatcher
                .as_ref()
                .ok_or(NodeError::NotDispatching)?
                .do_send(Crash),
            FaultTarget::Trigger { broker, trigger } => cell_of(&broker)?
                .triggers
                .get(&trigger)
                .ok_or(NodeError::UnknownTrigger(trigger))?
                .do_send(Crash),
        }
        Ok(())
    }
}
