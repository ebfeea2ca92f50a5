//! Resources as users write them: Knative's YAML (Broker, Trigger, ApiServerSource, PingSource) and
//! knactor's NodeConfig. These are the API shapes (serde types, field names as in Knative's CRDs);
//! each converts once into its runtime type (the `routes` module builds them from these, never the
//! other way round), and the conversion is where validation happens, so the file loader and the
//! Kubernetes controller never disagree about what is valid. Start with [`loader::read_str`].

pub mod broker;
pub mod broker_defaults;
pub mod delivery;
pub mod depth;
pub mod destination;
pub mod field;
pub mod filter;
pub mod legacy;
pub mod loader;
pub mod meta;
pub mod node_config;
pub mod sources;
pub mod trigger;

pub use broker::BrokerSpec;
pub use delivery::{ContentMode, DeliverySpec};
pub use destination::{DestinationSpec, KReference, Reference};
pub use field::{Checked, Checker, FieldError, Strictness};
pub use filter::{FilterSpec, LegacyFilterSpec};
pub use loader::{read_str, read_value, Document, Notice, Origin, Reading, Refusal};
pub use meta::{Object, ObjectKey, ObjectKeyParseError, ObjectMeta};
pub use node_config::NodeConfigSpec;
pub use sources::{ApiServerSourceSpec, PingSourceSpec};
pub use trigger::TriggerSpec;
