//! `sources.knative.dev` ApiServerSource and PingSource, as written in YAML.
//!
//! Their shapes are checked here so that a configuration that holds them loads (or is refused with
//! the field named) the same way as brokers and triggers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::destination::DestinationSpec;
use super::field::{join, Checker, FieldError};
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

/// Why a label selector query (`a=b,c in (x,y)`) cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorQueryError {
    #[error("{term:?} in {text:?} is not a label selector term (a=b, a!=b, a in (x,y), a notin (x), a, !a)")]
    BadTerm { term: String, text: String },
    /// Read, but not a valid selector (a key or value Kubernetes refuses).
    #[error("{text:?}: {source}")]
    Invalid {
        text: String,
        #[source]
        source: FieldError,
    },
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

impl LabelSelector {
    /// Validates the operators and values as Kubernetes does.
    pub fn check(&self, checker: &mut Checker, path: &str) {
        for (index, requirement) in self.match_expressions.iter().enumerate() {
            let at = format!("{path}.matchExpressions[{index}]");
            if requirement.key.is_empty() {
                checker.error(join(&at, "key"), "required");
            }
            match requirement.operator.as_str() {
                "In" | "NotIn" if requirement.values.is_empty() => checker.error(
                    join(&at, "values"),
                    format!("must not be empty with operator {}", requirement.operator),
                ),
                "Exists" | "DoesNotExist" if !requirement.values.is_empty() => checker.error(
                    join(&at, "values"),
                    format!("must be empty with operator {}", requirement.operator),
                ),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                // Knative's webhook lets it through (its own rendered samples have one); the API
                // server would refuse the selector, so knactor reads it as matching nothing.
                other => checker.tolerate(
                    join(&at, "operator"),
                    format!("{other:?} is not an operator: use In, NotIn, Exists or DoesNotExist (until then the selector matches nothing)"),
                ),
            }
        }
    }

    /// True when nothing is required (`{}` selects everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|requirement| {
                let value = labels.get(&requirement.key);
                match requirement.operator.as_str() {
                    "In" => value.is_some_and(|v| requirement.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !requirement.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }

    /// The selector in the API server's `labelSelector` query syntax
    /// (`app=web,tier in (a,b),!legacy`).
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        for requirement in &self.match_expressions {
            let key = &requirement.key;
            let values = requirement.values.join(",");
            parts.push(match requirement.operator.as_str() {
                "In" => format!("{key} in ({values})"),
                "NotIn" => format!("{key} notin ({values})"),
                "DoesNotExist" => format!("!{key}"),
                "Exists" => key.clone(),
                // Not an operator (tolerated when loading): a selector nothing matches.
                _ => format!("{key},!{key}"),
            });
        }
        parts.join(",")
    }

    /// Reads the query syntax back (`a=b,c!=d,e in (x,y),f notin (z),g,!h`), as flags take selectors.
    pub fn parse_query(text: &str) -> Result<LabelSelector, SelectorQueryError> {
        let mut selector = LabelSelector::default();
        let mut rest = text.trim();
        while !rest.is_empty() {
            // A term ends at a comma outside parentheses.
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    c == ',' && depth == 0
                })
                .map_or(rest.len(), |(at, _)| at);
            let term = rest[..end].trim();
            rest = rest[end..].trim_start_matches(',').trim();
            let bad = || SelectorQueryError::BadTerm {
                term: term.to_string(),
                text: text.to_string(),
            };
            let requirement =
                |key: &str, operator: &str, values: Vec<String>| LabelSelectorRequirement {
                    key: key.trim().to_string(),
                    operator: operator.to_string(),
                    values,
                };
            let list = |inner: &str| -> Result<Vec<String>, SelectorQueryError> {
                let inner = inner.trim();
                let inner = inner
                    .strip_prefix('(')
                    .and_then(|i| i.strip_suffix(')'))
                    .ok_or_else(bad)?;
                Ok(inner
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect())
            };
            if let Some((key, value)) = term.split_once("!=") {
                selector.match_expressions.push(requirement(
                    key,
                    "NotIn",
                    vec![value.trim().to_string()],
                ));
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                selector
                    .match_labels
                    .insert(key.trim().to_string(), value.trim().to_string());
            } else if let Some((key, values)) = term.split_once(" notin ") {
                selector
                    .match_expressions
                    .push(requirement(key, "NotIn", list(values)?));
            } else if let Some((key, values)) = term.split_once(" in ") {
                selector
                    .match_expressions
                    .push(requirement(key, "In", list(values)?));
            } else if let Some(key) = term.strip_prefix('!') {
                selector
                    .match_expressions
                    .push(requirement(key, "DoesNotExist", Vec::new()));
            } else if !term.is_empty() && !term.contains(char::is_whitespace) {
                selector
                    .match_expressions
                    .push(requirement(term, "Exists", Vec::new()));
            } else {
                return Err(bad());
            }
        }
        let mut checker = Checker::new(super::Strictness::Strict);
        selector.check(&mut checker, "selector");
        checker
            .finish(selector)
            .map(|checked| checked.value)
            .map_err(|errors| SelectorQueryError::Invalid {
                text: text.to_string(),
                source: errors[0].clone(),
            })
    }
}
