//! A running `knactor run`, on an ephemeral loopback port, killed when dropped.
//!
//! Which channel its brokers use comes from `KNACTOR_E2E_CHANNEL` (`memory`, the default, or
//! `kafka`), so one scenario suite runs against both: with `kafka`, the node makes every broker a
//! Kafka broker on the test process's shared Apache Kafka ([`Kafka::shared`]), with topic names
//! no other node has (a topic template of its own), so its topics and consumer groups start empty.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::{http, poll, wait_until, Kafka};

/// The channel a test node's brokers live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Memory,
    Kafka,
}

impl Channel {
    /// `KNACTOR_E2E_CHANNEL`: the channel the suite runs against.
    pub fn from_env() -> Self {
        match std::env::var("KNACTOR_E2E_CHANNEL").as_deref() {
            Ok("kafka") => Channel::Kafka,
            Ok("memory") | Err(_) => Channel::Memory,
            Ok(other) => panic!("KNACTOR_E2E_CHANNEL={other:?}: use memory or kafka"),
        }
    }
}

pub struct NodeProcess {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Child,
    pub url: String,
    pub channel: Channel,
    pub config_dir: tempfile::TempDir,
    /// The Kafka its brokers live on (on [`Channel::Kafka`]).
    pub kafka: Option<Arc<Kafka>>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

/// The process and where it listens; its output is long and left out (see [`NodeProcess::log`]).
impl fmt::Debug for NodeProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeProcess")
            .field("pid", &self.child.id())
            .field("args", &self.args)
            .field("url", &self.url)
            .field("channel", &self.channel)
            .field("config_dir", &self.config_dir.path())
            .finish_non_exhaustive()
    }
}

impl NodeProcess {
    /// Starts `bin run` on `config` (written to a fresh directory), on the suite's channel, with
    /// fault injection on and fast reloads; `extra` flags are appended.
    pub fn spawn(bin: &Path, config: &str, extra: &[&str]) -> Self {
        Self::spawn_on(bin, config, extra, Channel::from_env())
    }

    /// `bin run` on resources from a cluster (`--kubeconfig`), memory channel; `extra` appended.
    pub fn spawn_cluster(bin: &Path, kubeconfig: &Path, extra: &[&str]) -> Self {
        let config_dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = ["run", "--listen", "127.0.0.1:0", "--kubeconfig"]
            .iter()
            .map(ToString::to_string)
            .collect();
        args.push(kubeconfig.display().to_string());
        args.extend(extra.iter().map(ToString::to_string));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let (child, url) = launch(bin, &args, &[], &stderr, &stdout);
        let node = Self {
            bin: bin.to_path_buf(),
            args,
            env: Vec::new(),
            child,
            url,
            channel: Channel::Memory,
            config_dir,
            kafka: None,
            stderr,
            stdout,
        };
        node.wait_ready();
        node
    }

    /// Like [`NodeProcess::spawn`], on a given channel.
    pub fn spawn_on(bin: &Path, config: &str, extra: &[&str], channel: Channel) -> Self {
        Self::spawn_with_env(bin, config, extra, channel, &[])
    }

    /// Like [`NodeProcess::spawn_on`], with extra environment variables for the process.
    pub fn spawn_with_env(
        bin: &Path,
        config: &str,
        extra: &[&str],
        channel: Channel,
        env: &[(&str, &str)],
    ) -> Self {
        match channel {
            Channel::Memory => Self::launch_on(bin, config, extra, None, env),
            Channel::Kafka => {
                // Topics (and so consumer groups) of its own on the shared broker; the test's
                // own --kafka-topic-template or environment still wins.
                let template = unique_topic_template();
                let mut with_template = vec![("KNACTOR_KAFKA_TOPIC_TEMPLATE", template.as_str())];
                with_template.extend_from_slice(env);
                Self::launch_on(bin, config, extra, Some(Kafka::shared()), &with_template)
            }
        }
    }

    /// `bin run` with every broker on `kafka` (a Kafka the test owns, to stop or kill it, or the
    /// shared one when the test wants Knative's default topic names), as on [`Channel::Kafka`].
    pub fn spawn_with_kafka(bin: &Path, config: &str, extra: &[&str], kafka: Arc<Kafka>) -> Self {
        Self::launch_on(bin, config, extra, Some(kafka), &[])
    }

    fn launch_on(
        bin: &Path,
        config: &str,
        extra: &[&str],
        kafka: Option<Arc<Kafka>>,
        env: &[(&str, &str)],
    ) -> Self {
        let config_dir = tempfile::tempdir().unwrap();
        std::fs::write(config_dir.path().join("config.yaml"), config).unwrap();
        let mut args: Vec<String> = ["run", "--listen", "127.0.0.1:0"]
            .iter()
            .map(ToString::to_string)
            .collect();
        // Configuration changes seen within 100 ms, unless the caller says otherwise.
        if !extra.contains(&"--reload-interval") {
            args.extend(["--reload-interval".into(), "100ms".into()]);
        }
        args.push("--config".into());
        args.push(config_dir.path().display().to_string());
        // Sources keep their positions beside the configuration (kept across restarts).
        args.push("--state-dir".into());
        args.push(config_dir.path().join(".state").display().to_string());
        if let Some(kafka) = &kafka {
            args.extend(
                [
                    "--kafka-bootstrap",
                    &kafka.bootstrap,
                    "--default-broker-class",
                    "Kafka",
                ]
                .iter()
                .map(ToString::to_string),
            );
        }
        args.extend(extra.iter().map(ToString::to_string));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let (child, url) = launch(bin, &args, &env, &stderr, &stdout);
        let node = Self {
            bin: bin.to_path_buf(),
            args,
            env,
            child,
            url,
            channel: if kafka.is_some() {
                Channel::Kafka
            } else {
                Channel::Memory
            },
            config_dir,
            kafka,
            stderr,
            stdout,
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&self) {
        wait_until("the node is ready", Duration::from_secs(60), || {
            http()
                .get(format!("{}/readyz", self.url))
                .send()
                .is_ok_and(|r| r.status() == 200)
        });
    }

    /// Waits, up to 30 s, until no broker on Kafka is on its way to running: each runs, or is
    /// reported not running for a reason of its configuration (not `ChannelUnavailable`, which is
    /// retried). `/readyz` answers 200 once every broker had its first start or failed it; a
    /// test that must start from running Kafka brokers (a first start that fails is retried 5 s
    /// later) calls this; a long wait is said on stderr.
    pub fn wait_for_kafka_brokers(&self) {
        let began = Instant::now();
        let settled = poll(Duration::from_secs(30), || {
            let status = self.status();
            let retried: Vec<(&str, &str)> = list(&status["notRunning"])
                .filter(|issue| issue["reason"] == "ChannelUnavailable")
                .filter_map(|issue| Some((issue["namespace"].as_str()?, issue["name"].as_str()?)))
                .collect();
            let settled = list(&status["brokers"])
                .filter(|broker| broker["channel"] == "kafka")
                .all(|broker| {
                    let key = (
                        broker["namespace"].as_str().unwrap_or_default(),
                        broker["name"].as_str().unwrap_or_default(),
                    );
                    broker["running"] == true
                        || (!retried.contains(&key) && is_reported(&status, key))
                });
            settled
        });
        let waited = began.elapsed();
        if !settled || waited > Duration::from_secs(1) {
            eprintln!(
                "knactor-testkit: the node's Kafka brokers {} {waited:.1?} after /readyz answered 200",
                if settled { "ran" } else { "still did not run" },
            );
        }
    }

    /// Stops the node with SIGTERM, as an orchestrator does, and waits for it to exit (it flushes
    /// what it buffered, traces included).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// The process id (for measuring what the node costs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the node with SIGKILL (no chance to flush or commit anything).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again after a kill: same configuration, same Kafka, same port if free.
    pub fn restart(&mut self) {
        self.kill();
        let address = self.url.trim_start_matches("http://").to_string();
        let mut args = self.args.clone();
        if let Some(listen) = args.iter().position(|a| a == "--listen") {
            args[listen + 1] = address;
        }
        let (child, url) = launch(&self.bin, &args, &self.env, &self.stderr, &self.stdout);
        self.child = child;
        self.url = url;
        self.wait_ready();
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

    /// What the node logged so far (across restarts).
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// What the node printed on stdout so far (across restarts): the addresses it serves.
    pub fn output(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// The node's `/metrics` page.
    pub fn metrics_text(&self) -> String {
        http()
            .get(format!("{}/metrics", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.metrics_text();
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
        Command::new(&self.bin)
            .args(args)
            .env("KNACTOR_NODE", &self.url)
            .output()
            .unwrap()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn list(value: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    value.as_array().into_iter().flatten()
}

/// Whether `status` reports the broker `(namespace, name)` as not running, for any reason.
fn is_reported(status: &serde_json::Value, (namespace, name): (&str, &str)) -> bool {
    list(&status["notRunning"]).any(|issue| {
        issue["kind"] == "Broker" && issue["namespace"] == namespace && issue["name"] == name
    })
}

/// A topic template no other node of this or an earlier test process has:
/// `knative-broker-{{.Namespace}}-{{.Name}}` behind this process's id, a count and the time.
fn unique_topic_template() -> String {
    static NODES: AtomicUsize = AtomicUsize::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!(
        "t{}-{}-{}-knative-broker-{{{{.Namespace}}}}-{{{{.Name}}}}",
        std::process::id(),
        NODES.fetch_add(1, Ordering::Relaxed),
        millis % 100_000
    )
}

/// Starts the process and waits for its "listening on" line.
fn launch(
    bin: &Path,
    args: &[String],
    env: &[(String, String)],
    stderr: &Arc<Mutex<String>>,
    printed: &Arc<Mutex<String>>,
) -> (Child, String) {
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env("KNACTOR_FAULT_INJECTION", "true")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the knactor binary starts");
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    let printed = printed.clone();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            {
                let mut output = printed.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
            if let Some(url) = line.strip_prefix("knactor listening on ") {
                let _ = sender.send(url.to_string());
            }
        }
    });
    let sink = stderr.clone();
    let err = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    match receiver.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => (child, url),
        Err(_) => {
            let _ = child.kill();
            panic!("knactor did not start: {}", stderr.lock().unwrap());
        }
    }
}
