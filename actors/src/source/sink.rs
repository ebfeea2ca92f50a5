//! Sending a source's events to its sink, and waiting while the sink is away.
//!
//! A source hands one event at a time to [`SinkSender::deliver`], which returns only once the sink
//! accepted it (a 2xx), trying again for as long as the answer is one worth retrying (a transport
//! error, 404, 408, 409, 429 or 5xx: the broker is not there yet, or cannot take more) with a
//! capped exponential backoff that honours `Retry-After`. While it waits, the source hands over
//! nothing more (an ApiServerSource's watches read a bounded number of changes ahead; beyond that
//! its buffer is what the API server, or for a PingSource the clock, still holds), and its saved
//! position stays at the last event the sink accepted. An answer no retry can change (another 4xx: the event is
//! invalid for that sink) is returned as [`Rejected`] for the source to report and skip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cloudevents::Event;
use rand::Rng as _;
use tracing::{debug, warn};
use url::Url;

use crate::event_span;
use crate::retry::{is_retryable, is_success, Backoff};
use crate::routes::ContentMode;
use crate::trace;
use crate::transport::{Outbound, Transport};

/// Waits between attempts: 100 ms doubling up to 5 s, ±20 % jitter.
const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The sink refused the event for good.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the sink {sink} refused the event with {status}: {body}")]
pub struct Rejected {
    pub sink: Url,
    pub status: u16,
    pub body: String,
}

/// What a source's sink has seen, for status and metrics.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub sent: AtomicU64,
    pub rejected: AtomicU64,
    pub retries: AtomicU64,
}

/// Delivers to one sink URL.
#[derive(Debug, Clone)]
pub struct SinkSender {
    transport: Arc<dyn Transport>,
    url: Arc<Url>,
    /// `Kn-Namespace`: the source's namespace.
    namespace: Arc<str>,
    timeout: Duration,
    counters: Arc<SinkCounters>,
}

impl SinkSender {
    pub fn new(
        transport: Arc<dyn Transport>,
        url: Url,
        namespace: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            transport,
            url: Arc::new(url),
            namespace: Arc::from(namespace),
            timeout,
            counters: Arc::default(),
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }

    /// Returns once the sink accepted `event` (or refused it for good). Cancel by dropping the
    /// future. A traced event is sent in the span of the emit, where its trace starts.
    pub async fn deliver(&self, mut event: Event) -> Result<(), Rejected> {
        let span = self.emit_span(&event);
        trace::stamp(&span, &mut event);
        let (result, attempts) = self.send_until_taken(&event).await;
        if !span.is_disabled() {
            span.record("knactor.attempts", attempts);
            if let Err(rejected) = &result {
                span.record("http.response.status_code", rejected.status);
                span.record("otel.status_code", "error");
            }
        }
        result
    }

    /// The span of one event a source emits: the root of the event's trace (or a child of the
    /// context the source put in it).
    fn emit_span(&self, event: &Event) -> tracing::Span {
        use cloudevents::AttributesReader as _;
        if !trace::traced(trace::sampled_flag(event), trace::At::Entry) {
            return tracing::Span::none();
        }
        let span = event_span!(
            "knactor.source.emit",
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            url.full = self.url.as_str(),
            http.response.status_code = tracing::field::Empty,
            knactor.namespace = &*self.namespace,
            knactor.attempts = tracing::field::Empty,
            cloudevents.event_id = event.id(),
            cloudevents.event_type = event.ty(),
            cloudevents.event_source = event.source().as_str(),
        );
        trace::follow(&span, event);
        span
    }

    /// Sends until the sink takes `event` or refuses it for good; also says how many attempts.
    async fn send_until_taken(&self, event: &Event) -> (Result<(), Rejected>, u32) {
        let mut failures: u32 = 0;
        loop {
            let outbound = Outbound {
                url: self.url.clone(),
                event: event.clone().into(),
                mode: ContentMode::Binary,
                namespace: self.namespace.clone(),
                timeout: self.timeout,
            };
            let (problem, retry_after) = match self.transport.send(outbound).await {
                Ok(response) if is_success(response.status) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    return (Ok(()), failures + 1);
                }
                Ok(response) if !is_retryable(response.status) => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    let rejected = Rejected {
                        sink: Url::clone(&self.url),
                        status: response.status,
                        body: String::from_utf8_lossy(
                            &response.body[..response.body.len().min(512)],
                        )
                        .into_owned(),
                    };
                    return (Err(rejected), failures + 1);
                }
                Ok(response) => (
                    format!("answered {}", response.status),
                    response.retry_after,
                ),
                Err(error) => (error.to_string(), None),
            };
            failures += 1;
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            let wait = wait_before(failures, rand::rng().random(), retry_after);
            if failures == 1 || failures.is_power_of_two() {
                warn!(sink = %self.url, failures, "the sink {problem}; trying again in {wait:?} (the source waits meanwhile)");
            } else {
                debug!(sink = %self.url, failures, "the sink {problem}");
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// The wait after the `failures`-th failed attempt; `jitter` in `[0, 1)`.
fn wait_before(failures: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
    let wait = Backoff::new(FIRST_WAIT, LONGEST_WAIT).jittered(failures, jitter);
    match retry_after {
        Some(asked) => wait.max(asked.min(LONGEST_RETRY_AFTER)),
        None => wait,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;
    use cloudevents::EventBuilder as _;

    use super::*;
    use crate::transport::{ReplyBody, Response, TransportError};

    /// Answers from a script, then 202.
    #[derive(Debug)]
    struct Scripted(Mutex<VecDeque<Result<u16, ()>>>);

    #[async_trait]
    impl Transport for Scripted {
        async fn send(&self, _outbound: Outbound) -> Result<Response, TransportError> {
            let next = self.0.lock().unwrap().pop_front().unwrap_or(Ok(202));
            next.map(|status| Response {
                status,
                retry_after: None,
                body: Bytes::from_static(b"no"),
                reply: ReplyBody::Empty,
            })
            .map_err(|()| TransportError::Connect("refused".into()))
        }
    }

    fn event() -> Event {
        cloudevents::EventBuilderV10::new()
            .id("1")
            .ty("t")
            .source("s")
            .build()
            .unwrap()
    }

    fn sender(script: Vec<Result<u16, ()>>) -> SinkSender {
        SinkSender::new(
            Arc::new(Scripted(Mutex::new(script.into()))),
            Url::parse("http://sink/").unwrap(),
            "ns",
            Duration::from_secs(1),
        )
    }

    #[actix_rt::test]
    async fn waits_through_an_absent_sink_until_it_accepts() {
        tokio::time::pause();
        let sender = sender(vec![Err(()), Ok(503), Ok(404)]);
        sender.deliver(event()).await.unwrap();
        assert_eq!(sender.counters().retries.load(Ordering::Relaxed), 3);
        assert_eq!(sender.counters().sent.load(Ordering::Relaxed), 1);
    }

    #[actix_rt::test]
    async fn a_final_refusal_is_returned_not_retried() {
        let sender = sender(vec![Ok(400)]);
        let refused = sender.deliver(event()).await.unwrap_err();
        assert_eq!(refused.status, 400);
        assert_eq!(sender.counters().rejected.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn waits_double_up_to_a_cap_and_honour_retry_after() {
        assert_eq!(wait_before(1, 0.5, None), Duration::from_millis(100));
        assert_eq!(wait_before(3, 0.5, None), Duration::from_millis(400));
        assert_eq!(wait_before(30, 0.5, None), LONGEST_WAIT);
        assert_eq!(
            wait_before(1, 0.5, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
