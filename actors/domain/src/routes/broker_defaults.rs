//! Knative's `config-br-defaults` checked: what a Broker that says no class, `spec.config` or
//! `spec.delivery` gets, for the whole cluster and per namespace (the ConfigMap's shape and where it
//! is are in [`crate::resources::broker_defaults`]).

use std::collections::BTreeMap;

use super::{Broker, Delivery, Reference};
use crate::resources::broker_defaults::{DefaultsDocument, EntryDocument, KEY, NAMESPACE};
use crate::resources::field::{Checker, FieldError, Strictness};
use crate::resources::DeliverySpec;

/// One entry: what a Broker without its own gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerDefault {
    pub class: Option<String>,
    pub config: Option<Reference>,
    pub delivery: Option<Delivery>,
    /// `delivery` as written in the ConfigMap (a dead-letter `ref` given the namespace it was
    /// checked in): what the admission webhook writes into a Broker that has none.
    pub delivery_spec: Option<DeliverySpec>,
}

/// The defaults, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerDefaults {
    pub cluster: BrokerDefault,
    pub namespaces: BTreeMap<String, BrokerDefault>,
}

impl BrokerDefaults {
    /// Reads the ConfigMap's data. Errors name the field as `data.default-br-config.<path>`.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, Vec<FieldError>> {
        let Some(text) = data.get(KEY) else {
            return Ok(Self::default());
        };
        let base = format!("data.{KEY}");
        let document: DefaultsDocument = serde_yaml::from_str(text).map_err(|error| {
            vec![FieldError::new(
                &base,
                format!("not the shape Knative reads (clusterDefault, namespaceDefaults): {error}"),
            )]
        })?;
        let mut checker = Checker::new(Strictness::Lenient);
        let cluster = document
            .cluster_default
            .as_ref()
            .map(|entry| {
                BrokerDefault::from_spec(
                    entry,
                    &mut checker,
                    &format!("{base}.clusterDefault"),
                    NAMESPACE,
                )
            })
            .unwrap_or_default();
        let namespaces = document
            .namespace_defaults
            .iter()
            .map(|(namespace, entry)| {
                let path = format!("{base}.namespaceDefaults.{namespace}");
                (
                    namespace.clone(),
                    BrokerDefault::from_spec(entry, &mut checker, &path, namespace),
                )
            })
            .collect();
        checker
            .finish(Self {
                cluster,
                namespaces,
            })
            .map(|checked| checked.value)
    }

    fn field<T>(&self, namespace: &str, pick: impl Fn(&BrokerDefault) -> Option<&T>) -> Option<&T> {
        self.namespaces
            .get(namespace)
            .and_then(&pick)
            .or_else(|| pick(&self.cluster))
    }

    /// What a Broker of `namespace` that says nothing gets: the namespace's entry, field by field,
    /// else the cluster's.
    pub fn entry(&self, namespace: &str) -> BrokerDefault {
        BrokerDefault {
            class: self.field(namespace, |d| d.class.as_ref()).cloned(),
            config: self.field(namespace, |d| d.config.as_ref()).cloned(),
            delivery: self.field(namespace, |d| d.delivery.as_ref()).cloned(),
            delivery_spec: self.field(namespace, |d| d.delivery_spec.as_ref()).cloned(),
        }
    }

    /// The Broker with what it does not say filled in from these defaults.
    pub fn apply(&self, broker: &Broker) -> Broker {
        let namespace = broker.key.namespace.as_str();
        let mut defaulted = broker.clone();
        if defaulted.class.is_none() {
            defaulted.class = self.field(namespace, |d| d.class.as_ref()).cloned();
        }
        if defaulted.config.is_none() {
            defaulted.config = self.field(namespace, |d| d.config.as_ref()).cloned();
        }
        if defaulted.delivery.is_none() {
            defaulted.delivery = self.field(namespace, |d| d.delivery.as_ref()).cloned();
        }
        defaulted
    }
}

impl BrokerDefault {
    fn from_spec(
        entry: &EntryDocument,
        checker: &mut Checker,
        path: &str,
        namespace: &str,
    ) -> BrokerDefault {
        let text = |value: &Option<String>| value.clone().filter(|text| !text.is_empty());
        let config = match (
            text(&entry.kind),
            text(&entry.name),
            text(&entry.api_version),
        ) {
            (None, None, None) => None,
            (Some(kind), Some(name), Some(api_version)) => Some(Reference {
                api_version,
                kind,
                name,
                namespace: text(&entry.namespace).unwrap_or_else(|| namespace.to_string()),
            }),
            (kind, name, api_version) => {
                for (missing, field) in
                    [(kind, "kind"), (name, "name"), (api_version, "apiVersion")]
                {
                    if missing.is_none() {
                        checker.error(
                            format!("{path}.{field}"),
                            "required with the other fields of the default spec.config",
                        );
                    }
                }
                None
            }
        };
        let delivery = entry.delivery.as_ref().and_then(|delivery| {
            Delivery::from_spec(delivery, checker, &format!("{path}.delivery"), namespace)
        });
        let delivery_spec = delivery
            .as_ref()
            .and(entry.delivery.clone())
            .map(|mut spec| {
                if let Some(reference) = spec
                    .dead_letter_sink
                    .as_mut()
                    .and_then(|sink| sink.reference.as_mut())
                {
                    if reference
                        .namespace
                        .as_deref()
                        .unwrap_or_default()
                        .is_empty()
                    {
                        reference.namespace = Some(namespace.to_string());
                    }
                }
                spec
            });
        BrokerDefault {
            class: text(&entry.broker_class),
            config,
            delivery,
            delivery_spec,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ObjectKey;

    fn defaults(yaml: &str) -> Result<BrokerDefaults, Vec<FieldError>> {
        BrokerDefaults::from_data(&BTreeMap::from([(KEY.to_string(), yaml.to_string())]))
    }

    fn broker(namespace: &str) -> Broker {
        Broker {
            key: ObjectKey::new(namespace, "default"),
            class: None,
            annotations: BTreeMap::new(),
            config: None,
            delivery: None,
        }
    }

    #[test]
    fn a_namespace_entry_wins_over_the_cluster_default_field_by_field() {
        let defaults = defaults(
            "clusterDefault:\n  brokerClass: MTChannelBasedBroker\n  delivery: {retry: 3}\n\
             namespaceDefaults:\n  team-a:\n    brokerClass: Kafka\n    apiVersion: v1\n    kind: ConfigMap\n    name: kafka-broker-config\n    namespace: knative-eventing\n",
        )
        .unwrap();
        let team_a = defaults.apply(&broker("team-a"));
        assert_eq!(team_a.class.as_deref(), Some("Kafka"));
        assert_eq!(
            team_a.config.as_ref().map(|c| c.name.as_str()),
            Some("kafka-broker-config")
        );
        assert!(
            team_a.delivery.is_some(),
            "the cluster's delivery where the namespace has none"
        );
        let other = defaults.apply(&broker("other"));
        assert_eq!(other.class.as_deref(), Some("MTChannelBasedBroker"));
        assert!(other.config.is_none());
        let entry = defaults.entry("team-a");
        assert_eq!(entry.class.as_deref(), Some("Kafka"));
        assert_eq!(
            entry.delivery_spec.and_then(|spec| spec.retry),
            Some(3),
            "the cluster's delivery as written"
        );
    }

    #[test]
    fn a_default_dead_letter_ref_keeps_the_namespace_it_was_checked_in() {
        let defaults = defaults(
            "clusterDefault:\n  delivery:\n    deadLetterSink: {ref: {apiVersion: v1, kind: Service, name: dls}}\n",
        )
        .unwrap();
        let spec = defaults.entry("team-a").delivery_spec.unwrap();
        let reference = spec.dead_letter_sink.unwrap().reference.unwrap();
        assert_eq!(reference.namespace.as_deref(), Some(NAMESPACE));
    }

    #[test]
    fn what_a_broker_says_itself_wins() {
        let defaults = defaults("clusterDefault: {brokerClass: Kafka}\n").unwrap();
        let mut own = broker("team-a");
        own.class = Some("MTChannelBasedBroker".into());
        assert_eq!(
            defaults.apply(&own).class.as_deref(),
            Some("MTChannelBasedBroker")
        );
    }

    #[test]
    fn a_wrong_default_is_refused_naming_its_field() {
        let errors = defaults("clusterDefault:\n  delivery: {backoffDelay: soon}\n").unwrap_err();
        assert!(
            errors[0]
                .to_string()
                .starts_with("data.default-br-config.clusterDefault.delivery.backoffDelay"),
            "{}",
            errors[0]
        );
        let errors = defaults("clusterDefault: {kind: ConfigMap}\n").unwrap_err();
        assert!(
            errors[0].to_string().contains("clusterDefault.name"),
            "{}",
            errors[0]
        );
        assert!(
            defaults("clusterDefualt: {}\n").is_err(),
            "a misspelled key"
        );
    }
}
