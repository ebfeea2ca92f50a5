//! `SubscriberActor`: the client side of one endpoint (a subscriber or a dead-letter sink URL).
//!
//! Owns what every trigger sending to that endpoint must share: the number of requests in flight
//! (a semaphore), and a pause when the endpoint answered 429 or 503 with `Retry-After`, so that a
//! subscriber asking for air gets it from the whole mesh, not from one trigger at a time.
//!
//! Answers: [`Send`] (one attempt), [`Shutdown`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::Semaphore;

use super::{NodeOptions, Shutdown};
use crate::transport::{Outbound, Response, Transport, TransportError};

pub struct SubscriberActor {
    transport: Arc<dyn Transport>,
    permits: Arc<Semaphore>,
    paused_until: Option<Instant>,
    max_pause: Duration,
}

impl Actor for SubscriberActor {
    type Context = Context<Self>;
}

/// Send one request to the endpoint and return what it answered.
#[derive(Message)]
#[rtype(result = "Result<Response, TransportError>")]
pub struct Send(pub Outbound);

impl Handler<Send> for SubscriberActor {
    type Result = ResponseActFuture<Self, Result<Response, TransportError>>;

    /// Waits out a pause the endpoint asked for, takes a slot, sends.
    fn handle(&mut self, message: Send, _: &mut Context<Self>) -> Self::Result {
        let transport = self.transport.clone();
        let permits = self.permits.clone();
        let paused_until = self.paused_until.filter(|until| *until > Instant::now());
        let request = async move {
            if let Some(until) = paused_until {
                tokio::time::sleep_until(until.into()).await;
            }
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|_| TransportError::Other("endpoint closed".into()))?;
            transport.send(message.0).await
        };
        Box::pin(request.into_actor(self).map(|result, actor, _| {
            if let Ok(response) = &result {
                if matches!(response.status, 429 | 503) {
                    if let Some(wait) = response.retry_after {
                        let until = Instant::now() + wait.min(actor.max_pause);
                        actor.paused_until =
                            Some(actor.paused_until.map_or(until, |old| old.max(until)));
                    }
                }
            }
            result
        }))
    }
}

impl Handler<Shutdown> for SubscriberActor {
    /// Stops the actor.
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The endpoints of a node, each with its actor, started on first use and again if it died.
#[derive(Clone)]
pub struct SubscriberPool {
    transport: Arc<dyn Transport>,
    endpoints: Arc<Mutex<HashMap<String, Addr<SubscriberActor>>>>,
    concurrency: usize,
    max_pause: Duration,
}

impl SubscriberPool {
    pub fn new(transport: Arc<dyn Transport>, options: &NodeOptions) -> Self {
        Self {
            transport,
            endpoints: Arc::default(),
            concurrency: options.endpoint_concurrency.max(1),
            max_pause: options.retry_limits.retry_after_max,
        }
    }

    /// The actor for `endpoint` (a URL, without query), started on the current arbiter if needed.
    pub fn get(&self, endpoint: &url::Url) -> Addr<SubscriberActor> {
        let key = endpoint.as_str().to_string();
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(addr) = endpoints.get(&key).filter(|addr| addr.connected()) {
            return addr.clone();
        }
        let addr = SubscriberActor {
            transport: self.transport.clone(),
            permits: Arc::new(Semaphore::new(self.concurrency)),
            paused_until: None,
            max_pause: self.max_pause,
        }
        .start();
        endpoints.insert(key, addr.clone());
        addr
    }

    /// Sends through the endpoint's actor; a stopped actor counts as a transport error (retried).
    pub async fn send(&self, outbound: Outbound) -> Result<Response, TransportError> {
        let addr = self.get(&outbound.url);
        match addr.send(Send(outbound)).await {
            Ok(result) => result,
            Err(error) => Err(TransportError::Other(format!(
                "endpoint actor unavailable: {error}"
            ))),
        }
    }
}
