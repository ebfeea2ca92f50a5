//! The ConfigMaps and Secrets that Kafka Brokers name, read from the cluster.
//!
//! A Knative Kafka Broker points `spec.config` at a ConfigMap (usually
//! `knative-eventing/kafka-broker-config`: `bootstrap.servers`, `default.topic.partitions`, ...)
//! whose `auth.secret.ref.name` may name a Secret with the client's credentials. File mode reads
//! them from the YAML beside the Broker; in a cluster, [`BrokerConfigs`] gets exactly those objects
//! (one `get` each, answers reused for [`REFRESH`]) so that knactor needs no cluster-wide watch on
//! ConfigMaps and Secrets: the chart grants `get` in `rbac.brokerConfigNamespaces` only.
//!
//! An object that cannot be read keeps its last good value (an API server hiccup must not stop a
//! running broker); one never read leaves the broker not ready, with the reason the API server gave.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use knactor_actors::resources::ObjectKey;
use knactor_actors::routes::{Catalog, KAFKA_BROKER_CLASSES};
use kube::api::{Api, DynamicObject};
use kube::{Client, ResourceExt as _};
use tracing::warn;

/// How long an answer is reused before the object is read again.
pub const REFRESH: Duration = Duration::from_secs(10);

const CLASS_ANNOTATION: &str = "eventing.knative.dev/broker.class";

/// The Secret a ConfigMap names (`auth.secret.ref.name`): in `auth.secret.ref.namespace`, else
/// beside the ConfigMap (as Knative's Kafka broker reads it).
fn secret_of(config_map: &ObjectKey, data: &BTreeMap<String, String>) -> Option<ObjectKey> {
    let name = data.get("auth.secret.ref.name").filter(|n| !n.is_empty())?;
    let namespace = data
        .get("auth.secret.ref.namespace")
        .filter(|n| !n.is_empty())
        .unwrap_or(&config_map.namespace);
    Some(ObjectKey::new(namespace, name))
}

/// The ConfigMap a Kafka Broker names (in the broker's namespace when the reference has none).
pub fn config_map_of(broker: &DynamicObject, default_class: &str) -> Option<ObjectKey> {
    let class = broker
        .annotations()
        .get(CLASS_ANNOTATION)
        .map_or(default_class, String::as_str);
    if !KAFKA_BROKER_CLASSES.contains(&class) {
        return None;
    }
    let config = broker.data.get("spec")?.get("config")?;
    if config.get("kind")?.as_str()? != "ConfigMap" {
        return None;
    }
    let namespace = broker.namespace().unwrap_or_default();
    let name = config.get("name")?.as_str()?;
    let config_namespace = config
        .get("namespace")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(&namespace);
    Some(ObjectKey::new(config_namespace, name))
}

/// One object as last read.
struct Read {
    at: Instant,
    /// `None`: it does not exist.
    data: Option<BTreeMap<String, String>>,
    /// Why the last read failed, when no good value was ever read.
    failure: Option<String>,
}

pub struct BrokerConfigs {
    client: Client,
    config_maps: BTreeMap<ObjectKey, Read>,
    secrets: BTreeMap<ObjectKey, Read>,
}

impl fmt::Debug for BrokerConfigs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Which objects, never what the Secrets hold.
        f.debug_struct("BrokerConfigs")
            .field("config_maps", &self.config_maps.keys())
            .field("secrets", &self.secrets.keys())
            .finish_non_exhaustive()
    }
}

impl BrokerConfigs {
    /// The data of a ConfigMap as last read, when it exists.
    pub fn config_map(&self, key: &ObjectKey) -> Option<&BTreeMap<String, String>> {
        self.config_maps.get(key)?.data.as_ref()
    }

    pub fn new(client: Client) -> Self {
        Self {
            client,
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// Reads the ConfigMaps the brokers name that were not read within [`REFRESH`], then the
    /// Secrets those ConfigMaps name; forgets what nothing names.
    pub async fn refresh(&mut self, maps: &BTreeSet<ObjectKey>) {
        self.config_maps.retain(|key, _| maps.contains(key));
        for key in maps {
            refresh_one::<ConfigMap>(&self.client, &mut self.config_maps, key, |map| {
                map.data.unwrap_or_default().into_iter().collect()
            })
            .await;
        }
        let secrets: BTreeSet<ObjectKey> = self
            .config_maps
            .iter()
            .filter_map(|(key, read)| secret_of(key, read.data.as_ref()?))
            .collect();
        self.secrets.retain(|key, _| secrets.contains(key));
        for key in &secrets {
            refresh_one::<Secret>(&self.client, &mut self.secrets, key, |secret| {
                secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect()
            })
            .await;
        }
    }

    /// Puts what exists into the catalog, as file mode has the YAML's ConfigMaps and Secrets.
    pub fn fill(&self, catalog: &mut Catalog) {
        let existing = |reads: &BTreeMap<ObjectKey, Read>| {
            reads
                .iter()
                .filter_map(|(key, read)| Some((key.clone(), read.data.clone()?)))
                .collect::<Vec<_>>()
        };
        catalog.config_maps.extend(existing(&self.config_maps));
        catalog.secrets.extend(existing(&self.secrets));
    }

    /// Why an object a broker's reason names could not be read, if it could not: the message
    /// replaces "does not exist", which would send the user looking for the wrong problem.
    pub fn explain(&self, message: &str) -> Option<String> {
        let failures = self
            .config_maps
            .iter()
            .map(|(key, read)| ("ConfigMap", key, read))
            .chain(self.secrets.iter().map(|(key, read)| ("Secret", key, read)));
        for (kind, key, read) in failures {
            if let Some(failure) = &read.failure {
                if message.starts_with(&format!("{kind} {key} ")) {
                    return Some(format!("cannot read {kind} {key}: {failure}"));
                }
            }
        }
        None
    }
}

async fn refresh_one<K>(
    client: &Client,
    reads: &mut BTreeMap<ObjectKey, Read>,
    key: &ObjectKey,
    data: impl FnOnce(K) -> BTreeMap<String, String>,
) where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    if reads
        .get(key)
        .is_some_and(|read| read.at.elapsed() < REFRESH)
    {
        return;
    }
    let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let read = match api.get_opt(&key.name).await {
        Ok(found) => Read {
            at: Instant::now(),
            data: found.map(data),
            failure: None,
        },
        Err(error) => {
            let failure = match &error {
                kube::Error::Api(status) if status.code == 403 => format!(
                    "forbidden: knactor's account may not get {kind}s in namespace {} (the \
                     chart's rbac.brokerConfigNamespaces lists where it may)",
                    key.namespace
                ),
                other => other.to_string(),
            };
            warn!(object = %format!("{kind} {key}"), "cannot read a Kafka broker's configuration: {failure}");
            match reads.remove(key) {
                // Keep the last good value; read again after the next interval.
                Some(previous) if previous.failure.is_none() => Read {
                    at: Instant::now(),
                    ..previous
                },
                _ => Read {
                    at: Instant::now(),
                    data: None,
                    failure: Some(failure),
                },
            }
        }
    };
    reads.insert(key.clone(), read);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(yaml: &str) -> DynamicObject {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn only_kafka_brokers_name_a_config_map() {
        let kafka = broker(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: team\n  annotations: {eventing.knative.dev/broker.class: Kafka}\nspec:\n  config: {apiVersion: v1, kind: ConfigMap, name: kafka-broker-config, namespace: knative-eventing}\n",
        );
        assert_eq!(
            config_map_of(&kafka, "MTChannelBasedBroker"),
            Some(ObjectKey::new("knative-eventing", "kafka-broker-config"))
        );
        // Knative's channel-based brokers name config-br-default-channel: not knactor's business.
        let channel_based = broker(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: team}\nspec:\n  config: {apiVersion: v1, kind: ConfigMap, name: config-br-default-channel, namespace: knative-eventing}\n",
        );
        assert_eq!(config_map_of(&channel_based, "MTChannelBasedBroker"), None);
        // Without the annotation, the node's default class decides; no namespace: the broker's.
        let defaulted = broker(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: team}\nspec:\n  config: {kind: ConfigMap, name: mine}\n",
        );
        assert_eq!(
            config_map_of(&defaulted, "Kafka"),
            Some(ObjectKey::new("team", "mine"))
        );
    }

    #[test]
    fn the_secret_is_in_its_own_namespace_or_beside_the_config_map() {
        let config_map = ObjectKey::new("knative-eventing", "kafka-broker-config");
        let mut data = BTreeMap::from([("auth.secret.ref.name".to_string(), "auth".to_string())]);
        assert_eq!(
            secret_of(&config_map, &data),
            Some(ObjectKey::new("knative-eventing", "auth"))
        );
        data.insert("auth.secret.ref.namespace".into(), "kafka".into());
        assert_eq!(
            secret_of(&config_map, &data),
            Some(ObjectKey::new("kafka", "auth"))
        );
        assert_eq!(secret_of(&config_map, &BTreeMap::new()), None);
    }
}
