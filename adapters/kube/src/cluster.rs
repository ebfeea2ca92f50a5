//! A node that takes its resources from the cluster (`knactor run --kubeconfig`/`--kubernetes`).
//!
//! One kube-runtime [`Controller`] per kind (Broker, Trigger, ApiServerSource, PingSource) watches
//! the Knative custom resources. Every node converts them with the same loader the file mode uses
//! (so a resource means the same thing in a file and in the cluster), builds the [`Routes`] and runs
//! them. The replica that holds the Lease (see [`crate::lease`]) also runs the sources, creates the
//! default Brokers of labelled namespaces and writes each resource's `status`: `observedGeneration`,
//! `address`, the Knative conditions (`Ready` and its parts) with a reason a user can act on, and a
//! Broker's finalizer (a deleted Broker goes once its actors stopped and its topics are deleted).
//! The ConfigMaps and Secrets Kafka Brokers name are read on demand ([`crate::broker_config`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Service};
use knactor_actors::actor::{
    ApplyRoutes, ApplySources, GetStatus, Node, NodeStatus, SetSourcesActive, SourceManager,
};
use knactor_actors::resources::broker_defaults;
use knactor_actors::resources::{load_value, LoadReport, ObjectKey, Strictness};
use knactor_actors::routes::{
    broker_address, ApiServerMode, Catalog, ChannelDefaults, Delivery, IssueReason, Reference,
    Resolver, Routes, SourceDefinition, PING_EVENT_TYPE,
};
use knactor_actors::source::SourceBoard;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Client, Resource as _, ResourceExt as _};
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{info, warn};
use url::Url;

use crate::broker_config::{config_map_of, BrokerConfigs};
use crate::crd;

/// The finalizer knactor puts on Brokers: a deleted Broker goes once the leader's node has stopped
/// its actors and (with `--kafka-delete-topics`) deleted its topics.
pub const FINALIZER: &str = "knactor.dev/controller";
/// The field manager of knactor's writes.
pub const FIELD_MANAGER: &str = "knactor";

pub struct ClusterOptions {
    /// The gateway's URL; a Broker's address is `<advertise>/<namespace>/<name>`.
    pub advertise: Url,
    /// The URL sources name as the API server (`source` of ApiServerSource events).
    pub api_server: String,
    /// Namespaces matching it get a Broker named `default` (e.g. `knative-eventing-injection=enabled`).
    pub default_broker_selector: Option<String>,
    pub channels: ChannelDefaults,
    pub default_delivery: Delivery,
}

/// What the node runs with.
pub struct ClusterHandles {
    pub node: Addr<Node>,
    pub sources: Addr<SourceManager>,
    pub board: Arc<SourceBoard>,
    /// Whether this replica holds the Lease.
    pub leader: Arc<AtomicBool>,
}

/// The four kinds, as the API server serves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Broker,
    Trigger,
    ApiServerSource,
    PingSource,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Broker,
        Kind::Trigger,
        Kind::ApiServerSource,
        Kind::PingSource,
    ];

    fn resource(self) -> ApiResource {
        match self {
            Kind::Broker => ApiResource::erase::<crd::Broker>(&()),
            Kind::Trigger => ApiResource::erase::<crd::Trigger>(&()),
            Kind::ApiServerSource => ApiResource::erase::<crd::ApiServerSource>(&()),
            Kind::PingSource => ApiResource::erase::<crd::PingSource>(&()),
        }
    }

    /// The kind of `group` and `kind`, when it is one of the four.
    pub fn of(group: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|known| known.name() == kind && known.resource().group == group)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Broker => "Broker",
            Kind::Trigger => "Trigger",
            Kind::ApiServerSource => "ApiServerSource",
            Kind::PingSource => "PingSource",
        }
    }
}

/// The statuses the leader should write, by kind and key.
type Statuses = BTreeMap<(Kind, ObjectKey), Value>;

struct Shared {
    client: Client,
    options: ClusterOptions,
    handles: ClusterHandles,
    stores: Mutex<BTreeMap<Kind, Store<DynamicObject>>>,
    /// The cluster's Services and Knative Services (names only): a `ref` to one that does not
    /// exist does not resolve.
    services: Store<PartialObjectMeta<Service>>,
    knative_services: Store<PartialObjectMeta<DynamicObject>>,
    statuses: Mutex<Arc<Statuses>>,
    /// Ask for a rebuild (an object changed).
    rebuild: tokio::sync::Notify,
    /// Bumped when the statuses changed: every controller reconciles everything again.
    published: watch::Sender<u64>,
}

/// Runs the cluster side of a node until the process ends.
pub async fn run(client: Client, options: ClusterOptions, handles: ClusterHandles) {
    let (published, _) = watch::channel(0u64);
    let (services, services_writer) = reflector::store();
    let knative_services_writer = reflector::store::Writer::new(knative_service_resource());
    let knative_services = knative_services_writer.as_reader();
    let shared = Arc::new(Shared {
        client: client.clone(),
        options,
        handles,
        stores: Mutex::new(BTreeMap::new()),
        services,
        knative_services,
        statuses: Mutex::new(Arc::default()),
        rebuild: tokio::sync::Notify::new(),
        published,
    });
    for kind in Kind::ALL {
        let resource = kind.resource();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let controller = Controller::new_with(api, watcher::Config::default(), resource);
        shared
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind, controller.store());
        let everything = on_publish(shared.published.subscribe());
        let context = Arc::new(Reconciler {
            shared: shared.clone(),
            kind,
        });
        actix_rt::spawn(
            controller
                .reconcile_all_on(everything)
                .run(reconcile, error_policy, context)
                .for_each(|_| async {}),
        );
    }
    actix_rt::spawn(watch_services(
        Api::<PartialObjectMeta<Service>>::all(client.clone()),
        services_writer,
        shared.clone(),
    ));
    actix_rt::spawn(watch_knative_services(
        client.clone(),
        knative_services_writer,
        shared.clone(),
    ));
    actix_rt::spawn(rebuild_loop(shared.clone()));
    if shared.options.default_broker_selector.is_some() {
        actix_rt::spawn(default_brokers(shared.clone()));
    }
    futures::future::pending::<()>().await;
}

/// A stream that yields once per change of the published statuses.
fn on_publish(receiver: watch::Receiver<u64>) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        Some(((), receiver))
    })
}

/// The ConfigMaps `config-br-defaults` names as Brokers' default `spec.config` (a Broker it gives
/// the Kafka class to reads its channel settings there).
fn default_config_maps(configs: &BrokerConfigs) -> Vec<ObjectKey> {
    let Some(data) = configs.config_map(&broker_defaults::config_map_key()) else {
        return Vec::new();
    };
    let Ok(defaults) = broker_defaults::BrokerDefaults::from_data(data) else {
        return Vec::new();
    };
    std::iter::once(&defaults.cluster)
        .chain(defaults.namespaces.values())
        .filter_map(|entry| entry.config.as_ref())
        .filter(|config| config.kind == "ConfigMap")
        .map(|config| ObjectKey::new(&config.namespace, &config.name))
        .collect()
}

/// Rebuilds the routes when asked (debounced) and every few seconds (sources' health changes
/// without any object changing).
async fn rebuild_loop(shared: Arc<Shared>) {
    let mut last_routes: Option<Arc<Routes>> = None;
    let mut was_leader = false;
    let mut generation = 0u64;
    let mut configs = BrokerConfigs::new(shared.client.clone());
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(3), shared.rebuild.notified()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let objects = snapshot_objects(&shared);
        // The ConfigMaps Kafka Brokers name, and Knative's config-br-defaults (read when
        // knactor may: the chart grants it with rbac.readKnativeBrokerDefaults).
        let wanted = objects
            .get(&Kind::Broker)
            .into_iter()
            .flatten()
            .filter(|broker| broker.metadata.deletion_timestamp.is_none())
            .filter_map(|broker| config_map_of(broker, &shared.options.channels.default_class))
            .chain(std::iter::once(broker_defaults::config_map_key()))
            .chain(default_config_maps(&configs))
            .collect();
        configs.refresh(&wanted).await;
        let services = Services {
            core: names(&shared.services),
            knative: names(&shared.knative_services),
        };
        // Which brokers this node runs: a Broker is Ready once it takes events, not before.
        let node =
            tokio::time::timeout(Duration::from_secs(2), shared.handles.node.send(GetStatus))
                .await
                .ok()
                .and_then(Result::ok);
        let (routes, statuses) = build(
            &shared.options,
            &objects,
            &services,
            &shared.handles.board,
            &configs,
            node.as_ref(),
        );
        let routes = Arc::new(routes);
        if last_routes.as_deref() != Some(&*routes) {
            info!(
                brokers = routes.brokers().count(),
                sources = routes.sources().len(),
                not_running = routes.issues().len(),
                "resources from the cluster applied"
            );
            shared
                .handles
                .sources
                .do_send(ApplySources(routes.sources().to_vec()));
            shared.handles.node.do_send(ApplyRoutes(routes.clone()));
            last_routes = Some(routes);
        }
        let leader = shared.handles.leader.load(Ordering::Relaxed);
        if leader != was_leader {
            shared.handles.sources.do_send(SetSourcesActive(leader));
            was_leader = leader;
        }
        let statuses = Arc::new(statuses);
        let changed = {
            let mut current = shared.statuses.lock().unwrap_or_else(|p| p.into_inner());
            let changed = **current != *statuses;
            *current = statuses;
            changed
        };
        if changed {
            generation += 1;
            shared.published.send_replace(generation);
        }
    }
}

/// Keeps `writer` up to date with the Services' names (a metadata-only watch, not their specs),
/// and asks for a rebuild on every change.
async fn watch_services(
    api: Api<PartialObjectMeta<Service>>,
    mut writer: reflector::store::Writer<PartialObjectMeta<Service>>,
    shared: Arc<Shared>,
) {
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    apply_names(stream, &mut writer, &shared, "Services").await;
}

/// `serving.knative.dev/v1` Service.
fn knative_service_resource() -> ApiResource {
    ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "serving.knative.dev",
        "v1",
        "Service",
    ))
}

/// Watches Knative Services' names once Knative Serving is installed (looked for every minute
/// until then; meanwhile their refs resolve by name).
async fn watch_knative_services(
    client: Client,
    mut writer: reflector::store::Writer<PartialObjectMeta<DynamicObject>>,
    shared: Arc<Shared>,
) {
    let resource = knative_service_resource();
    let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client, &resource);
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => warn!("looking for Knative Serving's Services: {error}"),
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    info!("Knative Serving is installed: refs to Knative Services are checked");
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    apply_names(stream, &mut writer, &shared, "Knative Services").await;
}

/// Applies a watch to a store, asking for a rebuild on every change.
async fn apply_names<K>(
    stream: impl futures::Stream<Item = watcher::Result<watcher::Event<K>>>,
    writer: &mut reflector::store::Writer<K>,
    shared: &Shared,
    what: &str,
) where
    K: reflector::Lookup + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                writer.apply_watcher_event(&event);
                shared.rebuild.notify_one();
            }
            Err(error) => warn!("watching {what} (to resolve refs to them): {error}"),
        }
    }
}

/// The names in a store; `None` until its first list arrived (refs then resolve by name).
fn names<K>(store: &Store<K>) -> Option<BTreeSet<ObjectKey>>
where
    K: kube::Resource + reflector::Lookup + Clone + 'static,
    <K as reflector::Lookup>::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().now_or_never()?.ok()?;
    Some(
        store
            .state()
            .iter()
            .map(|object| ObjectKey::new(object.namespace().unwrap_or_default(), object.name_any()))
            .collect(),
    )
}

fn snapshot_objects(shared: &Shared) -> BTreeMap<Kind, Vec<Arc<DynamicObject>>> {
    let stores = shared.stores.lock().unwrap_or_else(|p| p.into_inner());
    stores
        .iter()
        .map(|(kind, store)| (*kind, store.state()))
        .collect()
}

/// An object as the loader reads it: without status and server-managed fields.
fn loader_value(kind: Kind, object: &DynamicObject) -> Option<serde_yaml::Value> {
    let mut value = serde_json::to_value(object).ok()?;
    let map = value.as_object_mut()?;
    map.remove("status");
    map.insert(
        "apiVersion".into(),
        json!(object
            .types
            .as_ref()
            .map(|t| t.api_version.clone())
            .unwrap_or_else(|| kind.resource().api_version)),
    );
    map.insert("kind".into(), json!(kind.name()));
    if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    serde_yaml::to_value(&value).ok()
}

/// Reads one object of the API server with the loader of file mode (`knactor validate`), as the
/// controller runs it and the admission webhook admits it: the one place the cluster's objects
/// are judged, so the three never disagree. `None`: the object is not JSON the loader can take.
pub fn load(kind: Kind, object: &DynamicObject) -> Option<LoadReport> {
    let key = ObjectKey {
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    };
    let value = loader_value(kind, object)?;
    Some(load_value(
        value,
        &format!("{} {key}", kind.name()),
        Strictness::Lenient,
    ))
}

/// Routes from the cluster's objects, and the status each object should have.
fn build(
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
                    conditions.push(condition(
                        "SufficientPermissions",
                        false,
                        "InsufficientPermissions",
                        problem,
                    ));
                    if ready.is_ok() {
                        ready = Err(("InsufficientPermissions", problem.clone()));
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
const TRIGGER_PARTS: [&str; 5] = [
    "BrokerReady",
    "DependencyReady",
    "SubscriberResolved",
    "SubscriptionReady",
    "DeadLetterSinkResolved",
];

/// A Knative condition (`status` `True`/`False`, or a given word such as `Unknown`).
fn condition(type_: &str, status: impl ConditionStatus, reason: &str, message: &str) -> Value {
    let mut condition = json!({"type": type_, "status": status.word()});
    if !reason.is_empty() {
        condition["reason"] = json!(reason);
    }
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    condition
}

trait ConditionStatus {
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

fn status_value(generation: Option<i64>, mut conditions: Vec<Value>, extra: Value) -> Value {
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
struct Services {
    core: Option<BTreeSet<ObjectKey>>,
    knative: Option<BTreeSet<ObjectKey>>,
}

/// Why this node does not run a broker its routes have (the node's reason, or that it is
/// starting), or why the broker it runs cannot take events (its channel does not store them).
fn not_running(node: &NodeStatus, key: &ObjectKey) -> Option<(String, String)> {
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
struct ClusterResolver<'a> {
    ingress: Url,
    brokers: Vec<ObjectKey>,
    services: &'a Services,
}

impl Resolver for ClusterResolver<'_> {
    fn resolve_reference(&self, target: &Reference) -> Result<Url, String> {
        let key = ObjectKey {
            namespace: target.namespace.clone(),
            name: target.name.clone(),
        };
        match (target.group(), target.kind.as_str()) {
            ("eventing.knative.dev", "Broker") => {
                if !self.brokers.contains(&key) {
                    return Err(format!("Broker {key} does not exist"));
                }
                broker_address(&self.ingress, &key).map_err(|error| error.to_string())
            }
            (group @ ("" | "serving.knative.dev"), "Service") => {
                let (known, label) = match group {
                    "" => (&self.services.core, "Service"),
                    _ => (&self.services.knative, "Knative Service"),
                };
                if known.as_ref().is_some_and(|names| !names.contains(&key)) {
                    return Err(format!("{label} {key} does not exist"));
                }
                Url::parse(&format!(
                    "http://{}.{}.svc.cluster.local/",
                    key.name, key.namespace
                ))
                .map_err(|error| error.to_string())
            }
            (group, kind) => Err(format!(
                "cannot resolve a {kind} ({group}): knactor resolves Broker, Service and serving.knative.dev Service references; use a uri"
            )),
        }
    }
}

struct Reconciler {
    shared: Arc<Shared>,
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(String);

async fn reconcile(
    object: Arc<DynamicObject>,
    context: Arc<Reconciler>,
) -> Result<Action, ReconcileError> {
    let shared = &context.shared;
    shared.rebuild.notify_one();
    if !shared.handles.leader.load(Ordering::Relaxed) {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let resource = context.kind.resource();
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<DynamicObject> =
        Api::namespaced_with(shared.client.clone(), &namespace, &resource);
    let key = ObjectKey {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    // Only a Broker has something to finish when it is deleted (its actors, its topics); Triggers
    // and sources stop as soon as they leave the watch, and carry no finalizer.
    if context.kind == Kind::Broker {
        let finalizers = object.finalizers();
        let has_ours = finalizers.iter().any(|f| f == FINALIZER);
        if object.meta().deletion_timestamp.is_some() {
            if has_ours {
                if still_running(shared, &key).await {
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                let kept: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
                patch_finalizers(&api, &object, &kept).await?;
            }
            return Ok(Action::await_change());
        }
        if !has_ours {
            let mut all: Vec<&String> = finalizers.iter().collect();
            let ours = FINALIZER.to_string();
            all.push(&ours);
            patch_finalizers(&api, &object, &all).await?;
        }
    }
    let desired = {
        let statuses = shared.statuses.lock().unwrap_or_else(|p| p.into_inner());
        statuses.get(&(context.kind, key)).cloned()
    };
    let Some(desired) = desired else {
        // Not in the latest build yet: the rebuild we asked for publishes it.
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let current = object.data.get("status").cloned().unwrap_or(Value::Null);
    let desired = with_dropped_fields_cleared(&current, desired);
    if !same_status(&current, &desired) {
        let mut status = desired.clone();
        stamp_transitions(&current, &mut status);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .map_err(|error| ReconcileError(crate::apiserver::describe(&error)))?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Sets an object's finalizers (a merge patch that fails if the object changed since it was read).
async fn patch_finalizers(
    api: &Api<DynamicObject>,
    object: &DynamicObject,
    finalizers: &[&String],
) -> Result<(), ReconcileError> {
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}});
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(drop)
    .map_err(|error| ReconcileError(crate::apiserver::describe(&error)))
}

/// Whether this node still runs a deleted Broker, or is still deleting its topics
/// (`--kafka-delete-topics`): its finalizer stays until neither is true.
async fn still_running(shared: &Shared, key: &ObjectKey) -> bool {
    match shared.handles.node.send(GetStatus).await {
        Ok(status) => {
            status.brokers.iter().any(|broker| &broker.key == key) || status.removing.contains(key)
        }
        Err(_) => true,
    }
}

/// `desired` with a null for each field `current` has and `desired` no longer does (a Broker's
/// `address` once its spec became invalid, say): the merge patch then removes it instead of
/// leaving the last valid value in place.
fn with_dropped_fields_cleared(current: &Value, mut desired: Value) -> Value {
    if let (Some(current), Some(fields)) = (current.as_object(), desired.as_object_mut()) {
        for name in current.keys() {
            fields.entry(name.clone()).or_insert(Value::Null);
        }
    }
    desired
}

/// Whether `current` already says what `desired` says (transition times aside).
fn same_status(current: &Value, desired: &Value) -> bool {
    let Some(desired_map) = desired.as_object() else {
        return true;
    };
    desired_map.iter().all(|(name, value)| {
        if name == "conditions" {
            let strip = |conditions: &Value| -> Vec<Value> {
                conditions
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let mut c = c.clone();
                        if let Some(map) = c.as_object_mut() {
                            map.remove("lastTransitionTime");
                        }
                        c
                    })
                    .collect()
            };
            strip(&current["conditions"]) == strip(value)
        } else {
            &current[name] == value
        }
    })
}

/// Keeps a condition's `lastTransitionTime` while its status stays, stamps now when it changes.
fn stamp_transitions(current: &Value, desired: &mut Value) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let previous: BTreeMap<String, (Value, Value)> = current["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["type"].as_str()?.to_string(),
                (c["status"].clone(), c["lastTransitionTime"].clone()),
            ))
        })
        .collect();
    if let Some(conditions) = desired["conditions"].as_array_mut() {
        for condition in conditions {
            let type_ = condition["type"].as_str().unwrap_or_default().to_string();
            let time = match previous.get(&type_) {
                Some((status, time)) if *status == condition["status"] && time.is_string() => {
                    time.clone()
                }
                _ => json!(now),
            };
            condition["lastTransitionTime"] = time;
        }
    }
}

fn error_policy(
    object: Arc<DynamicObject>,
    error: &ReconcileError,
    context: Arc<Reconciler>,
) -> Action {
    warn!(
        kind = context.kind.name(),
        object = %format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any()),
        "reconcile failed, trying again in 5 s: {error}"
    );
    Action::requeue(Duration::from_secs(5))
}

/// Creates a Broker named `default` in every namespace the selector matches (leader only).
async fn default_brokers(shared: Arc<Shared>) {
    let selector = shared
        .options
        .default_broker_selector
        .clone()
        .unwrap_or_default();
    let namespaces: Api<Namespace> = Api::all(shared.client.clone());
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !shared.handles.leader.load(Ordering::Relaxed) {
            continue;
        }
        let list = match namespaces
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => list,
            Err(error) => {
                warn!(
                    "cannot list the namespaces labelled {selector}: {}",
                    crate::apiserver::describe(&error)
                );
                continue;
            }
        };
        for namespace in list.items {
            let Some(name) = namespace.metadata.name else {
                continue;
            };
            if namespace.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let brokers: Api<DynamicObject> =
                Api::namespaced_with(shared.client.clone(), &name, &Kind::Broker.resource());
            match brokers.get_opt("default").await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(error) => {
                    warn!(
                        "cannot read Broker {name}/default: {}",
                        crate::apiserver::describe(&error)
                    );
                    continue;
                }
            }
            let broker: DynamicObject = match serde_json::from_value(json!({
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {
                    "name": "default",
                    "namespace": name,
                    "labels": {"eventing.knative.dev/namespaceInjected": "true"},
                },
                "spec": {},
            })) {
                Ok(broker) => broker,
                Err(_) => continue,
            };
            match brokers.create(&PostParams::default(), &broker).await {
                Ok(_) => {
                    info!(namespace = %name, "created the namespace's default Broker ({selector})")
                }
                Err(error) => warn!(
                    "cannot create Broker {name}/default: {}",
                    crate::apiserver::describe(&error)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_the_new_status_drops_is_cleared_not_kept() {
        let current = json!({"address": {"url": "http://gw/ns/b"}, "observedGeneration": 1,
                             "conditions": [{"type": "Ready", "status": "True"}]});
        let desired = json!({"observedGeneration": 2,
                             "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec"}]});
        let patch = with_dropped_fields_cleared(&current, desired);
        assert_eq!(patch["address"], Value::Null);
        assert!(patch.as_object().unwrap().contains_key("address"));
        assert_eq!(patch["observedGeneration"], 2);
        assert!(!same_status(&current, &patch));
    }

    #[test]
    fn a_status_already_without_the_field_needs_no_patch() {
        let current = json!({"observedGeneration": 2,
                             "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t"}]});
        let desired =
            json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]});
        let patch = with_dropped_fields_cleared(&current, desired);
        assert!(same_status(&current, &patch));
    }
}
