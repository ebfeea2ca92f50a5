//! The broker ingress over real HTTP: every status code of Knative's contract, every content mode,
//! and what the ingress does to the event on its way in.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use cloudevents::event::SpecVersion;
use cloudevents::AttributesReader;
use support::*;

fn node_with_display(recorder: &Recorder, extra: &[&str]) -> NodeProcess {
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("all", "filter: {}", &recorder.at("/all"), None)
    );
    NodeProcess::start(&config, extra)
}

#[test]
fn an_accepted_event_gets_202_and_reaches_the_subscriber_with_an_arrival_time_and_no_ttl() {
    let recorder = Recorder::start();
    let node = node_with_display(&recorder, &[]);
    assert_eq!(send(&node.broker("e2e", "default"), "1", "t"), 202);
    wait_until("delivery", Duration::from_secs(10), || {
        recorder.count("/all") == 1
    });
    let event = recorder.received("/all")[0].event.clone().unwrap();
    assert!(event.extension("knativearrivaltime").is_some());
    assert!(event.extension("knativebrokerttl").is_none());
    let headers = &recorder.received("/all")[0].headers;
    assert_eq!(headers.get("prefer").map(String::as_str), Some("reply"));
    assert_eq!(headers.get("kn-namespace").map(String::as_str), Some("e2e"));
}

#[test]
fn every_refusal_has_its_status_and_a_reason() {
    let recorder = Recorder::start();
    let node = node_with_display(&recorder, &["--max-body-bytes", "1024"]);
    let broker = node.broker("e2e", "default");
    let client = http();

    // 404: the root path, and a broker that does not exist.
    let root = client.post(format!("{}/", node.url)).send().unwrap();
    assert_eq!(root.status(), 404);
    let unknown = send_with(&node.broker("e2e", "nope"), "1", "t", &[]);
    assert_eq!(unknown.status(), 404);
    assert!(unknown
        .text()
        .unwrap()
        .contains("broker e2e/nope does not exist"));

    // 400: not /<namespace>/<broker>.
    assert_eq!(
        client
            .post(format!("{}/a/b/c", node.url))
            .send()
            .unwrap()
            .status(),
        400
    );

    // 405 with Allow, for any other method.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let response = client.request(method.clone(), &broker).send().unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST, OPTIONS");
    }

    // OPTIONS answers the webhook handshake.
    let options = client
        .request(reqwest::Method::OPTIONS, &broker)
        .send()
        .unwrap();
    assert_eq!(options.status(), 200);
    assert_eq!(options.headers()["webhook-allowed-origin"], "*");
    assert_eq!(options.headers()["webhook-allowed-rate"], "*");

    // 400: not a CloudEvent, missing attributes, bad values, bad JSON.
    let cases: Vec<(reqwest::blocking::RequestBuilder, &str)> = vec![
        (client.post(&broker).body("hello"), "not a CloudEvent"),
        (
            client
                .post(&broker)
                .header("ce-specversion", "1.0")
                .header("ce-source", "/s")
                .header("ce-type", "t"),
            "missing required attribute \"id\"",
        ),
        (
            client
                .post(&broker)
                .header("ce-specversion", "9.9")
                .header("ce-id", "1")
                .header("ce-source", "/s")
                .header("ce-type", "t"),
            "unsupported specversion",
        ),
        (
            client
                .post(&broker)
                .header("ce-specversion", "1.0")
                .header("ce-id", "1")
                .header("ce-source", "/s")
                .header("ce-type", "t")
                .header("ce-time", "not-a-time"),
            "is not an RFC 3339 time",
        ),
        (
            client
                .post(&broker)
                .header("content-type", "application/cloudevents+json")
                .body("{broken"),
            "invalid structured event",
        ),
        (
            client
                .post(&broker)
                .header("content-type", "application/cloudevents-batch+json")
                .body("{}"),
            "a batch must be a JSON array",
        ),
    ];
    for (request, reason) in cases {
        let response = request.send().unwrap();
        assert_eq!(response.status(), 400);
        let text = response.text().unwrap();
        assert!(text.contains(reason), "{text:?} should say {reason:?}");
    }

    // 400: the TTL is spent.
    let looping = send_with(&broker, "1", "t", &[("ce-knativebrokerttl", "1")]);
    assert_eq!(looping.status(), 400);
    assert!(looping.text().unwrap().contains("hop budget"));

    // 413: over the configured size limit, declared or streamed.
    let big = client
        .post(&broker)
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-source", "/s")
        .header("ce-type", "t")
        .body(vec![b'x'; 2048])
        .send()
        .unwrap();
    assert_eq!(big.status(), 413);
    assert!(big.text().unwrap().contains("limit of 1024 bytes"));

    // None of that reached the subscriber, and the node is still fine.
    assert_eq!(send(&broker, "ok", "t"), 202);
    wait_until("the good event", Duration::from_secs(10), || {
        recorder.count("/all") == 1
    });
    assert_eq!(recorder.ids("/all"), vec!["ok"]);
}

#[test]
fn a_full_broker_answers_503_with_retry_after() {
    let recorder = Recorder::start();
    // Deliveries hang, so nothing is committed; the channel holds 3 events per partition.
    recorder.on("/all", |_, _| {
        Reply::accepted().after(Duration::from_secs(5))
    });
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("all", "filter: {}", &recorder.at("/all"), None)
    );
    // The memory channel's bound; a Kafka topic does not fill up like this.
    let node = NodeProcess::start_on(&config, &["--memory-max-records", "3"], Channel::Memory);
    let broker = node.broker("e2e", "default");
    for i in 0..3 {
        assert_eq!(send(&broker, &i.to_string(), "t"), 202);
    }
    let full = send_with(&broker, "3", "t", &[]);
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "1");
    assert!(full.text().unwrap().contains("cannot take more events"));
}

#[test]
fn a_broker_whose_kafka_is_down_answers_503_with_retry_after() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("all", "filter: {}", &recorder.at("/all"), None)
    );
    // A Kafka of its own, to stop.
    let kafka = std::sync::Arc::new(Kafka::start());
    let node =
        NodeProcess::start_with_kafka(&config, &["--kafka-append-timeout", "2s"], kafka.clone());
    let broker = node.broker("e2e", "default");
    assert_eq!(send(&broker, "before", "t"), 202);
    wait_until(
        "the accepted event arrived",
        Duration::from_secs(10),
        || recorder.ids("/all") == vec!["before"],
    );
    kafka.stop();
    let response = send_with(&broker, "during", "t", &[]);
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response
        .text()
        .unwrap()
        .contains("cannot store events right now"));
}

#[test]
fn structured_and_batched_events_and_version_0_3_are_delivered_unchanged() {
    let recorder = Recorder::start();
    let node = node_with_display(&recorder, &[]);
    let broker = node.broker("e2e", "default");
    let client = http();
    let structured = client
        .post(&broker)
        .header("content-type", "application/cloudevents+json")
        .body(r#"{"specversion":"1.0","id":"s1","source":"/s","type":"t","subject":"sub","datacontenttype":"application/json","data":{"b":1,"a":[true,null]},"flag":true,"count":7}"#)
        .send()
        .unwrap();
    assert_eq!(structured.status(), 202);
    let batch = client
        .post(&broker)
        .header("content-type", "application/cloudevents-batch+json")
        .body(r#"[{"specversion":"1.0","id":"b1","source":"/s","type":"t"},{"specversion":"0.3","id":"b2","source":"/s","type":"t","schemaurl":"http://schemas/x"}]"#)
        .send()
        .unwrap();
    assert_eq!(batch.status(), 202);
    let old = client
        .post(&broker)
        .header("ce-specversion", "0.3")
        .header("ce-id", "v03")
        .header("ce-source", "/s")
        .header("ce-type", "t")
        .header("content-type", "text/plain")
        .body("plain text")
        .send()
        .unwrap();
    assert_eq!(old.status(), 202);

    wait_until("four deliveries", Duration::from_secs(10), || {
        recorder.count("/all") == 4
    });
    let by_id = |id: &str| {
        recorder
            .received("/all")
            .into_iter()
            .find(|r| r.event.as_ref().is_some_and(|e| e.id() == id))
            .unwrap()
    };
    let s1 = by_id("s1");
    assert_eq!(s1.headers["ce-subject"], "sub");
    assert_eq!(s1.headers["ce-flag"], "true");
    assert_eq!(s1.headers["ce-count"], "7");
    assert_eq!(s1.headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&s1.body).unwrap(),
        serde_json::json!({"b":1,"a":[true,null]})
    );
    assert_eq!(
        String::from_utf8(s1.body.clone()).unwrap(),
        r#"{"b":1,"a":[true,null]}"#,
        "key order kept"
    );
    let b2 = by_id("b2");
    assert_eq!(b2.headers["ce-specversion"], "0.3");
    assert_eq!(b2.headers["ce-schemaurl"], "http://schemas/x");
    let v03 = by_id("v03");
    assert_eq!(v03.event.unwrap().specversion(), SpecVersion::V03);
    assert_eq!(v03.body, b"plain text");
}

#[test]
fn health_readiness_and_metrics_answer() {
    let recorder = Recorder::start();
    let node = node_with_display(&recorder, &[]);
    let client = http();
    assert_eq!(
        client
            .get(format!("{}/healthz", node.url))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{}/readyz", node.url))
            .send()
            .unwrap()
            .status(),
        200
    );
    send(&node.broker("e2e", "default"), "1", "t");
    wait_until("the accepted counter", Duration::from_secs(10), || {
        node.metric(
            "knactor_broker_events_accepted_total",
            "namespace=\"e2e\",broker=\"default\"",
        ) == 1.0
    });
}

#[test]
fn malformed_http_gets_an_error_and_the_node_stays_up() {
    use std::io::{Read, Write};
    let recorder = Recorder::start();
    let node = node_with_display(&recorder, &[]);
    let address = node.url.trim_start_matches("http://").to_string();
    let garbage: [&[u8]; 5] = [
        b"\x00\x01\x02garbage\r\n\r\n",
        b"POST /e2e/default HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /e2e/default HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: \xff\xfe\r\nce-source: /s\r\nce-type: t\r\nContent-Length: 0\r\n\r\n",
        b"POST /e2e/default HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /%%%%/../.. HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    for request in garbage {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let head = String::from_utf8_lossy(&answer);
        assert!(
            head.is_empty() || head.starts_with("HTTP/1.1 4"),
            "{:?} -> {head:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(send(&node.broker("e2e", "default"), "after", "t"), 202);
}
