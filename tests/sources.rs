//! PingSource end to end: ticks go through a broker to a trigger's subscriber, one per schedule
//! point, none lost across a SIGKILL (missed points are sent after the restart); a source whose
//! sink is a broker of its node publishes to it without the gateway.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudevents::AttributesReader as _;
use support::*;

#[test]
fn a_ping_source_ticks_through_a_broker_once_per_point_across_a_restart() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}---\n\
         apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: every-second, namespace: e2e}}\n\
         spec:\n  schedule: '* * * * * *'\n  contentType: application/json\n  data: '{{\"message\": \"tick\"}}'\n\
         \x20 ceOverrides: {{extensions: {{origin: cron}}}}\n\
         \x20 sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n",
        broker_yaml("{}"),
        trigger_yaml(
            "pings",
            "filter: {attributes: {type: dev.knative.sources.ping}}",
            &recorder.at("/ping"),
            None
        ),
    );
    // On Kafka, one node reads every partition: in a consumer group, the restarted node would
    // wait for its killed self to be evicted (the session timeout, 10 s), which is not what this
    // test is about.
    let mut node = NodeProcess::start(&config, &["--kafka-partition-assignment", "all"]);
    wait_until("three ticks", Duration::from_secs(30), || {
        recorder.count("/ping") >= 3
    });
    node.kill();
    std::thread::sleep(Duration::from_secs(3));
    node.restart();
    let restarted = Utc::now();
    wait_until("ticks after the restart", Duration::from_secs(30), || {
        recorder
            .received("/ping")
            .iter()
            .filter_map(|r| r.event.as_ref()?.time().copied())
            .any(|time| time > restarted + chrono::Duration::seconds(1))
    });
    node.kill();

    let received = recorder.received("/ping");
    let mut per_point: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for recorded in &received {
        let event = recorded.event.as_ref().unwrap();
        assert_eq!(event.ty(), "dev.knative.sources.ping");
        assert_eq!(
            event.source().to_string(),
            "/apis/v1/namespaces/e2e/pingsources/every-second"
        );
        assert_eq!(
            event
                .extension("origin")
                .map(ToString::to_string)
                .as_deref(),
            Some("cron")
        );
        assert_eq!(data_json(event)["message"], "tick");
        per_point
            .entry(*event.time().unwrap())
            .or_default()
            .push(event.id().to_string());
    }
    let points: Vec<DateTime<Utc>> = per_point.keys().copied().collect();
    for pair in points.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "no schedule point is skipped, even while the node was down: {points:?}"
        );
    }
    // A point is delivered again only if the node died between delivering it and saving that it
    // did (at most one); the repeat has the same id, so a consumer can tell.
    let repeated: Vec<_> = per_point.values().filter(|ids| ids.len() > 1).collect();
    assert!(repeated.len() <= 1, "{repeated:?}");
    for ids in per_point.values() {
        assert!(ids.iter().all(|id| id == &ids[0]));
    }
}

#[test]
fn a_source_reaches_its_nodes_broker_while_the_gateway_address_is_unreachable() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}---\n\
         apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: every-second, namespace: e2e}}\n\
         spec:\n  schedule: '* * * * * *'\n\
         \x20 sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n",
        broker_yaml("{}"),
        trigger_yaml("pings", "filter: {}", &recorder.at("/ping"), None),
    );
    // The Broker resolves to the advertised gateway address, which nothing answers here (a Service
    // without ready endpoints, say): the source still hands its events to the broker's actor.
    let node = NodeProcess::start(&config, &["--advertise", "http://127.0.0.1:9/"]);
    wait_until("ticks through the broker", Duration::from_secs(30), || {
        recorder.count("/ping") >= 2
    });
    let status = node.status();
    let source = &status["sources"][0];
    assert_eq!(source["retries"], 0, "{source}");
}
