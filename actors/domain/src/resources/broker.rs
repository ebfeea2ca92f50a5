//! `eventing.knative.dev/v1` Broker, as written in YAML.

use serde::{Deserialize, Serialize};

use super::delivery::DeliverySpec;
use super::destination::KReference;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerSpec {
    /// Channel settings (for Kafka, a ConfigMap with `bootstrap.servers`, `default.topic.*`).
    #[serde(default)]
    pub config: Option<KReference>,
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}
