//! The broker ingress: `POST /{namespace}/{broker}` with CloudEvents in any content mode, answered
//! as Knative's broker ingress answers (see [`IngressError`] for every status), plus `/healthz`,
//! `/readyz`, `/metrics` and the admin API under `/-/` (a path no Kubernetes namespace can take),
//! on one listener or with the admin API on a listener of its own ([`configure`], [`AdminApi`],
//! [`configure_admin`]).
//!
//! A 202 means the events are stored in the broker's channel (on Kafka: acknowledged by all
//! in-sync replicas), not merely received.
//!
//! A request is held to the node's [`Limits`]: its body within `--request-timeout` of its head,
//! its bytes and its decoded events within the shared body budget, its attributes within their
//! sizes; every refusal is counted and logged at debug (summed up at warn, see [`crate::limits`]).

use std::sync::Arc;

use actix::Addr;
use actix_web::http::{header, Method};
use actix_web::{guard, web, HttpRequest, HttpResponse};
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use futures::StreamExt;
use knactor_actors::actor::{IngressTable, Node, PublishError, Role};
use knactor_actors::channel::AppendError;
use knactor_actors::event_span;
use knactor_actors::metrics::Metrics;
use knactor_actors::routes::broker_path_parts;
use knactor_actors::source::SourceBoard;
use knactor_actors::trace::{self, TraceParent};
use tracing::{debug, error};

use crate::binding::{
    check_attribute_limits, decode_message, decoded_size, media_type, AttributeLimits, DecodeError,
    BATCH_CONTENT_TYPE,
};
use crate::error::IngressError;
use crate::limits::{BodyReservation, Limits};

/// What the HTTP side needs from the node.
#[derive(Debug, Clone)]
pub struct GatewayState {
    pub ingress: Arc<IngressTable>,
    pub node: Addr<Node>,
    pub metrics: Arc<Metrics>,
    /// How the node's sources are doing.
    pub sources: Arc<SourceBoard>,
    /// Requests with a larger body get 413.
    pub max_body_bytes: usize,
    /// A dispatch-only node answers 421 to events.
    pub role: Role,
    /// Who may use the admin API on this listener.
    pub admin_access: crate::admin::AdminAccess,
    /// What the ingress holds for its clients at most, and what it refused.
    pub limits: Arc<Limits>,
    /// What the web console shows of its node.
    pub console: Arc<crate::console::ConsoleSettings>,
}

/// Where a node serves its admin API (`/-/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminApi {
    /// Beside the ingress, on one listener (`knactor run` without `--admin-listen`).
    Here,
    /// On a listener of its own ([`configure_admin`]); the ingress listener answers `/-/...` with
    /// 404 saying so. What a gateway Service exposes to every workload of a cluster then has no
    /// re-drive and no event trails.
    Elsewhere,
}

/// Registers the routes of the ingress listener: the broker ingress, the probes, the metrics, and
/// the admin API when it is served `Here`.
pub fn configure(state: GatewayState, admin: AdminApi) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |config: &mut web::ServiceConfig| {
        // actix-web tries the routes in the order they are registered, each at a cost even when
        // it cannot match, and an event's POST is nearly every request: the admin API's scope
        // first (told apart by its `/-` prefix alone), then one scope for every GET route (the
        // probes, the metrics, the console), which a POST passes over at its method alone, then
        // the ingress. (Tried one by one, the GET routes' patterns cost about 3,000 instructions
        // per event, callgrind counted: a tenth of the reference server's whole request.) A GET
        // that none of them takes reaches the ingress too, as before, which answers it 405.
        config.app_data(web::Data::new(state.clone()));
        match admin {
            AdminApi::Here => config.configure(crate::admin::configure),
            AdminApi::Elsewhere => {
                config.service(web::scope("/-").default_service(web::to(admin_elsewhere)))
            }
        };
        config.service(web::scope("").guard(guard::Get()).configure(|gets| {
            probe_and_metric_routes(gets);
            if admin == AdminApi::Here {
                gets.configure(crate::console::configure);
            }
        }));
        config.default_service(web::to(ingress));
    }
}

/// The state, `/healthz`, `/readyz` and `/metrics`.
fn probes_and_metrics(config: &mut web::ServiceConfig, state: &GatewayState) {
    config.app_data(web::Data::new(state.clone()));
    probe_and_metric_routes(config);
}

/// `/healthz`, `/readyz` and `/metrics`: on every listener but the probes' own.
fn probe_and_metric_routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// The probe listener (`--probe-listen`): `/healthz` and `/readyz` only.
pub fn configure_probes(state: GatewayState) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |config: &mut web::ServiceConfig| {
        config
            .app_data(web::Data::new(state.clone()))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz));
    }
}

/// The admin listener (`--admin-listen`): the admin API, the console, the probes and the metrics.
pub fn configure_admin(state: GatewayState) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |config: &mut web::ServiceConfig| {
        probes_and_metrics(config, &state);
        config
            .configure(crate::admin::configure)
            .configure(crate::console::configure);
    }
}

async fn admin_elsewhere() -> HttpResponse {
    HttpResponse::NotFound().content_type("text/plain").body(
        "the admin API is not served here: this node serves it on its --admin-listen address\n",
    )
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(state: web::Data<GatewayState>) -> HttpResponse {
    if state.ingress.is_ready() {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")
    } else if state.ingress.is_stopping() {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("not ready: the node is shutting down\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("not ready: brokers are still starting\n")
    }
}

async fn metrics(state: web::Data<GatewayState>) -> HttpResponse {
    let mut text = state.metrics.render();
    state.limits.render_metrics(&mut text);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

/// The broker ingress (and everything no other route took), in the spans of the request (see
/// [`propagate`]): each records the request's status.
async fn ingress(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, IngressError> {
    let mut spans = Vec::new();
    let limits = state.limits.clone();
    let result = receive(request.clone(), payload, state, &mut spans).await;
    if let Err(error) = &result {
        // A client's mistake, or what it asked for beyond the limits: at debug one by one, summed
        // up at warn (see `limits`), so nobody can flood the log.
        let status = actix_web::ResponseError::status_code(error);
        if status.is_client_error() || error.is_refusal() {
            limits.refusals.request(status.as_u16());
            debug!(
                status = status.as_u16(),
                path = request.path(),
                "refused: {error}"
            );
        }
    }
    if !spans.is_empty() {
        let status = match &result {
            Ok(response) => response.status(),
            Err(error) => actix_web::ResponseError::status_code(error),
        };
        for span in &spans {
            span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() || status.is_client_error() {
                span.record("otel.status_code", "error");
            }
        }
    }
    result
}

async fn receive(
    request: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<GatewayState>,
    spans: &mut Vec<tracing::Span>,
) -> Result<HttpResponse, IngressError> {
    match *request.method() {
        Method::OPTIONS => return Ok(webhook_handshake()),
        Method::POST => {}
        ref other => return Err(IngressError::MethodNotAllowed(other.to_string())),
    }
    let path = broker_path(request.path())?;
    if !state.role.takes_events() {
        return Err(IngressError::NotAnIngress);
    }
    // Held until the answer: a stopping node waits for it before draining its brokers.
    let Some(_admitted) = state.ingress.enter() else {
        return Err(IngressError::ShuttingDown);
    };
    let Some(broker) = state.ingress.broker(path) else {
        return Err(match state.ingress.not_running(path) {
            Some(reason) => {
                debug!(
                    broker = path,
                    "refused an event: the broker is not running: {reason}"
                );
                IngressError::NotRunning {
                    broker: path.to_string(),
                }
            }
            None => IngressError::UnknownBroker(path.to_string()),
        });
    };

    let limit = state.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(IngressError::TooLarge { limit });
    }
    // Held until the answer: the body's bytes count against the budget until they are stored.
    let limits = state.limits.clone();
    let mut reservation = limits.bodies.reservation();
    let deadline = limits.settings.request_timeout;
    let body = tokio::time::timeout(deadline, read_body(&mut payload, limit, &mut reservation))
        .await
        .map_err(|_| IngressError::RequestTimeout { limit: deadline })??;

    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect::<Vec<_>>();
    // The decoded events share the budget with the body until they are stored.
    let decoded = decoded_size(&headers, &body);
    if reservation.bytes() + decoded > limits.bodies.limit() {
        return Err(IngressError::TooLargeDecoded {
            size: reservation.bytes() + decoded,
            limit: limits.bodies.limit(),
        });
    }
    if !reservation.grow(decoded) {
        return Err(IngressError::BodyBuffersFull);
    }
    let mut events = decode_message(&headers, &body)?;
    if events.is_empty() {
        return Ok(HttpResponse::Accepted().finish());
    }
    check_limits(&request, &events, &limits.settings.attributes)?;
    *spans = propagate(&request, &mut events);
    let tail = state.metrics.journal.tail();
    if tail.is_followed() {
        // The console's tail shows each event's type, which the journal's hops do not carry.
        for event in &events {
            tail.received(path, &event.source().to_string(), event.id(), event.ty());
        }
    }
    match broker.publish(events).await {
        Ok(()) => Ok(HttpResponse::Accepted().finish()),
        Err(error) => {
            if let PublishError::Append(failure) = &error {
                if !matches!(
                    failure,
                    AppendError::Full { .. } | AppendError::TooLarge { .. }
                ) {
                    // The answer says nothing of it: logged here, once.
                    error!(broker = path, "append failed: {failure}");
                }
            }
            Err(IngressError::Publish {
                broker: path.to_string(),
                error,
            })
        }
    }
}

/// Reads a body of at most `limit` bytes into one buffer whose every byte of capacity is held in
/// `reservation` (413 over the limit, 503 when the bodies being read hold the whole budget). Each
/// chunk is copied as it arrives, so the connection's read buffer is free for the next one; the
/// buffer grows as bytes arrive (doubling), so a slow body holds what it sent, not what it
/// declared.
async fn read_body(
    payload: &mut web::Payload,
    limit: usize,
    reservation: &mut BodyReservation<'_>,
) -> Result<Bytes, IngressError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| IngressError::UnreadableBody(error.to_string()))?;
        let needed = body.len() + chunk.len();
        if needed > limit {
            return Err(IngressError::TooLarge { limit });
        }
        if needed > body.capacity() {
            let wanted = needed.max(body.capacity() * 2).min(limit);
            if !reservation.grow(wanted - body.capacity()) {
                return Err(IngressError::BodyBuffersFull);
            }
            let mut grown = web::BytesMut::with_capacity(wanted);
            grown.extend_from_slice(&body);
            body = grown;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Refuses events with attributes over the node's limits, naming the event of a batch.
fn check_limits(
    request: &HttpRequest,
    events: &[Event],
    limits: &AttributeLimits,
) -> Result<(), IngressError> {
    let batch = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| media_type(value) == BATCH_CONTENT_TYPE);
    for (index, event) in events.iter().enumerate() {
        check_attribute_limits(event, limits).map_err(|error| {
            if batch {
                DecodeError::InBatch {
                    index,
                    error: Box::new(error),
                }
            } else {
                error
            }
        })?;
    }
    Ok(())
}

/// Carries the producers' trace contexts into the events and returns the request's spans.
///
/// An event's parent is the `traceparent` header (the request's hop, a child of the producer's
/// span) unless the event's own extension names another trace (a batch gathered from several
/// producers): then its own. Events with the same parent share one `knactor.ingress` span, so a
/// single event or a batch from one producer makes one span, and no event is moved into another's
/// trace. Untraced, an event without the extension takes the header's context as it is.
fn propagate(request: &HttpRequest, events: &mut [Event]) -> Vec<tracing::Span> {
    // Names made at compile time: a look-up by a `&str` that is not one of HTTP's standard names
    // makes (and allocates) a header name each time.
    const TRACEPARENT: header::HeaderName = header::HeaderName::from_static("traceparent");
    const TRACESTATE: header::HeaderName = header::HeaderName::from_static("tracestate");
    let header = |name: header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let from_header = header(TRACEPARENT)
        .and_then(|traceparent| TraceParent::parse(traceparent, header(TRACESTATE)));
    let pass_header_on = |event: &mut Event| {
        if let Some(parent) = &from_header {
            if TraceParent::of_event(event).is_none() {
                parent.write_to(event);
            }
        }
    };
    if !trace::exporting() {
        events.iter_mut().for_each(pass_header_on);
        return Vec::new();
    }
    let parent_of = |event: &Event| {
        let own = TraceParent::of_event(event);
        match (&from_header, own) {
            (Some(header), Some(own)) if own.trace_id != header.trace_id => Some(own),
            (Some(header), _) => Some(header.clone()),
            (None, own) => own,
        }
    };
    let make = |first: &Event, count: usize| {
        event_span!(
            "knactor.ingress",
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = request.method().as_str(),
            url.path = request.path(),
            http.response.status_code = tracing::field::Empty,
            messaging.batch.message_count = count,
            cloudevents.event_id = first.id(),
            cloudevents.event_type = first.ty(),
            cloudevents.event_source = first.source().as_str(),
        )
    };
    trace::span_per_group(events, parent_of, trace::At::Entry, make, pass_header_on)
}

/// `/<namespace>/<broker>`, exactly: its `<namespace>/<broker>`, which the ingress table is
/// keyed by.
fn broker_path(path: &str) -> Result<&str, IngressError> {
    if path == "/" || path.is_empty() {
        return Err(IngressError::RootPath);
    }
    let relative = path.trim_start_matches('/');
    match broker_path_parts(relative) {
        Some(_) => Ok(relative),
        None => Err(IngressError::BadPath(path.to_string())),
    }
}

/// The CloudEvents webhook validation handshake (what Knative's ingress answers to OPTIONS).
fn webhook_handshake() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ALLOW, "POST, OPTIONS"))
        .insert_header(("WebHook-Allowed-Origin", "*"))
        .insert_header(("WebHook-Allowed-Rate", "*"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_two_segment_paths_name_a_broker() {
        assert_eq!(broker_path("/team-a/default").unwrap(), "team-a/default");
        assert!(matches!(broker_path("/"), Err(IngressError::RootPath)));
        for bad in ["/team-a", "/a/b/c", "/a/", "//b", "/a/b/"] {
            assert!(
                matches!(broker_path(bad), Err(IngressError::BadPath(_))),
                "{bad}"
            );
        }
    }
}
