//! Counters and latency histograms of the mesh, rendered in the Prometheus text format at
//! `/metrics`. Counting is a relaxed atomic add on a handle each actor fetched once, so the hot
//! path takes no lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::resources::ObjectKey;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Per broker.
#[derive(Debug, Default)]
pub struct BrokerMetrics {
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
}

/// Per trigger.
#[derive(Debug, Default)]
pub struct TriggerMetrics {
    /// Events the filter passed.
    pub matched: AtomicU64,
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
}

/// A counter's name, help text, and where to find it.
type Described<M> = (&'static str, &'static str, fn(&M) -> &AtomicU64);

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    brokers: Mutex<BTreeMap<ObjectKey, Arc<BrokerMetrics>>>,
    triggers: Mutex<BTreeMap<(ObjectKey, ObjectKey), Arc<TriggerMetrics>>>,
}

impl Metrics {
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

        let broker_counters: [Described<BrokerMetrics>; 5] = [
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
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (key, metrics) in &brokers {
                let _ = writeln!(
                    out,
                    "{name}{{namespace=\"{}\",broker=\"{}\"}} {}",
                    key.namespace,
                    key.name,
                    counter(metrics).load(Ordering::Relaxed)
                );
            }
        }

        let trigger_counters: [Described<TriggerMetrics>; 8] = [
            (
                "knactor_trigger_events_matched_total",
                "Events a trigger's filter passed.",
                |m| &m.matched,
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
        ];
        for (name, help, counter) in trigger_counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((broker, trigger), metrics) in &triggers {
                let _ = writeln!(
                    out,
                    "{name}{{namespace=\"{}\",broker=\"{}\",trigger=\"{}\"}} {}",
                    trigger.namespace,
                    broker.name,
                    trigger.name,
                    counter(metrics).load(Ordering::Relaxed)
                );
            }
        }

        let name = "knactor_trigger_dispatch_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from dispatch to the final outcome of a delivery.\n# TYPE {name} histogram"
        );
        for ((broker, trigger), metrics) in &triggers {
            let labels = format!(
                "namespace=\"{}\",broker=\"{}\",trigger=\"{}\"",
                trigger.namespace, broker.name, trigger.name
            );
            metrics.dispatch_duration.render(&mut out, name, &labels);
        }
        out
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
}
