//! Reading resource documents: multi-document YAML in, validated resources out, and for every
//! document that cannot be used, one line naming the file, the resource and the field.
//!
//! A document goes through four gates, each of which can refuse it:
//! 1. it is YAML (syntax errors name the line and column);
//! 2. it has `apiVersion` and `kind` of a resource knactor knows (other kinds, such as a Service
//!    next to a Trigger, are skipped with a note, not refused; Knative's 2019 shapes are rewritten
//!    into today's with a warning, see [`super::legacy`]);
//! 3. it has the kind's shape: known fields of the right types, and a `spec`;
//! 4. its content is valid, as Knative's webhook checks it.
//!
//! This module is the first three gates: it reads each document into its kind's shape (a
//! [`Document`]). The fourth is the conversion of that shape into its runtime type, which is the
//! routes' (`routes::load_str` runs all four and gathers what passed).

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

/// A document of a kind knactor reads, in that kind's shape: read, not yet checked.
// Unboxed: one lives from its reading to its conversion, and there is one per document.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Document {
    Broker(Object<BrokerSpec>),
    Trigger(Object<TriggerSpec>),
    ApiServerSource(Object<ApiServerSourceSpec>),
    PingSource(Object<PingSourceSpec>),
    NodeConfig(Object<NodeConfigSpec>),
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

/// A document that passed the first three gates.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub origin: Origin,
    /// `Trigger team-a/on-pod-add`.
    pub resource: Option<String>,
    /// How a 2019 shape was rewritten into today's: a warning, once the document is accepted.
    pub rewritten: Option<String>,
    /// The document, and what reading it tolerated.
    pub document: Checked<Document>,
}

/// What became of one document read.
// Unboxed, as `Document`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Read {
    Parsed(Parsed),
    Refused(Refusal),
    /// A kind knactor does not run, or a Knative ConfigMap it does not read.
    Skipped(Notice),
}

/// What reading a text produced, in the order of its documents.
#[derive(Debug, Default)]
pub struct Reading {
    pub documents: Vec<Read>,
    /// The text is not valid YAML: the parser stopped at the error (refused), so whatever came
    /// after it was never read.
    pub broken_yaml: bool,
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
pub fn read_value(value: Value, source: &str, strictness: Strictness) -> Reading {
    let mut reading = Reading::default();
    let origin = Origin {
        source: source.to_string(),
        document: 1,
    };
    read_document(value, origin, strictness, &mut reading);
    reading
}

/// Reads every document of one file's text. `source` names the file in messages.
///
/// A text nested deeper than [`MAX_DEPTH`] is refused as a whole, before the YAML parser sees it
/// (see [`super::depth`]).
pub fn read_str(text: &str, source: &str, strictness: Strictness) -> Reading {
    let mut reading = Reading::default();
    if let Err(too_deep) = check_depth(text, MAX_DEPTH) {
        reading.documents.push(Read::Refused(Refusal {
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
        }));
        return reading;
    }
    for (position, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            source: source.to_string(),
            document: position + 1,
        };
        let value = match serde::Deserialize::deserialize(document) {
            Ok(value) => value,
            Err(error) => {
                reading.documents.push(Read::Refused(Refusal {
                    origin,
                    resource: None,
                    errors: vec![FieldError::new("", format!("not valid YAML: {error}"))],
                }));
                reading.broken_yaml = true;
                // The parser cannot find the next document after a syntax error.
                break;
            }
        };
        read_document(value, origin, strictness, &mut reading);
    }
    reading
}

fn read_document(value: Value, origin: Origin, strictness: Strictness, reading: &mut Reading) {
    let refuse = |reading: &mut Reading,
                  origin: Origin,
                  resource: Option<String>,
                  errors: Vec<FieldError>| {
        reading.documents.push(Read::Refused(Refusal {
            origin,
            resource,
            errors,
        }))
    };
    let mut mapping = match value {
        Value::Null => return,
        Value::Mapping(mapping) => mapping,
        other => {
            let found = describe(&other);
            return refuse(
                reading,
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
        return refuse(reading, origin, None, errors);
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
                    reading,
                    origin,
                    resource,
                    vec![FieldError::new("apiVersion", problem)],
                );
            }
            (Err(problem), _) => {
                return refuse(
                    reading,
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
            reading.documents.push(Read::Skipped(Notice {
                origin,
                resource,
                message: format!("skipped: knactor does not run {api_version} {kind}"),
            }));
            return;
        }
        Err(problem) => {
            return refuse(
                reading,
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
            reading,
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
            reading.documents.push(Read::Skipped(Notice {
                origin,
                resource,
                message: note,
            }));
            return;
        }
    }
    let value = Value::Mapping(mapping);
    let outcome = match known {
        Known::Broker => parse::<BrokerSpec>(value).map(|object| read(Document::Broker(object))),
        Known::Trigger => parse::<TriggerSpec>(value).map(|object| read(Document::Trigger(object))),
        Known::ApiServerSource => parse::<ApiServerSourceSpec>(value)
            .map(|object| read(Document::ApiServerSource(object))),
        Known::PingSource => {
            parse::<PingSourceSpec>(value).map(|object| read(Document::PingSource(object)))
        }
        Known::NodeConfig => {
            parse::<NodeConfigSpec>(value).map(|object| read(Document::NodeConfig(object)))
        }
        Known::ConfigMap => parse_plain::<ConfigMapDocument>(value).map(|document| {
            read(Document::ConfigMap {
                key: ObjectKey::of(&document.metadata),
                data: document.data,
            })
        }),
        Known::Secret => parse_plain::<SecretDocument>(value).and_then(|document| {
            let mut checker = Checker::new(strictness);
            let key = ObjectKey::of(&document.metadata);
            let data = document.decode(&mut checker);
            checker.finish(Document::Secret { key, data })
        }),
    };
    match outcome {
        Ok(document) => reading.documents.push(Read::Parsed(Parsed {
            origin,
            resource,
            rewritten,
            document,
        })),
        Err(errors) => refuse(reading, origin, resource, errors),
    }
}

/// A document that took no checking to read.
fn read(document: Document) -> Checked<Document> {
    Checked {
        value: document,
        warnings: Vec::new(),
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
