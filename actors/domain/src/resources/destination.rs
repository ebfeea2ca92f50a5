//! `Destination` (Knative duck v1): where a subscriber, dead-letter sink or source sink is. The
//! runtime `Destination` is built from a [`DestinationSpec`] by `routes::Destination::from_spec`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::field::{join, Checker};

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

/// A reference to an addressable object, checked, with its namespace filled in (a [`KReference`]
/// once [`KReference::check`] has passed it).
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

impl KReference {
    /// Checks the fields Knative requires; a reference without a namespace points into
    /// `namespace`.
    pub fn check(&self, checker: &mut Checker, path: &str, namespace: &str) -> Option<Reference> {
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
