//! What only the Kafka channel does, through the real binary against Apache Kafka (the broker this
//! test process shares): topics from Knative's ConfigMap keys and the class annotation, external
//! topics, topic deletion only when configured, size limits, per-partition order.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;

fn kafka_broker(name: &str, annotations: &str, config: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n  namespace: e2e\n  annotations:\n    eventing.knative.dev/broker.class: Kafka\n{annotations}spec:\n{config}"
    )
}

fn trigger_on(broker: &str, name: &str, subscriber: &str, annotations: &str) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\n  namespace: e2e\n{annotations}spec:\n  broker: {broker}\n  subscriber: {{uri: '{subscriber}'}}\n"
    )
}

#[test]
fn a_kafka_broker_takes_its_topic_settings_from_knatives_configmap() {
    let kafka = Kafka::shared();
    let recorder = Recorder::start();
    // The node itself has no Kafka: the ConfigMap names the cluster.
    let config = format!(
        "{}{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kafka-broker-config, namespace: knative-eventing}}\n\
         data:\n  bootstrap.servers: '{}'\n  default.topic.partitions: '3'\n  default.topic.replication.factor: '1'\n",
        kafka_broker(
            "orders",
            "",
            "  config: {apiVersion: v1, kind: ConfigMap, name: kafka-broker-config, namespace: knative-eventing}\n"
        ),
        trigger_on("orders", "all", &recorder.at("/all"), ""),
        kafka.bootstrap
    );
    let node = NodeProcess::start_on(&config, &[], Channel::Memory);
    node.wait_for_kafka_brokers();
    let status = node.status();
    assert_eq!(status["brokers"][0]["channel"], "kafka");
    assert_eq!(status["brokers"][0]["topic"], "knative-broker-e2e-orders");
    assert!(kafka
        .topics()
        .contains(&("knative-broker-e2e-orders".to_string(), 3)));
    assert_eq!(send(&node.broker("e2e", "orders"), "o1", "t"), 202);
    wait_until("delivery", Duration::from_secs(20), || {
        recorder.count("/all") == 1
    });
}

#[test]
fn a_kafka_broker_without_a_cluster_is_not_run_and_says_why() {
    let config = kafka_broker("orders", "", "  {}\n");
    let node = NodeProcess::start_on(&config, &[], Channel::Memory);
    wait_until("the reason is reported", Duration::from_secs(10), || {
        node.status()["notRunning"]
            .as_array()
            .unwrap()
            .iter()
            .any(|issue| {
                issue["message"]
                    .as_str()
                    .unwrap()
                    .contains("--kafka-bootstrap")
            })
    });
    let response = send_with(&node.broker("e2e", "orders"), "x", "t", &[]);
    assert_eq!(response.status(), 503, "the broker exists but does not run");
}

#[test]
fn an_external_topic_is_used_as_it_is() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        kafka_broker(
            "external",
            "    kafka.eventing.knative.dev/external.topic: existing-orders\n",
            "  {}\n"
        ),
        trigger_on("external", "all", &recorder.at("/all"), "")
    );
    let kafka = Kafka::shared();
    kafka.create_topic("existing-orders", 2);
    let node = NodeProcess::start_on(
        &config,
        &["--kafka-bootstrap", &kafka.bootstrap],
        Channel::Memory,
    );
    node.wait_for_kafka_brokers();
    assert_eq!(node.status()["brokers"][0]["topic"], "existing-orders");
    assert_eq!(send(&node.broker("e2e", "external"), "x1", "t"), 202);
    wait_until("delivery", Duration::from_secs(20), || {
        recorder.count("/all") == 1
    });
    let topics = kafka.topics();
    assert!(
        topics.contains(&("existing-orders".to_string(), 2)),
        "{topics:?}"
    );
    assert!(
        !topics
            .iter()
            .any(|(name, _)| name == "knative-broker-e2e-external"),
        "no topic of its own: {topics:?}"
    );

    // An external topic that does not exist is never created.
    let missing = kafka_broker(
        "missing",
        "    kafka.eventing.knative.dev/external.topic: no-such-topic\n",
        "  {}\n",
    );
    node.write_config(&format!("{config}---\n{missing}"));
    wait_until(
        "the missing topic is reported",
        Duration::from_secs(20),
        || {
            node.status()["notRunning"]
                .as_array()
                .unwrap()
                .iter()
                .any(|issue| {
                    issue["message"]
                        .as_str()
                        .unwrap()
                        .contains("does not exist")
                })
        },
    );
    assert!(!kafka
        .topics()
        .iter()
        .any(|(name, _)| name == "no-such-topic"));
}

#[test]
fn a_deleted_brokers_topics_are_deleted_only_when_configured() {
    let recorder = Recorder::start();
    let keep = format!(
        "{}{}",
        kafka_broker("kept", "", "  {}\n"),
        trigger_on("kept", "all", &recorder.at("/kept"), "")
    );
    // Knative's topic names on the shared broker (no other test here has brokers kept or gone).
    let kafka = Kafka::shared();
    let node = NodeProcess::start_with_kafka(&keep, &[], kafka.clone());
    assert!(kafka
        .topics()
        .iter()
        .any(|(name, _)| name == "knative-broker-e2e-kept"));
    node.write_config("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nothing}\ndata: {}\n");
    wait_until("the broker is gone", Duration::from_secs(10), || {
        node.status()["brokers"].as_array().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        kafka
            .topics()
            .iter()
            .any(|(name, _)| name == "knative-broker-e2e-kept"),
        "kept without --kafka-delete-topics"
    );
    drop(node);

    let deleting = NodeProcess::start_with_kafka(
        &format!(
            "{}{}",
            kafka_broker("gone", "", "  {}\n"),
            trigger_on("gone", "all", &recorder.at("/gone"), "")
        ),
        &["--kafka-delete-topics"],
        kafka.clone(),
    );
    let topics = kafka.topics();
    assert!(
        topics
            .iter()
            .any(|(name, _)| name == "knative-broker-e2e-gone"),
        "{topics:?}"
    );
    assert!(
        topics
            .iter()
            .any(|(name, _)| name == "knative-broker-e2e-gone-parked"),
        "{topics:?}"
    );
    deleting.write_config("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nothing}\ndata: {}\n");
    // The broker acknowledged deleting both topics...
    wait_until("both topics are deleted", Duration::from_secs(20), || {
        let log = deleting.log();
        ["knative-broker-e2e-gone", "knative-broker-e2e-gone-parked"]
            .iter()
            .all(|topic| log.contains(&format!("topic deleted topic={topic}\n")))
    });
    // ...and they are gone, while the other broker's topic stays.
    wait_until(
        "Kafka no longer lists them",
        Duration::from_secs(20),
        || {
            !kafka
                .topics()
                .iter()
                .any(|(name, _)| name.starts_with("knative-broker-e2e-gone"))
        },
    );
    let topics = kafka.topics();
    assert!(
        topics
            .iter()
            .any(|(name, _)| name == "knative-broker-e2e-kept"),
        "{topics:?}"
    );
}

#[test]
fn an_event_larger_than_kafka_takes_gets_413() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        kafka_broker("big", "", "  {}\n"),
        trigger_on("big", "all", &recorder.at("/all"), "")
    );
    // librdkafka's message.max.bytes is 1,000,000 by default; the ingress allows 4 MiB.
    let node = NodeProcess::start_on(&config, &[], Channel::Kafka);
    let response = http()
        .post(node.broker("e2e", "big"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "huge")
        .header("ce-source", "/s")
        .header("ce-type", "t")
        .body(vec![b'x'; 2_000_000])
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(response
        .text()
        .unwrap()
        .contains("too large for broker e2e/big's channel"));
    assert_eq!(send(&node.broker("e2e", "big"), "small", "t"), 202);
}

#[test]
fn an_ordered_trigger_keeps_the_order_of_each_partition_key() {
    let recorder = Recorder::start();
    recorder.on("/ordered", |request, _| {
        // Slow down one key's odd events: an unordered trigger would overtake them.
        let slow = request
            .headers
            .get("ce-seq")
            .is_some_and(|seq| seq.parse::<u32>().unwrap() % 2 == 1);
        Reply::accepted().after(Duration::from_millis(if slow { 30 } else { 1 }))
    });
    let config = format!(
        "{}{}",
        kafka_broker("orders", "", "  {}\n"),
        trigger_on(
            "orders",
            "ordered",
            &recorder.at("/ordered"),
            "  annotations: {kafka.eventing.knative.dev/delivery.order: ordered}\n"
        )
    );
    let node = NodeProcess::start_on(&config, &["--kafka-partitions", "4"], Channel::Kafka);
    let broker = node.broker("e2e", "orders");
    for seq in 0..20u32 {
        for key in ["alice", "bob", "carol"] {
            let response = send_with(
                &broker,
                &format!("{key}-{seq}"),
                "t",
                &[("ce-partitionkey", key), ("ce-seq", &seq.to_string())],
            );
            assert_eq!(response.status(), 202);
        }
    }
    wait_until("60 deliveries", Duration::from_secs(30), || {
        recorder.count("/ordered") == 60
    });
    for key in ["alice", "bob", "carol"] {
        let order: Vec<u32> = recorder
            .ids("/ordered")
            .iter()
            .filter_map(|id| {
                id.strip_prefix(&format!("{key}-"))
                    .map(|n| n.parse().unwrap())
            })
            .collect();
        assert_eq!(order, (0..20).collect::<Vec<_>>(), "{key}");
    }
}

/// A new broker's topics are there when the node is ready, and the broker runs at its first start
/// (README: `/readyz` answers 200 once every broker runs).
#[test]
fn a_new_kafka_broker_runs_at_its_first_start() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        kafka_broker("fresh", "", "  {}\n"),
        trigger_on("fresh", "all", &recorder.at("/all"), "")
    );
    let node = NodeProcess::start_on(&config, &[], Channel::Kafka);
    let log = node.log();
    assert!(
        !log.contains("cannot create the broker's topics"),
        "the first start failed:\n{log}"
    );
}
