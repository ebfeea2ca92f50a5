//! `metadata` and the object envelope every resource document shares.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The namespace a resource without one lands in, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The part of Kubernetes `ObjectMeta` that knactor reads. Server-populated fields (uid,
/// resourceVersion, managedFields...) are accepted and ignored, so objects exported from a cluster
/// load as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub generation: Option<i64>,
    #[serde(default)]
    pub uid: Option<String>,
}

impl ObjectMeta {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

/// A resource document: `metadata` plus a `spec` of the kind's own shape. `status` is accepted and
/// ignored (a spec is what the user asks for; status is what a controller reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(
        deserialize = "S: Deserialize<'de> + Default",
        serialize = "S: Serialize"
    )
)]
pub struct Object<S> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec:` with nothing after it is an empty spec; a document with no `spec` key at all is refused
    /// by the loader before it gets here.
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: S,
    #[serde(default, skip_serializing)]
    pub status: Option<serde_yaml::Value>,
}

/// Reads `key:` with no value (YAML null) as the empty/default value.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `<namespace>/<name>` of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of(meta: &ObjectMeta) -> Self {
        Self::new(meta.namespace(), meta.name())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Text that is not `<namespace>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not of the form <namespace>/<name>")]
pub struct ObjectKeyParseError {
    pub text: String,
}

impl std::str::FromStr for ObjectKey {
    type Err = ObjectKeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self::new(namespace, name))
            }
            _ => Err(ObjectKeyParseError {
                text: text.to_string(),
            }),
        }
    }
}
