//! A node on the memory channel with a fake transport: subscribers are closures, every request is
//! recorded. No sockets.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_trait::async_trait;
use bytes::Bytes;
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use knactor_actors::actor::{ApplyRoutes, IngressTable, Node, NodeOptions, PublishError, Shared};
use knactor_actors::channel::{MemoryLimits, MemoryLog, SingleLog};
use knactor_actors::resources::Strictness;
use knactor_actors::routes::{load_str, Catalog, ChannelDefaults, Delivery, Routes};
use knactor_actors::transport::{Outbound, ReplyBody, Response, Transport, TransportError};
use url::Url;

/// What a fake endpoint does with the n-th request it gets (n from 1).
pub(crate) type Behaviour = Arc<dyn Fn(&Outbound, usize) -> Answer + Send + Sync>;

pub(crate) struct Answer {
    pub delay: Duration,
    pub result: Result<Response, TransportError>,
}

pub(crate) fn status(code: u16) -> Answer {
    Answer {
        delay: Duration::ZERO,
        result: Ok(Response {
            status: code,
            retry_after: None,
            body: Bytes::from(format!("status {code}")),
            reply: ReplyBody::Empty,
        }),
    }
}

pub(crate) fn accepted() -> Answer {
    Answer {
        delay: Duration::ZERO,
        result: Ok(Response {
            status: 202,
            retry_after: None,
            body: Bytes::new(),
            reply: ReplyBody::Empty,
        }),
    }
}

pub(crate) fn reply(event: Event) -> Answer {
    Answer {
        delay: Duration::ZERO,
        result: Ok(Response {
            status: 200,
            retry_after: None,
            body: Bytes::from_static(b"{}"),
            reply: ReplyBody::Event(Box::new(event)),
        }),
    }
}

#[derive(Clone)]
pub(crate) struct Received {
    pub url: String,
    pub event: Event,
    pub at: Instant,
}

#[derive(Default)]
pub(crate) struct FakeTransport {
    behaviours: Mutex<HashMap<String, Behaviour>>,
    counts: Mutex<HashMap<String, usize>>,
    pub received: Mutex<Vec<Received>>,
}

/// Requests per URL (the behaviours are closures).
impl fmt::Debug for FakeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("FakeTransport")
            .field("counts", &*counts)
            .finish_non_exhaustive()
    }
}

impl FakeTransport {
    pub(crate) fn on(
        &self,
        url: &str,
        behaviour: impl Fn(&Outbound, usize) -> Answer + Send + Sync + 'static,
    ) {
        self.behaviours
            .lock()
            .unwrap()
            .insert(Url::parse(url).unwrap().to_string(), Arc::new(behaviour));
    }

    pub(crate) fn received_at(&self, url: &str) -> Vec<Received> {
        let url = Url::parse(url).unwrap().to_string();
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.url == url)
            .cloned()
            .collect()
    }

    pub(crate) fn ids_at(&self, url: &str) -> Vec<String> {
        self.received_at(url)
            .iter()
            .map(|r| r.event.id().to_string())
            .collect()
    }
}

#[async_trait]
impl Transport for FakeTransport {
    async fn send(&self, outbound: Outbound) -> Result<Response, TransportError> {
        let url = outbound.url.to_string();
        let n = {
            let mut counts = self.counts.lock().unwrap();
            let count = counts.entry(url.clone()).or_default();
            *count += 1;
            *count
        };
        self.received.lock().unwrap().push(Received {
            url: url.clone(),
            event: outbound.event.clone().into_event(),
            at: Instant::now(),
        });
        let behaviour = self.behaviours.lock().unwrap().get(&url).cloned();
        let answer = match behaviour {
            Some(behaviour) => behaviour(&outbound, n),
            None => accepted(),
        };
        if !answer.delay.is_zero() {
            tokio::time::sleep(answer.delay).await;
        }
        answer.result
    }
}

pub(crate) struct TestNode {
    pub node: Addr<Node>,
    pub ingress: Arc<IngressTable>,
    pub transport: Arc<FakeTransport>,
    pub shared: Arc<Shared>,
}

pub(crate) fn routes(yaml: &str) -> Arc<Routes> {
    let report = load_str(yaml, "test.yaml", Strictness::Lenient);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    let (catalog, refused) = Catalog::from_report(&report);
    assert!(refused.is_empty());
    let table = catalog.addressables(Some(Url::parse("http://127.0.0.1:1/").unwrap()));
    let routes = Routes::build(
        &catalog,
        &table,
        &ChannelDefaults::default(),
        &Delivery::none(),
    );
    assert!(routes.issues().is_empty(), "{:?}", routes.issues());
    Arc::new(routes)
}

pub(crate) async fn start(yaml: &str, options: NodeOptions) -> TestNode {
    let transport = Arc::new(FakeTransport::default());
    let log = Arc::new(MemoryLog::new(MemoryLimits::default()));
    let shared = Shared::new(Arc::new(SingleLog(log)), transport.clone(), options);
    let node = Node::new(shared.clone());
    let ingress = node.ingress();
    let node = node.start();
    node.send(ApplyRoutes(routes(yaml))).await.unwrap();
    wait_until("the node is ready", Duration::from_secs(5), || {
        ingress.is_ready()
    })
    .await;
    TestNode {
        node,
        ingress,
        transport,
        shared,
    }
}

pub(crate) fn fast_options() -> NodeOptions {
    NodeOptions {
        commit_interval: Duration::from_millis(20),
        fault_injection: true,
        ..NodeOptions::default()
    }
}

impl TestNode {
    pub(crate) async fn publish(
        &self,
        broker: &str,
        events: Vec<Event>,
    ) -> Result<(), PublishError> {
        let broker = self.ingress.broker(broker).expect("broker runs");
        broker.publish(events).await
    }
}

pub(crate) fn event(id: &str, ty: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source("/test")
        .ty(ty)
        .build()
        .unwrap()
}

pub(crate) async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
