//! One broker's write side, in two parts.
//!
//! [`Broker`], a cheap handle: the broker's admission rule (TTL, arrival time) and the append to
//! its channel. The gateway and triggers' replies call [`Broker::publish`] from their own task;
//! nothing about it is mutable, so no mailbox stands in between.
//!
//! [`BrokerActor`], what lives on: it probes the channel on a timer, and owns the parking lot
//! (where events whose delivery gave up are kept) with the broker's current triggers, for
//! listing and re-driving. Answers: [`ListParked`], [`Redrive`], [`UseRoute`], [`Shutdown`],
//! [`Crash`].

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;
use cloudevents::{AttributesReader, Event};
use opentelemetry::trace::TraceId;
use smallvec::SmallVec;

use super::{Crash, Shared, Shutdown};
use crate::channel::{AppendError, ChannelError, EventLog, Offset, Partition};
use crate::envelope::{
    AdmitError, Envelope, ERROR_CODE_EXTENSION, ERROR_DATA_EXTENSION, ERROR_DEST_EXTENSION,
    PARKED_AT_EXTENSION, PARKED_REASON_EXTENSION, PARKED_TRIGGER_EXTENSION,
    REDRIVE_TARGET_EXTENSION,
};
use crate::event_span;
use crate::journal::{Hop, Label, PendingHop, Stage};
use crate::metrics::{inc, BrokerMetrics};
use crate::resources::ObjectKey;
use crate::routes::BrokerRoute;
use crate::trace;

/// The group whose committed offsets mark which parked events were re-driven.
pub(super) const PARKING_GROUP: &str = "knactor-parking";

/// Publishes to one broker: admits events and appends them to its channel.
#[derive(Clone)]
pub struct Broker(Arc<BrokerInner>);

struct BrokerInner {
    /// The broker's channel topic.
    topic: String,
    shared: Arc<Shared>,
    log: Arc<dyn EventLog>,
    metrics: Arc<BrokerMetrics>,
    /// `<namespace>/<name>`, for spans and the journal.
    label: Label,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("broker", &self.0.label)
            .field("topic", &self.0.topic)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct BrokerActor {
    route: Arc<BrokerRoute>,
    broker: Broker,
}

impl BrokerActor {
    pub fn new(route: Arc<BrokerRoute>, broker: Broker) -> Self {
        Self { route, broker }
    }
}

/// How often a broker probes its channel when nothing else tells it whether the channel stores.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

impl Actor for BrokerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.probe(ctx);
        ctx.run_interval(PROBE_INTERVAL, |actor, ctx| actor.probe(ctx));
    }
}

impl BrokerActor {
    /// Asks the channel whether it can store now (`knactor status`, the `storing` gauge, and
    /// the Broker's Ready condition in a cluster).
    fn probe(&mut self, ctx: &mut Context<Self>) {
        let log = self.broker.0.log.clone();
        let topic = self.broker.0.topic.clone();
        let metrics = self.broker.0.metrics.clone();
        ctx.spawn(
            async move {
                metrics.channel.probed(log.probe(&topic).await);
            }
            .into_actor(self),
        );
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Admit(#[from] AdmitError),
    #[error(transparent)]
    Append(#[from] AppendError),
}

impl PublishError {
    /// The HTTP status that answers it (Knative's ingress contract): 400 for an event whose
    /// TTL is spent, 413 for one the channel can never hold, else 503 (retry later). The one
    /// mapping: the gateway's ingress, the local ingress and the broker's response metrics use it.
    pub fn status(&self) -> u16 {
        match self {
            Self::Admit(_) => 400,
            Self::Append(AppendError::TooLarge { .. }) => 413,
            Self::Append(_) => 503,
        }
    }

    /// How long to wait before trying again, when the channel says.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Append(AppendError::Full { retry_after, .. }) => Some(*retry_after),
            _ => None,
        }
    }
}

impl Broker {
    pub fn new(route: &BrokerRoute, shared: Arc<Shared>, log: Arc<dyn EventLog>) -> Self {
        Self(Arc::new(BrokerInner {
            topic: route.channel.topic.clone(),
            metrics: shared.metrics.broker(route.key()),
            label: Label::new(&route.key().to_string()),
            shared,
            log,
        }))
    }

    /// Admits every event (all or none), then appends them; returns once they are stored.
    pub async fn publish(&self, mut events: Vec<Event>) -> Result<(), PublishError> {
        let BrokerInner {
            topic,
            shared,
            log,
            metrics,
            label,
        } = &*self.0;
        let started = Instant::now();
        let now = Utc::now();
        let count = events.len() as u64;
        metrics.received.fetch_add(count, Ordering::Relaxed);
        let spans = append_spans(label, topic, &mut events);
        let journal = &shared.metrics.journal;
        let admitted: Result<Vec<Envelope>, AdmitError> = events
            .into_iter()
            .map(|event| Envelope::admit(event, shared.options.max_ttl, now))
            .collect();
        let envelopes = match admitted {
            Ok(envelopes) => envelopes,
            Err(refused) => {
                inc(&metrics.refused);
                metrics.responses.count(400);
                for span in &spans {
                    span.record("otel.status_code", "error");
                    span.record("error.type", "ttl_exhausted");
                }
                let AdmitError::TtlExhausted { id, event_source } = &refused;
                journal.record(
                    event_source,
                    id,
                    || None,
                    Hop::new(Stage::Refused, *label)
                        .status(400)
                        .detail(refused.to_string()),
                );
                return Err(refused.into());
            }
        };
        // Each event's Stored hop goes on its trail as the append starts, stamped with the
        // admission time (the dispatcher may read the event before this future resumes, and a
        // trail reads in time order); the live tail sees it once the append succeeds, and a
        // failed append turns it into a Refused hop. So the journal needs no copy of the events'
        // sources and ids to outlive the append, which takes the events.
        let pending: SmallVec<[PendingHop; 1]> = if journal.is_on() {
            envelopes
                .iter()
                .filter_map(|envelope| {
                    let mut hop = Hop::new(Stage::Stored, *label);
                    hop.at = now.into();
                    journal.record_pending(
                        envelope.source(),
                        envelope.id(),
                        || trace_id_of(envelope),
                        hop,
                    )
                })
                .collect()
        } else {
            SmallVec::new()
        };
        match log.append(topic, envelopes).await {
            Ok(()) => {
                metrics.channel.stored();
                metrics.accepted.fetch_add(count, Ordering::Relaxed);
                metrics.responses.count_many(202, count);
                metrics.append_duration.observe(started.elapsed());
                for stored in pending {
                    journal.confirm(stored);
                }
                Ok(())
            }
            Err(error) => {
                inc(&metrics.refused);
                let error = PublishError::from(error);
                let status = error.status();
                if status == 503 {
                    metrics.channel.refused(error.to_string());
                }
                metrics.responses.count(status);
                for span in &spans {
                    span.record("otel.status_code", "error");
                    span.record("otel.status_description", error.to_string());
                }
                for refused in pending {
                    journal.amend(
                        refused,
                        Hop::new(Stage::Refused, *label)
                            .status(status)
                            .detail(error.to_string()),
                    );
                }
                Err(error)
            }
        }
    }
}

/// The spans of one append, one per context the events carry (the ingress span of their producer,
/// a source, or the delivery whose reply this is), each a child of that context; every event is
/// stamped with its own, so the events of a batch from several producers stay in their traces.
fn append_spans(broker: &str, topic: &str, events: &mut [Event]) -> Vec<tracing::Span> {
    if !trace::exporting() {
        return Vec::new();
    }
    let make = |first: &Event, count: usize| {
        event_span!(
            "knactor.append",
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            error.type = tracing::field::Empty,
            messaging.system = "knactor",
            messaging.operation.type = "send",
            messaging.destination.name = topic,
            messaging.batch.message_count = count,
            knactor.broker = broker,
            cloudevents.event_id = first.id(),
            cloudevents.event_type = first.ty(),
            cloudevents.event_source = first.source().as_str(),
        )
    };
    trace::span_per_group(
        events,
        trace::TraceParent::of_event,
        trace::At::Inner,
        make,
        |_| {},
    )
}

/// The W3C trace id of a sampled event, for the journal (to look the trace up in Jaeger).
pub(super) fn trace_id_of(envelope: &Envelope) -> Option<TraceId> {
    if !envelope.has_traceparent() || trace::sampled_flag(envelope.event()) != Some(true) {
        return None;
    }
    trace::TraceParent::of_event(envelope.event()).map(|parent| parent.trace_id)
}

/// A parked event, as listed.
#[derive(Debug, Clone)]
pub struct ParkedEvent {
    pub partition: Partition,
    pub offset: Offset,
    /// `<namespace>/<name>` of the trigger whose delivery gave up.
    pub trigger: String,
    pub reason: String,
    pub parked_at: String,
    pub event: Event,
}

/// List the events parked and not yet re-driven (at most `max`).
#[derive(Debug, Message)]
#[rtype(result = "Result<ParkedList, ChannelError>")]
pub struct ListParked {
    pub max: usize,
}

/// Parked events, and how many there are in all.
#[derive(Debug, Clone, Default)]
pub struct ParkedList {
    pub total: u64,
    pub events: Vec<ParkedEvent>,
}

impl Handler<ListParked> for BrokerActor {
    type Result = ResponseFuture<Result<ParkedList, ChannelError>>;

    /// Reads the parking lot from the re-drive mark to its end.
    fn handle(&mut self, list: ListParked, _: &mut Context<Self>) -> Self::Result {
        let log = self.broker.0.log.clone();
        let topic = self.route.channel.park_topic();
        Box::pin(async move {
            let mut parked = ParkedList::default();
            for partition in log.offsets(&topic, PARKING_GROUP).await? {
                let from = partition
                    .committed
                    .unwrap_or(partition.low)
                    .max(partition.low);
                parked.total += (partition.high - from).max(0) as u64;
                let room = list.max.saturating_sub(parked.events.len());
                if room == 0 {
                    continue;
                }
                let read = log.read(&topic, partition.partition, from, room).await?;
                parked.events.extend(read.records.iter().map(|record| {
                    let event = record.envelope.event();
                    let text = |name: &str| {
                        event
                            .extension(name)
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    };
                    ParkedEvent {
                        partition: record.partition,
                        offset: record.offset,
                        trigger: text(PARKED_TRIGGER_EXTENSION),
                        reason: text(PARKED_REASON_EXTENSION),
                        parked_at: text(PARKED_AT_EXTENSION),
                        event: event.clone(),
                    }
                }));
            }
            Ok(parked)
        })
    }
}

/// Deliver parked events again: to the trigger that parked them, and only to it. With a trigger
/// named, only its parked events go; with `only`, only those of the parking lot's positions
/// (partition, offset) as listed; the others stay parked.
#[derive(Debug, Message)]
#[rtype(result = "Result<RedriveReport, ChannelError>")]
pub struct Redrive {
    pub trigger: Option<ObjectKey>,
    pub only: Option<BTreeSet<(Partition, Offset)>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Put back into the broker for their trigger.
    pub redriven: u64,
    /// Left parked: for another trigger than the one asked, or for a trigger that no longer exists.
    pub kept: u64,
}

impl Handler<Redrive> for BrokerActor {
    type Result = ResponseFuture<Result<RedriveReport, ChannelError>>;

    /// Moves parked events back into the channel, marked for their trigger. The parking lot is an
    /// append-only log, so events that stay parked are appended to it again before the re-drive
    /// mark moves past them.
    fn handle(&mut self, redrive: Redrive, _: &mut Context<Self>) -> Self::Result {
        let log = self.broker.0.log.clone();
        let topic = self.broker.0.topic.clone();
        let park_topic = self.route.channel.park_topic();
        let live: BTreeSet<String> = self
            .route
            .triggers
            .iter()
            .map(|trigger| trigger.key.to_string())
            .collect();
        let wanted = redrive.trigger.map(|key| key.to_string());
        let only = redrive.only;
        Box::pin(async move {
            let mut report = RedriveReport::default();
            for partition in log.offsets(&park_topic, PARKING_GROUP).await? {
                let mut from = partition
                    .committed
                    .unwrap_or(partition.low)
                    .max(partition.low);
                let mut empty_reads = 0;
                while from < partition.high {
                    let read = log
                        .read(&park_topic, partition.partition, from, 256)
                        .await?;
                    if read.next <= from {
                        // Nothing came back (a read may time out): try again, a few times.
                        empty_reads += 1;
                        if empty_reads > 5 {
                            break;
                        }
                        continue;
                    }
                    empty_reads = 0;
                    let next = read.next;
                    for record in read.records.iter().filter(|r| r.offset < partition.high) {
                        let event = record.envelope.event();
                        let trigger = event
                            .extension(PARKED_TRIGGER_EXTENSION)
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        let selected = wanted.as_ref().is_none_or(|wanted| *wanted == trigger)
                            && only.as_ref().is_none_or(|only| {
                                only.contains(&(record.partition, record.offset))
                            });
                        if selected && live.contains(&trigger) {
                            let mut event = event.clone();
                            for name in [
                                PARKED_TRIGGER_EXTENSION,
                                PARKED_REASON_EXTENSION,
                                PARKED_AT_EXTENSION,
                                ERROR_DEST_EXTENSION,
                                ERROR_CODE_EXTENSION,
                                ERROR_DATA_EXTENSION,
                            ] {
                                event.remove_extension(name);
                            }
                            event.set_extension(REDRIVE_TARGET_EXTENSION, trigger);
                            log.append(&topic, vec![Envelope::from_stored(event)])
                                .await
                                .map_err(|error| ChannelError::Unavailable(error.to_string()))?;
                            report.redriven += 1;
                        } else {
                            log.append(&park_topic, vec![Envelope::from_stored(event.clone())])
                                .await
                                .map_err(|error| ChannelError::Unavailable(error.to_string()))?;
                            report.kept += 1;
                        }
                    }
                    from = next.min(partition.high);
                    log.commit_offsets(&park_topic, PARKING_GROUP, &[(partition.partition, from)])
                        .await?;
                }
            }
            Ok(report)
        })
    }
}

/// Use this route from now on: the broker's triggers changed (a reload, a Trigger applied).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UseRoute(pub Arc<BrokerRoute>);

impl Handler<UseRoute> for BrokerActor {
    type Result = ();

    /// Swaps the route (a re-drive then knows every trigger the broker has now).
    fn handle(&mut self, route: UseRoute, _: &mut Context<Self>) {
        self.route = route.0;
    }
}

impl Handler<Shutdown> for BrokerActor {
    /// Stops the actor.
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Crash> for BrokerActor {
    /// Panics (fault injection).
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!(
            "fault injection: broker {} crashed on request",
            self.route.key()
        );
    }
}
