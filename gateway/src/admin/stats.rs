//! `GET /-/stats`: the node's counters, gauges and latency buckets per broker and trigger, as JSON
//! (the same numbers `/metrics` gives Prometheus). Counters only grow: the console takes rates and
//! windowed quantiles from the difference of two reads; one read costs no actor a message.

use std::sync::atomic::Ordering::Relaxed;

use actix_web::{web, HttpResponse};
use knactor_actors::metrics::{Histogram, BUCKETS};
use knactor_actors::resources::ObjectKey;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AdminError, Authorized, ErrorBody, PartitionDoc};
use crate::ingress::GatewayState;

#[derive(Deserialize, IntoParams)]
pub(super) struct StatsQuery {
    /// Only this broker (`<namespace>/<name>`) and its triggers.
    broker: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatsDoc {
    /// When the numbers were read (RFC 3339, milliseconds).
    at: String,
    /// Upper bounds, in seconds, of the latency buckets below (the last bucket, +Inf, is `count`).
    bucket_bounds: Vec<f64>,
    brokers: Vec<BrokerStats>,
    triggers: Vec<TriggerStats>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct BrokerStats {
    /// `<namespace>/<name>`.
    name: String,
    /// Events that reached it (from producers, sources and replies), stored or not.
    received: u64,
    accepted: u64,
    refused: u64,
    /// Records its dispatcher read.
    dispatched: u64,
    /// Records no trigger wanted.
    unmatched: u64,
    storing: bool,
    /// From admission to the channel's acknowledgement.
    append_latency: Latency,
    /// The partitions this node reads, with their lag.
    partitions: Vec<PartitionDoc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TriggerStats {
    /// `<namespace>/<name>`.
    name: String,
    /// `<namespace>/<name>` of its broker.
    broker: String,
    matched: u64,
    filtered: u64,
    attempts: u64,
    retries: u64,
    failed_attempts: u64,
    delivered: u64,
    replies: u64,
    dead_lettered: u64,
    parked: u64,
    /// Deliveries waiting for a slot (gauge).
    queued: u64,
    in_flight: u64,
    /// Records it has yet to read itself after falling behind (gauge).
    behind: u64,
    /// Attempts by the status the subscriber answered (500 when it did not answer).
    responses: std::collections::BTreeMap<u16, u64>,
    /// From dispatch to the final outcome.
    delivery_latency: Latency,
}

/// A cumulative histogram: `buckets[i]` counts observations at most `bucketBounds[i]` seconds.
#[derive(Serialize, ToSchema)]
pub(super) struct Latency {
    buckets: Vec<u64>,
    count: u64,
    /// Seconds.
    sum: f64,
}

impl Latency {
    fn of(histogram: &Histogram) -> Self {
        let (buckets, count, sum) = histogram.snapshot();
        Latency {
            buckets,
            count,
            sum,
        }
    }
}

/// Counters, gauges and latency buckets per broker and trigger, read at once.
#[utoipa::path(
    get, path = "/-/stats", tag = "node",
    params(StatsQuery),
    responses((status = 200, body = StatsDoc), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn stats(
    _: Authorized,
    query: web::Query<StatsQuery>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let only = query
        .broker
        .as_deref()
        .map(|text| text.parse::<ObjectKey>().map_err(AdminError::from))
        .transpose()?;
    let wanted = |broker: &ObjectKey| only.as_ref().is_none_or(|only| only == broker);
    let metrics = &state.metrics;
    let brokers = metrics
        .all_brokers()
        .into_iter()
        .filter(|(key, _)| wanted(key))
        .map(|(key, broker)| {
            let partitions = broker
                .partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(partition, gauges)| PartitionDoc::of(*partition, gauges))
                .collect();
            BrokerStats {
                name: key.to_string(),
                received: broker.received.load(Relaxed),
                accepted: broker.accepted.load(Relaxed),
                refused: broker.refused.load(Relaxed),
                dispatched: broker.dispatched.load(Relaxed),
                unmatched: broker.unmatched.load(Relaxed),
                storing: broker.channel.problem().is_none(),
                append_latency: Latency::of(&broker.append_duration),
                partitions,
            }
        })
        .collect();
    let triggers = metrics
        .all_triggers()
        .into_iter()
        .filter(|((broker, _), _)| wanted(broker))
        .map(|((broker, key), trigger)| TriggerStats {
            name: key.to_string(),
            broker: broker.to_string(),
            matched: trigger.matched.load(Relaxed),
            filtered: trigger.filtered.load(Relaxed),
            attempts: trigger.attempts.load(Relaxed),
            retries: trigger.retries.load(Relaxed),
            failed_attempts: trigger.failed_attempts.load(Relaxed),
            delivered: trigger.delivered.load(Relaxed),
            replies: trigger.replies.load(Relaxed),
            dead_lettered: trigger.dead_lettered.load(Relaxed),
            parked: trigger.parked.load(Relaxed),
            queued: trigger.queued.load(Relaxed),
            in_flight: trigger.in_flight.load(Relaxed),
            behind: trigger.behind.load(Relaxed),
            responses: trigger.responses.seen().collect(),
            delivery_latency: Latency::of(&trigger.dispatch_duration),
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(StatsDoc {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            bucket_bounds: BUCKETS.to_vec(),
            brokers,
            triggers,
        }))
}
