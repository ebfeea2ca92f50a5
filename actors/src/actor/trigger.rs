//! `TriggerActor`: the delivery policy of one trigger.
//!
//! Owns the trigger's deliveries in flight and the ones waiting for a slot. Unordered triggers run
//! up to `trigger_concurrency` deliveries at once; ordered ones (`delivery.order: ordered`) run one
//! per partition, in record order. Each delivery runs the state machine of [`super::delivery`] and
//! reports its final outcome to the dispatcher, which is what lets the offset be committed.
//!
//! Answers: [`Deliver`], [`UpdateRoute`], [`Shutdown`], [`Crash`].

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tracing::debug;

use super::broker::Broker;
use super::delivery::{Outcome, TriggerContext};
use super::{Crash, Shared, Shutdown};
use crate::channel::{EventLog, Offset, Partition};
use crate::envelope::Envelope;
use crate::metrics::TriggerMetrics;
use crate::resources::ObjectKey;
use crate::routes::{DeliveryOrder, TriggerRoute};

pub struct TriggerActor {
    /// What its deliveries share: the route, the endpoints, the metrics.
    context: Arc<TriggerContext>,
    shared: Arc<Shared>,
    /// Told when a delivery settles (the broker's dispatcher).
    dispatcher: Recipient<Settled>,
    /// Its key as each [`Settled`] carries it (shared: a delivery does not copy two strings).
    key: Arc<ObjectKey>,
    metrics: Arc<TriggerMetrics>,
    /// Waiting for a slot (unordered), or for the partition's previous delivery (ordered).
    waiting: VecDeque<Deliver>,
    in_flight: usize,
    /// Ordered triggers: partitions with a delivery in flight.
    busy_partitions: HashSet<Partition>,
}

impl fmt::Debug for TriggerActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TriggerActor")
            .field("trigger", &self.context.route.key)
            .field("waiting", &self.waiting.len())
            .field("in_flight", &self.in_flight)
            .field("busy_partitions", &self.busy_partitions)
            .finish_non_exhaustive()
    }
}

/// A delivery reached its final outcome: what a trigger tells its dispatcher, which may then
/// commit past the record.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Settled {
    pub trigger: Arc<ObjectKey>,
    pub partition: Partition,
    pub offset: Offset,
}

impl TriggerActor {
    pub fn new(
        route: Arc<TriggerRoute>,
        shared: Arc<Shared>,
        log: Arc<dyn EventLog>,
        broker: Broker,
        dispatcher: impl Into<Recipient<Settled>>,
        park_topic: String,
    ) -> Self {
        let metrics = shared.metrics.trigger(&route.broker, &route.key);
        let key = Arc::new(route.key.clone());
        let context = TriggerContext::new(
            route,
            shared.clone(),
            log,
            broker,
            park_topic,
            metrics.clone(),
        );
        Self {
            context: Arc::new(context),
            shared,
            dispatcher: dispatcher.into(),
            key,
            metrics,
            waiting: VecDeque::new(),
            in_flight: 0,
            busy_partitions: HashSet::new(),
        }
    }

    /// Starts as many waiting deliveries as the trigger's order and limits allow.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.start_what_may_start(ctx);
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics
            .queued
            .store(self.waiting.len() as u64, Relaxed);
        self.metrics.in_flight.store(self.in_flight as u64, Relaxed);
    }

    fn start_what_may_start(&mut self, ctx: &mut Context<Self>) {
        match self.context.route.order {
            DeliveryOrder::Unordered => {
                let limit = self.shared.options.trigger_concurrency.max(1);
                while self.in_flight < limit {
                    let Some(next) = self.waiting.pop_front() else {
                        break;
                    };
                    self.start(next, ctx);
                }
            }
            DeliveryOrder::Ordered => {
                // The first waiting delivery of every idle partition, keeping the rest in order.
                let mut still_waiting = VecDeque::with_capacity(self.waiting.len());
                let mut claimed: HashSet<Partition> = HashSet::new();
                while let Some(next) = self.waiting.pop_front() {
                    let partition = next.partition;
                    if self.busy_partitions.contains(&partition) || claimed.contains(&partition) {
                        still_waiting.push_back(next);
                    } else {
                        claimed.insert(partition);
                        self.busy_partitions.insert(partition);
                        self.start(next, ctx);
                    }
                }
                self.waiting = still_waiting;
            }
        }
    }

    fn start(&mut self, deliver: Deliver, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let context = self.context.clone();
        let Deliver {
            envelope,
            partition,
            offset,
            dispatched_at,
            parent,
        } = deliver;
        let work = async move { context.run(envelope, dispatched_at, parent).await };
        ctx.spawn(work.into_actor(self).map(move |outcome, actor, ctx| {
            actor.finished(partition, offset, outcome, ctx);
        }));
    }

    fn finished(
        &mut self,
        partition: Partition,
        offset: Offset,
        outcome: Outcome,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight -= 1;
        self.busy_partitions.remove(&partition);
        debug!(trigger = %self.key, partition, offset, ?outcome, "delivery final");
        self.dispatcher.do_send(Settled {
            trigger: self.key.clone(),
            partition,
            offset,
        });
        self.pump(ctx);
    }
}

impl Actor for TriggerActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.queued.store(0, Relaxed);
        self.metrics.in_flight.store(0, Relaxed);
    }
}

/// Deliver one event (sent by the dispatcher).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub envelope: Arc<Envelope>,
    pub partition: Partition,
    pub offset: Offset,
    pub dispatched_at: Instant,
    /// The dispatch span's context, when the event is traced.
    pub parent: Option<opentelemetry::Context>,
}

impl Handler<Deliver> for TriggerActor {
    type Result = ();

    /// Queues the delivery and starts what may start.
    fn handle(&mut self, deliver: Deliver, ctx: &mut Context<Self>) {
        self.waiting.push_back(deliver);
        self.pump(ctx);
    }
}

/// Use this route from now on (deliveries in flight finish under the old one).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateRoute(pub Arc<TriggerRoute>);

impl Handler<UpdateRoute> for TriggerActor {
    type Result = ();

    /// Swaps the route.
    fn handle(&mut self, update: UpdateRoute, ctx: &mut Context<Self>) {
        self.context = Arc::new(self.context.with_route(update.0));
        self.pump(ctx);
    }
}

impl Handler<Shutdown> for TriggerActor {
    /// Stops the actor; deliveries in flight are abandoned (their offsets stay uncommitted).
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Crash> for TriggerActor {
    /// Panics (fault injection).
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!(
            "fault injection: trigger {} crashed on request",
            self.context.route.key
        );
    }
}
