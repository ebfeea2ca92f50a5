//! The delivery port: sending one event to one HTTP endpoint and reading what came back. The gateway
//! implements it over HTTP; tests implement it with fakes, so the actors are tested without sockets.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cloudevents::Event;
use url::Url;

use crate::envelope::{is_mesh_only, Envelope};
use crate::routes::ContentMode;

/// One delivery attempt.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Shared with the trigger or source that sends (an attempt copies no URL).
    pub url: Arc<Url>,
    pub event: OutboundEvent,
    pub mode: ContentMode,
    /// `Kn-Namespace`: the namespace of the trigger (or broker) sending.
    pub namespace: Arc<str>,
    pub timeout: Duration,
}

/// The event of an [`Outbound`].
#[derive(Debug, Clone)]
pub enum OutboundEvent {
    /// An event as its broker's channel holds it, sent as a subscriber must see it: the writer
    /// leaves out the mesh's own extensions ([`OutboundEvent::sends_extension`]), so that a
    /// delivery does not copy the event.
    Stored(Arc<Envelope>),
    /// An event made for this request (stamped with the attempt's trace context, a dead-letter
    /// event, a source's event), sent as it is.
    Event(Box<Event>),
}

impl OutboundEvent {
    /// The event, with whatever extensions [`OutboundEvent::sends_extension`] leaves out.
    pub fn event(&self) -> &Event {
        match self {
            Self::Stored(envelope) => envelope.event(),
            Self::Event(event) => event,
        }
    }

    /// Whether the extension `name` goes out with the event.
    pub fn sends_extension(&self, name: &str) -> bool {
        match self {
            Self::Stored(_) => !is_mesh_only(name),
            Self::Event(_) => true,
        }
    }

    /// The event as it goes out (a copy, for a stored one).
    pub fn into_event(self) -> Event {
        match self {
            Self::Stored(envelope) => envelope.for_subscriber(),
            Self::Event(event) => *event,
        }
    }
}

impl From<Event> for OutboundEvent {
    fn from(event: Event) -> Self {
        Self::Event(Box::new(event))
    }
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
