//! Sources: what produces events into a sink by itself (PingSource here, ApiServerSource in
//! `knactor-kube`).
//!
//! A source is a [`SourceTask`]: a future that runs until the source is removed, sending through
//! the [`SinkSender`] of its [`SourceContext`] and saving its position in the [`StateStore`] after
//! each accepted event. The [`crate::actor::SourceActor`] runs one task; the
//! [`crate::actor::SourceManager`] starts, stops and restarts them as the routes change, and keeps
//! the [`SourceBoard`] (how each source is doing) that status and the controller read.

pub mod ping;
pub use knactor_domain::schedule;
pub mod sink;
pub mod state;

pub use ping::{PingError, PingTask};
pub use schedule::PingSchedule;
pub use sink::{Rejected, SinkCounters, SinkSender};
pub use state::{FileStateStore, MemoryStateStore, StateError, StateStore};

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::resources::ObjectKey;

/// A source's kind and key, e.g. `("PingSource", team-a/every-minute)`.
pub type SourceId = (&'static str, ObjectKey);

/// Who a source is across restarts: its uid in a cluster (a source deleted and created again under
/// the same name is another source), else `namespace/name` (a file).
pub fn source_identity(uid: Option<&str>, key: &ObjectKey) -> String {
    match uid {
        Some(uid) => uid.to_string(),
        None => format!("{}/{}", key.namespace, key.name),
    }
}

/// Where a source keeps its position: `<kind>/<identity>`, e.g. `pingsource/<uid>`.
pub fn state_key(kind: &str, identity: &str) -> String {
    format!("{kind}/{identity}")
}

/// The id of an event a source makes from what it saw (`parts`): uuid v5 of the source's identity
/// and the parts, so the same thing sent again after a restart carries the same id and a
/// subscriber can drop the repeat.
pub fn stable_event_id(identity: &str, parts: &[&str]) -> String {
    let mut name = identity.to_string();
    for part in parts {
        name.push('/');
        name.push_str(part);
    }
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// Why a source's task stopped: the task's own error ([`PingError`], `knactor-kube`'s
/// `ApiServerSourceError`), boxed so that one manager runs every kind of source.
pub type SourceStopped = Box<dyn Error + Send + Sync + 'static>;

/// A running source: a future that returns only when the source cannot go on (the error says
/// why; the manager restarts it with backoff).
pub trait SourceTask: fmt::Debug + Send + 'static {
    fn run(
        self: Box<Self>,
        context: SourceContext,
    ) -> BoxFuture<'static, Result<(), SourceStopped>>;
}

/// Why an ApiServerSource's ServiceAccount is not known to be allowed to get, list and watch what
/// the source watches.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PermissionsProblem {
    /// The API server said no; `missing` says to what (`list pods in default`).
    #[error("ServiceAccount {user} may not {}", .missing.join(", "))]
    Missing { user: String, missing: Vec<String> },
    /// The API server could not be asked.
    #[error("cannot check the permissions of {user}: {cause}")]
    CheckFailed {
        user: String,
        #[source]
        cause: Arc<dyn Error + Send + Sync>,
    },
}

/// What a task is given.
#[derive(Debug)]
pub struct SourceContext {
    pub sink: SinkSender,
    pub state: Arc<dyn StateStore>,
    pub health: HealthReporter,
}

/// How a source is doing.
#[derive(Debug, Clone, Default)]
pub struct SourceHealth {
    /// Its task is running.
    pub running: bool,
    /// It is past its start-up (position loaded, watches open): what happens from now on is sent.
    pub ready: bool,
    /// The last problem, in a sentence (cleared when the source works again).
    pub problem: Option<String>,
    /// ApiServerSource: whether its ServiceAccount may get, list and watch what it watches
    /// (`None` until checked).
    pub permissions: Option<Result<(), PermissionsProblem>>,
    /// ApiServerSource: the namespaces it watches.
    pub namespaces: Vec<String>,
    /// ApiServerSource: the last stretch of changes it could not send because the API server no
    /// longer had them (a saved position older than its history), in a sentence.
    pub skipped: Option<String>,
    /// Events the sink accepted, refused for good, and attempts repeated.
    pub sent: u64,
    pub rejected: u64,
    pub retries: u64,
}

#[derive(Debug, Default)]
struct BoardEntry {
    health: SourceHealth,
    counters: Option<Arc<SinkCounters>>,
}

/// Every source's health, shared by the manager, the tasks, and whoever reports status.
#[derive(Debug, Default)]
pub struct SourceBoard {
    entries: Mutex<BTreeMap<SourceId, BoardEntry>>,
}

impl SourceBoard {
    fn update(&self, id: &SourceId, change: impl FnOnce(&mut BoardEntry)) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        change(entries.entry(id.clone()).or_default());
    }

    pub(crate) fn set_running(&self, id: &SourceId, counters: Arc<SinkCounters>) {
        self.update(id, |entry| {
            entry.health.running = true;
            entry.health.ready = false;
            entry.counters = Some(counters);
        });
    }

    pub(crate) fn set_stopped(&self, id: &SourceId, problem: Option<String>) {
        self.update(id, |entry| {
            entry.health.running = false;
            entry.health.ready = false;
            if problem.is_some() {
                entry.health.problem = problem;
            }
        });
    }

    pub(crate) fn remove(&self, id: &SourceId) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(id);
    }

    /// The health of one source.
    pub fn get(&self, id: &SourceId) -> Option<SourceHealth> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(id).map(snapshot)
    }

    /// The health of every source the manager knows.
    pub fn all(&self) -> Vec<(SourceId, SourceHealth)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .map(|(id, entry)| (id.clone(), snapshot(entry)))
            .collect()
    }
}

fn snapshot(entry: &BoardEntry) -> SourceHealth {
    let mut health = entry.health.clone();
    if let Some(counters) = &entry.counters {
        health.sent = counters.sent.load(Ordering::Relaxed);
        health.rejected = counters.rejected.load(Ordering::Relaxed);
        health.retries = counters.retries.load(Ordering::Relaxed);
    }
    health
}

/// A task's handle on its own entry of the board.
#[derive(Clone)]
pub struct HealthReporter {
    id: SourceId,
    board: Arc<SourceBoard>,
}

/// Its source, not the whole board.
impl fmt::Debug for HealthReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthReporter")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl HealthReporter {
    pub fn new(id: SourceId, board: Arc<SourceBoard>) -> Self {
        Self { id, board }
    }

    pub fn set_problem(&self, problem: impl Into<String>) {
        let problem = problem.into();
        self.board
            .update(&self.id, |entry| entry.health.problem = Some(problem));
    }

    /// The source is past its start-up: changes from now on will be sent.
    pub fn set_ready(&self) {
        self.board
            .update(&self.id, |entry| entry.health.ready = true);
    }

    pub fn clear_problem(&self) {
        self.board
            .update(&self.id, |entry| entry.health.problem = None);
    }

    pub fn set_permissions(&self, permissions: Result<(), PermissionsProblem>) {
        self.board.update(&self.id, |entry| {
            entry.health.permissions = Some(permissions)
        });
    }

    /// Changes were lost to the API server's history (410 Gone): kept until the source restarts.
    pub fn set_skipped(&self, skipped: impl Into<String>) {
        let skipped = skipped.into();
        self.board
            .update(&self.id, |entry| entry.health.skipped = Some(skipped));
    }

    pub fn set_namespaces(&self, namespaces: Vec<String>) {
        self.board
            .update(&self.id, |entry| entry.health.namespaces = namespaces);
    }
}
