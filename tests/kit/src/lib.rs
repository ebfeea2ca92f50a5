//! knactor-testkit: what every knactor test suite needs from the outside world, real and on
//! loopback: the `knactor` binary as a process ([`NodeProcess`]), Apache Kafka, one broker or a
//! cluster ([`Kafka`]), a Kubernetes API server ([`KubeApiServer`]), an OTLP collector with
//! Jaeger's query API ([`Collector`]), a recording subscriber ([`Recorder`]), a headless chromium
//! driven over WebDriver ([`Browser`]), and waiting helpers.
//!
//! External tools are found through the variables `scripts/install-tools.sh` writes
//! (`KNACTOR_TOOLS_BIN`, `KNACTOR_KAFKA_LIBS`, ...), or in `target/knactor-tools`. A missing tool
//! fails the test with the command that installs it; nothing is skipped.

// Whatever is `pub` is reachable from outside the crate; the rest says pub(crate).
#![warn(unreachable_pub)]
// Every public type can be printed with `{:?}`: in a log line, a test failure, a caller's own Debug.
#![warn(missing_debug_implementations)]
// Test code: a panic is a failed test, so the kit unwraps like the tests it serves.
#![allow(clippy::unwrap_used)]

mod browser;
mod collector;
mod http;
mod kafka;
mod kube;
mod load;
mod node;
mod recorder;

pub use browser::Browser;
pub use collector::Collector;
pub use http::{http, send, send_with};
pub use kafka::Kafka;
pub use kube::KubeApiServer;
pub use load::{wait_for_delivery, Load, Sent, Tally};
pub use node::{Channel, NodeProcess};
pub use recorder::{Recorded, Recorder, Reply};

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Waits until `check` holds, or fails the test saying what it waited for.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `check` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn poll(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

/// An installed test tool: `$KNACTOR_<NAME>`, `$KNACTOR_TOOLS_BIN/<name>`, or the default tools dir.
pub fn tool(name: &str) -> PathBuf {
    let variable = format!("KNACTOR_{}", name.to_ascii_uppercase().replace('-', "_"));
    let candidates = [
        std::env::var_os(&variable).map(PathBuf::from),
        std::env::var_os("KNACTOR_TOOLS_BIN").map(|dir| PathBuf::from(dir).join(name)),
        std::env::var_os("CARGO_TARGET_DIR")
            .map(|dir| PathBuf::from(dir).join("knactor-tools/bin").join(name)),
        Some(repo_path("target/knactor-tools/bin").join(name)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run `scripts/install-tools.sh --only {name}` (or set {variable})")
        })
}
