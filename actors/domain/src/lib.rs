//! knactor-domain: the mesh's domain, pure. No actix, no tokio, no sockets or files: the compiler
//! keeps it so, since this crate does not depend on them.
//!
//! [`resources`] (the Knative API shapes as users write them: read from YAML and field-checked)
//! convert one way into [`routes`] (what a node runs: brokers, triggers, destinations, delivery,
//! sources); [`filter`] matches events against triggers (and the per-broker
//! [`filter::FilterIndex`]); [`retry`] says when a failed delivery is tried again, [`offsets`]
//! which record a partition may commit past, [`envelope`] what the mesh adds to an event, and
//! [`schedule`] when a PingSource fires. `knactor-actors` runs them and re-exports every module
//! under the same name.

// Whatever is `pub` is reachable from outside the crate; the rest says pub(crate).
#![warn(unreachable_pub)]
// Every public type can be printed with `{:?}`: in a log line, a test failure, a caller's own Debug.
#![warn(missing_debug_implementations)]

pub mod duration;
pub mod envelope;
pub mod filter;
pub mod offsets;
pub mod resources;
pub mod retry;
pub mod routes;
pub mod schedule;
