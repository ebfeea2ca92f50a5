//! Every filter dialect through the real binary: each trigger gets exactly the events it selects.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

#[test]
fn each_filter_dialect_selects_exactly_its_events() {
    let recorder = Recorder::start();
    let triggers: Vec<(&str, &str, &[&str])> = vec![
        (
            "legacy-exact",
            "filter: {attributes: {type: order.created}}",
            &["e1", "e4"],
        ),
        (
            "legacy-exists",
            "filter: {attributes: {type: order.created, subject: ''}}",
            &["e1"],
        ),
        (
            "legacy-extension",
            "filter: {attributes: {region: eu}}",
            &["e1", "e3"],
        ),
        (
            "exact",
            "filters: [{exact: {type: order.updated}}]",
            &["e2"],
        ),
        (
            "prefix",
            "filters: [{prefix: {source: /eu/}}]",
            &["e1", "e3"],
        ),
        ("suffix", "filters: [{suffix: {subject: .json}}]", &["e1"]),
        (
            "all",
            "filters: [{all: [{prefix: {type: order.}}, {exact: {region: us}}]}]",
            &["e2"],
        ),
        (
            "any",
            "filters: [{any: [{exact: {type: payment.done}}, {suffix: {subject: .xml}}]}]",
            &["e2", "e3"],
        ),
        ("not", "filters: [{not: {prefix: {type: order.}}}]", &["e3"]),
        (
            "cesql",
            "filters: [{cesql: \"type LIKE 'order.%' AND EXISTS subject AND priority > 3\"}]",
            &["e1"],
        ),
        (
            "list-is-and",
            "filters: [{prefix: {type: order.}}, {exact: {source: /us/shop}}]",
            &["e2", "e4"],
        ),
        ("everything", "filter: {}", &["e1", "e2", "e3", "e4"]),
    ];
    let mut config = broker_yaml("{}");
    for (name, filter, _) in &triggers {
        config.push_str(&trigger_yaml(
            name,
            filter,
            &recorder.at(&format!("/{name}")),
            None,
        ));
    }
    let node = NodeProcess::start(&config, &[]);
    let broker = node.broker("e2e", "default");

    type Sent<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let events: [Sent; 4] = [
        (
            "e1",
            "order.created",
            &[
                ("ce-source", "/eu/shop"),
                ("ce-subject", "a.json"),
                ("ce-region", "eu"),
                ("ce-priority", "5"),
            ],
        ),
        (
            "e2",
            "order.updated",
            &[
                ("ce-source", "/us/shop"),
                ("ce-subject", "b.xml"),
                ("ce-region", "us"),
            ],
        ),
        (
            "e3",
            "payment.done",
            &[("ce-source", "/eu/pay"), ("ce-region", "eu")],
        ),
        ("e4", "order.created", &[("ce-source", "/us/shop")]),
    ];
    let client = http();
    for (id, ty, headers) in events {
        let mut request = client
            .post(&broker)
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-type", ty);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        assert_eq!(request.send().unwrap().status(), 202);
    }

    let expected_total: usize = triggers.iter().map(|(_, _, ids)| ids.len()).sum();
    wait_until("every expected delivery", Duration::from_secs(10), || {
        triggers
            .iter()
            .map(|(name, _, _)| recorder.count(&format!("/{name}")))
            .sum::<usize>()
            >= expected_total
    });
    // Give a wrong extra delivery time to show up.
    std::thread::sleep(Duration::from_millis(300));
    for (name, _, expected) in &triggers {
        let got: BTreeSet<String> = recorder.ids(&format!("/{name}")).into_iter().collect();
        let want: BTreeSet<String> = expected.iter().map(ToString::to_string).collect();
        assert_eq!(got, want, "trigger {name}");
        assert_eq!(
            recorder.count(&format!("/{name}")),
            expected.len(),
            "trigger {name} got duplicates"
        );
    }
    let unmatched = node.metric(
        "knactor_broker_events_unmatched_total",
        "namespace=\"e2e\",broker=\"default\"",
    );
    assert_eq!(unmatched, 0.0);
}

#[test]
fn knactor_trace_says_why_each_trigger_did_not_take_an_event() {
    let config = format!(
        "{}{}{}{}",
        broker_yaml("{}"),
        trigger_yaml(
            "orders",
            "filter: {attributes: {type: order.created, region: eu}}",
            "http://127.0.0.1:9/",
            None
        ),
        trigger_yaml(
            "sql",
            "filters: [{cesql: \"type LIKE 'payment.%' AND amount > 10\"}]",
            "http://127.0.0.1:9/",
            None
        ),
        trigger_yaml(
            "any",
            "filters: [{any: [{prefix: {source: /eu/}}, {suffix: {subject: .json}}]}]",
            "http://127.0.0.1:9/",
            None
        ),
    );
    let node = NodeProcess::start(&config, &[]);
    let response = send_with(
        &node.broker("e2e", "default"),
        "nowhere",
        "order.created",
        &[("ce-region", "us")],
    );
    assert_eq!(response.status(), 202);
    let traced = || {
        let output = node.cli(&["trace", "nowhere", "-o", "json"]);
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default()
    };
    wait_until(
        "the trail has its verdicts",
        Duration::from_secs(10),
        || {
            traced()["triggers"]
                .as_array()
                .is_some_and(|v| v.len() == 3)
        },
    );
    let trail = traced();
    let why = |name: &str| {
        trail["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|verdict| verdict["name"] == name)
            .and_then(|verdict| verdict["why"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    assert_eq!(
        why("e2e/orders"),
        r#"exact region = "eu": the event's region is "us""#
    );
    let sql = why("e2e/sql");
    assert!(
        sql.starts_with(r#"cesql "type LIKE 'payment.%' AND amount > 10""#),
        "{sql}"
    );
    assert!(
        sql.contains(r#"type is "order.created""#) && sql.contains("amount is missing"),
        "{sql}"
    );
    let any = why("e2e/any");
    assert!(
        any.starts_with("none of the 2 alternatives matches"),
        "{any}"
    );
    assert!(
        any.contains(r#"the event's source is "/e2e""#) && any.contains("the event has no subject"),
        "{any}"
    );
    let text = String::from_utf8(node.cli(&["trace", "nowhere"]).stdout).unwrap();
    assert!(
        text.contains("e2e/orders: not matched: exact region"),
        "{text}"
    );
}
