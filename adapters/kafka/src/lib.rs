//! knactor-kafka: the broker channel on Kafka.
//!
//! [`KafkaLog`] implements the actors' `EventLog` port on one cluster: records in the CloudEvents
//! Kafka binding ([`record`]), appends acknowledged by all in-sync replicas, one consumer-group
//! member per broker dispatcher ([`group`]), topic administration. [`Channels`] picks the log of a
//! broker: memory, or the Kafka cluster its ConfigMap (or the node) names. Start with [`log`].

// Whatever is `pub` is reachable from outside the crate; the rest says pub(crate).
#![warn(unreachable_pub)]
// Every public type can be printed with `{:?}`: in a log line, a test failure, a caller's own Debug.
#![warn(missing_debug_implementations)]

pub mod group;
pub mod log;
pub mod provider;
pub mod record;
pub mod settings;

pub use log::KafkaLog;

use knactor_actors::channel::ChannelError;
use rdkafka::error::KafkaError;

/// A Kafka client call that failed, as the channel reports it: what was being done, and why.
pub(crate) fn unavailable(what: &str, error: &KafkaError) -> ChannelError {
    ChannelError::Unavailable(format!("{what}: {error}"))
}
pub use provider::Channels;
pub use settings::{KafkaSettings, PartitionAssignment};
