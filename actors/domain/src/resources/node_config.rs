//! `knactor.dev/v1alpha1` NodeConfig: what a node needs to know that Knative keeps elsewhere
//! (in Kubernetes objects and ConfigMaps), written in the same YAML as the resources.
//!
//! ```yaml
//! apiVersion: knactor.dev/v1alpha1
//! kind: NodeConfig
//! metadata: {name: local}
//! spec:
//!   addressables:                       # what a `ref` resolves to without Kubernetes
//!     Service/event-display: http://127.0.0.1:8081
//!     serving.knative.dev/Service/team-a/handler: http://127.0.0.1:9000
//!   brokerDefaults:                     # Knative's config-br-defaults
//!     delivery: {retry: 10, backoffPolicy: exponential, backoffDelay: PT0.2S}
//! ```
//!
//! A node runs it as the `NodeSettings` that `routes::NodeSettings::from_spec` checks it into.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::delivery::DeliverySpec;
use super::meta::null_as_default;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfigSpec {
    /// `[group/]Kind/[namespace/]name: URL`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub addressables: BTreeMap<String, String>,
    #[serde(default)]
    pub broker_defaults: Option<BrokerDefaults>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerDefaults {
    /// Delivery for brokers that have none (Knative's default: 10 exponential retries from 0.2 s).
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}
