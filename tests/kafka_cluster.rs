//! Actors supervised across nodes: three knactor nodes in the default group assignment, with
//! stable `--node-id`s, on a three-broker Apache Kafka cluster (replication 3,
//! `min.insync.replicas` 2), one broker of 10 partitions and two triggers, under a steady load of
//! events with unique ids. One node is killed mid-stream and restarted, all three are restarted
//! one at a time, and a Kafka broker is killed; every accepted event reaches both triggers, and
//! the test prints its counts.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use knactor_testkit::{wait_for_delivery, Kafka, Load};
use support::*;

const PARTITIONS: usize = 10;
/// Events per second, in all.
const RATE: u32 = 200;

fn config(recorder: &Recorder) -> String {
    let delivery = Some("{retry: 5, backoffPolicy: exponential, backoffDelay: PT0.2S}");
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n  namespace: e2e\n  annotations:\n    eventing.knative.dev/broker.class: Kafka\nspec: {{}}\n{}{}",
        trigger_yaml("a", "filter: {}", &recorder.at("/a"), delivery),
        trigger_yaml("b", "filter: {}", &recorder.at("/b"), delivery),
    )
}

fn partitions_of(node: &NodeProcess) -> BTreeSet<i64> {
    let Ok(response) = http().get(format!("{}/-/status", node.url)).send() else {
        return BTreeSet::new();
    };
    let status: serde_json::Value = response.json().unwrap_or_default();
    status["brokers"][0]["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["partition"].as_i64())
        .collect()
}

/// Waits until the live nodes hold every partition between them, each some and none twice; how
/// long it took.
fn wait_for_spread(nodes: &[&NodeProcess], what: &str, limit: Duration) -> Duration {
    let began = Instant::now();
    wait_until(what, limit, || {
        let held: Vec<BTreeSet<i64>> = nodes.iter().map(|node| partitions_of(node)).collect();
        let total: usize = held.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i64> = held.iter().flatten().copied().collect();
        held.iter().all(|h| !h.is_empty() && h.len() < PARTITIONS)
            && total == PARTITIONS
            && union.len() == PARTITIONS
    });
    began.elapsed()
}

/// Where each phase of the test began, as the number of deliveries each trigger had received then:
/// a duplicate is counted in the phase its second arrival fell in, so a reader sees which event
/// (a SIGKILL, a rolling restart, a lost Kafka broker) delivered again.
struct Phases<'a> {
    recorder: &'a Recorder,
    began: Vec<(&'static str, usize, usize)>,
}

impl<'a> Phases<'a> {
    fn new(recorder: &'a Recorder) -> Self {
        Phases {
            recorder,
            began: Vec::new(),
        }
    }

    fn begin(&mut self, name: &'static str) {
        let (a, b) = (self.recorder.count("/a"), self.recorder.count("/b"));
        self.began.push((name, a, b));
    }

    /// For each phase, the duplicates trigger a and trigger b received in it.
    fn duplicates(&self) -> Vec<(&'static str, usize, usize)> {
        let by_arrival = |path: &str| {
            let mut seen = HashSet::new();
            self.recorder
                .ids(path)
                .into_iter()
                .map(|id| !seen.insert(id))
                .collect::<Vec<bool>>()
        };
        let (a, b) = (by_arrival("/a"), by_arrival("/b"));
        let count = |again: &[bool], from: usize, to: usize| {
            again[from.min(again.len())..to.min(again.len())]
                .iter()
                .filter(|&&again| again)
                .count()
        };
        self.began
            .iter()
            .enumerate()
            .map(|(i, &(name, from_a, from_b))| {
                let (to_a, to_b) = self
                    .began
                    .get(i + 1)
                    .map_or((a.len(), b.len()), |&(_, a, b)| (a, b));
                (name, count(&a, from_a, to_a), count(&b, from_b, to_b))
            })
            .collect()
    }
}

#[test]
fn three_nodes_lose_nothing_through_a_crash_restarts_and_a_kafka_broker_loss() {
    let kafka = Kafka::cluster(3);
    let recorder = Recorder::start();
    let config = config(&recorder);
    let node = |id: &str| {
        NodeProcess::start_on(
            &config,
            &[
                "--kafka-bootstrap",
                &kafka.bootstrap,
                "--node-id",
                id,
                "--kafka-partitions",
                &PARTITIONS.to_string(),
                "--kafka-replication-factor",
                "3",
                "--drain-timeout",
                "20s",
            ],
            Channel::Memory,
        )
    };
    let mut nodes = [node("node-1"), node("node-2"), node("node-3")];
    let spread = wait_for_spread(
        &nodes.iter().collect::<Vec<_>>(),
        "the partitions spread over the three nodes",
        Duration::from_secs(90),
    );
    for node in &nodes {
        println!("{}: partitions {:?}", node.url, partitions_of(node));
    }
    let status = String::from_utf8(nodes[0].cli(&["status"]).stdout).unwrap();
    assert!(status.contains("partitions read here:"), "{status}");
    println!("spread in {spread:?}");

    let targets: Vec<String> = nodes.iter().map(|n| n.broker("e2e", "default")).collect();
    let mut phases = Phases::new(&recorder);
    phases.begin("steady load");
    let load = Load::start(&targets, RATE, 6, "cluster", "t");
    std::thread::sleep(Duration::from_secs(5));

    // SIGKILL one node mid-stream: its partitions go to the others once its session times out.
    phases.begin("SIGKILL of node-2, its partitions move");
    nodes[1].kill();
    let resumed = wait_for_spread(
        &[&nodes[0], &nodes[2]],
        "the killed node's partitions resume on the others",
        Duration::from_secs(60),
    );
    println!("after SIGKILL of node-2, its partitions resumed on the others in {resumed:?}");
    std::thread::sleep(Duration::from_secs(3));

    // It comes back under the same id and takes partitions back.
    phases.begin("node-2 restarted, takes partitions back");
    nodes[1].restart();
    let back = wait_for_spread(
        &nodes.iter().collect::<Vec<_>>(),
        "the restarted node takes partitions back",
        Duration::from_secs(60),
    );
    println!("node-2 took partitions back in {back:?}");
    std::thread::sleep(Duration::from_secs(3));

    // A rolling restart of all three, one at a time (SIGTERM: each drains).
    phases.begin("rolling restart (SIGTERM)");
    for i in 0..nodes.len() {
        nodes[i].terminate();
        nodes[i].restart();
        wait_for_spread(
            &nodes.iter().collect::<Vec<_>>(),
            "the restarted node holds partitions again",
            Duration::from_secs(60),
        );
    }
    println!("rolling restart done");

    // A Kafka broker dies: replication keeps every accepted event, the cluster goes on.
    phases.begin("Kafka broker 2 killed and restarted");
    kafka.kill_broker(2);
    std::thread::sleep(Duration::from_secs(10));
    kafka.restart_broker(2);
    std::thread::sleep(Duration::from_secs(5));

    let sent = load.stop();
    phases.begin("load stopped, the rest delivered");
    let a = wait_for_delivery(
        &sent.accepted,
        || recorder.ids("/a"),
        Duration::from_secs(180),
    );
    let b = wait_for_delivery(
        &sent.accepted,
        || recorder.ids("/b"),
        Duration::from_secs(60),
    );
    println!(
        "three nodes, three Kafka brokers, {RATE} events/s: refused {:?} (503 without Retry-After: {}), longest wait for a 202 {:?}\n  {}\n  {}",
        sent.refused,
        sent.unavailable_without_retry_after,
        sent.longest_to_accept,
        a.line("trigger a"),
        b.line("trigger b"),
    );
    for (phase, a, b) in phases.duplicates() {
        println!("  duplicates during {phase}: trigger a {a}, trigger b {b}");
    }
    assert!(a.lost.is_empty(), "{}", a.line("trigger a"));
    assert!(b.lost.is_empty(), "{}", b.line("trigger b"));
    assert_eq!(
        sent.unavailable_without_retry_after, 0,
        "a 503 without Retry-After"
    );
    // At least once: a SIGKILL delivers again what the killed node delivered since its last
    // commit (and a partition handed back on its restart what was in flight). On a quiet machine
    // that is all: 6 + 3 of 7,609 per trigger (0.12 %), none in the rolling restart (SIGTERM
    // drains and commits) or the Kafka broker loss (phases printed above). On a loaded machine
    // deliveries take longer and the window grows (56 of 5,128, 1.1 %, with load 10 on two
    // cores). 3 % leaves room for a loaded CI machine and is far below a partition read again
    // from its start (the bug this guards against delivered 883 of 3,000 twice).
    for tally in [&a, &b] {
        assert!(
            tally.duplicate_percent() <= 3.0,
            "more than 3 % duplicates: {}",
            tally.line("")
        );
    }
}
