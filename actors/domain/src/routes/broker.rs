//! `Broker` at runtime, converted once from its YAML shape.

use std::collections::BTreeMap;

use super::delivery::Delivery;
use crate::resources::field::{check_dns_name, join, Checked, Checker, FieldError};
use crate::resources::{BrokerSpec, Object, ObjectKey, Reference};

/// The annotation that picks a broker implementation.
pub const BROKER_CLASS_ANNOTATION: &str = "eventing.knative.dev/broker.class";
/// Knative's default class, and knactor's: the node's default channel.
pub const DEFAULT_BROKER_CLASS: &str = "MTChannelBasedBroker";

/// A broker's address at a node's ingress: `<ingress>/<namespace>/<name>`, Knative's path shape.
pub fn broker_address(ingress: &url::Url, broker: &ObjectKey) -> Result<url::Url, url::ParseError> {
    ingress.join(&format!("{}/{}", broker.namespace, broker.name))
}

/// The broker a path relative to an ingress names (`<namespace>/<name>`, nothing more), if any.
pub fn broker_of_path(path: &str) -> Option<ObjectKey> {
    let (namespace, name) = broker_path_parts(path)?;
    Some(ObjectKey::new(namespace, name))
}

/// The namespace and name of the broker a path relative to an ingress names, borrowed from it.
pub fn broker_path_parts(path: &str) -> Option<(&str, &str)> {
    let (namespace, name) = path.split_once('/')?;
    if namespace.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    Some((namespace, name))
}

/// A validated Broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Broker {
    pub key: ObjectKey,
    /// `eventing.knative.dev/broker.class`; `None` takes the node's default class.
    pub class: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.config`: a ConfigMap with channel settings (Kafka keys), read by the channel adapter.
    pub config: Option<Reference>,
    /// `spec.delivery`; `None` takes the node's default.
    pub delivery: Option<Delivery>,
}

impl Broker {
    /// Validates a Broker document as Knative's webhook does and converts it.
    pub fn from_object(
        object: &Object<BrokerSpec>,
        checker: Checker,
    ) -> Result<Checked<Broker>, Vec<FieldError>> {
        let mut checker = checker;
        let namespace = object.metadata.namespace().to_string();
        check_dns_name(&mut checker, "metadata.name", object.metadata.name(), 253);
        check_dns_name(&mut checker, "metadata.namespace", &namespace, 63);
        let config = object.spec.config.as_ref().and_then(|config| {
            let path = "spec.config";
            let field = |value: &Option<String>, name: &str, checker: &mut Checker| {
                let value = value.as_deref().filter(|v| !v.is_empty());
                if value.is_none() {
                    checker.error(join(path, name), "required");
                }
                value.map(str::to_string)
            };
            let kind = field(&config.kind, "kind", &mut checker);
            let name = field(&config.name, "name", &mut checker);
            let api_version = field(&config.api_version, "apiVersion", &mut checker);
            Some(Reference {
                api_version: api_version?,
                kind: kind?,
                name: name?,
                namespace: config
                    .namespace
                    .clone()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or_else(|| namespace.clone()),
            })
        });
        let delivery = object.spec.delivery.as_ref().and_then(|delivery| {
            Delivery::from_spec(delivery, &mut checker, "spec.delivery", &namespace)
        });
        let class = object
            .metadata
            .annotation(BROKER_CLASS_ANNOTATION)
            .filter(|class| !class.is_empty())
            .map(str::to_string);
        checker.finish(Broker {
            key: ObjectKey::of(&object.metadata),
            class,
            annotations: object.metadata.annotations.clone(),
            config,
            delivery,
        })
    }
}
