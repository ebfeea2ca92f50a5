//! Reading resource documents: multi-document YAML in, validated resources out, and for every
//! document that cannot be used, one line naming the file, the resource and the field.
//!
//! A document goes through four gates, each of which can refuse it:
//! 1. it is YAML (syntax errors name the line and column);
//! 2. it has `apiVersion` and `kind` of a resource knactor knows (other kinds, such as a Service
//!    next to a Trigger, are skipped with a note, not refused; Knative's 2019 shapes are rewritten
//!    into today's with a warning, see [`super::legacy`]);
//! 3. it has the kind's shape: known fields of the right types, and a `spec`;
//! 4. its content is valid, as Knative's webhook checks it (see [`crate::routes::Trigger::from_object`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::depth::{check_depth, MAX_DEPTH};
use super::field::{Checked, Checker, FieldError, Strictness};
use super::legacy;
use super::node_config::NodeConfigSpec;
use super::sources::{ApiServerSourceSpec, PingSourceSpec};
use super::{BrokerSpec, Object, ObjectKey, TriggerSpec};
use crate::routes::{ApiServerSource, Broker, NodeSettings, PingSource, Trigger};

/// Where a document came from: a file (or another origin) and its position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: String,
    /// 1-based index of the document in its file.
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document > 1 {
            write!(f, "{} (document {})", self.source, self.document)
        } else {
            f.write_str(&self.source)
        }
    }
}

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

/// A refused document, shown as one line.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub origin: Origin,
    /// `Trigger team-a/on-pod-add`, when the document got far enough to say.
    pub resource: Option<String>,
    pub errors: Vec<FieldError>,
}

impl Refusal {
    /// The line without where the document was read: `Trigger team-a/t: spec.filters: ...`. What
    /// the admission webhook answers `kubectl apply` with, and what `knactor validate` prints
    /// after the file's name.
    pub fn reason(&self) -> String {
        let errors: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        match &self.resource {
            Some(resource) => format!("{resource}: {}", errors.join("; ")),
            None => errors.join("; "),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.reason())
    }
}

/// Something worth telling that did not stop a document from loading.
#[derive(Debug, Clone)]
pub struct Notice {
    pub origin: Origin,
    pub resource: Option<String>,
    pub message: String,
}

impl Notice {
    /// The line without where the document was read (see [`Refusal::reason`]).
    pub fn text(&self) -> String {
        match &self.resource {
            Some(resource) => format!("{resource}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.text())
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

/// The kinds knactor reads, by `apiVersion` and `kind`.
enum Known {
    Broker,
    Trigger,
    ApiServerSource,
    PingSource,
    NodeConfig,
    ConfigMap,
    Secret,
}

const EVENTING_V1: &str = "eventing.knative.dev/v1";
const SOURCES_V1: &str = "sources.knative.dev/v1";
pub const NODE_CONFIG_API_VERSION: &str = "knactor.dev/v1alpha1";

/// Why a kind knactor reads is refused at its `apiVersion`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ApiVersionError {
    /// A 2019 source at a version [`legacy`] does not rewrite.
    #[error(
        "{api_version} {kind} is the 2019 shape; write it as {SOURCES_V1} {} (the sink becomes spec.sink.ref)",
        today_kind(.kind)
    )]
    OlderShape { api_version: String, kind: String },
    #[error("apiVersion {api_version:?} is not served for {kind}: use {}", .served.join(" or "))]
    NotServed {
        api_version: String,
        kind: String,
        served: &'static [&'static str],
    },
}

/// The kind a 2019 source is written as today.
fn today_kind(kind: &str) -> &str {
    if kind == "CronJobSource" {
        "PingSource"
    } else {
        kind
    }
}

fn classify(api_version: &str, kind: &str) -> Result<Option<Known>, ApiVersionError> {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let known = match (group, kind) {
        ("eventing.knative.dev", "Broker") => (Known::Broker, &[EVENTING_V1][..]),
        ("eventing.knative.dev", "Trigger") => (Known::Trigger, &[EVENTING_V1][..]),
        ("sources.knative.dev", "ApiServerSource") => (Known::ApiServerSource, &[SOURCES_V1][..]),
        ("sources.knative.dev", "PingSource") => (
            Known::PingSource,
            &[SOURCES_V1, "sources.knative.dev/v1beta2"][..],
        ),
        ("knactor.dev", "NodeConfig") => (Known::NodeConfig, &[NODE_CONFIG_API_VERSION][..]),
        ("", "ConfigMap") => (Known::ConfigMap, &["v1"][..]),
        ("", "Secret") => (Known::Secret, &["v1"][..]),
        ("sources.eventing.knative.dev", "ApiServerSource" | "CronJobSource") => {
            return Err(ApiVersionError::OlderShape {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })
        }
        _ => return Ok(None),
    };
    let (known, versions) = known;
    if versions.contains(&api_version) {
        Ok(Some(known))
    } else {
        Err(ApiVersionError::NotServed {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            served: versions,
        })
    }
}

/// Reads one resource already parsed (an object from the Kubernetes API); `source` names it in
/// messages.
pub fn load_value(value: Value, source: &str, strictness: Strictness) -> LoadReport {
    let mut report = LoadReport::default();
    let origin = Origin {
        source: source.to_string(),
        document: 1,
    };
    load_document(value, origin, strictness, &mut report);
    report
}

/// Reads every document of one file's text. `source` names the file in messages.
///
/// A text nested deeper than [`MAX_DEPTH`] is refused as a whole, before the YAML parser sees it
/// (see [`super::depth`]).
pub fn load_str(text: &str, source: &str, strictness: Strictness) -> LoadReport {
    let mut report = LoadReport::default();
    if let Err(too_deep) = check_depth(text, MAX_DEPTH) {
        report.refused.push(Refusal {
            origin: Origin {
                source: source.to_string(),
                document: 1,
            },
            resource: None,
            errors: vec![FieldError::new(
                "",
                format!(
                    "not valid YAML: {too_deep} (knactor reads YAML up to {MAX_DEPTH} levels deep)"
                ),
            )],
        });
        return report;
    }
    for (position, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            source: source.to_string(),
            document: position + 1,
        };
        let value = match serde::Deserialize::deserialize(document) {
            Ok(value) => value,
            Err(error) => {
                report.refused.push(Refusal {
                    origin,
                    resource: None,
                    errors: vec![FieldError::new("", format!("not valid YAML: {error}"))],
                });
                report.broken_yaml = true;
                // The parser cannot find the next document after a syntax error.
                break;
            }
        };
        load_document(value, origin, strictness, &mut report);
    }
    report
}

fn load_document(value: Value, origin: Origin, strictness: Strictness, report: &mut LoadReport) {
    let refuse = |report: &mut LoadReport,
                  origin: Origin,
                  resource: Option<String>,
                  errors: Vec<FieldError>| {
        report.refused.push(Refusal {
            origin,
            resource,
            errors,
        })
    };
    let mut mapping = match value {
        Value::Null => return,
        Value::Mapping(mapping) => mapping,
        other => {
            let found = describe(&other);
            return refuse(
                report,
                origin,
                None,
                vec![FieldError::new(
                    "",
                    format!(
                        "expected a resource (a mapping with apiVersion and kind), found {found}"
                    ),
                )],
            );
        }
    };
    let text_field = |name: &str| {
        mapping
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (Some(api_version), Some(kind)) = (text_field("apiVersion"), text_field("kind")) else {
        let mut errors = Vec::new();
        for field in ["apiVersion", "kind"] {
            if text_field(field).is_none() {
                errors.push(FieldError::new(field, "required"));
            }
        }
        return refuse(report, origin, None, errors);
    };
    let metadata = mapping.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(super::meta::DEFAULT_NAMESPACE);
    let resource = Some(format!("{kind} {namespace}/{name}"));

    let mut rewritten = None;
    let (api_version, kind) = if legacy::is_older_shape(&api_version, &kind) {
        let outcome = legacy::rewrite(&mut mapping, &api_version, &kind);
        match (outcome, strictness) {
            (Ok(done), Strictness::Lenient) => {
                rewritten = Some(done.note);
                (done.api_version, done.kind)
            }
            (Ok(done), Strictness::Strict) => {
                let problem = format!(
                    "{api_version} {kind} is no longer served by Knative (--strict): write it as {} {}",
                    done.api_version, done.kind
                );
                return refuse(
                    report,
                    origin,
                    resource,
                    vec![FieldError::new("apiVersion", problem)],
                );
            }
            (Err(problem), _) => {
                return refuse(
                    report,
                    origin,
                    resource,
                    vec![FieldError::new("apiVersion", problem.to_string())],
                )
            }
        }
    } else {
        (api_version, kind)
    };

    let known = match classify(&api_version, &kind) {
        Ok(Some(known)) => known,
        Ok(None) => {
            report.skipped.push(Notice {
                origin,
                resource,
                message: format!("skipped: knactor does not run {api_version} {kind}"),
            });
            return;
        }
        Err(problem) => {
            return refuse(
                report,
                origin,
                resource,
                vec![FieldError::new("apiVersion", problem.to_string())],
            )
        }
    };
    // Every field of a Broker's spec is optional, so a Broker may leave `spec` out (Knative's docs
    // do). The other kinds need fields in their spec: a document without one is a fragment (the
    // docs' "..."), not an empty resource, which would be written `spec:` or `spec: {}`.
    let spec_required = !matches!(
        known,
        Known::Broker | Known::NodeConfig | Known::ConfigMap | Known::Secret
    );
    if spec_required && !mapping.contains_key("spec") {
        return refuse(
            report,
            origin,
            resource,
            vec![FieldError::new(
                "spec",
                format!("required: a {kind} needs a spec (the document ends before one; write `spec: {{}}` for an empty one)"),
            )],
        );
    }
    if matches!(known, Known::ConfigMap) {
        if let Some(note) = unread_knative_config(&mapping) {
            report.skipped.push(Notice {
                origin,
                resource,
                message: note,
            });
            return;
        }
    }
    let value = Value::Mapping(mapping);
    let checker = Checker::new(strictness);
    let outcome = match known {
        Known::Broker => parse::<BrokerSpec>(value)
            .and_then(|object| Broker::from_object(&object, checker))
            .map(|checked| map_checked(checked, Resource::Broker)),
        Known::Trigger => parse::<TriggerSpec>(value)
            .and_then(|object| Trigger::from_object(&object, checker))
            .map(|checked| map_checked(checked, Resource::Trigger)),
        Known::ApiServerSource => parse::<ApiServerSourceSpec>(value)
            .and_then(|object| ApiServerSource::from_object(&object, checker))
            .map(|checked| map_checked(checked, Resource::ApiServerSource)),
        Known::PingSource => parse::<PingSourceSpec>(value)
            .and_then(|object| PingSource::from_object(&object, checker))
            .map(|checked| map_checked(checked, Resource::PingSource)),
        Known::NodeConfig => parse::<NodeConfigSpec>(value).and_then(|object| {
            let mut checker = checker;
            let settings = NodeSettings::from_spec(&object.spec, &mut checker);
            checker.finish(Resource::NodeConfig(settings))
        }),
        Known::ConfigMap => parse_plain::<ConfigMapDocument>(value).and_then(|document| {
            let key = ObjectKey::of(&document.metadata);
            if key == super::broker_defaults::config_map_key() {
                // Checked here, so a wrong default is refused with its field.
                crate::routes::BrokerDefaults::from_data(&document.data)?;
            }
            checker.finish(Resource::ConfigMap {
                key,
                data: document.data,
            })
        }),
        Known::Secret => parse_plain::<SecretDocument>(value).and_then(|document| {
            let mut checker = checker;
            let key = ObjectKey::of(&document.metadata);
            let data = document.decode(&mut checker);
            checker.finish(Resource::Secret { key, data })
        }),
    };
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
        Err(errors) => refuse(report, origin, resource, errors),
    }
}

fn map_checked<T>(checked: Checked<T>, wrap: impl FnOnce(T) -> Resource) -> Checked<Resource> {
    Checked {
        value: wrap(checked.value),
        warnings: checked.warnings,
    }
}

/// Deserializes a document into its kind's shape, naming the failing field's path.
fn parse<S: DeserializeOwned + Default>(value: Value) -> Result<Object<S>, Vec<FieldError>> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![FieldError::new(path, error.into_inner().to_string())]
    })
}

/// Knative's own ConfigMaps in `knative-eventing` that knactor does not read (its logging,
/// observability, features... are knactor's flags): a note saying so, never an "ok".
/// `config-br-defaults` is read; a Kafka broker's ConfigMap (any other name) is read when a
/// Broker names it.
fn unread_knative_config(mapping: &serde_yaml::Mapping) -> Option<String> {
    let metadata = mapping.get("metadata")?.as_mapping()?;
    let text = |name: &str| metadata.get(name).and_then(Value::as_str);
    let (namespace, name) = (text("namespace")?, text("name")?);
    (namespace == super::broker_defaults::NAMESPACE
        && name.starts_with("config-")
        && name != super::broker_defaults::NAME)
        .then(|| {
            format!(
                "skipped: knactor does not read ConfigMap {namespace}/{name} (Knative's own settings; knactor's are its flags: see knactor run --help); of Knative's ConfigMaps it reads {}/{} and the ConfigMaps Kafka Brokers name in spec.config",
                super::broker_defaults::NAMESPACE,
                super::broker_defaults::NAME
            )
        })
}

/// Deserializes a document that has no `spec` (ConfigMap, Secret), naming the failing field.
fn parse_plain<T: DeserializeOwned>(value: Value) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![FieldError::new(path, error.into_inner().to_string())]
    })
}

/// A `v1` ConfigMap.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigMapDocument {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: super::ObjectMeta,
    #[serde(default, deserialize_with = "super::meta::null_as_default")]
    data: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    binary_data: Option<BTreeMap<String, String>>,
    #[serde(default)]
    #[allow(dead_code)]
    immutable: Option<bool>,
}

/// A `v1` Secret.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SecretDocument {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: super::ObjectMeta,
    /// Base64 values.
    #[serde(default, deserialize_with = "super::meta::null_as_default")]
    data: BTreeMap<String, String>,
    /// Plain values; win over `data` (as in Kubernetes).
    #[serde(default, deserialize_with = "super::meta::null_as_default")]
    string_data: BTreeMap<String, String>,
    #[serde(default, rename = "type")]
    #[allow(dead_code)]
    secret_type: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    immutable: Option<bool>,
}

impl SecretDocument {
    fn decode(self, checker: &mut Checker) -> BTreeMap<String, String> {
        use base64::Engine as _;
        let mut decoded = BTreeMap::new();
        for (key, encoded) in self.data {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim());
            match bytes.ok().and_then(|bytes| String::from_utf8(bytes).ok()) {
                Some(text) => {
                    decoded.insert(key, text);
                }
                None => checker.error(format!("data.{key}"), "is not base64 of UTF-8 text"),
            }
        }
        decoded.extend(self.string_data);
        decoded
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
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
