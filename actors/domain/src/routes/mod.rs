//! What a node runs: validated brokers and triggers ([`Broker`], [`Trigger`]), gathered into a
//! [`Catalog`], resolved into the immutable [`Routes`] snapshot.
//!
//! `Routes` is the contract between control plane and data plane: the file loader (or, in a cluster,
//! the controller) produces it, the node actor (`knactor_actors::actor::Node`) consumes it, and swapping it is atomic.
//! Everything a delivery needs is resolved here (subscriber URL, dead-letter URL, effective delivery
//! policy), so no actor resolves or parses anything.

mod broker;
mod broker_defaults;
mod channel;
mod delivery;
mod destination;
mod load;
mod node_settings;
mod source;
mod trigger;

/// Parts of the API shape that the runtime types hold as they are.
pub use crate::resources::{ContentMode, Reference};
pub use broker::{
    broker_address, broker_of_path, broker_path_parts, Broker, BROKER_CLASS_ANNOTATION,
    DEFAULT_BROKER_CLASS,
};
pub use broker_defaults::{BrokerDefault, BrokerDefaults};
pub use channel::{
    kafka_client_config, ChannelConfigError, ChannelDefaults, ChannelKind, ChannelSpec,
    KafkaAuthError, KafkaChannel, EXTERNAL_TOPIC_ANNOTATION, KAFKA_BROKER_CLASSES,
};
pub use delivery::{Delivery, ResolvedDelivery};
pub use destination::{
    AddressableEntryError, AddressablesTable, Destination, ResolveError, Resolver, StaticResolver,
};
pub use load::{identity, load_str, load_value, LoadReport, Resource};
pub use node_settings::NodeSettings;
pub use source::{
    ApiServerMode, ApiServerSource, NamespaceScope, PingSource, SourceDefinition, SourceRoute,
    WatchedKind, PING_EVENT_TYPE,
};
pub use trigger::{
    DeliveryOrder, StartPosition, Trigger, DELIVERY_ORDER_ANNOTATION, START_POSITION_ANNOTATION,
};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use url::Url;

use crate::filter::Filter;
use crate::resources::broker_defaults::config_map_key;
use crate::resources::{FieldError, ObjectKey, Origin, Refusal, TriggerSpec};

/// Every resource a node was given, validated, without duplicates.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub brokers: BTreeMap<ObjectKey, Arc<Broker>>,
    pub triggers: BTreeMap<ObjectKey, Arc<Trigger>>,
    pub api_server_sources: BTreeMap<ObjectKey, Arc<ApiServerSource>>,
    pub ping_sources: BTreeMap<ObjectKey, Arc<PingSource>>,
    /// `data` of ConfigMaps (a Kafka broker's `spec.config`).
    pub config_maps: BTreeMap<ObjectKey, BTreeMap<String, String>>,
    /// Decoded `data` of Secrets (a Kafka broker's auth Secret).
    pub secrets: BTreeMap<ObjectKey, BTreeMap<String, String>>,
    pub settings: NodeSettings,
}

impl Catalog {
    /// Gathers the accepted resources of a load. A second definition of the same resource is
    /// refused (the first one stays), as is a second NodeConfig entry for the same addressable.
    pub fn from_report(report: &LoadReport) -> (Catalog, Vec<Refusal>) {
        let mut catalog = Catalog::default();
        let mut refused = Vec::new();
        let mut seen: BTreeMap<(&'static str, ObjectKey), &Origin> = BTreeMap::new();
        for (origin, resource) in &report.accepted {
            if let Some((kind, key)) = identity(resource) {
                if let Some(first) = seen.get(&(kind, key.clone())) {
                    refused.push(Refusal {
                        origin: origin.clone(),
                        resource: Some(format!("{kind} {key}")),
                        errors: vec![FieldError::new(
                            "metadata.name",
                            format!("{kind} {key} is already defined in {first}"),
                        )],
                    });
                    continue;
                }
                seen.insert((kind, key), origin);
            }
            match resource {
                Resource::Broker(broker) => {
                    catalog
                        .brokers
                        .insert(broker.key.clone(), Arc::new(broker.clone()));
                }
                Resource::Trigger(trigger) => {
                    catalog
                        .triggers
                        .insert(trigger.key.clone(), Arc::new(trigger.clone()));
                }
                Resource::ApiServerSource(source) => {
                    catalog
                        .api_server_sources
                        .insert(source.key.clone(), Arc::new(source.clone()));
                }
                Resource::PingSource(source) => {
                    catalog
                        .ping_sources
                        .insert(source.key.clone(), Arc::new(source.clone()));
                }
                Resource::ConfigMap { key, data } => {
                    catalog.config_maps.insert(key.clone(), data.clone());
                }
                Resource::Secret { key, data } => {
                    catalog.secrets.insert(key.clone(), data.clone());
                }
                Resource::NodeConfig(settings) => {
                    let known: Vec<&String> = catalog
                        .settings
                        .addressables
                        .iter()
                        .map(|(key, _)| key)
                        .collect();
                    if let Some((key, _)) = settings
                        .addressables
                        .iter()
                        .find(|(key, _)| known.contains(&key))
                    {
                        refused.push(Refusal {
                            origin: origin.clone(),
                            resource: Some("NodeConfig".into()),
                            errors: vec![FieldError::new(
                                format!("spec.addressables.{key}"),
                                "is already listed in another NodeConfig",
                            )],
                        });
                        continue;
                    }
                    catalog
                        .settings
                        .addressables
                        .extend(settings.addressables.iter().cloned());
                    if settings.default_delivery.is_some() {
                        catalog.settings.default_delivery = settings.default_delivery.clone();
                    }
                }
            }
        }
        catalog.apply_broker_defaults();
        (catalog, refused)
    }

    /// Gives the Brokers what Knative's `config-br-defaults` ConfigMap says they lack (class,
    /// `spec.config`, delivery), when the catalog has that ConfigMap. Call again once more
    /// ConfigMaps arrived (cluster mode reads them after the resources).
    pub fn apply_broker_defaults(&mut self) {
        let Some(data) = self.config_maps.get(&config_map_key()) else {
            return;
        };
        // A wrong ConfigMap was refused when it was loaded; from the cluster, it is ignored here
        // and the Brokers' status says nothing of it (the defaults it cannot give stay unset).
        let Ok(defaults) = BrokerDefaults::from_data(data) else {
            return;
        };
        for broker in self.brokers.values_mut() {
            let defaulted = defaults.apply(broker);
            if defaulted != **broker {
                *broker = Arc::new(defaulted);
            }
        }
    }

    /// The addressables table of this catalog's NodeConfigs, with Brokers resolving to `ingress`.
    pub fn addressables(&self, ingress: Option<Url>) -> AddressablesTable {
        let mut table = AddressablesTable::new(ingress);
        for (key, url) in &self.settings.addressables {
            // Checked when the NodeConfig was loaded; a duplicate across files was refused above.
            let _ = table.insert(key, url);
        }
        table
    }
}

/// A trigger ready to run: everything resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRoute {
    pub key: ObjectKey,
    pub broker: ObjectKey,
    pub filter: Filter,
    /// Shared: every attempt's request names it.
    pub subscriber: Arc<Url>,
    /// The subscriber as Knative reports it (`status.subscriberUri`, `knativeerrordest`): a `uri`
    /// exactly as written.
    pub subscriber_uri: Arc<str>,
    pub delivery: ResolvedDelivery,
    pub order: DeliveryOrder,
    pub start: StartPosition,
}

/// A broker ready to run, with its ready triggers (sorted by key).
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerRoute {
    pub broker: Arc<Broker>,
    pub channel: ChannelSpec,
    pub triggers: Vec<Arc<TriggerRoute>>,
}

impl BrokerRoute {
    pub fn key(&self) -> &ObjectKey {
        &self.broker.key
    }

    pub fn trigger(&self, key: &ObjectKey) -> Option<&Arc<TriggerRoute>> {
        self.triggers.iter().find(|trigger| &trigger.key == key)
    }
}

/// Why a resource is loaded but not (fully) running; what Knative reports as `Ready=False`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteIssue {
    pub kind: &'static str,
    pub key: ObjectKey,
    pub reason: IssueReason,
    pub message: String,
}

/// The reason of a [`RouteIssue`], written as Knative writes a condition's reason
/// (`SubscriberResolveFailed`). Status writers match on it to say which condition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueReason {
    /// A Broker's `spec.config` names a ConfigMap or Secret that is missing or wrong.
    ChannelConfigInvalid,
    /// A Broker's channel (its Kafka topic) cannot be opened on this node.
    ChannelUnavailable,
    /// A dead-letter sink does not resolve; undeliverable events are parked instead.
    DeadLetterSinkResolveFailed,
    /// A Trigger without `spec.broker`.
    BrokerMissing,
    /// A Trigger's Broker exists but does not run.
    BrokerNotReady,
    /// A Trigger's Broker is not defined.
    BrokerDoesNotExist,
    /// A Trigger without `spec.subscriber`.
    SubscriberMissing,
    /// A Trigger's subscriber does not resolve to a URL.
    SubscriberResolveFailed,
    /// A source without `spec.sink`.
    SinkMissing,
    /// A source's sink does not resolve to a URL.
    SinkNotFound,
}

impl IssueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueReason::ChannelConfigInvalid => "ChannelConfigInvalid",
            IssueReason::ChannelUnavailable => "ChannelUnavailable",
            IssueReason::DeadLetterSinkResolveFailed => "DeadLetterSinkResolveFailed",
            IssueReason::BrokerMissing => "BrokerMissing",
            IssueReason::BrokerNotReady => "BrokerNotReady",
            IssueReason::BrokerDoesNotExist => "BrokerDoesNotExist",
            IssueReason::SubscriberMissing => "SubscriberMissing",
            IssueReason::SubscriberResolveFailed => "SubscriberResolveFailed",
            IssueReason::SinkMissing => "SinkMissing",
            IssueReason::SinkNotFound => "SinkNotFound",
        }
    }
}

impl fmt::Display for IssueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RouteIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}: {}",
            self.kind, self.key, self.reason, self.message
        )
    }
}

/// A trigger as its author wrote it, whether it runs or not: what the console draws for a trigger
/// that has no route (with its issue's reason) and shows when one is clicked.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenTrigger {
    /// The broker it names, if it names one.
    pub broker: Option<ObjectKey>,
    pub spec: Arc<TriggerSpec>,
}

/// The immutable snapshot of what a node runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routes {
    brokers: BTreeMap<ObjectKey, Arc<BrokerRoute>>,
    sources: Vec<Arc<SourceRoute>>,
    issues: Vec<RouteIssue>,
    written: BTreeMap<ObjectKey, WrittenTrigger>,
}

impl Routes {
    /// Resolves a catalog. Delivery precedence: the trigger's `delivery` replaces the broker's as a
    /// whole; a broker without one takes the node default (Knative's `config-br-defaults`).
    pub fn build(
        catalog: &Catalog,
        resolver: &dyn Resolver,
        channels: &ChannelDefaults,
        default_delivery: &Delivery,
    ) -> Routes {
        let mut issues = Vec::new();
        let mut brokers: BTreeMap<ObjectKey, BrokerRoute> = BTreeMap::new();
        for broker in catalog.brokers.values() {
            match channels.resolve(broker, &catalog.config_maps, &catalog.secrets) {
                Ok(channel) => {
                    let route = BrokerRoute {
                        broker: broker.clone(),
                        channel,
                        triggers: Vec::new(),
                    };
                    brokers.insert(broker.key.clone(), route);
                }
                Err(problem) => issues.push(RouteIssue {
                    kind: "Broker",
                    key: broker.key.clone(),
                    reason: IssueReason::ChannelConfigInvalid,
                    message: problem.to_string(),
                }),
            }
        }

        for (key, broker) in &catalog.brokers {
            if let Some(delivery) = &broker.delivery {
                if let (_, Some(problem)) = delivery.resolve(resolver) {
                    issues.push(RouteIssue {
                        kind: "Broker",
                        key: key.clone(),
                        reason: IssueReason::DeadLetterSinkResolveFailed,
                        message: format!("{problem}; undeliverable events will be parked"),
                    });
                }
            }
        }

        for trigger in catalog.triggers.values() {
            let not_ready = |reason: IssueReason, message: String| RouteIssue {
                kind: "Trigger",
                key: trigger.key.clone(),
                reason,
                message,
            };
            let Some(broker_key) = &trigger.broker else {
                issues.push(not_ready(
                    IssueReason::BrokerMissing,
                    "spec.broker is not set".into(),
                ));
                continue;
            };
            let Some(broker) = brokers.get_mut(broker_key) else {
                issues.push(if catalog.brokers.contains_key(broker_key) {
                    not_ready(
                        IssueReason::BrokerNotReady,
                        format!("Broker {broker_key} is not running"),
                    )
                } else {
                    not_ready(
                        IssueReason::BrokerDoesNotExist,
                        format!("Broker {broker_key} is not defined"),
                    )
                });
                continue;
            };
            let Some(subscriber) = &trigger.subscriber else {
                issues.push(not_ready(
                    IssueReason::SubscriberMissing,
                    "spec.subscriber is not set".into(),
                ));
                continue;
            };
            let (subscriber, subscriber_uri) = match resolver.resolve(subscriber) {
                Ok(url) => {
                    let reported = subscriber.as_reported(&url);
                    (Arc::new(url), Arc::from(reported))
                }
                Err(problem) => {
                    issues.push(not_ready(
                        IssueReason::SubscriberResolveFailed,
                        problem.to_string(),
                    ));
                    continue;
                }
            };
            let delivery = trigger
                .delivery
                .as_ref()
                .or(broker.broker.delivery.as_ref())
                .unwrap_or(default_delivery);
            let (delivery, problem) = delivery.resolve(resolver);
            if let Some(problem) = problem {
                issues.push(not_ready(
                    IssueReason::DeadLetterSinkResolveFailed,
                    format!("{problem}; undeliverable events will be parked"),
                ));
            }
            broker.triggers.push(Arc::new(TriggerRoute {
                key: trigger.key.clone(),
                broker: broker_key.clone(),
                filter: trigger.filter.clone(),
                subscriber,
                subscriber_uri,
                delivery,
                order: trigger.order,
                start: trigger.start,
            }));
        }

        let mut sources = Vec::new();
        let definitions = catalog
            .ping_sources
            .values()
            .map(|source| SourceDefinition::Ping(source.clone()))
            .chain(
                catalog
                    .api_server_sources
                    .values()
                    .map(|source| SourceDefinition::ApiServer(source.clone())),
            );
        for source in definitions {
            let not_ready = |reason: IssueReason, message: String| RouteIssue {
                kind: source.kind(),
                key: source.key().clone(),
                reason,
                message,
            };
            match source.sink().map(|sink| resolver.resolve(sink)) {
                None => issues.push(not_ready(
                    IssueReason::SinkMissing,
                    "spec.sink is not set".into(),
                )),
                Some(Err(problem)) => {
                    issues.push(not_ready(IssueReason::SinkNotFound, problem.to_string()))
                }
                Some(Ok(sink)) => sources.push(Arc::new(SourceRoute { source, sink })),
            }
        }

        let written = catalog
            .triggers
            .values()
            .map(|trigger| {
                let written = WrittenTrigger {
                    broker: trigger.broker.clone(),
                    spec: trigger.spec.clone(),
                };
                (trigger.key.clone(), written)
            })
            .collect();
        Routes {
            sources,
            brokers: brokers
                .into_iter()
                .map(|(key, route)| (key, Arc::new(route)))
                .collect(),
            issues,
            written,
        }
    }

    pub fn broker(&self, key: &ObjectKey) -> Option<&Arc<BrokerRoute>> {
        self.brokers.get(key)
    }

    pub fn brokers(&self) -> impl Iterator<Item = &Arc<BrokerRoute>> {
        self.brokers.values()
    }

    /// The sources to run, PingSources first, each kind by key.
    pub fn sources(&self) -> &[Arc<SourceRoute>] {
        &self.sources
    }

    /// Resources that are loaded but not running, and why.
    pub fn issues(&self) -> &[RouteIssue] {
        &self.issues
    }

    /// Every trigger loaded, running or not, as written.
    pub fn written_triggers(&self) -> &BTreeMap<ObjectKey, WrittenTrigger> {
        &self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Strictness;

    fn routes_of(yaml: &str) -> Routes {
        let report = load_str(yaml, "t.yaml", Strictness::Lenient);
        assert!(report.refused.is_empty(), "{:?}", report.refused);
        let (catalog, refused) = Catalog::from_report(&report);
        assert!(refused.is_empty());
        let table = catalog.addressables(Some(Url::parse("http://127.0.0.1:8080/").unwrap()));
        Routes::build(
            &catalog,
            &table,
            &ChannelDefaults::default(),
            &Delivery::none(),
        )
    }

    const NODE: &str = "apiVersion: knactor.dev/v1alpha1\nkind: NodeConfig\nmetadata: {name: n}\nspec:\n  addressables:\n    Service/display: http://127.0.0.1:8081\n";

    #[test]
    fn a_trigger_resolves_its_subscriber_and_takes_the_brokers_delivery() {
        let routes = routes_of(&format!(
            "{NODE}---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n\
             spec: {{delivery: {{retry: 3}}}}\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
             metadata: {{name: t}}\nspec: {{broker: default, subscriber: {{ref: {{apiVersion: v1, kind: Service, name: display}}}}}}\n"
        ));
        assert!(routes.issues().is_empty(), "{:?}", routes.issues());
        let broker = routes
            .broker(&ObjectKey::new("default", "default"))
            .unwrap();
        assert_eq!(broker.channel.topic, "knative-broker-default-default");
        let trigger = &broker.triggers[0];
        assert_eq!(trigger.subscriber.as_str(), "http://127.0.0.1:8081/");
        assert_eq!(trigger.delivery.retry.retries, 3);
    }

    #[test]
    fn a_triggers_delivery_replaces_the_brokers_as_a_whole() {
        let routes = routes_of(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n\
             spec: {delivery: {retry: 3, deadLetterSink: {uri: 'http://dls/'}}}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\n\
             spec: {broker: b, subscriber: {uri: 'http://s/'}, delivery: {retry: 1}}\n",
        );
        let trigger = &routes.brokers().next().unwrap().triggers[0];
        assert_eq!(trigger.delivery.retry.retries, 1);
        assert_eq!(
            trigger.delivery.dead_letter, None,
            "not merged field by field"
        );
    }

    #[test]
    fn unresolvable_or_incomplete_triggers_are_reported_not_run() {
        let routes = routes_of(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec: {}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: unknown-service}\n\
             spec: {broker: b, subscriber: {ref: {apiVersion: v1, kind: Service, name: nope}}}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: no-broker}\n\
             spec: {broker: other, subscriber: {uri: 'http://s/'}}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: no-subscriber}\nspec: {broker: b}\n",
        );
        let reasons: Vec<_> = routes
            .issues()
            .iter()
            .map(|issue| issue.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            vec![
                "BrokerDoesNotExist",
                "SubscriberMissing",
                "SubscriberResolveFailed"
            ]
        );
        assert!(routes.brokers().next().unwrap().triggers.is_empty());
    }

    #[test]
    fn a_second_definition_is_refused() {
        let doc =
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec: {}\n";
        let mut report = load_str(doc, "a.yaml", Strictness::Lenient);
        report.merge(load_str(doc, "b.yaml", Strictness::Lenient));
        let (catalog, refused) = Catalog::from_report(&report);
        assert_eq!(catalog.brokers.len(), 1);
        assert_eq!(
            refused[0].to_string(),
            "b.yaml: Broker default/b: metadata.name: Broker default/b is already defined in a.yaml"
        );
    }

    #[test]
    fn the_topic_template_takes_knatives_placeholders() {
        let defaults = ChannelDefaults {
            topic_template: "kb-{{ .Namespace }}.{{.Name}}".into(),
            ..ChannelDefaults::default()
        };
        assert_eq!(defaults.topic_for(&ObjectKey::new("ns", "b")), "kb-ns.b");
    }
}
