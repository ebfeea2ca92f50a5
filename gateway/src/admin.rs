//! The node's admin API under `/-/` (no Kubernetes namespace can start with `-`, so these paths
//! never shadow a broker): status, parked events, re-drive, and fault injection for tests.
//!
//! ```text
//!   GET  /-/status
//!   GET  /-/events/{id}                          the hops of one event (the node's journal)
//!   GET  /-/brokers/{namespace}/{broker}/parked?max=100
//!   POST /-/brokers/{namespace}/{broker}/parked/redrive[?trigger=<namespace>/<name>]
//!   POST /-/faults/{broker|dispatcher}/{namespace}/{broker}
//!   POST /-/faults/trigger/{namespace}/{broker}/{trigger}
//! ```

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use knactor_actors::actor::{FaultTarget, GetStatus, InjectFault, NodeError, ParkedOf, RedriveOf};
use knactor_actors::journal::Detail;
use knactor_actors::resources::ObjectKey;
use serde::Deserialize;
use serde_json::json;

use crate::binding::to_structured;
use crate::ingress::GatewayState;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/-/status", web::get().to(status))
        .route("/-/events/{id:.*}", web::get().to(event_trail))
        .route(
            "/-/brokers/{namespace}/{broker}/parked",
            web::get().to(parked),
        )
        .route(
            "/-/brokers/{namespace}/{broker}/parked/redrive",
            web::post().to(redrive),
        )
        .route(
            "/-/faults/{kind}/{namespace}/{broker}",
            web::post().to(fault),
        )
        .route(
            "/-/faults/{kind}/{namespace}/{broker}/{trigger}",
            web::post().to(trigger_fault),
        );
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("the node is not answering")]
    NodeUnavailable,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::Node(NodeError::UnknownBroker(_) | NodeError::UnknownTrigger(_)) => {
                StatusCode::NOT_FOUND
            }
            AdminError::Node(NodeError::NotRunning(_)) | AdminError::NodeUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AdminError::Node(NodeError::FaultInjectionOff) => StatusCode::FORBIDDEN,
            AdminError::Node(NodeError::NotDispatching) => StatusCode::CONFLICT,
            AdminError::Node(NodeError::Channel(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({ "error": self.to_string() }))
    }
}

async fn status(state: web::Data<GatewayState>) -> Result<HttpResponse, AdminError> {
    let status = state
        .node
        .send(GetStatus)
        .await
        .map_err(|_| AdminError::NodeUnavailable)?;
    Ok(HttpResponse::Ok().json(json!({
        "role": status.role.name(),
        "ready": status.ready,
        "brokers": status.brokers.iter().map(|broker| json!({
            "namespace": broker.key.namespace,
            "name": broker.key.name,
            "channel": broker.channel,
            "topic": broker.topic,
            "running": broker.running,
            "restarts": broker.restarts,
            "storing": broker.running && broker.channel_problem.is_none(),
            "channelProblem": broker.channel_problem,
            "triggers": broker.triggers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "partitions": broker.partitions.iter().map(|(partition, gauges)| json!({
                "partition": partition,
                "end": gauges.end,
                "committed": gauges.committed,
                "position": gauges.position,
                "lag": gauges.lag(),
            })).collect::<Vec<_>>(),
            "triggerProgress": broker.trigger_progress.iter().map(|trigger| json!({
                "name": trigger.key.to_string(),
                "queued": trigger.queued,
                "inFlight": trigger.in_flight,
                "behind": trigger.behind,
                "laggingPartitions": trigger.lagging_partitions,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "sources": state.sources.all().into_iter().map(|((kind, key), health)| json!({
            "kind": kind,
            "namespace": key.namespace,
            "name": key.name,
            "running": health.running,
            "ready": health.ready,
            "problem": health.problem,
            "sufficientPermissions": health.permissions.as_ref().map(Result::is_ok),
            "permissionProblem": health.permissions.as_ref().and_then(|p| p.as_ref().err()),
            "namespaces": health.namespaces,
            "skipped": health.skipped,
            "sent": health.sent,
            "rejected": health.rejected,
            "retries": health.retries,
        })).collect::<Vec<_>>(),
        "notRunning": status.issues.iter().map(|issue| json!({
            "kind": issue.kind,
            "namespace": issue.key.namespace,
            "name": issue.key.name,
            "reason": issue.reason,
            "message": issue.message,
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct TrailQuery {
    /// The event's `source`, when several producers used the id.
    source: Option<String>,
}

/// "Where did my event go": what this node recorded about one event, oldest hop first. An id
/// alone names the most recent event of that id; `?source=` picks one of several producers'.
async fn event_trail(
    path: web::Path<String>,
    query: web::Query<TrailQuery>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let journal = &state.metrics.journal;
    if !journal.is_on() {
        return Err(AdminError::NotFound(
            "this node keeps no journal (--trace-journal-events 0)".into(),
        ));
    }
    let mut trails = journal.trails(&id);
    let chosen = match &query.source {
        Some(source) => trails.iter().position(|trail| &trail.source == source),
        None => (!trails.is_empty()).then_some(0),
    };
    let Some(trail) = chosen.map(|index| trails.swap_remove(index)) else {
        let from = query
            .source
            .as_ref()
            .map(|source| format!(" from source {source:?}"))
            .unwrap_or_default();
        return Err(AdminError::NotFound(format!(
            "this node has no record of event {id:?}{from}: it never reached this node, or it is older than the last events the node remembers (--trace-journal-events)"
        )));
    };
    // One trail per source: what is left are the other producers' events of this id.
    let other_sources: Vec<&str> = trails.iter().map(|other| other.source.as_str()).collect();
    Ok(HttpResponse::Ok().json(json!({
        "id": id,
        "source": trail.source,
        "otherSources": other_sources,
        "traceId": trail.trace_id.map(|id| format!("{id:032x}")),
        "hops": trail.hops.iter().map(|hop| json!({
            "at": chrono::DateTime::<chrono::Utc>::from(hop.at)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "stage": hop.stage.as_str(),
            "broker": &*hop.broker,
            "trigger": hop.trigger.as_deref(),
            "attempt": hop.attempt,
            "status": hop.status,
            "partition": hop.partition,
            "offset": hop.offset,
            "detail": (hop.detail != Detail::None).then(|| hop.detail.to_string()),
        })).collect::<Vec<_>>(),
        "droppedHops": trail.dropped,
    })))
}

#[derive(Deserialize)]
struct ParkedQuery {
    max: Option<usize>,
}

async fn parked(
    path: web::Path<(String, String)>,
    query: web::Query<ParkedQuery>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let (namespace, name) = path.into_inner();
    let request = ParkedOf {
        broker: ObjectKey::new(namespace, name),
        max: query.max.unwrap_or(100).min(10_000),
    };
    let parked = state
        .node
        .send(request)
        .await
        .map_err(|_| AdminError::NodeUnavailable)??;
    Ok(HttpResponse::Ok().json(json!({
        "total": parked.total,
        "events": parked.events.iter().map(|parked| {
            let (body, _) = to_structured(&parked.event);
            let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            json!({
                "trigger": parked.trigger,
                "reason": parked.reason,
                "parkedAt": parked.parked_at,
                "partition": parked.partition,
                "offset": parked.offset,
                "event": event,
            })
        }).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct RedriveQuery {
    trigger: Option<String>,
}

async fn redrive(
    path: web::Path<(String, String)>,
    query: web::Query<RedriveQuery>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let (namespace, name) = path.into_inner();
    let trigger = query
        .trigger
        .as_deref()
        .map(|text| {
            // A bare name is a trigger in the broker's namespace.
            if text.contains('/') {
                text.parse::<ObjectKey>().map_err(AdminError::BadRequest)
            } else {
                Ok(ObjectKey::new(&namespace, text))
            }
        })
        .transpose()?;
    let request = RedriveOf {
        broker: ObjectKey::new(namespace, name),
        trigger,
    };
    let report = state
        .node
        .send(request)
        .await
        .map_err(|_| AdminError::NodeUnavailable)??;
    Ok(HttpResponse::Ok().json(json!({ "redriven": report.redriven, "kept": report.kept })))
}

async fn fault(
    path: web::Path<(String, String, String)>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let (kind, namespace, broker) = path.into_inner();
    inject(&kind, ObjectKey::new(namespace, broker), None, &state).await
}

async fn trigger_fault(
    path: web::Path<(String, String, String, String)>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let (kind, namespace, broker, trigger) = path.into_inner();
    let trigger = ObjectKey::new(&namespace, trigger);
    inject(
        &kind,
        ObjectKey::new(namespace, broker),
        Some(trigger),
        &state,
    )
    .await
}

async fn inject(
    kind: &str,
    broker: ObjectKey,
    trigger: Option<ObjectKey>,
    state: &GatewayState,
) -> Result<HttpResponse, AdminError> {
    let target = match (kind, trigger) {
        ("broker", None) => FaultTarget::Broker(broker),
        ("dispatcher", None) => FaultTarget::Dispatcher(broker),
        ("trigger", Some(trigger)) => FaultTarget::Trigger { broker, trigger },
        _ => return Err(AdminError::BadRequest("use /-/faults/{broker|dispatcher}/<ns>/<broker> or /-/faults/trigger/<ns>/<broker>/<trigger>".into())),
    };
    state
        .node
        .send(InjectFault(target))
        .await
        .map_err(|_| AdminError::NodeUnavailable)??;
    Ok(HttpResponse::Ok().json(json!({ "crashed": kind })))
}
