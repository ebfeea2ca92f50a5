//! Source positions in the cluster: one ConfigMap per source (`knactor-state-<key>`) in the
//! controller's namespace, so whichever replica leads next resumes where the last one stopped.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use knactor_actors::source::{StateError, StateStore};
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

#[derive(Debug)]
pub struct ConfigMapStateStore {
    api: Api<ConfigMap>,
}

impl ConfigMapStateStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
        }
    }
}

/// `pingsource/1234-abcd` → `knactor-state-pingsource-1234-abcd` (a valid ConfigMap name).
pub fn config_map_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(200);
    format!("knactor-state-{}", name.trim_matches('-'))
}

fn failed(key: &str, error: kube::Error) -> StateError {
    StateError {
        key: key.to_string(),
        message: crate::apiserver::describe(&error),
    }
}

#[async_trait]
impl StateStore for ConfigMapStateStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StateError> {
        let found = self
            .api
            .get_opt(&config_map_name(key))
            .await
            .map_err(|error| failed(key, error))?;
        Ok(found
            .and_then(|map| map.data)
            .and_then(|data: BTreeMap<String, String>| data.get("position").cloned()))
    }

    async fn save(&self, key: &str, value: &str) -> Result<(), StateError> {
        let name = config_map_name(key);
        let map = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "knactor"}},
            "data": {"key": key, "position": value},
        });
        self.api
            .patch(
                &name,
                &PatchParams::apply("knactor").force(),
                &Patch::Apply(&map),
            )
            .await
            .map_err(|error| failed(key, error))?;
        Ok(())
    }
}
