//! knactor-gateway: the HTTP edge of a node. Inbound, [`ingress`] turns CloudEvents on the wire
//! into `Publish` messages for the broker actors, answering with Knative's status contract
//! ([`error::IngressError`]); outbound, [`client::HttpTransport`] implements the actors' delivery
//! port over HTTP. [`binding`] is the CloudEvents HTTP protocol binding both ways; [`display`] is
//! the event-display sink. [`server`] runs the ingress listener within the [`limits`] a node's
//! clients cannot push it past (connections, body bytes and time, attribute sizes). Start with
//! [`ingress::configure`]. The node's [`admin`] API and the web [`console`] that reads it are
//! served beside the ingress or on a listener of their own.

// Whatever is `pub` is reachable from outside the crate; the rest says pub(crate).
#![warn(unreachable_pub)]
// Every public type can be printed with `{:?}`: in a log line, a test failure, a caller's own Debug.
#![warn(missing_debug_implementations)]

pub mod admin;
pub mod binding;
pub mod client;
pub mod console;
pub mod display;
pub mod error;
pub mod ingress;
pub mod limits;
pub mod server;
