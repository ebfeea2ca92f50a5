//! `DispatcherActor`: the read side of one broker.
//!
//! Owns the broker's group subscription, its compiled [`FilterIndex`], the broker's [`Ledger`]
//! (what every trigger owes on every assigned partition) and the commits. Each record is read
//! once and matched once against all triggers; each matching trigger gets a [`Deliver`].
//!
//! A trigger may have at most `trigger_queue` deliveries outstanding. When a record finds a trigger
//! full, the trigger **falls behind** on that partition: the shared read goes on without it, and the
//! trigger later **catches up on its own** by reading the partition from where it fell behind
//! ([`EventLog::read`]), until it reaches the shared read position and rejoins. A slow subscriber
//! therefore never holds back the others, and the commit never passes a record a lagging trigger
//! still owes. The rules of that bookkeeping, and the law they keep, are the ledger's: this actor
//! feeds it what happens and does what it answers.
//!
//! Answers: [`ApplyTriggers`], [`Settled`], [`Shutdown`], [`Crash`]; consumes the subscription
//! stream ([`ChannelEvent`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use tracing::{error, info, warn};

use super::broker::trace_id_of;
use super::trigger::{Deliver, Settled, TriggerActor};
use super::{Crash, Shared, Shutdown};
use crate::channel::{
    ChannelError, ChannelEvent, Committer, EventLog, Offset, Partition, Position, ReadBatch,
    ReadStats, Record, Release, StartAt,
};
use crate::event_span;
use crate::filter::{Filter, FilterIndex};
use crate::journal::{Detail, Hop, Label, Stage};
use crate::ledger::{CatchUp, Handoff, Ledger};
use crate::metrics::{inc, BrokerMetrics, PartitionGauges, TriggerMetrics};
use crate::resources::ObjectKey;
use crate::routes::{BrokerRoute, StartPosition};
use crate::trace;

/// Records fetched per catch-up read.
const CATCH_UP_BATCH: usize = 256;
/// How long a trigger waits before reading again after a catch-up read that returned nothing.
const EMPTY_READ_PAUSE: Duration = Duration::from_millis(100);
/// How long a trigger waits before reading again after a catch-up read that failed.
const FAILED_READ_PAUSE: Duration = Duration::from_secs(1);
/// How often the partitions' and triggers' positions are published to the metrics.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long revoked partitions' deliveries may take to finish before the partitions go anyway
/// (the Kafka channel waits a little longer for the answer).
const HANDOVER_GRACE: Duration = Duration::from_secs(4);
/// How long a commit the dispatcher waits for (a handover, a drain) may take.
const COMMIT_WAIT: Duration = Duration::from_secs(1);

pub struct DispatcherActor {
    broker: ObjectKey,
    topic: String,
    group: String,
    shared: Arc<Shared>,
    log: Arc<dyn EventLog>,
    metrics: Arc<BrokerMetrics>,
    /// Keys shared with the lists of targets each record makes (a clone is a count, not two
    /// strings).
    index: FilterIndex<Arc<ObjectKey>>,
    /// Looked up for every record a trigger takes (a fast hash: the keys are the node's own).
    triggers: FxHashMap<ObjectKey, TriggerSlot>,
    /// What every trigger owes on every assigned partition, and what may be committed.
    ledger: Ledger<ObjectKey>,
    committer: Option<Arc<dyn Committer>>,
    /// What the group member learns about the topic (bytes read, partition ends).
    stats: Arc<ReadStats>,
    /// Records (not re-driven ones) the shared read took from each partition, for the triggers'
    /// `filtered` counts.
    seen: BTreeMap<Partition, u64>,
    /// `<namespace>/<name>`, for spans and the journal.
    label: Label,
    /// Reused per record.
    scratch: Vec<usize>,
    targets: Vec<Arc<ObjectKey>>,
    wanting: Vec<Arc<ObjectKey>>,
    subscribed: bool,
    /// Partitions the channel is about to revoke, finishing what they owe first.
    handovers: Vec<Handover>,
    /// What a catch-up read brought beyond the room its trigger had, kept for that trigger's
    /// next read of the partition (at most one read's worth each): a trigger behind reads the
    /// channel once per batch, not once per slot that frees up.
    read_ahead: HashMap<(ObjectKey, Partition), ReadBatch>,
    /// Set once the node stops: finish, commit, report.
    draining: Option<Draining>,
}

impl fmt::Debug for DispatcherActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherActor")
            .field("broker", &self.broker)
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("triggers", &self.triggers.keys())
            .field("subscribed", &self.subscribed)
            .field("handovers", &self.handovers.len())
            .field("draining", &self.draining.is_some())
            .finish_non_exhaustive()
    }
}

/// Partitions on their way to another reader: deliveries handed out for them finish (at most
/// until `deadline`), then the commit, then the channel lets them go.
struct Handover {
    release: Release,
    deadline: Instant,
}

struct Draining {
    deadline: Instant,
    reply: Option<tokio::sync::oneshot::Sender<DrainReport>>,
    /// Done or timed out: the last commit and the report are under way.
    finishing: bool,
}

/// A trigger as the dispatcher sees it (what it owes is in the ledger).
struct TriggerSlot {
    addr: Addr<TriggerActor>,
    filter: Filter,
    metrics: Arc<TriggerMetrics>,
    /// A trigger added to a running broker takes no event the broker accepted before this time
    /// (its start position), even one the dispatcher had not read yet when the trigger came.
    not_before: Option<DateTime<Utc>>,
    /// For the `filtered` count: the dispatcher's `seen` per partition at the last settlement,
    marks: BTreeMap<Partition, u64>,
    /// and the shared records since then that matched the trigger's filter.
    passed: u64,
}

impl DispatcherActor {
    pub fn new(route: &BrokerRoute, shared: Arc<Shared>, log: Arc<dyn EventLog>) -> Self {
        let broker = route.key().clone();
        Self {
            topic: route.channel.topic.clone(),
            group: route.channel.dispatcher_group(),
            metrics: shared.metrics.broker(&broker),
            ledger: Ledger::new(shared.options.trigger_queue),
            broker,
            shared,
            log,
            index: FilterIndex::default(),
            triggers: FxHashMap::default(),
            committer: None,
            stats: Arc::default(),
            seen: BTreeMap::new(),
            label: Label::new(&route.key().to_string()),
            scratch: Vec::new(),
            targets: Vec::new(),
            wanting: Vec::new(),
            subscribed: false,
            handovers: Vec::new(),
            read_ahead: HashMap::new(),
            draining: None,
        }
    }

    fn subscribe(&mut self, ctx: &mut Context<Self>) {
        // The group's position was committed before the broker took its first event (see the
        // node), so where a member with no commit starts only matters if that commit is lost or
        // out of range: reading from the earliest retained record then repeats, never skips.
        match self
            .log
            .subscribe(&self.topic, &self.group, StartAt::Earliest)
        {
            Ok(subscription) => {
                self.committer = Some(Arc::from(subscription.committer));
                self.stats = subscription.stats;
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
        let now = Instant::now();
        let mut targets = std::mem::take(&mut self.targets);
        let mut wanting = std::mem::take(&mut self.wanting);
        for record in records {
            inc(&self.metrics.dispatched);
            if !self.ledger.takes(record.partition, record.offset) {
                continue;
            }
            let redrive_target = record.envelope.redrive_target();
            let redriven = redrive_target.is_some();
            if !redriven {
                *self.seen.entry(record.partition).or_default() += 1;
            }
            let span = dispatch_span(&self.label, &self.topic, &record);
            let parent = context_of(&span);
            targets.clear();
            match redrive_target {
                Some(target) => match target.parse::<ObjectKey>() {
                    Ok(key) if self.triggers.contains_key(&key) => targets.push(Arc::new(key)),
                    _ => {
                        warn!(broker = %self.broker, id = record.envelope.id(), target, "re-driven event for a trigger that no longer exists; skipped");
                    }
                },
                None => {
                    self.index
                        .matching(record.envelope.event(), &mut self.scratch);
                    targets.extend(
                        self.scratch
                            .iter()
                            .filter_map(|&position| self.index.get(position).map(|(key, _)| key))
                            .cloned(),
                    );
                }
            }
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
                    Hop::new(stage, self.label)
                        .position(record.partition, record.offset)
                        .with(Detail::Matched(targets.len())),
                );
                if !redriven && targets.len() < self.triggers.len() {
                    // Some trigger did not take it: keep what explains why.
                    journal.keep_event(&record.envelope);
                }
            }
            if targets.is_empty() {
                inc(&self.metrics.unmatched);
            }
            // Triggers lagging on the partition read the record themselves; the others take it
            // now, unless it came before their start.
            wanting.clear();
            for key in targets.drain(..) {
                let Some(slot) = self.triggers.get_mut(&*key) else {
                    continue;
                };
                if self.ledger.is_lagging(&*key, record.partition) {
                    continue;
                }
                if !redriven {
                    slot.passed += 1;
                }
                if slot.too_early(&record) {
                    continue;
                }
                if self.ledger.is_full(&*key) {
                    // Count what its filter refused so far, before the partition stops counting.
                    let ledger = &self.ledger;
                    slot.settle(&self.seen, |partition| ledger.is_lagging(&*key, partition));
                }
                wanting.push(key);
            }
            let (broker, triggers) = (&self.broker, &self.triggers);
            self.ledger.on_record(
                record.partition,
                record.offset,
                wanting.iter().map(|key| &**key),
                |key, handoff| match handoff {
                    Handoff::Deliver => triggers[key].send(&record, now, parent.clone()),
                    Handoff::FellBehind => {
                        info!(%broker, trigger = %key, partition = record.partition, offset = record.offset,
                            "trigger is full; it falls behind and will catch up on its own");
                    }
                    Handoff::Lagging => {}
                },
            );
        }
        self.targets = targets;
        self.wanting = wanting;
    }

    fn on_settled(&mut self, settled: Settled, ctx: &mut Context<Self>) {
        if self
            .ledger
            .settle(&settled.trigger, settled.partition, settled.offset)
        {
            self.catch_up(&settled.trigger, ctx);
            if !self.handovers.is_empty() || self.draining.is_some() {
                self.finish_handovers(ctx);
                self.finish_draining(ctx);
            }
        }
    }

    /// The channel is about to revoke these partitions: finish what they owe, then commit.
    fn on_revoking(&mut self, release: Release, ctx: &mut Context<Self>) {
        info!(broker = %self.broker, partitions = ?release.partitions, "partitions being revoked; finishing their deliveries first");
        for &partition in &release.partitions {
            self.ledger.release(partition);
        }
        self.handovers.push(Handover {
            release,
            deadline: Instant::now() + HANDOVER_GRACE,
        });
        self.finish_handovers(ctx);
    }

    /// Lets go of the partitions whose deliveries finished (or whose time is up), after a commit
    /// the channel has.
    fn finish_handovers(&mut self, ctx: &mut Context<Self>) {
        if self.handovers.is_empty() {
            return;
        }
        let now = Instant::now();
        let ledger = &self.ledger;
        let (finished, pending): (Vec<Handover>, Vec<Handover>) =
            std::mem::take(&mut self.handovers)
                .into_iter()
                .partition(|handover| {
                    now >= handover.deadline
                        || handover
                            .release
                            .partitions
                            .iter()
                            .all(|&partition| ledger.is_settled(partition))
                });
        self.handovers = pending;
        if finished.is_empty() {
            return;
        }
        for handover in &finished {
            if now >= handover.deadline {
                warn!(broker = %self.broker, partitions = ?handover.release.partitions,
                    "deliveries of revoked partitions did not finish in {HANDOVER_GRACE:?}; their next reader delivers them again");
            }
        }
        self.commit_then(ctx, move |_, _| {
            for handover in finished {
                handover.release.done();
            }
        });
    }

    /// Whether the drain is complete: on a durable channel, what was handed out is final (the rest
    /// stays in the channel for the next reader); on the memory channel, every record accepted
    /// is final for every trigger.
    fn drained(&self) -> bool {
        if self.log.durable() {
            return self
                .ledger
                .assigned()
                .all(|partition| self.ledger.is_settled(partition));
        }
        self.ledger.partitions().iter().all(|progress| {
            let end = self.stats.end(progress.partition).unwrap_or(0);
            progress.floor.is_some_and(|done| done >= end)
        })
    }

    /// Answers the node's drain once it is complete or its time is up, after a last commit.
    fn finish_draining(&mut self, ctx: &mut Context<Self>) {
        let Some(draining) = &mut self.draining else {
            return;
        };
        if draining.finishing {
            return;
        }
        let finished = self.drained();
        let draining = self.draining.as_mut().expect("checked above");
        if !finished && Instant::now() < draining.deadline {
            return;
        }
        draining.finishing = true;
        self.commit_then(ctx, move |actor, _| actor.report_drain(finished));
    }

    fn report_drain(&mut self, finished: bool) {
        let durable = self.log.durable();
        let partitions = self.ledger.partitions();
        let lost = if durable {
            0
        } else {
            partitions
                .iter()
                .map(|progress| {
                    let end = self.stats.end(progress.partition).unwrap_or(0);
                    let done = progress.floor.or(progress.committed).unwrap_or(0);
                    (end - done).max(0) as u64
                })
                .sum()
        };
        let left = partitions
            .iter()
            .map(|progress| PartitionLeft {
                partition: progress.partition,
                committed: progress.committed,
                end: self.stats.end(progress.partition),
            })
            .collect();
        let report = DrainReport {
            broker: self.broker.clone(),
            finished,
            durable,
            lost,
            left,
        };
        if let Some(reply) = self.draining.as_mut().and_then(|d| d.reply.take()) {
            let _ = reply.send(report);
        }
    }

    /// Commits what is final, waits (off the actor's thread, at most [`COMMIT_WAIT`]) until the
    /// channel has the commit, then goes on with `then`. A channel call that blocks never runs on
    /// the actor's thread: during a rebalance a synchronous Kafka commit can wait for the very
    /// revocation this actor is finishing.
    fn commit_then(
        &mut self,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let offsets = self.ledger.committable();
        let Some(committer) = self.committer.clone().filter(|_| !offsets.is_empty()) else {
            then(self, ctx);
            return;
        };
        let committing = named(&offsets);
        let commit = async move {
            let commit =
                tokio::task::spawn_blocking(move || committer.commit_and_wait(&committing));
            match tokio::time::timeout(COMMIT_WAIT, commit).await {
                Ok(Ok(result)) => result.map_err(|error| error.to_string()),
                Ok(Err(panicked)) => Err(format!("the commit panicked: {panicked}")),
                Err(_) => Err(format!("no answer within {COMMIT_WAIT:?}")),
            }
        };
        ctx.spawn(commit.into_actor(self).map(move |result, actor, ctx| {
            match result {
                Ok(()) => actor.ledger.committed(&offsets),
                Err(error) => warn!(broker = %actor.broker, "commit failed: {error}"),
            }
            then(actor, ctx);
        }));
    }

    /// Starts a read for every partition on which `trigger` lags, when it has room again.
    fn catch_up(&mut self, trigger: &ObjectKey, ctx: &mut Context<Self>) {
        let mut ready = Vec::new();
        for (partition, from) in self.ledger.reads_due(trigger) {
            if let Some(batch) = self.take_read_ahead(trigger, partition, from) {
                ready.push((partition, from, batch));
                continue;
            }
            let log = self.log.clone();
            let topic = self.topic.clone();
            let key = trigger.clone();
            let read = async move { log.read(&topic, partition, from, CATCH_UP_BATCH).await };
            ctx.spawn(read.into_actor(self).map(move |result, actor, ctx| {
                actor.on_caught_up(key, partition, from, result, ctx);
            }));
        }
        for (partition, from, batch) in ready {
            self.on_caught_up(trigger.clone(), partition, from, Ok(batch), ctx);
        }
    }

    /// The records kept from `trigger`'s last read of `partition`, from `from` on, if any.
    fn take_read_ahead(
        &mut self,
        trigger: &ObjectKey,
        partition: Partition,
        from: Offset,
    ) -> Option<ReadBatch> {
        let mut kept = self.read_ahead.remove(&(trigger.clone(), partition))?;
        kept.records.retain(|record| record.offset >= from);
        (!kept.records.is_empty()).then_some(kept)
    }

    fn on_caught_up(
        &mut self,
        trigger: ObjectKey,
        partition: Partition,
        from: Offset,
        result: Result<ReadBatch, ChannelError>,
        ctx: &mut Context<Self>,
    ) {
        let batch = match result {
            Ok(batch) => batch,
            Err(error) => {
                warn!(broker = %self.broker, %trigger, partition, "catch-up read failed, retrying in {FAILED_READ_PAUSE:?}: {error}");
                self.ledger.read_failed(&trigger, partition, from);
                self.resume_later(trigger, partition, FAILED_READ_PAUSE, ctx);
                return;
            }
        };
        let Some(slot) = self.triggers.get(&trigger) else {
            return;
        };
        if let Some(first) = batch.records.first().filter(|first| first.offset > from) {
            // Retention (or compaction) removed what the trigger had yet to read.
            warn!(broker = %self.broker, %trigger, partition, from, first = first.offset,
                "records the trigger had not read are no longer in the channel");
        }
        let now = Instant::now();
        let (label, topic) = (&self.label, &self.topic);
        let outcome = self.ledger.on_read(
            &trigger,
            partition,
            from,
            &batch,
            |record| slot.wants(&trigger, record),
            |record| {
                let span = dispatch_span(label, topic, record);
                span.record("knactor.matched", 1);
                slot.send(record, now, context_of(&span));
            },
        );
        if outcome == CatchUp::Behind {
            // Out of room before the end of the batch: keep the rest for the next read.
            if let Some(cursor) = self.ledger.cursor(&trigger, partition) {
                let records: Vec<Record> = batch
                    .records
                    .into_iter()
                    .filter(|record| record.offset >= cursor)
                    .collect();
                if !records.is_empty() {
                    self.read_ahead.insert(
                        (trigger.clone(), partition),
                        ReadBatch {
                            records,
                            next: batch.next,
                        },
                    );
                }
            }
        }
        match outcome {
            CatchUp::CaughtUp => {
                // From here on the shared read considers this partition for the trigger again.
                let seen = self.seen.get(&partition).copied().unwrap_or(0);
                if let Some(slot) = self.triggers.get_mut(&trigger) {
                    slot.marks.insert(partition, seen);
                }
                info!(broker = %self.broker, %trigger, partition, "trigger caught up");
            }
            CatchUp::Empty => self.resume_later(trigger.clone(), partition, EMPTY_READ_PAUSE, ctx),
            CatchUp::Behind | CatchUp::Stale => {}
        }
        self.catch_up(&trigger, ctx);
    }

    /// Lets a paused catch-up read start again after `pause`.
    fn resume_later(
        &mut self,
        trigger: ObjectKey,
        partition: Partition,
        pause: Duration,
        ctx: &mut Context<Self>,
    ) {
        ctx.run_later(pause, move |actor, ctx| {
            actor.ledger.resume(&trigger, partition);
            actor.catch_up(&trigger, ctx);
        });
    }

    fn settle_counts(&mut self) {
        let ledger = &self.ledger;
        for (key, slot) in &mut self.triggers {
            slot.settle(&self.seen, |partition| ledger.is_lagging(key, partition));
        }
    }

    fn commit(&mut self) {
        self.settle_counts();
        let offsets = self.ledger.committable();
        if offsets.is_empty() {
            return;
        }
        let Some(committer) = &self.committer else {
            return;
        };
        match committer.commit(&named(&offsets)) {
            Ok(()) => self.ledger.committed(&offsets),
            Err(error) => warn!(broker = %self.broker, "commit failed, will retry: {error}"),
        }
    }

    /// Publishes where every partition and trigger stands, for `/metrics` and `knactor status`.
    fn publish_progress(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let read = self.stats.bytes_read.load(Relaxed);
        self.metrics.channel_bytes_read.store(read, Relaxed);
        let held = self
            .ledger
            .partitions()
            .into_iter()
            .map(|progress| {
                let gauges = PartitionGauges {
                    end: self.stats.end(progress.partition),
                    committed: progress.committed,
                    position: progress.position,
                };
                (progress.partition, gauges)
            })
            .collect();
        *self
            .metrics
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = held;
        for (key, slot) in &self.triggers {
            let progress = self.ledger.trigger(key);
            slot.metrics.behind.store(progress.behind, Relaxed);
            slot.metrics
                .lagging_partitions
                .store(progress.lagging_partitions as u64, Relaxed);
        }
    }

    fn apply(&mut self, apply: ApplyTriggers, ctx: &mut Context<Self>) {
        let ApplyTriggers { route, triggers } = apply;
        let mut addrs = triggers;
        let mut slots = FxHashMap::default();
        slots.reserve(route.triggers.len());
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
                    self.ledger.add_trigger(
                        trigger.key.clone(),
                        self.subscribed && trigger.start != StartPosition::Latest,
                    );
                    TriggerSlot {
                        addr,
                        filter: trigger.filter.clone(),
                        metrics: self.shared.metrics.trigger(&route.broker.key, &trigger.key),
                        not_before,
                        marks: self.seen.clone(),
                        passed: 0,
                    }
                }
            };
            slots.insert(trigger.key.clone(), slot);
        }
        // Triggers that went away owe nothing any more.
        let removed: Vec<&ObjectKey> = self.triggers.keys().collect();
        self.read_ahead
            .retain(|(trigger, _), _| !removed.contains(&trigger));
        for key in self.triggers.keys() {
            self.ledger.remove_trigger(key);
            info!(broker = %self.broker, trigger = %key, "trigger removed");
        }
        self.triggers = slots;
        self.index = FilterIndex::build(
            route
                .triggers
                .iter()
                .filter(|trigger| self.triggers.contains_key(&trigger.key))
                .map(|trigger| (Arc::new(trigger.key.clone()), trigger.filter.clone()))
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
    fn send(&self, record: &Record, now: Instant, parent: Option<opentelemetry::Context>) {
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
    fn settle(&mut self, seen: &BTreeMap<Partition, u64>, lagging: impl Fn(Partition) -> bool) {
        let mut considered = 0;
        for (&partition, &count) in seen {
            let mark = self.marks.insert(partition, count).unwrap_or(0);
            if !lagging(partition) {
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
        ctx.run_interval(self.shared.options.commit_interval, |actor, ctx| {
            actor.commit();
            actor.finish_handovers(ctx);
            actor.finish_draining(ctx);
        });
        ctx.run_interval(PROGRESS_INTERVAL, |actor, _| actor.publish_progress());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.commit();
        // This node holds no partition of the broker any more.
        self.metrics
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl StreamHandler<Result<ChannelEvent, ChannelError>> for DispatcherActor {
    /// Assignment changes and records from the group subscription.
    fn handle(&mut self, event: Result<ChannelEvent, ChannelError>, ctx: &mut Context<Self>) {
        match event {
            Ok(ChannelEvent::Records(records)) => self.on_records(records),
            Ok(ChannelEvent::Assigned(partitions)) => {
                for (partition, committed) in partitions {
                    info!(broker = %self.broker, partition, ?committed, "partition assigned");
                    // Triggers are named by their keys in a committed position.
                    let committed = committed
                        .map(|position| position.map_keys(|name| name.parse::<ObjectKey>().ok()));
                    self.ledger.assign(partition, committed);
                }
                // Triggers the committed positions name as behind read on their own from now.
                let keys: Vec<ObjectKey> = self.triggers.keys().cloned().collect();
                for key in keys {
                    self.catch_up(&key, ctx);
                }
            }
            Ok(ChannelEvent::Revoking(release)) => self.on_revoking(release, ctx),
            Ok(ChannelEvent::Revoked(partitions)) => {
                self.settle_counts();
                for partition in partitions {
                    info!(broker = %self.broker, partition, "partition revoked");
                    self.ledger.revoke(partition);
                    self.read_ahead.retain(|(_, p), _| *p != partition);
                    self.seen.remove(&partition);
                    self.metrics
                        .partitions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&partition);
                    for slot in self.triggers.values_mut() {
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
#[derive(Debug, Message)]
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

impl Handler<Settled> for DispatcherActor {
    type Result = ();

    /// Marks the delivery done; a lagging trigger with room again reads on.
    fn handle(&mut self, settled: Settled, ctx: &mut Context<Self>) {
        self.on_settled(settled, ctx);
    }
}

/// The node stops: finish what this broker owes (on the memory channel, everything accepted; on a
/// durable channel, what was handed out), commit, and report, by `deadline` at the latest.
#[derive(Debug, Message)]
#[rtype(result = "DrainReport")]
pub struct DrainBroker {
    pub deadline: Instant,
}

/// How a broker's drain ended.
#[derive(Debug, Clone)]
pub struct DrainReport {
    pub broker: ObjectKey,
    /// Everything it had to finish is final.
    pub finished: bool,
    /// Its channel keeps records for the next reader (Kafka).
    pub durable: bool,
    /// Memory channel: accepted events not yet final for every trigger, lost with the process.
    pub lost: u64,
    /// Where the next reader of each partition starts, and the partition's end.
    pub left: Vec<PartitionLeft>,
}

#[derive(Debug, Clone, Copy)]
pub struct PartitionLeft {
    pub partition: Partition,
    pub committed: Option<Offset>,
    pub end: Option<Offset>,
}

impl Handler<DrainBroker> for DispatcherActor {
    type Result = ResponseFuture<DrainReport>;

    /// Stops taking records on a durable channel (they stay for the next reader), keeps
    /// delivering what it owes, and answers when done or at the deadline.
    fn handle(&mut self, drain: DrainBroker, ctx: &mut Context<Self>) -> Self::Result {
        if self.log.durable() {
            let assigned: Vec<Partition> = self.ledger.assigned().collect();
            for partition in assigned {
                self.ledger.release(partition);
            }
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.draining = Some(Draining {
            deadline: drain.deadline,
            reply: Some(reply),
            finishing: false,
        });
        self.finish_draining(ctx);
        let broker = self.broker.clone();
        let durable = self.log.durable();
        Box::pin(async move {
            answer.await.unwrap_or(DrainReport {
                broker,
                finished: false,
                durable,
                lost: 0,
                left: Vec::new(),
            })
        })
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

/// Positions as the channel keeps them: triggers by `<namespace>/<name>`.
fn named(positions: &[(Partition, Position<ObjectKey>)]) -> Vec<(Partition, Position)> {
    positions
        .iter()
        .map(|(partition, position)| {
            let position = position.clone().map_keys(|key| Some(key.to_string()));
            (*partition, position)
        })
        .collect()
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
