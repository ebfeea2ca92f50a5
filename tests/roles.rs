//! Split roles, as the chart's `roles.split` runs them: a `--role ingress` node takes events in
//! and appends them to the broker's topic, a `--role dispatch` node reads the topic and delivers,
//! both on one Apache Kafka broker.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::thread;
use std::time::Duration;

use support::*;

fn memory_broker(name: &str) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n  namespace: e2e\n  annotations:\n    eventing.knative.dev/broker.class: MTChannelBasedBroker\nspec: {{}}\n"
    )
}

#[test]
fn an_ingress_node_takes_events_in_and_a_dispatch_node_delivers_them() {
    let kafka = Kafka::shared();
    let recorder = Recorder::start();
    recorder.on("/orders", |_, _| {
        Reply::event("confirmation-1", "order.confirmed")
    });
    let kafka_only = format!(
        "{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "orders",
            "filter: {attributes: {type: order.created}}",
            &recorder.at("/orders"),
            None
        ),
        trigger_yaml(
            "confirmations",
            "filter: {attributes: {type: order.confirmed}}",
            &recorder.at("/confirmations"),
            None
        ),
    );
    let config = format!("{kafka_only}{}", memory_broker("local"));
    // The dispatch node reads the topic in its consumer group, as by default.
    let on_kafka = |role: &'static str| {
        [
            "--channel",
            "kafka",
            "--kafka-bootstrap",
            kafka.bootstrap.as_str(),
            "--role",
            role,
        ]
    };
    let ingress = NodeProcess::start_on(&config, &on_kafka("ingress"), Channel::Memory);
    let mut dispatch = NodeProcess::start_on(&config, &on_kafka("dispatch"), Channel::Memory);
    ingress.wait_for_kafka_brokers();
    dispatch.wait_for_kafka_brokers();
    assert_eq!(ingress.status()["role"], "ingress");
    assert_eq!(dispatch.status()["role"], "dispatch");
    let status = String::from_utf8(dispatch.cli(&["status"]).stdout).unwrap();
    assert!(status.starts_with("role: dispatch\n"), "{status}");

    // The dispatch node takes no events, and says where they go.
    let refused = send_with(
        &dispatch.broker("e2e", "default"),
        "misdirected",
        "order.created",
        &[],
    );
    assert_eq!(refused.status(), 421);
    let reason = refused.text().unwrap();
    assert!(reason.contains("--role dispatch"), "{reason}");

    // In at the ingress, delivered by the dispatch node; the subscriber's reply goes back into
    // the broker through the dispatch node and reaches the other trigger.
    assert_eq!(
        send(&ingress.broker("e2e", "default"), "o1", "order.created"),
        202
    );
    wait_until(
        "the event and its reply are delivered",
        Duration::from_secs(30),
        || recorder.count("/orders") == 1 && recorder.count("/confirmations") == 1,
    );
    assert_eq!(recorder.ids("/confirmations"), ["confirmation-1"]);

    // The ingress node delivers nothing itself: with the dispatch node down, what it accepts
    // waits in the topic, and is delivered once a dispatch node is back.
    dispatch.terminate();
    for id in ["o2", "o3", "o4"] {
        assert_eq!(
            send(&ingress.broker("e2e", "default"), id, "order.created"),
            202
        );
    }
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        recorder.count("/orders"),
        1,
        "the ingress node delivered events"
    );
    dispatch.restart();
    wait_until(
        "the waiting events are delivered",
        Duration::from_secs(30),
        || recorder.count("/orders") == 4,
    );
    let mut ids = recorder.ids("/orders");
    ids.sort();
    assert_eq!(ids, ["o1", "o2", "o3", "o4"]);

    // A broker on the memory channel cannot be split over two processes: not run, and why.
    let response = send_with(&ingress.broker("e2e", "local"), "m1", "order.created", &[]);
    assert_eq!(response.status(), 503);
    let issues = ingress.status()["notRunning"].clone();
    let issue = issues
        .as_array()
        .unwrap()
        .iter()
        .find(|issue| issue["name"] == "local")
        .unwrap_or_else(|| panic!("local is not reported: {issues}"));
    assert!(
        issue["message"].as_str().unwrap().contains("--role all"),
        "{issue}"
    );
    // Once the broker is deleted, so is the reason it did not run.
    ingress.write_config(&kafka_only);
    wait_until(
        "the deleted broker is no longer reported",
        Duration::from_secs(30),
        || {
            !ingress.status()["notRunning"]
                .as_array()
                .unwrap()
                .iter()
                .any(|issue| issue["name"] == "local")
        },
    );
}

#[test]
fn a_split_role_on_the_memory_channel_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, broker_yaml("{}")).unwrap();
    for role in ["ingress", "dispatch"] {
        let output = Command::new(BIN)
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .args(["--role", role])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{role}: {stderr}");
        assert!(
            stderr.contains(&format!("--role {role}")) && stderr.contains("--channel kafka"),
            "{role}: {stderr}"
        );
    }
    let output = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--role", "both"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("expected one of all, ingress, dispatch"),
        "{stderr}"
    );
}
