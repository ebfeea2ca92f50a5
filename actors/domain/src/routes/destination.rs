//! Where events go: destinations as validated, and their resolution into URLs.

use std::collections::HashMap;

use url::Url;

use crate::resources::field::{join, Checker};
use crate::resources::{DestinationSpec, ObjectKey, Reference};

/// A validated `Destination`: a URL, or a reference to resolve (plus an optional path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An absolute URL, and the text it was written as (Knative reports a destination as
    /// written: `http://host` stays without the slash the URL type adds).
    Url(Url, String),
    Ref {
        target: Reference,
        /// Resolved against the target's address (`/events`, `sub/path`).
        uri: Option<String>,
    },
}

/// Why a destination has no URL, in words a user can act on (a Trigger's or a source's not-ready
/// message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("this node has no ingress address to resolve a Broker")]
    NoIngress,
    #[error(
        "{} {}/{} is not in the addressables table (add \"{}/{}: http://...\" under spec.addressables of a NodeConfig)",
        .0.kind, .0.namespace, .0.name, .0.kind, .0.name
    )]
    NotInTable(Reference),
    /// The object the reference names does not exist; `what` is `Broker`, `Service`, `Knative Service`.
    #[error("{what} {key} does not exist")]
    NotFound { what: &'static str, key: ObjectKey },
    #[error("{0} is unknown")]
    Unknown(Reference),
    #[error("cannot resolve a {kind} ({group}): knactor resolves Broker, Service and serving.knative.dev Service references; use a uri")]
    UnsupportedKind { kind: String, group: String },
    /// The address made for the target is not a URL (a name that does not fit in one).
    #[error("{target} has no address: {source}")]
    BadAddress {
        target: Reference,
        #[source]
        source: url::ParseError,
    },
    #[error("uri {path:?} cannot be joined to {base}: {source}")]
    UriNotJoined {
        path: String,
        base: Url,
        #[source]
        source: url::ParseError,
    },
}

/// Turns references into URLs. Without Kubernetes that is the node's addressables table; in a
/// cluster the controller looks the objects up.
pub trait Resolver: Send + Sync {
    /// The address of `target`, or why there is none.
    fn resolve_reference(&self, target: &Reference) -> Result<Url, ResolveError>;

    fn resolve(&self, destination: &Destination) -> Result<Url, ResolveError> {
        match destination {
            Destination::Url(url, _) => Ok(url.clone()),
            Destination::Ref { target, uri } => {
                let base = self.resolve_reference(target)?;
                match uri {
                    None => Ok(base),
                    Some(path) => {
                        join_path(&base, path).map_err(|source| ResolveError::UriNotJoined {
                            path: path.clone(),
                            base,
                            source,
                        })
                    }
                }
            }
        }
    }
}

impl Destination {
    /// Validates as Knative's `Destination.Validate` does and converts to the runtime shape.
    /// `namespace` is the namespace of the object that holds the destination: a `ref` without one
    /// points there.
    pub fn from_spec(
        spec: &DestinationSpec,
        checker: &mut Checker,
        path: &str,
        namespace: &str,
    ) -> Option<Destination> {
        let uri = spec.uri.as_deref().filter(|uri| !uri.is_empty());
        match (&spec.reference, uri) {
            (None, None) => {
                checker.error(path, "expected exactly one of ref and uri, got neither");
                None
            }
            (None, Some(uri)) => match Url::parse(uri) {
                Ok(url) if url.has_host() => Some(Destination::Url(url, uri.to_string())),
                _ => {
                    checker.error(
                        join(path, "uri"),
                        format!("{uri:?} must be an absolute URL (such as http://host:port/path) when there is no ref"),
                    );
                    None
                }
            },
            (Some(reference), uri) => {
                let target = reference.check(checker, &join(path, "ref"), namespace);
                if let Some(uri) = uri {
                    if Url::parse(uri).is_ok() {
                        checker.error(
                            join(path, "uri"),
                            format!("{uri:?} is absolute; beside a ref, uri is a path resolved against the ref's address"),
                        );
                        return None;
                    }
                }
                target.map(|target| Destination::Ref {
                    target,
                    uri: uri.map(str::to_string),
                })
            }
        }
    }

    /// How Knative reports this destination once resolved to `resolved` (a Trigger's
    /// `status.subscriberUri`, the dead-letter extension `knativeerrordest`): a `uri` exactly as
    /// written; a reference as Go's URL type prints its address, without the slash Rust's adds to
    /// an empty path.
    pub fn as_reported(&self, resolved: &Url) -> String {
        match self {
            Destination::Url(_, text) => text.clone(),
            Destination::Ref { uri: Some(_), .. } => resolved.to_string(),
            Destination::Ref { uri: None, .. } => {
                let text = resolved.as_str();
                if resolved.path() == "/"
                    && resolved.query().is_none()
                    && resolved.fragment().is_none()
                {
                    text.strip_suffix('/').unwrap_or(text).to_string()
                } else {
                    text.to_string()
                }
            }
        }
    }
}

/// Resolves `path` against `base` as Knative does (RFC 3986 reference resolution): `/x` replaces
/// the base path, `x` is relative to its last segment.
fn join_path(base: &Url, path: &str) -> Result<Url, url::ParseError> {
    base.join(path)
}

/// One entry of the addressables table: what it matches and where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddressableEntry {
    /// API group, when the key named one.
    group: Option<String>,
    kind: String,
    /// `None` matches the name in every namespace.
    namespace: Option<String>,
    name: String,
    url: Url,
}

/// Why an entry of the addressables table is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressableEntryError {
    #[error("{url:?} is not an absolute URL")]
    NotAbsoluteUrl {
        url: String,
        /// Why it does not parse at all; `None`: it parses, but has no host.
        #[source]
        source: Option<url::ParseError>,
    },
    #[error("{key:?} has an empty segment; use Kind/name or Kind/namespace/name")]
    EmptySegment { key: String },
    #[error("{key:?} is not of the form [group/]Kind/[namespace/]name")]
    NotAKey { key: String },
    #[error("{key:?} is listed twice")]
    Duplicate { key: String },
}

/// The node config's `addressables:` table: `[group/]Kind/[namespace/]name -> URL`.
///
/// A `Broker` reference needs no entry: it resolves to this node's own ingress
/// (`<ingress>/<namespace>/<name>`).
#[derive(Debug, Clone, Default)]
pub struct AddressablesTable {
    entries: Vec<AddressableEntry>,
    /// Base URL of this node's broker ingress, e.g. `http://127.0.0.1:8080/`.
    ingress: Option<Url>,
}

impl AddressablesTable {
    pub fn new(ingress: Option<Url>) -> Self {
        Self {
            entries: Vec::new(),
            ingress,
        }
    }

    pub fn set_ingress(&mut self, ingress: Url) {
        self.ingress = Some(ingress);
    }

    /// Adds `key -> url`. The key is `Kind/name`, `Kind/namespace/name`, or either of those after an
    /// API group (`serving.knative.dev/Service/default/hello`); a first segment with a dot is a group.
    pub fn insert(&mut self, key: &str, url: &str) -> Result<(), AddressableEntryError> {
        let not_absolute = |source| AddressableEntryError::NotAbsoluteUrl {
            url: url.to_string(),
            source,
        };
        let parsed_url = Url::parse(url).map_err(|error| not_absolute(Some(error)))?;
        if !parsed_url.has_host() {
            return Err(not_absolute(None));
        }
        let mut segments: Vec<&str> = key.split('/').collect();
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(AddressableEntryError::EmptySegment {
                key: key.to_string(),
            });
        }
        let group = if segments.first().is_some_and(|first| first.contains('.')) {
            Some(segments.remove(0).to_string())
        } else {
            None
        };
        let (kind, namespace, name) = match segments.as_slice() {
            [kind, name] => (*kind, None, *name),
            [kind, namespace, name] => (*kind, Some(namespace.to_string()), *name),
            _ => {
                return Err(AddressableEntryError::NotAKey {
                    key: key.to_string(),
                })
            }
        };
        let entry = AddressableEntry {
            group,
            kind: kind.to_string(),
            namespace,
            name: name.to_string(),
            url: parsed_url,
        };
        if self.entries.iter().any(|existing| {
            existing.group == entry.group
                && existing.kind.eq_ignore_ascii_case(&entry.kind)
                && existing.namespace == entry.namespace
                && existing.name == entry.name
        }) {
            return Err(AddressableEntryError::Duplicate {
                key: key.to_string(),
            });
        }
        self.entries.push(entry);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Resolver for AddressablesTable {
    fn resolve_reference(&self, target: &Reference) -> Result<Url, ResolveError> {
        if target.kind == "Broker" && target.group() == "eventing.knative.dev" {
            let ingress = self.ingress.as_ref().ok_or(ResolveError::NoIngress)?;
            return super::broker_address(
                ingress,
                &ObjectKey::new(&target.namespace, &target.name),
            )
            .map_err(|source| ResolveError::BadAddress {
                target: target.clone(),
                source,
            });
        }
        let matches = |entry: &&AddressableEntry| {
            entry.kind.eq_ignore_ascii_case(&target.kind)
                && entry.name == target.name
                && entry
                    .group
                    .as_deref()
                    .is_none_or(|group| group == target.group())
        };
        // An entry for the exact namespace wins over a namespace-wide one.
        self.entries
            .iter()
            .filter(matches)
            .find(|entry| entry.namespace.as_deref() == Some(target.namespace.as_str()))
            .or_else(|| {
                self.entries
                    .iter()
                    .filter(matches)
                    .find(|entry| entry.namespace.is_none())
            })
            .map(|entry| entry.url.clone())
            .ok_or_else(|| ResolveError::NotInTable(target.clone()))
    }
}

/// A resolver backed by a plain map, for tests.
#[derive(Debug, Default)]
pub struct StaticResolver(pub HashMap<(String, String), Url>);

impl Resolver for StaticResolver {
    fn resolve_reference(&self, target: &Reference) -> Result<Url, ResolveError> {
        self.0
            .get(&(target.kind.clone(), target.name.clone()))
            .cloned()
            .ok_or_else(|| ResolveError::Unknown(target.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::field::Strictness;
    use crate::resources::KReference;

    fn reference(api_version: &str, kind: &str, namespace: &str, name: &str) -> Reference {
        Reference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    #[test]
    fn a_service_resolves_through_the_table_in_any_namespace() {
        let mut table = AddressablesTable::default();
        table
            .insert("Service/event-display", "http://127.0.0.1:8081")
            .unwrap();
        let url = table
            .resolve_reference(&reference("v1", "Service", "team-a", "event-display"))
            .unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8081/");
    }

    #[test]
    fn a_namespaced_entry_wins_and_groups_must_agree() {
        let mut table = AddressablesTable::default();
        table.insert("Service/hello", "http://127.0.0.1:1").unwrap();
        table
            .insert("Service/team-a/hello", "http://127.0.0.1:2")
            .unwrap();
        table
            .insert("serving.knative.dev/Service/ksvc", "http://127.0.0.1:3")
            .unwrap();
        let hello = reference("serving.knative.dev/v1", "Service", "team-a", "hello");
        assert_eq!(table.resolve_reference(&hello).unwrap().port(), Some(2));
        let other = reference("serving.knative.dev/v1", "Service", "team-b", "hello");
        assert_eq!(table.resolve_reference(&other).unwrap().port(), Some(1));
        let ksvc = reference("serving.knative.dev/v1", "Service", "x", "ksvc");
        assert_eq!(table.resolve_reference(&ksvc).unwrap().port(), Some(3));
        let core = reference("v1", "Service", "x", "ksvc");
        assert!(table.resolve_reference(&core).is_err());
    }

    #[test]
    fn a_ref_with_a_uri_appends_the_path() {
        let mut table = AddressablesTable::default();
        table
            .insert("Service/handler", "http://127.0.0.1:9000/base/")
            .unwrap();
        let destination = Destination::Ref {
            target: reference("v1", "Service", "default", "handler"),
            uri: Some("events".into()),
        };
        assert_eq!(
            table.resolve(&destination).unwrap().as_str(),
            "http://127.0.0.1:9000/base/events"
        );
    }

    #[test]
    fn a_broker_resolves_to_this_nodes_ingress() {
        let table = AddressablesTable::new(Some(Url::parse("http://127.0.0.1:8080/").unwrap()));
        let url = table
            .resolve_reference(&reference(
                "eventing.knative.dev/v1",
                "Broker",
                "team-a",
                "default",
            ))
            .unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/team-a/default");
    }

    #[test]
    fn an_unknown_reference_says_how_to_fix_it() {
        let table = AddressablesTable::default();
        let error = table
            .resolve_reference(&reference("v1", "Service", "default", "nope"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("Service/nope: http://..."), "{error}");
    }

    #[test]
    fn malformed_keys_and_urls_are_refused() {
        let mut table = AddressablesTable::default();
        assert!(table.insert("Service", "http://x").is_err());
        assert!(table.insert("Service//x", "http://x").is_err());
        assert!(table.insert("a/b/c/d", "http://x").is_err());
        assert!(table.insert("Service/x", "not a url").is_err());
        assert!(table.insert("Service/x", "/relative").is_err());
        table.insert("Service/x", "http://x").unwrap();
        assert!(table.insert("service/x", "http://y").is_err());
    }

    fn check(spec: DestinationSpec) -> Result<Destination, Vec<String>> {
        let mut checker = Checker::new(Strictness::Strict);
        let destination = Destination::from_spec(&spec, &mut checker, "spec.subscriber", "team-a");
        match checker.finish(destination) {
            Ok(checked) => Ok(checked.value.unwrap()),
            Err(errors) => Err(errors.iter().map(ToString::to_string).collect()),
        }
    }

    fn service_ref() -> KReference {
        KReference {
            api_version: Some("serving.knative.dev/v1".into()),
            kind: Some("Service".into()),
            name: Some("handler".into()),
            ..KReference::default()
        }
    }

    #[test]
    fn an_absolute_uri_alone_is_a_url_destination() {
        let destination = check(DestinationSpec {
            uri: Some("http://127.0.0.1:8081/events".into()),
            ..Default::default()
        });
        assert_eq!(
            destination,
            Ok(Destination::Url(
                Url::parse("http://127.0.0.1:8081/events").unwrap(),
                "http://127.0.0.1:8081/events".to_string()
            ))
        );
    }

    #[test]
    fn a_ref_takes_the_holders_namespace_when_it_has_none() {
        let destination = check(DestinationSpec {
            reference: Some(service_ref()),
            uri: Some("/events".into()),
            ..Default::default()
        })
        .unwrap();
        let Destination::Ref { target, uri } = destination else {
            panic!("expected a ref")
        };
        assert_eq!(target.namespace, "team-a");
        assert_eq!(uri.as_deref(), Some("/events"));
    }

    #[test]
    fn neither_ref_nor_uri_is_refused() {
        assert_eq!(
            check(DestinationSpec::default()),
            Err(vec![
                "spec.subscriber: expected exactly one of ref and uri, got neither".to_string()
            ])
        );
    }

    #[test]
    fn a_relative_uri_alone_is_refused() {
        let errors = check(DestinationSpec {
            uri: Some("/events".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(errors[0].starts_with("spec.subscriber.uri: \"/events\" must be an absolute URL"));
    }

    #[test]
    fn an_absolute_uri_beside_a_ref_is_refused() {
        let errors = check(DestinationSpec {
            reference: Some(service_ref()),
            uri: Some("http://elsewhere/".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(errors[0].starts_with("spec.subscriber.uri:"));
    }

    #[test]
    fn a_ref_names_each_missing_field() {
        let errors = check(DestinationSpec {
            reference: Some(KReference::default()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "spec.subscriber.ref.kind: required",
                "spec.subscriber.ref.name: required",
                "spec.subscriber.ref.apiVersion: required",
            ]
        );
    }
}
