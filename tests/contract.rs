//! Knative's data-plane contract to the letter, where it is easy to get slightly wrong: a 202 is
//! never a reply, attributes reach subscribers and filters exactly as the producer sent them, and
//! the dead-letter extensions say what Knative's would.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;

#[test]
fn a_202_answer_is_never_a_reply_even_with_an_event_in_it() {
    let recorder = Recorder::start();
    // Both answer with an event; only the 200's is a reply.
    recorder.on("/accepted", |_, _| Reply {
        status: 202,
        ..Reply::event("from-202", "reply.202")
    });
    recorder.on("/ok", |_, _| Reply::event("from-200", "reply.200"));
    let config = format!(
        "{}{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "accepted",
            "filter: {attributes: {type: to-accepted}}",
            &recorder.at("/accepted"),
            None
        ),
        trigger_yaml(
            "ok",
            "filter: {attributes: {type: to-ok}}",
            &recorder.at("/ok"),
            None
        ),
        trigger_yaml(
            "replies",
            "filter: {attributes: {source: /reply}}",
            &recorder.at("/replies"),
            None
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    let broker = node.broker("e2e", "default");
    assert_eq!(send(&broker, "a", "to-accepted"), 202);
    assert_eq!(send(&broker, "b", "to-ok"), 202);
    wait_until("the 200's reply arrives", Duration::from_secs(20), || {
        recorder.ids("/replies").contains(&"from-200".to_string())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        recorder.ids("/replies"),
        ["from-200"],
        "the event in the 202 answer was taken as a reply"
    );
    assert_eq!(
        recorder.count("/accepted"),
        1,
        "a 202 is a delivery, not retried"
    );
}

#[test]
fn attributes_reach_subscribers_and_filters_exactly_as_sent() {
    let recorder = Recorder::start();
    // Everything a URL parser would rewrite: the host's case, the default port, a dot segment.
    let as_sent = "http://Example.COM:80/Schema/../v1";
    let config = format!(
        "{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "binary",
            &format!("filter: {{attributes: {{dataschema: '{as_sent}'}}}}"),
            &recorder.at("/binary"),
            None
        ),
        trigger_yaml(
            "structured",
            &format!("filters: [{{cesql: \"dataschema = '{as_sent}' AND source = 'HTTP://Producer.Example:80/A'\"}}]"),
            &recorder.at("/structured"),
            Some("{format: json}")
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    let response = http()
        .post(node.broker("e2e", "default"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "exact")
        .header("ce-type", "t")
        .header("ce-source", "HTTP://Producer.Example:80/A")
        .header("ce-dataschema", as_sent)
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    let matched = knactor_testkit::poll(Duration::from_secs(20), || {
        recorder.count("/binary") == 1 && recorder.count("/structured") == 1
    });
    assert!(
        matched,
        "binary {} structured {}: {}\n{}\n{}",
        recorder.count("/binary"),
        recorder.count("/structured"),
        node.status(),
        node.log(),
        String::from_utf8_lossy(&node.cli(&["trace", "exact"]).stdout)
    );
    let binary = &recorder.received("/binary")[0];
    assert_eq!(
        binary.headers["ce-dataschema"], as_sent,
        "binary mode, byte for byte"
    );
    assert!(
        !binary
            .headers
            .keys()
            .any(|name| name.starts_with("ce-knactor")),
        "no mesh-only extension reaches a subscriber: {:?}",
        binary.headers.keys().collect::<Vec<_>>()
    );
    let structured: serde_json::Value =
        serde_json::from_slice(&recorder.received("/structured")[0].body).unwrap();
    assert_eq!(
        structured["dataschema"], as_sent,
        "structured mode, byte for byte"
    );
    assert_eq!(structured["source"], "HTTP://Producer.Example:80/A");
}

#[test]
fn the_dead_letter_names_the_subscriber_exactly_as_configured() {
    let recorder = Recorder::start();
    // Nothing listens there; written without a path, as Knative's e2e test writes it.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "t",
            "filter: {}",
            &dead,
            Some(&format!(
                "{{retry: 0, deadLetterSink: {{uri: '{}'}}}}",
                recorder.at("/dls")
            ))
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    assert_eq!(send(&node.broker("e2e", "default"), "d", "t"), 202);
    wait_until("the dead letter", Duration::from_secs(20), || {
        recorder.count("/dls") == 1
    });
    let letter = &recorder.received("/dls")[0];
    assert_eq!(
        letter.headers["ce-knativeerrordest"], dead,
        "as written: no slash added"
    );
    assert_eq!(letter.headers["ce-knativeerrorcode"], "500");
}
