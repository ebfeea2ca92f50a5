//! knactor-actors: the actors that run the mesh's domain.
//!
//! The pure part is the `knactor-domain` crate, re-exported here under the same names:
//! [`resources`] (Knative YAML, read and field-checked), [`routes`] (what a node runs, converted
//! one way from the resources), [`filter`] (matching, and the per-broker
//! [`filter::FilterIndex`]), [`retry`], [`offsets`], [`envelope`]. Here: [`trace`] (W3C trace
//! context carried in the event). What a node observed: [`metrics`], the per-event [`journal`] and its live [`tail`]. The ports to the outside world:
//! [`channel::EventLog`] (where accepted events are kept; an in-memory implementation lives here,
//! Kafka in `adapters/kafka`) and [`transport::Transport`] (HTTP delivery, implemented by the gateway), shared per endpoint by
//! [`endpoint::Endpoints`].
//! The actors, in [`actor`], tie them together; start reading at [`actor::Node`].

// Whatever is `pub` is reachable from outside the crate; the rest says pub(crate).
#![warn(unreachable_pub)]
// Every public type can be printed with `{:?}`: in a log line, a test failure, a caller's own Debug.
#![warn(missing_debug_implementations)]

pub mod actor;
pub mod channel;
pub mod endpoint;
pub mod journal;
pub mod ledger;
pub mod metrics;
pub mod source;
pub mod tail;
pub mod trace;
pub mod transport;

pub use knactor_domain::{duration, envelope, filter, offsets, resources, retry, routes};
