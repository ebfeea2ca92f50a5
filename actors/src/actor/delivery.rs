//! One event to one trigger's subscriber, from the first attempt to a final outcome.
//!
//! ```text
//!   attempt ──2xx, no body──────────────────────────────────────────────► Delivered
//!      │    ──2xx + CloudEvent──► reply into the broker ──stored─────────► Delivered (replied)
//!      │                                                 ──refused (TTL)──┐
//!      │    ──2xx + not a CloudEvent (as 502)──┐                          │
//!      │    ──retryable status / no response───┤                          │
//!      │         retries left: wait (backoff, Retry-After), attempt again │
//!      │    ──other status, or retries spent───┴──────────────────────────┤
//!      │                                                                  ▼
//!      │                          dead-letter sink set? ──yes──► send with the same policy
//!      │                                │ no                        ├─2xx──► DeadLettered
//!      │                                ▼                           └─fail─┐
//!      └─────────────────────────────► park (append to the broker's parked topic) ─► Parked
//! ```
//!
//! Every path ends in an outcome that is final: nothing is dropped. Parking retries until the
//! channel takes the event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use cloudevents::AttributesReader;
use rand::Rng;
use tracing::{debug, warn};
use url::Url;

use super::broker::{Broker, PublishError};
use super::Shared;
use crate::channel::EventLog;
use crate::endpoint::Endpoint;
use crate::envelope::{
    Envelope, FailureReport, PARKED_AT_EXTENSION, PARKED_REASON_EXTENSION, PARKED_TRIGGER_EXTENSION,
};
use crate::event_span;
use crate::journal::{Detail, Hop, Label, Stage};
use crate::metrics::{inc, TriggerMetrics};
use crate::retry::{is_retryable, is_success, Backoff};
use crate::routes::TriggerRoute;
use crate::trace;
use crate::transport::{Outbound, OutboundEvent, ReplyBody, Response, TransportError};

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { replied: bool },
    DeadLettered,
    Parked,
}

/// What every delivery of one trigger (under one route) needs, made once and shared by them all.
pub(super) struct TriggerContext {
    pub route: Arc<TriggerRoute>,
    shared: Arc<Shared>,
    /// The broker's channel (for parking).
    log: Arc<dyn EventLog>,
    /// Where replies go.
    broker: Broker,
    park_topic: String,
    pub metrics: Arc<TriggerMetrics>,
    /// `<namespace>/<name>` of the broker and of the trigger, for spans and the journal.
    broker_label: Label,
    label: Label,
    /// The subscriber's URL and the dead-letter sink's, for the journal.
    subscriber: Label,
    dead_letter_sink: Option<Label>,
    subscriber_endpoint: Arc<Endpoint>,
    dead_letter_endpoint: Option<Arc<Endpoint>>,
    /// The `Kn-Namespace` each attempt's request carries (shared, not copied).
    namespace: Arc<str>,
    /// How long one attempt may take.
    attempt_timeout: Duration,
}

impl TriggerContext {
    pub(super) fn new(
        route: Arc<TriggerRoute>,
        shared: Arc<Shared>,
        log: Arc<dyn EventLog>,
        broker: Broker,
        park_topic: String,
        metrics: Arc<TriggerMetrics>,
    ) -> Self {
        let endpoints = &shared.endpoints;
        Self {
            broker_label: Label::new(&route.broker.to_string()),
            label: Label::new(&route.key.to_string()),
            subscriber: Label::new(route.subscriber.as_str()),
            dead_letter_sink: route
                .delivery
                .dead_letter
                .as_ref()
                .map(|sink| Label::new(sink.as_str())),
            subscriber_endpoint: endpoints.get(&route.subscriber),
            namespace: Arc::from(route.key.namespace.as_str()),
            dead_letter_endpoint: route
                .delivery
                .dead_letter
                .as_ref()
                .map(|sink| endpoints.get(sink)),
            attempt_timeout: route
                .delivery
                .retry
                .attempt_timeout(&shared.options.retry_limits),
            route,
            shared,
            log,
            broker,
            park_topic,
            metrics,
        }
    }

    /// The same trigger under a new route (deliveries in flight finish under the old one).
    pub(super) fn with_route(&self, route: Arc<TriggerRoute>) -> Self {
        Self::new(
            route,
            self.shared.clone(),
            self.log.clone(),
            self.broker.clone(),
            self.park_topic.clone(),
            self.metrics.clone(),
        )
    }
}

/// Why an attempt failed, when it did.
enum Attempt {
    Delivered,
    Reply(Box<cloudevents::Event>),
    Failed {
        retryable: bool,
        report: FailureReport,
        retry_after: Option<Duration>,
    },
}

impl TriggerContext {
    /// Runs the delivery to its final outcome; `dispatched_at` is when the dispatcher handed it
    /// over, so the recorded duration includes the time spent waiting for a slot. `parent` is the
    /// dispatch span's context, when the event is traced.
    pub(super) async fn run(
        &self,
        envelope: Arc<Envelope>,
        dispatched_at: Instant,
        parent: Option<opentelemetry::Context>,
    ) -> Outcome {
        let span = self.deliver_span(&envelope, parent);
        let outcome = self.deliver(&envelope, &span).await;
        span.record(
            "knactor.outcome",
            match &outcome {
                Outcome::Delivered { replied: false } => "delivered",
                Outcome::Delivered { replied: true } => "replied",
                Outcome::DeadLettered => "dead-lettered",
                Outcome::Parked => "parked",
            },
        );
        if !matches!(outcome, Outcome::Delivered { .. }) {
            span.record("otel.status_code", "error");
        }
        self.metrics
            .dispatch_duration
            .observe(dispatched_at.elapsed());
        outcome
    }

    /// The span of one event's delivery to this trigger, from the first attempt to the outcome.
    fn deliver_span(
        &self,
        envelope: &Envelope,
        parent: Option<opentelemetry::Context>,
    ) -> tracing::Span {
        // Only under a traced dispatch: an untraced one made no context to hang under.
        let Some(parent) = parent else {
            return tracing::Span::none();
        };
        let event = envelope.event();
        let span = event_span!(
            "knactor.deliver",
            otel.status_code = tracing::field::Empty,
            knactor.broker = &*self.broker_label,
            knactor.trigger = &*self.label,
            knactor.subscriber = self.route.subscriber.as_str(),
            knactor.outcome = tracing::field::Empty,
            cloudevents.event_id = event.id(),
            cloudevents.event_type = event.ty(),
            cloudevents.event_source = event.source().as_str(),
        );
        if !span.is_disabled() {
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            let _ = span.set_parent(parent);
        }
        span
    }

    fn journal(&self, envelope: &Envelope, hop: Hop) {
        let journal = &self.shared.metrics.journal;
        if journal.is_on() {
            journal.record(
                envelope.source(),
                envelope.id(),
                || None,
                hop.trigger(self.label),
            );
        }
    }

    async fn deliver(&self, envelope: &Arc<Envelope>, span: &tracing::Span) -> Outcome {
        let first = self.attempt_to_subscriber(envelope, span, 1).await;
        if let Attempt::Delivered = first {
            inc(&self.metrics.delivered);
            return Outcome::Delivered { replied: false };
        }
        // Replies, retries and dead letters go in a box of their own, so that the future every
        // delivery allocates holds only what a first attempt that succeeds needs (2,232 bytes
        // with them in it, in the release build, against the allocator's 1 KiB fast path).
        Box::pin(self.after_first_attempt(envelope, span, first)).await
    }

    /// The subscriber's answer to an attempt other than a plain success: its reply put on the
    /// broker, or retries within the trigger's policy, then the dead-letter sink.
    async fn after_first_attempt(
        &self,
        envelope: &Arc<Envelope>,
        span: &tracing::Span,
        mut attempt: Attempt,
    ) -> Outcome {
        let policy = &self.route.delivery.retry;
        let limits = &self.shared.options.retry_limits;
        let mut retry = 0;
        let report = loop {
            let (retryable, report, retry_after) = match attempt {
                Attempt::Delivered => {
                    inc(&self.metrics.delivered);
                    return Outcome::Delivered { replied: false };
                }
                Attempt::Reply(reply) => {
                    inc(&self.metrics.delivered);
                    return match self.put_reply(envelope, *reply, span).await {
                        Ok(()) => Outcome::Delivered { replied: true },
                        Err(report) => self.dead_letter(envelope, report, span).await,
                    };
                }
                Attempt::Failed {
                    retryable,
                    report,
                    retry_after,
                } => (retryable, report, retry_after),
            };
            inc(&self.metrics.failed_attempts);
            if !retryable || retry >= policy.retries {
                break report;
            }
            retry += 1;
            let jitter = rand::rng().random::<f64>();
            let wait = policy.wait_before(retry, jitter, retry_after, limits);
            debug!(trigger = %self.route.key, id = envelope.id(), retry, ?wait, code = report.code, "delivery failed, retrying");
            tokio::time::sleep(wait).await;
            inc(&self.metrics.retries);
            attempt = self.attempt_to_subscriber(envelope, span, retry + 1).await;
        };
        self.dead_letter(envelope, report, span).await
    }

    /// Attempt `number` (1 for the first) of the event to the trigger's subscriber.
    async fn attempt_to_subscriber(
        &self,
        envelope: &Arc<Envelope>,
        span: &tracing::Span,
        number: u32,
    ) -> Attempt {
        inc(&self.metrics.attempts);
        self.attempt(
            &self.subscriber_endpoint,
            &self.route.subscriber,
            OutboundEvent::Stored(envelope.clone()),
            envelope,
            span,
            number,
        )
        .await
    }

    /// One POST to `url`, classified; `number` is 1 for the first attempt. The event goes out
    /// with the attempt span's context (extension, and the gateway adds the header).
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        url: &Arc<Url>,
        event: OutboundEvent,
        envelope: &Envelope,
        parent: &tracing::Span,
        number: u32,
    ) -> Attempt {
        let span = event_span!(
            parent: parent,
            "knactor.attempt",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            http.request.method = "POST",
            url.full = url.as_str(),
            http.response.status_code = tracing::field::Empty,
            knactor.trigger = &*self.label,
            knactor.attempt = number,
        );
        // A traced attempt's event carries the attempt's context: a copy of a stored event.
        // An attempt that is not traced sends the event with the context it came with.
        let event = match trace::TraceParent::of_span(&span) {
            None => event,
            Some(context) => {
                let mut event = event.into_event();
                context.write_to(&mut event);
                event.into()
            }
        };
        let outbound = Outbound {
            url: url.clone(),
            event,
            mode: self.route.delivery.mode,
            namespace: self.namespace.clone(),
            timeout: self.attempt_timeout,
        };
        let started = Instant::now();
        let result = endpoint.send(outbound).await;
        self.metrics.attempt_duration.observe(started.elapsed());
        let (status, error) = match &result {
            Ok(response) => (response.status, None),
            Err(error) => (500, Some(error.to_string())),
        };
        self.metrics.responses.count(status);
        span.record("http.response.status_code", status);
        if let Some(error) = &error {
            span.record("error.type", error.as_str());
        }
        if !is_success(status) {
            span.record("otel.status_code", "error");
        }
        let to_sink = **url != *self.route.subscriber;
        // The dead-letter extension names the subscriber as its trigger gave it.
        let reported = if to_sink {
            url.as_str()
        } else {
            &*self.route.subscriber_uri
        };
        let attempt = classify(reported, result);
        // The attempt the subscriber took is the delivery: one hop, not two.
        let stage = match attempt {
            Attempt::Delivered | Attempt::Reply(_) if !to_sink => Stage::Delivered,
            _ => Stage::Attempt,
        };
        let mut hop = Hop::new(stage, self.broker_label)
            .attempt(number)
            .status(status);
        hop = match error {
            Some(error) if to_sink => hop.detail(format!("dead-letter sink {url}: {error}")),
            Some(error) => hop.detail(format!("{url}: {error}")),
            None if to_sink => hop.with(Detail::DeadLetterSink(
                self.dead_letter_sink
                    .unwrap_or_else(|| Label::new(url.as_str())),
            )),
            None => hop.with(Detail::Url(self.subscriber)),
        };
        self.journal(envelope, hop);
        attempt
    }

    /// Puts a subscriber's reply back into the broker, with the original's TTL so the broker
    /// spends one more hop. Refusal for TTL is final; a full or unavailable channel is retried on
    /// the delivery's schedule (the subscriber is not called again).
    async fn put_reply(
        &self,
        envelope: &Envelope,
        reply: cloudevents::Event,
        parent: &tracing::Span,
    ) -> Result<(), FailureReport> {
        let policy = &self.route.delivery.retry;
        let mut reply = envelope.reply_with_ttl(reply);
        let span = event_span!(
            parent: parent,
            "knactor.reply",
            otel.status_code = tracing::field::Empty,
            knactor.trigger = &*self.label,
            cloudevents.event_id = reply.id(),
            cloudevents.event_type = reply.ty(),
            cloudevents.event_source = reply.source().as_str(),
        );
        // The reply is a new event of the same trace: the broker's append becomes its child.
        // Untraced, it continues the context it came with, or else the original's.
        if span.is_disabled() {
            if trace::TraceParent::of_event(&reply).is_none() {
                if let Some(original) = trace::TraceParent::of_event(envelope.event()) {
                    original.write_to(&mut reply);
                }
            }
        } else {
            trace::stamp(&span, &mut reply);
        }
        let destination = self.reply_destination();
        let mut retry = 0;
        loop {
            let failure = match self.broker.publish(vec![reply.clone()]).await {
                Ok(()) => {
                    inc(&self.metrics.replies);
                    self.journal(
                        envelope,
                        Hop::new(Stage::Replied, self.broker_label).detail(format!(
                            "reply {} of type {}",
                            reply.id(),
                            reply.ty()
                        )),
                    );
                    return Ok(());
                }
                Err(PublishError::Admit(refused)) => {
                    span.record("otel.status_code", "error");
                    warn!(trigger = %self.route.key, id = envelope.id(), "reply refused: {refused}");
                    return Err(FailureReport::new(
                        destination,
                        400,
                        refused.to_string().as_bytes(),
                    ));
                }
                Err(error) => error.to_string(),
            };
            if retry >= policy.retries {
                span.record("otel.status_code", "error");
                return Err(FailureReport::new(destination, 503, failure.as_bytes()));
            }
            retry += 1;
            let wait = policy.wait_before(retry, 0.5, None, &self.shared.options.retry_limits);
            tokio::time::sleep(wait).await;
        }
    }

    fn reply_destination(&self) -> String {
        let broker = &self.route.broker;
        match &self.shared.options.ingress {
            Some(ingress) => crate::routes::broker_address(ingress, broker)
                .map(|url| url.to_string())
                .unwrap_or_else(|_| format!("broker:{broker}")),
            None => format!("broker:{broker}"),
        }
    }

    /// The dead-letter sink, with the same retry policy; parks when there is none or it fails.
    async fn dead_letter(
        &self,
        envelope: &Envelope,
        report: FailureReport,
        parent: &tracing::Span,
    ) -> Outcome {
        let (Some(sink), Some(endpoint)) =
            (&self.route.delivery.dead_letter, &self.dead_letter_endpoint)
        else {
            return self
                .park(envelope, &report, "no dead-letter sink", parent)
                .await;
        };
        let span = event_span!(
            parent: parent,
            "knactor.dead_letter",
            otel.status_code = tracing::field::Empty,
            knactor.trigger = &*self.label,
            url.full = sink.as_str(),
            knactor.error_code = report.code,
            knactor.error_destination = report.destination.as_str(),
        );
        let policy = &self.route.delivery.retry;
        let limits = &self.shared.options.retry_limits;
        let event = envelope.dead_letter(&report);
        let mut retry = 0;
        loop {
            match self
                .attempt(
                    endpoint,
                    sink,
                    event.clone().into(),
                    envelope,
                    &span,
                    retry + 1,
                )
                .await
            {
                Attempt::Delivered | Attempt::Reply(_) => {
                    inc(&self.metrics.dead_lettered);
                    self.journal(
                        envelope,
                        Hop::new(Stage::DeadLettered, self.broker_label).detail(format!(
                            "to {sink} after {} from {}",
                            report.code, report.destination
                        )),
                    );
                    return Outcome::DeadLettered;
                }
                Attempt::Failed {
                    retryable,
                    report: sink_report,
                    retry_after,
                } => {
                    if !retryable || retry >= policy.retries {
                        let reason = format!(
                            "dead-letter sink failed ({} {})",
                            sink_report.code,
                            String::from_utf8_lossy(&sink_report.data)
                        );
                        span.record("otel.status_code", "error");
                        return self.park(envelope, &report, &reason, parent).await;
                    }
                    retry += 1;
                    let jitter = rand::rng().random::<f64>();
                    tokio::time::sleep(policy.wait_before(retry, jitter, retry_after, limits))
                        .await;
                }
            }
        }
    }

    /// Keeps the event in the broker's parked topic, with why, for listing and re-driving.
    async fn park(
        &self,
        envelope: &Envelope,
        report: &FailureReport,
        why: &str,
        parent: &tracing::Span,
    ) -> Outcome {
        let _span = event_span!(
            parent: parent,
            "knactor.park",
            knactor.trigger = &*self.label,
            knactor.reason = why,
            knactor.error_code = report.code,
            messaging.destination.name = self.park_topic.as_str(),
        );
        let mut event = envelope.dead_letter(report);
        if let Some(ttl) = envelope.ttl() {
            event.set_extension(crate::envelope::TTL_EXTENSION, i64::from(ttl));
        }
        event.set_extension(PARKED_TRIGGER_EXTENSION, self.route.key.to_string());
        event.set_extension(
            PARKED_REASON_EXTENSION,
            format!(
                "{why}; last attempt: {} from {}",
                report.code, report.destination
            ),
        );
        event.set_extension(
            PARKED_AT_EXTENSION,
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        let parked = Envelope::from_stored(event);
        let mut failures = 0;
        loop {
            match self
                .log
                .append(&self.park_topic, vec![parked.clone()])
                .await
            {
                Ok(()) => {
                    inc(&self.metrics.parked);
                    self.journal(
                        envelope,
                        Hop::new(Stage::Parked, self.broker_label).detail(format!(
                            "{why}; last attempt: {} from {}",
                            report.code, report.destination
                        )),
                    );
                    warn!(
                        trigger = %self.route.key,
                        id = envelope.id(),
                        "parked: {why}; last attempt: {} from {}: {}",
                        report.code,
                        report.destination,
                        String::from_utf8_lossy(&report.data[..report.data.len().min(200)])
                    );
                    return Outcome::Parked;
                }
                Err(error) => {
                    self.parking_failed(envelope, &error);
                    failures += 1;
                    tokio::time::sleep(PARK_BACKOFF.after(failures)).await;
                }
            }
        }
    }
}

impl TriggerContext {
    /// Counts a failed append to the parking lot; logs at most one warning per trigger every
    /// [`PARK_FAILURE_LOG_EVERY`] (a full channel fails every parked event of a dead subscriber,
    /// and the log must not drown in them).
    fn parking_failed(&self, envelope: &Envelope, error: &crate::channel::AppendError) {
        use std::sync::atomic::Ordering::Relaxed;
        let failures = self.metrics.park_failures.fetch_add(1, Relaxed) + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let last = self.metrics.park_failure_logged.load(Relaxed);
        if now.saturating_sub(last) >= PARK_FAILURE_LOG_EVERY.as_secs()
            && self
                .metrics
                .park_failure_logged
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            warn!(trigger = %self.route.key, id = envelope.id(), failures,
                "parking failed; the event stays outstanding and parking is retried (knactor_trigger_park_failures_total counts every failure): {error}");
        } else {
            debug!(trigger = %self.route.key, id = envelope.id(), "parking failed, retrying: {error}");
        }
    }
}

/// How often a trigger's parking failures are logged at most.
/// How long an append to the parking lot that failed waits before it is tried again: 50 ms,
/// doubling, at most 5 s (an accepted event is never dropped, so it is tried until it succeeds).
const PARK_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
const PARK_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// What an attempt to `destination` (as it is reported) came to.
fn classify(destination: &str, result: Result<Response, TransportError>) -> Attempt {
    match result {
        Err(error) => Attempt::Failed {
            retryable: true,
            report: FailureReport::new(
                destination,
                500,
                format!("dispatch error: {error}").as_bytes(),
            ),
            retry_after: None,
        },
        Ok(response) if is_success(response.status) => match response.reply {
            ReplyBody::Empty => Attempt::Delivered,
            ReplyBody::Event(reply) => Attempt::Reply(reply),
            // Knative's filter answers 502 for this, which the dispatcher retries.
            ReplyBody::NotAnEvent(_) => Attempt::Failed {
                retryable: true,
                report: FailureReport::new(destination, 502, &response.body),
                retry_after: None,
            },
        },
        Ok(response) => Attempt::Failed {
            retryable: is_retryable(response.status),
            retry_after: matches!(response.status, 429 | 503)
                .then_some(response.retry_after)
                .flatten(),
            report: FailureReport::new(destination, response.status, &response.body),
        },
    }
}
