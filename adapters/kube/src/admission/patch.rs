//! Defaulting: the JSON patch (RFC 6902) that writes into a new or changed object what Knative's
//! defaulting webhook writes, so the stored object says what runs:
//!
//! | kind | field | default |
//! |---|---|---|
//! | Broker | annotation `eventing.knative.dev/broker.class` | `config-br-defaults` (namespace, then cluster), else knactor's `--default-broker-class` |
//! | Broker | `spec.config` | `config-br-defaults`, when it gives one |
//! | Broker | `spec.delivery` | `config-br-defaults`, when it gives one |
//! | Trigger | `spec.filter` | `{}` (every event) |
//! | Trigger | label `eventing.knative.dev/broker` | `spec.broker` |
//! | Trigger | `spec.subscriber.ref.namespace` | the Trigger's namespace |
//! | Broker, Trigger | `spec.delivery.deadLetterSink.ref.namespace` | the object's namespace |
//! | ApiServerSource, PingSource | `spec.sink.ref.namespace` | the source's namespace |
//!
//! Every default is what the loader already assumes for a field left out, so defaulting never
//! changes what an object means; it only makes it say so (and pins a Broker's class and config,
//! which are immutable, to the defaults of the day it was created). Pure: the object in, the
//! operations out.

use serde_json::{json, Value};

use super::Defaults;
use crate::cluster::Kind;

/// The Broker class annotation (Knative's).
pub const CLASS_ANNOTATION: &str = "eventing.knative.dev/broker.class";
/// The label Knative's defaulting puts on a Trigger: the name of its Broker.
pub const BROKER_LABEL: &str = "eventing.knative.dev/broker";

/// The operations that default `object` (a whole object, as JSON), in `namespace`.
pub fn defaults(kind: Kind, object: &Value, namespace: &str, defaults: &Defaults) -> Vec<Value> {
    let mut patch = Patch::new(object);
    match kind {
        Kind::Broker => {
            let entry = defaults.brokers.entry(namespace);
            if text(object, &["metadata", "annotations", CLASS_ANNOTATION]).is_none() {
                let class = entry.class.as_deref().unwrap_or(defaults.class);
                patch.set(&["metadata", "annotations", CLASS_ANNOTATION], json!(class));
            }
            if is_absent(object, &["spec", "config"]) {
                if let Some(config) = &entry.config {
                    patch.set(
                        &["spec", "config"],
                        json!({"apiVersion": config.api_version, "kind": config.kind,
                               "name": config.name, "namespace": config.namespace}),
                    );
                }
            }
            if is_absent(object, &["spec", "delivery"]) {
                if let Some(delivery) = &entry.delivery_spec {
                    let value = serde_json::to_value(delivery).unwrap_or(Value::Null);
                    patch.set(&["spec", "delivery"], without_nulls(value));
                }
            }
            patch.ref_namespace(&["spec", "delivery", "deadLetterSink", "ref"], namespace);
        }
        Kind::Trigger => {
            if let Some(broker) = text(object, &["spec", "broker"]) {
                if text(object, &["metadata", "labels", BROKER_LABEL]) != Some(broker) {
                    patch.set(&["metadata", "labels", BROKER_LABEL], json!(broker));
                }
            }
            if is_absent(object, &["spec", "filter"]) {
                patch.set(&["spec", "filter"], json!({}));
            }
            patch.ref_namespace(&["spec", "subscriber", "ref"], namespace);
            patch.ref_namespace(&["spec", "delivery", "deadLetterSink", "ref"], namespace);
        }
        Kind::ApiServerSource | Kind::PingSource => {
            patch.ref_namespace(&["spec", "sink", "ref"], namespace);
        }
    }
    patch.operations()
}

/// The value at `path`, when it is there and not null.
fn at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(object, |value, name| value.get(name))
        .filter(|value| !value.is_null())
}

fn is_absent(object: &Value, path: &[&str]) -> bool {
    at(object, path).is_none()
}

/// A non-empty string at `path`.
fn text<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(object, path)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// `value` without its null members, at every depth (a spec as serde writes it, with its unset
/// options as nulls, is not what a user would have written).
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(name, value)| (name, without_nulls(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// A JSON pointer (RFC 6901) of `path`.
fn pointer(path: &[&str]) -> String {
    path.iter()
        .map(|name| format!("/{}", name.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// The object as defaulting leaves it; the patch is what differs from the object it started as.
struct Patch<'a> {
    object: &'a Value,
    after: Value,
}

impl<'a> Patch<'a> {
    fn new(object: &'a Value) -> Self {
        Self {
            object,
            after: object.clone(),
        }
    }

    /// Sets `path` to `value`, creating the parents that are missing (or null).
    fn set(&mut self, path: &[&str], value: Value) {
        let mut node = &mut self.after;
        for name in &path[..path.len() - 1] {
            if !node.get(*name).is_some_and(Value::is_object) {
                node[*name] = json!({});
            }
            node = &mut node[*name];
        }
        node[path[path.len() - 1]] = value;
    }

    /// Gives a `ref` at `path` without a namespace the object's.
    fn ref_namespace(&mut self, path: &[&str], namespace: &str) {
        if at(self.object, path).is_some_and(Value::is_object) {
            let mut field = path.to_vec();
            field.push("namespace");
            if text(self.object, &field).is_none() {
                self.set(&field, json!(namespace));
            }
        }
    }

    /// "add" operations (which also replace) from the object to what defaulting made of it: one
    /// per member that is new or changed, at the highest level where it is.
    fn operations(self) -> Vec<Value> {
        let mut operations = Vec::new();
        diff(self.object, &self.after, &mut Vec::new(), &mut operations);
        operations
    }
}

fn diff<'a>(before: &Value, after: &'a Value, path: &mut Vec<&'a str>, out: &mut Vec<Value>) {
    let Some(members) = after.as_object() else {
        return;
    };
    for (name, value) in members {
        path.push(name);
        match before.get(name) {
            Some(old) if old.is_object() && value.is_object() => diff(old, value, path, out),
            Some(old) if old == value => {}
            _ => out.push(json!({"op": "add", "path": pointer(path), "value": value})),
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use knactor_actors::resources::broker_defaults;
    use knactor_actors::routes::BrokerDefaults;

    use super::*;

    /// Applies RFC 6902 "add" operations, as the API server does.
    fn apply(object: &Value, operations: &[Value]) -> Value {
        let mut object = object.clone();
        for op in operations {
            assert_eq!(op["op"], "add", "{op}");
            let path = op["path"].as_str().unwrap();
            let (parent, last) = path.rsplit_once('/').unwrap();
            let last = last.replace("~1", "/").replace("~0", "~");
            let parent = object
                .pointer_mut(parent)
                .unwrap_or_else(|| panic!("{path}: no parent"));
            parent
                .as_object_mut()
                .unwrap_or_else(|| panic!("{path}: the parent is not an object"))
                .insert(last, op["value"].clone());
        }
        object
    }

    fn cluster_defaults(yaml: &str) -> BrokerDefaults {
        BrokerDefaults::from_data(&BTreeMap::from([(
            broker_defaults::KEY.to_string(),
            yaml.to_string(),
        )]))
        .unwrap()
    }

    fn object(kind: &str, rest: Value) -> Value {
        let group = match kind {
            "Broker" | "Trigger" => "eventing.knative.dev/v1",
            _ => "sources.knative.dev/v1",
        };
        let mut object = json!({"apiVersion": group, "kind": kind,
                                "metadata": {"name": "x", "namespace": "team-a"}});
        for (name, value) in rest.as_object().unwrap() {
            object[name] = value.clone();
        }
        object
    }

    #[test]
    fn each_kind_gets_knatives_defaults() {
        let none = BrokerDefaults::default();
        let kafka = cluster_defaults(
            "clusterDefault:\n  brokerClass: MTChannelBasedBroker\n  delivery: {retry: 3, backoffDelay: PT1S}\n\
             namespaceDefaults:\n  team-a:\n    brokerClass: Kafka\n    apiVersion: v1\n    kind: ConfigMap\n    name: kafka-broker-config\n    namespace: knative-eventing\n",
        );
        let subscriber = json!({"ref": {"apiVersion": "v1", "kind": "Service", "name": "display"}});
        // kind, the object's fields, config-br-defaults, the defaulted object's fields.
        let cases: Vec<(&str, Value, &BrokerDefaults, Value)> = vec![
            (
                "Broker without a spec or annotations: knactor's class",
                object("Broker", json!({})),
                &none,
                object(
                    "Broker",
                    json!({"metadata": {"name": "x", "namespace": "team-a",
                    "annotations": {CLASS_ANNOTATION: "MTChannelBasedBroker"}}}),
                ),
            ),
            (
                "Broker: class, config and delivery from config-br-defaults",
                object(
                    "Broker",
                    json!({"metadata": {"name": "x", "namespace": "team-a", "annotations": {"a": "b"}}}),
                ),
                &kafka,
                object(
                    "Broker",
                    json!({
                    "metadata": {"name": "x", "namespace": "team-a",
                                 "annotations": {"a": "b", CLASS_ANNOTATION: "Kafka"}},
                    "spec": {"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "kafka-broker-config", "namespace": "knative-eventing"},
                             "delivery": {"retry": 3, "backoffDelay": "PT1S"}}}),
                ),
            ),
            (
                "Broker that says its class, config and delivery keeps them",
                object(
                    "Broker",
                    json!({
                    "metadata": {"name": "x", "namespace": "team-a", "annotations": {CLASS_ANNOTATION: "MTChannelBasedBroker"}},
                    "spec": {"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "mine", "namespace": "team-a"},
                             "delivery": {"retry": 1}}}),
                ),
                &kafka,
                object(
                    "Broker",
                    json!({
                    "metadata": {"name": "x", "namespace": "team-a", "annotations": {CLASS_ANNOTATION: "MTChannelBasedBroker"}},
                    "spec": {"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "mine", "namespace": "team-a"},
                             "delivery": {"retry": 1}}}),
                ),
            ),
            (
                "Broker with an empty spec and an empty class: both filled",
                object(
                    "Broker",
                    json!({"metadata": {"name": "x", "namespace": "other", "annotations": {CLASS_ANNOTATION: ""}},
                                        "spec": {"delivery": {"deadLetterSink": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "dls"}}}}}),
                ),
                &kafka,
                object(
                    "Broker",
                    json!({"metadata": {"name": "x", "namespace": "other", "annotations": {CLASS_ANNOTATION: "MTChannelBasedBroker"}},
                                        "spec": {"delivery": {"deadLetterSink": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "dls", "namespace": "other"}}}}}),
                ),
            ),
            (
                "Trigger: filter {}, the broker label, the subscriber's namespace",
                object(
                    "Trigger",
                    json!({"spec": {"broker": "default", "subscriber": subscriber}}),
                ),
                &none,
                object(
                    "Trigger",
                    json!({
                    "metadata": {"name": "x", "namespace": "team-a", "labels": {BROKER_LABEL: "default"}},
                    "spec": {"broker": "default", "filter": {},
                             "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "display", "namespace": "team-a"}}}}),
                ),
            ),
            (
                "Trigger with a filter, a uri subscriber and a dead-letter ref",
                object(
                    "Trigger",
                    json!({
                    "metadata": {"name": "x", "namespace": "team-a", "labels": {"app": "y"}},
                    "spec": {"broker": "b", "filter": {"attributes": {"type": "t"}}, "subscriber": {"uri": "http://s/"},
                             "delivery": {"deadLetterSink": {"ref": {"kind": "Service", "name": "dls"}}}}}),
                ),
                &none,
                object(
                    "Trigger",
                    json!({
                    "metadata": {"name": "x", "namespace": "team-a", "labels": {"app": "y", BROKER_LABEL: "b"}},
                    "spec": {"broker": "b", "filter": {"attributes": {"type": "t"}}, "subscriber": {"uri": "http://s/"},
                             "delivery": {"deadLetterSink": {"ref": {"kind": "Service", "name": "dls", "namespace": "team-a"}}}}}),
                ),
            ),
            (
                "Trigger already defaulted: nothing to do",
                object(
                    "Trigger",
                    json!({
                    "metadata": {"name": "x", "namespace": "team-a", "labels": {BROKER_LABEL: "b"}},
                    "spec": {"broker": "b", "filter": {}, "subscriber": {"ref": {"kind": "Service", "name": "s", "namespace": "elsewhere"}}}}),
                ),
                &none,
                object(
                    "Trigger",
                    json!({
                    "metadata": {"name": "x", "namespace": "team-a", "labels": {BROKER_LABEL: "b"}},
                    "spec": {"broker": "b", "filter": {}, "subscriber": {"ref": {"kind": "Service", "name": "s", "namespace": "elsewhere"}}}}),
                ),
            ),
            (
                "Trigger with brokerRef: no label; filter null is absent",
                object(
                    "Trigger",
                    json!({"spec": {"brokerRef": {"name": "b"}, "filter": null, "subscriber": {"uri": "http://s/"}}}),
                ),
                &none,
                object(
                    "Trigger",
                    json!({"spec": {"brokerRef": {"name": "b"}, "filter": {}, "subscriber": {"uri": "http://s/"}}}),
                ),
            ),
            (
                "PingSource: the sink's namespace",
                object(
                    "PingSource",
                    json!({"spec": {"sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}}}),
                ),
                &none,
                object(
                    "PingSource",
                    json!({"spec": {"sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default", "namespace": "team-a"}}}}),
                ),
            ),
            (
                "ApiServerSource with a uri sink: nothing to do",
                object(
                    "ApiServerSource",
                    json!({"spec": {"sink": {"uri": "http://s/"}, "resources": []}}),
                ),
                &none,
                object(
                    "ApiServerSource",
                    json!({"spec": {"sink": {"uri": "http://s/"}, "resources": []}}),
                ),
            ),
        ];
        for (name, before, brokers, expected) in cases {
            let kind = Kind::of(
                before["apiVersion"]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap(),
                before["kind"].as_str().unwrap(),
            )
            .unwrap();
            let namespace = before["metadata"]["namespace"]
                .as_str()
                .unwrap()
                .to_string();
            let defaults = Defaults {
                brokers,
                class: "MTChannelBasedBroker",
            };
            let operations = super::defaults(kind, &before, &namespace, &defaults);
            let after = apply(&before, &operations);
            assert_eq!(after, expected, "{name}: {operations:?}");
            // Defaulting twice changes nothing more.
            assert!(
                super::defaults(kind, &after, &namespace, &defaults).is_empty(),
                "{name}: not idempotent"
            );
        }
    }

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        assert_eq!(
            pointer(&["metadata", "annotations", CLASS_ANNOTATION]),
            "/metadata/annotations/eventing.knative.dev~1broker.class"
        );
        assert_eq!(pointer(&["a~b"]), "/a~0b");
    }
}
