//! knactor next to Knative's own broker data plane, on the same machine, in the same run, with the
//! same load generator and the same subscriber.
//!
//! ```text
//!                       ┌► knactor run --config DIR (memory channel) ─────────────────────────┐
//!   load generator ─POST┤                                                                     ├─► sink
//!                       └► Knative: broker ingress ─► InMemoryChannel dispatcher ─┬► filter ──┘
//!                                                     (one POST per trigger)      └► filter ...
//! ```
//!
//! The peer is Knative Eventing's multi-tenant channel-based broker (`cmd/broker/ingress`,
//! `cmd/broker/filter`, `cmd/in_memory/channel_dispatcher`), built from the pinned Go module and
//! started against a kube-apiserver by `scripts/knative-up.sh`. Its controllers do not run: this
//! bench writes what they would (the Broker's status with its channel address, each Trigger's
//! status with its subscriber URI, the InMemoryChannel's subscribers and status, one per trigger,
//! pointing at the filter, as the MT broker's Subscriptions do). Every address is a loopback port.
//!
//! Each configuration runs on fresh processes (a new knactor node; Knative's three programs
//! restarted after its resources are rewritten), warmed up, then measured:
//! - one broker, one trigger: accepted and delivered events/s with `--concurrency` requests in
//!   flight, CPU per delivered event (knactor's node; the three Knative programs summed), RSS, and
//!   the end-to-end p50/p99 at a fixed rate, half the lower of the two ceilings (from round 1);
//! - N = 1, 10, 100, 1,000 triggers of which one matches: delivered rate and CPU per ingress event
//!   with `--scaling-concurrency` (1) request in flight (Knative's channel fans each event out to
//!   the filter once per trigger: 32 events in flight would be 32,000 requests at N = 1,000), and
//!   the RSS after the first event (before any load grows the heaps), whose slope over N is the
//!   memory per trigger;
//! - a healthy trigger beside one whose subscriber refuses connections (both with the same
//!   `delivery`): the healthy trigger's delivered rate and p99, as ratios to it alone (paired:
//!   the median of each round's ratio).
//!
//! The two systems take turns, each round starting with the other one; each number is the median
//! over the rounds. Results go to `target/bench-results/knative_side_by_side.json`.
//!
//! `cargo bench --bench knative_side_by_side [-- --rounds R --events E --seconds S --concurrency C
//! --scaling-concurrency C]`;
//! `-- --smoke`: builds and starts the peer, one short round of each, no checks on the numbers.
//! Needs Go (the peer is built on first use, minutes) and `scripts/install-tools.sh --only kube`.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse};
use common::{arg, ms, percentile, post_event, start_server, write_results, Arrivals};
use futures::StreamExt;
use knactor_testkit::{repo_path, Channel, KubeApiServer, NodeProcess};
use serde_json::{json, Value};

const NAMESPACE: &str = "bench";
const BROKER: &str = "default";
/// The InMemoryChannel the MT broker controller would make for the Broker `default`.
const CHANNEL: &str = "default-kne-trigger";
/// Knative's default delivery for brokers (config-br-defaults), which its webhook would write into
/// the Broker and its controller into each Subscription; knactor's default is the same.
const DEFAULT_DELIVERY: &str =
    r#"{"retry":10,"backoffPolicy":"exponential","backoffDelay":"PT0.2S"}"#;
/// The failing trigger's delivery, on both systems: 3 retries, 0.2 + 0.4 + 0.8 s apart.
const BAD_DELIVERY: &str = r#"{"retry":3,"backoffPolicy":"exponential","backoffDelay":"PT0.1S"}"#;
const TRIGGER_COUNTS: [usize; 4] = [1, 10, 100, 1_000];

/// What a run is asked for.
#[derive(Clone, Copy)]
struct Plan {
    rounds: usize,
    /// Most events of a closed-loop load.
    events: usize,
    /// Longest a closed-loop load sends.
    seconds: u64,
    /// Length of a fixed-rate load.
    fixed_seconds: u64,
    concurrency: usize,
    /// Requests in flight for the loads over N triggers.
    scaling_concurrency: usize,
    smoke: bool,
}

/// One trigger of a configuration.
#[derive(Clone)]
struct TriggerDef {
    name: String,
    event_type: String,
    subscriber: String,
    delivery: Option<&'static str>,
}

/// The triggers of one broker: trigger `t-0` matches the load's events (type `bench`) and goes to
/// the sink; `n - 1` others filter on types nobody sends; `bad`, when asked, matches too and goes
/// to a port that refuses connections, with a shorter delivery (BAD_DELIVERY) than the default.
fn triggers(n: usize, sink: &str, bad: Option<&str>) -> Vec<TriggerDef> {
    let mut all: Vec<TriggerDef> = (0..n)
        .map(|i| TriggerDef {
            name: format!("t-{i}"),
            event_type: if i == 0 {
                "bench".into()
            } else {
                format!("other-{i}")
            },
            subscriber: sink.to_string(),
            delivery: None,
        })
        .collect();
    if let Some(refused) = bad {
        all.push(TriggerDef {
            name: "bad".into(),
            event_type: "bench".into(),
            subscriber: refused.to_string(),
            delivery: Some(BAD_DELIVERY),
        });
    }
    all
}

// ---- the systems -------------------------------------------------------------------------------

/// A broker data plane under test: configured afresh, then loaded through its broker URL.
trait System {
    fn name(&self) -> &'static str;
    /// Fresh processes running one broker with `triggers`, ready to take events.
    fn configure(&mut self, runtime: &tokio::runtime::Runtime, triggers: &[TriggerDef]);
    fn broker_url(&self) -> String;
    /// The processes whose CPU and memory count.
    fn pids(&self) -> Vec<u32>;
}

struct Knactor {
    node: Option<NodeProcess>,
}

impl System for Knactor {
    fn name(&self) -> &'static str {
        "knactor"
    }

    fn configure(&mut self, _runtime: &tokio::runtime::Runtime, triggers: &[TriggerDef]) {
        if let Some(mut node) = self.node.take() {
            node.kill();
        }
        let mut config = format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: {BROKER}, namespace: {NAMESPACE}}}\nspec: {{}}\n"
        );
        for trigger in triggers {
            let delivery = trigger
                .delivery
                .map(|d| format!(", delivery: {d}"))
                .unwrap_or_default();
            config.push_str(&format!(
                "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {}, namespace: {NAMESPACE}}}\n\
                 spec: {{broker: {BROKER}, filter: {{attributes: {{type: {}}}}}, subscriber: {{uri: '{}'}}{delivery}}}\n",
                trigger.name, trigger.event_type, trigger.subscriber
            ));
        }
        let bin = Path::new(env!("CARGO_BIN_EXE_knactor"));
        self.node = Some(NodeProcess::spawn_on(bin, &config, &[], Channel::Memory));
    }

    fn broker_url(&self) -> String {
        self.node.as_ref().unwrap().broker(NAMESPACE, BROKER)
    }

    fn pids(&self) -> Vec<u32> {
        self.node.iter().map(NodeProcess::pid).collect()
    }
}

/// Knative's MT channel-based broker on an InMemoryChannel, its three programs from
/// `scripts/knative-up.sh`, its resources in a kube-apiserver of its own.
struct Knative {
    kube: KubeApiServer,
    api: KubeApi,
    dir: PathBuf,
    ingress_port: u16,
    filter_port: u16,
    /// How long the first `scripts/knative-up.sh` took (it builds the peer when not built yet).
    first_start: Duration,
}

impl Knative {
    fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let began = Instant::now();
        let kube = KubeApiServer::start();
        let api = KubeApi::new(&kube);
        let dir = kube.dir().join("knative");
        let (ingress_port, filter_port) = (free_port(), free_port());
        let mut knative = Self {
            kube,
            api,
            dir,
            ingress_port,
            filter_port,
            first_start: Duration::ZERO,
        };
        knative.up(); // applies the CRDs and ConfigMaps; the programs are restarted by configure()
        knative.first_start = began.elapsed();
        let ingress = knative.ingress_url();
        runtime.block_on(async {
            let api = &knative.api;
            api.create(
                "/api/v1/namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            )
            .await;
            let broker = api
                .create(
                    &format!("/apis/eventing.knative.dev/v1/namespaces/{NAMESPACE}/brokers"),
                    json!({
                        "apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                        "metadata": {"name": BROKER, "annotations": {"eventing.knative.dev/broker.class": "MTChannelBasedBroker"}},
                        "spec": {
                            "config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "config-br-default-channel", "namespace": "knative-eventing"},
                            "delivery": serde_json::from_str::<Value>(DEFAULT_DELIVERY).unwrap(),
                        },
                    }),
                )
                .await;
            // What the MT broker controller writes once the channel and the ingress are ready.
            let status = json!({
                "observedGeneration": broker["metadata"]["generation"],
                "conditions": conditions(&["Addressable", "DeadLetterSinkResolved", "EventPoliciesReady", "FilterReady", "IngressReady", "TriggerChannelReady"]),
                "address": {"name": "http", "url": ingress},
                "addresses": [{"name": "http", "url": ingress}],
                "annotations": {
                    "knative.dev/channelAddress": knative.channel_url(),
                    "knative.dev/channelAPIVersion": "messaging.knative.dev/v1",
                    "knative.dev/channelKind": "InMemoryChannel",
                    "knative.dev/channelName": CHANNEL,
                },
            });
            api.put_status(broker, status).await;
            api.create(
                &format!("/apis/messaging.knative.dev/v1/namespaces/{NAMESPACE}/inmemorychannels"),
                json!({
                    "apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel",
                    "metadata": {"name": CHANNEL, "labels": {"eventing.knative.dev/broker": BROKER, "eventing.knative.dev/brokerEverything": "true"}},
                    "spec": {"subscribers": []},
                }),
            )
            .await;
        });
        knative
    }

    fn ingress_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/{NAMESPACE}/{BROKER}",
            self.ingress_port
        )
    }

    /// The channel's address: the dispatcher finds a channel by the Host of a request (here the
    /// dispatcher's own loopback address, where a cluster has the channel's Service name).
    fn channel_url(&self) -> String {
        "http://127.0.0.1:8080".into()
    }

    fn up(&self) {
        knative_up(
            &[self.dir.as_os_str(), self.kube.kubeconfig.as_os_str()],
            &[
                ("KNATIVE_INGRESS_PORT", self.ingress_port.to_string()),
                ("KNATIVE_FILTER_PORT", self.filter_port.to_string()),
            ],
        );
    }

    fn down(&self) {
        let _ = Command::new(repo_path("scripts/knative-down.sh"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status();
    }

    /// Rewrites the triggers, their statuses and the channel's subscribers as Knative's
    /// controllers would for `triggers` (with the programs stopped, so that they start from it).
    async fn write_resources(&self, triggers: &[TriggerDef]) {
        let api = &self.api;
        let base = format!("/apis/eventing.knative.dev/v1/namespaces/{NAMESPACE}/triggers");
        api.request(reqwest::Method::DELETE, &base, None).await;
        while api.request(reqwest::Method::GET, &base, None).await["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let created: Vec<(TriggerDef, Value)> = futures::stream::iter(triggers.iter().cloned())
            .map(|trigger| {
                let base = base.clone();
                async move {
                    let mut spec = json!({
                        "broker": BROKER,
                        "filter": {"attributes": {"type": trigger.event_type}},
                        "subscriber": {"uri": trigger.subscriber},
                    });
                    if let Some(delivery) = trigger.delivery {
                        spec["delivery"] = serde_json::from_str(delivery).unwrap();
                    }
                    let object = api
                        .create(
                            &base,
                            json!({
                                "apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
                                "metadata": {"name": trigger.name, "labels": {"eventing.knative.dev/broker": BROKER}},
                                "spec": spec,
                            }),
                        )
                        .await;
                    let status = json!({
                        "observedGeneration": object["metadata"]["generation"],
                        "conditions": conditions(&["BrokerReady", "DeadLetterSinkResolved", "DependencyReady", "OIDCIdentityCreated", "SubscriberResolved", "SubscriptionReady"]),
                        "subscriberUri": trigger.subscriber,
                    });
                    let object = api.put_status(object, status).await;
                    (trigger, object)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        // The channel's subscribers: one per trigger, to the filter's path for it, replies to the
        // broker's ingress, the trigger's delivery or else the broker's (as the Subscription has).
        let subscribers: Vec<Value> = created
            .iter()
            .map(|(trigger, object)| {
                let uid = object["metadata"]["uid"].as_str().unwrap();
                json!({
                    "name": format!("{BROKER}-{}-{uid}", trigger.name),
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "generation": 1,
                    "subscriberUri": format!("http://127.0.0.1:{}/triggers/{NAMESPACE}/{}/{uid}", self.filter_port, trigger.name),
                    "replyUri": self.ingress_url(),
                    "delivery": serde_json::from_str::<Value>(trigger.delivery.unwrap_or(DEFAULT_DELIVERY)).unwrap(),
                })
            })
            .collect();
        let path = format!(
            "/apis/messaging.knative.dev/v1/namespaces/{NAMESPACE}/inmemorychannels/{CHANNEL}"
        );
        let mut channel = api.request(reqwest::Method::GET, &path, None).await;
        channel["spec"]["subscribers"] = Value::Array(subscribers);
        let channel = api
            .request(reqwest::Method::PUT, &path, Some(channel))
            .await;
        let address = self.channel_url();
        let status = json!({
            "observedGeneration": channel["metadata"]["generation"],
            "conditions": conditions(&["Addressable", "ChannelServiceReady", "DeadLetterSinkResolved", "DispatcherReady", "EndpointsReady", "EventPoliciesReady", "ServiceReady"]),
            "address": {"name": "http", "url": address},
            "addresses": [{"name": "http", "url": address}],
            "subscribers": [],
        });
        api.put_status(channel, status).await;
    }

    /// Whether the dispatcher reconciled the channel: it marks each subscriber ready in the
    /// channel's status once its fanout has them.
    async fn channel_reconciled(&self, subscribers: usize) -> bool {
        let channel = self
            .api
            .request(
                reqwest::Method::GET,
                &format!(
                    "/apis/messaging.knative.dev/v1/namespaces/{NAMESPACE}/inmemorychannels/{CHANNEL}"
                ),
                None,
            )
            .await;
        channel["status"]["subscribers"]
            .as_array()
            .is_some_and(|s| s.len() == subscribers && s.iter().all(|s| s["ready"] == "True"))
    }
}

impl System for Knative {
    fn name(&self) -> &'static str {
        "knative"
    }

    fn configure(&mut self, runtime: &tokio::runtime::Runtime, triggers: &[TriggerDef]) {
        self.down();
        runtime.block_on(self.write_resources(triggers));
        self.up();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !runtime.block_on(self.channel_reconciled(triggers.len())) {
            assert!(
                Instant::now() < deadline,
                "the InMemoryChannel dispatcher did not take the {} subscribers within 120 s (logs in {})",
                triggers.len(),
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn broker_url(&self) -> String {
        self.ingress_url()
    }

    fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
            .collect()
    }
}

impl Drop for Knative {
    fn drop(&mut self) {
        self.down();
    }
}

/// Conditions all True, with the top-level Ready.
fn conditions(types: &[&str]) -> Value {
    let mut all = vec!["Ready"];
    all.extend_from_slice(types);
    Value::Array(
        all.iter()
            .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}))
            .collect(),
    )
}

/// The kube-apiserver's REST API, as the admin of the kubeconfig.
struct KubeApi {
    url: String,
    token: String,
    client: reqwest::Client,
}

impl KubeApi {
    fn new(kube: &KubeApiServer) -> Self {
        let ca = std::fs::read(kube.dir().join("pki/ca.crt")).unwrap();
        Self {
            url: kube.url(),
            token: std::fs::read_to_string(kube.dir().join("token"))
                .unwrap()
                .trim()
                .to_string(),
            client: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .no_proxy()
                .build()
                .unwrap(),
        }
    }

    async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn create(&self, path: &str, object: Value) -> Value {
        self.request(reqwest::Method::POST, path, Some(object))
            .await
    }

    /// Writes `status` into `object` (as last read) through its status subresource.
    async fn put_status(&self, mut object: Value, status: Value) -> Value {
        let path = object["metadata"]["selfLink"]
            .as_str()
            .map(ToString::to_string)
            .unwrap_or_else(|| self_link(&object));
        object["status"] = status;
        self.request(
            reqwest::Method::PUT,
            &format!("{path}/status"),
            Some(object),
        )
        .await
    }
}

/// `/apis/<group/version>/namespaces/<ns>/<plural>/<name>` of a namespaced Knative object.
fn self_link(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap();
    let plural = format!("{}s", kind.to_ascii_lowercase());
    format!(
        "/apis/{}/namespaces/{}/{plural}/{}",
        object["apiVersion"].as_str().unwrap(),
        object["metadata"]["namespace"].as_str().unwrap(),
        object["metadata"]["name"].as_str().unwrap()
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- the sink and the load ---------------------------------------------------------------------

/// The subscriber both systems deliver to: answers 202 and records arrivals of the current
/// measurement's `<prefix>-<n>` ids.
struct Sink {
    url: String,
    current: Arc<RwLock<(Arc<Arrivals>, String)>>,
}

impl Sink {
    fn start(start: Instant) -> Self {
        let current = Arc::new(RwLock::new((Arrivals::new(start, 0), String::new())));
        let recording = current.clone();
        let url = start_server(1, move |request: HttpRequest| {
            let id = request
                .headers()
                .get("ce-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let current = recording.read().unwrap();
            current.0.record(id, &current.1);
            HttpResponse::Accepted().finish()
        });
        Self {
            url: format!("{url}/sink"),
            current,
        }
    }

    /// Records `events` arrivals of `<prefix>-<i>` from now on.
    fn expect(&self, start: Instant, prefix: &str, events: usize) -> Arc<Arrivals> {
        let arrivals = Arrivals::new(start, events);
        *self.current.write().unwrap() = (arrivals.clone(), prefix.to_string());
        arrivals
    }
}

/// What a load sent: when each event was sent (or was due, at a fixed rate), and its status.
struct Sent {
    sent_at: Vec<Duration>,
    accepted: usize,
    elapsed: Duration,
}

/// One of the generator's events (common's), accepted (202) or not.
async fn post(client: &reqwest::Client, url: &str, id: String) -> bool {
    post_event(client, url, id).await == 202
}

fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap()
}

/// Closed loop: `concurrency` senders, each sending its next event once the previous one is
/// answered, until `events` are sent or `seconds` have passed.
fn closed_loop(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    prefix: &str,
    events: usize,
    concurrency: usize,
    seconds: u64,
    start: Instant,
) -> Sent {
    runtime.block_on(async {
        let client = client(concurrency);
        let next = Arc::new(AtomicUsize::new(0));
        let began = Instant::now();
        let deadline = began + Duration::from_secs(seconds);
        let senders: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, next, url, prefix) = (
                    client.clone(),
                    next.clone(),
                    url.to_string(),
                    prefix.to_string(),
                );
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= events {
                            break;
                        }
                        let at = start.elapsed();
                        let ok = post(&client, &url, format!("{prefix}-{i}")).await;
                        sent.push((i, at, ok));
                    }
                    sent
                })
            })
            .collect();
        let mut all = Vec::new();
        for sender in senders {
            all.extend(sender.await.unwrap());
        }
        let elapsed = began.elapsed();
        tally(all, elapsed)
    })
}

/// Open loop: events due every 1/`rate` s for `seconds`, each sent when due (or as soon as one of
/// `max_in_flight` requests is free); latencies count from when an event was due.
fn fixed_rate(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    prefix: &str,
    rate: f64,
    seconds: u64,
    start: Instant,
) -> Sent {
    const MAX_IN_FLIGHT: usize = 2_048;
    runtime.block_on(async {
        let client = client(256);
        let events = (rate * seconds as f64) as usize;
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let began = Instant::now();
        let mut requests = Vec::with_capacity(events);
        for i in 0..events {
            let due = began + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let permit = slots.clone().acquire_owned().await.unwrap();
            let (client, url, id) = (client.clone(), url.to_string(), format!("{prefix}-{i}"));
            let at = due - start;
            requests.push(tokio::spawn(async move {
                let ok = post(&client, &url, id).await;
                drop(permit);
                (i, at, ok)
            }));
        }
        let mut all = Vec::with_capacity(events);
        for request in requests {
            all.push(request.await.unwrap());
        }
        tally(all, began.elapsed())
    })
}

fn tally(all: Vec<(usize, Duration, bool)>, elapsed: Duration) -> Sent {
    let mut sent_at = vec![Duration::ZERO; all.len()];
    let mut accepted = 0;
    for (i, at, ok) in all {
        sent_at[i] = at;
        accepted += usize::from(ok);
    }
    Sent {
        sent_at,
        accepted,
        elapsed,
    }
}

/// Waits until `expected` events arrived, or none arrived for 3 s, or 60 s passed.
fn settle(arrivals: &Arrivals, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut since) = (arrivals.delivered(), Instant::now());
    while arrivals.delivered() < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = arrivals.delivered();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
}

/// How a load sends: closed loop with N requests in flight, or open loop at a rate.
#[derive(Clone, Copy)]
enum Load {
    InFlight(usize),
    FixedRate(f64),
}

/// What one load measured.
#[derive(Clone, Default)]
struct Measure {
    sent: usize,
    accepted: usize,
    delivered: usize,
    accepted_rate: f64,
    delivered_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU (user + system) of the system's processes per accepted event / per delivered event.
    cpu_us_per_accepted: f64,
    cpu_us_per_delivered: f64,
    /// RSS of the system's processes summed, after the load.
    rss_bytes: u64,
}

/// One load against `system`'s broker (closed loop, or at `rate` events/s), measured.
fn measure(
    runtime: &tokio::runtime::Runtime,
    system: &dyn System,
    sink: &Sink,
    plan: &Plan,
    load: Load,
    start: Instant,
    prefix: &str,
) -> Measure {
    let rate = match load {
        Load::FixedRate(rate) => Some(rate),
        Load::InFlight(_) => None,
    };
    let capacity = match rate {
        Some(rate) => (rate * plan.fixed_seconds as f64) as usize,
        None => plan.events,
    };
    let arrivals = sink.expect(start, prefix, capacity);
    let pids = system.pids();
    let cpu_before = cpu_ticks(&pids);
    let url = system.broker_url();
    let sent = match rate {
        Some(rate) => fixed_rate(runtime, &url, prefix, rate, plan.fixed_seconds, start),
        None => closed_loop(
            runtime,
            &url,
            prefix,
            plan.events,
            match load {
                Load::InFlight(n) => n,
                Load::FixedRate(_) => unreachable!(),
            },
            plan.seconds,
            start,
        ),
    };
    settle(&arrivals, sent.sent_at.len());
    // Linux counts CPU time in ticks of 10 ms (USER_HZ = 100).
    let cpu_us = (cpu_ticks(&pids) - cpu_before) as f64 * 10_000.0;
    let delivered = arrivals.delivered();
    let mut latencies: Vec<Duration> = (0..sent.sent_at.len())
        .filter_map(|i| {
            let arrived = arrivals.slots[i].load(Ordering::Relaxed);
            (arrived > 0).then(|| Duration::from_nanos(arrived).saturating_sub(sent.sent_at[i]))
        })
        .collect();
    let first = sent.sent_at.iter().min().copied().unwrap_or_default();
    let last = arrivals
        .slots
        .iter()
        .map(|slot| Duration::from_nanos(slot.load(Ordering::Relaxed)))
        .max()
        .unwrap_or_default();
    let (p50, p99) = if latencies.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        (
            ms(percentile(&mut latencies, 0.50)),
            ms(percentile(&mut latencies, 0.99)),
        )
    };
    Measure {
        sent: sent.sent_at.len(),
        accepted: sent.accepted,
        delivered,
        accepted_rate: sent.accepted as f64 / sent.elapsed.as_secs_f64(),
        // Over the time from the first send to the last arrival, or to the end of the sending if
        // that is later (a load of a few slow requests delivers early in each).
        delivered_rate: if delivered == 0 {
            0.0
        } else {
            let span = last.saturating_sub(first).max(sent.elapsed);
            delivered as f64 / span.as_secs_f64()
        },
        p50_ms: p50,
        p99_ms: p99,
        cpu_us_per_accepted: cpu_us / sent.accepted.max(1) as f64,
        cpu_us_per_delivered: cpu_us / delivered.max(1) as f64,
        rss_bytes: rss(&pids),
    }
}

/// Sends an event at a time until one reaches the sink (whatever the broker answered: beside a
/// failing trigger, Knative answers 5xx for events it delivered to the healthy one): the system
/// is ready end to end.
fn probe(runtime: &tokio::runtime::Runtime, system: &dyn System, sink: &Sink, start: Instant) {
    let url = system.broker_url();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let arrivals = sink.expect(start, "probe", 1);
        runtime.block_on(async { post(&client(1), &url, "probe-0".into()).await });
        arrivals.wait_for(1, Duration::from_secs(5));
        if arrivals.delivered() == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no event went through within 120 s",
            system.name()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Up to `warm` events with `concurrency` in flight, for 3 s at most, and their deliveries.
fn warm_up(
    runtime: &tokio::runtime::Runtime,
    system: &dyn System,
    sink: &Sink,
    start: Instant,
    warm: usize,
    concurrency: usize,
) {
    let arrivals = sink.expect(start, "warm", warm);
    let sent = closed_loop(
        runtime,
        &system.broker_url(),
        "warm",
        warm,
        concurrency,
        3,
        start,
    );
    settle(&arrivals, sent.sent_at.len());
}

/// User + system CPU ticks the processes used so far (/proc/PID/stat, fields 14 and 15).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The command name (field 2) is in parentheses and may hold spaces: count after it.
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<u64> = after_name
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
        })
        .sum()
}

/// Resident memory of the processes, summed (VmRSS of /proc/PID/status).
fn rss(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        })
        .sum()
}

// ---- one round -----------------------------------------------------------------------------------

/// Everything one round measured for one system.
#[derive(Clone, Default)]
struct RoundOf {
    one_trigger: Measure,
    fixed_rate: Measure,
    /// Per N of TRIGGER_COUNTS: the closed-loop load, the RSS after the first event and the RSS
    /// before any event.
    by_triggers: Vec<(Measure, u64, u64)>,
    bad_closed: Measure,
    bad_fixed: Measure,
}

#[allow(clippy::too_many_arguments)]
fn round_of(
    runtime: &tokio::runtime::Runtime,
    system: &mut dyn System,
    sink: &Sink,
    plan: &Plan,
    fixed: f64,
    start: Instant,
    refused: &str,
    round: usize,
) -> RoundOf {
    let name = system.name();
    let mut result = RoundOf::default();
    let warm = if plan.smoke { 100 } else { 1_000 };
    for &n in &TRIGGER_COUNTS {
        let began = Instant::now();
        system.configure(runtime, &triggers(n, &sink.url, None));
        let configured = began.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        let config_rss = rss(&system.pids());
        probe(runtime, system, sink, start);
        // Memory with N triggers after one event, before any load grows the heaps.
        std::thread::sleep(Duration::from_secs(1));
        let idle_rss = rss(&system.pids());
        let in_flight = plan.scaling_concurrency;
        warm_up(runtime, system, sink, start, warm, in_flight);
        let scaled = measure(
            runtime,
            system,
            sink,
            plan,
            Load::InFlight(in_flight),
            start,
            &format!("n{n}"),
        );
        println!(
            "round {round} {name:<8} {n:>5} triggers, {in_flight} in flight: accepted {:>8}/s delivered {:>8}/s  CPU {:>9.1} µs/ingress event  RSS {:>6.1} MiB ({:>6.1} before any event)  (configured in {:.1} s)",
            per_s(scaled.accepted_rate),
            per_s(scaled.delivered_rate),
            scaled.cpu_us_per_accepted,
            mib(idle_rss),
            mib(config_rss),
            configured.as_secs_f64()
        );
        if n == 1 {
            warm_up(runtime, system, sink, start, warm, plan.concurrency);
            let closed = measure(
                runtime,
                system,
                sink,
                plan,
                Load::InFlight(plan.concurrency),
                start,
                "one",
            );
            println!(
                "round {round} {name:<8}     1 trigger, {} in flight: accepted {:>8.0}/s delivered {:>8.0}/s  CPU {:>8.1} µs/delivered  RSS {:>6.1} MiB",
                plan.concurrency,
                closed.accepted_rate,
                closed.delivered_rate,
                closed.cpu_us_per_delivered,
                mib(closed.rss_bytes)
            );
            result.one_trigger = closed;
            let at_rate = measure(
                runtime,
                system,
                sink,
                plan,
                Load::FixedRate(fixed),
                start,
                "fixed",
            );
            println!(
                "round {round} {name:<8}     1 trigger at {fixed:.0}/s: delivered {}/{} p50 {:.2} ms p99 {:.2} ms",
                at_rate.delivered, at_rate.sent, at_rate.p50_ms, at_rate.p99_ms
            );
            result.fixed_rate = at_rate;
        }
        result.by_triggers.push((scaled, idle_rss, config_rss));
    }
    system.configure(runtime, &triggers(1, &sink.url, Some(refused)));
    probe(runtime, system, sink, start);
    warm_up(runtime, system, sink, start, warm, plan.concurrency);
    result.bad_closed = measure(
        runtime,
        system,
        sink,
        plan,
        Load::InFlight(plan.concurrency),
        start,
        "bad",
    );
    result.bad_fixed = measure(
        runtime,
        system,
        sink,
        plan,
        Load::FixedRate(fixed),
        start,
        "badfixed",
    );
    println!(
        "round {round} {name:<8} healthy beside a refused subscriber: delivered {:>8.0}/s (accepted {}/{}); at {fixed:.0}/s delivered {}/{} p50 {:.2} ms p99 {:.2} ms",
        result.bad_closed.delivered_rate,
        result.bad_closed.accepted,
        result.bad_closed.sent,
        result.bad_fixed.delivered,
        result.bad_fixed.sent,
        result.bad_fixed.p50_ms,
        result.bad_fixed.p99_ms
    );
    result
}

/// A rate with a decimal when it is small (Knative at 1,000 triggers delivers about one a second).
fn per_s(events_per_s: f64) -> String {
    if events_per_s < 10.0 {
        format!("{events_per_s:.2}")
    } else {
        format!("{events_per_s:.0}")
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}

/// The median over rounds of one number of a round.
fn med(rounds: &[RoundOf], f: impl Fn(&RoundOf) -> f64) -> f64 {
    median(rounds.iter().map(f).collect())
}

// ---- main ------------------------------------------------------------------------------------------

/// Runs `scripts/knative-up.sh` with `args` and `env` (`--build`: only build Knative's data plane
/// from Go modules; a directory and a kubeconfig: start it there), and fails the bench if it fails.
fn knative_up(args: &[&std::ffi::OsStr], env: &[(&str, String)]) {
    let status = Command::new(repo_path("scripts/knative-up.sh"))
        .args(args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("scripts/knative-up.sh runs");
    assert!(
        status.success(),
        "scripts/knative-up.sh {args:?} failed (it needs Go and `scripts/install-tools.sh --only kube`)"
    );
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let plan = Plan {
        rounds: if smoke { 1 } else { arg("--rounds", 3).max(1) },
        events: arg("--events", if smoke { 2_000 } else { 20_000 }),
        seconds: arg("--seconds", if smoke { 2 } else { 8 }) as u64,
        fixed_seconds: if smoke { 2 } else { 5 },
        concurrency: arg("--concurrency", 32),
        scaling_concurrency: arg("--scaling-concurrency", 1),
        smoke,
    };
    let began = Instant::now();
    let start = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink = Sink::start(start);
    // A port nothing listens on: connections to it are refused.
    let refused = format!("http://127.0.0.1:{}/", free_port());

    let build = Instant::now();
    knative_up(&["--build".as_ref()], &[]);
    let build_seconds = build.elapsed().as_secs_f64();
    let mut knative = Knative::start(&runtime);
    let mut knactor = Knactor { node: None };
    println!(
        "peer: knative.dev/eventing {} built/checked in {build_seconds:.0} s, API server and first start in {:.0} s",
        knative_version(),
        knative.first_start.as_secs_f64()
    );

    // The fixed rate: half the lower of the two 1-trigger ceilings, from a first calibration.
    let mut ceilings = Vec::new();
    for system in [&mut knactor as &mut dyn System, &mut knative] {
        system.configure(&runtime, &triggers(1, &sink.url, None));
        probe(&runtime, system, &sink, start);
        warm_up(&runtime, system, &sink, start, 1_000, plan.concurrency);
        let load = Load::InFlight(plan.concurrency);
        let m = measure(&runtime, system, &sink, &plan, load, start, "calibrate");
        println!(
            "calibration {:<8}: delivered {:.0}/s",
            system.name(),
            m.delivered_rate
        );
        ceilings.push(m.delivered_rate);
    }
    let fixed = (ceilings.iter().copied().fold(f64::INFINITY, f64::min) * 0.5).max(10.0);

    let mut rounds: [Vec<RoundOf>; 2] = [Vec::new(), Vec::new()];
    for round in 0..plan.rounds {
        for turn in 0..2 {
            let index = (round + turn) % 2;
            let system: &mut dyn System = if index == 0 {
                &mut knactor
            } else {
                &mut knative
            };
            let result = round_of(
                &runtime,
                system,
                &sink,
                &plan,
                fixed,
                start,
                &refused,
                round + 1,
            );
            rounds[index].push(result);
        }
    }
    if let Some(mut node) = knactor.node.take() {
        node.kill();
    }
    drop(knative);

    let results = report(&plan, &rounds, fixed, build_seconds);
    let total = began.elapsed().as_secs_f64();
    println!("\nrun time {total:.0} s");
    let mut results = results;
    results["run_seconds"] = json!(total);
    results["peer_build_seconds"] = json!(build_seconds);
    write_results("knative_side_by_side", &results);
}

fn knative_version() -> String {
    std::env::var("KNATIVE_EVENTING_VERSION").unwrap_or_else(|_| {
        let script = std::fs::read_to_string(repo_path("scripts/knative-up.sh")).unwrap();
        script
            .lines()
            .find_map(|line| line.strip_prefix("VERSION=${KNATIVE_EVENTING_VERSION:-"))
            .map(|v| v.trim_end_matches('}').to_string())
            .unwrap_or_default()
    })
}

/// Prints the tables and the goals, and returns the JSON of the medians.
fn report(plan: &Plan, rounds: &[Vec<RoundOf>; 2], fixed: f64, build_seconds: f64) -> Value {
    let names = ["knactor", "knative"];
    println!(
        "\nknactor next to Knative {} (MT channel-based broker, InMemoryChannel), {} in flight, median of {} rounds",
        knative_version(),
        plan.concurrency,
        plan.rounds
    );
    println!("\none broker, one trigger");
    println!(
        "{:<10} {:>12} {:>12} {:>16} {:>16} {:>10} {:>12} {:>12}",
        "",
        "accepted/s",
        "delivered/s",
        "CPU µs/delivered",
        "delivered/CPU-s",
        "RSS MiB",
        "p50 ms",
        "p99 ms"
    );
    let mut systems = serde_json::Map::new();
    let mut per_cpu_s = [0.0; 2];
    let mut cpu_by_n = [[0.0; 4]; 2];
    let mut slope = [0.0; 2];
    let mut slope_before = [0.0; 2];
    let mut neighbour = [(0.0, 0.0); 2];
    for (index, name) in names.iter().enumerate() {
        let r = &rounds[index];
        let cpu = med(r, |x| x.one_trigger.cpu_us_per_delivered);
        per_cpu_s[index] = 1e6 / cpu;
        println!(
            "{name:<10} {:>12.0} {:>12.0} {:>16.1} {:>16.0} {:>10.1} {:>12.2} {:>12.2}",
            med(r, |x| x.one_trigger.accepted_rate),
            med(r, |x| x.one_trigger.delivered_rate),
            cpu,
            per_cpu_s[index],
            med(r, |x| mib(x.one_trigger.rss_bytes)),
            med(r, |x| x.fixed_rate.p50_ms),
            med(r, |x| x.fixed_rate.p99_ms),
        );
    }
    println!("(p50/p99: end to end, from when each event was due to its arrival, at {fixed:.0} events/s)");

    println!(
        "\ntriggers (1 matches), {} in flight",
        plan.scaling_concurrency
    );
    println!(
        "{:<10} {:>6} {:>12} {:>12} {:>20} {:>10} {:>12} {:>12}",
        "",
        "N",
        "accepted/s",
        "delivered/s",
        "CPU µs/ingress event",
        "ratio",
        "RSS MiB",
        "(no event)"
    );
    for (index, name) in names.iter().enumerate() {
        let r = &rounds[index];
        let mut by_n = Vec::new();
        for (k, n) in TRIGGER_COUNTS.iter().enumerate() {
            cpu_by_n[index][k] = med(r, |x| x.by_triggers[k].0.cpu_us_per_accepted);
            let row = json!({
                "triggers": n,
                "accepted_events_per_s": med(r, |x| x.by_triggers[k].0.accepted_rate),
                "delivered_events_per_s": med(r, |x| x.by_triggers[k].0.delivered_rate),
                "cpu_us_per_ingress_event": cpu_by_n[index][k],
                "cpu_ratio_to_1_trigger": cpu_by_n[index][k] / cpu_by_n[index][0],
                "rss_bytes_after_first_event": med(r, |x| x.by_triggers[k].1 as f64),
                "rss_bytes_before_any_event": med(r, |x| x.by_triggers[k].2 as f64),
                "events_sent": med(r, |x| x.by_triggers[k].0.sent as f64),
            });
            println!(
                "{name:<10} {n:>6} {:>12} {:>12} {:>20.1} {:>9.2}x {:>12.1} {:>12.1}",
                per_s(row["accepted_events_per_s"].as_f64().unwrap()),
                per_s(row["delivered_events_per_s"].as_f64().unwrap()),
                cpu_by_n[index][k],
                cpu_by_n[index][k] / cpu_by_n[index][0],
                row["rss_bytes_after_first_event"].as_f64().unwrap() / (1024.0 * 1024.0),
                row["rss_bytes_before_any_event"].as_f64().unwrap() / (1024.0 * 1024.0),
            );
            by_n.push(row);
        }
        // RSS slope from 1 to 1,000 triggers, per round, then the median.
        slope[index] = med(r, |x| {
            (x.by_triggers[3].1 as f64 - x.by_triggers[0].1 as f64) / 999.0
        });
        slope_before[index] = med(r, |x| {
            (x.by_triggers[3].2 as f64 - x.by_triggers[0].2 as f64) / 999.0
        });
        let alone_rate = med(r, |x| x.one_trigger.delivered_rate);
        let alone_p99 = med(r, |x| x.fixed_rate.p99_ms);
        // Paired: each round's ratio (the two ran in that round, a minute or two apart), then the
        // median, which the machine's drift over a run moves less than a ratio of medians.
        neighbour[index] = (
            med(r, |x| {
                x.bad_closed.delivered_rate / x.one_trigger.delivered_rate
            }),
            med(r, |x| x.bad_fixed.p99_ms / x.fixed_rate.p99_ms),
        );
        systems.insert(
            name.to_string(),
            json!({
                "one_trigger": {
                    "accepted_events_per_s": med(r, |x| x.one_trigger.accepted_rate),
                    "delivered_events_per_s": alone_rate,
                    "cpu_us_per_delivered_event": med(r, |x| x.one_trigger.cpu_us_per_delivered),
                    "delivered_events_per_cpu_second": per_cpu_s[index],
                    "rss_bytes_after_load": med(r, |x| x.one_trigger.rss_bytes as f64),
                    "fixed_rate": {
                        "events_per_s": fixed,
                        "p50_ms": med(r, |x| x.fixed_rate.p50_ms),
                        "p99_ms": alone_p99,
                        "delivered_fraction": med(r, |x| x.fixed_rate.delivered as f64 / x.fixed_rate.sent.max(1) as f64),
                    },
                },
                "by_triggers": by_n,
                "memory_per_trigger_bytes": slope[index],
                "memory_per_trigger_bytes_before_any_event": slope_before[index],
                "bad_neighbour": {
                    "healthy_delivered_events_per_s": med(r, |x| x.bad_closed.delivered_rate),
                    "healthy_p99_ms_at_fixed_rate": med(r, |x| x.bad_fixed.p99_ms),
                    "healthy_p50_ms_at_fixed_rate": med(r, |x| x.bad_fixed.p50_ms),
                    "accepted_fraction": med(r, |x| x.bad_closed.accepted as f64 / x.bad_closed.sent.max(1) as f64),
                    "accepted_fraction_at_fixed_rate": med(r, |x| x.bad_fixed.accepted as f64 / x.bad_fixed.sent.max(1) as f64),
                    "delivered_fraction_at_fixed_rate": med(r, |x| x.bad_fixed.delivered as f64 / x.bad_fixed.sent.max(1) as f64),
                    "rate_ratio_to_alone": neighbour[index].0,
                    "p99_ratio_to_alone": neighbour[index].1,
                },
            }),
        );
    }

    println!("\nmemory per trigger (RSS slope from 1 to 1,000 triggers: after the first event / before any)");
    for (index, name) in names.iter().enumerate() {
        println!(
            "{name:<10} {:>10.0} bytes {:>10.0} bytes",
            slope[index], slope_before[index]
        );
    }
    println!("\na healthy trigger beside one whose subscriber refuses connections, as ratios to it alone");
    println!("{:<10} {:>12} {:>12}", "", "rate", "p99");
    for (index, name) in names.iter().enumerate() {
        println!(
            "{name:<10} {:>11.2}x {:>11.2}x",
            neighbour[index].0, neighbour[index].1
        );
    }

    let efficiency = per_cpu_s[0] / per_cpu_s[1];
    let knactor_growth = cpu_by_n[0][3] / cpu_by_n[0][0];
    let knative_growth = cpu_by_n[1][3] / cpu_by_n[1][0];
    let memory = slope[0] / slope[1];
    let memory_before = slope_before[0] / slope_before[1];
    let goals = json!({
        "delivered_per_cpu_second_ratio": {"measured": efficiency, "goal": ">= 3", "met": efficiency >= 3.0},
        "knactor_cpu_at_1000_over_1": {"measured": knactor_growth, "goal": "<= 1.5", "met": knactor_growth <= 1.5},
        "knative_cpu_at_1000_over_1": {"measured": knative_growth, "goal": "grows with N", "met": knative_growth > 1.5},
        "memory_per_trigger_ratio": {"measured": memory, "goal": "<= 0.01", "met": memory <= 0.01},
        "memory_per_trigger_ratio_before_any_event": {"measured": memory_before, "goal": "<= 0.01", "met": memory_before <= 0.01},
        "healthy_neighbour_rate_ratio": {
            "knactor": neighbour[0].0, "knative": neighbour[1].0, "goal": "knactor >= 0.9 where Knative's is lower",
            "met": neighbour[0].0 >= 0.9 && neighbour[1].0 < neighbour[0].0,
        },
    });
    println!("\ngoals");
    for (goal, value) in goals.as_object().unwrap() {
        println!("{goal:<34} {value}");
    }
    json!({
        "peer": format!("knative.dev/eventing {} (MT channel-based broker, InMemoryChannel)", knative_version()),
        "peer_build_seconds": build_seconds,
        "smoke": plan.smoke,
        "rounds": plan.rounds,
        "events": plan.events,
        "seconds": plan.seconds,
        "concurrency": plan.concurrency,
        "scaling_concurrency": plan.scaling_concurrency,
        "fixed_rate_events_per_s": fixed,
        "systems": systems,
        "goals": goals,
    })
}
