//! Every way an ingress request can fail, and its HTTP status, in one place (Knative's broker
//! ingress contract). 4xx bodies say what to fix; 5xx bodies say what to do and reveal nothing
//! internal (the cause is logged where it happens). A connection refused over a connection limit
//! gets its answer before any request exists, from [`crate::limits::OverLimit::response`]. What
//! the broker refuses is answered with the status of [`PublishError::status`], which the broker's
//! metrics and the node's local ingress use too.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use knactor_actors::actor::PublishError;
use knactor_actors::channel::AppendError;

use crate::binding::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("method {0} is not allowed here: POST CloudEvents to /<namespace>/<broker>")]
    MethodNotAllowed(String),
    #[error("no broker at /: POST CloudEvents to /<namespace>/<broker>")]
    RootPath,
    #[error("path {0:?} is not /<namespace>/<broker>")]
    BadPath(String),
    #[error("broker {0} does not exist")]
    UnknownBroker(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error(
        "decoded, this request would take about {size} bytes, more than this node holds for the \
         requests it reads ({limit} bytes, --body-buffer-bytes): send fewer or smaller events at once"
    )]
    TooLargeDecoded { size: usize, limit: usize },
    #[error("could not read the request body: {0}")]
    UnreadableBody(String),
    #[error("the request body did not arrive within {}s of its head", limit.as_secs_f64())]
    RequestTimeout { limit: Duration },
    #[error("this node is reading as many request bodies as it holds at once; retry after 1s")]
    BodyBuffersFull,
    #[error("invalid CloudEvent: {0}")]
    InvalidEvent(#[from] DecodeError),
    /// The broker did not take the events; [`PublishError::status`] says with which status.
    #[error("{}", publish_refusal(.broker, .error))]
    Publish {
        broker: String,
        #[source]
        error: PublishError,
    },
    #[error("broker {broker} is not running on this node right now; retry later")]
    NotRunning { broker: String },
    #[error("this node is shutting down and takes no more events; retry (another node of the broker takes them)")]
    ShuttingDown,
    #[error(
        "this node only dispatches (--role dispatch) and takes no events: send them to the \
         broker's address (the nodes with --role ingress or all)"
    )]
    NotAnIngress,
}

/// What a client is told when the broker does not take its events. A channel that fails says
/// nothing of why (the ingress logs it); a full one says what fills it.
fn publish_refusal(broker: &str, error: &PublishError) -> String {
    match error {
        PublishError::Admit(refused) => refused.to_string(),
        PublishError::Append(AppendError::Full {
            retry_after,
            reason,
        }) => format!(
            "broker {broker} cannot take more events now: {reason}; retry after {}s",
            retry_after.as_secs().max(1)
        ),
        PublishError::Append(too_large @ AppendError::TooLarge { .. }) => {
            format!("too large for broker {broker}'s channel: {too_large}")
        }
        PublishError::Append(_) => {
            format!("broker {broker} cannot store events right now; retry later")
        }
    }
}

impl IngressError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            IngressError::Publish { error, .. } => error
                .retry_after()
                .or((error.status() == 503).then_some(Duration::from_secs(1))),
            IngressError::NotRunning { .. }
            | IngressError::ShuttingDown
            | IngressError::BodyBuffersFull => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// A 5xx that is the ingress holding a limit or a broker that is not running, not a failure
    /// of the node: counted and summed up with the client errors instead of logged each time.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            IngressError::BodyBuffersFull | IngressError::NotRunning { .. }
        )
    }

    /// Answered before the whole body was read: the connection cannot carry another request.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            IngressError::TooLarge { .. }
                | IngressError::RequestTimeout { .. }
                | IngressError::BodyBuffersFull
                | IngressError::UnreadableBody(_)
        )
    }
}

impl ResponseError for IngressError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngressError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            IngressError::RootPath | IngressError::UnknownBroker(_) => StatusCode::NOT_FOUND,
            IngressError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            IngressError::BadPath(_)
            | IngressError::UnreadableBody(_)
            | IngressError::InvalidEvent(_) => StatusCode::BAD_REQUEST,
            IngressError::TooLarge { .. } | IngressError::TooLargeDecoded { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            // The broker's own mapping, which its metrics count too.
            IngressError::Publish { error, .. } => {
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            IngressError::NotRunning { .. }
            | IngressError::BodyBuffersFull
            | IngressError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            IngressError::NotAnIngress => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"));
        if let IngressError::MethodNotAllowed(_) = self {
            response.insert_header((header::ALLOW, "POST, OPTIONS"));
        }
        if let Some(wait) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, wait.as_secs().max(1).to_string()));
        }
        if self.closes_connection() {
            response.force_close();
        }
        response.body(format!("{self}\n"))
    }
}
