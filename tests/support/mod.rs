//! End-to-end harness: the real `knactor` binary on ephemeral loopback ports (on the channel
//! `KNACTOR_E2E_CHANNEL` names), and a recording subscriber. The machinery is in
//! `knactor-testkit`; this adds the binary cargo built for this suite.

#![allow(dead_code)]

#[allow(unused_imports)]
pub(crate) use knactor_testkit::{
    http, repo_path, send, send_with, wait_until, Browser, Channel, Kafka, NodeProcess, Recorded,
    Recorder, Reply,
};

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_knactor");

/// `NodeProcess::start(config, extra)`: the binary of this suite on the suite's channel.
pub(crate) trait Start {
    fn start(config: &str, extra: &[&str]) -> Self;
    fn start_on(config: &str, extra: &[&str], channel: Channel) -> Self;
    /// Every broker on `kafka`, with Knative's default topic names.
    fn start_with_kafka(config: &str, extra: &[&str], kafka: Arc<Kafka>) -> Self;
}

impl Start for NodeProcess {
    fn start(config: &str, extra: &[&str]) -> Self {
        NodeProcess::spawn(std::path::Path::new(BIN), config, extra)
    }

    fn start_on(config: &str, extra: &[&str], channel: Channel) -> Self {
        NodeProcess::spawn_on(std::path::Path::new(BIN), config, extra, channel)
    }

    fn start_with_kafka(config: &str, extra: &[&str], kafka: Arc<Kafka>) -> Self {
        NodeProcess::spawn_with_kafka(std::path::Path::new(BIN), config, extra, kafka)
    }
}

/// A broker named `default` in namespace `e2e`, with extra YAML appended.
pub(crate) fn broker_yaml(delivery: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default, namespace: e2e}}\nspec:\n  delivery: {delivery}\n"
    )
}

/// A trigger on broker e2e/default.
pub(crate) fn trigger_yaml(
    name: &str,
    filter: &str,
    subscriber: &str,
    delivery: Option<&str>,
) -> String {
    let delivery = delivery
        .map(|d| format!("  delivery: {d}\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, namespace: e2e}}\nspec:\n  broker: default\n  {filter}\n  subscriber: {{uri: '{subscriber}'}}\n{delivery}"
    )
}

/// A subscriber whose `/slow` answers 202 after `delay` and `/fast` at once, and the YAML of two
/// triggers `slow` and `fast` (no filter) to them, to follow a broker's.
pub(crate) fn slow_and_fast_triggers(delay: Duration) -> (Recorder, String) {
    let recorder = Recorder::start();
    recorder.on("/slow", move |_, _| Reply::accepted().after(delay));
    let triggers = format!(
        "{}{}",
        trigger_yaml("slow", "filter: {}", &recorder.at("/slow"), None),
        trigger_yaml("fast", "filter: {}", &recorder.at("/fast"), None),
    );
    (recorder, triggers)
}

/// `knactor display` on a free port, its stdout collected.
pub(crate) struct Display {
    pub url: String,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Display {
    pub(crate) fn start() -> Self {
        let mut child = Command::new(BIN)
            .args(["display", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("knactor display listening on ") {
                    let _ = sender.send(url.to_string());
                }
            }
        });
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let collected = output.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut output = collected.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
        });
        let url = receiver
            .recv_timeout(Duration::from_secs(20))
            .expect("display starts");
        Self { child, url, output }
    }

    /// What it printed so far.
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An event's data as JSON, whichever way the binding decoded it.
pub(crate) fn data_json(event: &cloudevents::Event) -> serde_json::Value {
    match event.data() {
        Some(cloudevents::Data::Json(value)) => value.clone(),
        Some(cloudevents::Data::Binary(bytes)) => serde_json::from_slice(bytes).unwrap(),
        Some(cloudevents::Data::String(text)) => serde_json::from_str(text).unwrap(),
        None => serde_json::Value::Null,
    }
}
