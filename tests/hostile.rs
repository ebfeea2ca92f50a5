//! A hostile world at the ingress and in the configuration directory (issue 11): slow bodies,
//! floods of idle connections, bodies held to fill memory, oversized attributes, malformed
//! requests by the hundred; FIFOs, binary garbage, symlink loops and YAML nested 100k deep among
//! the resource files. Each test measures what the node did (connections held, its RSS and open
//! files from /proc, probe latencies, refusal times) and prints it.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

// ---------------------------------------------------------------------------------------------
// Measuring the node and talking raw TCP.

/// The node's resident memory in MiB (VmRSS of /proc/<pid>/status).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

/// File descriptors the node holds open.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn address_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// A connection from a given loopback address (every 127.x.y.z is this machine), so that one
/// test can be many clients.
fn connect_from(source: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
    });
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source.into(), 0))?;
        socket.connect(target).await?.into_std()
    })?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Whether the node closed (or answered) this connection: reads what is there without waiting.
fn closed_by_the_node(stream: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).unwrap();
    closed || !seen.is_empty()
}

/// GET `url`, with how long the answer took (or the error).
fn timed_get(url: &str) -> (Result<u16, String>, Duration) {
    let started = Instant::now();
    let result = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(url)
        .send()
        .map(|response| response.status().as_u16())
        .map_err(|error| error.to_string());
    (result, started.elapsed())
}

/// A metric's value from the text of a /metrics page.
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

const EVENT_HEAD: &str = "POST /e2e/default HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\nce-type: t\r\ncontent-type: application/octet-stream\r\n";

// ---------------------------------------------------------------------------------------------
// Finding 1: slow bodies and idle connections.

#[test]
fn slow_bodies_and_slow_heads_are_closed_within_their_timeouts() {
    let node = NodeProcess::start(
        &broker_yaml("{}"),
        &["--request-timeout", "2s", "--header-timeout", "2s"],
    );
    let target = address_of(&node.url);
    // 60 clients send their headers, then one body byte every half second; 20 more send their
    // headers one byte at a time, 10 of them after a first request answered on the connection
    // (actix-http times the first head of a connection only).
    let mut bodies: Vec<TcpStream> = (0..60)
        .map(|_| {
            let mut stream = TcpStream::connect(target).unwrap();
            stream
                .write_all(format!("{EVENT_HEAD}content-length: 1000\r\n\r\n").as_bytes())
                .unwrap();
            stream
        })
        .collect();
    let mut heads: Vec<TcpStream> = (0..20)
        .map(|index| {
            let mut stream = TcpStream::connect(target).unwrap();
            if index % 2 == 1 {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut answer = [0u8; 256];
                let read = stream.read(&mut answer).unwrap();
                assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
            }
            stream
        })
        .collect();
    let started = Instant::now();
    let mut closed_body = vec![None; bodies.len()];
    let mut closed_head = vec![None; heads.len()];
    let mut answers = vec![Vec::new(); bodies.len()];
    let mut position = 0;
    while started.elapsed() < Duration::from_secs(12)
        && (closed_body.iter().any(Option::is_none) || closed_head.iter().any(Option::is_none))
    {
        for (index, stream) in bodies.iter_mut().enumerate() {
            if closed_body[index].is_none()
                && (stream.write_all(b"x").is_err()
                    || closed_by_the_node(stream, &mut answers[index]))
            {
                closed_body[index] = Some(started.elapsed());
            }
        }
        for (index, stream) in heads.iter_mut().enumerate() {
            if closed_head[index].is_none() {
                let byte = &EVENT_HEAD.as_bytes()[position % EVENT_HEAD.len()..][..1];
                if stream.write_all(byte).is_err() || closed_by_the_node(stream, &mut Vec::new()) {
                    closed_head[index] = Some(started.elapsed());
                }
            }
        }
        position += 1;
        thread::sleep(Duration::from_millis(500));
    }
    let slowest = |closed: &[Option<Duration>]| closed.iter().flatten().max().copied();
    let still_open_bodies = closed_body.iter().filter(|c| c.is_none()).count();
    let still_open_heads = closed_head.iter().filter(|c| c.is_none()).count();
    let answered_408 = answers
        .iter()
        .filter(|answer| answer.starts_with(b"HTTP/1.1 408"))
        .count();
    println!(
        "slow bodies: {} of {} closed, the last after {:?}, {answered_408} answered 408; \
         slow heads (half of them a connection's second): {} of {} closed, the last after {:?} (timeouts 2s)",
        bodies.len() - still_open_bodies,
        bodies.len(),
        slowest(&closed_body),
        heads.len() - still_open_heads,
        heads.len(),
        slowest(&closed_head),
    );
    assert_eq!(still_open_bodies, 0, "slow bodies still open after 12 s");
    assert_eq!(still_open_heads, 0, "slow heads still open after 12 s");
    assert!(answered_408 > 0, "a slow body is told 408");
    let first_answer = answers
        .iter()
        .find(|a| a.starts_with(b"HTTP/1.1 408"))
        .unwrap();
    assert!(String::from_utf8_lossy(first_answer).contains("did not arrive within 2s"));
    assert!(slowest(&closed_body).unwrap() < Duration::from_secs(2 + 6));
    assert!(slowest(&closed_head).unwrap() < Duration::from_secs(2 + 6));
    assert_eq!(send(&node.broker("e2e", "default"), "after", "t"), 202);
}

#[test]
fn a_flood_of_idle_connections_is_capped_and_the_probes_answer_at_once() {
    let (probes, admin) = (free_port(), free_port());
    let node = NodeProcess::start(
        &broker_yaml("{}"),
        &[
            "--max-connections",
            "300",
            "--max-connections-per-client",
            "100",
            "--header-timeout",
            "60s",
            "--probe-listen",
            &format!("127.0.0.1:{probes}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ],
    );
    let pid = node.pid();
    let target = address_of(&node.url);
    let (rss_before, files_before) = (rss_mib(pid), open_files(pid));

    // 1,000 connections that never send a byte, from 10 addresses.
    let started = Instant::now();
    let mut connections = Vec::new();
    let mut not_connected = 0;
    for index in 0..1000u32 {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (index % 10) as u8);
        match connect_from(source, target) {
            Ok(stream) => connections.push(stream),
            Err(_) => not_connected += 1,
        }
    }
    thread::sleep(Duration::from_secs(1));
    let mut held = 0;
    let mut refused_503 = 0;
    for stream in &mut connections {
        let mut answer = Vec::new();
        if closed_by_the_node(stream, &mut answer) {
            if answer.starts_with(b"HTTP/1.1 503") {
                refused_503 += 1;
            }
        } else {
            held += 1;
        }
    }
    let (rss_during, files_during) = (rss_mib(pid), open_files(pid));

    // The probes, while the ingress listener is full.
    let mut probe_times = Vec::new();
    for path in ["healthz", "readyz", "healthz", "readyz", "healthz"] {
        let (status, took) = timed_get(&format!("http://127.0.0.1:{probes}/{path}"));
        assert_eq!(status, Ok(200), "/{path} on --probe-listen");
        probe_times.push(took);
    }
    let mut main_listener = TcpStream::connect(target).unwrap();
    main_listener
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = main_listener.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = String::new();
    let _ = main_listener.read_to_string(&mut answer);
    let metrics = http()
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let open_on_node = metric(&metrics, "knactor_ingress_connections_open");
    let refused_on_node = metric(
        &metrics,
        "knactor_ingress_connections_refused_total{limit=\"max-connections\"}",
    );
    println!(
        "1000 idle connections from 10 addresses in {:?}: {held} held, {refused_503} answered 503, \
         {not_connected} not connected; the node counts {open_on_node} open and {refused_on_node} \
         refused; its open files {files_before} -> {files_during}, RSS {rss_before:.1} -> \
         {rss_during:.1} MiB; probes answered in {probe_times:?}; the ingress listener told a new \
         client: {:?}",
        started.elapsed(),
        answer.lines().next().unwrap_or("(nothing)")
    );
    assert!(
        held <= 300,
        "{held} connections held, over --max-connections 300"
    );
    assert!(open_on_node >= held as f64 && open_on_node <= 300.0);
    assert!(refused_on_node >= 600.0);
    assert!(
        files_during <= files_before + 300 + 20,
        "the node holds {files_during} files"
    );
    assert!(probe_times
        .iter()
        .all(|took| *took < Duration::from_secs(3)));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(25));

    drop(connections);
    wait_until(
        "the connections are given back",
        Duration::from_secs(10),
        || {
            let page = http()
                .get(format!("http://127.0.0.1:{admin}/metrics"))
                .send()
                .unwrap()
                .text()
                .unwrap();
            metric(&page, "knactor_ingress_connections_open") == 0.0
        },
    );
    assert_eq!(send(&node.broker("e2e", "default"), "after", "t"), 202);
}

#[test]
fn one_address_holds_at_most_its_share_of_connections() {
    let node = NodeProcess::start(&broker_yaml("{}"), &["--max-connections-per-client", "20"]);
    let target = address_of(&node.url);
    let mut mine: Vec<TcpStream> = (0..25)
        .map(|_| connect_from(Ipv4Addr::new(127, 0, 0, 9), target).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(500));
    let mut answers = Vec::new();
    let mut held = 0;
    for stream in &mut mine {
        let mut answer = Vec::new();
        if closed_by_the_node(stream, &mut answer) {
            answers.push(String::from_utf8_lossy(&answer).into_owned());
        } else {
            held += 1;
        }
    }
    // Another address is not affected.
    let other = send(&node.broker("e2e", "default"), "other", "t");
    println!(
        "25 connections from 127.0.0.9 with --max-connections-per-client 20: {held} held, {} refused \
         ({:?}); another address got {other}",
        answers.len(),
        answers.first().and_then(|a| a.lines().next())
    );
    assert_eq!(held, 20);
    assert_eq!(answers.len(), 5);
    assert!(answers
        .iter()
        .all(|answer| answer.starts_with("HTTP/1.1 429")
            && answer.contains("--max-connections-per-client")));
    assert_eq!(other, 202);
}

/// A client over its address's share is answered 429 *after* its request, when the request
/// comes soon after the connection (as any client's does, unless the client is busy): an answer
/// written before the request is one nobody asked for: hyper's client (reqwest's) fails the
/// request with no status at all ("received unexpected message from connection"), Go's takes it
/// for an unsolicited response and drops the connection. In `e2e_load`'s open loop, most of the
/// refusals at the per-client cap were lost so (5,366 of 5,741 in one round).
#[test]
fn a_client_over_its_share_is_answered_429_after_its_request() {
    const ATTEMPTS: usize = 20;
    let node = NodeProcess::start(&broker_yaml("{}"), &["--max-connections-per-client", "5"]);
    let target = address_of(&node.url);
    let client = Ipv4Addr::new(127, 0, 0, 11);
    let _held: Vec<TcpStream> = (0..5)
        .map(|_| connect_from(client, target).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(300));
    let request = "POST /e2e/default HTTP/1.1\r\nhost: knactor\r\nce-specversion: 1.0\r\n\
                   ce-id: over\r\nce-source: /hostile\r\nce-type: t\r\n\
                   content-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    let (mut before_the_request, mut answered_429, mut other) = (0, 0, Vec::new());
    for _ in 0..ATTEMPTS {
        let mut stream = connect_from(client, target).unwrap();
        // A client a little slow to write its request after connecting (a busy one).
        thread::sleep(Duration::from_millis(15));
        stream.set_nonblocking(true).unwrap();
        let mut peeked = [0u8; 16];
        if stream.peek(&mut peeked).is_ok() {
            before_the_request += 1;
        }
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        if answer.starts_with(b"HTTP/1.1 429") {
            answered_429 += 1;
        } else {
            other.push(String::from_utf8_lossy(&answer).into_owned());
        }
    }
    println!(
        "{ATTEMPTS} connections over the share of 5, each writing its request 15 ms after \
         connecting: {answered_429} answered 429, {before_the_request} of them before the \
         request came; other answers: {other:?}"
    );
    assert_eq!(answered_429, ATTEMPTS, "{other:?}");
    assert_eq!(before_the_request, 0, "the refusal waits for the request");
}

#[test]
fn bodies_held_open_cannot_take_more_memory_than_the_body_budget() {
    const BODY: usize = 4 * 1024 * 1024;
    const CLIENTS: usize = 100;
    let budget = 32 * 1024 * 1024;
    let node = NodeProcess::start(
        &broker_yaml("{}"),
        &[
            "--body-buffer-bytes",
            &budget.to_string(),
            "--request-timeout",
            "30s",
        ],
    );
    let pid = node.pid();
    let target = address_of(&node.url);
    let rss_before = rss_mib(pid);
    // Each client sends all of a 4 MiB body but its last byte, and holds it.
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let holding = Arc::new(std::sync::Barrier::new(CLIENTS + 1));
    let release = Arc::new(std::sync::Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (outcomes, holding, release) = (outcomes.clone(), holding.clone(), release.clone());
            thread::spawn(move || {
                let mut stream = TcpStream::connect(target).unwrap();
                stream
                    .set_write_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let head = format!("{EVENT_HEAD}content-length: {BODY}\r\n\r\n");
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = stream.write_all(head.as_bytes()).is_ok();
                let mut remaining = BODY - 1;
                while sent && remaining > 0 {
                    let size = remaining.min(chunk.len());
                    sent = stream.write_all(&chunk[..size]).is_ok();
                    remaining -= size;
                }
                holding.wait();
                release.wait();
                let mut answer = Vec::new();
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let _ = stream.read_to_end(&mut answer);
                let status = String::from_utf8_lossy(&answer)
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("closed")
                    .to_string();
                outcomes.lock().unwrap().push((sent, status));
            })
        })
        .collect();
    holding.wait();
    // The node reads what the kernel buffered for it meanwhile: its peak over two seconds.
    let mut rss_holding: f64 = 0.0;
    let mut buffered: f64 = 0.0;
    for _ in 0..20 {
        rss_holding = rss_holding.max(rss_mib(pid));
        let metrics = node.metrics_text();
        buffered = buffered.max(metric(&metrics, "knactor_ingress_body_buffer_bytes"));
        thread::sleep(Duration::from_millis(100));
    }
    let metrics = node.metrics_text();
    let refused_503 = metric(
        &metrics,
        "knactor_ingress_requests_refused_total{code=\"503\"}",
    );
    release.wait();
    for client in clients {
        client.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap();
    let written = outcomes.iter().filter(|(sent, _)| *sent).count();
    let told_503 = outcomes
        .iter()
        .filter(|(_, status)| status == "503")
        .count();
    println!(
        "{CLIENTS} clients each holding 4 MiB - 1 of a 4 MiB body, --body-buffer-bytes 32 MiB: \
         {written} wrote it all to their socket; the node refused {refused_503} with 503 ({told_503} \
         of them read the answer before the reset) and buffered at most {:.1} MiB; its RSS \
         {rss_before:.1} -> {rss_holding:.1} MiB at most (+{:.1})",
        buffered / 1048576.0,
        rss_holding - rss_before
    );
    assert!(buffered <= budget as f64);
    assert!(refused_503 > 0.0);

    // JSON counts as what it takes once parsed: 1 MiB of [1,1,...] is a tree of about 45 MB.
    let ones = format!("[{}1]", "1,".repeat(512 * 1024));
    let structured =
        format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{ones}}}"#);
    let refused = http()
        .post(node.broker("e2e", "default"))
        .header("content-type", "application/cloudevents+json")
        .body(structured)
        .send()
        .unwrap();
    let status = refused.status();
    let reason = refused.text().unwrap();
    println!("1 MiB of JSON numbers with a 32 MiB budget: {status} {reason:?}");
    assert_eq!(status, 413);
    assert!(reason.contains("more than this node holds for the requests it reads"));
    // Without the budget the node held every body: +400 MiB.
    assert!(
        rss_holding - rss_before < 150.0,
        "RSS grew by {:.1} MiB",
        rss_holding - rss_before
    );
    assert_eq!(send(&node.broker("e2e", "default"), "after", "t"), 202);
}

// ---------------------------------------------------------------------------------------------
// Attribute limits.

#[test]
fn attributes_over_the_limits_are_refused_with_a_400_naming_them() {
    let node = NodeProcess::start(&broker_yaml("{}"), &["--max-extensions", "3"]);
    let broker = node.broker("e2e", "default");
    // The defaults are generous: a 4,000-byte id and subject pass.
    let generous = "i".repeat(4000);
    let accepted = send_with(&broker, &generous, "t", &[("ce-subject", &generous)]);
    assert_eq!(accepted.status(), 202);

    let huge = "h".repeat(70_000);
    let structured =
        format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","region":"{huge}"}}"#);
    let refused = http()
        .post(&broker)
        .header("content-type", "application/cloudevents+json")
        .body(structured)
        .send()
        .unwrap();
    let status = refused.status();
    let reason = refused.text().unwrap();
    println!("a 70,000-byte extension: {status} {reason:?}");
    assert_eq!(status, 400);
    assert_eq!(
        reason,
        "invalid CloudEvent: attribute \"region\" is 70000 bytes, over this node's limit of 4096\n"
    );

    let batch = format!(
        r#"[{{"specversion":"1.0","id":"1","source":"/s","type":"t"}},{{"specversion":"1.0","id":"{huge}","source":"/s","type":"t"}}]"#
    );
    let refused = http()
        .post(&broker)
        .header("content-type", "application/cloudevents-batch+json")
        .body(batch)
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused
        .text()
        .unwrap()
        .contains("event 1 of the batch: attribute \"id\" is 70000 bytes"));

    let many = send_with(
        &broker,
        "x",
        "t",
        &[("ce-a", "1"), ("ce-b", "2"), ("ce-c", "3"), ("ce-d", "4")],
    );
    assert_eq!(many.status(), 400);
    assert!(many
        .text()
        .unwrap()
        .contains("the event has 4 extension attributes, over this node's limit of 3"));
}

// ---------------------------------------------------------------------------------------------
// Malformed requests and the log.

#[test]
fn malformed_requests_are_summed_up_in_the_log_not_logged_one_by_one() {
    let node = NodeProcess::start(&broker_yaml("{}"), &[]);
    let target = address_of(&node.url);
    let lines_before = node.log().lines().count();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(target).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
    }
    let client = http();
    for _ in 0..100 {
        let response = client
            .post(node.broker("e2e", "default"))
            .body("not an event")
            .send()
            .unwrap();
        assert_eq!(response.status(), 400);
    }
    let started = Instant::now();
    let summed = || {
        node.log()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once("the ingress refused ")?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum::<u64>()
    };
    wait_until(
        "the refusals are summed up",
        Duration::from_secs(25),
        || summed() >= 300,
    );
    let log = node.log();
    let new_lines: Vec<&str> = log.lines().skip(lines_before).collect();
    println!(
        "300 malformed requests: {} new log line(s) in {:?}, of which: {:?}",
        new_lines.len(),
        started.elapsed(),
        new_lines
            .iter()
            .filter(|line| line.contains("refused"))
            .collect::<Vec<_>>()
    );
    assert_eq!(summed(), 300);
    assert!(
        !new_lines.iter().any(|line| line.contains("ERROR")),
        "{new_lines:#?}"
    );
    assert!(new_lines.len() <= 3, "{new_lines:#?}");
    assert!(log.contains("200 of them not valid HTTP") || new_lines.len() > 1);
}

// ---------------------------------------------------------------------------------------------
// Finding 8: the configuration directory.

/// `knactor run` on a directory prepared beforehand, its stderr collected.
struct RawNode {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl RawNode {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--reload-interval",
                "100ms",
            ])
            .arg("--config")
            .arg(dir)
            .arg("--state-dir")
            .arg(dir.join(".state"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = std::io::BufReader::new(child.stderr.take().unwrap());
        thread::spawn(move || {
            for line in std::io::BufRead::lines(err).map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let url = loop {
            line.clear();
            if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
                let _ = child.wait();
                panic!("the node exited: {}", stderr.lock().unwrap());
            }
            if let Some(url) = line.trim().strip_prefix("knactor listening on ") {
                break url.to_string();
            }
        };
        thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Self { child, url, stderr }
    }
}

impl Drop for RawNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BROKER_A: &str =
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: a, namespace: e2e}\nspec: {}\n";

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn garbage_a_symlink_loop_and_a_fifo_refuse_only_themselves_and_nothing_panics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), BROKER_A).unwrap();
    std::fs::write(
        dir.path().join("garbage.yaml"),
        [0xde, 0xad, 0xbe, 0xef, 0x00, 0xff],
    )
    .unwrap();
    std::os::unix::fs::symlink("self.yaml", dir.path().join("self.yaml")).unwrap();
    mkfifo(&dir.path().join("pipe.yaml"));

    let validated = Command::new(BIN)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&validated.stdout);
    println!("knactor validate: {report}");
    assert!(report.contains("ok: ") && report.contains("Broker e2e/a"));
    assert!(report.contains("garbage.yaml: the file is not UTF-8 text"));
    assert!(report.contains("self.yaml: cannot read the file: Too many levels of symbolic links"));
    assert!(report.contains("pipe.yaml: skipped: it is a FIFO"));
    assert!(report.contains("1 loaded, 2 refused, 1 warning(s)"));

    let node = RawNode::start(dir.path());
    assert_eq!(send(&format!("{}/e2e/a", node.url), "1", "t"), 202);
    wait_until("the refusals are logged", Duration::from_secs(10), || {
        node.stderr.lock().unwrap().contains("node running")
    });
    let log = node.stderr.lock().unwrap().clone();
    println!("knactor run logged:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("garbage.yaml: the file is not UTF-8 text"));
    assert!(log.contains("pipe.yaml: skipped: it is a FIFO"));
}

#[test]
fn a_fifo_in_the_config_directory_blocks_neither_validate_nor_the_node() {
    let node = NodeProcess::start(&broker_yaml("{}"), &[]);
    mkfifo(&node.config_dir.path().join("pipe.yaml"));
    // Reloads keep working: a trigger added after the FIFO loads.
    std::fs::write(
        node.config_dir.path().join("trigger.yaml"),
        trigger_yaml("later", "filter: {}", "http://127.0.0.1:9/", None),
    )
    .unwrap();
    let started = Instant::now();
    wait_until(
        "the trigger added after the FIFO loads",
        Duration::from_secs(10),
        || {
            node.status()["brokers"][0]["triggers"]
                .as_array()
                .is_some_and(|triggers| !triggers.is_empty())
        },
    );
    let (status, took) = timed_get(&format!("{}/-/status", node.url));
    println!(
        "with a FIFO in the directory: the next trigger loaded after {:?}; /-/status answered {status:?} in {took:?}",
        started.elapsed()
    );
    assert_eq!(status, Ok(200));
    assert!(took < Duration::from_secs(3));
    assert!(node.log().contains("pipe.yaml: skipped: it is a FIFO"));

    let mut validate = Command::new(BIN)
        .arg("validate")
        .arg(node.config_dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let finished = loop {
        if let Some(status) = validate.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = validate.kill();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    println!(
        "knactor validate with a FIFO finished in {:?}",
        started.elapsed()
    );
    assert!(
        finished.is_some_and(|status| status.success()),
        "validate hung on the FIFO"
    );
}

#[test]
fn yaml_nested_100k_deep_is_refused_at_once_and_the_node_keeps_answering() {
    let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deep.yaml"), &deep).unwrap();
    let started = Instant::now();
    let validated = Command::new(BIN)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    let validate_took = started.elapsed();
    let report = String::from_utf8_lossy(&validated.stdout);
    assert!(
        report.contains("nested more than 64 levels deep at line 1 column 67"),
        "{report}"
    );

    let node = NodeProcess::start(&broker_yaml("{}"), &[]);
    std::fs::write(node.config_dir.path().join("deep.yaml"), &deep).unwrap();
    let started = Instant::now();
    let mut slowest_status = Duration::ZERO;
    while !node
        .log()
        .contains("deep.yaml: not valid YAML: nested more than 64 levels")
    {
        let (status, took) = timed_get(&format!("{}/-/status", node.url));
        assert_eq!(status, Ok(200));
        slowest_status = slowest_status.max(took);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not refused after 10 s"
        );
    }
    let node_took = started.elapsed();
    println!(
        "YAML nested 100,000 deep: validate refused it in {validate_took:?}; the node in \
         {node_took:?} (reload interval 100ms), its /-/status answering within {slowest_status:?} \
         meanwhile"
    );
    assert!(validate_took < Duration::from_secs(5));
    assert!(slowest_status < Duration::from_secs(3));
    assert_eq!(send(&node.broker("e2e", "default"), "after", "t"), 202);
}

#[test]
fn a_start_that_fails_after_the_actors_started_says_one_line_and_never_panics() {
    // Listing 20,000 files takes longer than the 1 ms allowed: the first read fails once the
    // node's actors exist, which used to print actix's "no reactor running" panics.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), BROKER_A).unwrap();
    for index in 0..20_000 {
        std::fs::write(dir.path().join(format!("f{index}.txt")), "").unwrap();
    }
    let started = Instant::now();
    let output = Command::new(BIN)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--config-read-timeout",
            "1ms",
        ])
        .arg("--config")
        .arg(dir.path())
        .arg("--state-dir")
        .arg(dir.path().join(".state"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "a failed start ({:?}, exit {:?}) printed:\n{stderr}",
        started.elapsed(),
        output.status.code()
    );
    assert!(!output.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: listing ") && last.contains("took longer than 1ms"),
        "{last}"
    );
}
