//! Knative's `config-br-defaults`: the ConfigMap (namespace `knative-eventing`, key
//! `default-br-config`) that gives Brokers their class, `spec.config` and `spec.delivery` when they
//! say none, for the whole cluster and per namespace:
//!
//! ```yaml
//! default-br-config: |
//!   clusterDefault:
//!     brokerClass: MTChannelBasedBroker
//!     delivery: {retry: 10, backoffPolicy: exponential, backoffDelay: PT0.2S}
//!   namespaceDefaults:
//!     team-a:
//!       brokerClass: Kafka
//!       apiVersion: v1
//!       kind: ConfigMap
//!       name: kafka-broker-config
//!       namespace: knative-eventing
//! ```
//!
//! Each field of a namespace's entry wins over the cluster's; a Broker's own annotation and spec win
//! over both, as with Knative's defaulting webhook. Read in file mode from the configuration files
//! and in cluster mode from the API server; applied to Brokers before they are routed. This is the
//! ConfigMap's shape; `routes::BrokerDefaults::from_data` checks it into the defaults applied.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::delivery::DeliverySpec;
use super::ObjectKey;

/// Where the ConfigMap is.
pub const NAMESPACE: &str = "knative-eventing";
pub const NAME: &str = "config-br-defaults";
/// The key of its data holding the defaults (YAML).
pub const KEY: &str = "default-br-config";

/// The ConfigMap's key.
pub fn config_map_key() -> ObjectKey {
    ObjectKey::new(NAMESPACE, NAME)
}

/// The value of [`KEY`] as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultsDocument {
    #[serde(default)]
    pub cluster_default: Option<EntryDocument>,
    #[serde(default)]
    pub namespace_defaults: BTreeMap<String, EntryDocument>,
}

/// One entry (the cluster's or a namespace's) as written; `apiVersion`, `kind`, `name` and
/// `namespace` name the default `spec.config`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryDocument {
    #[serde(default)]
    pub broker_class: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}
