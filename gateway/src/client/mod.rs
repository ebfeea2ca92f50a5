//! `HttpTransport`: deliveries over HTTP, the outbound half of the gateway.
//!
//! Adds what Knative's dispatcher adds: `Prefer: reply` (the subscriber may answer with an event)
//! and `Kn-Namespace`. Reads the whole answer (up to a limit) because a dead-letter sink wants the
//! body, and a reply is an event in it.
//!
//! Built on hyper's pooled client (hyper-util) with rustls, not on reqwest: what reqwest adds on
//! top (a redirect layer, a retry layer, a request builder that parses each header again) is what
//! a delivery must not do (Knative's data-plane contract: a 3xx is an error, not followed; retries
//! are the trigger's) and cost about a tenth of a node's CPU per delivered event.

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
use knactor_actors::transport::{Outbound, ReplyBody, Response, Transport, TransportError};

use crate::binding::{decode_reply, write_binary, write_structured};

/// Response bodies larger than this are cut (a reply event bigger than this is refused anyway).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// How long an unused connection to a subscriber stays in the pool.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(4);

const USER_AGENT_VALUE: &str = concat!("knactor/", env!("CARGO_PKG_VERSION"));

/// Subscriber URLs whose [`Destination`] is kept; past this many, the cache starts over.
const MAX_DESTINATIONS: usize = 4096;

#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    destinations: Arc<Destinations>,
}

/// What every request to one subscriber URL needs and is the same each time, made once per URL
/// instead of once per attempt: the URI (a clone shares its bytes) and, for `http://`, the
/// `Host` header, which the pooled client otherwise formats for each request to a URL with a
/// port. (Over TLS the client may speak HTTP/2, which carries the host as `:authority`: left to
/// it.)
#[derive(Debug, Clone)]
struct Destination {
    uri: http::Uri,
    host: Option<HeaderValue>,
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
        let uri: http::Uri = url
            .parse()
            .map_err(|error| TransportError::Other(format!("{url}: {error}")))?;
        // As the client writes it: the host, and the port unless it is 80 (no user information).
        let host = match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(host)) => match uri.port_u16() {
                Some(port) if port != 80 => HeaderValue::from_str(&format!("{host}:{port}")),
                _ => HeaderValue::from_str(host),
            }
            .ok(),
            _ => None,
        };
        let destination = Destination { uri, host };
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
            // Below the 5 s keep-alive of Node.js, actix-web and most Python servers: a pooled
            // connection the subscriber is closing at the moment it is reused fails the attempt
            // with nothing received, which without retries parks the event.
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Self {
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
        let mut headers = HeaderMap::with_capacity(16);
        // By static names: inserting by a `&str` that is not one of HTTP's standard names makes (and
        // allocates) the name for every request.
        headers.insert(
            HeaderName::from_static("prefer"),
            HeaderValue::from_static("reply"),
        );
        headers.insert(
            HeaderName::from_static("kn-namespace"),
            HeaderValue::from_str(&namespace).map_err(|_| {
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
                headers.insert(HeaderName::from_static("traceparent"), value);
                if let Some(ExtensionValue::String(state)) = sent.extension(TRACESTATE_EXTENSION) {
                    if let Ok(value) = HeaderValue::from_str(state) {
                        headers.insert(HeaderName::from_static("tracestate"), value);
                    }
                }
            }
        }
        let body = match mode {
            ContentMode::Binary => {
                write_binary(sent, |name| event.sends_extension(name), &mut headers)
                    .map_err(|invalid| TransportError::Other(invalid.to_string()))?
            }
            ContentMode::Structured => {
                let (body, content_type) =
                    write_structured(sent, |name| event.sends_extension(name));
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                body
            }
        };
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        let destination = self.destinations.get(url.as_str())?;
        if let Some(host) = destination.host {
            headers.insert(HOST, host);
        }
        let mut request = http::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = destination.uri;
        *request.headers_mut() = headers;
        // The attempt's timeout covers it all: connecting, the answer's head and its body.
        let exchange = async {
            let response = self.client.request(request).await.map_err(client_error)?;
            let (head, mut incoming) = response.into_parts();
            let mut body = Vec::new();
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|error| TransportError::Other(with_causes(&error)))?;
                if let Ok(chunk) = frame.into_data() {
                    let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
            }
            Ok::<_, TransportError>((head, body))
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
    fn a_destination_carries_the_host_header_the_client_would_write() {
        let destinations = Destinations::default();
        let host = |url: &str| {
            destinations
                .get(url)
                .unwrap()
                .host
                .map(|value| value.to_str().unwrap().to_string())
        };
        assert_eq!(
            host("http://127.0.0.1:8080/sink").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            host("http://svc.team.svc.cluster.local/").as_deref(),
            Some("svc.team.svc.cluster.local")
        );
        assert_eq!(host("http://svc:80/").as_deref(), Some("svc"));
        assert_eq!(
            host("http://user:secret@svc:81/").as_deref(),
            Some("svc:81")
        );
        assert_eq!(
            host("https://svc:8443/"),
            None,
            "left to the client over TLS"
        );
        let uri = destinations.get("http://svc:81/a?b=c").unwrap().uri;
        assert_eq!(uri.to_string(), "http://svc:81/a?b=c");
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
