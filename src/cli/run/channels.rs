//! The brokers' channels as `knactor run` sets them up: the memory channel's flags and log, the
//! Kafka flags and settings (with the credentials of --kafka-auth-dir), and the defaults a broker
//! that names no channel gets.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use knactor_actors::channel::{MemoryLimits, MemoryLog};
use knactor_actors::routes::ChannelDefaults;
use knactor_kafka::{Channels, KafkaSettings, PartitionAssignment};
use tracing::info;

use super::RunArgs;
use crate::config::parse_duration_flag;

/// The memory channel: its partitions and what it keeps before it refuses events.
#[derive(Args)]
pub(super) struct MemoryChannelArgs {
    /// Partitions of each broker's memory channel.
    #[arg(long, env = "KNACTOR_PARTITIONS", default_value_t = 1)]
    partitions: u32,
    /// Events the memory channel keeps per partition before it answers 503.
    #[arg(long, env = "KNACTOR_MEMORY_MAX_RECORDS", default_value_t = 100_000)]
    memory_max_records: usize,
    /// Bytes of events the memory channel keeps in all (every broker, parking lots included)
    /// before it answers 503 with Retry-After; a batch that could never fit gets 413.
    #[arg(long, env = "KNACTOR_MEMORY_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    memory_max_bytes: usize,
}

impl MemoryChannelArgs {
    /// The log every memory-channel broker shares.
    fn log(&self) -> MemoryLog {
        MemoryLog::new(MemoryLimits {
            max_records_per_partition: self.memory_max_records.max(1),
            max_bytes: self.memory_max_bytes.max(1),
            ..MemoryLimits::default()
        })
    }
}

/// The brokers' Kafka channel: which brokers take it (--default-broker-class, which --help lists
/// among these), the node's Kafka cluster, the topics knactor creates and the client's settings.
#[derive(Args)]
pub(super) struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...) of the node's cluster; brokers of class Kafka whose
    /// ConfigMap names no bootstrap.servers use it. Falls back to KAFKA_BOOTSTRAP_SERVERS.
    #[arg(
        long,
        env = "KNACTOR_KAFKA_BOOTSTRAP",
        visible_alias = "kafka-bootstrap-servers"
    )]
    kafka_bootstrap: Option<String>,
    /// Class of brokers without the eventing.knative.dev/broker.class annotation: MTChannelBasedBroker
    /// (memory channel) or Kafka.
    #[arg(
        long,
        env = "KNACTOR_DEFAULT_BROKER_CLASS",
        default_value = "MTChannelBasedBroker"
    )]
    pub default_broker_class: String,
    /// Topic name of a broker: Knative's template, with {{.Namespace}} and {{.Name}}.
    #[arg(
        long,
        env = "KNACTOR_KAFKA_TOPIC_TEMPLATE",
        default_value = "knative-broker-{{.Namespace}}-{{.Name}}"
    )]
    kafka_topic_template: String,
    /// Partitions of a topic knactor creates, when the broker's ConfigMap does not say.
    #[arg(long, env = "KNACTOR_KAFKA_PARTITIONS", default_value_t = 10)]
    kafka_partitions: u32,
    /// Replication factor of a topic knactor creates, when the ConfigMap does not say; -1: the
    /// cluster's default.replication.factor.
    #[arg(long, env = "KNACTOR_KAFKA_REPLICATION_FACTOR", default_value_t = -1, allow_hyphen_values = true)]
    kafka_replication_factor: i32,
    /// Delete a broker's topics when the broker is deleted (never an external topic).
    #[arg(long, env = "KNACTOR_KAFKA_DELETE_TOPICS")]
    pub kafka_delete_topics: bool,
    /// How long an append may wait for Kafka's acknowledgement before the producer gets 503.
    #[arg(long, env = "KNACTOR_KAFKA_APPEND_TIMEOUT", default_value = "10s", value_parser = parse_duration_flag)]
    kafka_append_timeout: Duration,
    /// How a Kafka broker's partitions are spread over the nodes running it: group (Kafka
    /// consumer-group membership; nodes share the partitions) or all (this node reads every
    /// partition and commits the group's offsets without joining it: one node per broker).
    #[arg(long, env = "KNACTOR_KAFKA_PARTITION_ASSIGNMENT", default_value = "group", value_parser = parse_assignment)]
    kafka_partition_assignment: PartitionAssignment,
    /// This node's stable name (for example its pod name): with it, the node joins the brokers'
    /// Kafka consumer groups as a static member and takes its partitions back at once after a
    /// restart.
    #[arg(long, env = "KNACTOR_NODE_ID")]
    node_id: Option<String>,
    /// Extra librdkafka settings, key=value, repeatable (or comma-separated in the variable), e.g.
    /// security.protocol=sasl_ssl.
    #[arg(long = "kafka-config", env = "KNACTOR_KAFKA_CONFIG", value_delimiter = ',', value_parser = parse_key_value)]
    pub kafka_config: Vec<(String, String)>,
}

impl KafkaArgs {
    /// `--node-id`, when given and not empty.
    pub(super) fn node_id(&self) -> Option<String> {
        self.node_id.clone().filter(|id| !id.is_empty())
    }

    /// The node's Kafka cluster, from the flags (or `KAFKA_BOOTSTRAP_SERVERS`).
    pub(super) fn settings(&self) -> Option<KafkaSettings> {
        let bootstrap = self
            .kafka_bootstrap
            .clone()
            .or_else(|| std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok())
            .filter(|servers| !servers.trim().is_empty())?;
        let mut settings = KafkaSettings::new(bootstrap.trim());
        settings.client.extend(self.kafka_config.iter().cloned());
        settings.replication_factor = self.kafka_replication_factor;
        settings.append_timeout = self.kafka_append_timeout;
        settings.instance_id = self.node_id();
        settings.assignment = self.kafka_partition_assignment;
        Some(settings)
    }
}

/// The brokers' channels: the memory log every memory-channel broker shares and, when the flags
/// name a Kafka cluster, Kafka.
pub(super) fn channels(args: &RunArgs) -> Arc<Channels> {
    let log = Arc::new(args.memory.log());
    let kafka = args.kafka.settings();
    if let Some(kafka) = &kafka {
        info!(bootstrap = %kafka.bootstrap, "Kafka channel available");
    }
    Arc::new(Channels::new(log, kafka))
}

/// How a broker gets its channel when its resources do not say: the class, and the partitions
/// of a memory log or of a topic knactor creates.
pub(super) fn channel_defaults(args: &RunArgs) -> ChannelDefaults {
    ChannelDefaults {
        topic_template: args.kafka.kafka_topic_template.clone(),
        memory_partitions: args.memory.partitions.max(1),
        default_class: args.kafka.default_broker_class.clone(),
        kafka_partitions: args.kafka.kafka_partitions.max(1),
        kafka_replication_factor: None,
    }
}

/// `--kafka-auth-dir`: Knative's Kafka Secret keys as files -> librdkafka settings.
pub(super) fn kafka_auth(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut secret = BTreeMap::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("--kafka-auth-dir {}: cannot read it", dir.display()))?
    {
        let path = entry?.path();
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        // Mounted Secrets also hold ..data and ..2024_... links.
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let value = std::fs::read_to_string(&path)
            .with_context(|| format!("--kafka-auth-dir: cannot read {}", path.display()))?;
        secret.insert(name, value);
    }
    knactor_actors::routes::kafka_client_config(&secret)
        .map(|config| config.into_iter().collect())
        .map_err(|problem| anyhow::anyhow!("--kafka-auth-dir {}: {problem}", dir.display()))
}

fn parse_assignment(text: &str) -> Result<PartitionAssignment, String> {
    match text {
        "group" => Ok(PartitionAssignment::Group),
        "all" => Ok(PartitionAssignment::All),
        other => Err(format!("{other:?} is not group or all")),
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?} is not key=value")),
    }
}
