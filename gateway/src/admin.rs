//! The node's admin API under `/-/` (no Kubernetes namespace can start with `-`, so these paths
//! never shadow a broker): status, parked events, re-drive, and fault injection for tests.
//!
//! Every route is behind [`AdminAccess`]: a bearer token (`--admin-token-file`) when one is set;
//! without one, the API is open only on a loopback listener (only this machine reaches it) and off
//! elsewhere. The token travels in the `Authorization` header only, never a cookie, so no other
//! site can make a browser use it (no CSRF).
//!
//! ```text
//!   GET  /-/status
//!   GET  /-/events/{id}                          the hops of one event (the node's journal)
//!   GET  /-/brokers/{namespace}/{broker}/parked?max=100
//!   POST /-/brokers/{namespace}/{broker}/parked/redrive[?trigger=<namespace>/<name>]
//!   POST /-/faults/{broker|dispatcher}/{namespace}/{broker}
//!   POST /-/faults/trigger/{namespace}/{broker}/{trigger}
//! ```

use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use knactor_actors::actor::{
    ExplainMatch, FaultTarget, GetStatus, InjectFault, NodeError, ParkedOf, RedriveOf,
};
use knactor_actors::journal::{Detail, Stage};
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

/// Who may use the admin API on one listener.
#[derive(Clone)]
pub enum AdminAccess {
    /// Callers that present this bearer token.
    Token(Arc<str>),
    /// Anyone who reaches the listener: a loopback listener without a token (this machine only).
    Local,
    /// Nobody: a listener other machines reach, and no token set.
    Off,
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.write_str(match self {
            AdminAccess::Token(_) => "Token(..)",
            AdminAccess::Local => "Local",
            AdminAccess::Off => "Off",
        })
    }
}

impl AdminAccess {
    /// The access of a listener bound to `address`, given the token (if any).
    pub fn for_listener(token: Option<&Arc<str>>, address: SocketAddr) -> Self {
        match token {
            Some(token) => AdminAccess::Token(token.clone()),
            None if address.ip().is_loopback() => AdminAccess::Local,
            None => AdminAccess::Off,
        }
    }

    fn check(&self, request: &HttpRequest) -> Result<(), AdminError> {
        match self {
            AdminAccess::Local => Ok(()),
            AdminAccess::Off => Err(AdminError::Off),
            AdminAccess::Token(token) => {
                let presented = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .map(str::trim);
                match presented {
                    Some(presented) if same(presented.as_bytes(), token.as_bytes()) => Ok(()),
                    Some(_) => Err(AdminError::Unauthorized("the token is not the node's")),
                    None => Err(AdminError::Unauthorized(
                        "send the node's admin token as Authorization: Bearer <token>",
                    )),
                }
            }
        }
    }
}

/// Compares without stopping at the first difference, so that timing tells nothing of the token.
fn same(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// A request the listener's [`AdminAccess`] lets in: every handler of the admin API takes one.
pub struct Authorized;

impl FromRequest for Authorized {
    type Error = AdminError;
    type Future = Ready<Result<Self, AdminError>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let access = request
            .app_data::<web::Data<GatewayState>>()
            .map_or(AdminAccess::Off, |state| state.admin_access.clone());
        ready(access.check(request).map(|()| Authorized))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error(
        "the admin API is off on this listener: other machines reach it and the node has no \
         admin token (start it with --admin-token-file, or serve the API on --admin-listen)"
    )]
    Off,
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
            AdminError::NotFound(_) | AdminError::Off => StatusCode::NOT_FOUND,
            AdminError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let AdminError::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"knactor\""));
        }
        response.json(json!({ "error": self.to_string() }))
    }
}

async fn status(_: Authorized, state: web::Data<GatewayState>) -> Result<HttpResponse, AdminError> {
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
    _: Authorized,
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
    // Why each trigger took the event or not, when the journal kept the event (it does when some
    // trigger did not take it).
    let dispatched_by = trail
        .hops
        .iter()
        .find(|hop| matches!(hop.stage, Stage::Dispatched | Stage::Unmatched))
        .and_then(|hop| hop.broker.parse::<ObjectKey>().ok());
    let verdicts = match (&trail.event, dispatched_by) {
        (Some(event), Some(broker)) => state
            .node
            .send(ExplainMatch {
                broker,
                event: event.clone(),
            })
            .await
            .map_err(|_| AdminError::NodeUnavailable)?,
        _ => Vec::new(),
    };
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
        "triggers": verdicts.iter().map(|verdict| json!({
            "name": verdict.trigger.to_string(),
            "matched": verdict.refused_because.is_none(),
            "why": verdict.refused_because,
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct ParkedQuery {
    max: Option<usize>,
}

async fn parked(
    _: Authorized,
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
    _: Authorized,
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
    _: Authorized,
    path: web::Path<(String, String, String)>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let (kind, namespace, broker) = path.into_inner();
    inject(&kind, ObjectKey::new(namespace, broker), None, &state).await
}

async fn trigger_fault(
    _: Authorized,
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
