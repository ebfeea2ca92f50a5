//! `DispatcherActor`: the read side of one broker.
//!
//! Owns the broker's group subscription, its compiled [`FilterIndex`], the offset bookkeeping of
//! every assigned partition, and the commits. Each record is read once and matched once against all
//! triggers; each matching trigger gets a [`Deliver`].
//!
//! A trigger may have at most `trigger_queue` deliveries outstanding. When a record finds a trigger
//! full, the trigger **falls behind** on that partition: the shared read goes on without it, and the
//! trigger later **catches up on its own** by reading the partition from where it fell behind
//! ([`EventLog::read`]), until it reaches the shared read position and rejoins. A slow subscriber
//! therefore never holds back the others, and the commit never passes a record a lagging trigger
//! still owes:
//!
//! ```text
//!   committable(p) = min( tracker(p).committable(),          // contiguous done prefix
//!                         cursor(p) of every lagging trigger )  // what they have not read yet
//! ```
//!
//! Answers: [`ApplyTriggers`], [`Settled`], [`Shutdown`], [`Crash`]; consumes the subscription
//! stream ([`ChannelEvent`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::broker::trace_id_of;
use super::trigger::{Deliver, TriggerActor};
use super::{Crash, Shared, Shutdown};
use crate::channel::{
    ChannelError, ChannelEvent, Committer, EventLog, Offset, Partition, Record, StartAt,
};
use crate::event_span;
use crate::filter::{Filter, FilterIndex};
use crate::journal::{Detail, Hop, Stage};
use crate::metrics::{inc, BrokerMetrics, TriggerMetrics};
use crate::offsets::OffsetTracker;
use crate::resources::ObjectKey;
use crate::routes::{BrokerRoute, StartPosition};
use crate::trace;

/// Records fetched per catch-up read.
const CATCH_UP_BATCH: usize = 256;

pub struct DispatcherActor {
    broker: ObjectKey,
    topic: String,
    group: String,
    shared: Arc<Shared>,
    log: Arc<dyn EventLog>,
    metrics: Arc<BrokerMetrics>,
    index: FilterIndex<ObjectKey>,
    triggers: HashMap<ObjectKey, TriggerSlot>,
    trackers: BTreeMap<Partition, OffsetTracker>,
    committer: Option<Box<dyn Committer>>,
    /// Bytes the group member received from the channel (Kafka), for the metrics.
    bytes_read: Option<Arc<std::sync::atomic::AtomicU64>>,
    committed: BTreeMap<Partition, Offset>,
    /// Records (not re-driven ones) the shared read took from each partition, for the triggers'
    /// `filtered` counts.
    seen: BTreeMap<Partition, u64>,
    /// `<namespace>/<name>`, for spans and the journal.
    label: Arc<str>,
    /// Reused per record.
    scratch: Vec<usize>,
    subscribed: bool,
}

/// A trigger as the dispatcher sees it.
struct TriggerSlot {
    addr: Addr<TriggerActor>,
    filter: Filter,
    metrics: Arc<TriggerMetrics>,
    /// Deliveries sent and not yet settled.
    outstanding: HashSet<(Partition, Offset)>,
    /// Partitions on which the trigger fell behind: the next offset it has to read itself.
    lagging: BTreeMap<Partition, Lag>,
    /// A trigger added to a running broker takes no event the broker accepted before this time
    /// (its start position), even one the dispatcher had not read yet when the trigger came.
    not_before: Option<DateTime<Utc>>,
    /// For the `filtered` count: the dispatcher's `seen` per partition at the last settlement,
    marks: BTreeMap<Partition, u64>,
    /// and the shared records since then that matched the trigger's filter.
    passed: u64,
}

struct Lag {
    cursor: Offset,
    reading: bool,
}

impl DispatcherActor {
    pub fn new(route: &BrokerRoute, shared: Arc<Shared>, log: Arc<dyn EventLog>) -> Self {
        let broker = route.key().clone();
        Self {
            topic: route.channel.topic.clone(),
            group: route.channel.dispatcher_group(),
            metrics: shared.metrics.broker(&broker),
            broker,
            shared,
            log,
            index: FilterIndex::default(),
            triggers: HashMap::new(),
            trackers: BTreeMap::new(),
            committer: None,
            bytes_read: None,
            committed: BTreeMap::new(),
            seen: BTreeMap::new(),
            label: Arc::from(route.key().to_string()),
            scratch: Vec::new(),
            subscribed: false,
        }
    }

    fn capacity(&self) -> usize {
        self.shared.options.trigger_queue.max(1)
    }

    fn subscribe(&mut self, ctx: &mut Context<Self>) {
        match self
            .log
            .subscribe(&self.topic, &self.group, StartAt::Latest)
        {
            Ok(subscription) => {
                self.committer = Some(subscription.committer);
                self.bytes_read = subscription.bytes_read;
                ctx.add_stream(subscription.events);
                self.subscribed = true;
            }
            Err(error) => {
                error!(broker = %self.broker, "cannot subscribe to {}: {error}", self.topic);
                ctx.stop();
            }
        }
    }

    fn on_records(&mut self, records: Vec<Record>) {
        let capacity = self.capacity();
        let now = Instant::now();
        for record in records {
            inc(&self.metrics.dispatched);
            let Some(tracker) = self.trackers.get_mut(&record.partition) else {
                continue;
            };
            let redriven = record.envelope.redrive_target().is_some();
            if !redriven {
                *self.seen.entry(record.partition).or_default() += 1;
            }
            let span = dispatch_span(&self.label, &self.topic, &record);
            let parent = context_of(&span);
            let mut owed = 0;
            let targets: Vec<ObjectKey> = match record.envelope.redrive_target() {
                Some(target) => match target.parse::<ObjectKey>() {
                    Ok(key) if self.triggers.contains_key(&key) => vec![key],
                    _ => {
                        warn!(broker = %self.broker, id = record.envelope.id(), target, "re-driven event for a trigger that no longer exists; skipped");
                        Vec::new()
                    }
                },
                None => {
                    self.index
                        .matching(record.envelope.event(), &mut self.scratch);
                    self.scratch
                        .iter()
                        .filter_map(|&position| {
                            self.index.get(position).map(|(key, _)| key.clone())
                        })
                        .collect()
                }
            };
            span.record("knactor.matched", targets.len());
            let journal = &self.shared.metrics.journal;
            if journal.is_on() {
                let stage = if targets.is_empty() {
                    Stage::Unmatched
                } else {
                    Stage::Dispatched
                };
                journal.record(
                    record.envelope.source(),
                    record.envelope.id(),
                    || trace_id_of(&record.envelope),
                    Hop::new(stage, &self.label)
                        .position(record.partition, record.offset)
                        .with(Detail::Matched(targets.len())),
                );
            }
            if targets.is_empty() {
                inc(&self.metrics.unmatched);
            }
            for key in targets {
                let Some(slot) = self.triggers.get_mut(&key) else {
                    continue;
                };
                if slot.lagging.contains_key(&record.partition) {
                    continue;
                }
                if !redriven {
                    slot.passed += 1;
                }
                if slot.too_early(&record) {
                    continue;
                }
                if slot.outstanding.len() >= capacity {
                    info!(broker = %self.broker, trigger = %key, partition = record.partition, offset = record.offset,
                        "trigger is full; it falls behind and will catch up on its own");
                    slot.settle(&self.seen);
                    slot.lagging.insert(
                        record.partition,
                        Lag {
                            cursor: record.offset,
                            reading: false,
                        },
                    );
                    continue;
                }
                owed += 1;
                slot.send(&record, now, parent.clone());
            }
            tracker.register(record.offset, owed);
        }
    }

    fn on_settled(&mut self, settled: Settled, ctx: &mut Context<Self>) {
        let Some(slot) = self.triggers.get_mut(&settled.trigger) else {
            return;
        };
        if !slot
            .outstanding
            .remove(&(settled.partition, settled.offset))
        {
            return;
        }
        if let Some(tracker) = self.trackers.get_mut(&settled.partition) {
            tracker.complete(settled.offset);
        }
        let key = settled.trigger;
        self.catch_up(&key, ctx);
    }

    /// Starts a read for every partition on which `trigger` lags, when it has room again.
    fn catch_up(&mut self, trigger: &ObjectKey, ctx: &mut Context<Self>) {
        let capacity = self.capacity();
        let Some(slot) = self.triggers.get_mut(trigger) else {
            return;
        };
        if slot.lagging.is_empty() || slot.outstanding.len() * 2 > capacity {
            return;
        }
        let reads: Vec<(Partition, Offset)> = slot
            .lagging
            .iter_mut()
            .filter(|(_, lag)| !lag.reading)
            .map(|(&partition, lag)| {
                lag.reading = true;
                (partition, lag.cursor)
            })
            .collect();
        for (partition, from) in reads {
            let log = self.log.clone();
            let topic = self.topic.clone();
            let key = trigger.clone();
            let read = async move { log.read(&topic, partition, from, CATCH_UP_BATCH).await };
            ctx.spawn(read.into_actor(self).map(move |result, actor, ctx| {
                actor.on_caught_up(key, partition, result, ctx);
            }));
        }
    }

    fn on_caught_up(
        &mut self,
        trigger: ObjectKey,
        partition: Partition,
        result: Result<Vec<Record>, ChannelError>,
        ctx: &mut Context<Self>,
    ) {
        let capacity = self.capacity();
        let now = Instant::now();
        let Some(tracker) = self.trackers.get_mut(&partition) else {
            return;
        };
        let Some(slot) = self.triggers.get_mut(&trigger) else {
            return;
        };
        let Some(lag) = slot.lagging.get_mut(&partition) else {
            return;
        };
        lag.reading = false;
        let records = match result {
            Ok(records) => records,
            Err(error) => {
                warn!(broker = %self.broker, %trigger, partition, "catch-up read failed, retrying in 1s: {error}");
                ctx.run_later(std::time::Duration::from_secs(1), move |actor, ctx| {
                    actor.catch_up(&trigger, ctx);
                });
                return;
            }
        };
        // Reached the shared read position: from there on the shared read serves this trigger.
        let shared_position = tracker.read_up_to();
        let mut cursor = lag.cursor;
        let mut caught_up = records.is_empty();
        for record in &records {
            if record.offset >= shared_position {
                caught_up = true;
                break;
            }
            if slot.outstanding.len() >= capacity {
                break;
            }
            cursor = record.offset + 1;
            if slot.wants(&trigger, record) {
                tracker.reopen(record.offset);
                let span = dispatch_span(&self.label, &self.topic, record);
                span.record("knactor.matched", 1);
                slot.send(record, now, context_of(&span));
            }
        }
        if caught_up || cursor >= shared_position {
            slot.lagging.remove(&partition);
            // From here on the shared read considers this partition for the trigger again.
            slot.marks
                .insert(partition, self.seen.get(&partition).copied().unwrap_or(0));
            info!(broker = %self.broker, %trigger, partition, "trigger caught up");
        } else if let Some(lag) = slot.lagging.get_mut(&partition) {
            lag.cursor = cursor;
        }
        self.catch_up(&trigger, ctx);
    }

    fn committable(&self) -> Vec<(Partition, Offset)> {
        self.trackers
            .iter()
            .map(|(&partition, tracker)| {
                let lag_floor = self
                    .triggers
                    .values()
                    .filter_map(|slot| slot.lagging.get(&partition).map(|lag| lag.cursor))
                    .min();
                let offset = match lag_floor {
                    Some(floor) => floor.min(tracker.committable()),
                    None => tracker.committable(),
                };
                (partition, offset)
            })
            .filter(|(partition, offset)| {
                self.committed
                    .get(partition)
                    .is_none_or(|done| offset > done)
            })
            .collect()
    }

    fn commit(&mut self) {
        for slot in self.triggers.values_mut() {
            slot.settle(&self.seen);
        }
        if let Some(bytes) = &self.bytes_read {
            let read = bytes.load(std::sync::atomic::Ordering::Relaxed);
            self.metrics
                .channel_bytes_read
                .store(read, std::sync::atomic::Ordering::Relaxed);
        }
        let offsets = self.committable();
        if offsets.is_empty() {
            return;
        }
        let Some(committer) = &self.committer else {
            return;
        };
        match committer.commit(&offsets) {
            Ok(()) => self.committed.extend(offsets),
            Err(error) => warn!(broker = %self.broker, "commit failed, will retry: {error}"),
        }
    }

    fn apply(&mut self, apply: ApplyTriggers, ctx: &mut Context<Self>) {
        let ApplyTriggers { route, triggers } = apply;
        let mut addrs = triggers;
        let mut slots = HashMap::with_capacity(route.triggers.len());
        for trigger in &route.triggers {
            let Some(addr) = addrs.remove(&trigger.key) else {
                continue;
            };
            let slot = match self.triggers.remove(&trigger.key) {
                Some(mut existing) => {
                    existing.addr = addr;
                    existing.filter = trigger.filter.clone();
                    existing
                }
                None => {
                    // A trigger added to a running broker starts where its start position says:
                    // from now (latest), from a time, or from everything still held (earliest,
                    // and a time, read on its own from the start of each partition).
                    let not_before = match trigger.start {
                        _ if !self.subscribed => None,
                        StartPosition::Latest => Some(Utc::now()),
                        StartPosition::Time(since) => Some(since),
                        StartPosition::Earliest => None,
                    };
                    let mut slot = TriggerSlot {
                        addr,
                        filter: trigger.filter.clone(),
                        metrics: self.shared.metrics.trigger(&route.broker.key, &trigger.key),
                        outstanding: HashSet::new(),
                        lagging: BTreeMap::new(),
                        not_before,
                        marks: self.seen.clone(),
                        passed: 0,
                    };
                    if self.subscribed && trigger.start != StartPosition::Latest {
                        for &partition in self.trackers.keys() {
                            slot.lagging.insert(
                                partition,
                                Lag {
                                    cursor: 0,
                                    reading: false,
                                },
                            );
                        }
                    }
                    slot
                }
            };
            slots.insert(trigger.key.clone(), slot);
        }
        // Triggers that went away owe nothing any more.
        for (key, removed) in self.triggers.drain() {
            for (partition, offset) in removed.outstanding {
                if let Some(tracker) = self.trackers.get_mut(&partition) {
                    tracker.complete(offset);
                }
            }
            info!(broker = %self.broker, trigger = %key, "trigger removed");
        }
        self.triggers = slots;
        self.index = FilterIndex::build(
            route
                .triggers
                .iter()
                .filter(|trigger| self.triggers.contains_key(&trigger.key))
                .map(|trigger| (trigger.key.clone(), trigger.filter.clone()))
                .collect(),
        );
        if !self.subscribed {
            self.subscribe(ctx);
        } else {
            let keys: Vec<ObjectKey> = self.triggers.keys().cloned().collect();
            for key in keys {
                self.catch_up(&key, ctx);
            }
        }
    }
}

impl TriggerSlot {
    fn send(&mut self, record: &Record, now: Instant, parent: Option<opentelemetry::Context>) {
        self.outstanding.insert((record.partition, record.offset));
        inc(&self.metrics.matched);
        self.addr.do_send(Deliver {
            envelope: record.envelope.clone(),
            partition: record.partition,
            offset: record.offset,
            dispatched_at: now,
            parent,
        });
    }

    /// Whether this trigger wants a record it reads on its own.
    fn wants(&self, key: &ObjectKey, record: &Record) -> bool {
        if let Some(target) = record.envelope.redrive_target() {
            return target == key.to_string();
        }
        if self.too_early(record) {
            return false;
        }
        let matches = self.filter.matches(record.envelope.event());
        if !matches {
            inc(&self.metrics.filtered);
        }
        matches
    }

    /// Adds to the trigger's `filtered` count the shared records its filter refused since the
    /// last settlement. The shared read only evaluates the filters that match (the index), so
    /// this counts instead: records read on each partition the trigger does not lag on, less
    /// those it was handed or skipped (`passed`).
    fn settle(&mut self, seen: &BTreeMap<Partition, u64>) {
        let mut considered = 0;
        for (&partition, &count) in seen {
            let mark = self.marks.insert(partition, count).unwrap_or(0);
            if !self.lagging.contains_key(&partition) {
                considered += count.saturating_sub(mark);
            }
        }
        let filtered = considered.saturating_sub(self.passed);
        self.passed = 0;
        if filtered > 0 {
            self.metrics
                .filtered
                .fetch_add(filtered, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether the broker accepted `record` before this trigger's start.
    fn too_early(&self, record: &Record) -> bool {
        let Some(not_before) = self.not_before else {
            return false;
        };
        record
            .envelope
            .arrival_time()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .is_some_and(|arrived| arrived.with_timezone(&Utc) < not_before)
    }
}

impl Actor for DispatcherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.shared.options.commit_interval, |actor, _| {
            actor.commit()
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.commit();
    }
}

impl StreamHandler<Result<ChannelEvent, ChannelError>> for DispatcherActor {
    /// Assignment changes and records from the group subscription.
    fn handle(&mut self, event: Result<ChannelEvent, ChannelError>, _: &mut Context<Self>) {
        match event {
            Ok(ChannelEvent::Records(records)) => self.on_records(records),
            Ok(ChannelEvent::Assigned(partitions)) => {
                for (partition, offset) in partitions {
                    info!(broker = %self.broker, partition, offset, "partition assigned");
                    self.trackers.insert(partition, OffsetTracker::new(offset));
                    self.committed.insert(partition, offset);
                }
            }
            Ok(ChannelEvent::Revoked(partitions)) => {
                for slot in self.triggers.values_mut() {
                    slot.settle(&self.seen);
                }
                for partition in partitions {
                    info!(broker = %self.broker, partition, "partition revoked");
                    self.trackers.remove(&partition);
                    self.committed.remove(&partition);
                    self.seen.remove(&partition);
                    for slot in self.triggers.values_mut() {
                        slot.outstanding.retain(|(p, _)| *p != partition);
                        slot.lagging.remove(&partition);
                        slot.marks.remove(&partition);
                    }
                }
            }
            Err(error) => error!(broker = %self.broker, "channel read failed: {error}"),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        warn!(broker = %self.broker, "subscription ended; the dispatcher stops and is restarted by the node");
        ctx.stop();
    }
}

/// The triggers of the broker, with their actors (sent at start and on every route change). The
/// dispatcher starts reading only once it has them, so no record is read before its triggers exist.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyTriggers {
    pub route: Arc<BrokerRoute>,
    pub triggers: HashMap<ObjectKey, Addr<TriggerActor>>,
}

impl Handler<ApplyTriggers> for DispatcherActor {
    type Result = ();

    /// Recompiles the filter index; new triggers start, removed ones release what they owed.
    fn handle(&mut self, apply: ApplyTriggers, ctx: &mut Context<Self>) {
        self.apply(apply, ctx);
    }
}

/// A delivery reached its final outcome (sent by a trigger).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Settled {
    pub trigger: ObjectKey,
    pub partition: Partition,
    pub offset: Offset,
}

impl Handler<Settled> for DispatcherActor {
    type Result = ();

    /// Marks the delivery done; a lagging trigger with room again reads on.
    fn handle(&mut self, settled: Settled, ctx: &mut Context<Self>) {
        self.on_settled(settled, ctx);
    }
}

impl Handler<Shutdown> for DispatcherActor {
    /// Commits what is done and stops.
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Crash> for DispatcherActor {
    /// Panics (fault injection).
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!(
            "fault injection: dispatcher of {} crashed on request",
            self.broker
        );
    }
}

/// The span of one record read from the channel and matched against the triggers: a child of the
/// append that stored it (the context the record carries).
fn dispatch_span(broker: &str, topic: &str, record: &Record) -> tracing::Span {
    use cloudevents::AttributesReader as _;
    if !trace::exporting() {
        return tracing::Span::none();
    }
    let event = record.envelope.event();
    if !trace::traced(trace::sampled_flag(event), trace::At::Inner) {
        return tracing::Span::none();
    }
    let parent = trace::TraceParent::of_event(event);
    let span = event_span!(
        "knactor.dispatch",
        otel.kind = "consumer",
        messaging.system = "knactor",
        messaging.operation.type = "process",
        messaging.destination.name = topic,
        messaging.destination.partition.id = record.partition,
        messaging.kafka.offset = record.offset,
        knactor.broker = broker,
        knactor.matched = tracing::field::Empty,
        cloudevents.event_id = event.id(),
        cloudevents.event_type = event.ty(),
        cloudevents.event_source = event.source().as_str(),
    );
    trace::follow_context(&span, parent.as_ref());
    span
}

/// What deliveries hang under: the span's OpenTelemetry context, when it is traced.
fn context_of(span: &tracing::Span) -> Option<opentelemetry::Context> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    (!span.is_disabled()).then(|| span.context())
}
