//! Counters and latency histograms of the mesh, rendered in the Prometheus text format at
//! `/metrics`. Counting is a relaxed atomic add on a handle each actor fetched once, so the hot
//! path takes no lock.
//!
//! Two families follow Knative's names, so that dashboards written for Knative's broker read ours:
//! `event_count` (events by response code: the broker ingress's rows have no `trigger_name`, the
//! trigger filter's rows have one) and `kn_eventing_dispatch_duration_seconds` (Knative's
//! `kn.eventing.dispatch.duration`: one HTTP dispatch to a subscriber). The `knactor_*` families
//! say the rest.
//!
//! Why not the `prometheus-client` crate: it names a counter `<name>_total` in the OpenMetrics
//! text, which would turn Knative's `event_count` into a name Knative's dashboards do not read,
//! and its histogram takes a write lock per observation where ours is one relaxed atomic add.
//! A deleted trigger's or broker's series go when the node removes it ([`Metrics::forget_trigger`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::channel::Partition;
use crate::journal::Journal;
use crate::resources::ObjectKey;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations, rendered cumulative. An observation adds one to the one bucket it
/// falls in (a relaxed atomic add: the hot path observes a few per event), and the cumulative
/// counts Prometheus wants are summed when read.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at most `BUCKETS[i]` and above the bound before it; beyond the last bound,
    /// only in `count`.
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(bucket) = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .and_then(|index| self.buckets.get(index))
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
    }

    /// The cumulative count of each bucket of [`BUCKETS`], the count and the sum in seconds. The
    /// count is read last, and is at least the last bucket's (an observation counted in a bucket
    /// but not yet in `count` is counted in both).
    pub fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let mut total = 0;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| {
                total += bucket.load(Ordering::Relaxed);
                total
            })
            .collect();
        let count = self.count.load(Ordering::Relaxed).max(total);
        (
            cumulative,
            count,
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let (cumulative, count, sum) = self.snapshot();
        for (bound, bucket) in BUCKETS.iter().zip(cumulative) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {bucket}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Counts by HTTP status (100 to 599), without a lock: one slot per status.
#[derive(Debug)]
pub struct StatusCounts {
    slots: Box<[AtomicU64]>,
}

impl Default for StatusCounts {
    fn default() -> Self {
        Self {
            slots: (100..600).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl StatusCounts {
    pub fn count(&self, status: u16) {
        self.count_many(status, 1);
    }

    /// Counts `times` answers of `status` (a batch answered at once).
    pub fn count_many(&self, status: u16, times: u64) {
        if let Some(slot) = status
            .checked_sub(100)
            .and_then(|index| self.slots.get(usize::from(index)))
        {
            slot.fetch_add(times, Ordering::Relaxed);
        }
    }

    pub fn get(&self, status: u16) -> u64 {
        status
            .checked_sub(100)
            .and_then(|index| self.slots.get(usize::from(index)))
            .map_or(0, |slot| slot.load(Ordering::Relaxed))
    }

    /// The statuses seen, with their counts.
    pub fn seen(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let count = slot.load(Ordering::Relaxed);
            (count > 0).then_some((index as u16 + 100, count))
        })
    }
}

/// Per broker.
#[derive(Debug, Default)]
pub struct BrokerMetrics {
    /// Events that reached the broker (from producers, sources and replies), stored or not.
    pub received: AtomicU64,
    /// Events stored by the broker (from producers and replies).
    pub accepted: AtomicU64,
    /// Events refused at admission (TTL spent, channel full or down).
    pub refused: AtomicU64,
    /// Records the dispatcher read.
    pub dispatched: AtomicU64,
    /// Records no trigger wanted.
    pub unmatched: AtomicU64,
    /// Bytes the dispatcher received from the channel's servers (Kafka), as last reported.
    pub channel_bytes_read: AtomicU64,
    /// From admission to the channel's acknowledgement.
    pub append_duration: Histogram,
    /// Events by the status their producer got (202, 400, 413, 503): Knative's ingress `event_count`.
    pub responses: StatusCounts,
    /// The partitions this node's dispatcher holds, with their positions (gauges).
    pub partitions: Mutex<BTreeMap<Partition, PartitionGauges>>,
    /// Whether the broker's channel stores what it is given.
    pub channel: ChannelHealth,
}

/// Where one partition of a broker stands, as this node's dispatcher last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionGauges {
    /// The partition's end: the offset the next appended record gets (high watermark).
    pub end: Option<i64>,
    /// The offset the dispatcher last committed: everything below is final.
    pub committed: Option<i64>,
    /// The next offset the dispatcher's shared read takes.
    pub position: Option<i64>,
}

impl PartitionGauges {
    /// Records appended and not yet final for every trigger (as far as committed).
    pub fn lag(&self) -> Option<i64> {
        Some((self.end? - self.committed?).max(0))
    }
}

/// Whether a broker's channel stores what it is given: the latest evidence wins, an append (stored
/// or refused) or a probe of the channel (a Kafka topic whose partitions all have a leader).
#[derive(Debug, Default)]
pub struct ChannelHealth {
    /// Why the channel did not store, as the latest evidence says; `None`: it stores.
    problem: Mutex<Option<String>>,
}

impl ChannelHealth {
    /// An append was stored.
    pub fn stored(&self) {
        *self.lock() = None;
    }

    /// An append could not be stored (the channel is away, or full).
    pub fn refused(&self, reason: impl Into<String>) {
        *self.lock() = Some(reason.into());
    }

    /// The outcome of a probe of the channel.
    pub fn probed(&self, outcome: Result<(), crate::channel::ChannelError>) {
        *self.lock() = outcome.err().map(|error| error.to_string());
    }

    /// Why the channel does not store events now, if it does not.
    pub fn problem(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.problem.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Per trigger.
#[derive(Debug, Default)]
pub struct TriggerMetrics {
    /// Events the filter passed (handed to the trigger).
    pub matched: AtomicU64,
    /// Events the dispatcher matched against the trigger's filter and the filter refused.
    pub filtered: AtomicU64,
    /// HTTP attempts made (first tries and retries).
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    /// Events acknowledged by the subscriber.
    pub delivered: AtomicU64,
    /// Attempts that failed (status or transport).
    pub failed_attempts: AtomicU64,
    pub replies: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub parked: AtomicU64,
    /// From dispatch to the final outcome.
    pub dispatch_duration: Histogram,
    /// One HTTP attempt (Knative's `kn.eventing.dispatch.duration`).
    pub attempt_duration: Histogram,
    /// Attempts by the status the subscriber answered (500 when it did not): Knative's filter
    /// `event_count`.
    pub responses: StatusCounts,
    /// Deliveries waiting in the trigger for a slot (gauge).
    pub queued: AtomicU64,
    /// Deliveries running (gauge).
    pub in_flight: AtomicU64,
    /// Records the trigger has yet to read itself after falling behind, summed over partitions
    /// (gauge).
    pub behind: AtomicU64,
    /// Partitions on which the trigger fell behind (gauge).
    pub lagging_partitions: AtomicU64,
    /// Appends to the parking lot that failed (each is retried until it succeeds).
    pub park_failures: AtomicU64,
    /// When a parking failure was last logged (seconds since the epoch), to log a few a minute.
    pub park_failure_logged: AtomicU64,
}

/// A counter's name, help text, and where to find it.
type Described<M> = (&'static str, &'static str, fn(&M) -> &AtomicU64);
/// A gauge's name, help text, and how to read it (when it has a value).
type DescribedGauge<M> = (&'static str, &'static str, fn(&M) -> Option<i64>);
/// A histogram's name, help text, and where to find it.
type DescribedHistogram<M> = (&'static str, &'static str, fn(&M) -> &Histogram);

/// The registry, and the journal of the last events' hops.
#[derive(Debug, Default)]
pub struct Metrics {
    brokers: Mutex<BTreeMap<ObjectKey, Arc<BrokerMetrics>>>,
    triggers: Mutex<BTreeMap<(ObjectKey, ObjectKey), Arc<TriggerMetrics>>>,
    pub journal: Journal,
}

impl Metrics {
    /// A registry whose journal keeps about `journal_events` events and `journal_bytes` bytes
    /// (either 0: no journal).
    pub fn with_journal(journal_events: usize, journal_bytes: usize) -> Self {
        Self {
            journal: Journal::new(journal_events, journal_bytes),
            ..Self::default()
        }
    }

    pub fn broker(&self, broker: &ObjectKey) -> Arc<BrokerMetrics> {
        let mut brokers = self.brokers.lock().unwrap_or_else(|p| p.into_inner());
        brokers.entry(broker.clone()).or_default().clone()
    }

    pub fn trigger(&self, broker: &ObjectKey, trigger: &ObjectKey) -> Arc<TriggerMetrics> {
        let mut triggers = self.triggers.lock().unwrap_or_else(|p| p.into_inner());
        triggers
            .entry((broker.clone(), trigger.clone()))
            .or_default()
            .clone()
    }

    /// Drops a deleted broker's series, and its triggers': what `/metrics` shows ends with it
    /// (a broker or trigger made again under the same name counts from zero, a counter reset
    /// Prometheus reads as one).
    pub fn forget_broker(&self, broker: &ObjectKey) {
        self.brokers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(broker);
        self.triggers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(of, _), _| of != broker);
    }

    /// Drops a deleted trigger's series.
    pub fn forget_trigger(&self, broker: &ObjectKey, trigger: &ObjectKey) {
        self.triggers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(broker.clone(), trigger.clone()));
    }

    /// Every broker's counters, by broker.
    pub fn all_brokers(&self) -> Vec<(ObjectKey, Arc<BrokerMetrics>)> {
        self.brokers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(key, metrics)| (key.clone(), metrics.clone()))
            .collect()
    }

    /// Every trigger's counters, by (broker, trigger).
    pub fn all_triggers(&self) -> Vec<((ObjectKey, ObjectKey), Arc<TriggerMetrics>)> {
        self.triggers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(key, metrics)| (key.clone(), metrics.clone()))
            .collect()
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let brokers: Vec<_> = self
            .brokers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(key, metrics)| (key.clone(), metrics.clone()))
            .collect();
        let triggers: Vec<_> = self
            .triggers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(key, metrics)| (key.clone(), metrics.clone()))
            .collect();

        let broker_counters: [Described<BrokerMetrics>; 6] = [
            (
                "knactor_broker_events_received_total",
                "Events that reached a broker (from producers, sources and replies), stored or not.",
                |m| &m.received,
            ),
            (
                "knactor_broker_events_accepted_total",
                "Events stored by a broker.",
                |m| &m.accepted,
            ),
            (
                "knactor_broker_events_refused_total",
                "Events a broker refused (TTL spent, channel full or unavailable).",
                |m| &m.refused,
            ),
            (
                "knactor_broker_events_dispatched_total",
                "Records read by a broker's dispatcher.",
                |m| &m.dispatched,
            ),
            (
                "knactor_broker_channel_bytes_read_total",
                "Bytes the broker's dispatcher received from the channel's servers (Kafka; 0 for memory).",
                |m| &m.channel_bytes_read,
            ),
            (
                "knactor_broker_events_unmatched_total",
                "Records no trigger's filter passed.",
                |m| &m.unmatched,
            ),
        ];
        for (name, help, counter) in broker_counters {
            family(&mut out, name, "counter", help);
            for (key, metrics) in &brokers {
                let value = counter(metrics).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{{}}} {value}", BrokerLabels(key));
            }
        }

        let trigger_counters: [Described<TriggerMetrics>; 10] = [
            (
                "knactor_trigger_events_matched_total",
                "Events a trigger's filter passed (dispatched to the trigger).",
                |m| &m.matched,
            ),
            (
                "knactor_trigger_events_filtered_total",
                "Events a trigger's filter refused.",
                |m| &m.filtered,
            ),
            (
                "knactor_trigger_attempts_total",
                "HTTP delivery attempts, first tries and retries.",
                |m| &m.attempts,
            ),
            ("knactor_trigger_retries_total", "Delivery retries.", |m| {
                &m.retries
            }),
            (
                "knactor_trigger_failed_attempts_total",
                "Delivery attempts that failed.",
                |m| &m.failed_attempts,
            ),
            (
                "knactor_trigger_events_delivered_total",
                "Events acknowledged by the subscriber.",
                |m| &m.delivered,
            ),
            (
                "knactor_trigger_replies_total",
                "Replies put back into the broker.",
                |m| &m.replies,
            ),
            (
                "knactor_trigger_events_dead_lettered_total",
                "Events sent to the dead-letter sink.",
                |m| &m.dead_lettered,
            ),
            (
                "knactor_trigger_events_parked_total",
                "Events parked after every attempt and the dead-letter sink failed.",
                |m| &m.parked,
            ),
            (
                "knactor_trigger_park_failures_total",
                "Appends to the parking lot that failed and are being retried (the channel is full or away).",
                |m| &m.park_failures,
            ),
        ];
        for (name, help, counter) in trigger_counters {
            family(&mut out, name, "counter", help);
            for ((broker, trigger), metrics) in &triggers {
                let value = counter(metrics).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{{}}} {value}", TriggerLabels(broker, trigger));
            }
        }

        let name = "knactor_trigger_events_failed_total";
        family(
            &mut out,
            name,
            "counter",
            "Events whose delivery to the subscriber failed for good (dead-lettered or parked).",
        );
        for ((broker, trigger), metrics) in &triggers {
            let failed = metrics.dead_lettered.load(Ordering::Relaxed)
                + metrics.parked.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{{}}} {failed}", TriggerLabels(broker, trigger));
        }

        let name = "knactor_broker_append_duration_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "Time from admission to the channel's acknowledgement (what a 202 waits for).",
        );
        for (key, metrics) in &brokers {
            let labels = BrokerLabels(key).to_string();
            metrics.append_duration.render(&mut out, name, &labels);
        }

        let histograms: [DescribedHistogram<TriggerMetrics>; 2] = [
            (
                "knactor_trigger_dispatch_duration_seconds",
                "Time from dispatch to the final outcome of a delivery.",
                |m| &m.dispatch_duration,
            ),
            (
                "kn_eventing_dispatch_duration_seconds",
                "Time of one HTTP dispatch to a subscriber (Knative's kn.eventing.dispatch.duration).",
                |m| &m.attempt_duration,
            ),
        ];
        for (name, help, histogram) in histograms {
            family(&mut out, name, "histogram", help);
            for ((broker, trigger), metrics) in &triggers {
                let labels = TriggerLabels(broker, trigger).to_string();
                histogram(metrics).render(&mut out, name, &labels);
            }
        }

        let name = "knactor_broker_channel_storing";
        family(
            &mut out,
            name,
            "gauge",
            "1 when the broker's channel stores events, 0 when its last append or probe failed.",
        );
        for (key, metrics) in &brokers {
            let storing = u8::from(metrics.channel.problem().is_none());
            let _ = writeln!(out, "{name}{{{}}} {storing}", BrokerLabels(key));
        }

        let partition_gauges: [DescribedGauge<PartitionGauges>; 4] = [
            (
                "knactor_broker_partition_end_offset",
                "The offset the next record appended to the partition gets (high watermark), for the partitions this node reads.",
                |g| g.end,
            ),
            (
                "knactor_broker_partition_committed_offset",
                "The offset this node's dispatcher last committed: every record below it is final for every trigger.",
                |g| g.committed,
            ),
            (
                "knactor_broker_partition_position",
                "The next offset this node's dispatcher reads.",
                |g| g.position,
            ),
            (
                "knactor_broker_partition_lag",
                "Records appended to the partition and not yet final for every trigger (end offset - committed offset).",
                PartitionGauges::lag,
            ),
        ];
        let partitions: Vec<_> = brokers
            .iter()
            .map(|(key, metrics)| {
                let held = metrics
                    .partitions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                (key, held)
            })
            .collect();
        for (name, help, gauge) in partition_gauges {
            family(&mut out, name, "gauge", help);
            for (key, held) in &partitions {
                for (partition, gauges) in held {
                    if let Some(value) = gauge(gauges) {
                        let _ = writeln!(
                            out,
                            "{name}{{{},partition=\"{partition}\"}} {value}",
                            BrokerLabels(key)
                        );
                    }
                }
            }
        }

        let trigger_gauges: [Described<TriggerMetrics>; 4] = [
            (
                "knactor_trigger_deliveries_queued",
                "Deliveries waiting in the trigger for a slot.",
                |m| &m.queued,
            ),
            (
                "knactor_trigger_deliveries_in_flight",
                "Deliveries running (attempts, back-off waits, dead letter, parking).",
                |m| &m.in_flight,
            ),
            (
                "knactor_trigger_behind_records",
                "Records a trigger that fell behind has yet to read itself, summed over partitions.",
                |m| &m.behind,
            ),
            (
                "knactor_trigger_lagging_partitions",
                "Partitions on which the trigger fell behind and catches up on its own.",
                |m| &m.lagging_partitions,
            ),
        ];
        for (name, help, gauge) in trigger_gauges {
            family(&mut out, name, "gauge", help);
            for ((broker, trigger), metrics) in &triggers {
                let value = gauge(metrics).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{{}}} {value}", TriggerLabels(broker, trigger));
            }
        }

        let name = "event_count";
        family(
            &mut out,
            name,
            "counter",
            "Events by response code, as Knative counts them: at the broker ingress (no trigger_name) and per trigger dispatch.",
        );
        for (key, metrics) in &brokers {
            for (code, count) in metrics.responses.seen() {
                let _ = writeln!(
                    out,
                    "{name}{{namespace_name=\"{}\",broker_name=\"{}\",response_code=\"{code}\",response_code_class=\"{}xx\"}} {count}",
                    key.namespace, key.name, code / 100
                );
            }
        }
        for ((broker, trigger), metrics) in &triggers {
            for (code, count) in metrics.responses.seen() {
                let _ = writeln!(
                    out,
                    "{name}{{namespace_name=\"{}\",broker_name=\"{}\",trigger_name=\"{}\",response_code=\"{code}\",response_code_class=\"{}xx\"}} {count}",
                    trigger.namespace, broker.name, trigger.name, code / 100
                );
            }
        }
        out
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A broker's series labels (`namespace`, `broker`). Kubernetes names need no escaping.
struct BrokerLabels<'a>(&'a ObjectKey);

impl fmt::Display for BrokerLabels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(broker) = self;
        write!(
            f,
            "namespace=\"{}\",broker=\"{}\"",
            broker.namespace, broker.name
        )
    }
}

/// A trigger's series labels (`namespace`, `broker`, `trigger`).
struct TriggerLabels<'a>(&'a ObjectKey, &'a ObjectKey);

impl fmt::Display for TriggerLabels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(broker, trigger) = self;
        write!(
            f,
            "namespace=\"{}\",broker=\"{}\",trigger=\"{}\"",
            trigger.namespace, broker.name, trigger.name
        )
    }
}

/// Adds one.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        let metrics = Metrics::default();
        let broker = ObjectKey::new("team-a", "default");
        let trigger = ObjectKey::new("team-a", "t");
        inc(&metrics.broker(&broker).accepted);
        inc(&metrics.trigger(&broker, &trigger).delivered);
        metrics
            .trigger(&broker, &trigger)
            .dispatch_duration
            .observe(Duration::from_millis(3));
        let text = metrics.render();
        assert!(text.contains(
            "knactor_broker_events_accepted_total{namespace=\"team-a\",broker=\"default\"} 1"
        ));
        assert!(text.contains("knactor_trigger_events_delivered_total{namespace=\"team-a\",broker=\"default\",trigger=\"t\"} 1"));
        assert!(text.contains("knactor_trigger_dispatch_duration_seconds_bucket{namespace=\"team-a\",broker=\"default\",trigger=\"t\",le=\"0.005\"} 1"));
        assert!(text.contains("knactor_trigger_dispatch_duration_seconds_bucket{namespace=\"team-a\",broker=\"default\",trigger=\"t\",le=\"0.002\"} 0"));
    }

    #[test]
    fn a_deleted_trigger_or_broker_leaves_no_series() {
        let metrics = Metrics::default();
        let (broker, other) = (ObjectKey::new("a", "b"), ObjectKey::new("a", "c"));
        let (kept, deleted) = (ObjectKey::new("a", "kept"), ObjectKey::new("a", "deleted"));
        inc(&metrics.broker(&broker).accepted);
        inc(&metrics.broker(&other).accepted);
        inc(&metrics.trigger(&broker, &kept).delivered);
        inc(&metrics.trigger(&broker, &deleted).delivered);
        inc(&metrics.trigger(&other, &kept).delivered);
        metrics.forget_trigger(&broker, &deleted);
        let text = metrics.render();
        assert!(!text.contains("trigger=\"deleted\""), "{text}");
        assert!(text.contains("broker=\"b\",trigger=\"kept\""), "{text}");
        metrics.forget_broker(&broker);
        let text = metrics.render();
        assert!(!text.contains("broker=\"b\""), "{text}");
        assert!(text.contains("broker=\"c\",trigger=\"kept\""), "{text}");
    }

    #[test]
    fn histogram_buckets_read_cumulative() {
        let histogram = Histogram::default();
        for millis in [0, 1, 3, 3, 40, 60_000] {
            histogram.observe(Duration::from_millis(millis));
        }
        let (buckets, count, sum) = histogram.snapshot();
        // le 0.001: 0 and 1 ms; le 0.005: and the two 3 ms; le 0.05: and 40 ms; 60 s: +Inf only.
        assert_eq!(buckets[0], 2);
        assert_eq!(buckets[1], 2);
        assert_eq!(buckets[2], 4);
        assert_eq!(buckets[5], 5);
        assert_eq!(buckets[BUCKETS.len() - 1], 5);
        assert_eq!(count, 6);
        assert!((sum - 60.047).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn responses_render_as_knative_event_count_rows() {
        let metrics = Metrics::default();
        let broker = ObjectKey::new("team-a", "default");
        let trigger = ObjectKey::new("team-a", "t");
        metrics.broker(&broker).responses.count(202);
        metrics.broker(&broker).responses.count(202);
        let handle = metrics.trigger(&broker, &trigger);
        handle.responses.count(503);
        handle.responses.count(1000);
        inc(&handle.parked);
        inc(&handle.dead_lettered);
        let text = metrics.render();
        assert!(text.contains("event_count{namespace_name=\"team-a\",broker_name=\"default\",response_code=\"202\",response_code_class=\"2xx\"} 2"), "{text}");
        assert!(text.contains("event_count{namespace_name=\"team-a\",broker_name=\"default\",trigger_name=\"t\",response_code=\"503\",response_code_class=\"5xx\"} 1"));
        assert!(!text.contains("response_code=\"1000\""));
        assert!(text.contains("knactor_trigger_events_failed_total{namespace=\"team-a\",broker=\"default\",trigger=\"t\"} 2"));
        assert_eq!(handle.responses.get(503), 1);
    }
}
