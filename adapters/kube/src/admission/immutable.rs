//! Update rules: what an object keeps for its whole life, as Knative's webhook has it. A Broker's
//! class and `spec.config` decide which channel holds its events; a Trigger's broker decides which
//! events it gets. Changing one in place would move a running resource to another channel or
//! broker behind its status' back, so the change is refused, naming the field: delete and create
//! again instead.
//!
//! A Broker's class and config are compared as they take effect: an object that does not say its
//! class has the one `config-br-defaults` (or knactor) gives it, so that an object stored before the
//! webhook existed can still be updated once defaulting writes that same class into it.

use serde_json::Value;

use super::patch::CLASS_ANNOTATION;
use super::Defaults;
use crate::cluster::Kind;

/// Why the update from `old` to `new` (whole objects, as JSON) is refused, when it is: the field
/// and what it was.
pub fn changed(
    kind: Kind,
    old: &Value,
    new: &Value,
    namespace: &str,
    defaults: &Defaults,
) -> Option<String> {
    match kind {
        Kind::Broker => {
            let entry = defaults.brokers.entry(namespace);
            let class = |object: &Value| -> String {
                text(object, &["metadata", "annotations", CLASS_ANNOTATION])
                    .map(str::to_string)
                    .or_else(|| entry.class.clone())
                    .unwrap_or_else(|| defaults.class.to_string())
            };
            let (was, is) = (class(old), class(new));
            if was != is {
                return Some(format!(
                    "metadata.annotations[{CLASS_ANNOTATION}]: immutable: the Broker's class is {was:?} (asked: {is:?}); delete the Broker and create it again to change its class"
                ));
            }
            let config = |object: &Value| -> Option<Value> {
                match object.pointer("/spec/config").filter(|v| !v.is_null()) {
                    Some(config) => Some(with_namespace(config, namespace)),
                    None => entry.config.as_ref().map(|config| {
                        serde_json::json!({"apiVersion": config.api_version, "kind": config.kind,
                                           "name": config.name, "namespace": config.namespace})
                    }),
                }
            };
            let (was, is) = (config(old), config(new));
            if was != is {
                return Some(format!(
                    "spec.config: immutable: the Broker's config is {} (asked: {}); delete the Broker and create it again to change it",
                    describe(&was),
                    describe(&is)
                ));
            }
            None
        }
        Kind::Trigger => {
            for (field, pointer) in [
                ("spec.broker", "/spec/broker"),
                ("spec.brokerRef", "/spec/brokerRef"),
            ] {
                let value = |object: &Value| {
                    object
                        .pointer(pointer)
                        .filter(|v| !v.is_null() && v.as_str() != Some(""))
                        .cloned()
                };
                let (was, is) = (value(old), value(new));
                if was != is {
                    return Some(format!(
                        "{field}: immutable: the Trigger's broker is {} (asked: {}); delete the Trigger and create it again to subscribe to another broker",
                        describe(&was),
                        describe(&is)
                    ));
                }
            }
            None
        }
        Kind::ApiServerSource | Kind::PingSource => None,
    }
}

fn text<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(object, |value, name| value.get(name))
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// A reference with its namespace as the loader reads it (the object's when it gives none), and
/// without null members.
fn with_namespace(reference: &Value, namespace: &str) -> Value {
    let mut reference = reference.clone();
    if let Some(members) = reference.as_object_mut() {
        members.retain(|_, value| !value.is_null());
        let missing = members
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if missing {
            members.insert("namespace".into(), Value::String(namespace.to_string()));
        }
    }
    reference
}

fn describe(value: &Option<Value>) -> String {
    match value {
        None => "unset".into(),
        Some(Value::String(text)) => format!("{text:?}"),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use knactor_actors::resources::broker_defaults;
    use knactor_actors::routes::BrokerDefaults;
    use serde_json::json;

    use super::*;

    fn broker(annotations: Value, spec: Value) -> Value {
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
               "metadata": {"name": "b", "namespace": "team-a", "annotations": annotations}, "spec": spec})
    }

    fn trigger(spec: Value) -> Value {
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": "t", "namespace": "team-a"}, "spec": spec})
    }

    #[test]
    fn class_config_and_broker_are_refused_on_change_naming_the_field() {
        let none = BrokerDefaults::default();
        let kafka_default = BrokerDefaults::from_data(&BTreeMap::from([(
            broker_defaults::KEY.to_string(),
            "clusterDefault: {brokerClass: Kafka}\n".to_string(),
        )]))
        .unwrap();
        let config =
            |name: &str| json!({"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": name}});
        // kind, old, new, config-br-defaults, the refused field (None: allowed)
        let cases: Vec<(Kind, Value, Value, &BrokerDefaults, Option<&str>)> = vec![
            (Kind::Broker, broker(json!({CLASS_ANNOTATION: "Kafka"}), json!({})),
             broker(json!({CLASS_ANNOTATION: "MTChannelBasedBroker"}), json!({})), &none,
             Some("metadata.annotations[eventing.knative.dev/broker.class]: immutable: the Broker's class is \"Kafka\" (asked: \"MTChannelBasedBroker\")")),
            (Kind::Broker, broker(json!({CLASS_ANNOTATION: "Kafka"}), json!({})),
             broker(json!({}), json!({})), &none,
             Some("metadata.annotations[eventing.knative.dev/broker.class]: immutable")),
            // Stored before the webhook: defaulting writes the class it already had in effect.
            (Kind::Broker, broker(json!({}), json!({})),
             broker(json!({CLASS_ANNOTATION: "MTChannelBasedBroker"}), json!({})), &none, None),
            (Kind::Broker, broker(json!({}), json!({})),
             broker(json!({CLASS_ANNOTATION: "Kafka"}), json!({})), &kafka_default, None),
            (Kind::Broker, broker(json!({}), json!({})),
             broker(json!({CLASS_ANNOTATION: "Kafka"}), json!({})), &none,
             Some("the Broker's class is \"MTChannelBasedBroker\" (asked: \"Kafka\")")),
            (Kind::Broker, broker(json!({}), config("a")), broker(json!({}), config("b")), &none,
             Some("spec.config: immutable: the Broker's config is {\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"a\",\"namespace\":\"team-a\"}")),
            (Kind::Broker, broker(json!({}), config("a")), broker(json!({}), json!({})), &none,
             Some("spec.config: immutable")),
            // The namespace left out is the Broker's: the same config.
            (Kind::Broker, broker(json!({}), config("a")),
             broker(json!({}), json!({"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "namespace": "team-a"}})),
             &none, None),
            (Kind::Broker, broker(json!({}), json!({"delivery": {"retry": 1}})),
             broker(json!({}), json!({"delivery": {"retry": 5}})), &none, None),
            (Kind::Trigger, trigger(json!({"broker": "a"})), trigger(json!({"broker": "b"})), &none,
             Some("spec.broker: immutable: the Trigger's broker is \"a\" (asked: \"b\")")),
            (Kind::Trigger, trigger(json!({"broker": "a"})), trigger(json!({"brokerRef": {"name": "a"}})), &none,
             Some("spec.broker: immutable")),
            (Kind::Trigger, trigger(json!({"brokerRef": {"name": "a"}})), trigger(json!({"brokerRef": {"name": "b"}})), &none,
             Some("spec.brokerRef: immutable")),
            (Kind::Trigger, trigger(json!({"broker": "a", "filter": {}})),
             trigger(json!({"broker": "a", "filter": {"attributes": {"type": "x"}}})), &none, None),
            (Kind::PingSource, json!({"spec": {"schedule": "* * * * *"}}), json!({"spec": {"schedule": "@hourly"}}), &none, None),
        ];
        for (kind, old, new, brokers, expected) in cases {
            let defaults = Defaults {
                brokers,
                class: "MTChannelBasedBroker",
            };
            let refused = changed(kind, &old, &new, "team-a", &defaults);
            match (expected, &refused) {
                (None, None) => {}
                (Some(expected), Some(reason)) if reason.contains(expected) => {}
                _ => panic!("{old} -> {new}: {refused:?}, expected {expected:?}"),
            }
        }
    }
}
