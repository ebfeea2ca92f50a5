//! Configuration reload under traffic: no restart, no accepted event lost, and a broken edit
//! keeps what was running.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use support::*;

#[test]
fn the_config_is_reloaded_under_traffic_without_losing_accepted_events() {
    let recorder = Recorder::start();
    let stable = trigger_yaml("stable", "filter: {}", &recorder.at("/stable"), None);
    let changing = |filter: &str| trigger_yaml("changing", filter, &recorder.at("/changing"), None);
    let first = format!(
        "{}{stable}{}",
        broker_yaml("{}"),
        changing("filter: {attributes: {type: none}}")
    );
    let node = NodeProcess::start(&first, &[]);
    let broker = node.broker("e2e", "default");

    let accepted = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let (accepted, broker) = (accepted.clone(), broker.clone());
        thread::spawn(move || {
            for i in 0..600 {
                let id = format!("r-{i}");
                assert_eq!(send(&broker, &id, "t"), 202, "{id}");
                accepted.lock().unwrap().push(id);
                thread::sleep(Duration::from_millis(3));
            }
        })
    };

    thread::sleep(Duration::from_millis(400));
    // Change a trigger's filter, add a trigger and a second broker.
    let second_broker = "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: second, namespace: e2e}\nspec: {}\n";
    let added = trigger_yaml("added", "filter: {}", &recorder.at("/added"), None);
    node.write_config(&format!(
        "{}{stable}{}{added}{second_broker}",
        broker_yaml("{}"),
        changing("filter: {}")
    ));
    thread::sleep(Duration::from_millis(400));
    // A broken edit: the changing trigger keeps its last good version, the rest still runs.
    node.write_config(&format!(
        "{}{stable}{}{added}{second_broker}",
        broker_yaml("{}"),
        changing("filter: {attributes: {Not-Valid: x}}")
    ));
    sender.join().unwrap();

    let accepted: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    wait_until(
        "the stable trigger has every accepted event",
        Duration::from_secs(20),
        || {
            let ids: HashSet<String> = recorder.ids("/stable").into_iter().collect();
            accepted.is_subset(&ids)
        },
    );
    assert_eq!(
        recorder.count("/stable"),
        600,
        "exactly once: reloads do not redeliver"
    );
    assert!(recorder.count("/changing") > 0, "the new filter applies");
    assert!(recorder.count("/added") > 0, "the added trigger receives");
    assert_eq!(
        send(&node.broker("e2e", "second"), "x", "t"),
        202,
        "the added broker runs"
    );

    let log = node.log();
    assert!(
        log.contains("refused:") && log.contains("spec.filter.attributes.Not-Valid"),
        "{log}"
    );
    assert!(log.contains("keeping its previous version"), "{log}");
    let before = recorder.count("/changing");
    assert_eq!(send(&broker, "after-bad-edit", "t"), 202);
    wait_until(
        "the kept trigger still delivers",
        Duration::from_secs(10),
        || recorder.count("/changing") > before,
    );
}

#[test]
fn a_removed_trigger_stops_receiving() {
    let recorder = Recorder::start();
    let keep = trigger_yaml("keep", "filter: {}", &recorder.at("/keep"), None);
    let drop = trigger_yaml("drop", "filter: {}", &recorder.at("/drop"), None);
    let node = NodeProcess::start(&format!("{}{keep}{drop}", broker_yaml("{}")), &[]);
    let broker = node.broker("e2e", "default");
    assert_eq!(send(&broker, "1", "t"), 202);
    wait_until("both got the first", Duration::from_secs(10), || {
        recorder.count("/drop") == 1 && recorder.count("/keep") == 1
    });
    node.write_config(&format!("{}{keep}", broker_yaml("{}")));
    wait_until("the trigger is gone", Duration::from_secs(10), || {
        node.status()["brokers"][0]["triggers"]
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    assert_eq!(send(&broker, "2", "t"), 202);
    wait_until("keep got the second", Duration::from_secs(10), || {
        recorder.count("/keep") == 2
    });
    thread::sleep(Duration::from_millis(200));
    assert_eq!(recorder.count("/drop"), 1);
    // Its series leave /metrics with it; the kept trigger's stay.
    let metrics = node.metrics_text();
    assert!(!metrics.contains("trigger=\"drop\""), "{metrics}");
    assert!(
        metrics.contains("knactor_trigger_events_delivered_total{namespace=\"e2e\",broker=\"default\",trigger=\"keep\"} 2"),
        "{metrics}"
    );
}

#[test]
fn a_trigger_added_with_an_earliest_start_gets_what_the_broker_already_holds() {
    let recorder = Recorder::start();
    // The first trigger holds its events (slow), so the broker still has them when b arrives.
    recorder.on("/a", |_, _| {
        Reply::accepted().after(Duration::from_millis(300))
    });
    let a = trigger_yaml("a", "filter: {}", &recorder.at("/a"), None);
    let node = NodeProcess::start(&format!("{}{a}", broker_yaml("{}")), &[]);
    let broker = node.broker("e2e", "default");
    for i in 0..5 {
        assert_eq!(send(&broker, &format!("old-{i}"), "t"), 202);
    }
    let b = "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: b\n  namespace: e2e\n  annotations: {knactor.dev/start-position: earliest}\nspec:\n  broker: default\n  subscriber: {uri: 'URL'}\n"
        .replace("URL", &recorder.at("/b"));
    let latest = trigger_yaml("c", "filter: {}", &recorder.at("/c"), None);
    node.write_config(&format!("{}{a}{b}{latest}", broker_yaml("{}")));
    wait_until("the triggers run", Duration::from_secs(10), || {
        node.status()["brokers"][0]["triggers"]
            .as_array()
            .unwrap()
            .len()
            == 3
    });
    assert_eq!(send(&broker, "new", "t"), 202);
    wait_until(
        "b got the old events and the new one",
        Duration::from_secs(20),
        || {
            let ids: HashSet<String> = recorder.ids("/b").into_iter().collect();
            ids.len() == 6 && ids.contains("old-0") && ids.contains("new")
        },
    );
    wait_until("c got the new one", Duration::from_secs(10), || {
        recorder.count("/c") >= 1
    });
    assert_eq!(
        recorder.ids("/c"),
        vec!["new"],
        "a trigger without a start position begins at the end; log:\n{}",
        node.log()
    );
}
