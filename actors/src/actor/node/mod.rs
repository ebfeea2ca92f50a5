//! `Node`: the root actor of a process.
//!
//! Owns the current [`Routes`] and one cell per broker (its `BrokerActor`, `DispatcherActor` and
//! `TriggerActor`s), reconciles the cells whenever new routes arrive, publishes the brokers'
//! addresses to the gateway ([`IngressTable`]), and supervises: a cell in which any actor died
//! (a panic, or an actor that stopped itself) is started again, with backoff when it keeps dying,
//! and reads on from the channel's committed offsets, so nothing accepted is lost.
//!
//! On an ingress-only node (see [`Role`](super::Role)) a cell is its `BrokerActor` alone.
//!
//! Answers: [`ApplyRoutes`], [`GetStatus`], [`GetRoutes`], [`ParkedOf`], [`RedriveOf`],
//! [`InjectFault`].
//!
//! Here: the `Node`, its state and how it reconciles routes into cells. Beside it:
//! - `ingress`: the [`IngressTable`] the gateway reads, and how the node fills it (readiness).
//! - `cell`: a broker's actors: starting them (topics first), restarting them, updating their
//!   triggers, stopping them and deleting the topics of a removed broker.
//! - `admin`: the other messages the node answers (status, drain, parking lot, faults).

mod admin;
mod cell;
mod ingress;

pub use admin::{
    BrokerStatus, Drain, ExplainMatch, FaultTarget, GetRoutes, GetStatus, InjectFault, NodeError,
    NodeStatus, ParkedOf, RedriveOf, TriggerStatus, TriggerVerdict,
};
pub use ingress::{IngressGuard, IngressTable, NotRunning};

use cell::{delete_topics, update_triggers, Cell, Starting};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tracing::{info, warn};

use super::Shared;
use crate::resources::ObjectKey;
use crate::routes::Routes;

/// How often the node looks for dead actors.
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(200);

pub struct Node {
    shared: Arc<Shared>,
    routes: Arc<Routes>,
    cells: BTreeMap<ObjectKey, Cell>,
    /// Brokers whose topics are being created, or whose cell waits to be started again.
    starting: BTreeMap<ObjectKey, Starting>,
    /// Brokers that could not start, and why (retried).
    failures: BTreeMap<ObjectKey, String>,
    /// Brokers removed from the routes whose teardown is still under way (their reader leaving,
    /// then their topics being deleted): a Broker's finalizer waits for it.
    removing: Arc<Mutex<BTreeSet<ObjectKey>>>,
    ingress: Arc<IngressTable>,
    arbiters: Vec<Arbiter>,
    next_arbiter: usize,
    applied_once: bool,
    /// Stopping: no restarts, no new routes.
    draining: bool,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("cells", &self.cells.keys())
            .field("starting", &self.starting.keys())
            .field("failures", &self.failures)
            .field("arbiters", &self.arbiters.len())
            .field("applied_once", &self.applied_once)
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl Node {
    pub fn new(shared: Arc<Shared>) -> Self {
        let workers = shared.options.workers.max(1);
        Self {
            shared,
            routes: Arc::new(Routes::default()),
            cells: BTreeMap::new(),
            starting: BTreeMap::new(),
            failures: BTreeMap::new(),
            removing: Arc::default(),
            ingress: Arc::new(IngressTable::default()),
            arbiters: (0..workers).map(|_| Arbiter::new()).collect(),
            next_arbiter: 0,
            applied_once: false,
            draining: false,
        }
    }

    /// The table the gateway reads broker addresses from.
    pub fn ingress(&self) -> Arc<IngressTable> {
        self.ingress.clone()
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let routes = self.routes.clone();
        let gone: Vec<ObjectKey> = self
            .cells
            .keys()
            .filter(|key| routes.broker(key).is_none())
            .cloned()
            .collect();
        // A broker that never started has no cell: forget why it did not.
        self.failures.retain(|key, _| routes.broker(key).is_some());
        for key in gone {
            if let Some(cell) = self.cells.remove(&key) {
                info!(broker = %key, "broker removed");
                self.shared.metrics.forget_broker(&key);
                cell.stop();
                if self.shared.options.delete_topics {
                    delete_topics(&cell, key, self.removing.clone());
                }
            }
        }
        for route in routes.brokers() {
            let key = route.key().clone();
            match self.cells.get_mut(&key) {
                None => self.prepare(route.clone(), 0, ctx),
                Some(cell)
                    if cell.route.channel != route.channel || cell.route.broker != route.broker =>
                {
                    info!(broker = %key, "broker changed; restarting its cell");
                    let cell = self.cells.remove(&key).expect("present");
                    cell.stop();
                    self.prepare(route.clone(), 0, ctx);
                }
                Some(cell) if cell.route != *route => {
                    update_triggers(cell, route.clone(), &self.shared)
                }
                Some(_) => {}
            }
        }
        self.publish_ingress();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Actor for Node {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(WATCHDOG_INTERVAL, |node, ctx| node.watch(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for cell in self.cells.values() {
            cell.stop();
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// Run these routes from now on.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyRoutes(pub Arc<Routes>);

impl Handler<ApplyRoutes> for Node {
    type Result = ();

    /// Reconciles the cells with the new routes.
    fn handle(&mut self, apply: ApplyRoutes, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        for issue in apply.0.issues() {
            warn!("not running: {issue}");
        }
        self.routes = apply.0;
        self.applied_once = true;
        self.reconcile(ctx);
    }
}
