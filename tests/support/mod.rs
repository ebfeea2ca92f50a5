//! End-to-end harness: the real `knactor` binary on ephemeral loopback ports (on the channel
//! `KNACTOR_E2E_CHANNEL` names), and a recording subscriber. The machinery is in
//! `knactor-testkit`; this adds the binary cargo built for this suite.

#![allow(dead_code)]

#[allow(unused_imports)]
pub use knactor_testkit::{
    http, repo_path, send, send_with, wait_until, Channel, NodeProcess, Recorded, Recorder, Reply,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_knactor");

/// `NodeProcess::start(config, extra)`: the binary of this suite on the suite's channel.
pub trait Start {
    fn start(config: &str, extra: &[&str]) -> Self;
    fn start_on(config: &str, extra: &[&str], channel: Channel) -> Self;
}

impl Start for NodeProcess {
    fn start(config: &str, extra: &[&str]) -> Self {
        NodeProcess::spawn(std::path::Path::new(BIN), config, extra)
    }

    fn start_on(config: &str, extra: &[&str], channel: Channel) -> Self {
        NodeProcess::spawn_on(std::path::Path::new(BIN), config, extra, channel)
    }
}

/// A broker named `default` in namespace `e2e`, with extra YAML appended.
pub fn broker_yaml(delivery: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default, namespace: e2e}}\nspec:\n  delivery: {delivery}\n"
    )
}

/// A trigger on broker e2e/default.
pub fn trigger_yaml(name: &str, filter: &str, subscriber: &str, delivery: Option<&str>) -> String {
    let delivery = delivery
        .map(|d| format!("  delivery: {d}\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, namespace: e2e}}\nspec:\n  broker: default\n  {filter}\n  subscriber: {{uri: '{subscriber}'}}\n{delivery}"
    )
}
