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
use k8s_openapi::api::core::v1::Service;
use knactor_actors::actor::{
    ApplyRoutes, ApplySources, GetStatus, Node, SetSourcesActive, SourceManager,
};
use knactor_actors::resources::broker_defaults;
use knactor_actors::resources::{ObjectKey, Strictness};
use knactor_actors::routes::{
    load_value, BrokerDefaults, ChannelDefaults, Delivery, LoadReport, Routes,
};
use knactor_actors::source::SourceBoard;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Client, ResourceExt as _};
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{info, warn};
use url::Url;

use crate::broker_config::{config_map_of, BrokerConfigs};
use crate::crd;
mod default_brokers;
mod reconcile;
mod status;

use default_brokers::default_brokers;
use reconcile::{error_policy, reconcile, Reconciler};
use status::{build, Services};

/// The finalizer knactor puts on Brokers: a deleted Broker goes once the leader's node has stopped
/// its actors and (with `--kafka-delete-topics`) deleted its topics.
pub const FINALIZER: &str = "knactor.dev/controller";
/// The field manager of knactor's writes.
pub const FIELD_MANAGER: &str = "knactor";

#[derive(Debug)]
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
#[derive(Debug)]
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
    let Ok(defaults) = BrokerDefaults::from_data(data) else {
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
