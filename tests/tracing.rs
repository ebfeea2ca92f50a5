//! Tracing through the real binary into a real OTLP collector (otlp-embedded, read back through
//! Jaeger's query API): one event, a retry, a reply, a failing reply handler and its dead-letter
//! sink make one trace whose every hop hangs under the right parent; the same over OTLP/HTTP with
//! the last spans flushed at shutdown; W3C context passed through untouched when nothing is
//! exported; the journal behind `knactor trace`. Runs on the channel `KNACTOR_E2E_CHANNEL` names.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use knactor_testkit::Collector;
use serde_json::Value;
use support::*;

/// A trace and span id the test (the producer) makes up, and reports to the collector itself.
struct Producer {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

impl Producer {
    fn new() -> Self {
        let trace_id = *uuid::Uuid::new_v4().as_bytes();
        let mut span_id = [0; 8];
        span_id.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
        Self { trace_id, span_id }
    }

    fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }

    fn span_hex(&self) -> String {
        hex(&self.span_id)
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_hex(), self.span_hex())
    }

    fn report(&self, collector: &Collector) {
        collector.record_span("e2e-producer", "produce", self.trace_id, self.span_id, None);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span of a Jaeger trace, reduced to what the assertions read.
#[derive(Debug, Clone)]
struct SpanView {
    id: String,
    name: String,
    parent: Option<String>,
    tags: HashMap<String, Value>,
    start: u64,
}

impl SpanView {
    fn tag(&self, key: &str) -> &Value {
        self.tags.get(key).unwrap_or(&Value::Null)
    }

    fn text(&self, key: &str) -> String {
        match self.tag(key) {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

fn spans_of(trace: &Value) -> Vec<SpanView> {
    let mut spans: Vec<SpanView> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| SpanView {
            id: span["spanID"].as_str().unwrap().to_string(),
            name: span["operationName"].as_str().unwrap().to_string(),
            parent: span["references"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["refType"] == "CHILD_OF")
                .map(|r| r["spanID"].as_str().unwrap().to_string()),
            tags: span["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|tag| {
                    (
                        tag["key"].as_str().unwrap().to_string(),
                        tag["value"].clone(),
                    )
                })
                .collect(),
            start: span["startTime"].as_u64().unwrap_or(0),
        })
        .collect();
    spans.sort_by_key(|span| span.start);
    spans
}

/// The one span named `name` whose tags include every `(key, value)` of `tags`.
fn find<'a>(spans: &'a [SpanView], name: &str, tags: &[(&str, &str)]) -> &'a SpanView {
    let found: Vec<&SpanView> = spans
        .iter()
        .filter(|span| span.name == name && tags.iter().all(|(k, v)| span.text(k) == *v))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {name} span with {tags:?}, found {}: {spans:#?}",
        found.len()
    );
    found[0]
}

/// The one span named `name` with `tags`, checked to be a child of `parent`.
fn find_child<'a>(
    spans: &'a [SpanView],
    name: &str,
    tags: &[(&str, &str)],
    parent: &SpanView,
) -> &'a SpanView {
    let child = find(spans, name, tags);
    assert_child(child, parent);
    child
}

fn assert_child(child: &SpanView, parent: &SpanView) {
    assert_eq!(
        child.parent.as_deref(),
        Some(parent.id.as_str()),
        "{} ({}) should be a child of {} ({})",
        child.name,
        child.id,
        parent.name,
        parent.id
    );
}

/// The span id inside a `traceparent` value.
fn span_id_in(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).unwrap()
}

/// order.created -> "main" (503, then 200 with a reply) -> the reply -> "handler" (500 twice)
/// -> the handler's dead-letter sink.
fn scenario(recorder: &Recorder) -> String {
    recorder.on("/main", |_, n| match n {
        1 => Reply::status(503),
        _ => Reply::event("reply-1", "order.confirmed"),
    });
    recorder.on("/handler", |_, _| Reply::status(500));
    recorder.on("/dls", |_, _| Reply::accepted());
    format!(
        "{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "main",
            "filter: {attributes: {type: order.created}}",
            &recorder.at("/main"),
            Some("{retry: 2, backoffPolicy: linear, backoffDelay: PT0.05S}")
        ),
        trigger_yaml(
            "handler",
            "filter: {attributes: {type: order.confirmed}}",
            &recorder.at("/handler"),
            Some(&format!(
                "{{retry: 1, backoffPolicy: linear, backoffDelay: PT0.05S, deadLetterSink: {{uri: '{}'}}}}",
                recorder.at("/dls")
            ))
        ),
    )
}

/// Every hop of the scenario, each under its parent, in one trace that starts at the producer.
fn check_scenario_trace(collector: &Collector, producer: &Producer, recorder: &Recorder) {
    // producer, ingress, 2 appends, 2 dispatches, 2 deliveries, 2 + 2 attempts, the reply, the
    // dead letter and its attempt.
    let trace = collector.wait_for_trace(&producer.trace_hex(), 15, Duration::from_secs(30));
    let spans = spans_of(&trace);
    assert_eq!(spans.len(), 15, "{spans:#?}");

    // One trace, found the way a Jaeger user finds it: by the producer's service.
    let listed = collector.traces("e2e-producer");
    assert!(
        listed.iter().any(|t| t["traceID"] == producer.trace_hex()),
        "the complete trace is listed under the producer's service: {listed:#?}"
    );

    let produce = find(&spans, "produce", &[]);
    assert_eq!(produce.id, producer.span_hex());
    let ingress = find_child(&spans, "knactor.ingress", &[], produce);
    assert_eq!(ingress.text("http.response.status_code"), "202");
    assert_eq!(ingress.text("cloudevents.event_id"), "order-1");

    let append = find_child(
        &spans,
        "knactor.append",
        &[("cloudevents.event_id", "order-1")],
        ingress,
    );
    assert_eq!(append.text("knactor.broker"), "e2e/default");
    let dispatch = find_child(
        &spans,
        "knactor.dispatch",
        &[("cloudevents.event_id", "order-1")],
        append,
    );
    assert!(dispatch
        .tags
        .contains_key("messaging.destination.partition.id"));
    assert!(dispatch.tags.contains_key("messaging.kafka.offset"));
    assert_eq!(dispatch.text("knactor.matched"), "1");

    let deliver = find_child(
        &spans,
        "knactor.deliver",
        &[("knactor.trigger", "e2e/main")],
        dispatch,
    );
    assert_eq!(deliver.text("knactor.outcome"), "replied");
    let first = find(
        &spans,
        "knactor.attempt",
        &[("knactor.trigger", "e2e/main"), ("knactor.attempt", "1")],
    );
    let retry = find(
        &spans,
        "knactor.attempt",
        &[("knactor.trigger", "e2e/main"), ("knactor.attempt", "2")],
    );
    assert_child(first, deliver);
    assert_child(retry, deliver);
    assert_eq!(first.text("http.response.status_code"), "503");
    assert_eq!(retry.text("http.response.status_code"), "200");

    // What the subscriber saw: the attempt's context, as header and as extension.
    let received = recorder.received("/main");
    assert_eq!(received.len(), 2);
    for (request, attempt) in received.iter().zip([first, retry]) {
        let header = &request.headers["traceparent"];
        assert_eq!(span_id_in(header), attempt.id, "traceparent header");
        assert!(header.contains(&producer.trace_hex()));
        let extension = request.event.as_ref().unwrap().extension("traceparent");
        assert_eq!(
            extension.map(ToString::to_string).as_deref(),
            Some(header.as_str())
        );
    }

    let reply = find_child(&spans, "knactor.reply", &[], deliver);
    assert_eq!(reply.text("cloudevents.event_id"), "reply-1");
    let reply_append = find_child(
        &spans,
        "knactor.append",
        &[("cloudevents.event_id", "reply-1")],
        reply,
    );
    let reply_dispatch = find_child(
        &spans,
        "knactor.dispatch",
        &[("cloudevents.event_id", "reply-1")],
        reply_append,
    );
    let handler = find_child(
        &spans,
        "knactor.deliver",
        &[("knactor.trigger", "e2e/handler")],
        reply_dispatch,
    );
    assert_eq!(handler.text("knactor.outcome"), "dead-lettered");
    for number in ["1", "2"] {
        find_child(
            &spans,
            "knactor.attempt",
            &[
                ("knactor.trigger", "e2e/handler"),
                ("knactor.attempt", number),
                ("http.response.status_code", "500"),
            ],
            handler,
        );
    }
    let dead_letter = find_child(&spans, "knactor.dead_letter", &[], handler);
    let to_sink = find_child(
        &spans,
        "knactor.attempt",
        &[("url.full", &recorder.at("/dls"))],
        dead_letter,
    );
    assert_eq!(to_sink.text("http.response.status_code"), "202");
}

/// One broker and one trigger to the recorder's `/sub`, which answers 202.
fn one_trigger(recorder: &Recorder) -> String {
    recorder.on("/sub", |_, _| Reply::accepted());
    format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("t", "filter: {}", &recorder.at("/sub"), None)
    )
}

/// A node on `config` exporting to `collector` over gRPC in batches every 100 ms, with `extra`
/// flags, on the suite's channel.
fn traced_node(config: &str, collector: &Collector, extra: &[&str]) -> NodeProcess {
    let mut args = vec!["--otlp-endpoint", collector.grpc.as_str()];
    args.extend_from_slice(extra);
    NodeProcess::spawn_with_env(
        std::path::Path::new(BIN),
        config,
        &args,
        Channel::from_env(),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
}

fn run_scenario(
    extra: &[&str],
    env: &[(&str, &str)],
) -> (NodeProcess, Collector, Producer, Recorder) {
    let collector = Collector::start();
    let recorder = Recorder::start();
    let config = scenario(&recorder);
    let endpoint = if extra.contains(&"http/protobuf") {
        collector.otlp_http.clone()
    } else {
        collector.grpc.clone()
    };
    let mut args = vec!["--otlp-endpoint", endpoint.as_str()];
    args.extend_from_slice(extra);
    let node = NodeProcess::spawn_with_env(
        std::path::Path::new(BIN),
        &config,
        &args,
        Channel::from_env(),
        env,
    );
    let producer = Producer::new();
    producer.report(&collector);
    let traceparent = producer.traceparent();
    let response = send_with(
        &node.broker("e2e", "default"),
        "order-1",
        "order.created",
        &[("traceparent", traceparent.as_str())],
    );
    assert_eq!(response.status(), 202);
    wait_until(
        "the dead-letter sink got the reply",
        Duration::from_secs(20),
        || recorder.count("/dls") == 1,
    );
    (node, collector, producer, recorder)
}

#[test]
fn one_event_with_a_retry_a_reply_and_a_dead_letter_is_one_trace_over_grpc() {
    let (node, collector, producer, recorder) =
        run_scenario(&[], &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    check_scenario_trace(&collector, &producer, &recorder);
    let channel = match Channel::from_env() {
        Channel::Memory => "memory",
        Channel::Kafka => "kafka",
    };
    assert_eq!(node.status()["brokers"][0]["channel"], channel);

    // The journal tells the same story without Jaeger.
    let output = node.cli(&["trace", "order-1"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("trace {}", producer.trace_hex())),
        "{text}"
    );
    for line in ["stored", "dispatched", "attempt", "delivered", "replied"] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let output = node.cli(&["trace", "reply-1", "--json"]);
    let trail: Value = serde_json::from_slice(&output.stdout).unwrap();
    let stages: Vec<&str> = trail["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hop| hop["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "stored",
            "dispatched",
            "attempt",
            "attempt",
            "attempt",
            "dead-lettered"
        ],
        "{trail:#}"
    );
    assert_eq!(trail["hops"][2]["status"], 500);
    assert_eq!(trail["hops"][4]["status"], 202);
    assert_eq!(trail["hops"][5]["trigger"], "e2e/handler");
}

#[test]
fn the_trace_survives_kafka_and_a_node_restart() {
    let collector = Collector::start();
    let recorder = Recorder::start();
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answer = healthy.clone();
    recorder.on("/sub", move |_, _| {
        if answer.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::accepted()
        } else {
            Reply::status(503)
        }
    });
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "t",
            "filter: {}",
            &recorder.at("/sub"),
            Some("{retry: 1000, backoffPolicy: linear, backoffDelay: PT0.1S}")
        )
    );
    let mut node = NodeProcess::spawn_with_env(
        std::path::Path::new(BIN),
        &config,
        &["--otlp-endpoint", &collector.grpc],
        Channel::Kafka,
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let producer = Producer::new();
    producer.report(&collector);
    let traceparent = producer.traceparent();
    let response = send_with(
        &node.broker("e2e", "default"),
        "survivor",
        "x",
        &[("traceparent", traceparent.as_str())],
    );
    assert_eq!(response.status(), 202);
    wait_until("the first attempt failed", Duration::from_secs(20), || {
        recorder.count("/sub") >= 1
    });
    // Producer, ingress and append are exported; then the node dies without a word.
    let before = collector.wait_for_trace(&producer.trace_hex(), 3, Duration::from_secs(20));
    let append_id = find(&spans_of(&before), "knactor.append", &[]).id.clone();
    node.kill();
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    node.restart();
    wait_until(
        "delivered after the restart",
        Duration::from_secs(30),
        || {
            recorder
                .received("/sub")
                .last()
                .is_some_and(|last| last.headers.contains_key("traceparent"))
                && node.metric(
                    "knactor_trigger_events_delivered_total",
                    "namespace=\"e2e\",broker=\"default\",trigger=\"t\"",
                ) == 1.0
        },
    );
    // The delivery of the restarted node hangs under the append of the first one: the context
    // came back out of Kafka.
    let last = recorder.received("/sub").last().unwrap().clone();
    let attempt_id = span_id_in(&last.headers["traceparent"]).to_string();
    assert!(last.headers["traceparent"].contains(&producer.trace_hex()));
    let mut spans = Vec::new();
    let found = knactor_testkit::poll(Duration::from_secs(20), || {
        spans = collector
            .trace(&producer.trace_hex())
            .map(|trace| spans_of(&trace))
            .unwrap_or_default();
        spans.iter().any(|span| span.id == attempt_id)
            && spans.iter().any(|span| {
                span.name == "knactor.deliver" && span.text("knactor.outcome") == "delivered"
            })
    });
    assert!(
        found,
        "the restarted node's spans did not arrive: {spans:#?}"
    );
    let by_id = |id: &str| spans.iter().find(|span| span.id == id).cloned();
    let attempt = by_id(&attempt_id).unwrap();
    assert_eq!(attempt.text("http.response.status_code"), "202");
    let deliver = by_id(attempt.parent.as_deref().unwrap()).unwrap();
    assert_eq!(deliver.name, "knactor.deliver");
    let dispatch = by_id(deliver.parent.as_deref().unwrap()).unwrap();
    assert_eq!(dispatch.name, "knactor.dispatch");
    assert_eq!(dispatch.parent.as_deref(), Some(append_id.as_str()));
}

#[test]
fn over_otlp_http_the_last_spans_are_flushed_at_shutdown() {
    // Spans would wait ten minutes for the next export: only the shutdown flush sends them.
    let (mut node, collector, producer, recorder) = run_scenario(
        &["--otlp-protocol", "http/protobuf"],
        &[("OTEL_BSP_SCHEDULE_DELAY", "600000")],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        collector
            .trace(&producer.trace_hex())
            .and_then(|t| t["spans"].as_array().map(Vec::len)),
        Some(1),
        "before shutdown only the producer's own span is there"
    );
    node.terminate();
    check_scenario_trace(&collector, &producer, &recorder);
}

#[test]
fn without_an_endpoint_the_producers_context_passes_through_untouched() {
    let recorder = Recorder::start();
    let config = one_trigger(&recorder);
    let node = NodeProcess::start(&config, &[]);
    let producer = Producer::new();
    let traceparent = producer.traceparent();
    let response = send_with(
        &node.broker("e2e", "default"),
        "plain-1",
        "x",
        &[
            ("traceparent", traceparent.as_str()),
            ("tracestate", "vendor=abc"),
        ],
    );
    assert_eq!(response.status(), 202);
    wait_until("delivered", Duration::from_secs(10), || {
        recorder.count("/sub") == 1
    });
    let request = &recorder.received("/sub")[0];
    assert_eq!(request.headers["traceparent"], traceparent);
    assert_eq!(request.headers["tracestate"], "vendor=abc");
    let event = request.event.as_ref().unwrap();
    assert_eq!(
        event.extension("traceparent").unwrap().to_string(),
        traceparent
    );
    // The journal is on without any exporter.
    let output = node.cli(&["trace", "plain-1"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&producer.trace_hex()) && text.contains("delivered"),
        "{text}"
    );
    let unknown = node.cli(&["trace", "never-sent"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no record of event"));

    // The same id from another producer is another event: the latest is shown, the other named,
    // and --source picks.
    let response = http()
        .post(node.broker("e2e", "default"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "plain-1")
        .header("ce-source", "/another-producer")
        .header("ce-type", "x")
        .body("")
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    wait_until("delivered", Duration::from_secs(10), || {
        recorder.count("/sub") == 2
    });
    let latest = node.cli(&["trace", "plain-1"]);
    let text = String::from_utf8_lossy(&latest.stdout);
    assert!(text.contains("from /another-producer"), "{text}");
    assert!(text.contains("also came from /e2e"), "{text}");
    let first = node.cli(&["trace", "plain-1", "--source", "/e2e"]);
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains("from /e2e") && text.contains(&producer.trace_hex()),
        "{text}"
    );
}

#[test]
fn an_event_the_producer_did_not_sample_makes_no_spans_and_keeps_its_context() {
    let collector = Collector::start();
    let recorder = Recorder::start();
    let config = one_trigger(&recorder);
    let node = traced_node(&config, &collector, &[]);
    let unsampled = Producer::new();
    let unsampled_parent = unsampled.traceparent().replace("-01", "-00");
    let sampled = Producer::new();
    let sampled_parent = sampled.traceparent();
    for (id, parent) in [("quiet", &unsampled_parent), ("loud", &sampled_parent)] {
        let response = send_with(
            &node.broker("e2e", "default"),
            id,
            "x",
            &[("traceparent", parent.as_str())],
        );
        assert_eq!(response.status(), 202);
    }
    wait_until("both delivered", Duration::from_secs(10), || {
        recorder.count("/sub") == 2
    });
    // The sampled event's spans arrive (ingress, append, dispatch, deliver, attempt); the
    // unsampled one's were never made, and went out of the node with the producer's context.
    collector.wait_for_trace(&sampled.trace_hex(), 5, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    assert!(collector.trace(&unsampled.trace_hex()).is_none());
    let quiet = recorder
        .received("/sub")
        .into_iter()
        .find(|r| r.headers["ce-id"] == "quiet")
        .unwrap();
    assert_eq!(quiet.headers["traceparent"], unsampled_parent);
}

#[test]
fn traces_that_start_at_knactor_follow_the_ratio_and_no_later_hop_starts_one() {
    let collector = Collector::start();
    let recorder = Recorder::start();
    let config = one_trigger(&recorder);
    let node = traced_node(
        &config,
        &collector,
        &[
            "--trace-sampler",
            "parentbased_traceidratio",
            "--trace-sampler-arg",
            "0",
        ],
    );
    for i in 0..20 {
        assert_eq!(
            send(&node.broker("e2e", "default"), &format!("r{i}"), "x"),
            202
        );
    }
    // A producer's sampled trace is still followed: proof that the exporter works.
    let sampled = Producer::new();
    let parent = sampled.traceparent();
    let response = send_with(
        &node.broker("e2e", "default"),
        "followed",
        "x",
        &[("traceparent", parent.as_str())],
    );
    assert_eq!(response.status(), 202);
    wait_until("all delivered", Duration::from_secs(10), || {
        recorder.count("/sub") == 21
    });
    collector.wait_for_trace(&sampled.trace_hex(), 5, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    // The others were not traced, and, as with tracing off, carry no context of knactor's.
    for request in recorder.received("/sub") {
        if request.headers["ce-id"] == "followed" {
            let header = &request.headers["traceparent"];
            assert!(header.ends_with("-01") && header.contains(&sampled.trace_hex()));
        } else {
            assert!(!request.headers.contains_key("traceparent"), "{request:?}");
        }
    }
    assert_eq!(collector.traces("knactor").len(), 0);
}

#[test]
fn a_malformed_trace_context_is_ignored_not_sent_on_as_a_header() {
    let collector = Collector::start();
    let recorder = Recorder::start();
    let config = one_trigger(&recorder);
    let node = traced_node(&config, &collector, &[]);
    let body = serde_json::json!({
        "specversion": "1.0", "id": "odd", "source": "/e2e", "type": "x",
        "traceparent": "00-not-a-trace-context-01", "tracestate": "a=b"
    });
    let response = http()
        .post(node.broker("e2e", "default"))
        .header("content-type", "application/cloudevents+json")
        .header(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    wait_until("delivered", Duration::from_secs(10), || {
        recorder.count("/sub") == 1
    });
    // Traced from the ingress on as a trace of its own: the subscriber gets a valid context.
    let request = &recorder.received("/sub")[0];
    let header = &request.headers["traceparent"];
    assert!(
        header.len() == 55 && !header.contains("not-a") && !header.starts_with("00-0000"),
        "{header}"
    );
}

#[test]
fn each_event_of_a_batch_from_several_producers_stays_in_its_own_trace() {
    let collector = Collector::start();
    let recorder = Recorder::start();
    let config = one_trigger(&recorder);
    let node = traced_node(&config, &collector, &[]);
    let (first, second) = (Producer::new(), Producer::new());
    // A batch gathered from two producers, each event with its own context, sent by a relay whose
    // request header names a third trace (and a third event with no context of its own follows it).
    let relay = Producer::new();
    let event = |id: &str, producer: Option<&Producer>| {
        let mut event =
            serde_json::json!({"specversion": "1.0", "id": id, "source": "/e2e", "type": "x"});
        if let Some(producer) = producer {
            event["traceparent"] = producer.traceparent().into();
        }
        event
    };
    let batch = serde_json::json!([
        event("from-first", Some(&first)),
        event("from-second", Some(&second)),
        event("from-relay", None)
    ]);
    let response = http()
        .post(node.broker("e2e", "default"))
        .header("content-type", "application/cloudevents-batch+json")
        .header("traceparent", relay.traceparent())
        .body(batch.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    wait_until("all three delivered", Duration::from_secs(10), || {
        recorder.count("/sub") == 3
    });
    for (id, producer) in [
        ("from-first", &first),
        ("from-second", &second),
        ("from-relay", &relay),
    ] {
        // ingress, append, dispatch, deliver, attempt: the event's own, under its producer.
        let trace = collector.wait_for_trace(&producer.trace_hex(), 5, Duration::from_secs(20));
        let spans = spans_of(&trace);
        let ingress = find(&spans, "knactor.ingress", &[("cloudevents.event_id", id)]);
        assert_eq!(
            ingress.parent.as_deref(),
            Some(producer.span_hex().as_str())
        );
        assert_eq!(ingress.text("messaging.batch.message_count"), "1");
        let append = find_child(&spans, "knactor.append", &[], ingress);
        let dispatch = find_child(&spans, "knactor.dispatch", &[], append);
        find_child(&spans, "knactor.deliver", &[], dispatch);
        let request = recorder
            .received("/sub")
            .into_iter()
            .find(|r| r.headers["ce-id"] == id)
            .unwrap();
        assert!(
            request.headers["traceparent"].contains(&producer.trace_hex()),
            "{id} reached its subscriber in another trace: {request:?}"
        );
    }
}

#[test]
fn a_source_emit_starts_the_trace_of_its_event() {
    let collector = Collector::start();
    let recorder = Recorder::start();
    recorder.on("/ping", |_, _| Reply::accepted());
    let config = format!(
        "{}{}---\n\
         apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: every-second, namespace: e2e}}\n\
         spec:\n  schedule: '* * * * * *'\n  data: 'tick'\n\
         \x20 sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n",
        broker_yaml("{}"),
        trigger_yaml("pings", "filter: {}", &recorder.at("/ping"), None),
    );
    let _node = traced_node(&config, &collector, &[]);
    wait_until("a tick", Duration::from_secs(30), || {
        recorder.count("/ping") >= 1
    });
    let tick = recorder.received("/ping")[0].clone();
    let trace_id = tick.headers["traceparent"]
        .split('-')
        .nth(1)
        .unwrap()
        .to_string();
    // emit, append, dispatch, deliver, attempt: the sink is this node's broker, so the source
    // publishes to it without the HTTP hop (no ingress span).
    let trace = collector.wait_for_trace(&trace_id, 5, Duration::from_secs(20));
    let spans = spans_of(&trace);
    let emit = find(&spans, "knactor.source.emit", &[]);
    assert_eq!(emit.parent, None, "the emit is where the trace starts");
    assert_eq!(
        emit.text("cloudevents.event_type"),
        "dev.knative.sources.ping"
    );
    assert_eq!(emit.text("knactor.attempts"), "1");
    let append = find_child(&spans, "knactor.append", &[], emit);
    let dispatch = find_child(&spans, "knactor.dispatch", &[], append);
    let deliver = find_child(&spans, "knactor.deliver", &[], dispatch);
    let attempt = find_child(&spans, "knactor.attempt", &[], deliver);
    assert_eq!(span_id_in(&tick.headers["traceparent"]), attempt.id);
    assert!(
        spans.iter().all(|span| span.name != "knactor.ingress"),
        "a source publishing to this node's broker goes through no HTTP ingress"
    );
    assert!(collector
        .traces("knactor")
        .iter()
        .any(|t| t["traceID"] == trace_id.as_str()));
}

#[test]
fn the_standard_opentelemetry_variables_turn_export_on_without_flags() {
    let collector = Collector::start();
    let recorder = Recorder::start();
    let config = one_trigger(&recorder);
    let node = NodeProcess::spawn_with_env(
        std::path::Path::new(BIN),
        &config,
        &[],
        Channel::from_env(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc.as_str()),
            ("OTEL_SERVICE_NAME", "orders-mesh"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    assert_eq!(send(&node.broker("e2e", "default"), "by-env", "x"), 202);
    wait_until("delivered", Duration::from_secs(10), || {
        recorder.count("/sub") == 1
    });
    wait_until(
        "spans under the service name the variable gave",
        Duration::from_secs(20),
        || {
            collector.traces("orders-mesh").iter().any(|trace| {
                let spans = spans_of(trace);
                spans.iter().any(|s| s.name == "knactor.attempt")
                    && spans
                        .iter()
                        .any(|s| s.text("cloudevents.event_id") == "by-env")
            })
        },
    );
    assert!(collector.traces("knactor").is_empty());
}

#[test]
fn the_traces_endpoint_variable_is_the_url_itself_and_wins_over_the_base_one() {
    let collector = Collector::start();
    let recorder = Recorder::start();
    let config = one_trigger(&recorder);
    let traces_url = format!("{}/v1/traces", collector.otlp_http.trim_end_matches('/'));
    let node = NodeProcess::spawn_with_env(
        std::path::Path::new(BIN),
        &config,
        &[],
        Channel::from_env(),
        &[
            // A base endpoint nothing answers at: the traces-specific one wins.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_url.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    assert_eq!(
        send(&node.broker("e2e", "default"), "by-traces-url", "x"),
        202
    );
    wait_until("spans at the traces URL", Duration::from_secs(20), || {
        collector.traces("knactor").iter().any(|trace| {
            spans_of(trace)
                .iter()
                .any(|s| s.text("cloudevents.event_id") == "by-traces-url")
        })
    });
}

#[test]
fn bad_telemetry_settings_are_refused_in_one_line() {
    for (args, expected) in [
        (vec!["--otlp-endpoint", "jaeger:4317"], "OTLP endpoint"),
        (vec!["--otlp-endpoint", "https://jaeger:4317"], "TLS"),
        (vec!["--otlp-protocol", "http/json"], "OTLP protocol"),
        (vec!["--trace-sampler", "sometimes"], "trace sampler"),
        (
            vec![
                "--trace-sampler",
                "traceidratio",
                "--trace-sampler-arg",
                "1.5",
            ],
            "between 0 and 1",
        ),
    ] {
        let mut all = vec![
            "run",
            "--config",
            "/nonexistent.yaml",
            "--listen",
            "127.0.0.1:0",
        ];
        all.extend(&args);
        let output = std::process::Command::new(BIN).args(&all).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr:?}");
    }
}
