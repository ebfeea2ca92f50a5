//! A real browser for the console's tests: Debian's `chromium`, headless, with a fresh profile,
//! driven through Debian's `chromedriver` (WebDriver) with fantoccini. Both come from the Debian
//! packages `chromium` and `chromium-driver`, which `scripts/install-tools.sh` installs; a machine
//! without them fails the test saying so, it never skips.
//!
//! The methods are blocking (each drives the WebDriver session on the browser's own runtime), so
//! a test mixes them freely with the kit's blocking HTTP helpers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::http;

/// The browser, and the chromedriver that drives it; both end when dropped.
#[derive(Debug)]
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn installed(candidates: &[&str], what: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{what} is not installed (Debian packages chromium and chromium-driver): run \
                 `scripts/install-tools.sh --only debs`"
            )
        })
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a fresh profile, `width` x `height`.
    pub fn start(width: u32, height: u32) -> Self {
        let chromium = installed(
            &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
            "chromium",
        );
        let chromedriver = installed(
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
            "chromedriver",
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{}: {error}", chromedriver.display()));
        let url = format!("http://127.0.0.1:{port}");
        crate::wait_until("chromedriver answers", Duration::from_secs(20), || {
            http()
                .get(format!("{url}/status"))
                .send()
                .is_ok_and(|response| response.status().is_success())
        });
        let profile = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let capabilities = capabilities(&chromium, profile.path(), width, height);
        let client = runtime
            .block_on(async {
                let mut builder =
                    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
                builder.capabilities(capabilities);
                builder.connect(&url).await
            })
            .unwrap_or_else(|error| panic!("chromium did not start under chromedriver: {error}"));
        Self {
            runtime,
            client: Some(client),
            driver,
            _profile: profile,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the browser runs")
    }

    pub fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|error| panic!("cannot open {url}: {error}"));
    }

    /// Runs `script` in the page (its `return` value as JSON).
    pub fn eval(&self, script: &str) -> serde_json::Value {
        self.runtime
            .block_on(self.client().execute(script, Vec::new()))
            .unwrap_or_else(|error| panic!("script failed: {error}\n{script}"))
    }

    /// The text of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.runtime.block_on(async {
            let mut texts = Vec::new();
            for element in self
                .client()
                .find_all(Locator::Css(css))
                .await
                .unwrap_or_default()
            {
                texts.push(element.text().await.unwrap_or_default());
            }
            texts
        })
    }

    /// An attribute of the first element matching `css`, if there is one.
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.runtime.block_on(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.attr(name).await.ok().flatten()
        })
    }

    pub fn exists(&self, css: &str) -> bool {
        self.runtime
            .block_on(self.client().find(Locator::Css(css)))
            .is_ok()
    }

    /// Clicks the first element matching `css`; a page that redraws it meanwhile (a live list)
    /// is tried again, a few times.
    pub fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            let clicked = self
                .runtime
                .block_on(async { self.client().find(Locator::Css(css)).await?.click().await });
            match clicked {
                Ok(()) => return,
                Err(error) if tries < 10 && error.to_string().contains("stale element") => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => panic!("cannot click {css}: {error}"),
            }
        }
    }

    pub fn type_into(&self, css: &str, text: &str) {
        self.runtime
            .block_on(async {
                self.client()
                    .find(Locator::Css(css))
                    .await?
                    .send_keys(text)
                    .await
            })
            .unwrap_or_else(|error| panic!("cannot type into {css}: {error}"));
    }

    /// Waits until `check` holds, or fails saying what it waited for and what the page shows.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            if Instant::now() >= deadline {
                let text = self.texts("body").join("\n");
                panic!("timed out after {timeout:?} waiting until {what}; the page shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        self.runtime
            .block_on(self.client().screenshot())
            .unwrap_or_else(|error| panic!("cannot take a screenshot: {error}"))
    }

    /// Writes a screenshot to `path` (creating its directory).
    pub fn save_screenshot(&self, path: &Path) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, self.screenshot()).unwrap();
    }
}

fn capabilities(
    chromium: &Path,
    profile: &Path,
    width: u32,
    height: u32,
) -> serde_json::Map<String, serde_json::Value> {
    let options = serde_json::json!({
        "binary": chromium.display().to_string(),
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), "chrome".into());
    capabilities.insert("goog:chromeOptions".into(), options);
    capabilities
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
