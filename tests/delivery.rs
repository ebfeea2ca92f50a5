//! Delivery through the real binary: retry schedules, dead letters and their extensions, timeouts,
//! Retry-After, parking and re-driving from the CLI, replies and the TTL that stops reply loops,
//! structured delivery.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use cloudevents::AttributesReader;
use support::*;

fn gaps(recorded: &[Recorded]) -> Vec<Duration> {
    recorded
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .collect()
}

fn assert_gaps_near(actual: &[Duration], expected_ms: &[u64]) {
    assert_eq!(actual.len(), expected_ms.len(), "{actual:?}");
    for (gap, &expected) in actual.iter().zip(expected_ms) {
        let expected = Duration::from_millis(expected);
        // ±20 % jitter, plus scheduling slack on a busy machine.
        assert!(
            *gap >= expected.mul_f64(0.8),
            "{gap:?} is shorter than 0.8 × {expected:?}"
        );
        assert!(
            *gap <= expected.mul_f64(1.2) + Duration::from_millis(400),
            "{gap:?} is far longer than {expected:?}"
        );
    }
}

fn base64_of(text: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn retries_follow_the_linear_and_exponential_schedules() {
    let recorder = Recorder::start();
    recorder.on("/linear", |_, _| Reply::status(503));
    recorder.on("/exponential", |_, _| Reply::status(500));
    let config = format!(
        "{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "linear",
            "filter: {attributes: {type: lin}}",
            &recorder.at("/linear"),
            Some("{retry: 3, backoffPolicy: linear, backoffDelay: PT0.1S}")
        ),
        trigger_yaml(
            "exponential",
            "filter: {attributes: {type: exp}}",
            &recorder.at("/exponential"),
            Some("{retry: 3, backoffPolicy: exponential, backoffDelay: PT0.05S}")
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    assert_eq!(send(&node.broker("e2e", "default"), "l", "lin"), 202);
    assert_eq!(send(&node.broker("e2e", "default"), "x", "exp"), 202);
    wait_until("both parked", Duration::from_secs(10), || {
        node.metric(
            "knactor_trigger_events_parked_total",
            "namespace=\"e2e\",broker=\"default\",trigger=\"linear\"",
        ) == 1.0
            && node.metric(
                "knactor_trigger_events_parked_total",
                "namespace=\"e2e\",broker=\"default\",trigger=\"exponential\"",
            ) == 1.0
    });
    let linear = recorder.received("/linear");
    assert_eq!(linear.len(), 4, "1 attempt + 3 retries");
    assert_gaps_near(&gaps(&linear), &[100, 200, 300]);
    let exponential = recorder.received("/exponential");
    assert_eq!(exponential.len(), 4);
    assert_gaps_near(&gaps(&exponential), &[100, 200, 400]);
    assert_eq!(
        node.metric(
            "knactor_trigger_retries_total",
            "namespace=\"e2e\",broker=\"default\",trigger=\"linear\""
        ),
        3.0
    );
}

#[test]
fn the_dead_letter_sink_gets_the_original_event_with_knatives_error_extensions() {
    let recorder = Recorder::start();
    let long_body = "x".repeat(3000);
    let body = long_body.clone();
    recorder.on("/sub", move |_, _| Reply::status(500).with_body(&body));
    recorder.on("/not-an-event", |_, _| {
        Reply::status(200).with_body("OK, thanks")
    });
    recorder.on("/bad-request", |_, _| Reply::status(400).with_body("no"));
    let elsewhere = recorder.at("/elsewhere");
    recorder.on("/redirects", move |_, _| {
        Reply::status(307).with_header("location", &elsewhere)
    });
    let dls = "{retry: 1, backoffDelay: PT0.01S, deadLetterSink: {uri: 'DLS'}}"
        .replace("DLS", &recorder.at("/dls"));
    let config = format!(
        "{}{}{}{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "fails",
            "filter: {attributes: {type: a}}",
            &recorder.at("/sub"),
            Some(&dls)
        ),
        trigger_yaml(
            "unreachable",
            "filter: {attributes: {type: b}}",
            "http://127.0.0.1:9/closed",
            Some(&dls)
        ),
        trigger_yaml(
            "not-an-event",
            "filter: {attributes: {type: c}}",
            &recorder.at("/not-an-event"),
            Some(&dls)
        ),
        trigger_yaml(
            "bad-request",
            "filter: {attributes: {type: d}}",
            &recorder.at("/bad-request"),
            Some(&dls)
        ),
        trigger_yaml(
            "redirects",
            "filter: {attributes: {type: e}}",
            &recorder.at("/redirects"),
            Some(&dls)
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    let broker = node.broker("e2e", "default");
    for (id, ty) in [("A", "a"), ("B", "b"), ("C", "c"), ("D", "d"), ("E", "e")] {
        assert_eq!(
            send_with(&broker, id, ty, &[("ce-color", "red")]).status(),
            202
        );
    }
    wait_until("five dead letters", Duration::from_secs(10), || {
        recorder.count("/dls") == 5
    });
    let dead = |id: &str| {
        recorder
            .received("/dls")
            .into_iter()
            .find(|r| r.event.as_ref().is_some_and(|e| e.id() == id))
            .unwrap()
    };

    let a = dead("A");
    assert_eq!(a.headers["ce-knativeerrordest"], recorder.at("/sub"));
    assert_eq!(a.headers["ce-knativeerrorcode"], "500");
    let mut encoded = base64_of(long_body.as_bytes());
    encoded.truncate(1024);
    assert_eq!(
        a.headers["ce-knativeerrordata"], encoded,
        "Knative's cut: the body encoded, the text cut to 1,024 characters"
    );
    assert_eq!(a.headers["ce-color"], "red", "the original event");
    assert_eq!(a.headers["ce-type"], "a");
    assert_eq!(recorder.count("/sub"), 2, "retried once");

    let b = dead("B");
    assert_eq!(b.headers["ce-knativeerrorcode"], "500");
    let data = base64::engine::general_purpose::STANDARD
        .decode(&b.headers["ce-knativeerrordata"])
        .unwrap();
    assert!(String::from_utf8(data)
        .unwrap()
        .starts_with("dispatch error:"));

    let c = dead("C");
    assert_eq!(
        c.headers["ce-knativeerrorcode"], "502",
        "a 2xx with a body that is not an event fails"
    );
    assert_eq!(c.headers["ce-knativeerrordata"], base64_of(b"OK, thanks"));

    assert_eq!(dead("D").headers["ce-knativeerrorcode"], "400");
    assert_eq!(recorder.count("/bad-request"), 1, "400 is not retried");

    // The data-plane contract: a 3xx is an error, not retried; the redirect is not followed.
    assert_eq!(dead("E").headers["ce-knativeerrorcode"], "307");
    assert_eq!(recorder.count("/redirects"), 1, "307 is not retried");
    assert_eq!(
        recorder.count("/elsewhere"),
        0,
        "the redirect is not followed"
    );
}

#[test]
fn a_slow_attempt_times_out_and_retry_after_is_honoured() {
    let recorder = Recorder::start();
    recorder.on("/slow", |_, _| {
        Reply::accepted().after(Duration::from_secs(3))
    });
    recorder.on("/busy", |_, n| {
        if n == 1 {
            Reply::status(429).with_header("Retry-After", "1")
        } else {
            Reply::accepted()
        }
    });
    let config = format!(
        "{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "slow",
            "filter: {attributes: {type: slow}}",
            &recorder.at("/slow"),
            Some(&format!(
                "{{retry: 0, timeout: PT0.2S, deadLetterSink: {{uri: '{}'}}}}",
                recorder.at("/dls")
            ))
        ),
        trigger_yaml(
            "busy",
            "filter: {attributes: {type: busy}}",
            &recorder.at("/busy"),
            Some("{retry: 2, backoffPolicy: linear, backoffDelay: PT0.01S}")
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    let broker = node.broker("e2e", "default");
    assert_eq!(send(&broker, "s", "slow"), 202);
    assert_eq!(send(&broker, "b", "busy"), 202);

    wait_until(
        "the timed-out event is dead-lettered",
        Duration::from_secs(5),
        || recorder.count("/dls") == 1,
    );
    let dead = &recorder.received("/dls")[0];
    let data = base64::engine::general_purpose::STANDARD
        .decode(&dead.headers["ce-knativeerrordata"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&data).contains("timed out"),
        "{:?}",
        String::from_utf8_lossy(&data)
    );

    wait_until(
        "the busy subscriber got its second attempt",
        Duration::from_secs(5),
        || recorder.count("/busy") == 2,
    );
    let busy = recorder.received("/busy");
    assert!(
        busy[1].at - busy[0].at >= Duration::from_millis(950),
        "waited {:?}, Retry-After said 1s",
        busy[1].at - busy[0].at
    );
}

#[test]
fn undeliverable_events_are_parked_listed_and_redriven_from_the_cli() {
    let recorder = Recorder::start();
    recorder.on("/sub", |_, _| Reply::status(500));
    let config = format!(
        "{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "flaky",
            "filter: {}",
            &recorder.at("/sub"),
            Some("{retry: 0}")
        ),
        trigger_yaml("healthy", "filter: {}", &recorder.at("/healthy"), None),
    );
    let node = NodeProcess::start(&config, &[]);
    for id in ["p1", "p2", "p3"] {
        assert_eq!(send(&node.broker("e2e", "default"), id, "t"), 202);
    }
    wait_until("three parked", Duration::from_secs(10), || {
        node.metric(
            "knactor_trigger_events_parked_total",
            "namespace=\"e2e\",broker=\"default\",trigger=\"flaky\"",
        ) == 3.0
    });

    let list = node.cli(&["parked", "list", "e2e/default"]);
    assert!(list.status.success());
    let text = String::from_utf8(list.stdout).unwrap();
    assert!(text.starts_with("3 parked"), "{text}");
    for id in ["p1", "p2", "p3"] {
        assert!(text.contains(&format!("id={id}")), "{text}");
    }
    assert!(text.contains("trigger=e2e/flaky"));

    recorder.on("/sub", |_, _| Reply::accepted());
    let redrive = node.cli(&["parked", "redrive", "e2e/default", "--trigger", "flaky"]);
    assert!(
        redrive.status.success(),
        "{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    assert!(String::from_utf8(redrive.stdout)
        .unwrap()
        .contains("re-driven: 3"));
    wait_until("re-delivered", Duration::from_secs(10), || {
        recorder
            .ids("/sub")
            .iter()
            .filter(|id| id.starts_with('p'))
            .count()
            == 6
    });
    let list = node.cli(&["parked", "list", "e2e/default"]);
    assert!(String::from_utf8(list.stdout)
        .unwrap()
        .starts_with("0 parked"));
    assert_eq!(
        recorder.count("/healthy"),
        3,
        "re-driving reaches only the trigger that parked"
    );

    let unknown = node.cli(&["parked", "redrive", "e2e/default", "--trigger", "nope"]);
    assert!(!unknown.status.success());
    let error = String::from_utf8(unknown.stderr).unwrap();
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.contains("trigger e2e/nope does not exist"), "{error}");
}

#[test]
fn a_reply_reenters_the_broker_and_a_reply_loop_ends_after_255_hops() {
    let recorder = Recorder::start();
    recorder.on("/order", |_, _| {
        Reply::event("confirmation", "order.confirmed")
    });
    recorder.on("/echo", |request, n| {
        let _ = request;
        Reply::event(&format!("echo-{n}"), "echo")
    });
    let config = format!(
        "{}{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "orders",
            "filter: {attributes: {type: order.placed}}",
            &recorder.at("/order"),
            None
        ),
        trigger_yaml(
            "confirmations",
            "filter: {attributes: {type: order.confirmed}}",
            &recorder.at("/confirmed"),
            None
        ),
        trigger_yaml(
            "echo",
            "filter: {attributes: {type: echo}}",
            &recorder.at("/echo"),
            None
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    let broker = node.broker("e2e", "default");
    assert_eq!(send(&broker, "o1", "order.placed"), 202);
    wait_until("the reply was routed", Duration::from_secs(10), || {
        recorder.count("/confirmed") == 1
    });
    let confirmation = recorder.received("/confirmed")[0].event.clone().unwrap();
    assert_eq!(confirmation.id(), "confirmation");
    assert!(confirmation.extension("knativebrokerttl").is_none());

    assert_eq!(send(&broker, "loop", "echo"), 202);
    wait_until(
        "the loop was stopped and parked",
        Duration::from_secs(30),
        || {
            node.metric(
                "knactor_trigger_events_parked_total",
                "namespace=\"e2e\",broker=\"default\",trigger=\"echo\"",
            ) == 1.0
        },
    );
    assert_eq!(
        recorder.count("/echo"),
        255,
        "one delivery per hop of the TTL"
    );
    let list = String::from_utf8(node.cli(&["parked", "list", "e2e/default"]).stdout).unwrap();
    assert!(list.contains("trigger=e2e/echo"), "{list}");
}

#[test]
fn delivery_format_json_sends_structured_events() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "json",
            "filter: {}",
            &recorder.at("/json"),
            Some("{format: json}")
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    let response = send_with(
        &node.broker("e2e", "default"),
        "j1",
        "t",
        &[("content-type", "application/json")],
    );
    assert_eq!(response.status(), 202);
    wait_until("delivery", Duration::from_secs(10), || {
        recorder.count("/json") == 1
    });
    let received = &recorder.received("/json")[0];
    assert_eq!(
        received.headers["content-type"],
        "application/cloudevents+json"
    );
    let body: serde_json::Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(body["id"], "j1");
    assert_eq!(body["specversion"], "1.0");
}

#[test]
fn a_trigger_added_by_a_reload_re_drives_its_parked_events() {
    let recorder = Recorder::start();
    recorder.on("/late", |_, _| Reply::status(500));
    let base = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("first", "filter: {}", &recorder.at("/first"), None)
    );
    let node = NodeProcess::start(&base, &[]);
    // The trigger comes with a reload, after the broker started.
    node.write_config(&format!(
        "{base}{}",
        trigger_yaml(
            "late",
            "filter: {}",
            &recorder.at("/late"),
            Some("{retry: 0}")
        )
    ));
    wait_until("the new trigger runs", Duration::from_secs(10), || {
        node.status()["brokers"][0]["triggers"]
            .as_array()
            .is_some_and(|triggers| triggers.len() == 2)
    });
    assert_eq!(send(&node.broker("e2e", "default"), "r1", "t"), 202);
    wait_until(
        "parked for the new trigger",
        Duration::from_secs(10),
        || {
            node.metric(
                "knactor_trigger_events_parked_total",
                "namespace=\"e2e\",broker=\"default\",trigger=\"late\"",
            ) == 1.0
        },
    );
    recorder.on("/late", |_, _| Reply::accepted());
    let redrive = node.cli(&["parked", "redrive", "e2e/default", "--trigger", "late"]);
    let said = String::from_utf8(redrive.stdout).unwrap();
    assert!(said.contains("re-driven: 1"), "{said}");
    wait_until("re-delivered", Duration::from_secs(10), || {
        recorder.count("/late") == 2
    });
}

/// A subscriber that closes each connection once it has been idle for 300 ms, and events sent
/// with gaps around that time: each delivery finds the node's pooled connection alive, already
/// closed (not used again), or closing as it is used: the request goes again on a new connection,
/// whether it was written or not, since no answer came. Every accepted event arrives with no
/// retry at all. (Before the pool sent it again, 14 of the 40 failed this way and parked, with
/// hyper-util's client as with the pool: neither sent a written POST twice.)
#[test]
fn a_subscriber_closing_idle_connections_loses_no_event() {
    let recorder = Recorder::start_with_keep_alive(Duration::from_millis(300));
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "sink",
            "filter: {attributes: {type: k}}",
            &recorder.at("/sink"),
            Some("{retry: 0}")
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    let broker = node.broker("e2e", "default");
    const EVENTS: usize = 40;
    let gaps_ms = [200, 260, 290, 300, 310, 340, 400];
    let mut accepted = Vec::new();
    for n in 0..EVENTS {
        let id = format!("keep-alive-{n}");
        if send_with(&broker, &id, "k", &[]).status() == 202 {
            accepted.push(id);
        }
        std::thread::sleep(Duration::from_millis(gaps_ms[n % gaps_ms.len()]));
    }
    wait_until(
        "every accepted event delivered",
        Duration::from_secs(20),
        || {
            let ids = recorder.ids("/sink");
            accepted.iter().all(|id| ids.contains(id))
        },
    );
    let ids = recorder.ids("/sink");
    let lost = accepted.iter().filter(|id| !ids.contains(id)).count();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    println!(
        "a subscriber with a 300 ms keep-alive: accepted {}, delivered {}, lost {lost}, \
         duplicates {}",
        accepted.len(),
        unique.len(),
        ids.len() - unique.len()
    );
    assert_eq!(accepted.len(), EVENTS, "every event accepted");
    assert_eq!(lost, 0);
}
