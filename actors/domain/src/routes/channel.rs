//! Which channel a broker's events live in, resolved once from its class, its `spec.config`
//! ConfigMap and the node's defaults.
//!
//! Brokers of class `Kafka` or `KafkaNamespaced` live in a Kafka topic, configured with the keys of
//! Knative's Kafka broker ConfigMap:
//!
//! | key | meaning |
//! |---|---|
//! | `bootstrap.servers` | comma-separated brokers (default: the node's `--kafka-bootstrap`) |
//! | `default.topic.partitions` | partitions of a topic knactor creates |
//! | `default.topic.replication.factor` | its replication factor |
//! | `default.topic.config.<key>` | a topic-level config, e.g. `default.topic.config.retention.ms` |
//! | `auth.secret.ref.name` (+ `.namespace`) | a Secret in Knative's Kafka format (protocol, sasl.mechanism, user, password, ca.crt, user.crt, user.key) |
//!
//! Every other class lives in the node's memory channel.

use std::collections::BTreeMap;
use std::num::ParseIntError;

use super::Broker;
use crate::resources::ObjectKey;

/// Knative's Kafka broker classes.
pub const KAFKA_BROKER_CLASSES: [&str; 2] = ["Kafka", "KafkaNamespaced"];
/// Knative's annotation naming an existing topic to use as the broker's channel.
pub const EXTERNAL_TOPIC_ANNOTATION: &str = "kafka.eventing.knative.dev/external.topic";

/// Why a broker's channel cannot be set up from its config (the broker's not-ready reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelConfigError {
    #[error("ConfigMap {0} (spec.config) does not exist")]
    ConfigMapMissing(ObjectKey),
    #[error("spec.config is a {kind}; a Kafka broker's config is a ConfigMap")]
    ConfigNotConfigMap { kind: String },
    #[error("ConfigMap key {key}: {text:?} is not a number")]
    NotANumber {
        key: &'static str,
        text: String,
        #[source]
        source: ParseIntError,
    },
    #[error("ConfigMap key {key}: {value} must be at least 1")]
    OutOfRange { key: &'static str, value: i64 },
    #[error("Secret {0} (auth.secret.ref.name) does not exist")]
    SecretMissing(ObjectKey),
    #[error("Secret {secret}: {source}")]
    AuthInvalid {
        secret: ObjectKey,
        #[source]
        source: KafkaAuthError,
    },
}

/// Why a Secret in Knative's Kafka auth format cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaAuthError {
    #[error("has no \"protocol\" key (PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL)")]
    NoProtocol,
    #[error("protocol {0:?} is not PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL")]
    UnknownProtocol(String),
    #[error("sasl.mechanism {0:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")]
    UnknownMechanism(String),
    /// `user` or `password`.
    #[error("SASL needs a {0:?} key")]
    SaslKeyMissing(&'static str),
    #[error("user.crt and user.key go together")]
    HalfClientCertificate,
}

/// The channel of one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub topic: String,
    pub partitions: u32,
    pub kind: ChannelKind,
}

impl ChannelSpec {
    /// Where a broker's undeliverable events are parked.
    pub fn park_topic(&self) -> String {
        format!("{}-parked", self.topic)
    }

    /// The consumer group of the broker's dispatchers. Named after the topic: every node running
    /// the broker shares the group (and its partitions), and two installations with different
    /// topic templates never collide.
    pub fn dispatcher_group(&self) -> String {
        format!("knactor-dispatcher.{}", self.topic)
    }

    pub fn kafka(&self) -> Option<&KafkaChannel> {
        match &self.kind {
            ChannelKind::Kafka(kafka) => Some(kafka),
            ChannelKind::Memory => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// In this process (the embedded default).
    Memory,
    Kafka(KafkaChannel),
}

impl ChannelKind {
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Memory => "memory",
            ChannelKind::Kafka(_) => "kafka",
        }
    }
}

/// A broker's Kafka settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaChannel {
    /// `bootstrap.servers` of the broker's ConfigMap; `None`: the node's.
    pub bootstrap: Option<String>,
    pub replication_factor: Option<i16>,
    /// Topic-level configs for a topic knactor creates (`retention.ms`, ...).
    pub topic_config: BTreeMap<String, String>,
    /// librdkafka client settings from the auth Secret (`security.protocol`, `sasl.*`, `ssl.*`).
    pub client_config: BTreeMap<String, String>,
    /// The topic was named by [`EXTERNAL_TOPIC_ANNOTATION`]: used as it is, never created or deleted.
    pub external: bool,
}

/// Node-wide defaults of the channels (flags of `knactor run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelDefaults {
    /// Knative's `config-kafka-features` template: `knative-broker-{{.Namespace}}-{{.Name}}`.
    pub topic_template: String,
    /// Partitions of a memory channel.
    pub memory_partitions: u32,
    /// Class of a broker without the class annotation (Knative's `config-br-defaults`).
    pub default_class: String,
    /// Partitions and replication of a Kafka topic when the ConfigMap does not say.
    pub kafka_partitions: u32,
    pub kafka_replication_factor: Option<i16>,
}

impl Default for ChannelDefaults {
    fn default() -> Self {
        Self {
            topic_template: "knative-broker-{{.Namespace}}-{{.Name}}".into(),
            memory_partitions: 1,
            default_class: super::DEFAULT_BROKER_CLASS.into(),
            kafka_partitions: 10,
            kafka_replication_factor: None,
        }
    }
}

impl ChannelDefaults {
    pub fn topic_for(&self, broker: &ObjectKey) -> String {
        let mut topic = self.topic_template.clone();
        for (placeholder, value) in [
            ("{{.Namespace}}", broker.namespace.as_str()),
            ("{{ .Namespace }}", broker.namespace.as_str()),
            ("{{.Name}}", broker.name.as_str()),
            ("{{ .Name }}", broker.name.as_str()),
        ] {
            topic = topic.replace(placeholder, value);
        }
        topic
    }

    /// The class a broker runs as: its annotation, or the node's default.
    pub fn class_of<'a>(&'a self, broker: &'a Broker) -> &'a str {
        broker.class.as_deref().unwrap_or(&self.default_class)
    }

    /// Resolves a broker's channel. `config_maps` and `secrets` are the node's (from files or the
    /// cluster). The error is a sentence for the broker's not-ready reason.
    pub fn resolve(
        &self,
        broker: &Broker,
        config_maps: &BTreeMap<ObjectKey, BTreeMap<String, String>>,
        secrets: &BTreeMap<ObjectKey, BTreeMap<String, String>>,
    ) -> Result<ChannelSpec, ChannelConfigError> {
        let class = self.class_of(broker);
        let external_topic = broker
            .annotations
            .get(EXTERNAL_TOPIC_ANNOTATION)
            .filter(|topic| !topic.is_empty());
        if !KAFKA_BROKER_CLASSES.contains(&class) {
            return Ok(ChannelSpec {
                topic: self.topic_for(&broker.key),
                partitions: self.memory_partitions.max(1),
                kind: ChannelKind::Memory,
            });
        }
        let (data, config_namespace) = match &broker.config {
            None => (BTreeMap::new(), broker.key.namespace.clone()),
            Some(reference) if reference.kind == "ConfigMap" => {
                let key = ObjectKey::new(&reference.namespace, &reference.name);
                let data = config_maps
                    .get(&key)
                    .cloned()
                    .ok_or(ChannelConfigError::ConfigMapMissing(key.clone()))?;
                (data, key.namespace)
            }
            Some(reference) => {
                return Err(ChannelConfigError::ConfigNotConfigMap {
                    kind: reference.kind.clone(),
                })
            }
        };
        let number = |key: &'static str| -> Result<Option<i64>, ChannelConfigError> {
            data.get(key)
                .map(|text| {
                    text.trim()
                        .parse::<i64>()
                        .map_err(|source| ChannelConfigError::NotANumber {
                            key,
                            text: text.clone(),
                            source,
                        })
                })
                .transpose()
        };
        let partitions = match number("default.topic.partitions")? {
            None => self.kafka_partitions,
            Some(n) if n >= 1 && n <= i64::from(i32::MAX) => n as u32,
            Some(value) => {
                return Err(ChannelConfigError::OutOfRange {
                    key: "default.topic.partitions",
                    value,
                })
            }
        };
        let replication_factor = match number("default.topic.replication.factor")? {
            None => self.kafka_replication_factor,
            Some(n) if n >= 1 && n <= i64::from(i16::MAX) => Some(n as i16),
            Some(value) => {
                return Err(ChannelConfigError::OutOfRange {
                    key: "default.topic.replication.factor",
                    value,
                })
            }
        };
        let topic_config = data
            .iter()
            .filter_map(|(key, value)| {
                key.strip_prefix("default.topic.config.")
                    .map(|name| (name.to_string(), value.clone()))
            })
            .collect();
        let client_config = match data.get("auth.secret.ref.name").filter(|n| !n.is_empty()) {
            None => BTreeMap::new(),
            Some(name) => {
                // As Knative's Kafka broker: the Secret is beside the ConfigMap unless it says.
                let namespace = data
                    .get("auth.secret.ref.namespace")
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .unwrap_or(config_namespace);
                let key = ObjectKey::new(namespace, name);
                let secret = secrets
                    .get(&key)
                    .ok_or_else(|| ChannelConfigError::SecretMissing(key.clone()))?;
                kafka_client_config(secret).map_err(|source| ChannelConfigError::AuthInvalid {
                    secret: key,
                    source,
                })?
            }
        };
        Ok(ChannelSpec {
            topic: external_topic
                .cloned()
                .unwrap_or_else(|| self.topic_for(&broker.key)),
            partitions,
            kind: ChannelKind::Kafka(KafkaChannel {
                bootstrap: data
                    .get("bootstrap.servers")
                    .map(|servers| servers.trim().to_string())
                    .filter(|servers| !servers.is_empty()),
                replication_factor,
                topic_config,
                client_config,
                external: external_topic.is_some(),
            }),
        })
    }
}

/// Knative's Kafka auth Secret -> librdkafka settings.
///
/// Keys: `protocol` (PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL), `sasl.mechanism` (PLAIN,
/// SCRAM-SHA-256, SCRAM-SHA-512), `user`, `password`, `ca.crt`, `user.crt`, `user.key`. The legacy
/// format without `protocol` (`tls.enabled`, `saslType`...) is refused with what to use instead.
pub fn kafka_client_config(
    secret: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, KafkaAuthError> {
    let mut config = BTreeMap::new();
    let protocol = secret
        .get("protocol")
        .map(|p| p.trim().to_ascii_uppercase())
        .ok_or(KafkaAuthError::NoProtocol)?;
    let (sasl, ssl) = match protocol.as_str() {
        "PLAINTEXT" => (false, false),
        "SASL_PLAINTEXT" => (true, false),
        "SSL" => (false, true),
        "SASL_SSL" => (true, true),
        _ => return Err(KafkaAuthError::UnknownProtocol(protocol)),
    };
    config.insert("security.protocol".into(), protocol.to_ascii_lowercase());
    if sasl {
        let mechanism = secret
            .get("sasl.mechanism")
            .map(|m| m.trim().to_ascii_uppercase())
            .unwrap_or_else(|| "PLAIN".into());
        if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
            return Err(KafkaAuthError::UnknownMechanism(mechanism));
        }
        let user = secret
            .get("user")
            .ok_or(KafkaAuthError::SaslKeyMissing("user"))?;
        let password = secret
            .get("password")
            .ok_or(KafkaAuthError::SaslKeyMissing("password"))?;
        config.insert("sasl.mechanism".into(), mechanism);
        config.insert("sasl.username".into(), user.clone());
        config.insert("sasl.password".into(), password.clone());
    }
    if ssl {
        if let Some(ca) = secret.get("ca.crt") {
            config.insert("ssl.ca.pem".into(), ca.clone());
        }
        match (secret.get("user.crt"), secret.get("user.key")) {
            (Some(cert), Some(key)) => {
                config.insert("ssl.certificate.pem".into(), cert.clone());
                config.insert("ssl.key.pem".into(), key.clone());
            }
            (None, None) => {}
            _ => return Err(KafkaAuthError::HalfClientCertificate),
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Reference;

    fn broker(class: Option<&str>, config: Option<&str>) -> Broker {
        Broker {
            key: ObjectKey::new("team-a", "orders"),
            class: class.map(str::to_string),
            annotations: BTreeMap::new(),
            config: config.map(|name| Reference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: name.into(),
                namespace: "knative-eventing".into(),
            }),
            delivery: None,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_broker_without_a_kafka_class_lives_in_memory() {
        let spec = ChannelDefaults::default()
            .resolve(&broker(None, None), &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        assert_eq!(spec.kind, ChannelKind::Memory);
        assert_eq!(spec.topic, "knative-broker-team-a-orders");
    }

    #[test]
    fn the_default_class_can_make_every_broker_kafka() {
        let defaults = ChannelDefaults {
            default_class: "Kafka".into(),
            ..ChannelDefaults::default()
        };
        let spec = defaults
            .resolve(&broker(None, None), &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        assert!(spec.kafka().is_some());
        assert_eq!(spec.partitions, 10);
    }

    #[test]
    fn a_kafka_broker_reads_knatives_configmap_keys() {
        let config_maps = BTreeMap::from([(
            ObjectKey::new("knative-eventing", "kafka-broker-config"),
            map(&[
                ("bootstrap.servers", "k1:9092,k2:9092"),
                ("default.topic.partitions", "6"),
                ("default.topic.replication.factor", "3"),
                ("default.topic.config.retention.ms", "3600000"),
            ]),
        )]);
        let spec = ChannelDefaults::default()
            .resolve(
                &broker(Some("Kafka"), Some("kafka-broker-config")),
                &config_maps,
                &BTreeMap::new(),
            )
            .unwrap();
        let kafka = spec.kafka().unwrap();
        assert_eq!(spec.partitions, 6);
        assert_eq!(kafka.bootstrap.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(kafka.replication_factor, Some(3));
        assert_eq!(kafka.topic_config, map(&[("retention.ms", "3600000")]));
    }

    #[test]
    fn a_missing_configmap_or_a_bad_number_is_a_reason() {
        let error = ChannelDefaults::default()
            .resolve(
                &broker(Some("Kafka"), Some("nope")),
                &BTreeMap::new(),
                &BTreeMap::new(),
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "ConfigMap knative-eventing/nope (spec.config) does not exist"
        );
        let config_maps = BTreeMap::from([(
            ObjectKey::new("knative-eventing", "c"),
            map(&[("default.topic.partitions", "many")]),
        )]);
        let error = ChannelDefaults::default()
            .resolve(
                &broker(Some("Kafka"), Some("c")),
                &config_maps,
                &BTreeMap::new(),
            )
            .unwrap_err();
        assert!(error.to_string().contains("\"many\" is not a number"));
    }

    #[test]
    fn the_auth_secret_is_beside_the_config_map_unless_it_says_where() {
        let config_maps = BTreeMap::from([(
            ObjectKey::new("knative-eventing", "c"),
            map(&[("auth.secret.ref.name", "kafka-auth")]),
        )]);
        let secret = map(&[
            ("protocol", "SASL_PLAINTEXT"),
            ("user", "u"),
            ("password", "p"),
        ]);
        let beside = BTreeMap::from([(
            ObjectKey::new("knative-eventing", "kafka-auth"),
            secret.clone(),
        )]);
        let spec = ChannelDefaults::default()
            .resolve(&broker(Some("Kafka"), Some("c")), &config_maps, &beside)
            .unwrap();
        let client = &spec.kafka().unwrap().client_config;
        assert_eq!(client["sasl.username"], "u");
        // Not in the broker's namespace.
        let in_broker_namespace =
            BTreeMap::from([(ObjectKey::new("team-a", "kafka-auth"), secret)]);
        let error = ChannelDefaults::default()
            .resolve(
                &broker(Some("Kafka"), Some("c")),
                &config_maps,
                &in_broker_namespace,
            )
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("Secret knative-eventing/kafka-auth"),
            "{error}"
        );
    }

    #[test]
    fn an_external_topic_is_used_as_it_is() {
        let mut broker = broker(Some("Kafka"), None);
        broker
            .annotations
            .insert(EXTERNAL_TOPIC_ANNOTATION.into(), "existing-topic".into());
        let spec = ChannelDefaults::default()
            .resolve(&broker, &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        assert_eq!(spec.topic, "existing-topic");
        assert!(spec.kafka().unwrap().external);
    }

    #[test]
    fn knatives_auth_secret_becomes_librdkafka_settings() {
        let config = kafka_client_config(&map(&[
            ("protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("user", "u"),
            ("password", "p"),
            ("ca.crt", "PEM"),
        ]))
        .unwrap();
        assert_eq!(config["security.protocol"], "sasl_ssl");
        assert_eq!(config["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(config["sasl.username"], "u");
        assert_eq!(config["ssl.ca.pem"], "PEM");
        assert!(kafka_client_config(&map(&[("protocol", "SASL_PLAINTEXT")])).is_err());
        assert!(kafka_client_config(&map(&[("tls.enabled", "true")])).is_err());
    }
}
