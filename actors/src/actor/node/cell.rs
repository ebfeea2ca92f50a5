//! A broker's cell: its `BrokerActor`, `DispatcherActor` and `TriggerActor`s on one arbiter, which
//! the node starts (once the broker's topics exist), starts again when one of them died (with
//! backoff), updates when only the broker's triggers changed, and stops; and the deletion of a
//! removed broker's topics.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{error, info, warn};

use super::{lock, Node};
use crate::actor::broker::{Broker, BrokerActor, UseRoute};
use crate::actor::dispatcher::{ApplyTriggers, DispatcherActor};
use crate::actor::trigger::{TriggerActor, UpdateRoute};
use crate::actor::{Role, Shared, Shutdown};
use crate::channel::{ChannelError, EventLog, TopicSpec};
use crate::resources::ObjectKey;
use crate::retry::Backoff;
use crate::routes::BrokerRoute;

/// How long a broker whose actors died young waits before they start again: 200 ms, doubling
/// with each restart in a row, at most 10 s.
const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// A broker on its way to running.
pub(super) struct Starting {
    /// How often its cell was restarted in a row (0: a first start, or a retry after a failure).
    pub(super) restarts: u32,
    pub(super) since: Instant,
}

impl Starting {
    fn new(restarts: u32) -> Self {
        Self {
            restarts,
            since: Instant::now(),
        }
    }
}

/// One broker's actors.
pub(super) struct Cell {
    pub(super) route: Arc<BrokerRoute>,
    log: Arc<dyn EventLog>,
    /// Publishes to the broker (the gateway's and the replies' way in).
    pub(super) broker: Broker,
    /// Probes the channel; lists and re-drives the parking lot.
    pub(super) broker_actor: Addr<BrokerActor>,
    /// None on a node that does not dispatch (and then there are no trigger actors either).
    pub(super) dispatcher: Option<Addr<DispatcherActor>>,
    pub(super) triggers: HashMap<ObjectKey, Addr<TriggerActor>>,
    arbiter: ArbiterHandle,
    pub(super) restarts: u32,
    started: Instant,
}

impl Cell {
    pub(super) fn alive(&self) -> bool {
        self.broker_actor.connected()
            && self.dispatcher.as_ref().is_none_or(Addr::connected)
            && self.triggers.values().all(Addr::connected)
    }

    pub(super) fn stop(&self) {
        // Dispatcher first, so that nothing new is handed to the triggers.
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.do_send(Shutdown);
        }
        for trigger in self.triggers.values() {
            trigger.do_send(Shutdown);
        }
        self.broker_actor.do_send(Shutdown);
    }
}

impl Node {
    /// Makes sure the broker's topics exist, then starts its cell.
    pub(super) fn prepare(
        &mut self,
        route: Arc<BrokerRoute>,
        restarts: u32,
        ctx: &mut Context<Self>,
    ) {
        let key = route.key().clone();
        if self.starting.contains_key(&key) {
            return;
        }
        if self.shared.options.role != Role::All && route.channel.kafka().is_none() {
            // Not retried: only a new route (another class) or another role changes this.
            let reason = format!(
                "a broker on the memory channel runs only on a node with --role all (the channel \
                 lives inside one process, so this --role {} node cannot share it); give the \
                 broker the Kafka class",
                self.shared.options.role
            );
            error!(broker = %key, "cannot run the broker: {reason}");
            self.failures.insert(key, reason);
            return;
        }
        let channel = route.channel.clone();
        let log = match self.shared.channels.log_for(&route.channel) {
            Ok(log) => log,
            Err(error) => {
                error!(broker = %key, "cannot run the broker, retrying in 10s: {error}");
                self.failures.insert(key.clone(), error.to_string());
                ctx.run_later(Duration::from_secs(10), move |node, ctx| {
                    if let Some(route) = node.routes.broker(&key).cloned() {
                        if !node.cells.contains_key(&key) {
                            node.prepare(route, restarts, ctx);
                        }
                    }
                });
                return;
            }
        };
        self.starting.insert(key.clone(), Starting::new(restarts));
        let topics = {
            let log = log.clone();
            let specs = TopicSpec::for_channel(&route.channel);
            let group = route.channel.dispatcher_group();
            async move {
                for spec in &specs {
                    log.ensure_topic(spec).await?;
                }
                start_group_at_end(log.as_ref(), &specs[0].name, &group).await
            }
        };
        ctx.spawn(topics.into_actor(self).map(move |result, node, ctx| {
            let restarts = node
                .starting
                .remove(&key)
                .map_or(0, |starting| starting.restarts);
            match result {
                Ok(()) => {
                    node.failures.remove(&key);
                    // The routes may have changed while the topics were made: start what is
                    // current (a different channel is prepared again).
                    if let Some(route) = node.routes.broker(&key).cloned() {
                        if !node.cells.contains_key(&key) {
                            if route.channel == channel {
                                let cell = node.launch(route, restarts, log);
                                node.cells.insert(key, cell);
                            } else {
                                node.prepare(route, restarts, ctx);
                            }
                        }
                    }
                }
                Err(error) => {
                    error!(broker = %key, "cannot create the broker's topics, retrying in 5s: {error}");
                    node.failures.insert(key.clone(), error.to_string());
                    ctx.run_later(Duration::from_secs(5), move |node, ctx| {
                        if let Some(route) = node.routes.broker(&key).cloned() {
                            if !node.cells.contains_key(&key) {
                                node.prepare(route, restarts, ctx);
                            }
                        }
                    });
                }
            }
            node.publish_ingress();
        }));
    }

    fn launch(&mut self, route: Arc<BrokerRoute>, restarts: u32, log: Arc<dyn EventLog>) -> Cell {
        let arbiter = self.arbiters[self.next_arbiter % self.arbiters.len()].handle();
        self.next_arbiter += 1;
        let shared = self.shared.clone();
        let broker = Broker::new(&route, shared.clone(), log.clone());
        let broker_actor = {
            let (route, broker) = (route.clone(), broker.clone());
            BrokerActor::start_in_arbiter(&arbiter, move |_| BrokerActor::new(route, broker))
        };
        let mut triggers = HashMap::new();
        let dispatcher = shared.options.role.dispatches().then(|| {
            let dispatcher = {
                let (route, shared, log) = (route.clone(), shared.clone(), log.clone());
                DispatcherActor::start_in_arbiter(&arbiter, move |_| {
                    DispatcherActor::new(&route, shared, log)
                })
            };
            triggers = route
                .triggers
                .iter()
                .map(|trigger| {
                    let addr = start_trigger(
                        &arbiter,
                        trigger.clone(),
                        &route,
                        &shared,
                        &log,
                        &broker,
                        &dispatcher,
                    );
                    (trigger.key.clone(), addr)
                })
                .collect();
            dispatcher.do_send(ApplyTriggers {
                route: route.clone(),
                triggers: triggers.clone(),
            });
            dispatcher
        });
        info!(
            broker = %route.key(),
            triggers = route.triggers.len(),
            restarts,
            role = %shared.options.role,
            "broker running"
        );
        Cell {
            route,
            log,
            broker,
            broker_actor,
            dispatcher,
            triggers,
            arbiter,
            restarts,
            started: Instant::now(),
        }
    }

    /// Restarts every cell in which an actor died.
    pub(super) fn watch(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let dead: Vec<ObjectKey> = self
            .cells
            .iter()
            .filter(|(_, cell)| !cell.alive())
            .map(|(key, _)| key.clone())
            .collect();
        for key in dead {
            let Some(cell) = self.cells.remove(&key) else {
                continue;
            };
            cell.stop();
            // Restarting in a loop helps nobody: back off when the cell died young.
            let restarts = if cell.started.elapsed() < Duration::from_secs(10) {
                cell.restarts + 1
            } else {
                1
            };
            let delay = RESTART_BACKOFF.after(restarts);
            warn!(broker = %key, restarts, ?delay, "an actor of the broker died; restarting the broker's actors");
            self.starting.insert(key.clone(), Starting::new(restarts));
            ctx.run_later(delay, move |node, ctx| {
                node.starting.remove(&key);
                if let Some(route) = node.routes.broker(&key).cloned() {
                    if !node.cells.contains_key(&key) {
                        node.prepare(route, restarts, ctx);
                    }
                }
                node.publish_ingress();
            });
        }
        self.publish_ingress();
    }
}

fn start_trigger(
    arbiter: &ArbiterHandle,
    trigger: Arc<crate::routes::TriggerRoute>,
    route: &BrokerRoute,
    shared: &Arc<Shared>,
    log: &Arc<dyn EventLog>,
    broker: &Broker,
    dispatcher: &Addr<DispatcherActor>,
) -> Addr<TriggerActor> {
    let (shared, log, broker, dispatcher) = (
        shared.clone(),
        log.clone(),
        broker.clone(),
        dispatcher.clone(),
    );
    let park_topic = route.channel.park_topic();
    TriggerActor::start_in_arbiter(arbiter, move |_| {
        TriggerActor::new(trigger, shared, log, broker, dispatcher, park_topic)
    })
}

/// Gives the dispatcher group a position before the broker takes its first event: the end of
/// each partition the group has never committed. Otherwise a group that starts "at the end"
/// would place that end when it first fetches, after joining, and skip what the gateway
/// accepted in between. A group that committed before (a restart) keeps its position.
async fn start_group_at_end(
    log: &dyn EventLog,
    topic: &str,
    group: &str,
) -> Result<(), ChannelError> {
    let unset: Vec<(crate::channel::Partition, crate::channel::Offset)> = log
        .offsets(topic, group)
        .await?
        .into_iter()
        .filter(|partition| partition.committed.is_none())
        .map(|partition| (partition.partition, partition.high))
        .collect();
    if unset.is_empty() {
        return Ok(());
    }
    log.commit_offsets(topic, group, &unset).await
}

/// Deletes a removed broker's topics, unless the channel is an external topic; `removing` holds
/// the broker until its topics are deleted (or deleting them failed).
pub(super) fn delete_topics(
    cell: &Cell,
    key: ObjectKey,
    removing: Arc<Mutex<BTreeSet<ObjectKey>>>,
) {
    if cell
        .route
        .channel
        .kafka()
        .is_some_and(|kafka| kafka.external)
    {
        return;
    }
    lock(&removing).insert(key.clone());
    let log = cell.log.clone();
    let topics = [
        cell.route.channel.topic.clone(),
        cell.route.channel.park_topic(),
    ];
    let dispatcher = cell.dispatcher.clone();
    actix::spawn(async move {
        // Delete only once the broker's reader is gone: a consumer still fetching a deleted
        // topic gets metadata some brokers answer badly (tansu: a topic without a name, which
        // librdkafka does not survive).
        if let Some(dispatcher) = dispatcher {
            let deadline = Instant::now() + Duration::from_secs(10);
            while dispatcher.connected() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The consumer thread notices its subscription is gone within one poll.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for topic in topics {
            match log.delete_topic(&topic).await {
                Ok(()) => info!(%topic, "topic deleted"),
                Err(error) => warn!(%topic, "deleting the topic failed: {error}"),
            }
        }
        lock(&removing).remove(&key);
    });
}

/// Applies a new route of the same broker to its running cell: new triggers start, changed ones
/// take their new route, removed ones stop after the dispatcher forgot them.
pub(super) fn update_triggers(cell: &mut Cell, route: Arc<BrokerRoute>, shared: &Arc<Shared>) {
    // The broker re-drives parked events only to the triggers it knows of.
    cell.broker_actor.do_send(UseRoute(route.clone()));
    let Some(dispatcher) = cell.dispatcher.clone() else {
        cell.route = route;
        return;
    };
    let mut triggers = HashMap::with_capacity(route.triggers.len());
    for trigger in &route.triggers {
        let addr = match cell.triggers.remove(&trigger.key) {
            Some(addr) => {
                if cell.route.trigger(&trigger.key) != Some(trigger) {
                    addr.do_send(UpdateRoute(trigger.clone()));
                }
                addr
            }
            None => start_trigger(
                &cell.arbiter,
                trigger.clone(),
                &route,
                shared,
                &cell.log,
                &cell.broker,
                &dispatcher,
            ),
        };
        triggers.insert(trigger.key.clone(), addr);
    }
    dispatcher.do_send(ApplyTriggers {
        route: route.clone(),
        triggers: triggers.clone(),
    });
    for (key, removed) in cell.triggers.drain() {
        info!(trigger = %key, "trigger removed");
        shared.metrics.forget_trigger(route.key(), &key);
        removed.do_send(Shutdown);
    }
    cell.triggers = triggers;
    cell.route = route;
}
