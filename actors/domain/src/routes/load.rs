//! Loading: each document read from YAML ([`crate::resources::loader`], the first three gates) is
//! converted into its runtime type, which is the fourth gate: its content is valid, as Knative's
//! webhook checks it. What passed and what did not is gathered into a [`LoadReport`], document by
//! document in the order read.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{ApiServerSource, Broker, BrokerDefaults, NodeSettings, PingSource, Trigger};
use crate::resources::broker_defaults::config_map_key;
use crate::resources::field::{Checked, Checker, FieldError, Strictness};
use crate::resources::loader::{read_str, read_value, Document, Parsed, Read, Reading};
use crate::resources::{Notice, ObjectKey, Origin, Refusal};

/// A resource that passed every gate.
#[derive(Debug, Clone)]
pub enum Resource {
    Broker(Broker),
    Trigger(Trigger),
    ApiServerSource(ApiServerSource),
    PingSource(PingSource),
    NodeConfig(NodeSettings),
    /// `data` of a ConfigMap (a Kafka broker's `spec.config`).
    ConfigMap {
        key: ObjectKey,
        data: BTreeMap<String, String>,
    },
    /// Decoded `data` and `stringData` of a Secret (a Kafka broker's auth Secret).
    Secret {
        key: ObjectKey,
        data: BTreeMap<String, String>,
    },
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Broker(_) => "Broker",
            Resource::Trigger(_) => "Trigger",
            Resource::ApiServerSource(_) => "ApiServerSource",
            Resource::PingSource(_) => "PingSource",
            Resource::NodeConfig(_) => "NodeConfig",
            Resource::ConfigMap { .. } => "ConfigMap",
            Resource::Secret { .. } => "Secret",
        }
    }
}

/// What reading one or more files produced.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub accepted: Vec<(Origin, Resource)>,
    pub refused: Vec<Refusal>,
    /// Loaded, but not as Knative's webhook would have it (see [`Strictness`]).
    pub warnings: Vec<Notice>,
    /// Documents of kinds knactor does not run (a Service, a Namespace...).
    pub skipped: Vec<Notice>,
    /// The text is not valid YAML: the parser stopped at the error (refused), so whatever came
    /// after it was never read. A reload keeps what the file held before rather than dropping it.
    pub broken_yaml: bool,
}

impl LoadReport {
    pub fn merge(&mut self, other: LoadReport) {
        self.accepted.extend(other.accepted);
        self.refused.extend(other.refused);
        self.warnings.extend(other.warnings);
        self.skipped.extend(other.skipped);
        self.broken_yaml |= other.broken_yaml;
    }
}

/// Loads one resource already parsed (an object from the Kubernetes API); `source` names it in
/// messages.
pub fn load_value(value: Value, source: &str, strictness: Strictness) -> LoadReport {
    check(read_value(value, source, strictness), strictness)
}

/// Loads every document of one file's text. `source` names the file in messages.
pub fn load_str(text: &str, source: &str, strictness: Strictness) -> LoadReport {
    check(read_str(text, source, strictness), strictness)
}

fn check(reading: Reading, strictness: Strictness) -> LoadReport {
    let mut report = LoadReport {
        broken_yaml: reading.broken_yaml,
        ..LoadReport::default()
    };
    for read in reading.documents {
        match read {
            Read::Parsed(parsed) => check_document(parsed, strictness, &mut report),
            Read::Refused(refusal) => report.refused.push(refusal),
            Read::Skipped(notice) => report.skipped.push(notice),
        }
    }
    report
}

fn check_document(parsed: Parsed, strictness: Strictness, report: &mut LoadReport) {
    let Parsed {
        origin,
        resource,
        rewritten,
        document,
    } = parsed;
    let outcome = convert(document.value, Checker::new(strictness)).map(|checked| Checked {
        value: checked.value,
        warnings: document
            .warnings
            .into_iter()
            .chain(checked.warnings)
            .collect(),
    });
    match outcome {
        Ok(checked) => {
            if let Some(note) = rewritten {
                report.warnings.push(Notice {
                    origin: origin.clone(),
                    resource: resource.clone(),
                    message: note,
                });
            }
            for warning in checked.warnings {
                report.warnings.push(Notice {
                    origin: origin.clone(),
                    resource: resource.clone(),
                    message: warning.to_string(),
                });
            }
            report.accepted.push((origin, checked.value));
        }
        Err(errors) => report.refused.push(Refusal {
            origin,
            resource,
            errors,
        }),
    }
}

/// A document as its runtime type.
fn convert(document: Document, checker: Checker) -> Result<Checked<Resource>, Vec<FieldError>> {
    match document {
        Document::Broker(object) => Broker::from_object(&object, checker)
            .map(|checked| map_checked(checked, Resource::Broker)),
        Document::Trigger(object) => Trigger::from_object(&object, checker)
            .map(|checked| map_checked(checked, Resource::Trigger)),
        Document::ApiServerSource(object) => ApiServerSource::from_object(&object, checker)
            .map(|checked| map_checked(checked, Resource::ApiServerSource)),
        Document::PingSource(object) => PingSource::from_object(&object, checker)
            .map(|checked| map_checked(checked, Resource::PingSource)),
        Document::NodeConfig(object) => {
            let mut checker = checker;
            let settings = NodeSettings::from_spec(&object.spec, &mut checker);
            checker.finish(Resource::NodeConfig(settings))
        }
        Document::ConfigMap { key, data } => {
            if key == config_map_key() {
                // Checked here, so a wrong default is refused with its field.
                BrokerDefaults::from_data(&data)?;
            }
            checker.finish(Resource::ConfigMap { key, data })
        }
        Document::Secret { key, data } => checker.finish(Resource::Secret { key, data }),
    }
}

fn map_checked<T>(checked: Checked<T>, wrap: impl FnOnce(T) -> Resource) -> Checked<Resource> {
    Checked {
        value: wrap(checked.value),
        warnings: checked.warnings,
    }
}

/// The key a resource is known by, for detecting duplicates across files.
pub fn identity(resource: &Resource) -> Option<(&'static str, ObjectKey)> {
    match resource {
        Resource::Broker(broker) => Some(("Broker", broker.key.clone())),
        Resource::Trigger(trigger) => Some(("Trigger", trigger.key.clone())),
        Resource::ApiServerSource(source) => Some(("ApiServerSource", source.key.clone())),
        Resource::PingSource(source) => Some(("PingSource", source.key.clone())),
        Resource::ConfigMap { key, .. } => Some(("ConfigMap", key.clone())),
        Resource::Secret { key, .. } => Some(("Secret", key.clone())),
        Resource::NodeConfig(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> LoadReport {
        load_str(text, "test.yaml", Strictness::Lenient)
    }

    fn refusal_lines(report: &LoadReport) -> Vec<String> {
        report.refused.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_broker_and_a_trigger_in_one_file_both_load() {
        let report = load(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\nspec: {}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t, namespace: team-a}\n\
             spec: {broker: default, subscriber: {uri: 'http://127.0.0.1:1/'}}\n",
        );
        assert!(report.refused.is_empty(), "{:?}", refusal_lines(&report));
        assert_eq!(report.accepted.len(), 2);
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn an_invalid_resource_is_refused_in_one_line_and_the_valid_one_still_loads() {
        let report = load(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: bad}\n\
             spec: {broker: default, filter: {attributes: {Type: x}}, subscriber: {uri: 'http://x/'}}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\nspec: {}\n",
        );
        assert_eq!(report.accepted.len(), 1);
        assert_eq!(
            refusal_lines(&report),
            vec!["test.yaml: Trigger default/bad: spec.filter.attributes.Type: invalid attribute name \"Type\": it must start with a lowercase letter and contain only lowercase letters and digits"]
        );
    }

    #[test]
    fn a_wrong_type_names_its_path() {
        let report = load(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\n\
             spec: {broker: default, filters: {exact: {type: a}}}\n",
        );
        let lines = refusal_lines(&report);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("test.yaml: Trigger default/t: spec.filters: invalid type: map, expected a sequence"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let report = load(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec: {delivery: {retries: 3}}\n",
        );
        let lines = refusal_lines(&report);
        assert!(
            lines[0].contains("spec.delivery.retries: unknown field `retries`, expected one of"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn a_document_without_spec_is_refused_but_an_empty_spec_loads() {
        let report = load(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: fragment}\n...\n",
        );
        assert!(refusal_lines(&report)[0].contains("spec: required"));
        let report = load(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: zero}\nspec:\n",
        );
        assert!(report.refused.is_empty());
        assert_eq!(
            report.warnings.len(),
            2,
            "missing broker and subscriber are told"
        );
    }

    #[test]
    fn yaml_nested_too_deep_is_refused_in_one_line_without_parsing_it() {
        let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let report = load(&deep);
        let lines = refusal_lines(&report);
        assert_eq!(
            lines,
            vec!["test.yaml: not valid YAML: nested more than 64 levels deep at line 1 column 67 (knactor reads YAML up to 64 levels deep)"]
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "refusing took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn yaml_syntax_errors_name_the_line() {
        let report =
            load("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: [\n");
        let lines = refusal_lines(&report);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("not valid YAML") && lines[0].contains("line"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn configmaps_and_secrets_load_with_their_data() {
        let report = load(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kafka-broker-config, namespace: knative-eventing}\n\
             data: {bootstrap.servers: 'k:9092', default.topic.partitions: '10'}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: auth}\ndata: {protocol: U0FTTF9TU0w=}\nstringData: {user: me}\n",
        );
        assert!(report.refused.is_empty(), "{:?}", refusal_lines(&report));
        let Resource::Secret { data, .. } = &report.accepted[1].1 else {
            panic!()
        };
        assert_eq!(data["protocol"], "SASL_SSL");
        assert_eq!(data["user"], "me");
        let report =
            load("apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ndata: {k: '!!!'}\n");
        assert!(refusal_lines(&report)[0].contains("data.k: is not base64"));
    }

    #[test]
    fn other_kinds_are_skipped_not_refused() {
        let report = load("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: event-display}\nspec: {}\n");
        assert!(report.refused.is_empty());
        assert_eq!(report.skipped.len(), 1);
    }

    #[test]
    fn old_api_versions_are_refused_with_the_version_to_use() {
        let report = load("apiVersion: sources.knative.dev/v1alpha2\nkind: ApiServerSource\nmetadata: {name: s}\nspec: {}\n");
        assert!(refusal_lines(&report)[0].contains("use sources.knative.dev/v1"));
        let report = load(
            "apiVersion: sources.eventing.knative.dev/v1beta1\nkind: ApiServerSource\nmetadata: {name: s}\nspec: {}\n",
        );
        assert!(refusal_lines(&report)[0]
            .contains("write it as sources.knative.dev/v1 ApiServerSource"));
    }

    /// The ApiServerSource of the 2019 article knactor started from, as it was written.
    const ARTICLE_SOURCE: &str = "apiVersion: sources.eventing.knative.dev/v1alpha1\nkind: ApiServerSource\n\
        metadata: {name: testevents, namespace: default}\n\
        spec:\n  serviceAccountName: events-sa\n  mode: Resource\n  resources:\n  - {apiVersion: v1, kind: Event}\n\
        \x20 sink: {apiVersion: eventing.knative.dev/v1alpha1, kind: Broker, name: default}\n";

    #[test]
    fn the_2019_shapes_load_as_v1_with_a_warning_and_strict_refuses_them() {
        let report = load(ARTICLE_SOURCE);
        assert!(report.refused.is_empty(), "{:?}", refusal_lines(&report));
        let Resource::ApiServerSource(source) = &report.accepted[0].1 else {
            panic!("{:?}", report.accepted)
        };
        assert_eq!(source.service_account, "events-sa");
        assert!(report.warnings[0]
            .to_string()
            .contains("read as sources.knative.dev/v1 ApiServerSource"));

        let strict = load_str(ARTICLE_SOURCE, "seed.yaml", Strictness::Strict);
        let line = strict.refused[0].to_string();
        assert!(
            line.contains("write it as sources.knative.dev/v1 ApiServerSource"),
            "{line}"
        );
        assert!(strict.accepted.is_empty());

        let report = load(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: Trigger\nmetadata: {name: t}\n\
             spec: {broker: default, filter: {sourceAndType: {type: dev.knative.apiserver.resource.add}},\n\
             \x20      subscriber: {uri: 'http://display/'}}\n",
        );
        let Resource::Trigger(_) = &report.accepted[0].1 else {
            panic!("{:?}", refusal_lines(&report))
        };
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_refused() {
        let report = load("- just\n- a list\n");
        assert!(refusal_lines(&report)[0].contains("found a list"));
    }

    #[test]
    fn missing_kind_is_refused() {
        let report = load("apiVersion: v1\nmetadata: {name: x}\n");
        assert_eq!(refusal_lines(&report), vec!["test.yaml: kind: required"]);
    }
}
