//! How knactor talks to one Kafka cluster: the librdkafka settings of its producer, group
//! consumers and readers, from the node's flags and a broker's ConfigMap and auth Secret.

use std::collections::BTreeMap;
use std::time::Duration;

use knactor_actors::channel::StartAt;
use rdkafka::config::ClientConfig;

/// How a broker's partitions are spread over the nodes that run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum PartitionAssignment {
    /// Kafka consumer-group membership: the partitions are shared among the nodes, and move
    /// when a node joins or leaves (the default; how knactor scales out).
    #[default]
    Group,
    /// This node reads every partition, and keeps the group's committed offsets without joining
    /// it: for one node per broker (a laptop, or an active/passive pair). No rebalances.
    All,
}

/// One cluster's settings. Its `Debug` shows every client setting's name but not the value of
/// one that may be a credential (`sasl.password`, `ssl.key.password`, an OAuth client secret...).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Extra librdkafka settings: the auth Secret's (`security.protocol`, `sasl.*`, `ssl.*`) and the
    /// node's `--kafka-config key=value` overrides.
    pub client: BTreeMap<String, String>,
    /// Replication of created topics when the broker does not say; -1: the cluster's default.
    pub replication_factor: i32,
    /// How long the producer may hold a record to batch it (`linger.ms`).
    pub linger: Duration,
    /// How long an append may take before it fails with 503 (`message.timeout.ms`).
    pub append_timeout: Duration,
    /// This node's stable name in the dispatcher groups (`group.instance.id`, Kafka's static
    /// membership): a node that restarts under the same name takes its partitions back at once
    /// instead of waiting for the group to notice the old member is gone.
    pub instance_id: Option<String>,
    pub assignment: PartitionAssignment,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client: BTreeMap<&str, &str> = self
            .client
            .iter()
            .map(|(key, value)| {
                let shown = if is_credential(key) {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("bootstrap", &self.bootstrap)
            .field("client", &client)
            .field("replication_factor", &self.replication_factor)
            .field("linger", &self.linger)
            .field("append_timeout", &self.append_timeout)
            .field("instance_id", &self.instance_id)
            .field("assignment", &self.assignment)
            .finish()
    }
}

/// Whether a librdkafka setting may hold a credential (a password, a secret, a private key, a
/// token), by its name.
fn is_credential(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "ssl.key.pem",
        "sasl.jaas.config",
    ]
    .iter()
    .any(|word| key.contains(word))
}

impl KafkaSettings {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            client: BTreeMap::new(),
            replication_factor: -1,
            linger: Duration::from_millis(2),
            append_timeout: Duration::from_secs(10),
            instance_id: None,
            assignment: PartitionAssignment::Group,
        }
    }

    /// Settings every client shares.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "knactor")
            // Fail fast when the cluster is away, instead of waiting minutes.
            .set("socket.connection.setup.timeout.ms", "10000");
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }

    /// The producer: idempotent, acknowledged by all in-sync replicas.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger.as_millis().to_string())
            .set(
                "message.timeout.ms",
                self.append_timeout.as_millis().max(1).to_string(),
            )
            .set("queue.buffering.max.messages", "200000");
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }

    /// A member of a broker's dispatcher group.
    pub fn group_config(&self, group: &str, start: StartAt) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match start {
                    StartAt::Earliest => "earliest",
                    StartAt::Latest => "latest",
                },
            )
            .set("enable.partition.eof", "false")
            // Deliver as soon as records arrive rather than waiting to fill a fetch.
            .set("fetch.wait.max.ms", "50")
            // Only the partitions that move are revoked in a rebalance (the others keep their
            // deliveries in flight): a node joining or leaving redelivers only what moves.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // rx_bytes for the bytes-read metric.
            .set("statistics.interval.ms", "1000");
        if let Some(instance) = &self.instance_id {
            config.set("group.instance.id", instance);
        }
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_credential() {
        let mut settings = KafkaSettings::new("kafka:9092");
        for (key, value) in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.username", "knactor"),
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "pem-pass"),
            ("sasl.oauthbearer.client.secret", "oauth-secret"),
        ] {
            settings.client.insert(key.into(), value.into());
        }
        let shown = format!("{settings:?}");
        for secret in ["hunter2", "pem-pass", "oauth-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("sasl_ssl") && shown.contains("\"sasl.password\": \"<redacted>\""),
            "{shown}"
        );
    }
}
