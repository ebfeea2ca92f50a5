//! The channel conformance scenarios (the same ones the memory channel passes), against a real
//! Kafka: the Apache Kafka broker this test process shares, on loopback.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use knactor_actors::channel::conformance;
use knactor_kafka::{KafkaLog, KafkaSettings};
use knactor_testkit::Kafka;

fn kafka_log() -> Arc<KafkaLog> {
    let kafka = Kafka::shared();
    Arc::new(KafkaLog::new(KafkaSettings::new(&kafka.bootstrap)).expect("a Kafka log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_channel_conforms() {
    conformance::run_all(kafka_log(), "kafka").await;
}

/// Beside the other scenarios, on the same broker: deleting one topic leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_kafka_topic_is_gone() {
    conformance::a_deleted_topic_is_gone(kafka_log(), "kafka").await;
}
