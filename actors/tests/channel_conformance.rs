//! The channel conformance scenarios on the memory channel (Kafka runs the same ones against a
//! real broker in knactor-kafka).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use knactor_actors::channel::{conformance, MemoryLog};

#[tokio::test]
async fn the_memory_channel_conforms() {
    conformance::run_all(Arc::new(MemoryLog::default()), "memory").await;
}

#[tokio::test]
async fn a_deleted_memory_topic_is_gone() {
    conformance::a_deleted_topic_is_gone(Arc::new(MemoryLog::default()), "memory").await;
}
