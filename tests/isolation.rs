//! A dead subscriber beside a healthy one: the healthy trigger gets every event the broker
//! accepted while its neighbour's events wait, retry and park; when the memory channel's budget is
//! spent the ingress refuses new events with a reason (503 with Retry-After), and nothing accepted
//! is dropped.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use knactor_testkit::{wait_for_delivery, Load};
use support::*;

/// A port nothing listens on: connections are refused.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/dead")
}

fn config(recorder: &Recorder, dead: &str) -> String {
    format!(
        "{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "dead",
            "filter: {}",
            dead,
            Some("{retry: 2, backoffPolicy: linear, backoffDelay: PT0.5S}")
        ),
        trigger_yaml("healthy", "filter: {}", &recorder.at("/healthy"), None),
    )
}

#[test]
fn a_dead_subscriber_never_holds_back_its_healthy_neighbour() {
    let recorder = Recorder::start();
    let node = NodeProcess::start_on(
        &config(&recorder, &dead_url()),
        // Slots enough for the dead trigger's retries to park everything within seconds.
        &[
            "--trigger-concurrency",
            "500",
            "--endpoint-concurrency",
            "1000",
        ],
        Channel::Memory,
    );
    let load = Load::start(&[node.broker("e2e", "default")], 400, 4, "iso", "t");
    std::thread::sleep(Duration::from_secs(5));
    let sent = load.stop();
    let healthy = wait_for_delivery(
        &sent.accepted,
        || recorder.ids("/healthy"),
        Duration::from_secs(30),
    );
    let status = node.status();
    let dead = status["brokers"][0]["triggerProgress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "e2e/dead")
        .cloned()
        .unwrap();
    println!(
        "{}; refused {:?}; the dead trigger: {dead}",
        healthy.line("healthy trigger beside a dead one"),
        sent.refused
    );
    assert!(
        healthy.lost.is_empty(),
        "{}",
        healthy.line("healthy trigger")
    );
    assert!(
        sent.refused.is_empty(),
        "events were refused: {:?}",
        sent.refused
    );
    // The dead trigger's events are parked once their retries are spent, all of them in the end.
    let parked = || {
        node.metric(
            "knactor_trigger_events_parked_total",
            "namespace=\"e2e\",broker=\"default\",trigger=\"dead\"",
        ) as usize
    };
    wait_until(
        "every event of the dead trigger is parked",
        Duration::from_secs(60),
        || parked() == sent.accepted.len(),
    );
}

#[test]
fn a_full_memory_channel_refuses_with_a_reason_and_drops_nothing_accepted() {
    let recorder = Recorder::start();
    let node = NodeProcess::start_on(
        &config(&recorder, &dead_url()),
        // Room for a few hundred small events.
        &["--memory-max-bytes", "300000"],
        Channel::Memory,
    );
    let broker = node.broker("e2e", "default");
    let mut accepted = Vec::new();
    let mut refusal = None;
    for n in 0..5_000 {
        let id = format!("full-{n}");
        let response = send_with(&broker, &id, "t", &[]);
        match response.status().as_u16() {
            202 => accepted.push(id),
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                refusal = Some(response.text().unwrap());
                break;
            }
            other => panic!("unexpected {other}: {}", response.text().unwrap()),
        }
    }
    let refusal = refusal.expect("the channel never filled");
    println!("refused after {} events: {refusal}", accepted.len());
    assert!(refusal.contains("--memory-max-bytes"), "{refusal}");
    let healthy = wait_for_delivery(
        &accepted,
        || recorder.ids("/healthy"),
        Duration::from_secs(30),
    );
    println!("{}", healthy.line("healthy trigger"));
    assert!(
        healthy.lost.is_empty(),
        "{}",
        healthy.line("healthy trigger")
    );
}

#[test]
fn a_batch_is_stored_whole_or_not_at_all() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("sink", "filter: {}", &recorder.at("/sink"), None)
    );
    let node = NodeProcess::start_on(&config, &["--memory-max-records", "1000"], Channel::Memory);
    let batch = |count: usize, prefix: &str| {
        let events: Vec<serde_json::Value> = (0..count)
            .map(|n| {
                serde_json::json!({"specversion": "1.0", "id": format!("{prefix}-{n}"), "source": "/batch", "type": "t"})
            })
            .collect();
        http()
            .post(node.broker("e2e", "default"))
            .header("content-type", "application/cloudevents-batch+json")
            .body(serde_json::to_string(&events).unwrap())
            .send()
            .unwrap()
    };
    // More than the channel ever holds: 413, nothing stored.
    let too_big = batch(5_000, "big");
    assert_eq!(too_big.status(), 413);
    let reason = too_big.text().unwrap();
    println!("a batch of 5,000 into room for 1,000: 413 {reason}");
    assert!(
        reason.contains("5000 events") && reason.contains("--memory-max-records"),
        "{reason}"
    );
    assert_eq!(batch(10, "small").status(), 202);
    wait_until("the small batch arrives", Duration::from_secs(10), || {
        recorder.count("/sink") == 10
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        recorder
            .ids("/sink")
            .iter()
            .all(|id| id.starts_with("small-")),
        "part of the refused batch was delivered"
    );
}
