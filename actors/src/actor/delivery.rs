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
use rand::Rng;
use tracing::{debug, warn};
use url::Url;

use super::broker::{BrokerActor, Publish, PublishError};
use super::Shared;
use crate::channel::EventLog;
use crate::envelope::{
    Envelope, FailureReport, PARKED_AT_EXTENSION, PARKED_REASON_EXTENSION, PARKED_TRIGGER_EXTENSION,
};
use crate::metrics::{inc, TriggerMetrics};
use crate::retry::{is_retryable, is_success};
use crate::routes::TriggerRoute;
use crate::transport::{Outbound, ReplyBody, Response, TransportError};

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { replied: bool },
    DeadLettered,
    Parked,
}

/// What a delivery needs, borrowed from its trigger actor.
pub(super) struct DeliveryJob {
    pub route: Arc<TriggerRoute>,
    pub shared: Arc<Shared>,
    /// The broker's channel (for parking).
    pub log: Arc<dyn EventLog>,
    pub broker: actix::Addr<BrokerActor>,
    pub park_topic: String,
    pub metrics: Arc<TriggerMetrics>,
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

impl DeliveryJob {
    /// Runs the delivery to its final outcome; `dispatched_at` is when the dispatcher handed it
    /// over, so the recorded duration includes the time spent waiting for a slot.
    pub async fn run(&self, envelope: Arc<Envelope>, dispatched_at: Instant) -> Outcome {
        let outcome = self.deliver(&envelope).await;
        self.metrics
            .dispatch_duration
            .observe(dispatched_at.elapsed());
        outcome
    }

    async fn deliver(&self, envelope: &Arc<Envelope>) -> Outcome {
        let policy = &self.route.delivery.retry;
        let limits = &self.shared.options.retry_limits;
        let mut retry = 0;
        let report = loop {
            inc(&self.metrics.attempts);
            if retry > 0 {
                inc(&self.metrics.retries);
            }
            let attempt = self
                .attempt(&self.route.subscriber, envelope.for_subscriber())
                .await;
            let (retryable, report, retry_after) = match attempt {
                Attempt::Delivered => {
                    inc(&self.metrics.delivered);
                    return Outcome::Delivered { replied: false };
                }
                Attempt::Reply(reply) => {
                    inc(&self.metrics.delivered);
                    return match self.put_reply(envelope, *reply).await {
                        Ok(()) => Outcome::Delivered { replied: true },
                        Err(report) => self.dead_letter(envelope, report).await,
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
        };
        self.dead_letter(envelope, report).await
    }

    /// One POST to `url`, classified.
    async fn attempt(&self, url: &Url, event: cloudevents::Event) -> Attempt {
        let timeout = self
            .route
            .delivery
            .retry
            .attempt_timeout(&self.shared.options.retry_limits);
        let outbound = Outbound {
            url: url.clone(),
            event,
            mode: self.route.delivery.mode,
            namespace: self.route.key.namespace.clone(),
            timeout,
        };
        classify(url, self.shared.subscribers.send(outbound).await)
    }

    /// Puts a subscriber's reply back into the broker, with the original's TTL so the broker
    /// spends one more hop. Refusal for TTL is final; a full or unavailable channel is retried on
    /// the delivery's schedule (the subscriber is not called again).
    async fn put_reply(
        &self,
        envelope: &Envelope,
        reply: cloudevents::Event,
    ) -> Result<(), FailureReport> {
        let policy = &self.route.delivery.retry;
        let reply = envelope.reply_with_ttl(reply);
        let destination = self.reply_destination();
        let mut retry = 0;
        loop {
            let result = self
                .broker
                .send(Publish {
                    events: vec![reply.clone()],
                })
                .await;
            let failure = match result {
                Ok(Ok(())) => {
                    inc(&self.metrics.replies);
                    return Ok(());
                }
                Ok(Err(PublishError::Admit(refused))) => {
                    warn!(trigger = %self.route.key, id = envelope.id(), "reply refused: {refused}");
                    return Err(FailureReport::new(
                        destination,
                        400,
                        refused.to_string().as_bytes(),
                    ));
                }
                Ok(Err(error)) => error.to_string(),
                Err(mailbox) => format!("broker unavailable: {mailbox}"),
            };
            if retry >= policy.retries {
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
            Some(ingress) => ingress
                .join(&format!("{}/{}", broker.namespace, broker.name))
                .map(|url| url.to_string())
                .unwrap_or_else(|_| format!("broker:{broker}")),
            None => format!("broker:{broker}"),
        }
    }

    /// The dead-letter sink, with the same retry policy; parks when there is none or it fails.
    async fn dead_letter(&self, envelope: &Envelope, report: FailureReport) -> Outcome {
        let Some(sink) = &self.route.delivery.dead_letter else {
            return self.park(envelope, &report, "no dead-letter sink").await;
        };
        let policy = &self.route.delivery.retry;
        let limits = &self.shared.options.retry_limits;
        let event = envelope.dead_letter(&report);
        let mut retry = 0;
        loop {
            match self.attempt(sink, event.clone()).await {
                Attempt::Delivered | Attempt::Reply(_) => {
                    inc(&self.metrics.dead_lettered);
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
                        return self.park(envelope, &report, &reason).await;
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
    async fn park(&self, envelope: &Envelope, report: &FailureReport, why: &str) -> Outcome {
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
        let mut wait = Duration::from_millis(50);
        loop {
            match self
                .log
                .append(&self.park_topic, vec![parked.clone()])
                .await
            {
                Ok(()) => {
                    inc(&self.metrics.parked);
                    warn!(trigger = %self.route.key, id = envelope.id(), "parked: {why}");
                    return Outcome::Parked;
                }
                Err(error) => {
                    warn!(trigger = %self.route.key, id = envelope.id(), "parking failed, retrying: {error}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

fn classify(url: &Url, result: Result<Response, TransportError>) -> Attempt {
    match result {
        Err(error) => Attempt::Failed {
            retryable: true,
            report: FailureReport::new(
                url.as_str(),
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
                report: FailureReport::new(url.as_str(), 502, &response.body),
                retry_after: None,
            },
        },
        Ok(response) => Attempt::Failed {
            retryable: is_retryable(response.status),
            retry_after: matches!(response.status, 429 | 503)
                .then_some(response.retry_after)
                .flatten(),
            report: FailureReport::new(url.as_str(), response.status, &response.body),
        },
    }
}
