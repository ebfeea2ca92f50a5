//! `GET /-/brokers/{namespace}/{broker}/tail`: a broker's events as they happen, as server-sent
//! events. Each `hop` event is one thing that happened to one event (received with its type,
//! stored, dispatched, each attempt, delivered, parked...); a `skipped` event says how many the
//! client lost because it read slower than they came (its buffer keeps the newest
//! [`knactor_actors::tail::DEFAULT_BUFFER`]). At most [`knactor_actors::tail::DEFAULT_MAX_FOLLOWERS`]
//! clients follow at once (429 beyond). A comment line every [`KEEP_ALIVE`] tells a client the
//! stream lives, and the node whether the client is still there: a client that went away frees
//! its place at the second write that finds its connection closed, within two periods.

use std::time::{Duration, SystemTime};

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use knactor_actors::actor::GetRoutes;
use knactor_actors::resources::ObjectKey;
use knactor_actors::tail::{TailBatch, TailEntry};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AdminError, Authorized, ErrorBody};
use crate::ingress::GatewayState;

/// How often an idle stream says it lives.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The data of a `hop` event.
#[derive(Serialize, ToSchema)]
pub(super) struct TailHopDoc {
    /// RFC 3339, milliseconds.
    at: String,
    /// `received` (the ingress decoded it; `type` is set), else a journal stage: `stored`,
    /// `refused`, `dispatched`, `unmatched`, `attempt`, `delivered`, `replied`, `dead-lettered`,
    /// `parked`.
    stage: &'static str,
    source: String,
    id: String,
    #[serde(rename = "type")]
    event_type: Option<String>,
    trigger: Option<String>,
    attempt: Option<u32>,
    status: Option<u16>,
    detail: Option<String>,
}

/// The data of a `skipped` event.
#[derive(Serialize, ToSchema)]
pub(super) struct TailSkippedDoc {
    /// Hops lost since the last ones sent.
    skipped: u64,
}

/// A broker's hops, live, as `text/event-stream`: `event: hop` (data: a TailHopDoc) and
/// `event: skipped` (data: a TailSkippedDoc). Follows the node's journal: off with
/// `--trace-journal-events 0`.
#[utoipa::path(
    get, path = "/-/brokers/{namespace}/{broker}/tail", tag = "events",
    params(("namespace" = String, Path), ("broker" = String, Path)),
    responses(
        (status = 200, description = "Server-sent events", content_type = "text/event-stream", body = TailHopDoc),
        (status = 404, body = ErrorBody),
        (status = 429, description = "Too many clients follow already", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn tail(
    _: Authorized,
    path: web::Path<(String, String)>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let (namespace, name) = path.into_inner();
    let broker = ObjectKey::new(namespace, name);
    let journal = &state.metrics.journal;
    if !journal.is_on() {
        return Err(AdminError::NotFound(
            "this node keeps no journal (--trace-journal-events 0), so it has no tail".into(),
        ));
    }
    let routes = state
        .node
        .send(GetRoutes)
        .await
        .map_err(|_| AdminError::NodeUnavailable)?;
    if routes.broker(&broker).is_none() {
        return Err(AdminError::NotFound(format!(
            "broker {broker} does not run on this node"
        )));
    }
    let following = journal
        .tail()
        .follow(&broker.to_string())
        .map_err(|too_many| AdminError::TooMany(too_many.to_string()))?;
    let opening = Bytes::from_static(b"retry: 2000\n: following\n\n");
    let stream = futures::stream::unfold(
        (following, Some(opening)),
        |(following, opening)| async move {
            if let Some(opening) = opening {
                return Some((Ok::<_, actix_web::Error>(opening), (following, None)));
            }
            let chunk = match tokio::time::timeout(KEEP_ALIVE, following.next()).await {
                Ok(batch) => render(batch),
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((Ok(chunk), (following, None)))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

/// One batch as server-sent events.
fn render(batch: TailBatch) -> Bytes {
    let mut out = String::new();
    if batch.skipped > 0 {
        let skipped = TailSkippedDoc {
            skipped: batch.skipped,
        };
        out.push_str("event: skipped\ndata: ");
        out.push_str(&serde_json::to_string(&skipped).unwrap_or_default());
        out.push_str("\n\n");
    }
    for entry in batch.entries {
        out.push_str("event: hop\ndata: ");
        out.push_str(&serde_json::to_string(&doc(entry)).unwrap_or_default());
        out.push_str("\n\n");
    }
    Bytes::from(out)
}

fn doc(entry: TailEntry) -> TailHopDoc {
    TailHopDoc {
        at: rfc3339(entry.at),
        stage: entry.stage,
        source: entry.source.to_string(),
        id: entry.id.to_string(),
        event_type: entry.event_type.map(|ty| ty.to_string()),
        trigger: entry.trigger.map(|trigger| trigger.to_string()),
        attempt: entry.attempt,
        status: entry.status,
        detail: entry.detail,
    }
}

fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_renders_as_server_sent_events_with_the_skipped_marker_first() {
        let entry = TailEntry {
            at: SystemTime::UNIX_EPOCH,
            stage: "received",
            source: "/s".into(),
            id: "e1".into(),
            event_type: Some("order.created".into()),
            trigger: None,
            attempt: None,
            status: None,
            detail: None,
        };
        let text = render(TailBatch {
            skipped: 3,
            entries: vec![entry],
        });
        let text = std::str::from_utf8(&text).unwrap();
        assert!(
            text.starts_with("event: skipped\ndata: {\"skipped\":3}\n\nevent: hop\ndata: {"),
            "{text}"
        );
        assert!(text.contains("\"type\":\"order.created\""), "{text}");
        assert!(text.ends_with("\n\n"));
    }
}
