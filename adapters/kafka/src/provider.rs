//! `Channels`: the node's [`ChannelProvider`]: the memory log for memory brokers, and one
//! [`KafkaLog`] per Kafka cluster (bootstrap servers and credentials) for Kafka brokers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use knactor_actors::channel::{ChannelError, ChannelProvider, EventLog};
use knactor_actors::routes::{ChannelKind, ChannelSpec};
use tracing::info;

use crate::log::KafkaLog;
use crate::settings::KafkaSettings;

pub struct Channels {
    memory: Arc<dyn EventLog>,
    /// The node's cluster (`--kafka-bootstrap`); brokers whose ConfigMap names no bootstrap
    /// servers use it.
    default_kafka: Option<KafkaSettings>,
    clusters: Mutex<HashMap<KafkaSettings, Arc<KafkaLog>>>,
}

impl fmt::Debug for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The clusters by their bootstrap servers, not their client settings (they may hold the
        // auth Secret's `sasl.password`).
        let default_kafka = self.default_kafka.as_ref().map(|kafka| &kafka.bootstrap);
        let held = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        let clusters: Vec<&String> = held.keys().map(|kafka| &kafka.bootstrap).collect();
        f.debug_struct("Channels")
            .field("memory", &self.memory)
            .field("default_kafka", &default_kafka)
            .field("clusters", &clusters)
            .finish_non_exhaustive()
    }
}

impl Channels {
    pub fn new(memory: Arc<dyn EventLog>, default_kafka: Option<KafkaSettings>) -> Self {
        Self {
            memory,
            default_kafka,
            clusters: Mutex::default(),
        }
    }

    fn settings_for(
        &self,
        bootstrap: Option<&str>,
        client: &std::collections::BTreeMap<String, String>,
    ) -> Result<KafkaSettings, ChannelError> {
        let mut settings = match (bootstrap, &self.default_kafka) {
            (Some(bootstrap), Some(default)) => KafkaSettings {
                bootstrap: bootstrap.to_string(),
                ..default.clone()
            },
            (Some(bootstrap), None) => KafkaSettings::new(bootstrap),
            (None, Some(default)) => default.clone(),
            (None, None) => {
                return Err(ChannelError::Unavailable(
                    "a Kafka broker needs bootstrap servers: start the node with --kafka-bootstrap, or set bootstrap.servers in the broker's ConfigMap".into(),
                ))
            }
        };
        settings
            .client
            .extend(client.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(settings)
    }
}

impl ChannelProvider for Channels {
    fn log_for(&self, channel: &ChannelSpec) -> Result<Arc<dyn EventLog>, ChannelError> {
        let kafka = match &channel.kind {
            ChannelKind::Memory => return Ok(self.memory.clone()),
            ChannelKind::Kafka(kafka) => kafka,
        };
        let settings = self.settings_for(kafka.bootstrap.as_deref(), &kafka.client_config)?;
        let mut clusters = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = clusters.get(&settings) {
            return Ok(log.clone());
        }
        info!(bootstrap = %settings.bootstrap, "connecting to a Kafka cluster");
        let log = Arc::new(KafkaLog::new(settings.clone())?);
        clusters.insert(settings, log.clone());
        Ok(log)
    }
}
