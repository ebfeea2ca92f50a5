//! The node's admin API under `/-/` (no Kubernetes namespace can start with `-`, so these paths
//! never shadow a broker): status, topology, live numbers, event trails, the live tail, parked
//! events and their re-drive, the console's session, and fault injection for tests. The console
//! ([`crate::console`]) reads nothing else, so a script can fetch whatever it shows.
//!
//! Every route but `POST /-/login` is behind [`AdminAccess`] (see [`access`]): a bearer token
//! (`--admin-token-file`), or the console's session opened with it; without a token, the API is
//! open only on a loopback listener and off elsewhere. The routes are described by an OpenAPI
//! document generated from the handlers ([`openapi`]), served at `/-/openapi.json` and committed
//! as `docs/admin-api.openapi.json` (a test checks it is current).
//!
//! ```text
//!   POST /-/login                                 {"token": ...} -> session cookie + CSRF token
//!   POST /-/logout
//!   GET  /-/session                               who you are, the CSRF token, console settings
//!   GET  /-/status
//!   GET  /-/node                                  this node: name, role, readiness, partitions held
//!   GET  /-/topology                              sources, brokers, triggers, subscribers, states
//!   GET  /-/stats[?broker=<namespace>/<name>]     counters, gauges and latency buckets
//!   GET  /-/events/{id}[?source=S]                the hops of one event (the node's journal)
//!   GET  /-/brokers/{namespace}/{broker}/tail     server-sent events: the broker's hops, live
//!   GET  /-/brokers/{namespace}/{broker}/parked?max=100
//!   POST /-/brokers/{namespace}/{broker}/parked/redrive[?trigger=<namespace>/<name>]
//!        [{"events": [{"partition": 0, "offset": 3}, ...]}]
//!   GET  /-/openapi.json
//!   POST /-/faults/{broker|dispatcher}/{namespace}/{broker}
//!   POST /-/faults/trigger/{namespace}/{broker}/{trigger}
//! ```

pub mod access;
pub mod openapi;
mod stats;
mod tail;
mod topology;

pub use access::{AdminAccess, Authorized, Via, CSRF_HEADER, SESSION_COOKIE};

use std::collections::BTreeSet;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use knactor_actors::actor::{
    ExplainMatch, FaultTarget, GetStatus, InjectFault, NodeError, ParkedOf, RedriveOf,
};
use knactor_actors::journal::{Detail, Stage};
use knactor_actors::resources::{ObjectKey, ObjectKeyParseError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::binding::to_structured;
use crate::ingress::GatewayState;

pub fn configure(config: &mut web::ServiceConfig) {
    // One scope: a broker's POST is told apart from the admin API by the prefix alone, without
    // trying the dynamic paths' patterns. What the scope does not route goes to the
    // application's default service (the ingress), as before.
    config.service(
        web::scope("/-")
            .route("/login", web::post().to(access::login))
            .route("/logout", web::post().to(access::logout))
            .route("/session", web::get().to(access::session))
            .route("/status", web::get().to(status))
            .route("/node", web::get().to(topology::node))
            .route("/topology", web::get().to(topology::topology))
            .route("/stats", web::get().to(stats::stats))
            .route("/openapi.json", web::get().to(openapi::serve))
            .route("/events/{id:.*}", web::get().to(event_trail))
            .route(
                "/brokers/{namespace}/{broker}/tail",
                web::get().to(tail::tail),
            )
            .route(
                "/brokers/{namespace}/{broker}/parked",
                web::get().to(parked),
            )
            .route(
                "/brokers/{namespace}/{broker}/parked/redrive",
                web::post().to(redrive),
            )
            .route("/faults/{kind}/{namespace}/{broker}", web::post().to(fault))
            .route(
                "/faults/{kind}/{namespace}/{broker}/{trigger}",
                web::post().to(trigger_fault),
            ),
    );
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
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("the node is not answering")]
    NodeUnavailable,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    BadKey(#[from] ObjectKeyParseError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooMany(String),
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
            AdminError::Node(NodeError::FaultInjectionOff) | AdminError::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            AdminError::Node(NodeError::NotDispatching) => StatusCode::CONFLICT,
            AdminError::Node(NodeError::Channel(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::BadRequest(_) | AdminError::BadKey(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) | AdminError::Off => StatusCode::NOT_FOUND,
            AdminError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AdminError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let AdminError::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"knactor\""));
        }
        response.json(ErrorBody {
            error: self.to_string(),
        })
    }
}

/// What every refusal of the admin API answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Why, in a sentence.
    pub error: String,
}

/// What the node runs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusDoc {
    /// `all`, `ingress` or `dispatch` (`--role`).
    role: &'static str,
    ready: bool,
    brokers: Vec<BrokerStatusDoc>,
    sources: Vec<SourceStatusDoc>,
    /// Resources loaded but not running, with Knative's condition reason.
    not_running: Vec<IssueDoc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatusDoc {
    namespace: String,
    name: String,
    /// `memory` or `kafka`.
    channel: &'static str,
    topic: String,
    /// Its actors run on this node.
    running: bool,
    restarts: u32,
    /// Its channel stores events (its last append or probe succeeded).
    storing: bool,
    channel_problem: Option<String>,
    /// `<namespace>/<name>` of its running triggers.
    triggers: Vec<String>,
    partitions: Vec<PartitionDoc>,
    trigger_progress: Vec<TriggerProgressDoc>,
}

/// Asks the node; a node that does not answer (restarting, stopping) is a 503.
pub(super) async fn ask<M>(state: &GatewayState, message: M) -> Result<M::Result, AdminError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    knactor_actors::actor::Node: actix::Handler<M>,
{
    state
        .node
        .send(message)
        .await
        .map_err(|_| AdminError::NodeUnavailable)
}

/// Where one partition stands on this node.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionDoc {
    partition: i32,
    /// The offset the next appended record gets.
    end: Option<i64>,
    /// Everything below is final for every trigger.
    committed: Option<i64>,
    /// The next offset the dispatcher reads.
    position: Option<i64>,
    /// `end - committed`.
    lag: Option<i64>,
}

impl PartitionDoc {
    pub(crate) fn of(partition: i32, gauges: &knactor_actors::metrics::PartitionGauges) -> Self {
        PartitionDoc {
            partition,
            end: gauges.end,
            committed: gauges.committed,
            position: gauges.position,
            lag: gauges.lag(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerProgressDoc {
    name: String,
    queued: u64,
    in_flight: u64,
    behind: u64,
    lagging_partitions: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatusDoc {
    /// `PingSource` or `ApiServerSource`.
    kind: &'static str,
    namespace: String,
    name: String,
    running: bool,
    ready: bool,
    problem: Option<String>,
    sufficient_permissions: Option<bool>,
    permission_problem: Option<String>,
    namespaces: Vec<String>,
    skipped: Option<String>,
    sent: u64,
    rejected: u64,
    retries: u64,
}

/// A resource that is loaded but not running, and why (Knative's `Ready=False`).
#[derive(Debug, Serialize, ToSchema)]
pub struct IssueDoc {
    kind: &'static str,
    namespace: String,
    name: String,
    /// e.g. `SubscriberResolveFailed`, `BrokerNotReady`, `ChannelUnavailable`.
    reason: &'static str,
    message: String,
}

impl IssueDoc {
    fn of(issue: &knactor_actors::routes::RouteIssue) -> Self {
        IssueDoc {
            kind: issue.kind,
            namespace: issue.key.namespace.clone(),
            name: issue.key.name.clone(),
            reason: issue.reason.as_str(),
            message: issue.message.clone(),
        }
    }
}

/// Brokers, triggers, sources, and what is not running.
#[utoipa::path(
    get, path = "/-/status", tag = "node",
    responses((status = 200, body = StatusDoc), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn status(
    _: Authorized,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let status = ask(&state, GetStatus).await?;
    Ok(HttpResponse::Ok().json(StatusDoc {
        role: status.role.name(),
        ready: status.ready,
        brokers: status
            .brokers
            .iter()
            .map(|broker| BrokerStatusDoc {
                namespace: broker.key.namespace.clone(),
                name: broker.key.name.clone(),
                channel: broker.channel,
                topic: broker.topic.clone(),
                running: broker.running,
                restarts: broker.restarts,
                storing: broker.running && broker.channel_problem.is_none(),
                channel_problem: broker.channel_problem.clone(),
                triggers: broker.triggers.iter().map(ToString::to_string).collect(),
                partitions: broker
                    .partitions
                    .iter()
                    .map(|(partition, gauges)| PartitionDoc::of(*partition, gauges))
                    .collect(),
                trigger_progress: broker
                    .trigger_progress
                    .iter()
                    .map(|trigger| TriggerProgressDoc {
                        name: trigger.key.to_string(),
                        queued: trigger.queued,
                        in_flight: trigger.in_flight,
                        behind: trigger.behind,
                        lagging_partitions: trigger.lagging_partitions,
                    })
                    .collect(),
            })
            .collect(),
        sources: state
            .sources
            .all()
            .into_iter()
            .map(|((kind, key), health)| SourceStatusDoc {
                kind,
                namespace: key.namespace,
                name: key.name,
                running: health.running,
                ready: health.ready,
                problem: health.problem,
                sufficient_permissions: health.permissions.as_ref().map(Result::is_ok),
                permission_problem: health
                    .permissions
                    .and_then(Result::err)
                    .map(|problem| problem.to_string()),
                namespaces: health.namespaces,
                skipped: health.skipped,
                sent: health.sent,
                rejected: health.rejected,
                retries: health.retries,
            })
            .collect(),
        not_running: status.issues.iter().map(IssueDoc::of).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TrailQuery {
    /// The event's `source`, when several producers used the id.
    source: Option<String>,
}

/// What the node's journal holds about one event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrailDoc {
    id: String,
    source: String,
    /// Other producers' events of the same id (ask again with `?source=`).
    other_sources: Vec<String>,
    /// The W3C trace id, to open the trace in Jaeger.
    trace_id: Option<String>,
    /// Oldest first.
    hops: Vec<HopDoc>,
    /// Hops not kept (an event keeps 64).
    dropped_hops: u64,
    /// Why each trigger of the broker took the event or not (when the journal kept the event).
    triggers: Vec<VerdictDoc>,
}

/// One hop of an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct HopDoc {
    /// RFC 3339, microseconds.
    at: String,
    /// `stored`, `refused`, `dispatched`, `unmatched`, `attempt`, `delivered`, `replied`,
    /// `dead-lettered` or `parked`.
    stage: &'static str,
    broker: String,
    trigger: Option<String>,
    attempt: Option<u32>,
    status: Option<u16>,
    partition: Option<i32>,
    offset: Option<i64>,
    detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerdictDoc {
    name: String,
    matched: bool,
    /// The part of the filter that failed, what it wanted and what the event has.
    why: Option<String>,
}

/// "Where did my event go": what this node recorded about one event, oldest hop first. An id
/// alone names the most recent event of that id; `?source=` picks one of several producers'.
#[utoipa::path(
    get, path = "/-/events/{id}", tag = "events",
    params(("id" = String, Path, description = "The event's id"), TrailQuery),
    responses((status = 200, body = TrailDoc), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn event_trail(
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
    let other_sources = trails.iter().map(|other| other.source.clone()).collect();
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
    Ok(HttpResponse::Ok().json(TrailDoc {
        id,
        source: trail.source.clone(),
        other_sources,
        trace_id: trail.trace_id.map(|id| format!("{id:032x}")),
        hops: trail
            .hops
            .iter()
            .map(|hop| HopDoc {
                at: chrono::DateTime::<chrono::Utc>::from(hop.at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                stage: hop.stage.as_str(),
                broker: hop.broker.to_string(),
                trigger: hop.trigger.map(|trigger| trigger.to_string()),
                attempt: hop.attempt,
                status: hop.status,
                partition: hop.partition,
                offset: hop.offset,
                detail: (hop.detail != Detail::None).then(|| hop.detail.to_string()),
            })
            .collect(),
        dropped_hops: trail.dropped,
        triggers: verdicts
            .iter()
            .map(|verdict| VerdictDoc {
                name: verdict.trigger.to_string(),
                matched: verdict.refused_because.is_none(),
                why: verdict.refused_because.clone(),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ParkedQuery {
    /// Events listed at most (default 100, at most 10,000).
    max: Option<usize>,
}

/// A broker's parked events.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedDoc {
    /// Parked in all (beyond what is listed).
    total: u64,
    events: Vec<ParkedEventDoc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParkedEventDoc {
    /// `<namespace>/<name>` of the trigger whose delivery gave up.
    trigger: String,
    reason: String,
    parked_at: String,
    /// Its position in the parking lot: what a re-drive of a selection names.
    partition: i32,
    offset: i64,
    /// The event, in the CloudEvents JSON format.
    event: serde_json::Value,
}

/// The events parked after every attempt and the dead-letter sink failed, oldest first.
#[utoipa::path(
    get, path = "/-/brokers/{namespace}/{broker}/parked", tag = "parked",
    params(("namespace" = String, Path), ("broker" = String, Path), ParkedQuery),
    responses((status = 200, body = ParkedDoc), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn parked(
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
    Ok(HttpResponse::Ok().json(ParkedDoc {
        total: parked.total,
        events: parked
            .events
            .iter()
            .map(|parked| {
                let (body, _) = to_structured(&parked.event);
                ParkedEventDoc {
                    trigger: parked.trigger.clone(),
                    reason: parked.reason.clone(),
                    parked_at: parked.parked_at.clone(),
                    partition: parked.partition,
                    offset: parked.offset,
                    event: serde_json::from_slice(&body).unwrap_or_default(),
                }
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RedriveQuery {
    /// Only this trigger's events: `<namespace>/<name>`, or a name in the broker's namespace.
    trigger: Option<String>,
}

/// Which parked events to re-drive (the body is optional: without it, all of them).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveSelection {
    /// Positions in the parking lot, as listed by `GET .../parked`.
    events: Vec<ParkedPosition>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParkedPosition {
    partition: i32,
    offset: i64,
}

/// Most events a selection names.
const MAX_SELECTION: usize = 10_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct RedriveDoc {
    /// Put back into the broker for their trigger.
    redriven: u64,
    /// Left parked (another trigger's, not selected, or for a trigger that no longer exists).
    kept: u64,
}

/// Delivers parked events again, each to the trigger that parked it: all of them, one trigger's,
/// or a selection. Each re-driven event gets a new position; list again before another selection.
#[utoipa::path(
    post, path = "/-/brokers/{namespace}/{broker}/parked/redrive", tag = "parked",
    params(("namespace" = String, Path), ("broker" = String, Path), RedriveQuery),
    request_body(content = Option<RedriveSelection>, description = "Optional: only these events"),
    responses(
        (status = 200, body = RedriveDoc),
        (status = 400, body = ErrorBody),
        (status = 403, description = "A session's change without its CSRF token", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn redrive(
    _: Authorized,
    path: web::Path<(String, String)>,
    query: web::Query<RedriveQuery>,
    body: web::Bytes,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let (namespace, name) = path.into_inner();
    let trigger = query
        .trigger
        .as_deref()
        .map(|text| {
            // A bare name is a trigger in the broker's namespace.
            if text.contains('/') {
                text.parse::<ObjectKey>().map_err(AdminError::from)
            } else {
                Ok(ObjectKey::new(&namespace, text))
            }
        })
        .transpose()?;
    let only = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let selection: RedriveSelection = serde_json::from_slice(&body).map_err(|error| {
            AdminError::BadRequest(format!(
                "the body must be {{\"events\": [{{\"partition\": P, \"offset\": O}}, ...]}} \
                 or nothing: {error}"
            ))
        })?;
        if selection.events.len() > MAX_SELECTION {
            return Err(AdminError::BadRequest(format!(
                "a selection names at most {MAX_SELECTION} events; it names {}",
                selection.events.len()
            )));
        }
        Some(
            selection
                .events
                .iter()
                .map(|position| (position.partition, position.offset))
                .collect::<BTreeSet<_>>(),
        )
    };
    let request = RedriveOf {
        broker: ObjectKey::new(namespace, name),
        trigger,
        only,
    };
    let report = state
        .node
        .send(request)
        .await
        .map_err(|_| AdminError::NodeUnavailable)??;
    Ok(HttpResponse::Ok().json(RedriveDoc {
        redriven: report.redriven,
        kept: report.kept,
    }))
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "crashed": kind })))
}
