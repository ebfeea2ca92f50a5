//! The channel conformance scenarios (the same ones the memory channel passes), against a real
//! Kafka-protocol broker: tansu on loopback.

use std::sync::Arc;

use knactor_actors::channel::conformance;
use knactor_kafka::{KafkaLog, KafkaSettings};
use knactor_testkit::Tansu;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_channel_conforms() {
    let tansu = Tansu::start();
    let log = KafkaLog::new(KafkaSettings::new(&tansu.bootstrap)).expect("a Kafka log");
    conformance::run_all(Arc::new(log), "kafka").await;
}

/// On a broker of its own: tansu 0.6 loses every topic when one is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_kafka_topic_is_gone() {
    let tansu = Tansu::start();
    let log = KafkaLog::new(KafkaSettings::new(&tansu.bootstrap)).expect("a Kafka log");
    conformance::a_deleted_topic_is_gone(Arc::new(log), "kafka").await;
}
