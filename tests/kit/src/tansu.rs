//! A tansu Kafka-protocol broker on a free loopback port, its SQLite data in a temporary
//! directory; killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Tansu {
    child: Mutex<Child>,
    /// `127.0.0.1:PORT`
    pub bootstrap: String,
    dir: tempfile::TempDir,
}

impl Tansu {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = format!("127.0.0.1:{port}");
        let url = format!("tcp://{bootstrap}");
        let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
        // tansu joins the SQLite path to its working directory, even an absolute one.
        let child = Command::new(crate::tool("tansu"))
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        let tansu = Self {
            child: Mutex::new(child),
            bootstrap,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&tansu.bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {}: {}",
                tansu.bootstrap,
                tansu.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        tansu
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Tansu {
    /// Topics and their partition counts, as the broker lists them (through tansu's own client,
    /// so no librdkafka in the test process ever asks about a deleted topic).
    pub fn topics(&self) -> Vec<(String, usize)> {
        self.try_topics().unwrap_or_else(|error| panic!("{error}"))
    }

    /// Like [`Tansu::topics`], with a failure to list as an error (tansu 0.6 sometimes drops the
    /// connection right after a topic was deleted).
    pub fn try_topics(&self) -> Result<Vec<(String, usize)>, String> {
        let output = Command::new(crate::tool("tansu"))
            .args([
                "topic",
                "list",
                "--broker",
                &format!("tcp://{}", self.bootstrap),
            ])
            .output()
            .expect("tansu topic list runs");
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|_| {
            format!(
                "tansu topic list: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        Ok(listed
            .as_array()
            .into_iter()
            .flatten()
            .filter(|topic| topic["error_code"] == 0)
            .map(|topic| {
                let name = topic["name"].as_str().unwrap_or_default().to_string();
                let partitions = topic["partitions"].as_array().map_or(0, Vec::len);
                (name, partitions)
            })
            .collect())
    }

    /// Creates a topic through tansu's own client.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let output = Command::new(crate::tool("tansu"))
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://{}", self.bootstrap)])
            .output()
            .expect("tansu topic create runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Kills the broker (its clients see it go away).
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
