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

mod common;

use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use common::*;
use knactor_testkit::{Channel, NodeProcess};

fn main() {
    let events = arg("--events", 20_000);
    let concurrency = arg("--concurrency", 32);
    let start = Instant::now();
    let arrivals = Arrivals::new(start, events);
    let sink = start_sink(arrivals.clone(), "run");
    let reference = start_server(1, |_| HttpResponse::Accepted().finish());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Reference: the same generator against a server that only answers.
    load(&runtime, &reference, "warm", 2_000, concurrency, start);
    let reference_run = load(&runtime, &reference, "ref", events, concurrency, start);

    let config = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default, namespace: bench}}\nspec: {{}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: sink, namespace: bench}}\n\
         spec: {{broker: default, subscriber: {{uri: '{sink}/sink'}}}}\n"
    );
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_knactor"));
    let mut node = NodeProcess::spawn_on(bin, &config, &[], Channel::Memory);
    let broker = node.broker("bench", "default");
    load(&runtime, &broker, "warm", 2_000, concurrency, start);
    let knactor_run = load(&runtime, &broker, "run", events, concurrency, start);
    arrivals.wait_for(events - knactor_run.failures, Duration::from_secs(120));
    node.kill();

    let delivered = arrivals.delivered();
    let (mut end_to_end, delivered_rate) = arrivals.end_to_end(&knactor_run);
    let accepted_rate = rate(&knactor_run, events);
    let reference_rate = rate(&reference_run, events);
    let (mut reference_ack, mut knactor_ack) = (reference_run.ack.clone(), knactor_run.ack.clone());
    let (ref_p50, ref_p99) = (
        percentile(&mut reference_ack, 0.50),
        percentile(&mut reference_ack, 0.99),
    );
    let (ack_p50, ack_p99) = (
        percentile(&mut knactor_ack, 0.50),
        percentile(&mut knactor_ack, 0.99),
    );
    let (e2e_p50, e2e_p99) = (
        percentile(&mut end_to_end, 0.50),
        percentile(&mut end_to_end, 0.99),
    );

    println!("e2e load: {events} events, {concurrency} in flight, memory channel, one trigger");
    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "", "events/s", "p50 ms", "p99 ms"
    );
    for (label, rate, p50, p99) in [
        (
            "reference: bare actix-web answering 202",
            reference_rate,
            ref_p50,
            ref_p99,
        ),
        (
            "knactor ingress: accepted (202 = stored)",
            accepted_rate,
            ack_p50,
            ack_p99,
        ),
        (
            "knactor end to end: delivered to subscriber",
            delivered_rate,
            e2e_p50,
            e2e_p99,
        ),
    ] {
        println!(
            "{label:<44} {rate:>12.0} {:>10.2} {:>10.2}",
            ms(p50),
            ms(p99)
        );
    }
    println!(
        "ratios to the reference: accepted {:.2}x, delivered {:.2}x; failures: reference {}, knactor {}; delivered {delivered}/{events}",
        accepted_rate / reference_rate,
        delivered_rate / reference_rate,
        reference_run.failures,
        knactor_run.failures
    );
    write_results(
        "e2e_load",
        &serde_json::json!({
            "events": events,
            "concurrency": concurrency,
            "reference": {"events_per_s": reference_rate, "p50_ms": ms(ref_p50), "p99_ms": ms(ref_p99)},
            "accepted": {"events_per_s": accepted_rate, "p50_ms": ms(ack_p50), "p99_ms": ms(ack_p99)},
            "delivered": {"events_per_s": delivered_rate, "p50_ms": ms(e2e_p50), "p99_ms": ms(e2e_p99), "count": delivered},
            "ratio_accepted": accepted_rate / reference_rate,
            "ratio_delivered": delivered_rate / reference_rate,
        }),
    );
    assert_eq!(
        delivered,
        events - knactor_run.failures,
        "every accepted event was delivered"
    );
}
