//! `LocalIngress`: sources hand events to this node's brokers without the HTTP round trip.
//!
//! A source's sink is often a Broker of the mesh, resolved to the gateway address
//! (`<advertise>/<namespace>/<broker>`). Every node can publish to each broker it knows, whatever
//! its role, so an event for that address is published to the [`Broker`] directly: it
//! is in the broker's channel (in Kafka, acknowledged) when the source moves its position on, and
//! it gets there while the gateway is unreachable (a Service without ready endpoints, ingress pods
//! restarting). Any other URL goes out over HTTP. The answers are the gateway's status codes, so
//! the source's retry rules do not change.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use url::Url;

use tokio::time::Instant;

use super::broker::Broker;
use super::{IngressTable, NotRunning};
use crate::resources::ObjectKey;
use crate::routes::broker_of_path;
use crate::transport::{Outbound, ReplyBody, Response, Transport, TransportError};

/// How long an event for a starting broker waits for it.
const START_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct LocalIngress {
    /// This node's broker address prefix (`--advertise`).
    advertise: Url,
    brokers: Arc<IngressTable>,
    /// For every other URL.
    http: Arc<dyn Transport>,
}

impl LocalIngress {
    pub fn new(advertise: Url, brokers: Arc<IngressTable>, http: Arc<dyn Transport>) -> Self {
        Self {
            advertise,
            brokers,
            http,
        }
    }

    /// The broker `url` addresses on this node, if it is one of this node's broker addresses.
    fn broker_at(&self, url: &Url) -> Option<ObjectKey> {
        if url.origin() != self.advertise.origin() || url.query().is_some() {
            return None;
        }
        let base = self.advertise.path().trim_end_matches('/');
        broker_of_path(url.path().strip_prefix(base)?.strip_prefix('/')?)
    }

    /// The broker, once it runs: a broker that is starting (the node applies a config
    /// that adds it with its sources, or is starting itself) is waited for, at most
    /// [`START_WAIT`], rather than answering 503 and making the source retry. The error says why
    /// it does not run, or is None for a broker this node does not know.
    async fn running_broker(&self, key: &ObjectKey) -> Result<Broker, Option<NotRunning>> {
        let deadline = Instant::now() + START_WAIT;
        let mut updates = self.brokers.updates();
        let path = key.to_string();
        loop {
            if let Some(broker) = self.brokers.broker(&path) {
                return Ok(broker);
            }
            let not_running = self.brokers.not_running(&path);
            // Until the node has applied its routes once, any broker may be about to appear.
            let may_start = match &not_running {
                Some(NotRunning::Starting) => true,
                Some(NotRunning::Failed(_)) => false,
                None => !self.brokers.is_ready(),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if !may_start
                || left.is_zero()
                || !self.brokers.changed_within(left, &mut updates).await
            {
                return Err(not_running);
            }
        }
    }
}

fn answer(status: u16, body: String, retry_after: Option<std::time::Duration>) -> Response {
    Response {
        status,
        retry_after,
        body: Bytes::from(body),
        reply: ReplyBody::Empty,
    }
}

#[async_trait]
impl Transport for LocalIngress {
    async fn send(&self, outbound: Outbound) -> Result<Response, TransportError> {
        let Some(key) = self.broker_at(&outbound.url) else {
            return self.http.send(outbound).await;
        };
        let broker = match self.running_broker(&key).await {
            Ok(broker) => broker,
            Err(Some(reason)) => {
                return Ok(answer(
                    503,
                    format!("broker {key} is not running: {reason}"),
                    None,
                ));
            }
            // Not a broker this node knows: the gateway decides, as for any URL.
            Err(None) => return self.http.send(outbound).await,
        };
        let response = match broker.publish(vec![outbound.event.into_event()]).await {
            Ok(()) => answer(202, String::new(), None),
            Err(error) => answer(error.status(), error.to_string(), error.retry_after()),
        };
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Unused;

    #[async_trait]
    impl Transport for Unused {
        async fn send(&self, _: Outbound) -> Result<Response, TransportError> {
            unreachable!("not sent in these tests")
        }
    }

    fn local(advertise: &str) -> LocalIngress {
        LocalIngress::new(
            Url::parse(advertise).unwrap(),
            Arc::default(),
            Arc::new(Unused),
        )
    }

    fn at(local: &LocalIngress, url: &str) -> Option<ObjectKey> {
        local.broker_at(&Url::parse(url).unwrap())
    }

    #[test]
    fn only_this_nodes_broker_addresses_are_local() {
        let node = local("http://knactor-gateway.knactor-system.svc.cluster.local/");
        assert_eq!(
            at(
                &node,
                "http://knactor-gateway.knactor-system.svc.cluster.local/demo/default"
            ),
            Some(ObjectKey::new("demo", "default"))
        );
        for other in [
            "http://elsewhere.svc.cluster.local/demo/default",
            "https://knactor-gateway.knactor-system.svc.cluster.local/demo/default",
            "http://knactor-gateway.knactor-system.svc.cluster.local:8080/demo/default",
            "http://knactor-gateway.knactor-system.svc.cluster.local/demo",
            "http://knactor-gateway.knactor-system.svc.cluster.local/demo/default/extra",
            "http://knactor-gateway.knactor-system.svc.cluster.local/demo/default?x=1",
        ] {
            assert_eq!(at(&node, other), None, "{other}");
        }
        // An advertised address with a path prefix (behind an ingress controller).
        let prefixed = local("http://node.example/mesh/");
        assert_eq!(
            at(&prefixed, "http://node.example/mesh/demo/default"),
            Some(ObjectKey::new("demo", "default"))
        );
        assert_eq!(at(&prefixed, "http://node.example/demo/default"), None);
    }
}
