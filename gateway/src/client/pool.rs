//! Connections to `http://` subscribers, kept open between deliveries: a pool of our own over
//! hyper's HTTP/1 connections.
//!
//! hyper-util's pooled client does this for any scheme, and for each request it hashes its
//! `(Scheme, Authority)` key with SipHash at checkout and again at return, races the checkout
//! against a new connection, and spawns a task that gives the connection back once it is ready:
//! about 8,000 of a delivered event's 102,000 instructions (`benches/instructions.rs`). Here a
//! delivery takes an idle connection by its address (one `foldhash` look-up under a mutex), or
//! connects, and gives the connection back when it has read the answer. `https://` subscribers
//! stay on hyper-util's client, which brings TLS and HTTP/2.
//!
//! What the library did that this still does: a connection idle for longer than the idle timeout
//! is not used again, and a sweep closes it; a request that a reused connection could not send
//! (the subscriber was closing it) goes again on a new connection; a name with several addresses
//! is connected to as RFC 8305 says ([`super::connect`]). What it did not: when a reused
//! connection fails after the request went but before any answer came (the subscriber closed it,
//! idle, as the request was written: a keep-alive shorter than ours), the caller is told
//! ([`SendFailure::Stale`]) and may send once more on a new connection. A subscriber that read
//! the request and then dropped the connection without an answer may see it twice, which
//! at-least-once delivery allows (the trigger's retry would send it again too).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use knactor_actors::transport::TransportError;

use super::with_causes;

/// The sending half of one HTTP/1 connection; hyper's connection task holds the other.
pub(super) type Connection = SendRequest<Full<Bytes>>;

/// Why [`Http1Pool::send`] failed.
#[derive(Debug)]
pub(super) enum SendFailure {
    /// A connection from the pool closed (or was reset) before any answer came: its subscriber
    /// was closing it as the request went. The request may go again on a new connection.
    Stale(TransportError),
    /// Anything else: the attempt failed.
    Failed(TransportError),
}

/// Idle HTTP/1 connections by the address (`host:port`) they go to.
#[derive(Debug, Clone)]
pub(super) struct Http1Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    idle: Mutex<foldhash::HashMap<Box<str>, VecDeque<Idle>>>,
    idle_timeout: Duration,
    max_idle_per_address: usize,
    /// Whether a task sweeps the idle connections (see [`Http1Pool::start_sweeper`]).
    sweeper_running: AtomicBool,
}

/// The sweeper task's hold on the pool: however the task ends (the pool gone, its runtime
/// stopped), it says so, so that a later give-back starts another.
struct Sweeper(Weak<Shared>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.sweeper_running.store(false, Ordering::Release);
        }
    }
}

#[derive(Debug)]
struct Idle {
    connection: Connection,
    since: Instant,
}

impl Idle {
    fn usable(&self, idle_timeout: Duration) -> bool {
        self.since.elapsed() < idle_timeout && !self.connection.is_closed()
    }
}

impl Http1Pool {
    pub(super) fn new(idle_timeout: Duration, max_idle_per_address: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::default(),
                idle_timeout,
                max_idle_per_address,
                sweeper_running: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` (its URI in origin form, its `Host` header set) to `address` on an idle
    /// connection, or a new one; the connection comes back with the answer's head, to be given
    /// back with [`Http1Pool::give_back`] once the body is read.
    pub(super) async fn send(
        &self,
        address: &str,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, Connection), SendFailure> {
        let request = match self.take_idle(address).await {
            Some(mut connection) => match connection.try_send_request(request).await {
                Ok(response) => return Ok((response, connection)),
                Err(mut failed) => match failed.take_message() {
                    // Not sent: the connection closed as it was taken. A new one gets it.
                    Some(request) => request,
                    None => {
                        let error = TransportError::Other(with_causes(failed.error()));
                        return Err(if closed_before_an_answer(failed.error()) {
                            SendFailure::Stale(error)
                        } else {
                            SendFailure::Failed(error)
                        });
                    }
                },
            },
            None => request,
        };
        self.send_on_new(address, request)
            .await
            .map_err(SendFailure::Failed)
    }

    /// Sends `request` to `address` on a new connection.
    pub(super) async fn send_on_new(
        &self,
        address: &str,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, Connection), TransportError> {
        let mut connection = connect(address).await?;
        let response = connection
            .send_request(request)
            .await
            .map_err(|error| TransportError::Other(with_causes(&error)))?;
        Ok((response, connection))
    }

    /// Keeps a connection whose answer has been read for the next request to `address`, unless
    /// it is closed or `address` already has as many idle connections as it may.
    pub(super) fn give_back(&self, address: &str, connection: Connection) {
        if connection.is_closed() {
            return;
        }
        let mut idle = self.shared.lock();
        let waiting = match idle.get_mut(address) {
            Some(waiting) => waiting,
            None => idle.entry(address.into()).or_default(),
        };
        if waiting.len() < self.shared.max_idle_per_address {
            waiting.push_back(Idle {
                connection,
                since: Instant::now(),
            });
        }
        drop(idle);
        self.start_sweeper();
    }

    /// The most recently used idle connection to `address` that is still open, once it is ready
    /// for a request (at once, unless it is still finishing the answer it was given back after).
    async fn take_idle(&self, address: &str) -> Option<Connection> {
        loop {
            let mut connection = self.pop_usable(address)?;
            if connection.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    fn pop_usable(&self, address: &str) -> Option<Connection> {
        let mut idle = self.shared.lock();
        let waiting = idle.get_mut(address)?;
        // Newest first: the back was given back last.
        while let Some(newest) = waiting.pop_back() {
            if newest.since.elapsed() >= self.shared.idle_timeout {
                // And so is every older one.
                waiting.clear();
                return None;
            }
            if !newest.connection.is_closed() {
                return Some(newest.connection);
            }
        }
        None
    }

    /// Closes idle connections past the idle timeout, every idle timeout, for as long as the pool
    /// is, on the runtime of the connection given back first. Should that runtime stop (an
    /// arbiter's), the sweeper is dropped with it and the next connection given back starts
    /// another on its own runtime.
    fn start_sweeper(&self) {
        if self.shared.sweeper_running.load(Ordering::Relaxed)
            || self.shared.sweeper_running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let sweeper = Sweeper(Arc::downgrade(&self.shared));
        let every = self.shared.idle_timeout;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let Some(shared) = sweeper.0.upgrade() else {
                    return;
                };
                shared.sweep();
            }
        });
    }

    #[cfg(test)]
    fn idle_count(&self, address: &str) -> usize {
        self.shared.lock().get(address).map_or(0, VecDeque::len)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, foldhash::HashMap<Box<str>, VecDeque<Idle>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sweep(&self) {
        let mut idle = self.lock();
        idle.retain(|_, waiting| {
            waiting.retain(|connection| connection.usable(self.idle_timeout));
            !waiting.is_empty()
        });
    }
}

/// The connection ended (closed, reset, or cut in the middle of the answer's head) with no answer:
/// what a subscriber closing an idle connection as a request arrives looks like. Not an answer
/// that could not be parsed, nor a timeout (the caller's).
fn closed_before_an_answer(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

/// A new HTTP/1 connection to `address`, its connection task spawned on the current runtime.
async fn connect(address: &str) -> Result<Connection, TransportError> {
    let failed = |error: &dyn std::error::Error| {
        TransportError::Connect(format!("{address}: {}", with_causes(error)))
    };
    let stream = super::connect::connect_tcp(address)
        .await
        .map_err(|error| failed(&error))?;
    stream.set_nodelay(true).map_err(|error| failed(&error))?;
    let (connection, task) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| failed(&error))?;
    tokio::spawn(async move {
        if let Err(error) = task.await {
            tracing::debug!(error = %with_causes(&error), "a connection to a subscriber failed");
        }
    });
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that answers each request `200` with an empty body, counts the connections it
    /// accepted and, with `close_after_answer`, closes each connection once it has answered.
    async fn subscriber(close_after_answer: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        // A request has no body here: its head ends the request.
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            buffer.drain(..end + 4);
                            stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                                .await
                                .unwrap();
                            if close_after_answer {
                                return;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    fn request(address: &str) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method("GET")
            .uri("/")
            .header("host", address)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    async fn exchange(pool: &Http1Pool, address: &str) -> u16 {
        let (response, connection) = pool.send(address, request(address)).await.unwrap();
        let status = response.status().as_u16();
        response.into_body().collect().await.unwrap();
        pool.give_back(address, connection);
        status
    }

    #[tokio::test]
    async fn a_connection_given_back_carries_the_next_request() {
        let (address, accepted) = subscriber(false).await;
        let pool = Http1Pool::new(Duration::from_secs(30), 8);
        for _ in 0..5 {
            assert_eq!(exchange(&pool, &address).await, 200);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for five"
        );
        assert_eq!(pool.idle_count(&address), 1);
    }

    #[tokio::test]
    async fn a_connection_the_subscriber_closed_is_not_used_again() {
        let (address, accepted) = subscriber(true).await;
        let pool = Http1Pool::new(Duration::from_secs(30), 8);
        for _ in 0..3 {
            assert_eq!(exchange(&pool, &address).await, 200);
            // Let the connection task see the end of the stream.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_not_reused_and_are_swept() {
        let (address, accepted) = subscriber(false).await;
        let pool = Http1Pool::new(Duration::from_millis(100), 8);
        assert_eq!(exchange(&pool, &address).await, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(exchange(&pool, &address).await, 200);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the stale one was passed over"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(pool.idle_count(&address), 0, "swept");
    }

    #[test]
    fn a_sweeper_whose_runtime_stopped_is_started_again_on_the_next() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let pool = Http1Pool::new(Duration::from_millis(100), 8);
        let first = runtime();
        first.block_on(async {
            let (address, _) = subscriber(false).await;
            exchange(&pool, &address).await;
        });
        assert!(pool.shared.sweeper_running.load(Ordering::SeqCst));
        drop(first);
        assert!(
            !pool.shared.sweeper_running.load(Ordering::SeqCst),
            "the sweeper ended with its runtime"
        );
        runtime().block_on(async {
            let (address, _) = subscriber(false).await;
            exchange(&pool, &address).await;
            assert_eq!(pool.idle_count(&address), 1);
            tokio::time::sleep(Duration::from_millis(350)).await;
            assert_eq!(pool.idle_count(&address), 0, "swept on the second runtime");
        });
    }

    #[tokio::test]
    async fn at_most_the_limit_of_idle_connections_is_kept() {
        let (address, _) = subscriber(false).await;
        let pool = Http1Pool::new(Duration::from_secs(30), 2);
        let mut held = Vec::new();
        for _ in 0..4 {
            let (response, connection) = pool.send(&address, request(&address)).await.unwrap();
            response.into_body().collect().await.unwrap();
            held.push(connection);
        }
        for connection in held {
            pool.give_back(&address, connection);
        }
        assert_eq!(pool.idle_count(&address), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let address = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let pool = Http1Pool::new(Duration::from_secs(30), 8);
        match pool.send(&address, request(&address)).await {
            Err(SendFailure::Failed(TransportError::Connect(message))) => {
                assert!(message.starts_with(&address))
            }
            other => panic!("{other:?}"),
        }
    }
}
