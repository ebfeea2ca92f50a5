//! A NodeConfig as a node runs it: its addressables checked and its default delivery converted.

use super::delivery::Delivery;
use super::destination::AddressablesTable;
use crate::resources::field::{join, Checker};
use crate::resources::NodeConfigSpec;

/// A validated NodeConfig.
#[derive(Debug, Clone, Default)]
pub struct NodeSettings {
    /// Entries of `spec.addressables`, checked.
    pub addressables: Vec<(String, String)>,
    /// `spec.brokerDefaults.delivery`, when set.
    pub default_delivery: Option<Delivery>,
}

impl NodeSettings {
    /// Checks every entry of the addressables table (as the node will build it) and the default
    /// delivery.
    pub fn from_spec(spec: &NodeConfigSpec, checker: &mut Checker) -> NodeSettings {
        let mut probe = AddressablesTable::default();
        for (key, url) in &spec.addressables {
            if let Err(problem) = probe.insert(key, url) {
                checker.error(join("spec.addressables", key), problem.to_string());
            }
        }
        let default_delivery = spec
            .broker_defaults
            .as_ref()
            .and_then(|defaults| defaults.delivery.as_ref())
            .and_then(|delivery| {
                Delivery::from_spec(delivery, checker, "spec.brokerDefaults.delivery", "default")
            });
        NodeSettings {
            addressables: spec
                .addressables
                .iter()
                .map(|(key, url)| (key.clone(), url.clone()))
                .collect(),
            default_delivery,
        }
    }
}
