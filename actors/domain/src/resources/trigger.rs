//! `eventing.knative.dev/v1` Trigger, as written in YAML.

use serde::{Deserialize, Serialize};

use super::delivery::DeliverySpec;
use super::destination::{DestinationSpec, KReference};
use super::filter::{FilterSpec, LegacyFilterSpec};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    /// Name of the broker in the trigger's namespace (immutable in Knative).
    #[serde(default)]
    pub broker: Option<String>,
    /// Alpha `cross-namespace-event-links`: a broker in another namespace. Excludes `broker`.
    #[serde(default)]
    pub broker_ref: Option<KReference>,
    /// Legacy exact-match filter; replaced by `filters` when that is non-empty.
    #[serde(default)]
    pub filter: Option<LegacyFilterSpec>,
    #[serde(default)]
    pub filters: Option<Vec<FilterSpec>>,
    #[serde(default)]
    pub subscriber: Option<DestinationSpec>,
    /// Replaces the broker's `delivery` as a whole when present.
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}
