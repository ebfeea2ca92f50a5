//! Apache Kafka (KRaft) on loopback: one broker or a cluster of N, started and stopped by
//! `scripts/kafka-up.sh` and `scripts/kafka-down.sh` (the one place that knows the brokers'
//! settings), in a temporary directory.
//!
//! A JVM per test is slow (3 s or more, 300 MB or more), so the tests that neither stop nor kill
//! their Kafka share one broker per test process, [`Kafka::shared`], each with topic names of its
//! own (a node on [`Channel::Kafka`](crate::Channel) gets a topic template no other node has). A
//! test that kills, restarts or stops brokers starts its own: [`Kafka::start`], [`Kafka::cluster`].
//!
//! No JVM outlives the test process. Dropping a `Kafka` kills its brokers (a panicking test drops
//! it too), and every cluster starts with `kafka-up.sh --owner <this process>`, whose watcher
//! kills the brokers and deletes their directory once the process is gone: that covers the shared
//! broker, which is never dropped, and a test process that was killed. Should a watcher itself be
//! killed, the next test process that starts a Kafka kills what its owner left.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::wait_until;

/// Where the clusters live: a directory of this name in the system's temporary directory.
const DIR_PREFIX: &str = "knactor-kafka-";

#[derive(Debug)]
pub struct Kafka {
    /// The bootstrap list: `127.0.0.1:P1,127.0.0.1:P2,...`.
    pub bootstrap: String,
    brokers: usize,
    shared: bool,
    dir: tempfile::TempDir,
}

impl Kafka {
    /// A broker of this test's own (a combined KRaft broker and controller).
    pub fn start() -> Self {
        Self::cluster(1)
    }

    /// A cluster of `brokers` brokers of this test's own, each a KRaft controller too; topics get
    /// min(brokers, 3) replicas, and from 3 brokers on `min.insync.replicas` is 2.
    pub fn cluster(brokers: usize) -> Self {
        Self::launch(brokers, false)
    }

    /// The broker every test of this process shares, started on first use. Not to be stopped,
    /// killed or restarted (those panic); give what runs on it names no other test uses.
    pub fn shared() -> Arc<Kafka> {
        static SHARED: OnceLock<Arc<Kafka>> = OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(Self::launch(1, true)))
            .clone()
    }

    fn launch(brokers: usize, shared: bool) -> Self {
        assert!(brokers >= 1, "a cluster has at least one broker");
        reap_orphans();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .unwrap();
        let printed = script(
            "kafka-up.sh",
            dir.path(),
            &[
                "--brokers",
                &brokers.to_string(),
                "--owner",
                &std::process::id().to_string(),
            ],
        );
        let bootstrap = printed.lines().last().unwrap_or_default().to_string();
        assert!(
            bootstrap.starts_with("127.0.0.1:"),
            "kafka-up.sh printed {printed:?}"
        );
        Self {
            bootstrap,
            brokers,
            shared,
            dir,
        }
    }

    /// How many brokers the cluster has (running or not).
    pub fn brokers(&self) -> usize {
        self.brokers
    }

    /// The directory with each broker's configuration, data, log and pid file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills broker `i` (1-based) with SIGKILL: a crash, as the cluster and its clients see it.
    pub fn kill_broker(&self, i: usize) {
        self.assert_own("kill a broker of");
        self.assert_broker(i);
        script(
            "kafka-down.sh",
            self.dir(),
            &["--broker", &i.to_string(), "--kill"],
        );
    }

    /// Kills broker `i` if it runs, starts it again (same port, same data) and returns once the
    /// cluster lists it again.
    pub fn restart_broker(&self, i: usize) {
        self.kill_broker(i);
        script(
            "kafka-up.sh",
            self.dir(),
            &[
                "--broker",
                &i.to_string(),
                "--owner",
                &std::process::id().to_string(),
            ],
        );
    }

    /// Stops every broker with SIGTERM (a controlled shutdown; SIGKILL after 10 s). Clients see
    /// the cluster go away; [`Kafka::restart`] brings it back.
    pub fn stop(&self) {
        self.assert_own("stop");
        script("kafka-down.sh", self.dir(), &[]);
    }

    /// Starts every broker that is not running: the same cluster, on the same ports, with its
    /// data (a cluster restart, as clients see it).
    pub fn restart(&self) {
        self.assert_own("restart");
        script(
            "kafka-up.sh",
            self.dir(),
            &["--owner", &std::process::id().to_string()],
        );
    }

    /// The topics, with their partition counts, sorted by name; Kafka's internal topics
    /// (`__consumer_offsets`) left out.
    pub fn topics(&self) -> Vec<(String, usize)> {
        let client: BaseConsumer = self.client_config().create().expect("a metadata client");
        let metadata = client
            .fetch_metadata(None, Duration::from_secs(30))
            .unwrap_or_else(|error| panic!("listing the topics of {}: {error}", self.bootstrap));
        let mut topics: Vec<(String, usize)> = metadata
            .topics()
            .iter()
            .filter(|topic| topic.error().is_none() && !topic.name().starts_with("__"))
            .map(|topic| (topic.name().to_string(), topic.partitions().len()))
            .collect();
        topics.sort();
        topics
    }

    /// Creates a topic with the cluster's default replication, and returns once it is listed.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("an admin client");
        let partitions = i32::try_from(partitions).expect("a partition count");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures::executor::block_on(admin.create_topics([&topic], &options))
            .unwrap_or_else(|error| panic!("creating topic {name}: {error}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("creating topic {topic}: {code}");
            }
        }
        let wanted = (name.to_string(), partitions as usize);
        wait_until(
            &format!("topic {name} is listed"),
            Duration::from_secs(30),
            || self.topics().contains(&wanted),
        );
    }

    /// What the brokers logged so far, broker by broker.
    pub fn log(&self) -> String {
        (1..=self.brokers)
            .map(|i| {
                let log = std::fs::read_to_string(self.dir().join(format!("broker-{i}.log")))
                    .unwrap_or_default();
                format!("==> broker {i} <==\n{log}")
            })
            .collect()
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "knactor-testkit");
        config
    }

    fn assert_own(&self, what: &str) {
        assert!(
            !self.shared,
            "the shared Kafka is every test's: {what} a Kafka of the test's own (Kafka::start)"
        );
    }

    fn assert_broker(&self, i: usize) {
        assert!(
            (1..=self.brokers).contains(&i),
            "no broker {i}: the cluster has brokers 1..={}",
            self.brokers
        );
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        // Nothing to wait for politely: the data goes with the directory.
        let _ = Command::new(script_path("kafka-down.sh"))
            .arg(self.dir.path())
            .arg("--kill")
            .output();
    }
}

/// Kills and deletes the clusters of test processes that are gone, in case a watcher was killed
/// before its owner (once per process, before its first cluster starts).
fn reap_orphans() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
                continue;
            }
            let Ok(owner) = std::fs::read_to_string(dir.join("owner")) else {
                continue;
            };
            if Path::new("/proc").join(owner.trim()).exists() {
                continue;
            }
            eprintln!(
                "knactor-testkit: {} outlived its test process {}: killed",
                dir.display(),
                owner.trim()
            );
            let _ = Command::new(script_path("kafka-down.sh"))
                .arg(&dir)
                .args(["--kill", "--remove"])
                .output();
        }
    });
}

fn script_path(name: &str) -> PathBuf {
    crate::repo_path("scripts").join(name)
}

/// Runs `scripts/NAME DIR ARGS...`; its stdout, or a panic with what it said.
fn script(name: &str, dir: &Path, args: &[&str]) -> String {
    let output = Command::new(script_path(name))
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("scripts/{name} does not run: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "scripts/{name} {} {} failed: {}{stdout}",
        dir.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
