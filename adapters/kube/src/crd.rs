//! The Knative resources as Kubernetes custom resources, in Knative's own API groups so the YAML
//! users already have applies unchanged. Each spec is the API shape of `knactor-actors`
//! (`resources::TriggerSpec`...), so the CRD schema, the file loader and the controller all read
//! the same types; [`crds`] generates the definitions (`knactor crdgen`).

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use knactor_actors::resources::{self, Object, ObjectMeta};
use kube::core::crd::merge_crds;
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Deserializes a spec that may be absent (`kubectl apply` of a Broker without `spec`) as its
/// default.
macro_rules! optional_spec {
    ($name:ident, $inner:ty) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Ok(Self(
                    Option::<$inner>::deserialize(deserializer)?.unwrap_or_default(),
                ))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self(<$inner>::default())
            }
        }
    };
}

/// A condition in Knative's `status.conditions` (duck v1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// `status.address` of an addressable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Addressable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Addressable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// The channel: `knactor.dev/channel` (memory or kafka) and `knactor.dev/topic`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
}

/// A `type`/`source` pair a source emits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudEventAttributes {
    #[serde(rename = "type")]
    pub type_: String,
    pub source: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ce_attributes: Vec<CloudEventAttributes>,
    /// ApiServerSource: the namespaces it watches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// `eventing.knative.dev/v1` Broker.
#[derive(CustomResource, Clone, Debug, Serialize, JsonSchema)]
#[kube(
    group = "eventing.knative.dev",
    version = "v1",
    kind = "Broker",
    namespaced,
    status = "BrokerStatus",
    category = "all",
    category = "knative",
    category = "eventing",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.address.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(transparent)]
pub struct BrokerCrdSpec(pub resources::BrokerSpec);
optional_spec!(BrokerCrdSpec, resources::BrokerSpec);

/// `eventing.knative.dev/v1` Trigger.
#[derive(CustomResource, Clone, Debug, Serialize, JsonSchema)]
#[kube(
    group = "eventing.knative.dev",
    version = "v1",
    kind = "Trigger",
    namespaced,
    status = "TriggerStatus",
    category = "all",
    category = "knative",
    category = "eventing",
    printcolumn = r#"{"name":"Broker","type":"string","jsonPath":".spec.broker"}"#,
    printcolumn = r#"{"name":"Subscriber_URI","type":"string","jsonPath":".status.subscriberUri"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(transparent)]
pub struct TriggerCrdSpec(pub resources::TriggerSpec);
optional_spec!(TriggerCrdSpec, resources::TriggerSpec);

/// `sources.knative.dev/v1` ApiServerSource.
#[derive(CustomResource, Clone, Debug, Serialize, JsonSchema)]
#[kube(
    group = "sources.knative.dev",
    version = "v1",
    kind = "ApiServerSource",
    namespaced,
    status = "SourceStatus",
    category = "all",
    category = "knative",
    category = "sources",
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(transparent)]
pub struct ApiServerSourceCrdSpec(pub resources::ApiServerSourceSpec);
optional_spec!(ApiServerSourceCrdSpec, resources::ApiServerSourceSpec);

/// `sources.knative.dev/v1` PingSource.
#[derive(CustomResource, Clone, Debug, Serialize, JsonSchema)]
#[kube(
    group = "sources.knative.dev",
    version = "v1",
    kind = "PingSource",
    namespaced,
    status = "SourceStatus",
    category = "all",
    category = "knative",
    category = "sources",
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(transparent)]
pub struct PingSourceCrdSpec(pub resources::PingSourceSpec);
optional_spec!(PingSourceCrdSpec, resources::PingSourceSpec);

/// `sources.knative.dev/v1beta2` PingSource: the same fields, still served for older YAML.
pub mod v1beta2 {
    use super::*;

    #[derive(CustomResource, Clone, Debug, Serialize, JsonSchema)]
    #[kube(
        group = "sources.knative.dev",
        version = "v1beta2",
        kind = "PingSource",
        namespaced,
        status = "SourceStatus",
        category = "all",
        category = "knative",
        category = "sources",
        printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
        printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
    )]
    #[serde(transparent)]
    pub struct PingSourceCrdSpec(pub resources::PingSourceSpec);
    optional_spec!(PingSourceCrdSpec, resources::PingSourceSpec);
}

/// The custom resource definitions knactor serves, in the order to apply them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let ping = merge_crds(vec![PingSource::crd(), v1beta2::PingSource::crd()], "v1")
        .expect("the PingSource versions share a group and kind");
    [Broker::crd(), Trigger::crd(), ApiServerSource::crd(), ping]
        .into_iter()
        .map(fit_for_knative_yaml)
        .collect()
}

/// Adjusts a generated definition to accept what Knative users apply: a spec may be left out
/// (Brokers often are), and a structural schema must not carry `additionalProperties: false`
/// beside `properties` (the generator writes it for `deny_unknown_fields`).
///
/// Unknown fields in a spec are kept, not pruned: the API server would otherwise drop a misplaced
/// field (`subscriber` indented under `filter`) without a word, and store a different object than
/// the one written. Kept, it reaches knactor's loader, which refuses it naming the field: the
/// admission webhook at `kubectl apply` time, or, without the webhook, the controller in the
/// object's `Ready` condition. The types of the known fields are still the API server's to check.
fn fit_for_knative_yaml(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    crd.metadata.labels = Some(BTreeMap::from([
        ("app.kubernetes.io/part-of".into(), "knactor".into()),
        ("knative.dev/crd-install".into(), "true".into()),
    ]));
    for version in &mut crd.spec.versions {
        let Some(validation) = version.schema.as_mut() else {
            continue;
        };
        let Some(schema) = validation.open_api_v3_schema.as_mut() else {
            continue;
        };
        if let Some(required) = schema.required.as_mut() {
            required.retain(|field| field != "spec");
            if required.is_empty() {
                schema.required = None;
            }
        }
        let mut value = serde_json::to_value(&*schema).expect("a schema is JSON");
        strip_closed_objects(&mut value);
        if let Some(spec) = value.pointer_mut("/properties/spec") {
            keep_unknown_fields(spec);
        }
        *schema = serde_json::from_value(value).expect("still a schema");
    }
    crd
}

fn strip_closed_objects(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("additionalProperties") == Some(&serde_json::Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            map.values_mut().for_each(strip_closed_objects);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_closed_objects),
        _ => {}
    }
}

/// Marks every object of a schema that lists its fields as keeping the ones it does not list.
fn keep_unknown_fields(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties") {
                map.insert(
                    "x-kubernetes-preserve-unknown-fields".into(),
                    serde_json::Value::Bool(true),
                );
            }
            map.values_mut().for_each(keep_unknown_fields);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(keep_unknown_fields),
        _ => {}
    }
}

/// The definitions as one multi-document YAML, as committed in `charts/knactor/crds/`.
pub fn crds_yaml() -> String {
    let mut out = String::from(
        "# Generated by `knactor crdgen` from knactor's Rust types; do not edit by hand.\n",
    );
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("a CRD is YAML"));
    }
    out
}

/// A custom resource as the API shape the conversions read (`Broker::from_object`...).
pub fn to_object<S: Clone>(
    kind: &str,
    api_version: &str,
    resource: &impl ResourceExt,
    spec: &S,
) -> Object<S> {
    let meta = resource.meta();
    Object {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            generation: meta.generation,
            uid: meta.uid.clone(),
        },
        spec: spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI schema of a CRD's first version.
    fn schema_of(
        crd: &CustomResourceDefinition,
    ) -> &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps {
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|validation| validation.open_api_v3_schema.as_ref())
            .expect("the CRD has a schema")
    }

    #[test]
    fn the_crds_are_knatives_groups_and_kinds_with_ready_and_url_columns() {
        let crds = crds();
        let names: Vec<String> = crds
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![
                "brokers.eventing.knative.dev",
                "triggers.eventing.knative.dev",
                "apiserversources.sources.knative.dev",
                "pingsources.sources.knative.dev"
            ]
        );
        let broker = &crds[0].spec.versions[0];
        let columns: Vec<&str> = broker
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, vec!["URL", "Age", "Ready", "Reason"]);
        let ping_versions: Vec<&str> = crds[3]
            .spec
            .versions
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert!(ping_versions.contains(&"v1") && ping_versions.contains(&"v1beta2"));
    }

    #[test]
    fn a_broker_without_spec_is_accepted_by_the_schema_and_deserializes() {
        let crds = crds();
        let schema = schema_of(&crds[0]);
        assert!(!schema.required.iter().flatten().any(|f| f == "spec"));
        let broker: Broker = serde_json::from_value(serde_json::json!({
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "default", "namespace": "team-a"}
        }))
        .unwrap();
        assert_eq!(broker.spec.0, resources::BrokerSpec::default());
    }

    #[test]
    fn the_committed_chart_crds_are_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../charts/knactor/crds/knative-eventing.yaml"
        );
        let committed = std::fs::read_to_string(path).expect("the chart's CRDs are committed");
        assert!(
            committed == crds_yaml(),
            "{path} is stale: run `cargo run -- crdgen --out charts/knactor/crds/knative-eventing.yaml`"
        );
    }

    #[test]
    fn the_schema_is_structural_enough_for_an_api_server() {
        let yaml = crds_yaml();
        assert!(!yaml.contains("additionalProperties: false"));
        assert!(
            !yaml.contains("$ref"),
            "no references in a structural schema"
        );
        assert!(
            yaml.contains("x-kubernetes-preserve-unknown-fields: true"),
            "nested filters are kept"
        );
    }

    #[test]
    fn unknown_spec_fields_are_kept_for_the_loader_to_refuse_and_status_is_pruned() {
        let crds = crds();
        let trigger = schema_of(&crds[1]);
        let schema = serde_json::to_value(trigger).unwrap();
        let keeps = |pointer: &str| {
            schema.pointer(pointer).unwrap()["x-kubernetes-preserve-unknown-fields"] == true
        };
        assert!(keeps("/properties/spec"));
        assert!(keeps("/properties/spec/properties/filter"));
        assert!(keeps(
            "/properties/spec/properties/subscriber/properties/ref"
        ));
        assert!(!keeps("/properties/status"));
    }
}
