//! ApiServerSource: watches Kubernetes objects and sends their changes as CloudEvents.
//!
//! Each source runs as the ServiceAccount its spec names (the node's credentials impersonate
//! `system:serviceaccount:<ns>:<name>`), checks with a SelfSubjectAccessReview that it may get, list
//! and watch every kind in every namespace it covers (`SufficientPermissions`), then opens one watch
//! per kind and namespace (one cluster-wide watch for `namespaceSelector: {}`).
//!
//! Unlike Knative's adapter, it does not forget where it was: after each delivered change the
//! watch's resourceVersion is kept (saved at most every `SAVE_EVERY`), and a restarted source
//! watches again from there, so the changes made while it was down are sent, not missed. On its very
//! first start it sends nothing for objects that already exist (as Knative). While the sink is down
//! the watch is not read further: the API server's history is the buffer, and a position older than
//! its history (`410 Gone`) is reported and skipped past.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use cloudevents::{Event, EventBuilder as _, EventBuilderV10};
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use knactor_actors::actor::ApiServerSourceRuntime;
use knactor_actors::retry::Backoff;
use knactor_actors::routes::{ApiServerMode, ApiServerSource, NamespaceScope, WatchedKind};
use knactor_actors::source::{
    source_identity, stable_event_id, state_key, HealthReporter, PermissionsProblem, SourceContext,
    SourceStopped, SourceTask, StateError,
};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use kube::{Client, Config};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// The longest a delivered position stays unsaved (a crash repeats at most this much).
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// How long one watch request lasts before it is renewed.
const WATCH_TIMEOUT_SECS: u32 = 290;
/// How often a `namespaceSelector` is evaluated again.
const NAMESPACE_RECHECK: Duration = Duration::from_secs(30);
/// Changes read ahead of the sink. While the sink is down or slow, the watches go on reading up to
/// this many (the API server closes a watch whose reader falls behind its cache); the saved position
/// stays at the last delivered change, so a crash loses none of them.
const READ_AHEAD: usize = 4096;
/// How long a watch that failed to open waits before it tries again: 200 ms, doubling, at most 5 s.
const WATCH_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Why an ApiServerSource's task stopped (the manager starts it again after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum ApiServerSourceError {
    #[error("cannot build the Kubernetes client: {0}")]
    ClientFailed(#[source] kube::Error),
    #[error("cannot list the namespaces matching spec.namespaceSelector as {user}: {}", describe(.source))]
    NamespacesUnlisted {
        user: String,
        #[source]
        source: kube::Error,
    },
    #[error("spec.resources[{index}]: the API server does not serve {api_version} {kind}: {}", describe(.source))]
    KindNotServed {
        index: usize,
        api_version: String,
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Permissions(#[from] PermissionsProblem),
    #[error(transparent)]
    NoCurrentVersion(#[from] CurrentVersionError),
    #[error("cannot load the last delivered position: {0}")]
    LoadFailed(#[source] StateError),
    #[error("cannot save the last delivered position: {0}")]
    SaveFailed(#[source] StateError),
    #[error("every watch ended")]
    WatchesEnded,
    /// Not a failure: the watches must change, and the restart makes them.
    #[error(
        "the namespaces matching spec.namespaceSelector changed to {namespaces:?}; watching again"
    )]
    NamespacesChanged { namespaces: Vec<String> },
}

/// Why the resourceVersion of "now" of a watched kind could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CurrentVersionError {
    #[error("cannot list {url}: {}", describe(.source))]
    ListFailed {
        url: String,
        #[source]
        source: kube::Error,
    },
    #[error("{url} answered a list without resourceVersion")]
    NoResourceVersion { url: String },
}

/// A Kubernetes client error that reads as [`describe`] says (kube's own text for an API error
/// dumps the whole status): the cause kept in a `knactor-actors` error, which cannot name kube's
/// types.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.0))]
struct KubeFailure(#[source] kube::Error);

/// Makes ApiServerSource tasks with the node's cluster credentials.
pub struct KubeSourceRuntime {
    config: Config,
}

impl fmt::Debug for KubeSourceRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cluster, not the credentials.
        f.debug_struct("KubeSourceRuntime")
            .field("cluster_url", &self.config.cluster_url)
            .finish_non_exhaustive()
    }
}

impl KubeSourceRuntime {
    pub fn new(config: Config) -> Self {
        Self { config }
    }
}

impl ApiServerSourceRuntime for KubeSourceRuntime {
    fn task(&self, source: Arc<ApiServerSource>) -> Box<dyn SourceTask> {
        Box::new(ApiServerTask {
            config: self.config.clone(),
            source,
        })
    }
}

struct ApiServerTask {
    config: Config,
    source: Arc<ApiServerSource>,
}

impl fmt::Debug for ApiServerTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiServerTask")
            .field("source", &self.source.key)
            .field("cluster_url", &self.config.cluster_url)
            .finish_non_exhaustive()
    }
}

impl SourceTask for ApiServerTask {
    fn run(
        self: Box<Self>,
        context: SourceContext,
    ) -> BoxFuture<'static, Result<(), SourceStopped>> {
        run(self.config, self.source, context)
            .map(|outcome| outcome.map_err(SourceStopped::from))
            .boxed()
    }
}

/// The user a source's requests are made as.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A client acting as the source's ServiceAccount. Only the user is impersonated: the API server
/// adds a ServiceAccount's groups (`system:serviceaccounts[:NS]`, `system:authenticated`) itself,
/// and naming them would need `impersonate` on groups, which knactor's ClusterRole does not grant.
fn impersonating_client(
    config: &Config,
    source: &ApiServerSource,
) -> Result<Client, ApiServerSourceError> {
    let mut config = config.clone();
    let namespace = &source.key.namespace;
    config.auth_info.impersonate = Some(service_account_user(namespace, &source.service_account));
    config.auth_info.impersonate_groups = None;
    Client::try_from(config).map_err(ApiServerSourceError::ClientFailed)
}

/// One watch: a kind in one namespace (or all), with the kind's label selector.
#[derive(Debug, Clone)]
struct Stream {
    kind: WatchedKind,
    resource: ApiResource,
    namespaced: bool,
    namespace: Option<String>,
}

impl Stream {
    /// The stream's name in the saved position; a changed selector starts afresh.
    fn key(&self) -> String {
        format!(
            "{}/{}@{}?{}",
            self.kind.api_version,
            self.kind.kind,
            self.namespace.as_deref().unwrap_or("*"),
            self.kind
                .selector
                .as_ref()
                .map(|s| s.to_query())
                .unwrap_or_default()
        )
    }

    fn api(&self, client: &Client) -> Api<DynamicObject> {
        match &self.namespace {
            Some(namespace) if self.namespaced => {
                Api::namespaced_with(client.clone(), namespace, &self.resource)
            }
            _ => Api::all_with(client.clone(), &self.resource),
        }
    }
}

/// What the task saves: the last delivered resourceVersion of each stream.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Position {
    streams: BTreeMap<String, String>,
}

/// A change read from a watch, or (no object) only a newer position (a bookmark).
struct Change {
    stream: usize,
    resource_version: String,
    change: Option<(ChangeKind, DynamicObject)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Add,
    Update,
    Delete,
}

impl ChangeKind {
    fn word(self) -> &'static str {
        match self {
            ChangeKind::Add => "add",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

async fn run(
    config: Config,
    source: Arc<ApiServerSource>,
    context: SourceContext,
) -> Result<(), ApiServerSourceError> {
    let client = impersonating_client(&config, &source)?;
    let api_server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let namespaces = scope_namespaces(&client, &source).await?;
    context
        .health
        .set_namespaces(namespaces.clone().unwrap_or_default());
    let streams = resolve_streams(&client, &source, namespaces.as_deref()).await?;
    let permissions = check_permissions(&client, &source, &streams).await;
    context.health.set_permissions(permissions.clone());
    permissions?;

    let key = state_key(
        "apiserversource",
        &source_identity(source.uid.as_deref(), &source.key),
    );
    let mut position: Position = context
        .state
        .load(&key)
        .await
        .map_err(ApiServerSourceError::LoadFailed)?
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let stream_keys: Vec<String> = streams.iter().map(Stream::key).collect();
    position
        .streams
        .retain(|name, _| stream_keys.contains(name));
    for (index, stream) in streams.iter().enumerate() {
        if !position.streams.contains_key(&stream_keys[index]) {
            // First start: from now on (nothing for what already exists).
            let version = current_version(&stream.api(&client)).await?;
            position.streams.insert(stream_keys[index].clone(), version);
        } else {
            info!(source = %source.key, stream = %stream_keys[index], "ApiServerSource resumes after its last delivered change");
        }
    }
    save(&context, &key, &position).await?;

    // A watch handles its own failures (it retries, or skips past a 410): it only sends changes.
    let (changes, mut received) = mpsc::channel::<Change>(READ_AHEAD);
    let mut watches = Vec::new();
    for (index, stream) in streams.iter().enumerate() {
        let start = position.streams[&stream_keys[index]].clone();
        watches.push(tokio::spawn(watch(
            client.clone(),
            stream.clone(),
            index,
            start,
            changes.clone(),
            context.health.clone(),
        )));
    }
    drop(changes);
    context.health.set_ready();
    let _abort_on_drop = AbortOnDrop(watches);

    let selector_check = matches!(source.namespaces, NamespaceScope::Selected(_));
    let mut recheck = tokio::time::interval(NAMESPACE_RECHECK);
    recheck.tick().await;
    let mut last_save = Instant::now();
    let mut dirty = false;
    let mut save_tick = tokio::time::interval(SAVE_EVERY);
    loop {
        tokio::select! {
            next = received.recv() => {
                let Some(change) = next else {
                    return Err(ApiServerSourceError::WatchesEnded);
                };
                if let Some((kind, object)) = &change.change {
                    if let Some(event) = change_event(&source, &streams[change.stream], &api_server, *kind, object) {
                        match context.sink.deliver(event).await {
                            Ok(()) => context.health.clear_problem(),
                            Err(rejected) => {
                                warn!(source = %source.key, "{rejected}");
                                context.health.set_problem(rejected.to_string());
                            }
                        }
                    }
                }
                position.streams.insert(stream_keys[change.stream].clone(), change.resource_version);
                dirty = true;
                if last_save.elapsed() >= SAVE_EVERY {
                    save(&context, &key, &position).await?;
                    last_save = Instant::now();
                    dirty = false;
                }
            }
            _ = save_tick.tick() => {
                if dirty {
                    save(&context, &key, &position).await?;
                    last_save = Instant::now();
                    dirty = false;
                }
            }
            _ = recheck.tick(), if selector_check => {
                let now = scope_namespaces(&client, &source).await?;
                if now != namespaces {
                    if dirty {
                        save(&context, &key, &position).await?;
                    }
                    return Err(ApiServerSourceError::NamespacesChanged {
                        namespaces: now.unwrap_or_default(),
                    });
                }
            }
        }
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

async fn save(
    context: &SourceContext,
    key: &str,
    position: &Position,
) -> Result<(), ApiServerSourceError> {
    let text = serde_json::to_string(position).expect("a position is JSON");
    context
        .state
        .save(key, &text)
        .await
        .map_err(ApiServerSourceError::SaveFailed)
}

/// The namespaces a source watches: `None` for all (one cluster-wide watch).
async fn scope_namespaces(
    client: &Client,
    source: &ApiServerSource,
) -> Result<Option<Vec<String>>, ApiServerSourceError> {
    match &source.namespaces {
        NamespaceScope::Own(namespace) => Ok(Some(vec![namespace.clone()])),
        NamespaceScope::All => Ok(None),
        NamespaceScope::Selected(selector) => {
            let api: Api<Namespace> = Api::all(client.clone());
            let list = api
                .list(&ListParams::default().labels(&selector.to_query()))
                .await
                .map_err(|source_error| ApiServerSourceError::NamespacesUnlisted {
                    user: service_account_user(&source.key.namespace, &source.service_account),
                    source: source_error,
                })?;
            let mut names: Vec<String> = list
                .items
                .into_iter()
                .filter_map(|namespace| namespace.metadata.name)
                .collect();
            names.sort();
            Ok(Some(names))
        }
    }
}

/// Finds each kind's resource (plural, scope) through discovery and makes the watches.
async fn resolve_streams(
    client: &Client,
    source: &ApiServerSource,
    namespaces: Option<&[String]>,
) -> Result<Vec<Stream>, ApiServerSourceError> {
    let mut streams = Vec::new();
    for (index, kind) in source.resources.iter().enumerate() {
        let (group, version) = match kind.api_version.rsplit_once('/') {
            Some((group, version)) => (group, version),
            None => ("", kind.api_version.as_str()),
        };
        let gvk = GroupVersionKind::gvk(group, version, &kind.kind);
        let (resource, capabilities) = pinned_kind(client, &gvk).await.map_err(|error| {
            ApiServerSourceError::KindNotServed {
                index,
                api_version: kind.api_version.clone(),
                kind: kind.kind.clone(),
                source: error,
            }
        })?;
        let namespaced = capabilities.scope == Scope::Namespaced;
        match (namespaced, namespaces) {
            (true, Some(namespaces)) => {
                for namespace in namespaces {
                    streams.push(Stream {
                        kind: kind.clone(),
                        resource: resource.clone(),
                        namespaced,
                        namespace: Some(namespace.clone()),
                    });
                }
            }
            _ => streams.push(Stream {
                kind: kind.clone(),
                resource,
                namespaced,
                namespace: None,
            }),
        }
    }
    Ok(streams)
}

/// Asks the API server whether the source's ServiceAccount may get, list and watch each stream.
async fn check_permissions(
    client: &Client,
    source: &ApiServerSource,
    streams: &[Stream],
) -> Result<(), PermissionsProblem> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let user = service_account_user(&source.key.namespace, &source.service_account);
    let mut missing = Vec::new();
    for stream in streams {
        for verb in ["get", "list", "watch"] {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(stream.resource.group.clone()),
                        version: Some(stream.resource.version.clone()),
                        resource: Some(stream.resource.plural.clone()),
                        namespace: stream.namespace.clone(),
                        verb: Some(verb.into()),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let answer = reviews
                .create(&PostParams::default(), &review)
                .await
                .map_err(|error| PermissionsProblem::CheckFailed {
                    user: user.clone(),
                    cause: Arc::new(KubeFailure(error)),
                })?;
            if !answer.status.is_some_and(|status| status.allowed) {
                missing.push(format!(
                    "{verb} {}{}",
                    stream.resource.plural,
                    stream
                        .namespace
                        .as_ref()
                        .map(|ns| format!(" in {ns}"))
                        .unwrap_or_else(|| " in all namespaces".into())
                ));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PermissionsProblem::Missing { user, missing })
    }
}

/// The resourceVersion of "now" for a stream (a list of at most one object).
async fn current_version(api: &Api<DynamicObject>) -> Result<String, CurrentVersionError> {
    let list = api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(|source| CurrentVersionError::ListFailed {
            url: api.resource_url().to_string(),
            source,
        })?;
    list.metadata
        .resource_version
        .ok_or_else(|| CurrentVersionError::NoResourceVersion {
            url: api.resource_url().to_string(),
        })
}

/// Reads one stream's watch from `start`, forever, renewing it when the server ends it.
async fn watch(
    client: Client,
    stream: Stream,
    index: usize,
    start: String,
    changes: mpsc::Sender<Change>,
    health: HealthReporter,
) {
    let api = stream.api(&client);
    let mut params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    params.bookmarks = true;
    if let Some(selector) = &stream.kind.selector {
        params = params.labels(&selector.to_query());
    }
    let mut version = start;
    let mut failures = 0u32;
    loop {
        let events = match api.watch(&params, &version).await {
            Ok(events) => events,
            Err(error) => {
                failures += 1;
                if failures == 3 {
                    warn!(stream = %stream.key(), "watch keeps failing: {}", describe(&error));
                }
                tokio::time::sleep(WATCH_BACKOFF.after(failures)).await;
                continue;
            }
        };
        let mut events = events.boxed();
        while let Some(event) = events.next().await {
            let change = match event {
                Ok(WatchEvent::Added(object)) => Some((ChangeKind::Add, object)),
                Ok(WatchEvent::Modified(object)) => Some((ChangeKind::Update, object)),
                Ok(WatchEvent::Deleted(object)) => Some((ChangeKind::Delete, object)),
                Ok(WatchEvent::Bookmark(bookmark)) => {
                    version = bookmark.metadata.resource_version;
                    let position = Change {
                        stream: index,
                        resource_version: version.clone(),
                        change: None,
                    };
                    if changes.send(position).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(WatchEvent::Error(status)) if status.code == 410 => {
                    // Our position is older than the server's history: what changed in between
                    // cannot be had any more. Say so and go on from now.
                    match current_version(&api).await {
                        Ok(now) => {
                            warn!(stream = %stream.key(), from = %version, to = %now, "the API server no longer has the changes since the saved position (410 Gone); changes in between are skipped");
                            health.set_skipped(format!(
                                "{}: changes after resourceVersion {version} up to {now} were no longer held by the API server (410 Gone) and were not sent ({})",
                                stream.key(),
                                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ));
                            version = now;
                        }
                        Err(problem) => warn!(stream = %stream.key(), "{problem}"),
                    }
                    break;
                }
                Ok(WatchEvent::Error(status)) => {
                    warn!(stream = %stream.key(), "watch error: {} {}", status.code, status.message);
                    break;
                }
                Err(error) => {
                    warn!(stream = %stream.key(), "watch interrupted: {}", describe(&error));
                    break;
                }
            };
            failures = 0;
            let Some((kind, object)) = change else {
                continue;
            };
            let Some(object_version) = object.metadata.resource_version.clone() else {
                continue;
            };
            version = object_version.clone();
            let change = Change {
                stream: index,
                resource_version: object_version,
                change: Some((kind, object)),
            };
            if changes.send(change).await.is_err() {
                return;
            }
        }
    }
}

/// The CloudEvent of one change, or `None` when the source's owner or filters leave it out.
fn change_event(
    source: &ApiServerSource,
    stream: &Stream,
    api_server: &str,
    kind: ChangeKind,
    object: &DynamicObject,
) -> Option<Event> {
    if let Some(owner) = &source.owner {
        let owned = object
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|reference| {
                reference.kind == owner.kind && reference.api_version == owner.api_version
            });
        if !owned {
            return None;
        }
    }
    let name = object.metadata.name.clone().unwrap_or_default();
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let api_version = stream.kind.api_version.as_str();
    let subject = if namespace.is_empty() {
        format!("/apis/{api_version}/{}/{name}", stream.resource.plural)
    } else {
        format!(
            "/apis/{api_version}/namespaces/{namespace}/{}/{name}",
            stream.resource.plural
        )
    };
    let (mode, data) = match source.mode {
        ApiServerMode::Resource => ("resource", serde_json::to_value(object).ok()?),
        ApiServerMode::Reference => (
            "ref",
            serde_json::json!({
                "apiVersion": api_version,
                "kind": stream.kind.kind,
                "name": name,
                "namespace": namespace,
            }),
        ),
    };
    let event_type = format!("dev.knative.apiserver.{mode}.{}", kind.word());
    let id = stable_event_id(
        &source_identity(source.uid.as_deref(), &source.key),
        &[
            object.metadata.uid.as_deref().unwrap_or(&subject),
            object
                .metadata
                .resource_version
                .as_deref()
                .unwrap_or_default(),
            &event_type,
        ],
    );
    let mut event = EventBuilderV10::new()
        .id(id)
        .ty(event_type)
        .source(api_server)
        .subject(subject)
        .time(Utc::now())
        .data("application/json", data)
        .build()
        .ok()?;
    event.set_extension("kind", stream.kind.kind.as_str());
    event.set_extension("apiversion", api_version);
    event.set_extension("name", name.as_str());
    event.set_extension("namespace", namespace.as_str());
    for (extension, value) in &source.extensions {
        event.set_extension(extension, value.as_str());
    }
    if let Some(filter) = &source.filter {
        if !filter.matches(&event) {
            return None;
        }
    }
    Some(event)
}

/// A Kubernetes client error in a sentence (the API server's message when it gave one).
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}
