//! What the load benches share: a sink that records arrival times, a bare reference server, a
//! load generator with N requests in flight, percentiles, and where results are written.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures::StreamExt;

/// Arrival times at the sink, nanoseconds since the bench started (0 = not yet).
pub struct Arrivals {
    pub start: Instant,
    pub slots: Vec<AtomicU64>,
    pub count: AtomicU64,
    /// Every request the sink took, whatever its id (warm-up events too).
    pub seen: AtomicU64,
}

pub fn start_server(
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

pub struct Run {
    pub sent_at: Vec<Duration>,
    pub ack: Vec<Duration>,
    pub elapsed: Duration,
    pub failures: usize,
    /// The answers other than 202, by status (0: no answer).
    pub refused: std::collections::BTreeMap<u16, usize>,
}

impl Run {
    /// A run from its sends: (index, sent since the bench started, answered after, status).
    fn of(results: &[(usize, Duration, Duration, u16)], elapsed: Duration) -> Self {
        let mut sent_at = vec![Duration::ZERO; results.len()];
        let mut ack = Vec::with_capacity(results.len());
        let mut failures = 0;
        let mut refused = std::collections::BTreeMap::new();
        for &(i, sent, latency, status) in results {
            sent_at[i] = sent;
            ack.push(latency);
            if status != 202 {
                failures += 1;
                *refused.entry(status).or_default() += 1;
            }
        }
        Run {
            sent_at,
            ack,
            elapsed,
            failures,
            refused,
        }
    }
}

/// POSTs one of the generator's events (binary mode) with id `id`; the status (0: no answer).
pub async fn post_event(client: &reqwest::Client, url: &str, id: String) -> u16 {
    client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/bench")
        .header("ce-type", "bench")
        .header("content-type", "application/json")
        .body(PAYLOAD)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Sends `events` binary-mode events with `concurrency` requests in flight; ids are `<prefix>-<i>`.
pub fn load(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    prefix: &str,
    events: usize,
    concurrency: usize,
    start: Instant,
) -> Run {
    load_spread(
        runtime,
        &[url.to_string()],
        prefix,
        events,
        concurrency,
        start,
    )
}

/// Like [`load`], event `i` going to `urls[i % urls.len()]` (several nodes' ingresses), with
/// `concurrency` requests in flight in all.
pub fn load_spread(
    runtime: &tokio::runtime::Runtime,
    urls: &[String],
    prefix: &str,
    events: usize,
    concurrency: usize,
    start: Instant,
) -> Run {
    assert!(!urls.is_empty(), "a load needs somewhere to go");
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap();
        let began = Instant::now();
        let results: Vec<(usize, Duration, Duration, u16)> = futures::stream::iter(0..events)
            .map(|i| {
                let client = client.clone();
                let url = urls[i % urls.len()].clone();
                let id = format!("{prefix}-{i}");
                async move {
                    let sent = Instant::now();
                    let status = post_event(&client, &url, id).await;
                    (i, sent - start, sent.elapsed(), status)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        Run::of(&results, began.elapsed())
    })
}

/// Sends `events` binary-mode events open-loop at `per_second` events per second: event `i` is
/// due at `i / per_second` after the run starts and is sent then, whether or not earlier ones were
/// answered (at most `MAX_OPEN_IN_FLIGHT` at once: a stalled server cannot take every socket, and
/// the node takes that many connections from one address, `--max-connections-per-client`).
/// `sent_at` holds when each was due, not when the generator got to it, so that a server that
/// stalls the generator is charged for the wait (no coordinated omission). Ids are `<prefix>-<i>`.
pub fn load_open(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    prefix: &str,
    events: usize,
    per_second: f64,
    start: Instant,
) -> Run {
    // One connection each: with more than the node's default per-client cap, a stall of the
    // node made the generator open connections the node refused (429, or closed before an
    // answer), and the round counted refusals where it should count the wait.
    const MAX_OPEN_IN_FLIGHT: usize = 256;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(MAX_OPEN_IN_FLIGHT)
            .build()
            .unwrap();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_OPEN_IN_FLIGHT));
        let began = tokio::time::Instant::now();
        let mut sends = Vec::with_capacity(events);
        for i in 0..events {
            let due = began + Duration::from_secs_f64(i as f64 / per_second);
            tokio::time::sleep_until(due).await;
            let permit = in_flight.clone().acquire_owned().await.unwrap();
            let client = client.clone();
            let url = url.to_string();
            let id = format!("{prefix}-{i}");
            let due_since_start = due.into_std() - start;
            sends.push(tokio::spawn(async move {
                let status = post_event(&client, &url, id).await;
                drop(permit);
                (
                    i,
                    due_since_start,
                    start.elapsed() - due_since_start,
                    status,
                )
            }));
        }
        let mut results = Vec::with_capacity(events);
        for send in sends {
            results.push(send.await.unwrap());
        }
        Run::of(&results, began.elapsed())
    })
}

/// The data of every event the load generator sends (binary mode, `application/json`).
pub const PAYLOAD: &str = r#"{"payload":"0123456789abcdef0123456789abcdef"}"#;

pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort_unstable();
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Arrivals {
    pub fn new(start: Instant, events: usize) -> Arc<Self> {
        Arc::new(Self {
            start,
            slots: (0..events).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        })
    }

    /// Records the arrival of event `<prefix>-<index>`.
    pub fn record(&self, id: &str, prefix: &str) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        let index = id
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|i| i.parse::<usize>().ok());
        if let Some(slot) = index.and_then(|i| self.slots.get(i)) {
            let now = self.start.elapsed().as_nanos() as u64;
            if slot.swap(now, Ordering::Relaxed) == 0 {
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until `expected` events arrived (or the deadline passes).
    pub fn wait_for(&self, expected: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while (self.count.load(Ordering::Relaxed) as usize) < expected && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the sink took `expected` requests of any id (or the deadline passes): for a
    /// warm-up to be delivered before the measured run starts.
    pub fn wait_for_seen(&self, expected: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while (self.seen.load(Ordering::Relaxed) as usize) < expected && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn delivered(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    /// End-to-end latencies (send to arrival) and the delivered rate from first send to last
    /// arrival.
    pub fn end_to_end(&self, run: &Run) -> (Vec<Duration>, f64) {
        let latencies: Vec<Duration> = (0..self.slots.len())
            .filter_map(|i| {
                let arrived = self.slots[i].load(Ordering::Relaxed);
                (arrived > 0).then(|| Duration::from_nanos(arrived).saturating_sub(run.sent_at[i]))
            })
            .collect();
        let first_send = run.sent_at.iter().min().copied().unwrap_or_default();
        let last_arrival = self
            .slots
            .iter()
            .map(|slot| Duration::from_nanos(slot.load(Ordering::Relaxed)))
            .max()
            .unwrap_or_default();
        let rate = self.delivered() as f64 / (last_arrival - first_send).as_secs_f64();
        (latencies, rate)
    }
}

/// A sink answering 202 that records arrivals of `<prefix>-<n>` ids.
pub fn start_sink(arrivals: Arc<Arrivals>, prefix: &'static str) -> String {
    start_server(1, move |request: HttpRequest| {
        let id = request
            .headers()
            .get("ce-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        arrivals.record(id, prefix);
        HttpResponse::Accepted().finish()
    })
}

/// Events per second of a run, counting only successes.
pub fn rate(run: &Run, events: usize) -> f64 {
    (events - run.failures) as f64 / run.elapsed.as_secs_f64()
}

/// Writes a bench's results as JSON under target/bench-results/ (or `$KNACTOR_BENCH_RESULTS`: the
/// smoke run writes elsewhere, so that it never replaces the results of a full run).
pub fn write_results(name: &str, results: &serde_json::Value) {
    let out = results_dir();
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(results).unwrap(),
    );
}

/// Where the benches write what they measured: `$KNACTOR_BENCH_RESULTS`, else
/// `target/bench-results/` (under `$CARGO_TARGET_DIR` when it is set).
pub fn results_dir() -> PathBuf {
    std::env::var_os("KNACTOR_BENCH_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
                .join("bench-results")
        })
}

/// User + system CPU ticks a process used so far, all its threads (/proc/PID/stat, fields 14
/// and 15; Linux counts them in ticks of 10 ms, USER_HZ = 100).
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_cpu_ticks(&format!("/proc/{pid}/stat"))
}

/// [`cpu_ticks`] of this process.
pub fn own_cpu_ticks() -> u64 {
    stat_cpu_ticks("/proc/self/stat")
}

/// [`cpu_ticks`] of the thread calling it so far, and the path that reads them again later from
/// any thread (`/proc/<pid>/task/<tid>/stat`): the CPU of a server thread in this process.
pub fn this_thread_stat() -> String {
    let task = std::fs::read_link("/proc/thread-self").unwrap_or_default();
    format!("/proc/{}/stat", task.display())
}

/// User + system CPU ticks of what `stat` (a path from [`this_thread_stat`]) names.
pub fn stat_cpu_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// CPU microseconds per event from a number of ticks.
pub fn us_per_event(ticks: u64, events: usize) -> f64 {
    ticks as f64 * 10_000.0 / events.max(1) as f64
}

/// A process's resident memory in MiB (/proc/PID/status, VmRSS).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A URL on which nothing listens: connections to it are refused (a subscriber that is down).
pub fn refusing_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

/// The machine's load average over the last minute (/proc/loadavg): how busy the shared machine
/// was while a round ran.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The median of `values` (the lower middle one of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get((sorted.len().max(1) - 1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// The series of a metric of a node (`url`: its listener) whose labels start with `labels`: the
/// rest of their labels, and their values.
pub fn metric_series(url: &str, name: &str, labels: &str) -> Vec<(String, f64)> {
    let text = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{url}/metrics"))
        .send()
        .and_then(|response| response.text())
        .unwrap_or_default();
    let prefix = format!("{name}{{{labels}");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.rsplit_once(' '))
        .filter_map(|(rest, value)| Some((rest.to_string(), value.trim().parse::<f64>().ok()?)))
        .collect()
}

/// Records of a broker's topic that a node has not committed as final for every trigger, summed
/// over the partitions it reads: end offset (where the node has no end offset yet, the position it
/// read up to) - committed offset, with nothing committed yet counting from 0 (every topic of the
/// benches starts empty). `labels`: `namespace="..",broker="..",`. The node publishes these
/// gauges once a second: wait that long after what is to be counted.
pub fn not_final(url: &str, labels: &str) -> f64 {
    let series = |name: &str| metric_series(url, name, labels);
    let (ends, positions, committed) = (
        series("knactor_broker_partition_end_offset"),
        series("knactor_broker_partition_position"),
        series("knactor_broker_partition_committed_offset"),
    );
    let of = |list: &[(String, f64)], partition: &str| {
        list.iter()
            .find(|(p, _)| p == partition)
            .map(|(_, offset)| *offset)
    };
    let mut partitions: Vec<&String> = ends.iter().chain(&positions).map(|(p, _)| p).collect();
    partitions.sort();
    partitions.dedup();
    partitions
        .into_iter()
        .map(|partition| {
            let top = of(&ends, partition).or(of(&positions, partition));
            let committed = of(&committed, partition).unwrap_or(0.0);
            (top.unwrap_or(0.0) - committed).max(0.0)
        })
        .fold(0.0, |sum, records| sum + records)
}
