//! A subscriber over real HTTP that records every request and answers as each test scripts.

use std::collections::HashMap;
use std::fmt;
use std::net::TcpListener;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use cloudevents::{AttributesReader, Event};
use knactor_gateway::binding::decode_message;

/// What the recorder answers to one request.
#[derive(Debug, Clone)]
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

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let received = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .received
            .len();
        f.debug_struct("Recorder")
            .field("url", &self.url)
            .field("received", &received)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn start() -> Self {
        Self::start_with_keep_alive(Duration::from_secs(5))
    }

    /// A recorder that closes a connection once it has been idle for `keep_alive` (actix-web's
    /// default, [`Recorder::start`]'s, is 5 s).
    pub fn start_with_keep_alive(keep_alive: Duration) -> Self {
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
                .keep_alive(keep_alive)
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
