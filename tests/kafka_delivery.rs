//! 202 means delivered, on Apache Kafka, where the first wave lost events: a backlog far larger
//! than a trigger's queue, a rebalance while a trigger is behind, a slow subscriber beside a fast
//! one, and Kafka itself going away. Each test prints its counts (accepted, delivered,
//! duplicates, lost) and fails on one lost event.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use knactor_testkit::{wait_for_delivery, Kafka, Load, Tally};
use support::*;

/// A Kafka broker `e2e/default` with Knative's class annotation.
fn kafka_broker() -> String {
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n  namespace: e2e\n  annotations:\n    eventing.knative.dev/broker.class: Kafka\nspec: {}\n".to_string()
}

/// Flags of a node on `kafka`, with topics of this test's own.
fn on_kafka(kafka: &Kafka, test: &str, extra: &[&str]) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--channel",
        "kafka",
        "--kafka-bootstrap",
        &kafka.bootstrap,
        "--kafka-topic-template",
        &format!(
            "{test}-{}-{{{{.Namespace}}}}-{{{{.Name}}}}",
            std::process::id()
        ),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    flags.extend(extra.iter().map(ToString::to_string));
    flags
}

fn start(config: &str, flags: &[String]) -> NodeProcess {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    NodeProcess::start_on(config, &flags, Channel::Memory)
}

/// Sends `count` events (ids `<prefix>-...`) as fast as the node takes them; their ids.
fn send_many(broker: &str, count: usize, prefix: &str) -> Vec<String> {
    let load = Load::start(&[broker.to_string()], 5_000, 8, prefix, "t");
    let deadline = Instant::now() + Duration::from_secs(120);
    while load.accepted() < count {
        assert!(Instant::now() < deadline, "the node took too few events");
        std::thread::sleep(Duration::from_millis(5));
    }
    load.stop().accepted
}

fn partitions_of(node: &NodeProcess) -> Vec<i64> {
    node.status()["brokers"][0]["partitions"]
        .as_array()
        .map(|partitions| {
            partitions
                .iter()
                .filter_map(|p| p["partition"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_backlog_far_larger_than_the_trigger_queue_is_delivered_whole() {
    const QUEUE: usize = 100;
    const EVENTS: usize = 30 * QUEUE;
    let kafka = Kafka::shared();
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        kafka_broker(),
        trigger_yaml("sink", "filter: {}", &recorder.at("/sink"), None)
    );
    let queue = QUEUE.to_string();
    // The events wait in the topic while no node dispatches: a backlog of 30 queues.
    let ingress = start(
        &config,
        &on_kafka(&kafka, "backlog", &["--role", "ingress"]),
    );
    let accepted = send_many(&ingress.broker("e2e", "default"), EVENTS, "backlog");
    assert_eq!(recorder.count("/sink"), 0, "an ingress node delivered");

    let dispatch = start(
        &config,
        &on_kafka(
            &kafka,
            "backlog",
            &["--role", "dispatch", "--trigger-queue", &queue],
        ),
    );
    let tally = wait_for_delivery(
        &accepted,
        || recorder.ids("/sink"),
        Duration::from_secs(180),
    );
    println!("{}", tally.line("backlog of 30 trigger queues"));
    let log = dispatch.log();
    assert!(
        log.contains("falls behind"),
        "the trigger never fell behind, so this test proved nothing:\n{log}"
    );
    assert!(tally.lost.is_empty(), "{}", tally.line("lost events"));
    // Everything delivered is committed: the partitions' lag goes to 0.
    wait_until(
        "the lag is 0 on every partition",
        Duration::from_secs(30),
        || {
            let status = dispatch.status();
            let partitions = status["brokers"][0]["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            !partitions.is_empty() && partitions.iter().all(|p| p["lag"] == 0)
        },
    );
}

#[test]
fn a_rebalance_while_a_trigger_is_behind_loses_nothing() {
    let kafka = Kafka::shared();
    let (recorder, triggers) = slow_and_fast_triggers(Duration::from_millis(20));
    let config = format!("{}{triggers}", kafka_broker());
    let node = |id: &str| {
        start(
            &config,
            &on_kafka(
                &kafka,
                "rebalance",
                &[
                    "--node-id",
                    id,
                    "--kafka-partitions",
                    "4",
                    "--trigger-queue",
                    "20",
                    "--trigger-concurrency",
                    "4",
                ],
            ),
        )
    };
    let mut first = node("first");
    wait_until(
        "the first node holds every partition",
        Duration::from_secs(60),
        || partitions_of(&first).len() == 4,
    );
    let accepted = send_many(&first.broker("e2e", "default"), 2_000, "rebalance");
    wait_until(
        "the slow trigger is behind",
        Duration::from_secs(30),
        || {
            first.status()["brokers"][0]["triggerProgress"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["name"] == "e2e/slow" && t["behind"].as_u64().unwrap_or(0) > 0)
        },
    );
    // A second member joins while the slow trigger lags: partitions move to it mid-way.
    let second = node("second");
    wait_until("the partitions are shared", Duration::from_secs(60), || {
        let (a, b) = (partitions_of(&first), partitions_of(&second));
        !a.is_empty() && !b.is_empty() && a.len() + b.len() == 4
    });
    let moved = partitions_of(&second);
    // And the first leaves (SIGTERM: it drains): the second takes everything.
    first.terminate();
    let slow = wait_for_delivery(
        &accepted,
        || recorder.ids("/slow"),
        Duration::from_secs(240),
    );
    let fast = wait_for_delivery(&accepted, || recorder.ids("/fast"), Duration::from_secs(60));
    println!(
        "rebalance while behind (partitions {moved:?} moved to the new member):\n  {}\n  {}",
        slow.line("slow trigger"),
        fast.line("fast trigger")
    );
    let logs = || {
        let interesting = |log: String| -> String {
            log.lines()
                .filter(|line| !line.contains(" DEBUG "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            "first node:\n{}\nsecond node:\n{}",
            interesting(first.log()),
            interesting(second.log())
        )
    };
    assert!(
        slow.lost.is_empty(),
        "{}\n{}",
        slow.line("slow trigger"),
        logs()
    );
    assert!(
        fast.lost.is_empty(),
        "{}\n{}",
        fast.line("fast trigger"),
        logs()
    );
    drop(second);
}

#[test]
fn a_slow_subscriber_does_not_hold_back_a_fast_one() {
    const EVENTS: usize = 600;
    let kafka = Kafka::shared();
    let (recorder, triggers) = slow_and_fast_triggers(Duration::from_millis(50));
    let config = format!("{}{triggers}", kafka_broker());
    let node = start(
        &config,
        &on_kafka(
            &kafka,
            "slowfast",
            &["--trigger-queue", "50", "--trigger-concurrency", "2"],
        ),
    );
    let accepted = send_many(&node.broker("e2e", "default"), EVENTS, "slowfast");
    let fast = wait_for_delivery(&accepted, || recorder.ids("/fast"), Duration::from_secs(60));
    let slow_when_fast_done = Tally::of(&accepted, &recorder.ids("/slow")).delivered;
    println!(
        "{}; the slow trigger had {slow_when_fast_done} by then",
        fast.line("fast trigger")
    );
    assert!(fast.lost.is_empty(), "{}", fast.line("fast trigger"));
    assert!(
        slow_when_fast_done < EVENTS / 2,
        "the slow subscriber was not slow enough to show anything ({slow_when_fast_done} of {EVENTS})"
    );
    let slow = wait_for_delivery(
        &accepted,
        || recorder.ids("/slow"),
        Duration::from_secs(120),
    );
    println!("{}", slow.line("slow trigger"));
    assert!(slow.lost.is_empty(), "{}", slow.line("slow trigger"));
}

#[test]
fn kafka_going_away_gets_503_with_retry_after_and_loses_nothing_accepted() {
    let kafka = Kafka::start();
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        kafka_broker(),
        trigger_yaml("sink", "filter: {}", &recorder.at("/sink"), None)
    );
    let node = start(
        &config,
        &on_kafka(&kafka, "outage", &["--kafka-append-timeout", "3s"]),
    );
    let broker = node.broker("e2e", "default");
    let load = Load::start(std::slice::from_ref(&broker), 200, 4, "outage", "t");
    std::thread::sleep(Duration::from_secs(3));
    kafka.stop();
    wait_until(
        "the node says its channel does not store",
        Duration::from_secs(60),
        || node.status()["brokers"][0]["storing"] == false,
    );
    let status = String::from_utf8(node.cli(&["status"]).stdout).unwrap();
    assert!(status.contains("storing=no"), "{status}");
    wait_until("the gauge says so too", Duration::from_secs(10), || {
        node.metric(
            "knactor_broker_channel_storing",
            "namespace=\"e2e\",broker=\"default\"",
        ) == 0.0
    });
    kafka.restart();
    wait_until(
        "the node stores again by itself",
        Duration::from_secs(90),
        || node.status()["brokers"][0]["storing"] == true,
    );
    std::thread::sleep(Duration::from_secs(3));
    let sent = load.stop();
    let tally = wait_for_delivery(
        &sent.accepted,
        || recorder.ids("/sink"),
        Duration::from_secs(120),
    );
    println!(
        "{}; refused while Kafka was away: {:?}",
        tally.line("Kafka outage"),
        sent.refused
    );
    assert!(
        sent.refused.get(&503).copied().unwrap_or(0) > 0,
        "no 503 while Kafka was away"
    );
    assert_eq!(
        sent.unavailable_without_retry_after, 0,
        "a 503 without Retry-After"
    );
    assert!(tally.lost.is_empty(), "{}", tally.line("lost events"));
}
