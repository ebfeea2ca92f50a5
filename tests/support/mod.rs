//! End-to-end harness: the real `knactor` binary on ephemeral loopback ports, and a recording
//! subscriber (a real HTTP server) whose answers each test scripts per path.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use cloudevents::{AttributesReader, Event};
use knactor_gateway::binding::decode_message;

pub const BIN: &str = env!("CARGO_BIN_EXE_knactor");

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

/// A running `knactor run`, killed when dropped.
pub struct NodeProcess {
    child: Child,
    pub url: String,
    pub config_dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
}

impl NodeProcess {
    /// Starts a node on `config` (written to a fresh directory) with fault injection on and fast
    /// reloads; `extra` flags are appended.
    pub fn start(config: &str, extra: &[&str]) -> Self {
        let config_dir = tempfile::tempdir().unwrap();
        std::fs::write(config_dir.path().join("config.yaml"), config).unwrap();
        let mut child = Command::new(BIN)
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--reload-interval",
                "100ms",
                "--log",
                "info",
            ])
            .arg("--config")
            .arg(config_dir.path())
            .args(extra)
            .env("KNACTOR_FAULT_INJECTION", "true")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the knactor binary starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("knactor listening on ") {
                    let _ = sender.send(url.to_string());
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("knactor did not start: {}", stderr.lock().unwrap());
            }
        };
        let node = Self {
            child,
            url,
            config_dir,
            stderr,
        };
        wait_until("the node is ready", Duration::from_secs(10), || {
            http()
                .get(format!("{}/readyz", node.url))
                .send()
                .is_ok_and(|r| r.status() == 200)
        });
        node
    }

    pub fn broker(&self, namespace: &str, name: &str) -> String {
        format!("{}/{namespace}/{name}", self.url)
    }

    pub fn config_path(&self) -> PathBuf {
        self.config_dir.path().join("config.yaml")
    }

    /// Replaces the configuration (the node re-reads it within its reload interval).
    pub fn write_config(&self, config: &str) {
        let temporary = self.config_dir.path().join(".config.yaml.tmp");
        std::fs::write(&temporary, config).unwrap();
        std::fs::rename(temporary, self.config_path()).unwrap();
    }

    /// What the node logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = http()
            .get(format!("{}/metrics", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let prefix = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    pub fn status(&self) -> serde_json::Value {
        http()
            .get(format!("{}/-/status", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Runs the `knactor` CLI against this node.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("KNACTOR_NODE", &self.url)
            .output()
            .unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends one binary-mode event; returns the status.
pub fn send(url: &str, id: &str, ty: &str) -> u16 {
    send_with(url, id, ty, &[]).status().as_u16()
}

pub fn send_with(
    url: &str,
    id: &str,
    ty: &str,
    headers: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let mut request = http()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/e2e")
        .header("ce-type", ty);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().unwrap()
}

/// What the recorder answers to one request.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: format!("answer {status}").into_bytes(),
            delay: Duration::ZERO,
        }
    }

    pub fn accepted() -> Self {
        Self {
            body: Vec::new(),
            ..Self::status(202)
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: &str) -> Self {
        self.body = body.as_bytes().to_vec();
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// A 200 carrying a binary-mode reply event.
    pub fn event(id: &str, ty: &str) -> Self {
        Self::status(200)
            .with_header("ce-specversion", "1.0")
            .with_header("ce-id", id)
            .with_header("ce-source", "/reply")
            .with_header("ce-type", ty)
            .with_body("")
    }
}

/// One request the recorder received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub event: Option<Event>,
    pub at: Instant,
}

type Script = Arc<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

#[derive(Default)]
struct RecorderState {
    received: Vec<Recorded>,
    scripts: HashMap<String, Script>,
    counts: HashMap<String, usize>,
}

/// A subscriber over real HTTP that records everything and answers as scripted (202 by default).
pub struct Recorder {
    pub url: String,
    state: Arc<Mutex<RecorderState>>,
    server: actix_web::dev::ServerHandle,
}

impl Recorder {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(RecorderState::default()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sender, receiver) = mpsc::channel();
        let shared = state.clone();
        thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(shared.clone()))
                        .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                        .default_service(web::to(record))
                })
                .workers(2)
                .disable_signals()
                .listen(listener)
                .unwrap()
                .run();
                sender.send(server.handle()).unwrap();
                let _ = server.await;
            });
        });
        let server = receiver.recv().unwrap();
        Self { url, state, server }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Scripts the answers on `path`; the closure gets the request and its number (from 1).
    pub fn on(
        &self,
        path: &str,
        script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .insert(path.to_string(), Arc::new(script));
    }

    pub fn received(&self, path: &str) -> Vec<Recorded> {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn ids(&self, path: &str) -> Vec<String> {
        self.received(path)
            .iter()
            .filter_map(|r| r.event.as_ref().map(|e| e.id().to_string()))
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.received(path).len()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // The stop command is sent at once; nothing here needs to wait for it to finish.
        drop(self.server.stop(false));
    }
}

async fn record(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<RecorderState>>>,
) -> HttpResponse {
    let headers: Vec<(&str, &[u8])> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let event = decode_message(&headers, &body)
        .ok()
        .and_then(|mut events| events.pop());
    let recorded = Recorded {
        path: request.path().to_string(),
        headers: request
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: body.to_vec(),
        event,
        at: Instant::now(),
    };
    let reply = {
        let mut state = state.lock().unwrap();
        state.received.push(recorded.clone());
        let count = state.counts.entry(recorded.path.clone()).or_default();
        *count += 1;
        let n = *count;
        match state.scripts.get(&recorded.path) {
            Some(script) => script(&recorded, n),
            None => Reply::accepted(),
        }
    };
    if !reply.delay.is_zero() {
        actix_rt::time::sleep(reply.delay).await;
    }
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in &reply.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    response.body(reply.body)
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

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}
