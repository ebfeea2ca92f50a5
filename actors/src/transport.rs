//! The delivery port: sending one event to one HTTP endpoint and reading what came back. The gateway
//! implements it over HTTP; tests implement it with fakes, so the actors are tested without sockets.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cloudevents::Event;
use url::Url;

use crate::routes::ContentMode;

/// One delivery attempt.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub url: Url,
    /// The event as the subscriber must see it (mesh extensions already removed).
    pub event: Event,
    pub mode: ContentMode,
    /// `Kn-Namespace`: the namespace of the trigger (or broker) sending.
    pub namespace: String,
    pub timeout: Duration,
}

/// What the endpoint answered.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// `Retry-After`, as a duration from now.
    pub retry_after: Option<Duration>,
    /// The body as received (kept for the dead-letter `knativeerrordata`).
    pub body: Bytes,
    pub reply: ReplyBody,
}

/// How the response body reads as a CloudEvent.
#[derive(Debug, Clone)]
pub enum ReplyBody {
    /// No body, or a body without CloudEvent markers and no content: nothing to reply.
    Empty,
    /// A CloudEvent (binary or structured): a reply to put back into the broker.
    Event(Box<Event>),
    /// A body that is not a CloudEvent. With a 2xx this counts as a failed delivery (Knative: 502).
    NotAnEvent(String),
}

/// No response at all.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Other(String),
}

#[async_trait]
pub trait Transport: fmt::Debug + Send + Sync + 'static {
    async fn send(&self, outbound: Outbound) -> Result<Response, TransportError>;
}
