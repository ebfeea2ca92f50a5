//! Supervision and isolation through the real binary: actors crashed under traffic come back and
//! nothing accepted is lost; a slow subscriber never delays the others.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn actors_crashed_under_traffic_are_restarted_and_every_accepted_event_arrives() {
    let recorder = Recorder::start();
    recorder.on("/sub", |_, _| {
        Reply::accepted().after(Duration::from_millis(5))
    });
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("t", "filter: {}", &recorder.at("/sub"), None)
    );
    let node = NodeProcess::start(&config, &[]);
    let broker = node.broker("e2e", "default");

    let accepted = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (accepted, done, broker) = (accepted.clone(), done.clone(), broker.clone());
        thread::spawn(move || {
            for i in 0..400 {
                let id = format!("ev-{i}");
                // A producer retries what was not accepted (503 while the broker restarts).
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    match send(&broker, &id, "t") {
                        202 => break,
                        503 | 404 if Instant::now() < deadline => {
                            thread::sleep(Duration::from_millis(20))
                        }
                        other => panic!("unexpected status {other} for {id}"),
                    }
                }
                accepted.lock().unwrap().push(id);
                thread::sleep(Duration::from_millis(2));
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let client = http();
    for fault in ["dispatcher", "trigger", "broker", "dispatcher"] {
        thread::sleep(Duration::from_millis(250));
        wait_until("the broker runs", Duration::from_secs(10), || {
            node.status()["brokers"][0]["running"] == true
        });
        let path = if fault == "trigger" {
            format!("{}/-/faults/trigger/e2e/default/t", node.url)
        } else {
            format!("{}/-/faults/{fault}/e2e/default", node.url)
        };
        let response = client.post(path).send().unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    }
    sender.join().unwrap();
    assert!(done.load(Ordering::SeqCst));

    let accepted: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    assert_eq!(accepted.len(), 400);
    wait_until(
        "every accepted event arrived",
        Duration::from_secs(20),
        || {
            let ids: HashSet<String> = recorder.ids("/sub").into_iter().collect();
            accepted.is_subset(&ids)
        },
    );
    let deliveries = recorder.count("/sub");
    println!(
        "400 events, {deliveries} deliveries ({} duplicates after 4 crashes)",
        deliveries - 400
    );
    let restarts = node.status()["brokers"][0]["restarts"].as_u64().unwrap();
    assert!(restarts >= 1, "the broker's actors were restarted");
    assert!(node.log().contains("restarting the broker's actors"));
}

#[test]
fn a_slow_subscriber_never_delays_the_other_triggers() {
    let (recorder, triggers) = slow_and_fast_triggers(Duration::from_millis(300));
    let config = format!("{}{triggers}", broker_yaml("{}"));
    let node = NodeProcess::start(
        &config,
        &["--trigger-queue", "10", "--trigger-concurrency", "2"],
    );
    let started = Instant::now();
    let client = http();
    let batch: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"specversion":"1.0","id":"{i}","source":"/s","type":"t"}}"#))
        .collect();
    let response = client
        .post(node.broker("e2e", "default"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(format!("[{}]", batch.join(",")))
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);

    wait_until(
        "the fast trigger got all 100",
        Duration::from_secs(10),
        || recorder.count("/fast") == 100,
    );
    let fast_took = started.elapsed();
    let slow_so_far = recorder.count("/slow");
    // The slow one needs 50 rounds of 300 ms (15 s). Had the fast one waited for it, it would
    // have finished together with it; it finished while the slow one was far from done.
    assert!(
        fast_took < Duration::from_secs(10),
        "the fast trigger took {fast_took:?}"
    );
    assert!(
        slow_so_far <= 60,
        "the slow trigger already had {slow_so_far} when the fast one had all 100 (after {fast_took:?})"
    );
    assert!(
        node.log().contains("falls behind"),
        "the slow trigger fell behind on its own"
    );

    wait_until(
        "the slow trigger caught up",
        Duration::from_secs(40),
        || recorder.count("/slow") >= 100,
    );
    let slow: HashSet<String> = recorder.ids("/slow").into_iter().collect();
    assert_eq!(slow.len(), 100, "the slow trigger got every event");
}

/// A dispatcher that dies while one trigger is far behind comes back with that trigger's place
/// from the committed position: the slow trigger goes on from where it was (nothing lost), and
/// the fast one is not given again what it already had (no redelivery storm).
#[test]
fn a_restarted_dispatcher_resumes_a_trigger_behind_from_its_place() {
    let (recorder, triggers) = slow_and_fast_triggers(Duration::from_millis(100));
    let config = format!("{}{triggers}", broker_yaml("{}"));
    let node = NodeProcess::start(
        &config,
        &["--trigger-queue", "20", "--trigger-concurrency", "4"],
    );
    let broker = node.broker("e2e", "default");
    let ids: Vec<String> = (0..600).map(|i| format!("behind-{i}")).collect();
    for id in &ids {
        assert_eq!(send(&broker, id, "t"), 202);
    }
    wait_until(
        "the fast trigger has everything",
        Duration::from_secs(30),
        || recorder.count("/fast") >= ids.len(),
    );
    let slow_before = recorder.count("/slow");
    assert!(
        slow_before < ids.len() / 2,
        "the slow trigger was not behind ({slow_before})\n{}",
        node.log()
    );
    // Let a commit carry the slow trigger's place, then crash the dispatcher.
    thread::sleep(Duration::from_millis(300));
    let response = http()
        .post(format!("{}/-/faults/dispatcher/e2e/default", node.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let slow =
        knactor_testkit::wait_for_delivery(&ids, || recorder.ids("/slow"), Duration::from_secs(60));
    let fast = knactor_testkit::Tally::of(&ids, &recorder.ids("/fast"));
    println!(
        "dispatcher crashed with the slow trigger at {slow_before} of {}:\n  {}\n  {}",
        ids.len(),
        slow.line("slow trigger"),
        fast.line("fast trigger")
    );
    assert!(slow.lost.is_empty(), "{}", slow.line("slow trigger"));
    assert!(fast.lost.is_empty(), "{}", fast.line("fast trigger"));
    assert!(
        fast.duplicates <= 20,
        "the fast trigger got {} events again",
        fast.duplicates
    );
}
