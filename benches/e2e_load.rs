//! End-to-end load through one node on the memory channel, next to a reference measured in the
//! same run by the same load generator: a bare actix-web server answering 202.
//!
//! ```text
//!   load generator ──POST──► knactor (ingress ─► broker ─► dispatcher ─► trigger) ──POST──► sink
//!   load generator ──POST──► reference (actix-web, answers 202)
//! ```
//!
//! Reported: accepted events/s and ack latency (what a producer sees), delivered events/s and
//! end-to-end latency (producer send to subscriber receipt), and the ratios to the reference; the
//! node's CPU per delivered event beside the reference's CPU per request (its one server thread,
//! from /proc/self/task/<tid>/stat).
//!
//! Then the cost of tracing, in the same run: the node again with spans exported over OTLP (gRPC,
//! to an otlp-embedded collector in this process) at 1 % and at 100 % sampling, and with no
//! journal, each as a ratio to the node with tracing off (the default). The configurations, and
//! the reference with them, take turns for `--rounds` rounds, each round starting one turn later,
//! and each counts with its median round (by delivered rate, the reference's by its rate; the CPU
//! per event is the median over the rounds too), so that neither a burst of other work on the
//! machine, a slot in the order, nor one lucky round favours one configuration. The tracing table
//! also gives each configuration's CPU as the median of its per-round ratios to the default's
//! (paired: the two ran in the same round), which the machine's drift over a run moves less. Beside the rates (which, on a 2-core
//! machine shared by the generator, the node and the sink, move by ±10 % from run to run) it reports
//! the node's own CPU time per event (user + system, from /proc), the steadier measure of cost.
//!
//! The ingress alone, in the same rounds: a node whose broker has no trigger (delivery paused:
//! every event is stored and read back by the dispatcher, none is delivered), its accepted rate as
//! a ratio to the reference (issue 13's goal: at least 0.8).
//!
//! Latency open loop, after the rounds: the generator sends at a fixed rate, half the delivered
//! rate the rounds measured, whatever the answers, and counts each event from when it was due (no
//! coordinated omission); beside it, the same generator POSTs straight to a fresh subscriber at the
//! same rate. Reported: the p50 and p99 knactor adds (issue 13's goals: at most 1 ms and 5 ms), the
//! node's CPU per event at that rate, and the events not accepted (whose latency is not counted).
//! The generator holds at most 256 requests in flight, one connection each: the node's default
//! `--max-connections-per-client`. (With 1,024 allowed, a stall of a few milliseconds made it
//! open connections past the cap, which the node refused: one round in three or four then lost
//! thousands of events to 429s and connections closed before an answer, at twice the node's CPU
//! per event, and counted the latency of the rest: the p50 of hundreds of milliseconds that
//! earlier runs blamed on the machine.)
//!
//! And isolation (issue 11), in the same rounds: the node with tracing off and a second trigger
//! on the broker whose subscriber refuses connections (no dead-letter sink, default retries), its
//! healthy trigger's delivered rate as a ratio to the node alone (goal: at least 0.9). The dead
//! trigger's backlog stays in the channel until it is parked (after Knative's default 10 retries,
//! minutes): the run must end before it fills `--memory-max-bytes` (256 MiB) or
//! `--memory-max-records` (100,000 per partition), after which the ingress answers 503; the bench
//! reports what the backlog held at the end (records not final, from the partition lag gauge, and
//! their bytes as the channel counts them, estimated from one event's footprint).
//!
//! `cargo bench --bench e2e_load [-- --events N --concurrency C --rounds R --open-rate E]` (the
//! open loop's rate in events/s, to compare builds at one rate; default half the delivered rate
//! the rounds measured); results also go to
//! `target/bench-results/e2e_load.json`.
//!
//! The node's profile (`perf record -F 999 -p <node>` over one round of 100,000 events, flat, share
//! of the node's samples), before and after issue 13's hot-path work:
//!
//! ```text
//! before (63 µs/event)                    after (49 µs/event)
//!  43 % knactor, 38 % kernel, 18 % libc    43 % knactor, 37 % kernel, 20 % libc
//!   7.0 finish_task_switch (wakeups)        6.3 memmove (buffers, futures moved into boxes)
//!   2.9 memmove                             4.3 finish_task_switch
//!   2.8 _int_malloc  2.5 malloc             4.0 _int_malloc  1.7 malloc
//!   2.5 _raw_spin_unlock_irqrestore         3.6 _raw_spin_unlock_irqrestore
//!   2.1 malloc_consolidate  1.2 cfree       2.1 _int_free  1.4 cfree  1.2 malloc_consolidate
//!   1.6 actix Map::poll  1.1 FutureWrap     0.6 actix Map::poll
//!   1.2 unlink_chunk  1.1 _int_free         1.1 unlink_chunk
//!   0.9 Journal::record                     0.9 Journal::record (and 0.6, 0.6: inlined copies)
//!   0.4 __inet_hash_connect, idna, url      (redirect policy's URL parse, retry clones: gone)
//! ```
//!
//! What moved it: publishing is a call on a `Broker` handle (no mailbox hop), an attempt takes an
//! `Endpoint` (a semaphore) instead of two trips through a `SubscriberActor`, one `TriggerContext`
//! per route instead of nine fields copied per delivery, no reqwest redirect or retry layer, and
//! the admin API's routes in one scope (actix-router's regexes, 1 %, gone). mimalloc took the
//! malloc family from 12 % to 7 % and the node to 40 µs per event, and is not used: it held more
//! memory than `tests/hostile.rs` allows.
//!
//! Then (the run of 2026-12-07, 7 rounds: 46.5 µs per event, the ingress alone 24.0 µs): histograms
//! count an observation with one atomic add instead of one per bucket, the journal hashes an id
//! once with foldhash instead of twice with SipHash, and the memory channel wakes its reader after
//! letting its lock go. The ingress alone's profile (a broker with no trigger) says where the rest
//! of an event's way in goes: 13 % `finish_task_switch` (context switches), 5 % the eventfd writes of
//! tokio's cross-thread wake-ups (each append wakes the dispatcher's thread), 6 % spin-unlocks in
//! the kernel's wake-up path, 5 % glibc malloc; knactor's own code is spread thin (the ingress
//! handler 1.6 %, decoding 0.8 %, the append 0.6 %).
//!
//! Then (later the same day, 7 rounds: 42.0 µs per event, 3.4x the reference's 12.5): the
//! profile (`perf record --call-graph dwarf`, inclusive shares of the node) showed the delivery
//! client at 45 % of the node: hyper's connection task 20 %, and in the attempt reqwest's request
//! path 18 % (its `execute_request` 6.8 % through a redirect layer and a retry layer even with
//! both turned off, its response future's own work, 2 % dropping what its layers kept), the copy
//! of each event for its subscriber 3 % (`for_subscriber`: every string and the extension map, to
//! remove the mesh's extensions), and binary mode's headers built as pairs of `String`s that
//! reqwest parsed again.
//! Now the client is hyper-util's pooled client with rustls, an attempt hands the stored event to
//! the writer, which leaves the mesh's extensions out, and the headers go straight into a
//! `HeaderMap` (the spec's own names static). The journal's cost is mostly its memory: in one run
//! a journal of 100 events cost 1.7 µs per event over none, one of 10,000 (the default) 4 µs: the
//! trail a new event reuses was last touched 10,000 events earlier and is cold. It now keeps its
//! trails in a ring per shard with a small index (no trail moved in or out of a hash table), a
//! broker's `Stored` hop is recorded as the append starts (no copy of each event's source and id
//! to outlive it), and hops hold interned labels instead of `Arc<str>` clones (an atomic add and
//! subtract per hop on counts every thread shared).
//!
//! Then (the afternoon's run, 7 rounds: 35.5 µs per event, the reference 9.5; ingress alone 22.0):
//! `perf record --call-graph dwarf` on the node put 3 % in hashing into an event's extension map
//! (the broker's and dispatcher's look-ups of `traceparent`, `partitionkey`, the re-drive target)
//! and 1.8 % in `Envelope::footprint` (walked at the append and again at the trim); an envelope now
//! works both out once, in one pass. A trail is one entry in its shard's ring (its key and first
//! three hops inside it) instead of four buffers at random, and a memory-channel commit frees what
//! it trims after letting the log's lock go. The journal then cost 7 to 8 % (paired 0.93).
//! A uprobe on glibc's `malloc` (`perf probe -x libc.so.6 malloc`, then `perf stat` and
//! `perf record --call-graph dwarf -c 23` on the node) counted 94 allocations per delivered event:
//! about 18 in binary-mode decoding (names and values copied twice), 5 in actix-http's parse of
//! the `ce-` header names, 11 in `Bytes::copy_from_slice` (header values), one per look-up of a
//! non-standard header by `&str`. Decoding now moves values into the event, headers are looked up
//! and written by static names: 77 allocations, 33.5 µs per event in two runs (3.53x). Trigger
//! keys, subscriber URLs and namespaces shared instead of copied per delivery: 70 allocations,
//! 34.0 µs in the next run (the machine's noise is wider than what 7 allocations cost).
//!
//! Then (this stop's last two runs, 7 rounds: 33.5 and 32.5 µs per event, 3.53x and 3.61x; ingress
//! alone 0.72x in both): a flat `perf record -a` over a round of 100,000 events put
//! `clear_page_erms` (the kernel zeroing fresh pages) at 1.1 % of the default node and nothing of
//! the node without a journal: the journal's ring filled during the measured events, which had
//! followed only 2,000 of warm-up. Each node is now warmed up past the journal's capacity, and the
//! journal costs 1 to 6 % (paired, ten runs, median 3 %) where it read 7 to 11 %. Its own
//! functions are 2.4 % of the node, mostly cache misses on what the other core wrote (`perf
//! annotate`: the shard index's hash-table group and the entry). The ingress alone's profile
//! (`--call-graph dwarf`) put 9.8 % of the node under the memory channel's `notify_waiters` (6.5 %
//! the eventfd write that wakes the dispatcher's runtime from an HTTP worker's thread) and 12 % in
//! `finish_task_switch`. A reader that yields once before it waits was tried and taken out: it
//! added an `epoll_wait` per batch (syscalls +10 %) for no change beyond the noise. The ingress
//! finds its broker by the path's text.
//!
//! Then (the evening's six runs, 7 rounds: 31.5 to 35.5 µs per event, 3.19x to 3.55x): a flat
//! profile (`perf record -F 1999` over a round of 100,000 events) put `memmove` at 4.3 % of the
//! node and `malloc_consolidate` at 1.2 %; with call graphs, the future each delivery spawns
//! (2,232 bytes: the rare paths, a retry's timer and second attempt, the reply, the dead-letter
//! attempt, in one state machine, past glibc's 1 KiB small-bin path) and the journal's queue of
//! entries (the oldest popped off and pushed back for each new event). The rare paths now go in a
//! box of their own when they happen (704 bytes), and the journal's shard is a ring whose entries
//! stay in place:
//!
//! ```text
//! before (13.6 % libc)                    after (11.9 % libc)
//!   4.3 memmove                             3.2 memmove (hyper-util's request moves, most)
//!   2.2 _int_malloc  0.9 malloc             2.2 _int_malloc  1.2 malloc
//!   1.2 malloc_consolidate                  0.8 malloc_consolidate
//!   0.8 hashbrown remove_entry (journal)    0.6 hashbrown remove_entry (journal)
//!   0.4 memmove in Shard::forget_oldest     (gone)
//! ```
//!
//! mimalloc (v2, which returns freed memory after 10 ms) was measured again: no gain beyond the
//! noise, and not used.
//!
//! Then (the next stop): `benches/instructions.rs` counts the same configurations' instructions
//! per event under callgrind, which repeat where this bench's CPU time moves by 15 %, and found
//! 5.8 % of the node's to remove (an event's POST trying every GET route's pattern, a subscriber
//! URL parsed and its `Host` header formatted per attempt, a consumer group's name allocated per
//! look-up); two runs of this bench on that code: 3.20x and 3.40x (32.0 and 34.0 µs per event),
//! the ingress alone 0.78x and 0.85x.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use chrono::Utc;
use common::*;
use knactor_actors::envelope::{Envelope, DEFAULT_MAX_TTL};
use knactor_actors::journal;
use knactor_gateway::binding::decode_message;
use knactor_testkit::{Channel, Collector, NodeProcess};

/// One node configuration: its flags, and the triggers on its broker.
struct Configuration {
    label: &'static str,
    flags: Vec<String>,
    triggers: Triggers,
}

/// The triggers on the bench's broker.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Triggers {
    /// One, to the sink.
    One,
    /// One to the sink and one whose subscriber refuses connections.
    DeadNeighbour,
    /// None: the ingress alone, nothing delivered (every event is stored and read, none matches).
    None,
}

impl Configuration {
    fn new(label: &'static str, flags: Vec<String>) -> Self {
        Self {
            label,
            flags,
            triggers: Triggers::One,
        }
    }

    /// What its rounds are ranked by: the delivered rate, or the accepted one when nothing is
    /// delivered.
    fn rate(&self, measure: &Measure) -> f64 {
        match self.triggers {
            Triggers::None => measure.accepted_rate,
            _ => measure.delivered_rate,
        }
    }
}

/// How the load generator sends.
#[derive(Clone, Copy)]
enum Pace {
    /// As fast as answered, with this many requests in flight.
    Closed { concurrency: usize },
    /// At a fixed rate, whatever the answers (latency without the queue a closed loop builds).
    Open { per_second: f64 },
}

/// One round of one node configuration.
/// One round of the reference server.
struct ReferenceRound {
    rate: f64,
    p50: Duration,
    p99: Duration,
    cpu_us_per_request: f64,
    failures: usize,
}

#[derive(Clone)]
struct Measure {
    accepted_rate: f64,
    delivered_rate: f64,
    ack_p50: Duration,
    ack_p99: Duration,
    e2e_p50: Duration,
    e2e_p99: Duration,
    /// The answers other than 202, by status (0: no answer).
    refused: std::collections::BTreeMap<u16, usize>,
    delivered: usize,
    /// The node's CPU time (user + system) per event of the measured run, in microseconds.
    cpu_us_per_event: f64,
    /// Records not final for every trigger at the end (the partition lag gauge).
    backlog_records: f64,
    /// The node's resident memory at the end, MiB.
    rss_mib: f64,
}

impl Measure {
    /// The events not accepted (answered other than 202, or not at all).
    fn failures(&self) -> usize {
        self.refused.values().sum()
    }
}

fn main() {
    let events = arg("--events", 20_000);
    let concurrency = arg("--concurrency", 32);
    let rounds = arg("--rounds", 3).max(1);
    let start = Instant::now();
    // One worker thread; it says where its CPU is counted on its first request.
    let reference_thread = Arc::new(std::sync::OnceLock::<String>::new());
    let reference = {
        let thread = reference_thread.clone();
        start_server(1, move |_| {
            thread.get_or_init(this_thread_stat);
            HttpResponse::Accepted().finish()
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Reference: the same generator against a server that only answers; measured in every
    // round, between the node's configurations, so that a ratio compares runs made on the
    // machine as it was at the time (its load moves over a run of minutes).
    load(&runtime, &reference, "warm", 2_000, concurrency, start);
    let reference_stat = reference_thread.get().cloned().unwrap_or_default();
    let measure_reference = || {
        let cpu_before = stat_cpu_ticks(&reference_stat);
        let run = load(&runtime, &reference, "ref", events, concurrency, start);
        let cpu = us_per_event(stat_cpu_ticks(&reference_stat) - cpu_before, events);
        let mut ack = run.ack.clone();
        ReferenceRound {
            rate: rate(&run, events),
            p50: percentile(&mut ack, 0.50),
            p99: percentile(&mut ack, 0.99),
            cpu_us_per_request: cpu,
            failures: run.failures,
        }
    };
    let mut reference_rounds: Vec<ReferenceRound> = Vec::new();

    let collector = Collector::start();
    let grpc = collector.grpc.clone();
    let configurations = [
        Configuration::new("tracing off (default)", vec![]),
        Configuration::new(
            "tracing on, 1 % sampled",
            otlp(
                &grpc,
                &[
                    "--trace-sampler",
                    "parentbased_traceidratio",
                    "--trace-sampler-arg",
                    "0.01",
                ],
            ),
        ),
        Configuration::new(
            "tracing on, 100 % sampled",
            otlp(&grpc, &["--trace-sampler", "parentbased_always_on"]),
        ),
        Configuration::new(
            "tracing off, no journal",
            vec!["--trace-journal-events".into(), "0".into()],
        ),
        Configuration {
            label: "tracing off, dead neighbour",
            flags: vec![],
            triggers: Triggers::DeadNeighbour,
        },
        Configuration {
            label: "ingress alone (no trigger)",
            flags: vec![],
            triggers: Triggers::None,
        },
    ];
    let mut rounds_of: Vec<Vec<Measure>> = vec![Vec::new(); configurations.len()];
    for round in 0..rounds {
        // Each round starts one configuration later, so that none always runs in the same slot;
        // the reference takes its turn among them.
        for turn in 0..=configurations.len() {
            let index = (round + turn) % (configurations.len() + 1);
            if index == configurations.len() {
                let measured = measure_reference();
                println!(
                    "round {}: {:<28} accepted {:>8.0}/s                     server CPU {:>5.1} µs/request",
                    round + 1,
                    "reference (bare actix-web)",
                    measured.rate,
                    measured.cpu_us_per_request
                );
                reference_rounds.push(measured);
                continue;
            }
            let configuration = &configurations[index];
            let label = configuration.label;
            let load = load_average();
            let measure = run_node(
                &runtime,
                events,
                Pace::Closed { concurrency },
                start,
                configuration,
            );
            println!(
                "round {}: {label:<28} accepted {:>8.0}/s delivered {:>8.0}/s  node CPU {:>5.1} µs/event  load {load:.1}",
                round + 1,
                measure.accepted_rate,
                measure.delivered_rate,
                measure.cpu_us_per_event
            );
            rounds_of[index].push(measure);
        }
    }
    // The reference's median round by rate, its CPU the median over the rounds.
    reference_rounds.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let reference_median = &reference_rounds[reference_rounds.len() / 2];
    let (reference_rate, ref_p50, ref_p99) = (
        reference_median.rate,
        reference_median.p50,
        reference_median.p99,
    );
    let reference_cpu = common::median(
        &reference_rounds
            .iter()
            .map(|r| r.cpu_us_per_request)
            .collect::<Vec<_>>(),
    );
    let reference_failures: usize = reference_rounds.iter().map(|r| r.failures).sum();
    let median: Vec<Measure> = configurations
        .iter()
        .zip(&rounds_of)
        .map(|(configuration, all)| median_round(configuration, all))
        .collect();
    let off = &median[0];
    let (ingress_index, ingress) = configurations
        .iter()
        .zip(&median)
        .enumerate()
        .find_map(|(i, (configuration, measure))| {
            (configuration.triggers == Triggers::None).then_some((i, measure))
        })
        .expect("an ingress-alone configuration");

    // Open loop at half the delivered ceiling just measured: the latency of the path itself,
    // against the same generator posting straight to a sink at the same rate.
    let open_rate = match arg("--open-rate", 0) {
        0 => off.delivered_rate * 0.5,
        fixed => fixed as f64,
    };
    let mut open_direct = Vec::new();
    let mut open_node = Vec::new();
    for round in 0..rounds {
        open_direct.push(direct_open(&runtime, events, open_rate, start));
        let measure = run_node(
            &runtime,
            events,
            Pace::Open {
                per_second: open_rate,
            },
            start,
            &configurations[0],
        );
        println!(
            "round {}: open loop at {open_rate:.0}/s: direct p50 {:.2} ms p99 {:.2} ms; knactor p50 {:.2} ms p99 {:.2} ms, node CPU {:.1} µs/event, not accepted {} {:?}",
            round + 1,
            ms(open_direct[round].0),
            ms(open_direct[round].1),
            ms(measure.e2e_p50),
            ms(measure.e2e_p99),
            measure.cpu_us_per_event,
            measure.failures(),
            measure.refused
        );
        open_node.push(measure);
    }
    let median_ms =
        |values: Vec<Duration>| common::median(&values.into_iter().map(ms).collect::<Vec<_>>());
    let direct_p50 = median_ms(open_direct.iter().map(|d| d.0).collect());
    let direct_p99 = median_ms(open_direct.iter().map(|d| d.1).collect());
    let open_p50 = median_ms(open_node.iter().map(|m| m.e2e_p50).collect());
    let open_p99 = median_ms(open_node.iter().map(|m| m.e2e_p99).collect());
    let open_cpu = common::median(
        &open_node
            .iter()
            .map(|m| m.cpu_us_per_event)
            .collect::<Vec<_>>(),
    );
    // The latencies are the accepted events': a round with refusals is told, not hidden.
    let open_not_accepted: usize = open_node.iter().map(|m| m.failures()).sum();

    println!(
        "\ne2e load: {events} events, {concurrency} in flight, memory channel, one trigger, median of {rounds} rounds"
    );
    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "", "events/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<44} {reference_rate:>12.0} {:>10.2} {:>10.2}",
        "reference: bare actix-web answering 202",
        ms(ref_p50),
        ms(ref_p99)
    );
    println!(
        "{:<44} {:>12.0} {:>10.2} {:>10.2}",
        "knactor ingress: accepted (202 = stored)",
        off.accepted_rate,
        ms(off.ack_p50),
        ms(off.ack_p99)
    );
    println!(
        "{:<44} {:>12.0} {:>10.2} {:>10.2}",
        "knactor end to end: delivered to subscriber",
        off.delivered_rate,
        ms(off.e2e_p50),
        ms(off.e2e_p99)
    );
    println!(
        "ratios to the reference: accepted {:.2}x, delivered {:.2}x; failures: reference {}, knactor {}; delivered {}/{events}",
        off.accepted_rate / reference_rate,
        off.delivered_rate / reference_rate,
        reference_failures,
        off.failures(),
        off.delivered
    );
    println!(
        "CPU: the reference's server thread {reference_cpu:.1} µs per request; the node {:.1} µs per delivered event ({:.2}x; two HTTP exchanges against one)",
        off.cpu_us_per_event,
        off.cpu_us_per_event / reference_cpu
    );
    println!(
        "ingress alone (no trigger): accepted {:.0}/s ({:.2}x the reference; goal >= 0.8x), p50 {:.2} ms, p99 {:.2} ms; node CPU {:.1} µs per event ({:.2}x the reference's per request)",
        ingress.accepted_rate,
        ingress.accepted_rate / reference_rate,
        ms(ingress.ack_p50),
        ms(ingress.ack_p99),
        ingress.cpu_us_per_event,
        ingress.cpu_us_per_event / reference_cpu
    );
    println!(
        "open loop at {open_rate:.0} events/s ({}), median of {rounds} rounds: sent to the sink directly p50 {direct_p50:.2} ms p99 {direct_p99:.2} ms; through knactor p50 {open_p50:.2} ms p99 {open_p99:.2} ms; added p50 {:.2} ms (goal <= 1), p99 {:.2} ms (goal <= 5); node CPU {open_cpu:.1} µs per event; not accepted {open_not_accepted} of {}",
        if arg("--open-rate", 0) == 0 {
            "half the delivered rate above"
        } else {
            "--open-rate"
        },
        open_p50 - direct_p50,
        open_p99 - direct_p99,
        events * rounds
    );
    println!("\ntracing cost, as ratios to tracing off in this run (1.00 = no cost); CPU paired: the median over the rounds of each round's ratio (the two ran minutes apart at most):");
    println!(
        "{:<30} {:>10} {:>10} {:>12} {:>12} {:>14} {:>11}",
        "", "accepted", "delivered", "e2e p50", "e2e p99", "CPU per event", "CPU paired"
    );
    let mut tracing_results = serde_json::Map::new();
    for ((configuration, measure), all) in configurations.iter().zip(&median).zip(&rounds_of) {
        if configuration.triggers != Triggers::One {
            continue;
        }
        let label = configuration.label;
        let accepted = measure.accepted_rate / off.accepted_rate;
        let delivered = measure.delivered_rate / off.delivered_rate;
        let p50 = ms(measure.e2e_p50) / ms(off.e2e_p50);
        let p99 = ms(measure.e2e_p99) / ms(off.e2e_p99);
        let cpu = measure.cpu_us_per_event / off.cpu_us_per_event;
        let paired = common::median(
            &all.iter()
                .zip(&rounds_of[0])
                .map(|(this, default)| this.cpu_us_per_event / default.cpu_us_per_event)
                .collect::<Vec<_>>(),
        );
        println!(
            "{label:<30} {accepted:>9.2}x {delivered:>9.2}x {p50:>11.2}x {p99:>11.2}x {cpu:>5.2}x ({:>4.1} µs) {paired:>10.2}x",
            measure.cpu_us_per_event
        );
        tracing_results.insert(
            label.to_string(),
            serde_json::json!({
                "accepted_events_per_s": measure.accepted_rate,
                "delivered_events_per_s": measure.delivered_rate,
                "e2e_p50_ms": ms(measure.e2e_p50),
                "e2e_p99_ms": ms(measure.e2e_p99),
                "ratio_accepted_to_off": accepted,
                "ratio_delivered_to_off": delivered,
                "node_cpu_us_per_event": measure.cpu_us_per_event,
                "ratio_cpu_to_off": cpu,
                "ratio_cpu_to_off_paired": paired,
            }),
        );
    }
    let (dead_index, dead) = configurations
        .iter()
        .zip(&median)
        .enumerate()
        .find_map(|(i, (configuration, measure))| {
            (configuration.triggers == Triggers::DeadNeighbour).then_some((i, measure))
        })
        .expect("a dead-neighbour configuration");
    let isolation = dead.delivered_rate / off.delivered_rate;
    let footprint = event_footprint(events);
    let backlog_records = common::median(
        &rounds_of[dead_index]
            .iter()
            .map(|m| m.backlog_records)
            .collect::<Vec<_>>(),
    );
    let backlog_mib = backlog_records * footprint as f64 / (1024.0 * 1024.0);
    println!(
        "\nisolation: the healthy trigger's delivered rate with a dead neighbour / alone: {isolation:.2}x (goal >= 0.9: {}); accepted {:.2}x; node CPU per event {:.2}x ({:.1} µs)",
        if isolation >= 0.9 { "met" } else { "MISSED" },
        dead.accepted_rate / off.accepted_rate,
        dead.cpu_us_per_event / off.cpu_us_per_event,
        dead.cpu_us_per_event,
    );
    println!(
        "the dead trigger's backlog at the end: {backlog_records:.0} records not final, about {backlog_mib:.1} MiB of the channel's 256 MiB ({footprint} bytes per event as the channel counts them); node RSS {:.0} MiB (alone: {:.0} MiB)",
        dead.rss_mib, off.rss_mib
    );
    write_results(
        "e2e_load",
        &serde_json::json!({
            "events": events,
            "concurrency": concurrency,
            "rounds": rounds,
            "reference": {"events_per_s": reference_rate, "p50_ms": ms(ref_p50), "p99_ms": ms(ref_p99), "cpu_us_per_request": reference_cpu},
            "node_cpu_over_reference_cpu": off.cpu_us_per_event / reference_cpu,
            "accepted": {"events_per_s": off.accepted_rate, "p50_ms": ms(off.ack_p50), "p99_ms": ms(off.ack_p99)},
            "delivered": {"events_per_s": off.delivered_rate, "p50_ms": ms(off.e2e_p50), "p99_ms": ms(off.e2e_p99), "count": off.delivered},
            "ratio_accepted": off.accepted_rate / reference_rate,
            "ratio_delivered": off.delivered_rate / reference_rate,
            "ingress_alone": {
                "events_per_s": ingress.accepted_rate,
                "ratio_to_reference": ingress.accepted_rate / reference_rate,
                "p50_ms": ms(ingress.ack_p50),
                "p99_ms": ms(ingress.ack_p99),
                "node_cpu_us_per_event": ingress.cpu_us_per_event,
                "rounds_accepted_events_per_s": rounds_of[ingress_index].iter().map(|m| m.accepted_rate).collect::<Vec<_>>(),
            },
            "open_loop": {
                "events_per_s": open_rate,
                "direct": {"p50_ms": direct_p50, "p99_ms": direct_p99},
                "knactor": {"p50_ms": open_p50, "p99_ms": open_p99, "node_cpu_us_per_event": open_cpu},
                "added_p50_ms": open_p50 - direct_p50,
                "added_p99_ms": open_p99 - direct_p99,
                "not_accepted": open_not_accepted,
            },
            "tracing": tracing_results,
            "isolation": {
                "ratio_delivered_dead_neighbour_to_alone": isolation,
                "ratio_accepted_dead_neighbour_to_alone": dead.accepted_rate / off.accepted_rate,
                "delivered_events_per_s": dead.delivered_rate,
                "accepted_events_per_s": dead.accepted_rate,
                "node_cpu_us_per_event": dead.cpu_us_per_event,
                "backlog_records": backlog_records,
                "backlog_bytes_estimated": backlog_records * footprint as f64,
                "footprint_bytes_per_event": footprint,
                "rss_mib": dead.rss_mib,
                "rss_mib_alone": off.rss_mib,
            },
        }),
    );
    for measure in &rounds_of[dead_index] {
        assert_eq!(
            measure.failures(), 0,
            "the dead neighbour's backlog filled the memory channel before the run ended: use fewer --events"
        );
    }
    for (configuration, measures) in configurations.iter().zip(&rounds_of) {
        if configuration.triggers == Triggers::None {
            continue;
        }
        for measure in measures {
            assert_eq!(
                measure.delivered,
                events - measure.failures(),
                "every accepted event was delivered"
            );
        }
    }
    for measure in &open_node {
        assert_eq!(
            measure.delivered,
            events - measure.failures(),
            "every accepted event was delivered (open loop)"
        );
    }
}

/// The generator's end-to-end latency (p50, p99) posting straight to a fresh sink at `per_second`.
fn direct_open(
    runtime: &tokio::runtime::Runtime,
    events: usize,
    per_second: f64,
    start: Instant,
) -> (Duration, Duration) {
    let arrivals = Arrivals::new(start, events);
    let sink = start_sink(arrivals.clone(), "open");
    let url = format!("{sink}/sink");
    load(runtime, &url, "warm", 2_000.min(events), 32, start);
    let run = load_open(runtime, &url, "open", events, per_second, start);
    arrivals.wait_for(events - run.failures, Duration::from_secs(60));
    let (mut latencies, _) = arrivals.end_to_end(&run);
    (
        percentile(&mut latencies, 0.50),
        percentile(&mut latencies, 0.99),
    )
}

/// The round with the median rate ([`Configuration::rate`]; the lower middle one of an even
/// count), with the median CPU per event over all the rounds.
fn median_round(configuration: &Configuration, rounds: &[Measure]) -> Measure {
    let mut by_rate: Vec<&Measure> = rounds.iter().collect();
    by_rate.sort_by(|a, b| configuration.rate(a).total_cmp(&configuration.rate(b)));
    let mut cpu: Vec<f64> = rounds.iter().map(|m| m.cpu_us_per_event).collect();
    cpu.sort_by(f64::total_cmp);
    let mut median = by_rate[(by_rate.len() - 1) / 2].clone();
    median.cpu_us_per_event = cpu[(cpu.len() - 1) / 2];
    median
}

fn otlp(endpoint: &str, sampler: &[&str]) -> Vec<String> {
    let mut args = vec!["--otlp-endpoint".to_string(), endpoint.to_string()];
    args.extend(sampler.iter().map(ToString::to_string));
    args
}

/// A fresh node of `configuration` and a fresh sink, warmed up, then `events` events at `pace`.
fn run_node(
    runtime: &tokio::runtime::Runtime,
    events: usize,
    pace: Pace,
    start: Instant,
    configuration: &Configuration,
) -> Measure {
    let arrivals: Arc<Arrivals> = Arrivals::new(start, events);
    let sink = start_sink(arrivals.clone(), "run");
    let mut config = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: bench}\nspec: {}\n".to_string();
    if configuration.triggers != Triggers::None {
        config.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: sink, namespace: bench}}\n\
             spec: {{broker: default, subscriber: {{uri: '{sink}/sink'}}}}\n"
        ));
    }
    if configuration.triggers == Triggers::DeadNeighbour {
        // Its subscriber refuses connections; no dead-letter sink; the default retries.
        config.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: dead, namespace: bench}}\n\
             spec: {{broker: default, subscriber: {{uri: '{}/dead'}}}}\n",
            refusing_url()
        ));
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_knactor"));
    let extra: Vec<&str> = configuration.flags.iter().map(String::as_str).collect();
    let mut node = NodeProcess::spawn_on(bin, &config, &extra, Channel::Memory);
    let broker = node.broker("bench", "default");
    let delivers = configuration.triggers != Triggers::None;
    // Enough to fill the journal (its default capacity), not only to open the connections: the
    // measured events then pay what they pay on a node that has run a while (a trail reuses the
    // oldest one's entry), not the ring's one-time growth and the first touch of its pages.
    let warm_up = (journal::DEFAULT_CAPACITY + 2_000).min(events);
    let warm = load(runtime, &broker, "warm", warm_up, 32, start);
    if delivers {
        arrivals.wait_for_seen(warm_up - warm.failures, Duration::from_secs(60));
    }
    let cpu_before = cpu_ticks(node.pid());
    let run = match pace {
        Pace::Closed { concurrency } => load(runtime, &broker, "run", events, concurrency, start),
        Pace::Open { per_second } => load_open(runtime, &broker, "run", events, per_second, start),
    };
    if delivers {
        arrivals.wait_for(events - run.failures, Duration::from_secs(120));
    } else {
        // What is left to count: the dispatcher reading the records it has not read yet.
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu = cpu_ticks(node.pid()) - cpu_before;
    let backlog_records = if configuration.triggers == Triggers::DeadNeighbour {
        // The gauges are published once a second.
        std::thread::sleep(Duration::from_millis(1200));
        not_final(&node.url, r#"namespace="bench",broker="default","#)
    } else {
        0.0
    };
    let rss_mib = rss_mib(node.pid());
    node.kill();

    let (mut end_to_end, delivered_rate) = if delivers {
        arrivals.end_to_end(&run)
    } else {
        (vec![Duration::ZERO], 0.0)
    };
    let mut ack = run.ack.clone();
    Measure {
        accepted_rate: rate(&run, events),
        delivered_rate,
        ack_p50: percentile(&mut ack, 0.50),
        ack_p99: percentile(&mut ack, 0.99),
        e2e_p50: percentile(&mut end_to_end, 0.50),
        e2e_p99: percentile(&mut end_to_end, 0.99),
        refused: run.refused.clone(),
        delivered: arrivals.delivered(),
        cpu_us_per_event: us_per_event(cpu, events),
        backlog_records,
        rss_mib,
    }
}

/// Bytes one of the generator's events takes in the memory channel ([`Envelope::footprint`]),
/// decoded and admitted as the ingress does (an id of the run's longest length).
fn event_footprint(events: usize) -> usize {
    let id = format!("run-{}", events.saturating_sub(1));
    let headers: [(&str, &[u8]); 5] = [
        ("ce-specversion", b"1.0"),
        ("ce-id", id.as_bytes()),
        ("ce-source", b"/bench"),
        ("ce-type", b"bench"),
        ("content-type", b"application/json"),
    ];
    let event = decode_message(&headers, PAYLOAD.as_bytes())
        .expect("the generator's event decodes")
        .remove(0);
    Envelope::admit(event, DEFAULT_MAX_TTL, Utc::now())
        .expect("the generator's event is admitted")
        .footprint()
}
