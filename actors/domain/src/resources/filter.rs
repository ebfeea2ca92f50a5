//! A Trigger's filters as written in YAML: the legacy `filter.attributes` and the `filters` list of
//! the subscriptions API (exact, prefix, suffix, all, any, not, cesql), with their conversion into
//! the runtime [`Filter`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::field::{join, Checker};
use crate::filter::{CesqlFilter, ExactFilter, ExistsFilter, Filter, PrefixFilter, SuffixFilter};

/// `filter:` (legacy): every listed attribute must equal its value; `""` means "present, any value".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacyFilterSpec {
    #[serde(default, deserialize_with = "super::meta::null_as_default")]
    pub attributes: BTreeMap<String, String>,
}

/// One entry of `filters:`. Knative allows one dialect per object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterSpec {
    #[serde(default)]
    pub exact: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub prefix: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub suffix: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub all: Option<Vec<FilterSpec>>,
    #[serde(default)]
    pub any: Option<Vec<FilterSpec>>,
    #[serde(default)]
    pub not: Option<Box<FilterSpec>>,
    #[serde(default)]
    pub cesql: Option<String>,
}

/// The schema of a filter object for Kubernetes: one level of dialects, nested filters (inside
/// `all`, `any`, `not`) kept as they are and validated by the conversion, because a structural
/// schema cannot be recursive.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for FilterSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FilterSpec".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let attributes = serde_json::json!({
            "type": "object",
            "additionalProperties": {"type": "string"}
        });
        let nested = serde_json::json!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        });
        schemars::json_schema!({
            "type": "object",
            "description": "A subscriptions API filter: one dialect of exact, prefix, suffix, all, any, not or cesql.",
            "properties": {
                "exact": attributes,
                "prefix": attributes,
                "suffix": attributes,
                "all": {"type": "array", "items": nested},
                "any": {"type": "array", "items": nested},
                "not": nested,
                "cesql": {"type": "string"}
            }
        })
    }
}

/// Knative's rule for attribute names in filters: lowercase letters and digits, starting with a
/// letter (the CloudEvents attribute naming rule).
pub fn is_valid_attribute_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl LegacyFilterSpec {
    pub fn check(&self, checker: &mut Checker, path: &str) -> Filter {
        let attributes_path = join(path, "attributes");
        for name in self.attributes.keys() {
            if !is_valid_attribute_name(name) {
                checker.error(join(&attributes_path, name), invalid_attribute_name(name));
            }
        }
        Filter::all(
            self.attributes
                .iter()
                .map(|(name, value)| {
                    if value.is_empty() {
                        Filter::Exists(ExistsFilter::new(name.clone()))
                    } else {
                        Filter::Exact(ExactFilter::new(name.clone(), value.clone()))
                    }
                })
                .collect(),
        )
    }
}

/// Converts `filters:` (AND of its entries).
pub fn check_filters(checker: &mut Checker, path: &str, filters: &[FilterSpec]) -> Filter {
    let converted: Vec<Filter> = filters
        .iter()
        .enumerate()
        .map(|(index, spec)| spec.check(checker, &format!("{path}[{index}]")))
        .collect();
    Filter::all(converted)
}

impl FilterSpec {
    fn dialects(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if self.exact.is_some() {
            found.push("exact");
        }
        if self.prefix.is_some() {
            found.push("prefix");
        }
        if self.suffix.is_some() {
            found.push("suffix");
        }
        if self.all.is_some() {
            found.push("all");
        }
        if self.any.is_some() {
            found.push("any");
        }
        if self.not.is_some() {
            found.push("not");
        }
        if self.cesql.is_some() {
            found.push("cesql");
        }
        found
    }

    /// Validates one filter object and converts it. An object with several dialects (which Knative's
    /// documentation shows and its webhook refuses) is read as all of them together.
    pub fn check(&self, checker: &mut Checker, path: &str) -> Filter {
        let dialects = self.dialects();
        match dialects.len() {
            0 => checker.error(
                path,
                "empty filter: set one of exact, prefix, suffix, all, any, not, cesql",
            ),
            1 => {}
            _ => checker.tolerate(
                path,
                format!(
                    "sets {} dialects ({}); Knative allows one per filter object, knactor reads them as all required",
                    dialects.len(),
                    dialects.join(", ")
                ),
            ),
        }

        let mut parts = Vec::new();
        if let Some(exact) = &self.exact {
            parts.extend(check_attribute_map(
                checker,
                &join(path, "exact"),
                exact,
                |attribute, value| Filter::Exact(ExactFilter::new(attribute, value)),
            ));
        }
        if let Some(prefix) = &self.prefix {
            parts.extend(check_attribute_map(
                checker,
                &join(path, "prefix"),
                prefix,
                |attribute, value| Filter::Prefix(PrefixFilter::new(attribute, value)),
            ));
        }
        if let Some(suffix) = &self.suffix {
            parts.extend(check_attribute_map(
                checker,
                &join(path, "suffix"),
                suffix,
                |attribute, value| Filter::Suffix(SuffixFilter::new(attribute, value)),
            ));
        }
        if let Some(all) = &self.all {
            let all_path = join(path, "all");
            if all.is_empty() {
                checker.error(&all_path, "must contain at least one filter");
            }
            parts.push(Filter::all(check_list(checker, &all_path, all)));
        }
        if let Some(any) = &self.any {
            let any_path = join(path, "any");
            if any.is_empty() {
                checker.error(&any_path, "must contain at least one filter");
            }
            parts.push(Filter::any(check_list(checker, &any_path, any)));
        }
        if let Some(not) = &self.not {
            parts.push(Filter::negate(not.check(checker, &join(path, "not"))));
        }
        if let Some(expression) = &self.cesql {
            let cesql_path = join(path, "cesql");
            if expression.trim().is_empty() {
                checker.error(&cesql_path, "must not be empty");
            } else {
                match knactor_cesql::Expression::parse(expression) {
                    Ok(parsed) => parts.push(Filter::Cesql(CesqlFilter::new(Arc::new(parsed)))),
                    Err(error) => checker.error(
                        &cesql_path,
                        format!("{expression:?} is not valid CESQL: {error}"),
                    ),
                }
            }
        }
        Filter::all(parts)
    }
}

fn check_list(checker: &mut Checker, path: &str, filters: &[FilterSpec]) -> Vec<Filter> {
    filters
        .iter()
        .enumerate()
        .map(|(index, spec)| spec.check(checker, &format!("{path}[{index}]")))
        .collect()
}

/// `exact`, `prefix` and `suffix`: one or more `attribute: value` pairs, all required to match.
fn check_attribute_map(
    checker: &mut Checker,
    path: &str,
    map: &BTreeMap<String, String>,
    build: impl Fn(String, String) -> Filter,
) -> Vec<Filter> {
    if map.is_empty() {
        checker.error(path, "must name at least one attribute");
    }
    map.iter()
        .map(|(attribute, value)| {
            if !is_valid_attribute_name(attribute) {
                checker.error(join(path, attribute), invalid_attribute_name(attribute));
            }
            if value.is_empty() {
                checker.error(join(path, attribute), "value must not be empty");
            }
            build(attribute.clone(), value.clone())
        })
        .collect()
}

fn invalid_attribute_name(name: &str) -> String {
    format!(
        "invalid attribute name {name:?}: it must start with a lowercase letter and contain only lowercase letters and digits"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::field::Strictness;

    fn parse(yaml: &str) -> Vec<FilterSpec> {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn errors_of(yaml: &str) -> Vec<String> {
        let mut checker = Checker::new(Strictness::Strict);
        check_filters(&mut checker, "spec.filters", &parse(yaml));
        match checker.finish(()) {
            Ok(_) => vec![],
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn attribute_names_follow_the_cloudevents_rule() {
        assert!(is_valid_attribute_name("type"));
        assert!(is_valid_attribute_name("myext2"));
        for bad in ["", "Type", "2type", "my-ext", "my_ext", "ünï"] {
            assert!(!is_valid_attribute_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_attribute_name_is_refused_with_its_path() {
        assert_eq!(
            errors_of("- exact: {Type: x}"),
            vec!["spec.filters[0].exact.Type: invalid attribute name \"Type\": it must start with a lowercase letter and contain only lowercase letters and digits"]
        );
    }

    #[test]
    fn empty_values_and_empty_maps_are_refused() {
        assert_eq!(
            errors_of("- prefix: {source: ''}"),
            vec!["spec.filters[0].prefix.source: value must not be empty"]
        );
        assert_eq!(
            errors_of("- suffix: {}"),
            vec!["spec.filters[0].suffix: must name at least one attribute"]
        );
    }

    #[test]
    fn all_and_any_need_at_least_one_filter() {
        assert_eq!(
            errors_of("- all: []\n- any: []"),
            vec![
                "spec.filters[0].all: must contain at least one filter",
                "spec.filters[1].any: must contain at least one filter"
            ]
        );
    }

    #[test]
    fn cesql_must_parse() {
        let errors = errors_of("- cesql: \"type = \"");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("spec.filters[0].cesql: \"type = \" is not valid CESQL"));
    }

    #[test]
    fn nested_errors_carry_the_whole_path() {
        let errors = errors_of("- any:\n  - not: {exact: {BAD: x}}");
        assert!(errors[0].starts_with("spec.filters[0].any[0].not.exact.BAD:"));
    }

    #[test]
    fn several_dialects_in_one_object_are_refused_when_strict() {
        assert_eq!(
            errors_of("- exact: {type: a}\n  suffix: {source: b}"),
            vec!["spec.filters[0]: sets 2 dialects (exact, suffix); Knative allows one per filter object, knactor reads them as all required"]
        );
    }

    #[test]
    fn several_dialects_in_one_object_are_read_as_all_of_them_when_lenient() {
        let mut checker = Checker::new(Strictness::Lenient);
        let filter = check_filters(
            &mut checker,
            "spec.filters",
            &parse("- exact: {type: a}\n  suffix: {source: b}"),
        );
        let checked = checker.finish(filter).unwrap();
        assert_eq!(checked.warnings.len(), 1);
        assert!(matches!(checked.value, Filter::All(ref parts) if parts.len() == 2));
    }

    #[test]
    fn an_empty_filter_object_is_refused() {
        assert_eq!(
            errors_of("- {}"),
            vec!["spec.filters[0]: empty filter: set one of exact, prefix, suffix, all, any, not, cesql"]
        );
    }
}
