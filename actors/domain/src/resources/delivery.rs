//! `DeliverySpec` (Knative duck v1), on a Broker or a Trigger. It converts to the runtime
//! `Delivery` (durations parsed, policy checked) in `routes::Delivery::from_spec`.

use serde::{Deserialize, Serialize};

use super::destination::DestinationSpec;

/// `delivery:` as written in YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliverySpec {
    #[serde(default)]
    pub dead_letter_sink: Option<DestinationSpec>,
    /// Minimum number of retries; total attempts = retry + 1.
    #[serde(default)]
    pub retry: Option<i64>,
    #[serde(default)]
    pub backoff_policy: Option<String>,
    #[serde(default)]
    pub backoff_delay: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retry_after_max: Option<String>,
    /// `json` (structured mode) or `binary`.
    #[serde(default)]
    pub format: Option<String>,
}

/// How an event is put on the wire to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentMode {
    /// Attributes in `ce-` headers, data as the body (the default).
    #[default]
    Binary,
    /// The whole event as `application/cloudevents+json` (`delivery.format: json`).
    Structured,
}

impl DeliverySpec {
    /// Knative's cluster default (`config-br-defaults`): 10 retries, exponential, from 0.2 s.
    pub fn knative_default() -> Self {
        Self {
            retry: Some(10),
            backoff_policy: Some("exponential".into()),
            backoff_delay: Some("PT0.2S".into()),
            ..Self::default()
        }
    }
}
