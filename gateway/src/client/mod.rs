//! `HttpTransport`: deliveries over HTTP, the outbound half of the gateway.
//!
//! Adds what Knative's dispatcher adds: `Prefer: reply` (the subscriber may answer with an event)
//! and `Kn-Namespace`. Reads the whole answer (up to a limit) because a dead-letter sink wants the
//! body, and a reply is an event in it.
//!
//! Built on hyper, not on reqwest: what reqwest adds on top (a redirect layer, a retry layer, a
//! request builder that parses each header again) is what a delivery must not do (Knative's
//! data-plane contract: a 3xx is an error, not followed; retries are the trigger's) and cost about
//! a tenth of a node's CPU per delivered event. `http://` subscribers, the common case inside a
//! cluster, are reached over HTTP/1 connections of our own pool (`pool.rs`); `https://` ones
//! through hyper-util's pooled client with rustls, which negotiates HTTP/2 where it can.

mod connect;
mod pool;

use pool::SendFailure;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cloudevents::event::ExtensionValue;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use knactor_actors::envelope::{TRACEPARENT_EXTENSION, TRACESTATE_EXTENSION};
use knactor_actors::routes::ContentMode;
use knactor_actors::trace::TraceParent;
use knactor_actors::transport::{
    Outbound, OutboundEvent, ReplyBody, Response, Transport, TransportError,
};

use crate::binding::{decode_reply, write_binary, write_structured};

/// Response bodies larger than this are cut (a reply event bigger than this is refused anyway).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// How long an unused connection to a subscriber stays in the pool. Below the 5 s keep-alive of
/// Node.js, actix-web and most Python servers, so that a connection is seldom reused at the moment
/// its subscriber closes it: when it is, the request goes once more on a new connection over
/// `http://` (the pool's `SendFailure::Stale`), while over `https://` (hyper-util) the attempt
/// fails with nothing received, which without retries parks the event.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(4);

/// Idle connections kept per subscriber address.
const MAX_IDLE_PER_ADDRESS: usize = 256;

const USER_AGENT_VALUE: &str = concat!("knactor/", env!("CARGO_PKG_VERSION"));

const PREFER: HeaderName = HeaderName::from_static("prefer");
const KN_NAMESPACE: HeaderName = HeaderName::from_static("kn-namespace");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Subscriber URLs whose [`Destination`] is kept; past this many, the cache starts over.
const MAX_DESTINATIONS: usize = 4096;

#[derive(Debug, Clone)]
pub struct HttpTransport {
    /// `http://` subscribers.
    http1: pool::Http1Pool,
    /// Everything else (`https://`).
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    destinations: Arc<Destinations>,
}

/// What every request to one subscriber URL needs and is the same each time, made once per URL
/// instead of once per attempt (a clone shares the bytes).
#[derive(Debug, Clone)]
enum Destination {
    /// `http://`: sent on a connection of [`pool::Http1Pool`] to `address`, so the request
    /// carries what a client writes for itself: its target in origin form (`/path?query`) and
    /// the `Host` header (the host, and the port unless it is 80; no user information).
    Plain {
        address: Box<str>,
        target: http::Uri,
        host: HeaderValue,
    },
    /// Anything else, as the URL is: hyper-util's client connects (with TLS) and may speak
    /// HTTP/2, which carries the host as `:authority`.
    Other { uri: http::Uri },
}

/// [`Destination`]s by URL text.
#[derive(Debug, Default)]
struct Destinations(Mutex<foldhash::HashMap<Box<str>, Destination>>);

impl Destinations {
    fn get(&self, url: &str) -> Result<Destination, TransportError> {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(destination) = known.get(url) {
            return Ok(destination.clone());
        }
        let invalid =
            |error: &dyn std::fmt::Display| TransportError::Other(format!("{url}: {error}"));
        let uri: http::Uri = url.parse().map_err(|error| invalid(&error))?;
        let destination = match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(host)) => {
                let port = uri.port_u16().unwrap_or(80);
                let address = format!("{host}:{port}");
                let host = HeaderValue::from_str(if port == 80 { host } else { &address })
                    .map_err(|error| invalid(&error))?;
                let target = match uri.path_and_query() {
                    Some(target) if !target.as_str().is_empty() => http::Uri::from(target.clone()),
                    _ => http::Uri::from_static("/"),
                };
                Destination::Plain {
                    address: address.into(),
                    target,
                    host,
                }
            }
            _ => Destination::Other { uri },
        };
        if known.len() >= MAX_DESTINATIONS {
            known.clear();
        }
        known.insert(url.into(), destination.clone());
        Ok(destination)
    }
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for deliveries: {0}")]
pub struct ClientBuildError(#[source] rustls::Error);

impl HttpTransport {
    pub fn new() -> Result<Self, ClientBuildError> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // https:// URLs go through the TLS connector around it.
        http.enforce_http(false);
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(ClientBuildError)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(MAX_IDLE_PER_ADDRESS)
            .build(connector);
        Ok(Self {
            http1: pool::Http1Pool::new(IDLE_CONNECTION_TIMEOUT, MAX_IDLE_PER_ADDRESS),
            client,
            destinations: Arc::default(),
        })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, outbound: Outbound) -> Result<Response, TransportError> {
        let Outbound {
            url,
            event,
            mode,
            namespace,
            timeout,
        } = outbound;
        // The attempt's timeout covers it all: connecting, the answer's head and its body. A
        // connection whose exchange was cut by it is dropped, which closes it.
        let exchange = async {
            match self.destinations.get(url.as_str())? {
                Destination::Plain {
                    address,
                    target,
                    host,
                } => {
                    let plain = |mut request: http::Request<Full<Bytes>>| {
                        *request.uri_mut() = target.clone();
                        request.headers_mut().insert(HOST, host.clone());
                        request
                    };
                    let request = plain(compose(&event, mode, &namespace)?);
                    let (response, connection) = match self.http1.send(&address, request).await {
                        Ok(sent) => sent,
                        // The subscriber closed the idle connection as the request went: nothing
                        // came back, so the request goes once more on a new connection (made
                        // again from the event: the hot path keeps no copy of it).
                        Err(SendFailure::Stale(error)) => {
                            tracing::debug!(
                                %url,
                                %error,
                                "a pooled connection was closing; sending again on a new one"
                            );
                            let request = plain(compose(&event, mode, &namespace)?);
                            self.http1.send_on_new(&address, request).await?
                        }
                        Err(SendFailure::Failed(error)) => return Err(error),
                    };
                    let answer = read_answer(response).await?;
                    self.http1.give_back(&address, connection);
                    Ok(answer)
                }
                Destination::Other { uri } => {
                    let mut request = compose(&event, mode, &namespace)?;
                    *request.uri_mut() = uri;
                    let response = self.client.request(request).await.map_err(client_error)?;
                    read_answer(response).await
                }
            }
        };
        let (head, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout(timeout))??;
        let status = head.status.as_u16();
        let retry_after = head
            .headers
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        // A reply is an event in a 2xx answer, except a 202: the data-plane contract says a
        // `202 Accepted` MUST NOT be processed as a reply, whatever its body holds.
        let may_reply = (200..300).contains(&status) && status != 202;
        let reply = if may_reply {
            let pairs: Vec<(&str, &[u8])> = head
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()))
                .collect();
            decode_reply(&pairs, &body)
        } else {
            ReplyBody::Empty
        };
        Ok(Response {
            status,
            retry_after,
            body: Bytes::from(body),
            reply,
        })
    }
}

/// The POST of `event` as a subscriber gets it, but for its URI (and, for `http://`, its `Host`).
fn compose(
    event: &OutboundEvent,
    mode: ContentMode,
    namespace: &str,
) -> Result<http::Request<Full<Bytes>>, TransportError> {
    let mut headers = HeaderMap::with_capacity(16);
    // By names made at compile time: inserting by a `&str` that is not one of HTTP's standard
    // names makes (and allocates) the name for every request.
    headers.insert(PREFER, HeaderValue::from_static("reply"));
    headers.insert(
        KN_NAMESPACE,
        HeaderValue::from_str(namespace).map_err(|_| {
            TransportError::Other(format!("namespace {namespace:?} is not a valid header"))
        })?,
    );
    // W3C trace context as a header too: the extension is read by CloudEvents-aware
    // subscribers, the header by every HTTP server's tracing.
    // Only a well-formed context goes out as a header (an extension from a structured-mode
    // producer may hold anything); it goes as the text it is.
    let sent = event.event();
    if let Some(ExtensionValue::String(traceparent)) = sent.extension(TRACEPARENT_EXTENSION) {
        if let (Some(_), Ok(value)) = (
            TraceParent::parse(traceparent, None),
            HeaderValue::from_str(traceparent.trim()),
        ) {
            headers.insert(TRACEPARENT, value);
            if let Some(ExtensionValue::String(state)) = sent.extension(TRACESTATE_EXTENSION) {
                if let Ok(value) = HeaderValue::from_str(state) {
                    headers.insert(TRACESTATE, value);
                }
            }
        }
    }
    let body = match mode {
        ContentMode::Binary => write_binary(sent, |name| event.sends_extension(name), &mut headers)
            .map_err(|invalid| TransportError::Other(invalid.to_string()))?,
        ContentMode::Structured => {
            let (body, content_type) = write_structured(sent, |name| event.sends_extension(name));
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            body
        }
    };
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    let mut request = http::Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = http::Method::POST;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The answer's head, and its body up to [`MAX_RESPONSE_BYTES`] (read to its end, so that the
/// connection can carry the next request).
async fn read_answer(
    response: http::Response<hyper::body::Incoming>,
) -> Result<(http::response::Parts, Vec<u8>), TransportError> {
    let (head, mut incoming) = response.into_parts();
    let mut body = Vec::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|error| TransportError::Other(with_causes(&error)))?;
        if let Ok(chunk) = frame.into_data() {
            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    Ok((head, body))
}

/// An error of the client, as a transport error: could not connect, or anything else; with
/// its causes (the client's own message is generic).
fn client_error(error: hyper_util::client::legacy::Error) -> TransportError {
    let message = with_causes(&error);
    if error.is_connect() {
        TransportError::Connect(message)
    } else {
        TransportError::Other(message)
    }
}

fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // An HTTP-date in any of the three forms RFC 9110 says a recipient must accept.
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_destination_carries_what_the_client_would_write() {
        let destinations = Destinations::default();
        let plain = |url: &str| match destinations.get(url).unwrap() {
            Destination::Plain {
                address,
                target,
                host,
            } => (
                address.to_string(),
                target.to_string(),
                host.to_str().unwrap().to_string(),
            ),
            other => panic!("{url}: {other:?}"),
        };
        let expect = |address: &str, target: &str, host: &str| {
            (address.to_string(), target.to_string(), host.to_string())
        };
        assert_eq!(
            plain("http://127.0.0.1:8080/sink"),
            expect("127.0.0.1:8080", "/sink", "127.0.0.1:8080")
        );
        assert_eq!(
            plain("http://svc.team.svc.cluster.local"),
            expect(
                "svc.team.svc.cluster.local:80",
                "/",
                "svc.team.svc.cluster.local"
            )
        );
        assert_eq!(plain("http://svc:80/"), expect("svc:80", "/", "svc"));
        assert_eq!(
            plain("http://user:secret@svc:81/a?b=c"),
            expect("svc:81", "/a?b=c", "svc:81")
        );
        assert_eq!(
            plain("http://[::1]:9000/x"),
            expect("[::1]:9000", "/x", "[::1]:9000")
        );
        match destinations.get("https://svc:8443/a").unwrap() {
            Destination::Other { uri } => assert_eq!(uri.to_string(), "https://svc:8443/a"),
            other => panic!("left to the client over TLS: {other:?}"),
        }
        assert!(destinations.get("http://[::1/").is_err());
    }

    #[test]
    fn the_destination_cache_starts_over_when_full() {
        let destinations = Destinations::default();
        for port in 0..MAX_DESTINATIONS + 1 {
            destinations.get(&format!("http://svc:{port}/")).unwrap();
        }
        let known = destinations.0.lock().unwrap();
        assert_eq!(
            known.len(),
            1,
            "cleared at {MAX_DESTINATIONS}, then one added"
        );
        assert!(known.contains_key(format!("http://svc:{MAX_DESTINATIONS}/").as_str()));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:00 2015"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let wait = parse_retry_after(&future).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
    }
}
