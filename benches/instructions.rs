//! Instructions per event, counted by callgrind: the cost of an event's way through the node in a
//! measure that repeats from run to run, beside the CPU time `e2e_load` reads from `/proc` (which
//! moves by ±15 % with what else the shared machine does).
//!
//! Each process below runs under `valgrind --tool=callgrind` and takes one request at a time from
//! the same generator (this process, not counted): warmed up past the journal's capacity (so
//! that a new trail reuses the oldest one's entry, as on a node that has run a while), one event
//! at a time as well (see [`settle`]), its counts
//! zeroed (`callgrind_control -z`), `--events` events sent, every one delivered, its counts dumped
//! (`callgrind_control -d`). Reported: instructions (callgrind's `Ir`) per event, and the ratio to
//! the reference's per request:
//!
//! - the reference: a bare actix-web server answering 202 (one worker), as in `e2e_load`;
//! - the node with one trigger to a sink, per delivered event; without its journal
//!   (`--trace-journal-events 0`); with spans exported at 1 % sampling; and the ingress alone (a
//!   broker with no trigger), per accepted event.
//!
//! Counted is what runs in user space, the node's code and its libraries': not the kernel's
//! half of the node's CPU (its syscalls, the loopback TCP stack, the wake-ups), which
//! `e2e_load`'s CPU time includes. A `rep stos` counts once per iteration, so a large `memset`
//! weighs more here than in time (actix-http clears a 3 KiB array of header indices for each
//! parse, the reference too). One request at a time: a closed loop with more in flight batches
//! differently from run to run, and the counts would move with it.
//!
//! Then the functions the default node spends the most instructions in, by self cost
//! (`callgrind_annotate`), per delivered event. The dumps stay under
//! `target/bench-results/instructions/` for `callgrind_annotate --inclusive=yes`.
//!
//! `cargo bench --bench instructions [-- --events N --warm-up W]` (defaults 3,000 and 12,000;
//! about 3 minutes). Needs valgrind (`scripts/install-tools.sh --only debs`). Results also go to
//! `target/bench-results/instructions.json`.
//!
//! The run of 2026-12-08 at 03:45 (the defaults: 3,000 events after 12,000, release build):
//!
//! ```text
//! reference (bare actix-web)        29,004   1.00x
//! knactor, one trigger (default)    83,031   2.86x   (issue 13's goal for CPU time: 2.0x)
//! knactor, no journal               80,140   2.76x   the journal: 3.5 % of the node's
//! knactor, tracing 1 % sampled      85,531   2.95x   +3.0 % (which events are sampled varies)
//! knactor, ingress alone            49,063   1.69x
//! ```
//!
//! Where they go (`callgrind_annotate --inclusive=yes`, per delivered event): actix-http's parse
//! of the incoming request 16,400 (its `memset` of header indices included), the ingress's
//! handler 15,800; the delivery's attempt 11,800 (binary-mode encoding 3,900, the pool's look-up
//! 300) and hyper's connection task 11,800; allocation 5,000 (jemalloc, about 60 allocations);
//! `memset` 9,300 and `memcpy` 4,300 in all.
//!
//! What this bench found and what went, run by run (each the defaults unless said):
//!
//! - 2026-12-07 (2,000 events after 3,000, twice each): the default node 108,747 and 110,563,
//!   then 104,089 and 102,569 (-5.8 %); the ingress alone 60,810 and 61,153, then 57,722 and
//!   57,734 (-5.3 %): an event's POST passes the GET routes over in one scope (it tried each
//!   probe, metrics and console route's pattern in turn: 3,100), a subscriber URL's URI and
//!   `Host` header are made once (hyper-util formatted the header for each request to a URL with
//!   a port: 1,100; the URI's parse 900), the memory channel looks its consumer group up without
//!   allocating its name, and the ingress table and the channel's topics hash with foldhash.
//!   With the defaults: the reference 28,990, the default node 102,194 (3.53x), the ingress alone
//!   56,579 (1.95x). The largest costs then: hyper-util's client 13,500 per attempt (its pool's
//!   checkout and return hashed their keys with SipHash, raced the checkout against a new
//!   connection and spawned a task to give the connection back: about 8,000), glibc's malloc and
//!   free 15,800.
//! - 2026-12-08: the default node 102,194 to 86,240 (-15.6 %), the ingress alone 56,579 to 51,369
//!   (-9.2 %), the reference unchanged (29,003): `http://` subscribers are reached over a pool of
//!   HTTP/1 connections of our own (`gateway/src/client/pool.rs`), the binary allocates with
//!   jemalloc (glibc's malloc family 15,800 per event, jemalloc's 8,400 counted with thread
//!   exits; mimalloc counted as much and kept 25 MiB more resident), and header names are made at
//!   compile time (`HeaderName::from_static` at run time: 650). Then each node here checks its
//!   configuration once a second instead of every 100 ms (its reader threads' starts and exits
//!   were about 2,000 per event; no event's cost): 84,107. With jemalloc in the reference too (a
//!   trial, not kept: the reference is actix-web as it comes) it counted 27,824: the allocator
//!   is the node's gain, not one any server would see as much of.
//! - 2026-12-08, 06:05: what an HTTP client of our own would buy, measured with a prototype (not
//!   merged: `http://` deliveries written as bytes straight to a pooled `TcpStream`, the answer's
//!   head read with `httparse`, still composed through a `HeaderMap`): the default node 82,545 to
//!   75,022 (-9.1 %), the attempt's send 16,100 where hyper's connection task and send were
//!   23,900; without the `HeaderMap` about 69,500 (2.40x) by estimate. `e2e_load`'s node CPU per
//!   delivered event 36.5 to 33.5 us (-8 %). Short of 2.0x, for an HTTP client of our own: not
//!   done.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use common::*;
use knactor_actors::journal;
use knactor_testkit::{Channel, Collector, NodeProcess};

/// Set in the environment of this bench's own binary started again as the reference server.
const REFERENCE_SERVER: &str = "KNACTOR_BENCH_REFERENCE_SERVER";

/// What each node's run is.
struct Configuration {
    label: &'static str,
    flags: Vec<String>,
    /// Whether its broker has the trigger to the sink (else: the ingress alone).
    delivers: bool,
}

/// One target's count.
struct Counted {
    label: &'static str,
    instructions_per_event: f64,
    dump: PathBuf,
}

fn main() {
    if std::env::var_os(REFERENCE_SERVER).is_some() {
        serve_reference();
    }
    let events = arg("--events", 3_000).max(1);
    let warm_up = arg("--warm-up", journal::DEFAULT_CAPACITY + 2_000);
    require_valgrind();
    let out = results_dir().join("instructions");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let start = Instant::now();

    let mut counted = vec![count_reference(&out, events, warm_up)];
    let collector = Collector::start();
    let configurations = [
        Configuration {
            label: "knactor, one trigger (default)",
            flags: vec![],
            delivers: true,
        },
        Configuration {
            label: "knactor, no journal",
            flags: vec!["--trace-journal-events".into(), "0".into()],
            delivers: true,
        },
        Configuration {
            label: "knactor, tracing 1 % sampled",
            flags: vec![
                "--otlp-endpoint".into(),
                collector.grpc.clone(),
                "--trace-sampler".into(),
                "parentbased_traceidratio".into(),
                "--trace-sampler-arg".into(),
                "0.01".into(),
            ],
            delivers: true,
        },
        Configuration {
            label: "knactor, ingress alone",
            flags: vec![],
            delivers: false,
        },
    ];
    for configuration in &configurations {
        counted.push(count_node(&out, configuration, events, warm_up, start));
    }

    let reference = counted[0].instructions_per_event;
    let default = counted[1].instructions_per_event;
    println!("\ninstructions per event (callgrind Ir, user space), {events} events one at a time after {warm_up} of warm-up:");
    for target in &counted {
        println!(
            "  {:<32} {:>9.0}   {:>5.2}x the reference   {:>5.2}x the default node",
            target.label,
            target.instructions_per_event,
            target.instructions_per_event / reference,
            target.instructions_per_event / default,
        );
    }
    let journal = default / counted[2].instructions_per_event - 1.0;
    let tracing = counted[3].instructions_per_event / default - 1.0;
    println!(
        "the journal: {:.1} % of the default node's instructions (issue 13's goal for its CPU: at most 5 %); tracing at 1 %: {:+.1} %",
        100.0 * journal / (1.0 + journal),
        100.0 * tracing,
    );
    let top = top_functions(&counted[1].dump, events, 15);
    println!(
        "\nwhere the default node's instructions go (self cost per delivered event, callgrind_annotate):"
    );
    for (per_event, function) in &top {
        println!("  {per_event:>7.0}  {function}");
    }
    write_results(
        "instructions",
        &serde_json::json!({
            "events": events,
            "warm_up": warm_up,
            "instructions_per_event": counted.iter().map(|target| (target.label, target.instructions_per_event)).collect::<std::collections::BTreeMap<_, _>>(),
            "node_over_reference": default / reference,
            "journal_share": journal / (1.0 + journal),
            "tracing_1_percent_over_default": tracing,
            "top_functions_per_event": top.iter().map(|(per_event, function)| serde_json::json!({"function": function, "instructions": per_event})).collect::<Vec<_>>(),
        }),
    );
}

/// The reference server in this process, then nothing else: serves until killed.
fn serve_reference() -> ! {
    let url = start_server(1, |_| HttpResponse::Accepted().finish());
    println!("reference listening on {url}");
    loop {
        std::thread::park();
    }
}

fn require_valgrind() {
    for tool in ["valgrind", "callgrind_control"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        assert!(
            found,
            "{tool} is not on PATH: this bench counts instructions with valgrind's callgrind (scripts/install-tools.sh --only debs installs it)"
        );
    }
}

/// `valgrind` with callgrind's options, its dumps named `<dir>/<name>.<pid>[.<part>]`.
fn callgrind_args(dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}/{name}.%p", dir.display()),
    ]
}

fn count_reference(out: &Path, events: usize, warm_up: usize) -> Counted {
    let mut server = Command::new("valgrind")
        .args(callgrind_args(out, "reference"))
        .arg(std::env::current_exe().unwrap())
        .env(REFERENCE_SERVER, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("valgrind starts");
    let url = listening_url(&mut server);
    let mut generator = Generator::connect(&url);
    generator.send("warm", warm_up);
    settle();
    let pid = server.id();
    control(pid, "-z");
    let refused = generator.send("run", events);
    assert_eq!(refused, 0, "the reference answered every request 202");
    let dump = dump(out, "reference", pid);
    let _ = server.kill();
    let _ = server.wait();
    counted("reference (bare actix-web)", &dump, events)
}

/// The URL the reference prints once it listens.
fn listening_url(server: &mut Child) -> String {
    let stdout = server.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("the reference prints where it listens")
            .unwrap();
        if let Some(url) = line.strip_prefix("reference listening on ") {
            return url.to_string();
        }
    }
}

fn count_node(
    out: &Path,
    configuration: &Configuration,
    events: usize,
    warm_up: usize,
    start: Instant,
) -> Counted {
    let arrivals = Arrivals::new(start, events);
    let sink = start_sink(arrivals.clone(), "run");
    let mut config = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: bench}\nspec: {}\n".to_string();
    if configuration.delivers {
        config.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: sink, namespace: bench}}\n\
             spec: {{broker: default, subscriber: {{uri: '{sink}/sink'}}}}\n"
        ));
    }
    // The node is started through a script that puts it under callgrind: the test kit's
    // process, readiness and configuration stay as every other bench has them.
    let name = format!("node-{}", counted_slug(configuration.label));
    let wrapper = out.join(format!("{name}.sh"));
    let knactor = env!("CARGO_BIN_EXE_knactor");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec valgrind {} {knactor} \"$@\"\n",
            callgrind_args(out, &name).join(" ")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The configuration checked once a second, as a node does by default (the test kit's 100 ms
    // is for tests that change it). When each check started two reader threads (before the
    // reader thread kept between checks), their starts and exits came to about 2,000
    // instructions per event here at 100 ms (jemalloc flushes a thread's cache when it exits).
    let mut extra: Vec<&str> = vec!["--reload-interval", "1s"];
    extra.extend(configuration.flags.iter().map(String::as_str));
    let mut node = NodeProcess::spawn_on(&wrapper, &config, &extra, Channel::Memory);
    let broker = node.broker("bench", "default");
    let mut generator = Generator::connect(&broker);
    let refused = generator.send("warm", warm_up);
    assert_eq!(refused, 0, "the node took every warm-up event");
    if configuration.delivers {
        arrivals.wait_for_seen(warm_up, Duration::from_secs(600));
        assert_eq!(
            arrivals.seen.load(std::sync::atomic::Ordering::Relaxed) as usize,
            warm_up,
            "every warm-up event was delivered"
        );
    }
    settle();
    control(node.pid(), "-z");
    let refused = generator.send("run", events);
    assert_eq!(refused, 0, "the node took every event");
    if configuration.delivers {
        arrivals.wait_for(events, Duration::from_secs(600));
        assert_eq!(arrivals.delivered(), events, "every event was delivered");
    }
    // What is left to count: the commit after the last delivery (the dispatcher commits every
    // second by default) or, for the ingress alone, the dispatcher reading the last records.
    std::thread::sleep(Duration::from_millis(1500));
    let dump = dump(out, &name, node.pid());
    node.kill();
    counted(configuration.label, &dump, events)
}

/// Lets a process finish what the warm-up left (the node's commit, the last trims) before its
/// counts are zeroed.
fn settle() {
    std::thread::sleep(Duration::from_secs(1));
}

/// The load generator: one connection, one request at a time, each request written in one
/// piece. Not `load`'s client: how a request arrives (in one read or two) and a second, idle
/// connection closed on a timer during the count (the server's keep-alive, the node's pool)
/// move the counts by a few percent; with this one they repeat to within a fraction of one.
struct Generator {
    stream: std::net::TcpStream,
    host: String,
    path: String,
    answer: Vec<u8>,
}

impl Generator {
    fn connect(url: &str) -> Self {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let stream = std::net::TcpStream::connect(host).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        Self {
            stream,
            host: host.to_string(),
            path: if path.is_empty() { "/" } else { path }.to_string(),
            answer: Vec::new(),
        }
    }

    /// Sends `events` events (ids `<prefix>-<i>`), each after the answer to the one before; how
    /// many were not answered 202.
    fn send(&mut self, prefix: &str, events: usize) -> usize {
        use std::io::{Read, Write};
        let mut refused = 0;
        for i in 0..events {
            let request = format!(
                "POST {} HTTP/1.1\r\nhost: {}\r\nce-specversion: 1.0\r\nce-id: {prefix}-{i}\r\n\
                 ce-source: /bench\r\nce-type: bench\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{PAYLOAD}",
                self.path,
                self.host,
                PAYLOAD.len()
            );
            self.stream.write_all(request.as_bytes()).unwrap();
            // The answer: its head, then as many bytes as its content-length says.
            self.answer.clear();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(end) = find(&self.answer, b"\r\n\r\n") {
                    break end + 4;
                }
                let read = self.stream.read(&mut chunk).unwrap();
                assert!(read > 0, "the server closed the connection");
                self.answer.extend_from_slice(&chunk[..read]);
            };
            let head = String::from_utf8_lossy(&self.answer[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            while self.answer.len() < head_end + length {
                let read = self.stream.read(&mut chunk).unwrap();
                assert!(read > 0, "the server closed the connection");
                self.answer.extend_from_slice(&chunk[..read]);
            }
            if !head.starts_with("http/1.1 202") {
                refused += 1;
            }
        }
        refused
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn counted_slug(label: &str) -> String {
    label
        .split(',')
        .nth(1)
        .unwrap_or(label)
        .trim()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// `callgrind_control <flag> <pid>`: `-z` zeroes the counts, `-d` dumps them.
fn control(pid: u32, flag: &str) {
    let output = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .output()
        .expect("callgrind_control runs");
    assert!(
        output.status.success(),
        "callgrind_control {flag} {pid}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Dumps `pid`'s counts and returns the dump's path (`<name>.<pid>.<part>`, the newest part).
fn dump(out: &Path, name: &str, pid: u32) -> PathBuf {
    control(pid, "-d");
    let prefix = format!("{name}.{pid}.");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let newest = std::fs::read_dir(out)
            .unwrap()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(&prefix))
            })
            .max_by_key(|path| {
                path.extension()
                    .and_then(|part| part.to_str())
                    .and_then(|part| part.parse::<u32>().ok())
            });
        if let Some(path) = newest.filter(|path| totals(path).is_some()) {
            return path;
        }
        assert!(Instant::now() < deadline, "no callgrind dump {prefix}*");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A dump's total instructions (its `totals:` line, once the dump is written whole).
fn totals(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .and_then(|value| value.trim().parse().ok())
}

fn counted(label: &'static str, dump: &Path, events: usize) -> Counted {
    let total = totals(dump).unwrap();
    let instructions_per_event = total as f64 / events as f64;
    println!("{label:<32} {instructions_per_event:>9.0} instructions per event");
    Counted {
        label,
        instructions_per_event,
        dump: dump.to_path_buf(),
    }
}

/// The `count` functions with the most self cost in a dump, per event, as `callgrind_annotate`
/// names them (source file and function; inlined code counts where it was inlined from).
fn top_functions(dump: &Path, events: usize, count: usize) -> Vec<(f64, String)> {
    let output = Command::new("callgrind_annotate")
        .arg("--threshold=100")
        .arg(dump)
        .output()
        .expect("callgrind_annotate runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let total = totals(dump).unwrap_or(u64::MAX);
    text.lines()
        .filter_map(|line| {
            let (cost, rest) = line.trim_start().split_once(' ')?;
            let cost: u64 = cost.replace(',', "").parse().ok()?;
            let (_, function) = rest.split_once(")  ")?;
            Some((cost, function.trim().to_string()))
        })
        // The threads' entry points and the runtimes' loops, which were running when the counts
        // were zeroed: `callgrind_annotate` charges them the calls under them as their own
        // (nothing of the node costs a quarter of it by itself).
        .filter(|(cost, function)| !is_frame_of_everything(function) && *cost < total / 4)
        .take(count)
        .map(|(cost, function)| (cost as f64 / events as f64, short_name(&function)))
        .collect()
}

/// Whether a function is one everything runs under (a thread's start, a runtime's loop).
fn is_frame_of_everything(function: &str) -> bool {
    [
        "PROGRAM TOTALS",
        ":clone ",
        "thread_start",
        "start_thread",
        "call_once{{vtable.shim}}",
        "__rust_begin_short_backtrace",
        "block_on",
        "enter_runtime",
    ]
    .iter()
    .any(|frame| function.contains(frame))
}

/// A function as `callgrind_annotate` names it, without its source directory and binary.
fn short_name(function: &str) -> String {
    let without_object = function
        .rsplit_once(" [")
        .map_or(function, |(name, _)| name);
    let (file, name) = without_object
        .split_once(':')
        .unwrap_or(("", without_object));
    let file = file.rsplit('/').next().unwrap_or(file);
    format!("{name} ({file})")
}
