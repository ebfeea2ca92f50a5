//! `sources.knative.dev` ApiServerSource and PingSource, as written in YAML.
//!
//! Their shapes are checked here so that a configuration that holds them loads (or is refused with
//! the field named) the same way as brokers and triggers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::destination::DestinationSpec;
use super::field::{join, Checker};
use super::filter::FilterSpec;
use super::meta::null_as_default;

/// `ceOverrides`: extensions added to every event a source emits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudEventOverrides {
    #[serde(default, deserialize_with = "null_as_default")]
    pub extensions: BTreeMap<String, String>,
}

/// `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<String>,
}

/// One watched resource kind of an ApiServerSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiVersionKindSelector {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiVersionKind {
    pub api_version: String,
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerSourceSpec {
    #[serde(default)]
    pub sink: Option<DestinationSpec>,
    #[serde(default)]
    pub ce_overrides: Option<CloudEventOverrides>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<ApiVersionKindSelector>,
    #[serde(default)]
    pub owner: Option<ApiVersionKind>,
    /// `Reference` (default) or `Resource`.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub filters: Option<Vec<FilterSpec>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingSourceSpec {
    #[serde(default)]
    pub sink: Option<DestinationSpec>,
    #[serde(default)]
    pub ce_overrides: Option<CloudEventOverrides>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub data_base64: Option<String>,
}

impl ApiServerSourceSpec {
    pub fn check(&self, checker: &mut Checker, namespace: &str) {
        check_sink(checker, &self.sink, namespace);
        if self.resources.is_empty() {
            checker.tolerate(
                "spec.resources",
                "is empty: the source is loaded but watches nothing until it lists a resource",
            );
        }
        for (index, resource) in self.resources.iter().enumerate() {
            let path = format!("spec.resources[{index}]");
            if resource.kind.is_empty() {
                checker.error(join(&path, "kind"), "required");
            }
            if resource.api_version.is_empty() {
                checker.error(join(&path, "apiVersion"), "required");
            }
        }
        match self.mode.as_deref() {
            None | Some("Reference") | Some("Resource") => {}
            Some(other) => checker.error(
                "spec.mode",
                format!("{other:?} is not a mode: use Reference or Resource"),
            ),
        }
        if let Some(filters) = &self.filters {
            super::filter::check_filters(checker, "spec.filters", filters);
        }
    }
}

impl PingSourceSpec {
    pub fn check(&self, checker: &mut Checker, namespace: &str) {
        check_sink(checker, &self.sink, namespace);
        if self
            .schedule
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            checker.error("spec.schedule", "must not be empty");
        }
        if self.data.is_some() && self.data_base64.is_some() {
            checker.error(
                "spec.dataBase64",
                "data and dataBase64 are mutually exclusive",
            );
        }
        if let Some(encoded) = &self.data_base64 {
            use base64::Engine as _;
            if base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .is_err()
            {
                checker.error("spec.dataBase64", "is not valid base64");
            }
        }
    }
}

fn check_sink(checker: &mut Checker, sink: &Option<DestinationSpec>, namespace: &str) {
    match sink {
        Some(sink) => {
            sink.check(checker, "spec.sink", namespace);
        }
        None => checker.tolerate(
            "spec.sink",
            "missing: the source is loaded but emits nothing until it has a sink",
        ),
    }
}
