//! The pure part: the routes of the cluster's objects and the status each should have (the
//! Knative conditions, their reasons, a Broker's address), computed without I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use knactor_actors::actor::NodeStatus;
use knactor_actors::resources::ObjectKey;
use knactor_actors::routes::{
    broker_address, ApiServerMode, Catalog, IssueReason, LoadReport, Reference, ResolveError,
    Resolver, Routes, SourceDefinition, PING_EVENT_TYPE,
};
use knactor_actors::source::SourceBoard;
use kube::api::DynamicObject;
use kube::ResourceExt as _;
use serde_json::{json, Value};
use url::Url;

use super::{load, ClusterOptions, Kind, Statuses};
use crate::broker_config::BrokerConfigs;

/// Routes from the cluster's objects, and the status each object should have.
pub(super) fn build(
    options: &ClusterOptions,
    objects: &BTreeMap<Kind, Vec<Arc<DynamicObject>>>,
    services: &Services,
    board: &SourceBoard,
    configs: &BrokerConfigs,
    node: Option<&NodeStatus>,
) -> (Routes, Statuses) {
    let mut report = LoadReport::default();
    let mut statuses = Statuses::new();
    let mut generations = BTreeMap::new();
    for (kind, list) in objects {
        for object in list {
            let key = ObjectKey {
                namespace: object.namespace().unwrap_or_default(),
                name: object.name_any(),
            };
            generations.insert((*kind, key.clone()), object.metadata.generation);
            if object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(loaded) = load(*kind, object) else {
                continue;
            };
            if let Some(refusal) = loaded.refused.first() {
                let message = refusal
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                statuses.insert(
                    (*kind, key),
                    status_value(
                        object.metadata.generation,
                        vec![condition("Ready", false, "InvalidSpec", &message)],
                        Value::Null,
                    ),
                );
                continue;
            }
            report.merge(loaded);
        }
    }
    let (mut catalog, _) = Catalog::from_report(&report);
    configs.fill(&mut catalog);
    catalog.apply_broker_defaults();
    let resolver = ClusterResolver {
        ingress: options.advertise.clone(),
        brokers: catalog.brokers.keys().cloned().collect(),
        services,
    };
    let default_delivery = catalog
        .settings
        .default_delivery
        .clone()
        .unwrap_or_else(|| options.default_delivery.clone());
    let routes = Routes::build(&catalog, &resolver, &options.channels, &default_delivery);
    let issue = |kind: Kind, key: &ObjectKey| {
        routes
            .issues()
            .iter()
            .find(|issue| issue.kind == kind.name() && &issue.key == key)
    };
    let generation =
        |kind: Kind, key: &ObjectKey| generations.get(&(kind, key.clone())).copied().flatten();

    // The brokers of the routes this node does not run (yet), and why: for the brokers' status and
    // their triggers'.
    let not_running_here: BTreeMap<ObjectKey, (String, String)> = node
        .map(|node| {
            routes
                .brokers()
                .filter_map(|broker| Some((broker.key().clone(), not_running(node, broker.key())?)))
                .collect()
        })
        .unwrap_or_default();
    for key in catalog.brokers.keys() {
        let address = broker_address(&options.advertise, key)
            .map(|url| url.to_string())
            .unwrap_or_default();
        let parts = [
            "Addressable",
            "IngressReady",
            "FilterReady",
            "TriggerChannelReady",
        ];
        let mut conditions: Vec<Value> = parts
            .iter()
            .map(|part| condition(part, true, "", ""))
            .collect();
        match issue(Kind::Broker, key) {
            Some(issue) => {
                let part = match issue.reason {
                    IssueReason::DeadLetterSinkResolveFailed => "DeadLetterSinkResolved",
                    _ => "TriggerChannelReady",
                };
                let message = configs
                    .explain(&issue.message)
                    .unwrap_or_else(|| issue.message.clone());
                conditions.retain(|c| c["type"] != part);
                let reason = issue.reason.as_str();
                conditions.push(condition(part, false, reason, &message));
                conditions.push(condition("Ready", false, reason, &message));
            }
            None => {
                conditions.push(condition("DeadLetterSinkResolved", true, "", ""));
                match not_running_here.get(key) {
                    Some((reason, message)) => {
                        conditions.retain(|c| c["type"] != "IngressReady");
                        conditions.push(condition("IngressReady", false, reason, message));
                        conditions.push(condition("Ready", false, reason, message));
                    }
                    None => conditions.push(condition("Ready", true, "", "")),
                }
            }
        }
        statuses.insert(
            (Kind::Broker, key.clone()),
            status_value(
                generation(Kind::Broker, key),
                conditions,
                json!({"address": {"name": "http", "url": address}}),
            ),
        );
    }
    for key in catalog.triggers.keys() {
        let broker = routes
            .brokers()
            .find(|broker| broker.trigger(key).is_some());
        let route = broker.and_then(|broker| broker.trigger(key).cloned());
        // A trigger is ready when its broker is: not while the node cannot run the broker.
        let broker_down = broker.and_then(|broker| {
            let (_, message) = not_running_here.get(broker.key())?;
            Some(format!("Broker {} is not ready: {message}", broker.key()))
        });
        let conditions = match issue(Kind::Trigger, key) {
            Some(issue) => {
                let failed = match issue.reason {
                    IssueReason::BrokerMissing
                    | IssueReason::BrokerNotReady
                    | IssueReason::BrokerDoesNotExist => "BrokerReady",
                    IssueReason::SubscriberMissing | IssueReason::SubscriberResolveFailed => {
                        "SubscriberResolved"
                    }
                    IssueReason::DeadLetterSinkResolveFailed => "DeadLetterSinkResolved",
                    IssueReason::ChannelConfigInvalid
                    | IssueReason::ChannelUnavailable
                    | IssueReason::SinkMissing
                    | IssueReason::SinkNotFound => "SubscriptionReady",
                };
                let reason = issue.reason.as_str();
                // The part that failed, and what is known to hold despite it; the rest is left out.
                let mut conditions = vec![
                    condition(failed, false, reason, &issue.message),
                    condition("DependencyReady", true, "", ""),
                    condition("Ready", false, reason, &issue.message),
                ];
                if failed != "BrokerReady" {
                    conditions.push(condition("BrokerReady", true, "", ""));
                }
                conditions
            }
            None => match &broker_down {
                Some(message) => TRIGGER_PARTS
                    .iter()
                    .map(|&part| match part {
                        "BrokerReady" => condition(part, false, "BrokerNotReady", message),
                        _ => condition(part, true, "", ""),
                    })
                    .chain([condition("Ready", false, "BrokerNotReady", message)])
                    .collect(),
                None => TRIGGER_PARTS
                    .iter()
                    .chain(["Ready"].iter())
                    .map(|part| condition(part, true, "", ""))
                    .collect(),
            },
        };
        let extra = match &route {
            Some(route) => json!({"subscriberUri": &*route.subscriber_uri}),
            None => Value::Null,
        };
        statuses.insert(
            (Kind::Trigger, key.clone()),
            status_value(generation(Kind::Trigger, key), conditions, extra),
        );
    }
    let sources = catalog
        .api_server_sources
        .keys()
        .map(|key| (Kind::ApiServerSource, key))
        .chain(
            catalog
                .ping_sources
                .keys()
                .map(|key| (Kind::PingSource, key)),
        );
    for (kind, key) in sources {
        let route = routes
            .sources()
            .iter()
            .find(|route| route.source.kind() == kind.name() && route.source.key() == key);
        let health = board.get(&(kind.name(), key.clone())).unwrap_or_default();
        let mut conditions = Vec::new();
        let mut ready: Result<(), (&str, String)> = Ok(());
        match issue(kind, key) {
            Some(issue) => {
                let reason = issue.reason.as_str();
                conditions.push(condition("SinkProvided", false, reason, &issue.message));
                ready = Err((reason, issue.message.clone()));
            }
            None => conditions.push(condition("SinkProvided", true, "", "")),
        }
        if kind == Kind::ApiServerSource {
            match &health.permissions {
                Some(Ok(())) => conditions.push(condition("SufficientPermissions", true, "", "")),
                Some(Err(problem)) => {
                    let problem = problem.to_string();
                    conditions.push(condition(
                        "SufficientPermissions",
                        false,
                        "InsufficientPermissions",
                        &problem,
                    ));
                    if ready.is_ok() {
                        ready = Err(("InsufficientPermissions", problem));
                    }
                }
                None => conditions.push(condition(
                    "SufficientPermissions",
                    "Unknown",
                    "NotChecked",
                    "the source has not started yet",
                )),
            }
        }
        if health.ready {
            conditions.push(condition("Deployed", true, "", ""));
        } else {
            let message = health
                .problem
                .clone()
                .unwrap_or_else(|| "the source is starting".into());
            conditions.push(condition("Deployed", false, "NotRunning", &message));
            if ready.is_ok() {
                ready = Err(("NotRunning", message));
            }
        }
        match ready {
            Ok(()) => conditions.push(condition("Ready", true, "", "")),
            Err((reason, message)) => conditions.push(condition("Ready", false, reason, &message)),
        }
        let attributes: Vec<Value> = match route.map(|route| &route.source) {
            Some(SourceDefinition::Ping(ping)) => {
                vec![json!({"type": PING_EVENT_TYPE, "source": ping.event_source()})]
            }
            Some(SourceDefinition::ApiServer(source)) => {
                let mode = match source.mode {
                    ApiServerMode::Resource => "resource",
                    ApiServerMode::Reference => "ref",
                };
                ["add", "update", "delete"]
                    .iter()
                    .map(|change| {
                        json!({"type": format!("dev.knative.apiserver.{mode}.{change}"), "source": options.api_server})
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let mut extra = json!({"ceAttributes": attributes});
        if let Some(route) = route {
            extra["sinkUri"] = json!(route.sink.to_string());
        }
        if kind == Kind::ApiServerSource && !health.namespaces.is_empty() {
            extra["namespaces"] = json!(health.namespaces);
        }
        statuses.insert(
            (kind, key.clone()),
            status_value(generation(kind, key), conditions, extra),
        );
    }
    (routes, statuses)
}

/// A Trigger's sub-conditions of `Ready`.
pub(super) const TRIGGER_PARTS: [&str; 5] = [
    "BrokerReady",
    "DependencyReady",
    "SubscriberResolved",
    "SubscriptionReady",
    "DeadLetterSinkResolved",
];

/// A Knative condition (`status` `True`/`False`, or a given word such as `Unknown`).
pub(super) fn condition(
    type_: &str,
    status: impl ConditionStatus,
    reason: &str,
    message: &str,
) -> Value {
    let mut condition = json!({"type": type_, "status": status.word()});
    if !reason.is_empty() {
        condition["reason"] = json!(reason);
    }
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    condition
}

pub(super) trait ConditionStatus {
    fn word(&self) -> &'static str;
}

impl ConditionStatus for bool {
    fn word(&self) -> &'static str {
        if *self {
            "True"
        } else {
            "False"
        }
    }
}

impl ConditionStatus for &'static str {
    fn word(&self) -> &'static str {
        self
    }
}

pub(super) fn status_value(
    generation: Option<i64>,
    mut conditions: Vec<Value>,
    extra: Value,
) -> Value {
    conditions.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
    let mut status = json!({"conditions": conditions});
    if let Some(generation) = generation {
        status["observedGeneration"] = json!(generation);
    }
    if let Value::Object(extra) = extra {
        for (name, value) in extra {
            status[name] = value;
        }
    }
    status
}

/// The Services that exist, of each kind (`None`: not known yet, or Knative Serving is not
/// installed).
pub(super) struct Services {
    pub(super) core: Option<BTreeSet<ObjectKey>>,
    pub(super) knative: Option<BTreeSet<ObjectKey>>,
}

/// Why this node does not run a broker its routes have (the node's reason, or that it is
/// starting), or why the broker it runs cannot take events (its channel does not store them).
pub(super) fn not_running(node: &NodeStatus, key: &ObjectKey) -> Option<(String, String)> {
    if let Some(broker) = node
        .brokers
        .iter()
        .find(|broker| &broker.key == key && broker.running)
    {
        // Running, but a broker that cannot store what it is given is not ready either.
        return broker.channel_problem.as_ref().map(|problem| {
            (
                "ChannelUnavailable".to_string(),
                format!("the broker's channel does not store events: {problem}"),
            )
        });
    }
    Some(
        node.issues
            .iter()
            .find(|issue| issue.kind == "Broker" && &issue.key == key)
            .map(|issue| (issue.reason.to_string(), issue.message.clone()))
            .unwrap_or_else(|| {
                (
                    "BrokerStarting".into(),
                    "the broker's channel is being set up on the node".into(),
                )
            }),
    )
}

/// Resolves destinations in a cluster: Brokers to the gateway, Services (core and Knative) to
/// their cluster DNS name; one that does not exist does not resolve.
pub(super) struct ClusterResolver<'a> {
    ingress: Url,
    brokers: Vec<ObjectKey>,
    services: &'a Services,
}

impl Resolver for ClusterResolver<'_> {
    fn resolve_reference(&self, target: &Reference) -> Result<Url, ResolveError> {
        let key = ObjectKey {
            namespace: target.namespace.clone(),
            name: target.name.clone(),
        };
        let bad_address = |source| ResolveError::BadAddress {
            target: target.clone(),
            source,
        };
        match (target.group(), target.kind.as_str()) {
            ("eventing.knative.dev", "Broker") => {
                if !self.brokers.contains(&key) {
                    return Err(ResolveError::NotFound {
                        what: "Broker",
                        key,
                    });
                }
                broker_address(&self.ingress, &key).map_err(bad_address)
            }
            (group @ ("" | "serving.knative.dev"), "Service") => {
                let (known, what) = match group {
                    "" => (&self.services.core, "Service"),
                    _ => (&self.services.knative, "Knative Service"),
                };
                if known.as_ref().is_some_and(|names| !names.contains(&key)) {
                    return Err(ResolveError::NotFound { what, key });
                }
                Url::parse(&format!(
                    "http://{}.{}.svc.cluster.local/",
                    key.name, key.namespace
                ))
                .map_err(bad_address)
            }
            (group, kind) => Err(ResolveError::UnsupportedKind {
                kind: kind.to_string(),
                group: group.to_string(),
            }),
        }
    }
}
