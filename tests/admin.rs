//! The admin API is locked: with a token every `/-/` route wants it (reads and mutations alike);
//! without one it is open only on a loopback listener, off on a listener other machines reach,
//! and a reachable `--admin-listen` without a token is refused at start.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const TOKEN: &str = "s3cret-admin-token-for-tests";

fn token_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("admin-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

#[test]
fn with_a_token_every_admin_route_wants_it() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("t", "filter: {}", "http://127.0.0.1:9/", None)
    );
    let node = NodeProcess::start_on(
        &config,
        &["--admin-token-file", token.to_str().unwrap()],
        Channel::Memory,
    );
    let routes = [
        ("GET", "/-/status"),
        ("GET", "/-/events/some-id"),
        ("GET", "/-/brokers/e2e/default/parked"),
        ("POST", "/-/brokers/e2e/default/parked/redrive"),
        ("POST", "/-/faults/dispatcher/e2e/default"),
    ];
    for (method, path) in routes {
        let url = format!("{}{path}", node.url);
        let request = |bearer: Option<&str>| {
            let builder = match method {
                "GET" => http().get(&url),
                _ => http().post(&url),
            };
            match bearer {
                Some(token) => builder.header("authorization", format!("Bearer {token}")),
                None => builder,
            }
            .send()
            .unwrap()
        };
        let anonymous = request(None);
        assert_eq!(anonymous.status(), 401, "{method} {path} without the token");
        assert!(anonymous.headers().contains_key("www-authenticate"));
        assert_eq!(
            request(Some("not-the-token")).status(),
            401,
            "{method} {path} with a wrong token"
        );
        assert_ne!(
            request(Some(TOKEN)).status(),
            401,
            "{method} {path} with the token"
        );
    }
    // The CLI reads the token from the same variable the node does.
    let output = Command::new(BIN)
        .args(["status", "--node", &node.url])
        .env("KNACTOR_ADMIN_TOKEN_FILE", &token)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let refused = Command::new(BIN)
        .args(["status", "--node", &node.url])
        .env_remove("KNACTOR_ADMIN_TOKEN_FILE")
        .env_remove("KNACTOR_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Events still go in without any token.
    assert_eq!(send(&node.broker("e2e", "default"), "e1", "t"), 202);
}

/// Starts `knactor run` with `args`; the port it listens on, once it does, and the process.
fn run_raw(config: &std::path::Path, args: &[&str]) -> (u16, std::process::Child) {
    let mut child = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the node printed where it listens")
            .unwrap();
        if let Some(url) = line.strip_prefix("knactor listening on http://") {
            break url.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    (port, child)
}

#[test]
fn without_a_token_the_admin_api_is_off_on_a_listener_others_reach() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, broker_yaml("{}")).unwrap();
    let state = dir.path().join("state");
    let (port, mut child) = run_raw(
        &config,
        &[
            "--listen",
            "0.0.0.0:0",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_until("the node is ready", Duration::from_secs(30), || {
        http()
            .get(format!("{base}/readyz"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    let answer = http().get(format!("{base}/-/status")).send().unwrap();
    assert_eq!(answer.status(), 404);
    let reason = answer.text().unwrap();
    assert!(reason.contains("--admin-token-file"), "{reason}");
    assert_eq!(send(&format!("{base}/e2e/default"), "e1", "t"), 202);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_reachable_admin_listener_without_a_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, broker_yaml("{}")).unwrap();
    let output = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-token-file"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
