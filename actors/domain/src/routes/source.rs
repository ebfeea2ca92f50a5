//! `PingSource` and `ApiServerSource` at runtime, converted once from their YAML shapes.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use url::Url;

use super::destination::Destination;
use crate::filter::Filter;
use crate::resources::field::{check_dns_name, join, Checked, Checker, FieldError};
use crate::resources::filter::{check_filters, is_valid_attribute_name};
use crate::resources::sources::{
    ApiVersionKind, CloudEventOverrides, LabelSelector, PingSourceSpec,
};
use crate::resources::{ApiServerSourceSpec, DestinationSpec, Object, ObjectKey, ObjectMeta};
use crate::schedule::PingSchedule;

/// The CloudEvents type of every PingSource event.
pub const PING_EVENT_TYPE: &str = "dev.knative.sources.ping";

/// A validated PingSource.
#[derive(Debug, Clone, PartialEq)]
pub struct PingSource {
    pub key: ObjectKey,
    /// `metadata.uid` in a cluster. Event ids and the saved position derive from it, so a source
    /// deleted and created again starts afresh.
    pub uid: Option<String>,
    pub schedule: PingSchedule,
    pub content_type: Option<String>,
    /// `data`, or `dataBase64` decoded.
    pub data: Option<Bytes>,
    /// `ceOverrides.extensions`.
    pub extensions: BTreeMap<String, String>,
    /// `None` when the spec has no sink (the source is then not ready).
    pub sink: Option<Destination>,
}

impl PingSource {
    /// Validates a PingSource document as Knative's webhook does and converts it.
    pub fn from_object(
        object: &Object<PingSourceSpec>,
        checker: Checker,
    ) -> Result<Checked<PingSource>, Vec<FieldError>> {
        let mut checker = checker;
        let spec = &object.spec;
        let namespace = check_meta(&mut checker, &object.metadata);
        let schedule = match PingSchedule::parse(spec.schedule.as_deref(), spec.timezone.as_deref())
        {
            Ok(schedule) => Some(schedule),
            Err(problem) => {
                checker.error(problem.field, problem.message);
                None
            }
        };
        let data = match (&spec.data, &spec.data_base64) {
            (Some(_), Some(_)) => {
                checker.error(
                    "spec.dataBase64",
                    "data and dataBase64 are mutually exclusive",
                );
                None
            }
            (Some(text), None) => Some(Bytes::from(text.clone())),
            (None, Some(encoded)) => {
                match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
                    Ok(decoded) => Some(Bytes::from(decoded)),
                    Err(error) => {
                        checker.error("spec.dataBase64", format!("is not valid base64: {error}"));
                        None
                    }
                }
            }
            (None, None) => None,
        };
        let extensions = check_overrides(&mut checker, spec.ce_overrides.as_ref());
        let sink = check_sink(&mut checker, spec.sink.as_ref(), &namespace);
        checker.finish_with(|| PingSource {
            key: ObjectKey::of(&object.metadata),
            uid: object.metadata.uid.clone(),
            schedule: schedule.expect("no errors"),
            content_type: spec.content_type.clone().filter(|c| !c.is_empty()),
            data,
            extensions,
            sink,
        })
    }

    /// `source` of its events: `/apis/v1/namespaces/<ns>/pingsources/<name>`.
    pub fn event_source(&self) -> String {
        format!(
            "/apis/v1/namespaces/{}/pingsources/{}",
            self.key.namespace, self.key.name
        )
    }
}

/// What an ApiServerSource sends for each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiServerMode {
    /// `data` is a reference to the object (`dev.knative.apiserver.ref.*`).
    #[default]
    Reference,
    /// `data` is the object itself (`dev.knative.apiserver.resource.*`).
    Resource,
}

/// One kind an ApiServerSource watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedKind {
    pub api_version: String,
    pub kind: String,
    /// Only objects with these labels.
    pub selector: Option<LabelSelector>,
}

/// The namespaces an ApiServerSource watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceScope {
    /// No `namespaceSelector`: the source's own namespace.
    Own(String),
    /// `namespaceSelector: {}`: every namespace.
    All,
    /// Namespaces whose labels match.
    Selected(LabelSelector),
}

/// A validated ApiServerSource.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiServerSource {
    pub key: ObjectKey,
    pub uid: Option<String>,
    pub mode: ApiServerMode,
    pub resources: Vec<WatchedKind>,
    /// Only objects with an owner reference of this kind.
    pub owner: Option<ApiVersionKind>,
    pub namespaces: NamespaceScope,
    /// The ServiceAccount whose permissions the watches use (Knative's default: `default`).
    pub service_account: String,
    pub extensions: BTreeMap<String, String>,
    /// `spec.filters` (Knative's alpha `new-apiserversource-filters`): only matching events are sent.
    pub filter: Option<Filter>,
    pub sink: Option<Destination>,
}

impl ApiServerSource {
    /// Validates an ApiServerSource document as Knative's webhook does and converts it.
    pub fn from_object(
        object: &Object<ApiServerSourceSpec>,
        checker: Checker,
    ) -> Result<Checked<ApiServerSource>, Vec<FieldError>> {
        let mut checker = checker;
        let spec = &object.spec;
        let namespace = check_meta(&mut checker, &object.metadata);
        let mode = match spec.mode.as_deref() {
            None | Some("") | Some("Reference") => ApiServerMode::Reference,
            Some("Resource") => ApiServerMode::Resource,
            Some(other) => {
                checker.error(
                    "spec.mode",
                    format!("{other:?} is not a mode: use Reference or Resource"),
                );
                ApiServerMode::Reference
            }
        };
        if spec.resources.is_empty() {
            // Knative's webhook refuses it; its own rendered test samples have it (watching nothing).
            checker.tolerate(
                "spec.resources",
                "must list at least one resource to watch (apiVersion and kind); this source watches nothing",
            );
        }
        let resources = spec
            .resources
            .iter()
            .enumerate()
            .map(|(index, resource)| {
                let path = format!("spec.resources[{index}]");
                if resource.kind.is_empty() {
                    checker.error(join(&path, "kind"), "required");
                }
                if resource.api_version.is_empty() {
                    checker.error(join(&path, "apiVersion"), "required");
                }
                if let Some(selector) = &resource.selector {
                    selector.check(&mut checker, &join(&path, "selector"));
                }
                WatchedKind {
                    api_version: resource.api_version.clone(),
                    kind: resource.kind.clone(),
                    selector: resource.selector.clone().filter(|s| !s.is_empty()),
                }
            })
            .collect();
        if let Some(owner) = &spec.owner {
            if owner.kind.is_empty() || owner.api_version.is_empty() {
                checker.error("spec.owner", "needs both apiVersion and kind");
            }
        }
        let namespaces = match &spec.namespace_selector {
            None => NamespaceScope::Own(namespace.clone()),
            Some(selector) if selector.is_empty() => NamespaceScope::All,
            Some(selector) => {
                selector.check(&mut checker, "spec.namespaceSelector");
                NamespaceScope::Selected(selector.clone())
            }
        };
        let service_account = spec
            .service_account_name
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "default".into());
        check_dns_name(
            &mut checker,
            "spec.serviceAccountName",
            &service_account,
            253,
        );
        let filter = spec
            .filters
            .as_ref()
            .filter(|filters| !filters.is_empty())
            .map(|filters| check_filters(&mut checker, "spec.filters", filters));
        let extensions = check_overrides(&mut checker, spec.ce_overrides.as_ref());
        let sink = check_sink(&mut checker, spec.sink.as_ref(), &namespace);
        checker.finish(ApiServerSource {
            key: ObjectKey::of(&object.metadata),
            uid: object.metadata.uid.clone(),
            mode,
            resources,
            owner: spec.owner.clone(),
            namespaces,
            service_account,
            extensions,
            filter,
            sink,
        })
    }
}

/// A source of either kind.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceDefinition {
    Ping(Arc<PingSource>),
    ApiServer(Arc<ApiServerSource>),
}

impl SourceDefinition {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceDefinition::Ping(_) => "PingSource",
            SourceDefinition::ApiServer(_) => "ApiServerSource",
        }
    }

    pub fn key(&self) -> &ObjectKey {
        match self {
            SourceDefinition::Ping(source) => &source.key,
            SourceDefinition::ApiServer(source) => &source.key,
        }
    }

    pub fn sink(&self) -> Option<&Destination> {
        match self {
            SourceDefinition::Ping(source) => source.sink.as_ref(),
            SourceDefinition::ApiServer(source) => source.sink.as_ref(),
        }
    }
}

/// A source ready to run: its sink resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRoute {
    pub source: SourceDefinition,
    pub sink: Url,
}

fn check_meta(checker: &mut Checker, metadata: &ObjectMeta) -> String {
    let namespace = metadata.namespace().to_string();
    check_dns_name(checker, "metadata.name", metadata.name(), 253);
    check_dns_name(checker, "metadata.namespace", &namespace, 63);
    namespace
}

fn check_sink(
    checker: &mut Checker,
    sink: Option<&DestinationSpec>,
    namespace: &str,
) -> Option<Destination> {
    match sink {
        Some(sink) => Destination::from_spec(sink, checker, "spec.sink", namespace),
        None => {
            checker.tolerate(
                "spec.sink",
                "missing: the source is loaded but sends nothing until it has a sink",
            );
            None
        }
    }
}

/// `ceOverrides.extensions`: names as CloudEvents allows them, not the attributes a source sets.
fn check_overrides(
    checker: &mut Checker,
    overrides: Option<&CloudEventOverrides>,
) -> BTreeMap<String, String> {
    let Some(overrides) = overrides else {
        return BTreeMap::new();
    };
    for name in overrides.extensions.keys() {
        let path = format!("spec.ceOverrides.extensions.{name}");
        if !is_valid_attribute_name(name) {
            checker.error(
                path,
                "is not a CloudEvents attribute name: use lowercase letters and digits, starting with a letter",
            );
        } else if matches!(
            name.as_str(),
            "specversion"
                | "id"
                | "source"
                | "type"
                | "subject"
                | "time"
                | "datacontenttype"
                | "dataschema"
                | "data"
        ) {
            checker.error(
                path,
                "is a context attribute the source sets; only extensions can be overridden",
            );
        }
    }
    overrides.extensions.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Strictness;
    use crate::routes::{load_str, Resource};

    fn load(yaml: &str) -> Result<Resource, String> {
        let report = load_str(yaml, "s.yaml", Strictness::Strict);
        match (report.accepted.into_iter().next(), report.refused.first()) {
            (Some((_, resource)), None) => Ok(resource),
            (_, Some(refusal)) => Err(refusal.to_string()),
            (None, None) => Err("nothing".into()),
        }
    }

    #[test]
    fn a_ping_source_converts_with_its_data_and_overrides() {
        let Resource::PingSource(ping) = load(
            "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: p, namespace: team-a}\n\
             spec:\n  schedule: '*/2 * * * *'\n  timezone: Europe/Paris\n  contentType: application/json\n\
             \x20 data: '{\"hello\":\"world\"}'\n  ceOverrides: {extensions: {origin: cron}}\n\
             \x20 sink: {uri: 'http://127.0.0.1:1/'}\n",
        )
        .unwrap() else {
            panic!("not a PingSource")
        };
        assert_eq!(ping.schedule.zone(), "Europe/Paris");
        assert_eq!(ping.data.as_deref(), Some(&b"{\"hello\":\"world\"}"[..]));
        assert_eq!(ping.extensions["origin"], "cron");
        assert_eq!(
            ping.event_source(),
            "/apis/v1/namespaces/team-a/pingsources/p"
        );
    }

    #[test]
    fn ping_source_mistakes_name_the_field() {
        let refused = |spec: &str| {
            load(&format!(
                "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: p}}\nspec: {spec}\n"
            ))
            .unwrap_err()
        };
        assert!(
            refused("{schedule: 'every day', sink: {uri: 'http://x/'}}").contains("spec.schedule")
        );
        assert!(
            refused("{timezone: Nowhere/Else, sink: {uri: 'http://x/'}}").contains("spec.timezone")
        );
        assert!(
            refused("{dataBase64: '***', sink: {uri: 'http://x/'}}").contains("spec.dataBase64")
        );
        assert!(
            refused("{data: a, dataBase64: YQ==, sink: {uri: 'http://x/'}}")
                .contains("mutually exclusive")
        );
        assert!(
            refused("{ceOverrides: {extensions: {Bad: x}}, sink: {uri: 'http://x/'}}")
                .contains("spec.ceOverrides.extensions.Bad")
        );
        assert!(
            refused("{ceOverrides: {extensions: {type: x}}, sink: {uri: 'http://x/'}}")
                .contains("context attribute")
        );
    }

    #[test]
    fn an_api_server_source_reads_its_scope_and_mode() {
        let source = |extra: &str| {
            let Resource::ApiServerSource(source) = load(&format!(
                "apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\nmetadata: {{name: s, namespace: team-a}}\n\
                 spec:\n  mode: Resource\n  resources: [{{apiVersion: v1, kind: Event, selector: {{matchLabels: {{app: web}}}}}}]\n\
                 \x20 sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n{extra}"
            ))
            .unwrap() else {
                panic!("not an ApiServerSource")
            };
            source
        };
        let own = source("");
        assert_eq!(own.mode, ApiServerMode::Resource);
        assert_eq!(own.namespaces, NamespaceScope::Own("team-a".into()));
        assert_eq!(own.service_account, "default");
        assert_eq!(
            own.resources[0].selector.as_ref().unwrap().to_query(),
            "app=web"
        );
        assert_eq!(
            source("  namespaceSelector: {}\n").namespaces,
            NamespaceScope::All
        );
        assert!(matches!(
            source("  namespaceSelector: {matchLabels: {env: prod}}\n").namespaces,
            NamespaceScope::Selected(_)
        ));
    }

    #[test]
    fn api_server_source_mistakes_name_the_field() {
        let refused = |spec: &str| {
            load(&format!(
                "apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\nmetadata: {{name: s}}\nspec: {spec}\n"
            ))
            .unwrap_err()
        };
        let sink = "sink: {uri: 'http://x/'}";
        assert!(refused(&format!("{{resources: [], {sink}}}")).contains("spec.resources"));
        assert!(refused(&format!(
            "{{mode: Everything, resources: [{{apiVersion: v1, kind: Pod}}], {sink}}}"
        ))
        .contains("spec.mode"));
        assert!(refused(&format!(
            "{{resources: [{{apiVersion: v1, kind: Pod, selector: {{matchExpressions: [{{key: a, operator: In}}]}}}}], {sink}}}"
        ))
        .contains("spec.resources[0].selector.matchExpressions[0].values"));
    }

    #[test]
    fn label_selectors_match_and_round_trip_through_the_query_syntax() {
        let selector =
            LabelSelector::parse_query("env=prod,tier in (web, api),!legacy,team,zone notin (x)")
                .unwrap();
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(selector.matches(&labels(&[("env", "prod"), ("tier", "web"), ("team", "a")])));
        assert!(!selector.matches(&labels(&[("env", "prod"), ("tier", "db"), ("team", "a")])));
        assert!(!selector.matches(&labels(&[
            ("env", "prod"),
            ("tier", "web"),
            ("team", "a"),
            ("legacy", "1")
        ])));
        assert_eq!(
            LabelSelector::parse_query(&selector.to_query()).unwrap(),
            selector
        );
        assert!(LabelSelector::parse_query("a in b").is_err());
        assert_eq!(
            LabelSelector::parse_query("knative-eventing-injection=enabled")
                .unwrap()
                .match_labels["knative-eventing-injection"],
            "enabled"
        );
    }
}
