//! The client side of one HTTP endpoint (a subscriber or a dead-letter sink URL), shared by every
//! trigger of the node that sends to it.
//!
//! An [`Endpoint`] holds what those triggers must share: how many requests may be in flight at
//! once (a semaphore), and a pause when the endpoint answered 429 or 503 with `Retry-After`, so
//! that a subscriber asking for air gets it from the whole mesh, not from one trigger at a time.
//! It is plain shared state behind an `Arc`, not an actor: an attempt takes a permit and sends
//! from the delivery's own task, with no mailbox in between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::transport::{Outbound, Response, Transport, TransportError};

pub struct Endpoint {
    transport: Arc<dyn Transport>,
    permits: Semaphore,
    /// When the endpoint may be called again, as nanoseconds after `since` (0: not paused).
    paused_until: AtomicU64,
    since: Instant,
    max_pause: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("available_permits", &self.permits.available_permits())
            .field("paused_for", &self.paused_for())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    fn new(transport: Arc<dyn Transport>, concurrency: usize, max_pause: Duration) -> Self {
        Self {
            transport,
            permits: Semaphore::new(concurrency.max(1)),
            paused_until: AtomicU64::new(0),
            since: Instant::now(),
            max_pause,
        }
    }

    /// Sends one request: waits out a pause the endpoint asked for, takes a slot, sends, and
    /// pauses the endpoint for every sender when it answers 429 or 503 with `Retry-After`.
    pub async fn send(&self, outbound: Outbound) -> Result<Response, TransportError> {
        if let Some(wait) = self.paused_for() {
            tokio::time::sleep(wait).await;
        }
        let result = {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| TransportError::Other("endpoint closed".into()))?;
            self.transport.send(outbound).await
        };
        if let Ok(response) = &result {
            if matches!(response.status, 429 | 503) {
                if let Some(wait) = response.retry_after {
                    self.pause(wait.min(self.max_pause));
                }
            }
        }
        result
    }

    /// How long the endpoint is still paused for, if it is.
    fn paused_for(&self) -> Option<Duration> {
        let until = self.paused_until.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let now = self.nanos_since_start(Instant::now());
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Pauses the endpoint for `wait` from now, unless it is already paused for longer.
    fn pause(&self, wait: Duration) {
        let until = self.nanos_since_start(Instant::now() + wait);
        self.paused_until.fetch_max(until.max(1), Ordering::Relaxed);
    }

    fn nanos_since_start(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.since).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The node's endpoints by URL. Triggers keep the [`Endpoint`]s they send to; one that no trigger
/// keeps any more is forgotten.
pub struct Endpoints {
    transport: Arc<dyn Transport>,
    by_url: Mutex<HashMap<Box<str>, Weak<Endpoint>>>,
    concurrency: usize,
    max_pause: Duration,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("concurrency", &self.concurrency)
            .field("max_pause", &self.max_pause)
            .finish_non_exhaustive()
    }
}

impl Endpoints {
    /// `concurrency`: requests in flight per endpoint; `max_pause`: the longest `Retry-After`
    /// honoured.
    pub fn new(transport: Arc<dyn Transport>, concurrency: usize, max_pause: Duration) -> Self {
        Self {
            transport,
            by_url: Mutex::default(),
            concurrency,
            max_pause,
        }
    }

    /// The endpoint of `url`, shared with every other holder of the same URL.
    pub fn get(&self, url: &url::Url) -> Arc<Endpoint> {
        let mut by_url = self.by_url.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(endpoint) = by_url.get(url.as_str()).and_then(Weak::upgrade) {
            return endpoint;
        }
        by_url.retain(|_, endpoint| endpoint.strong_count() > 0);
        let endpoint = Arc::new(Endpoint::new(
            self.transport.clone(),
            self.concurrency,
            self.max_pause,
        ));
        by_url.insert(url.as_str().into(), Arc::downgrade(&endpoint));
        endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use bytes::Bytes;
    use std::sync::atomic::AtomicUsize;

    use crate::routes::ContentMode;
    use crate::transport::ReplyBody;

    /// Answers `status` with `Retry-After: retry_after` and counts requests and the most in flight.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        retry_after: Option<Duration>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    #[async_trait]
    impl Transport for Answer {
        async fn send(&self, _: Outbound) -> Result<Response, TransportError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(Response {
                status: self.status,
                retry_after: self.retry_after,
                body: Bytes::new(),
                reply: ReplyBody::Empty,
            })
        }
    }

    fn answer(status: u16, retry_after: Option<Duration>) -> Arc<Answer> {
        Arc::new(Answer {
            status,
            retry_after,
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        })
    }

    fn outbound(url: &url::Url) -> Outbound {
        Outbound {
            url: std::sync::Arc::new(url.clone()),
            event: cloudevents::Event::default().into(),
            mode: ContentMode::Binary,
            namespace: "default".into(),
            timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn one_url_is_one_endpoint_while_someone_holds_it() {
        let endpoints = Endpoints::new(answer(202, None), 4, Duration::from_secs(1));
        let url: url::Url = "http://sink.example/a".parse().unwrap();
        let first = endpoints.get(&url);
        assert!(Arc::ptr_eq(&first, &endpoints.get(&url)));
        let other = endpoints.get(&"http://sink.example/b".parse().unwrap());
        assert!(!Arc::ptr_eq(&first, &other));
        drop(first);
        drop(other);
        let _again = endpoints.get(&url);
        let by_url = endpoints.by_url.lock().unwrap();
        assert_eq!(by_url.len(), 1, "endpoints nobody holds are forgotten");
    }

    #[tokio::test]
    async fn requests_in_flight_stay_within_the_concurrency() {
        let transport = answer(202, None);
        let endpoints = Endpoints::new(transport.clone(), 3, Duration::from_secs(1));
        let url: url::Url = "http://sink.example/".parse().unwrap();
        let endpoint = endpoints.get(&url);
        let sends = (0..12).map(|_| endpoint.send(outbound(&url)));
        for result in futures::future::join_all(sends).await {
            assert_eq!(result.unwrap().status, 202);
        }
        assert_eq!(transport.most_in_flight.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retry_after_pauses_every_sender_up_to_the_limit() {
        let endpoints = Endpoints::new(
            answer(503, Some(Duration::from_secs(3600))),
            4,
            Duration::from_millis(200),
        );
        let url: url::Url = "http://sink.example/".parse().unwrap();
        let endpoint = endpoints.get(&url);
        endpoint.send(outbound(&url)).await.unwrap();
        let paused = endpoint
            .paused_for()
            .expect("paused after 503 + Retry-After");
        assert!(paused <= Duration::from_millis(200), "capped: {paused:?}");
        let started = Instant::now();
        endpoint.send(outbound(&url)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
