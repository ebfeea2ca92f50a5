//! The actors that run the mesh, under the [`Node`]:
//!
//! ```text
//!  gateway ──publish──► Broker ──append──► channel (EventLog)     BrokerActor: probes,
//!                                                   │                             parking lot
//!                                                   │ group read, once per broker
//!                                                   ▼
//!                                      DispatcherActor ── FilterIndex, offsets, commits
//!                                        │ Deliver (bounded per trigger; a full trigger
//!                                        │ falls behind and catches up on its own)
//!                                        ▼
//!                                      TriggerActor ── retries, dead letter, park, replies
//!                                        │ each delivery a task of its trigger
//!                                        ▼
//!                                      Endpoint (not an actor) ── one per URL: concurrency,
//!                                                         Retry-After shared by all triggers
//! ```
//!
//! A broker's `BrokerActor`, `DispatcherActor` and `TriggerActor`s form a cell that the `Node`
//! supervises as a unit: when any of them dies, the cell is started again and reads on from the
//! channel's committed offsets, so what was accepted is delivered (at least once).
//!
//! A node's [`Role`] says which half of a cell it runs: with `ingress`, only the `BrokerActor`
//! (the gateway appends, nothing reads); with `dispatch`, the whole cell, but the gateway takes no
//! events (replies and re-drives still go through the `BrokerActor`).

mod broker;
mod delivery;
mod dispatcher;
mod local;
mod node;
mod source;
mod trigger;

pub use broker::{
    Broker, BrokerActor, ListParked, ParkedEvent, ParkedList, PublishError, Redrive, RedriveReport,
};
pub use delivery::Outcome;
pub use dispatcher::{DispatcherActor, DrainReport, PartitionLeft};
pub use local::LocalIngress;
pub use node::{
    ApplyRoutes, BrokerStatus, Drain, ExplainMatch, FaultTarget, GetRoutes, GetStatus,
    IngressGuard, IngressTable, InjectFault, Node, NodeError, NodeStatus, NotRunning, ParkedOf,
    RedriveOf, TriggerStatus, TriggerVerdict,
};
pub use source::{
    ApiServerSourceRuntime, ApplySources, SetSourcesActive, SourceActor, SourceManager,
};
pub use trigger::TriggerActor;

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::channel::ChannelProvider;
use crate::endpoint::Endpoints;
use crate::envelope::DEFAULT_MAX_TTL;
use crate::metrics::Metrics;
use crate::retry::RetryLimits;
use crate::transport::Transport;

/// What a node does with its brokers (`knactor run --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Takes events in and delivers them.
    #[default]
    All,
    /// Takes events in over HTTP and appends them to the channels; delivers nothing.
    Ingress,
    /// Reads the channels and delivers (retries, dead letters, replies, parking); takes no events
    /// over HTTP.
    Dispatch,
}

impl Role {
    pub const NAMES: [&'static str; 3] = ["all", "ingress", "dispatch"];

    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingress => "ingress",
            Role::Dispatch => "dispatch",
        }
    }

    /// Whether the gateway accepts events for brokers.
    pub fn takes_events(self) -> bool {
        self != Role::Dispatch
    }

    /// Whether the node reads the channels and delivers.
    pub fn dispatches(self) -> bool {
        self != Role::Ingress
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "all" => Ok(Role::All),
            "ingress" => Ok(Role::Ingress),
            "dispatch" => Ok(Role::Dispatch),
            other => Err(format!(
                "unknown role {other:?}: expected one of {}",
                Role::NAMES.join(", ")
            )),
        }
    }
}

/// Node-wide settings of the actors (flags of `knactor run`).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Which half of each broker this node runs.
    pub role: Role,
    /// Hop budget of a new event (`knativebrokerttl`).
    pub max_ttl: i32,
    pub retry_limits: RetryLimits,
    /// Deliveries a trigger may have outstanding before it falls behind and catches up on its own.
    pub trigger_queue: usize,
    /// Deliveries an unordered trigger runs at once.
    pub trigger_concurrency: usize,
    /// Requests in flight to one subscriber endpoint, across all triggers.
    pub endpoint_concurrency: usize,
    /// How often dispatchers commit offsets.
    pub commit_interval: Duration,
    /// Threads (actix arbiters) the broker cells are spread over.
    pub workers: usize,
    /// This node's broker ingress, e.g. `http://127.0.0.1:8080/` (replies' error destination).
    pub ingress: Option<Url>,
    /// Lets `InjectFault` crash actors, for supervision tests. Never on in production.
    pub fault_injection: bool,
    /// Delete a broker's topics when the broker is deleted (never an external topic).
    pub delete_topics: bool,
    /// Events whose hops the node remembers for `knactor trace` (0: none).
    pub journal_events: usize,
    /// Bytes the journal may hold.
    pub journal_bytes: usize,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            role: Role::All,
            max_ttl: DEFAULT_MAX_TTL,
            retry_limits: RetryLimits::default(),
            trigger_queue: 1_000,
            trigger_concurrency: 64,
            endpoint_concurrency: 256,
            commit_interval: Duration::from_millis(100),
            workers: 1,
            ingress: None,
            fault_injection: false,
            delete_topics: false,
            journal_events: crate::journal::DEFAULT_CAPACITY,
            journal_bytes: crate::journal::DEFAULT_MAX_BYTES,
        }
    }
}

/// What every actor of a node shares.
#[derive(Debug)]
pub struct Shared {
    /// Where each broker's channel lives.
    pub channels: Arc<dyn ChannelProvider>,
    pub transport: Arc<dyn Transport>,
    pub metrics: Arc<Metrics>,
    /// Subscribers and dead-letter sinks, shared by every trigger sending to them.
    pub endpoints: Endpoints,
    pub options: NodeOptions,
}

impl Shared {
    pub fn new(
        channels: Arc<dyn ChannelProvider>,
        transport: Arc<dyn Transport>,
        options: NodeOptions,
    ) -> Arc<Self> {
        Arc::new(Self {
            endpoints: Endpoints::new(
                transport.clone(),
                options.endpoint_concurrency,
                options.retry_limits.retry_after_max,
            ),
            channels,
            transport,
            metrics: Arc::new(Metrics::with_journal(
                options.journal_events,
                options.journal_bytes,
            )),
            options,
        })
    }
}

/// Stop now (sent by the node when a resource goes away or its cell restarts).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Panic inside the handler (fault injection; the node only sends it when allowed).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Crash;
