//! `Destination` (Knative duck v1): where a subscriber, dead-letter sink or source sink is.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use super::field::{join, Checker};
use crate::routes::Destination;

/// `{ref, uri, CACerts, audience}` as written in YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationSpec {
    #[serde(default, rename = "ref")]
    pub reference: Option<KReference>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default, rename = "CACerts")]
    pub ca_certs: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
}

/// A reference to an addressable object (`KReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KReference {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Alpha `kreference-group`: the API group instead of `apiVersion`.
    #[serde(default)]
    pub group: Option<String>,
    /// Name of one of the target's `status.addresses`.
    #[serde(default)]
    pub address: Option<String>,
}

/// A reference to an addressable object, checked, with its namespace filled in (a `KReference`
/// once [`DestinationSpec::check`] has passed it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl Reference {
    /// The API group: `serving.knative.dev` for `serving.knative.dev/v1`, `""` for core `v1`.
    pub fn group(&self) -> &str {
        match self.api_version.rsplit_once('/') {
            Some((group, _version)) => group,
            None if self.api_version.contains('.') => &self.api_version,
            None => "",
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

impl DestinationSpec {
    /// Validates as Knative's `Destination.Validate` does and converts to the runtime shape.
    /// `namespace` is the namespace of the object that holds the destination: a `ref` without one
    /// points there.
    pub fn check(&self, checker: &mut Checker, path: &str, namespace: &str) -> Option<Destination> {
        let uri = self.uri.as_deref().filter(|uri| !uri.is_empty());
        match (&self.reference, uri) {
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
}

impl KReference {
    fn check(&self, checker: &mut Checker, path: &str, namespace: &str) -> Option<Reference> {
        let kind = non_empty(&self.kind);
        let name = non_empty(&self.name);
        let api_version = non_empty(&self.api_version).or(non_empty(&self.group));
        if kind.is_none() {
            checker.error(join(path, "kind"), "required");
        }
        if name.is_none() {
            checker.error(join(path, "name"), "required");
        }
        if api_version.is_none() {
            checker.error(join(path, "apiVersion"), "required");
        }
        Some(Reference {
            api_version: api_version?.to_string(),
            kind: kind?.to_string(),
            name: name?.to_string(),
            namespace: non_empty(&self.namespace).unwrap_or(namespace).to_string(),
        })
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::field::Strictness;

    fn check(spec: DestinationSpec) -> Result<Destination, Vec<String>> {
        let mut checker = Checker::new(Strictness::Strict);
        let destination = spec.check(&mut checker, "spec.subscriber", "team-a");
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
