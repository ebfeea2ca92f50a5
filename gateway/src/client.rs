//! `HttpTransport`: deliveries over HTTP (reqwest), the outbound half of the gateway.
//!
//! Adds what Knative's dispatcher adds: `Prefer: reply` (the subscriber may answer with an event)
//! and `Kn-Namespace`. Reads the whole answer (up to a limit) because a dead-letter sink wants the
//! body, and a reply is an event in it.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cloudevents::event::ExtensionValue;
use futures::StreamExt;
use knactor_actors::envelope::{TRACEPARENT_EXTENSION, TRACESTATE_EXTENSION};
use knactor_actors::routes::ContentMode;
use knactor_actors::trace::TraceParent;
use knactor_actors::transport::{Outbound, ReplyBody, Response, Transport, TransportError};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};

use crate::binding::{decode_reply, write_binary, write_structured};

/// Response bodies larger than this are cut (a reply event bigger than this is refused anyway).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// How long an unused connection to a subscriber stays in the pool.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // Subscribers are addressed directly; an HTTP_PROXY in the environment must not
            // reroute in-cluster or loopback traffic.
            .no_proxy()
            .tcp_nodelay(true)
            // Below the 5 s keep-alive of Node.js, actix-web and most Python servers: a pooled
            // connection the subscriber is closing at the moment it is reused fails the attempt
            // with nothing received, which without retries parks the event.
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .pool_max_idle_per_host(256)
            // Knative's data-plane contract: a 3xx is an error (not retried, not delivered), so a
            // redirect is not followed. Retries are the delivery spec's, made by the trigger;
            // reqwest's own (of HTTP/2 refusals) would clone every request to be able to.
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .user_agent(concat!("knactor/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
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
        headers.insert("prefer", HeaderValue::from_static("reply"));
        headers.insert(
            "kn-namespace",
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
                headers.insert("traceparent", value);
                if let Some(ExtensionValue::String(state)) = sent.extension(TRACESTATE_EXTENSION) {
                    if let Ok(value) = HeaderValue::from_str(state) {
                        headers.insert("tracestate", value);
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
        // A request built whole (not through a RequestBuilder, which parses each header again).
        let mut request = reqwest::Request::new(reqwest::Method::POST, url);
        *request.headers_mut() = headers;
        *request.body_mut() = Some(body.into());
        *request.timeout_mut() = Some(timeout);
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|error| transport_error(error, timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        // A reply is an event in a 2xx answer, except a 202: the data-plane contract says a
        // `202 Accepted` MUST NOT be processed as a reply, whatever its body holds. Only then are
        // the headers worth copying out of the response.
        let may_reply = (200..300).contains(&status) && status != 202;
        let headers: Vec<(String, Vec<u8>)> = if may_reply {
            response
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect()
        } else {
            Vec::new()
        };
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| transport_error(error, timeout))?;
            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let reply = if may_reply {
            let pairs: Vec<(&str, &[u8])> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_slice()))
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

fn transport_error(error: reqwest::Error, timeout: Duration) -> TransportError {
    if error.is_timeout() {
        return TransportError::Timeout(timeout);
    }
    // reqwest's top-level message is generic; the cause says what happened.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    if error.is_connect() {
        TransportError::Connect(message)
    } else {
        TransportError::Other(message)
    }
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
