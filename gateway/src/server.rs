//! The HTTP servers of a node: the ingress listener, which admits a connection only within the
//! [`ConnectionGate`](crate::limits::ConnectionGate)'s limits, and the probe listener, which the
//! ingress's clients cannot starve.
//!
//! ```text
//!  accept ──► admit (ConnectionGate) ──over a limit──► "503/429, Connection: close", closed
//!                 │ within the limits: the connection holds a permit until it closes
//!                 ▼
//!             actix-http HTTP/1 (head within --header-timeout, idle keep-alive --keep-alive)
//!                 │   a later request's head, too: actix-http times only the first one, so the
//!                 │   connection's HeadClock does it for the others
//!                 │
//!                 ▼
//!             the App (ingress: body within --request-timeout and the body budget)
//! ```
//!
//! The ingress listener is built from actix-server and actix-http directly, rather than with
//! `HttpServer`, because `HttpServer` gives no way to refuse a connection before its dispatcher
//! (and its buffers) exist.

use std::cell::Cell;
use std::fmt;
use std::future::Future as _;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::{body::MessageBody, HttpService, KeepAlive, Protocol, Request};
use actix_rt::net::TcpStream;
use actix_server::Server;
use actix_service::{
    apply_fn_factory, fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::dev::{AppConfig, Response, Service};
use actix_web::{App, HttpServer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tracing::debug;

use crate::ingress::{configure_probes, GatewayState};
use crate::limits::{report_refusals, ConnectionPermit, Limits, OverLimit};

/// How often refused requests and connections are summed up in one warning.
pub const REFUSALS_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` within `limits`, on `workers` threads. The server's handle stops it
/// (signals are the node's to handle); starting it also starts the refusals' summary.
pub fn serve_ingress<F, I, S, B>(
    listener: TcpListener,
    workers: usize,
    limits: Arc<Limits>,
    app: F,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let address = listener.local_addr()?;
    let settings = limits.settings;
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    report_refusals(&limits, REFUSALS_SUMMARY_INTERVAL);
    let server = builder
        .workers(workers.max(1))
        // Per worker: never reached before the gate's limit, which counts every worker's.
        .max_concurrent_connections(settings.max_connections.max(1))
        .disable_signals()
        .shutdown_timeout(5)
        .listen("knactor-ingress", listener, move || {
            let shutdown = shutdown.clone();
            let keep_alive = if settings.keep_alive.is_zero() {
                KeepAlive::Disabled
            } else {
                KeepAlive::Timeout(settings.keep_alive)
            };
            let app = app()
                .into_factory()
                .map_err(|error| error.into().error_response());
            let http = HttpService::build()
                // On a graceful stop, idle keep-alive connections close at once.
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .keep_alive(keep_alive)
                .client_request_timeout(settings.header_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(address)
                .on_connect_ext(|io: &Counted, data| {
                    data.insert(io.clock.clone());
                })
                // The ingress reads neither the host nor the scheme from the app's config.
                .finish(timed_heads(map_config(app, |_| AppConfig::default())));
            let admitting = limits.clone();
            let noting = limits.clone();
            fn_service(move |io: TcpStream| {
                let limits = admitting.clone();
                admit(io, limits)
            })
            .and_then(http)
            .map_err(move |error| {
                note(&noting, &error);
                error
            })
        })?
        .run();
    Ok(server)
}

/// Serves `/healthz` and `/readyz` on `listener`, on one worker of its own: however the ingress
/// listener is flooded, a probe here answers at once (the probe's clients are the kubelet).
pub fn serve_probes(listener: TcpListener, state: GatewayState) -> io::Result<Server> {
    Ok(
        HttpServer::new(move || App::new().configure(configure_probes(state.clone())))
            .workers(1)
            .max_connections(64)
            .client_request_timeout(Duration::from_secs(2))
            .keep_alive(Duration::from_secs(5))
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)?
            .run(),
    )
}

/// Admits a connection within the limits, or answers it with why not and closes it, before any
/// HTTP state exists for it.
async fn admit(
    io: TcpStream,
    limits: Arc<Limits>,
) -> Result<(Counted, Protocol, Option<SocketAddr>), DispatchError> {
    let peer = io.peer_addr().map_err(DispatchError::Io)?;
    match limits.connections.admit(peer.ip()) {
        Ok(permit) => {
            let _ = io.set_nodelay(true);
            Ok((
                Counted {
                    io,
                    _permit: permit,
                    clock: Rc::new(HeadClock::default()),
                    head_timeout: limits.settings.header_timeout,
                    timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
                },
                Protocol::Http1,
                Some(peer),
            ))
        }
        Err(over) => {
            limits.refusals.connection(over);
            debug!(client = %peer, "refused a connection: {over:?}");
            refuse(&io, over).await;
            Err(DispatchError::Io(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "over a connection limit",
            )))
        }
    }
}

/// Answers a refused connection and closes it. The refusal waits a little for the client's
/// request (any HTTP client writes one as soon as it is connected), so that it answers it. An
/// answer before the request is one nobody asked for: hyper's client (reqwest's) fails the
/// request on it with no status, and Go's takes it for an unsolicited response and drops the
/// connection. Then it reads what else the client sent, so that closing delivers the answer rather
/// than a reset. Bounded: a refused connection is closed within about a tenth of a second whatever
/// the client does.
async fn refuse(io: &TcpStream, over: OverLimit) {
    const WAIT: Duration = Duration::from_millis(50);
    read_and_drop(io, WAIT).await;
    if let Ok(Ok(())) = tokio::time::timeout(WAIT, io.writable()).await {
        let _ = io.try_write(over.response().as_bytes());
    }
    read_and_drop(io, WAIT).await;
}

/// Reads what the client has sent, or sends within `wait`, up to 16 KiB, and drops it.
async fn read_and_drop(io: &TcpStream, wait: Duration) {
    if let Ok(Ok(())) = tokio::time::timeout(wait, io.readable()).await {
        let mut sink = [0u8; 4096];
        for _ in 0..4 {
            match io.try_read(&mut sink) {
                Ok(read) if read > 0 => continue,
                _ => break,
            }
        }
    }
}

/// What the HTTP layer refused on its own: a request that is not HTTP (it answered 400).
fn note(limits: &Limits, error: &DispatchError) {
    if let DispatchError::Parse(parse) = error {
        limits.refusals.malformed_http();
        debug!("refused a request that is not valid HTTP (400): {parse}");
    }
}

/// Marks the requests of a connection on its [`HeadClock`] as the app takes and answers them.
fn timed_heads<SF>(
    app: SF,
) -> impl ServiceFactory<
    Request,
    Config = (),
    Response = SF::Response,
    Error = SF::Error,
    InitError = SF::InitError,
>
where
    SF: ServiceFactory<Request, Config = ()>,
    <SF::Service as Service<Request>>::Future: 'static,
{
    apply_fn_factory(app, |request: Request, service: &SF::Service| {
        let clock = request.conn_data::<Rc<HeadClock>>().cloned();
        if let Some(clock) = &clock {
            clock.phase.set(Phase::InRequest);
        }
        let answer = service.call(request);
        async move {
            let answer = answer.await;
            if let Some(clock) = clock {
                clock.phase.set(Phase::Idle);
            }
            answer
        }
    })
}

/// Where a connection is between its requests. actix-http times the head of a connection's first
/// request only (`--header-timeout`) and an idle keep-alive connection (`--keep-alive`); a client
/// that answers one request and then trickles the next head a byte at a time would hold the
/// connection forever. The clock starts when bytes arrive on an idle connection and stops when
/// the app takes the request; the connection is closed when it runs past `--header-timeout`.
#[derive(Debug, Default)]
struct HeadClock {
    phase: Cell<Phase>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests, nothing of the next one read.
    #[default]
    Idle,
    /// Bytes of a request head arrived at this instant; the app has not taken it yet.
    Head(Instant),
    /// The app is answering a request (its body is timed by the ingress).
    InRequest,
}

/// An admitted connection: its permit is given back when the HTTP layer drops it; its reads
/// follow the [`HeadClock`].
struct Counted {
    io: TcpStream,
    _permit: ConnectionPermit,
    clock: Rc<HeadClock>,
    head_timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Counted {
    /// Whether the head now arriving is past its deadline; arms the timer (which wakes the
    /// connection at the deadline) otherwise.
    fn head_too_slow(&mut self, cx: &mut Context<'_>) -> bool {
        let Phase::Head(since) = self.clock.phase.get() else {
            return false;
        };
        let deadline = since + self.head_timeout;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.head_too_slow(cx) {
            debug!("closed a connection whose request head took longer than --header-timeout");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request head did not arrive within --header-timeout",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let read = matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        if read && this.clock.phase.get() == Phase::Idle {
            this.clock.phase.set(Phase::Head(Instant::now()));
            // Registers the timer's wake-up.
            let _ = this.head_too_slow(cx);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
