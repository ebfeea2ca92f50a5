//! The ingress table the gateway reads on every request without asking the node: the brokers
//! that run here (by address), why the others do not, and whether the node is ready or stopping.
//! The node keeps it current (`Node::publish_ingress`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::Node;
use crate::actor::broker::Broker;

/// How long a broker's first start may keep the node not ready.
const FIRST_START_GRACE: Duration = Duration::from_secs(10);

/// The brokers to publish to, read by the gateway on every request without asking the node.
#[derive(Debug)]
pub struct IngressTable {
    /// By `<namespace>/<name>`, the text of a broker's path (as its `ObjectKey` displays): a
    /// request's path is looked up as it came, with no key built for it. Hashed with foldhash, not
    /// SipHash: every request looks its broker up here, and SipHash's resistance to keys chosen
    /// to collide protects a table of what requests insert, while this one is the configuration's.
    brokers: ArcSwap<foldhash::HashMap<Box<str>, Broker>>,
    /// Brokers that exist but do not run (yet), and why; keyed as `brokers`.
    not_running: ArcSwap<foldhash::HashMap<Box<str>, NotRunning>>,
    ready: AtomicBool,
    /// The node is stopping: not ready any more (it may still take events for a moment).
    stopping: AtomicBool,
    /// The node is stopping: it takes no new events.
    draining: AtomicBool,
    /// Ingress requests between [`IngressTable::enter`] and their answer.
    in_flight: AtomicUsize,
    /// Counts the node's updates of this table, for those who wait for a broker to start.
    updates: watch::Sender<u64>,
}

impl Default for IngressTable {
    fn default() -> Self {
        Self {
            brokers: ArcSwap::default(),
            not_running: ArcSwap::default(),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            updates: watch::Sender::new(0),
        }
    }
}

/// Why a broker of the routes has no actors on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRunning {
    /// On its way: its topics are being created, or its cell is being started again.
    Starting,
    /// Its last start failed (it is retried), or this node does not run it (its role).
    Failed(String),
}

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Starting => f.write_str("starting"),
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

impl IngressTable {
    /// The broker at `<namespace>/<name>` (a request's path without its leading `/`).
    pub fn broker(&self, path: &str) -> Option<Broker> {
        self.brokers.load().get(path).cloned()
    }

    /// Why the broker at `<namespace>/<name>`, which exists, is not running, if it is one.
    pub fn not_running(&self, path: &str) -> Option<NotRunning> {
        self.not_running.load().get(path).cloned()
    }

    /// Waits, at most `limit`, for the node to update the table (a broker started or failed, the
    /// routes changed). False when nothing changed in time.
    pub async fn changed_within(&self, limit: Duration, seen: &mut watch::Receiver<u64>) -> bool {
        matches!(
            tokio::time::timeout(limit, seen.changed()).await,
            Ok(Ok(()))
        )
    }

    /// A receiver of the table's updates, to be passed to [`Self::changed_within`]: take it
    /// before reading the table, so that an update in between is not missed.
    pub fn updates(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }

    /// True once the first routes are applied and every broker of them has started, or failed to
    /// (and is being retried); false again once the node stops.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_stopping()
    }

    /// Whether the node is stopping (readiness off), taking events or not.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire) || self.is_draining()
    }

    /// Readiness off, events still taken: what a stopping node does first, while the load
    /// balancers in front of it stop sending (Kubernetes removes it from its Services only once
    /// it is told, and then asynchronously).
    pub fn stop_being_ready(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// An ingress request may take events: `None` once the node is stopping. The node's drain
    /// waits for every guard given out to be dropped, so that nothing is appended to a broker
    /// after its drain began.
    pub fn enter(self: &Arc<Self>) -> Option<IngressGuard> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = IngressGuard(self.clone());
        (!self.is_draining()).then_some(guard)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Takes no more events from now on (readiness off, new events refused).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// An ingress request in progress ([`IngressTable::enter`]).
#[derive(Debug)]
pub struct IngressGuard(Arc<IngressTable>);

impl Drop for IngressGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Node {
    /// Tells the gateway which brokers run, why the others do not, and whether the node is ready.
    pub(super) fn publish_ingress(&self) {
        let table = self
            .cells
            .iter()
            .map(|(key, cell)| (key.to_string().into_boxed_str(), cell.broker.clone()))
            .collect();
        self.ingress.brokers.store(Arc::new(table));
        let not_running = self
            .routes
            .brokers()
            .filter(|route| !self.cells.contains_key(route.key()))
            .map(|route| {
                let reason = match self.failures.get(route.key()) {
                    Some(failure) => NotRunning::Failed(failure.clone()),
                    None => NotRunning::Starting,
                };
                (route.key().to_string().into_boxed_str(), reason)
            })
            .collect();
        self.ingress.not_running.store(Arc::new(not_running));
        // Ready once every broker had its first start: one that cannot start (its Kafka is
        // unreachable: creating its topics waits a minute before failing) or is being restarted
        // must not take the node, and every other broker with it, out of its Service.
        let ready = self.applied_once
            && self.starting.iter().all(|(key, starting)| {
                starting.restarts > 0
                    || self.failures.contains_key(key)
                    || starting.since.elapsed() >= FIRST_START_GRACE
            });
        self.ingress.ready.store(ready, Ordering::Release);
        self.ingress.updates.send_modify(|count| *count += 1);
    }
}
