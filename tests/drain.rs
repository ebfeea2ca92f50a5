//! SIGTERM drains: a node under load on the memory channel stops taking events (readiness off,
//! then 503 with Retry-After), delivers everything it accepted, and exits; what it cannot finish
//! within --drain-timeout is counted in its log, never silently gone.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use knactor_testkit::{Load, Tally};
use support::*;

fn config(recorder: &Recorder) -> String {
    format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("sink", "filter: {}", &recorder.at("/sink"), None)
    )
}

#[test]
fn sigterm_under_load_delivers_every_accepted_event_before_exiting() {
    let recorder = Recorder::start();
    // A subscriber slower than the producers (about 400 events/s against 1,000): a backlog of
    // thousands builds up in the channel.
    recorder.on("/sink", |_, _| {
        Reply::accepted().after(Duration::from_millis(10))
    });
    let mut node = NodeProcess::start_on(
        &config(&recorder),
        &["--drain-timeout", "60s", "--trigger-concurrency", "4"],
        Channel::Memory,
    );
    let load = Load::start(&[node.broker("e2e", "default")], 1_000, 8, "drain", "t");
    std::thread::sleep(Duration::from_secs(3));
    let backlog = load.accepted().saturating_sub(recorder.count("/sink"));
    let stopping = Instant::now();
    node.terminate();
    let exited_in = stopping.elapsed();
    let sent = load.stop();
    let tally = Tally::of(&sent.accepted, &recorder.ids("/sink"));
    println!(
        "{}; a backlog of about {backlog} when SIGTERM came, exited in {exited_in:?}; refused while stopping: {:?}",
        tally.line("SIGTERM under load (memory channel)"),
        sent.refused
    );
    let log = node.log();
    assert!(
        log.contains("drained: every accepted event is final"),
        "{log}"
    );
    assert!(
        backlog > 500,
        "no backlog to drain ({backlog}): the test proved nothing"
    );
    assert!(tally.lost.is_empty(), "{}", tally.line("lost"));
    assert_eq!(
        sent.unavailable_without_retry_after, 0,
        "a 503 without Retry-After"
    );
}

#[test]
fn what_a_drain_cannot_finish_in_time_is_counted_in_the_log() {
    let recorder = Recorder::start();
    recorder.on("/sink", |_, _| {
        Reply::accepted().after(Duration::from_millis(200))
    });
    let mut node = NodeProcess::start_on(
        &config(&recorder),
        &["--drain-timeout", "1s", "--trigger-concurrency", "1"],
        Channel::Memory,
    );
    for n in 0..50 {
        assert_eq!(
            send(&node.broker("e2e", "default"), &format!("e{n}"), "t"),
            202
        );
    }
    node.terminate();
    let log = node.log();
    let line = log
        .lines()
        .find(|line| line.contains("are lost"))
        .unwrap_or_else(|| panic!("no count of what was lost:\n{log}"));
    println!("{line}");
    let received = recorder.count("/sink");
    assert!(
        received < 50,
        "everything was delivered: the drain proved nothing"
    );
    let lost: usize = line
        .split("lost=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lost=N in {line}"));
    // The subscriber may have received the one delivery still running when the node stopped
    // (the node never heard its answer): that one counts as lost too.
    assert!(
        lost == 50 - received || lost == 50 - received + 1,
        "{lost} counted lost, the subscriber received {received} of 50: {line}"
    );
}

#[test]
fn a_stopping_node_is_not_ready_and_refuses_new_events_with_retry_after() {
    let recorder = Recorder::start();
    recorder.on("/sink", |_, _| {
        Reply::accepted().after(Duration::from_secs(2))
    });
    let node = NodeProcess::start_on(
        &config(&recorder),
        &["--drain-timeout", "20s", "--drain-delay", "1s"],
        Channel::Memory,
    );
    assert_eq!(send(&node.broker("e2e", "default"), "held", "t"), 202);
    std::process::Command::new("kill")
        .args(["-TERM", &node.pid().to_string()])
        .status()
        .unwrap();
    wait_until("readiness goes off", Duration::from_secs(5), || {
        http()
            .get(format!("{}/readyz", node.url))
            .send()
            .is_ok_and(|r| r.status() == 503)
    });
    // During the delay events are still taken; after it they are refused, with Retry-After.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let response = send_with(&node.broker("e2e", "default"), "late", "t", &[]);
        if response.status() == 503 {
            break response;
        }
        assert!(Instant::now() < deadline, "new events were never refused");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.text().unwrap().contains("shutting down"));
    wait_until(
        "the held event is delivered",
        Duration::from_secs(20),
        || recorder.ids("/sink").contains(&"held".to_string()),
    );
}
