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
