//! End-to-end load through one node on the memory channel, next to a reference measured in the
//! same run by the same load generator: a bare actix-web server answering 202.
//!
//! ```text
//!   load generator ──POST──► knactor (ingress ─► broker ─► dispatcher ─► trigger) ──POST──► sink
//!   load generator ──POST──► reference (actix-web, answers 202)
//! ```
//!
//! Reported: accepted events/s and ack latency (what a producer sees), delivered events/s and
//! end-to-end latency (producer send to subscriber receipt), and the ratios to the reference.
//!
//! `cargo bench --bench e2e_load [-- --events N --concurrency C]`; results also go to
//! `target/bench-results/e2e_load.json`.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures::StreamExt;

use knactor_testkit::{Channel, NodeProcess};

/// Arrival times at the sink, nanoseconds since the bench started (0 = not yet).
struct Arrivals {
    start: Instant,
    slots: Vec<AtomicU64>,
    count: AtomicU64,
}

fn start_server(
    workers: usize,
    handler: impl Fn(HttpRequest) -> HttpResponse + Clone + Send + Sync + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (ready, wait) = mpsc::channel();
    thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let handler = handler.clone();
                App::new().default_service(web::to(
                    move |request: HttpRequest, _body: web::Bytes| {
                        let handler = handler.clone();
                        async move { handler(request) }
                    },
                ))
            })
            .workers(workers)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            ready.send(()).unwrap();
            let _ = server.await;
        });
    });
    wait.recv().unwrap();
    url
}

/// The node under test: the release binary, on the harness the end-to-end tests use.
fn start_node(sink: &str) -> NodeProcess {
    let config = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default, namespace: bench}}\nspec: {{}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: sink, namespace: bench}}\n\
         spec: {{broker: default, subscriber: {{uri: '{sink}/sink'}}}}\n"
    );
    NodeProcess::spawn_on(
        std::path::Path::new(env!("CARGO_BIN_EXE_knactor")),
        &config,
        &[],
        Channel::Memory,
    )
}

struct Run {
    sent_at: Vec<Duration>,
    ack: Vec<Duration>,
    elapsed: Duration,
    failures: usize,
}

/// Sends `events` binary-mode events with `concurrency` requests in flight; ids are `<prefix>-<i>`.
fn load(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    prefix: &str,
    events: usize,
    concurrency: usize,
    start: Instant,
) -> Run {
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap();
        let began = Instant::now();
        let results: Vec<(usize, Duration, Duration, bool)> = futures::stream::iter(0..events)
            .map(|i| {
                let client = client.clone();
                let url = url.to_string();
                let id = format!("{prefix}-{i}");
                async move {
                    let sent = Instant::now();
                    let status = client
                        .post(&url)
                        .header("ce-specversion", "1.0")
                        .header("ce-id", id)
                        .header("ce-source", "/bench")
                        .header("ce-type", "bench")
                        .header("content-type", "application/json")
                        .body(r#"{"payload":"0123456789abcdef0123456789abcdef"}"#)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    (i, sent - start, sent.elapsed(), status == 202)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let elapsed = began.elapsed();
        let mut sent_at = vec![Duration::ZERO; events];
        let mut ack = Vec::with_capacity(events);
        let mut failures = 0;
        for (i, sent, latency, ok) in results {
            sent_at[i] = sent;
            ack.push(latency);
            if !ok {
                failures += 1;
            }
        }
        Run {
            sent_at,
            ack,
            elapsed,
            failures,
        }
    })
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort_unstable();
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let events = arg("--events", 20_000);
    let concurrency = arg("--concurrency", 32);
    let start = Instant::now();
    let arrivals = Arc::new(Arrivals {
        start,
        slots: (0..events).map(|_| AtomicU64::new(0)).collect(),
        count: AtomicU64::new(0),
    });

    let sink_arrivals = arrivals.clone();
    let sink = start_server(1, move |request: HttpRequest| {
        let id = request
            .headers()
            .get("ce-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if let Some(index) = id
            .strip_prefix("run-")
            .and_then(|i| i.parse::<usize>().ok())
        {
            if let Some(slot) = sink_arrivals.slots.get(index) {
                let now = sink_arrivals.start.elapsed().as_nanos() as u64;
                if slot.swap(now, Ordering::Relaxed) == 0 {
                    sink_arrivals.count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        HttpResponse::Accepted().finish()
    });
    let reference = start_server(1, |_| HttpResponse::Accepted().finish());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Reference: the same generator against a server that only answers.
    load(&runtime, &reference, "warm", 2_000, concurrency, start);
    let reference_run = load(&runtime, &reference, "ref", events, concurrency, start);

    let mut node = start_node(&sink);
    let broker = node.broker("bench", "default");
    load(&runtime, &broker, "warm", 2_000, concurrency, start);
    let knactor_run = load(&runtime, &broker, "run", events, concurrency, start);
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.count.load(Ordering::Relaxed) < (events - knactor_run.failures) as u64
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(20));
    }
    node.kill();

    let delivered = arrivals.count.load(Ordering::Relaxed) as usize;
    let mut end_to_end: Vec<Duration> = (0..events)
        .filter_map(|i| {
            let arrived = arrivals.slots[i].load(Ordering::Relaxed);
            (arrived > 0)
                .then(|| Duration::from_nanos(arrived).saturating_sub(knactor_run.sent_at[i]))
        })
        .collect();
    let first_send = knactor_run
        .sent_at
        .iter()
        .min()
        .copied()
        .unwrap_or_default();
    let last_arrival = arrivals
        .slots
        .iter()
        .map(|slot| Duration::from_nanos(slot.load(Ordering::Relaxed)))
        .max()
        .unwrap_or_default();
    let delivered_rate = delivered as f64 / (last_arrival - first_send).as_secs_f64();
    let accepted_rate = (events - knactor_run.failures) as f64 / knactor_run.elapsed.as_secs_f64();
    let reference_rate =
        (events - reference_run.failures) as f64 / reference_run.elapsed.as_secs_f64();
    let mut reference_ack = reference_run.ack.clone();
    let mut knactor_ack = knactor_run.ack.clone();

    let ref_p50 = percentile(&mut reference_ack, 0.50);
    let ref_p99 = percentile(&mut reference_ack, 0.99);
    let ack_p50 = percentile(&mut knactor_ack, 0.50);
    let ack_p99 = percentile(&mut knactor_ack, 0.99);
    let e2e_p50 = percentile(&mut end_to_end, 0.50);
    let e2e_p99 = percentile(&mut end_to_end, 0.99);

    println!("e2e load: {events} events, {concurrency} in flight, memory channel, one trigger");
    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "", "events/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<44} {:>12.0} {:>10.2} {:>10.2}",
        "reference: bare actix-web answering 202",
        reference_rate,
        ms(ref_p50),
        ms(ref_p99)
    );
    println!(
        "{:<44} {:>12.0} {:>10.2} {:>10.2}",
        "knactor ingress: accepted (202 = stored)",
        accepted_rate,
        ms(ack_p50),
        ms(ack_p99)
    );
    println!(
        "{:<44} {:>12.0} {:>10.2} {:>10.2}",
        "knactor end to end: delivered to subscriber",
        delivered_rate,
        ms(e2e_p50),
        ms(e2e_p99)
    );
    println!(
        "ratios to the reference: accepted {:.2}x, delivered {:.2}x; failures: reference {}, knactor {}; delivered {delivered}/{events}",
        accepted_rate / reference_rate,
        delivered_rate / reference_rate,
        reference_run.failures,
        knactor_run.failures
    );

    let results = serde_json::json!({
        "events": events,
        "concurrency": concurrency,
        "reference": {"events_per_s": reference_rate, "p50_ms": ms(ref_p50), "p99_ms": ms(ref_p99)},
        "accepted": {"events_per_s": accepted_rate, "p50_ms": ms(ack_p50), "p99_ms": ms(ack_p99)},
        "delivered": {"events_per_s": delivered_rate, "p50_ms": ms(e2e_p50), "p99_ms": ms(e2e_p99), "count": delivered},
        "ratio_accepted": accepted_rate / reference_rate,
        "ratio_delivered": delivered_rate / reference_rate,
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out = target.join("bench-results");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(
        out.join("e2e_load.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    );
    assert_eq!(
        delivered,
        events - knactor_run.failures,
        "every accepted event was delivered"
    );
}
