//! The testkit's Apache Kafka does what the suites rely on: a three-broker cluster takes acks=all
//! writes with a broker down, a stopped broker comes back with its topics, and no JVM outlives
//! the `Kafka` or the process that owns it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use knactor_testkit::{repo_path, wait_until, Kafka};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn produce(kafka: &Kafka, topic: &str, values: std::ops::Range<u32>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    for value in values {
        let payload = value.to_string();
        let key = format!("k{value}");
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        let delivery = producer.send_result(record).map_err(|(error, _)| error);
        let delivered = futures::executor::block_on(delivery.unwrap())
            .unwrap()
            .unwrap_or_else(|(error, _)| panic!("record {value} not acknowledged: {error}"));
        assert!(delivered.partition >= 0);
    }
}

/// Every value in the topic, read from the beginning of each of its partitions.
fn read_all(kafka: &Kafka, topic: &str, partitions: i32, expected: usize) -> Vec<u32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", "testkit-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut values = Vec::new();
    wait_until(
        &format!("{expected} records are read back"),
        Duration::from_secs(60),
        || {
            // Errors are transient here (a killed broker's connection): the client carries on.
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                let text = std::str::from_utf8(message.payload().unwrap()).unwrap();
                values.push(text.parse().unwrap());
            }
            values.len() >= expected
        },
    );
    values.sort_unstable();
    values
}

fn replicas(kafka: &Kafka, topic: &str) -> Vec<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap();
    metadata
        .topics()
        .iter()
        .flat_map(|topic| topic.partitions())
        .map(|partition| partition.replicas().len())
        .collect()
}

fn running(pid_file: &Path) -> bool {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|pid| std::fs::read(format!("/proc/{}/cmdline", pid.trim())).ok())
        .is_some_and(|cmdline| !cmdline.is_empty())
}

#[test]
fn a_three_broker_cluster_takes_acks_all_writes_with_a_broker_down() {
    let kafka = Kafka::cluster(3);
    assert_eq!(kafka.bootstrap.split(',').count(), 3);
    kafka.create_topic("replicated", 3);
    wait_until(
        "three replicas of each partition",
        Duration::from_secs(30),
        || replicas(&kafka, "replicated") == [3, 3, 3],
    );
    produce(&kafka, "replicated", 0..10);

    // Two in-sync replicas of three are enough for acks=all (min.insync.replicas=2).
    kafka.kill_broker(2);
    assert!(!running(&kafka.dir().join("broker-2.pid")));
    produce(&kafka, "replicated", 10..20);
    assert_eq!(
        read_all(&kafka, "replicated", 3, 20),
        (0..20).collect::<Vec<_>>()
    );

    kafka.restart_broker(2);
    assert!(running(&kafka.dir().join("broker-2.pid")));
    produce(&kafka, "replicated", 20..30);
    assert_eq!(
        read_all(&kafka, "replicated", 3, 30),
        (0..30).collect::<Vec<_>>()
    );
    assert_eq!(kafka.topics(), [("replicated".to_string(), 3)]);
}

#[test]
fn a_stopped_broker_comes_back_with_its_topics_and_a_dropped_one_is_gone() {
    let kafka = Kafka::start();
    kafka.create_topic("kept", 2);
    produce(&kafka, "kept", 0..5);
    let bootstrap = kafka.bootstrap.clone();
    kafka.stop();
    assert!(!running(&kafka.dir().join("broker-1.pid")));
    kafka.restart();
    assert_eq!(kafka.bootstrap, bootstrap);
    assert_eq!(kafka.topics(), [("kept".to_string(), 2)]);
    assert_eq!(read_all(&kafka, "kept", 2, 5), (0..5).collect::<Vec<_>>());
    assert!(
        kafka.log().contains("Kafka Server started"),
        "{}",
        kafka.log()
    );

    let pid = std::fs::read_to_string(kafka.dir().join("broker-1.pid")).unwrap();
    let dir = kafka.dir().to_path_buf();
    drop(kafka);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim()));
    assert!(
        cmdline.map_or(true, |cmdline| cmdline.is_empty()),
        "the broker runs on"
    );
    assert!(!dir.exists());
}

#[test]
fn the_shared_broker_is_one_per_process_and_not_to_be_stopped() {
    let shared = Kafka::shared();
    assert!(Arc::ptr_eq(&shared, &Kafka::shared()));
    let stopped = std::panic::catch_unwind(|| shared.stop());
    assert!(stopped.is_err(), "the shared broker was stopped");
    shared.create_topic("shared-topic", 1);
    assert!(shared.topics().contains(&("shared-topic".to_string(), 1)));
}

/// What the shared broker relies on, since it is never dropped: `kafka-up.sh --owner PID` kills
/// the brokers and deletes their directory once PID exits.
#[test]
fn a_cluster_dies_with_its_owner() {
    let mut owner = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster");
    let output = Command::new(repo_path("scripts/kafka-up.sh"))
        .arg(&cluster)
        .args(["--owner", &owner.id().to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pid = std::fs::read_to_string(cluster.join("broker-1.pid")).unwrap();
    let proc = Path::new("/proc").join(pid.trim());
    assert!(proc.exists());
    owner.kill().unwrap();
    owner.wait().unwrap();
    wait_until(
        "the broker and its directory are gone",
        Duration::from_secs(30),
        || {
            !cluster.exists()
                && std::fs::read(proc.join("cmdline")).map_or(true, |cmdline| cmdline.is_empty())
        },
    );
}
