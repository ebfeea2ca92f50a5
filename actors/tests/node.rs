//! The actors together, on the memory channel with a fake transport: routing, retries, dead
//! letters, parking, replies, isolation of slow triggers, supervision.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cloudevents::AttributesReader;
use knactor_actors::actor::{
    FaultTarget, InjectFault, NodeOptions, ParkedList, ParkedOf, PublishError, RedriveOf,
};
use knactor_actors::envelope::{
    ERROR_CODE_EXTENSION, ERROR_DATA_EXTENSION, ERROR_DEST_EXTENSION, TTL_EXTENSION,
};
use knactor_actors::resources::ObjectKey;
use support::*;

const BROKER: &str = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: ns}\nspec: {}\n";

fn trigger(name: &str, filter: &str, subscriber: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  broker: default\n  {filter}\n  subscriber: {{uri: '{subscriber}'}}\n{extra}"
    )
}

fn key(text: &str) -> ObjectKey {
    text.parse().unwrap()
}

/// The broker's parking lot, once it holds `total` events.
async fn parked_when(node: &TestNode, total: u64) -> ParkedList {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let request = ParkedOf {
            broker: key("ns/default"),
            max: 10,
        };
        let parked = node.node.send(request).await.unwrap().unwrap();
        if parked.total == total {
            return parked;
        }
        assert!(
            Instant::now() < deadline,
            "parked {} events, waiting for {total}",
            parked.total
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn every_matching_trigger_gets_each_event_once_and_others_none() {
    let yaml = format!(
        "{BROKER}{}{}{}",
        trigger(
            "orders",
            "filter: {attributes: {type: order}}",
            "http://orders/",
            ""
        ),
        trigger("all", "filter: {}", "http://all/", ""),
        trigger(
            "payments",
            "filters: [{prefix: {type: pay}}]",
            "http://payments/",
            ""
        ),
    );
    let node = start(&yaml, fast_options()).await;
    let events: Vec<_> = (0..20).map(|i| event(&format!("o{i}"), "order")).collect();
    node.publish("ns/default", events).await.unwrap();
    node.publish("ns/default", vec![event("p1", "payment")])
        .await
        .unwrap();

    wait_until("deliveries", Duration::from_secs(5), || {
        node.transport.ids_at("http://all/").len() == 21
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let orders = node.transport.ids_at("http://orders/");
    assert_eq!(orders.len(), 20);
    assert_eq!(
        orders.iter().collect::<HashSet<_>>().len(),
        20,
        "no duplicates"
    );
    assert_eq!(node.transport.ids_at("http://payments/"), vec!["p1"]);
    assert_eq!(node.transport.ids_at("http://all/").len(), 21);
}

#[actix_rt::test]
async fn subscribers_never_see_the_ttl_but_do_see_the_arrival_time() {
    let node = start(
        &format!("{BROKER}{}", trigger("t", "filter: {}", "http://sub/", "")),
        fast_options(),
    )
    .await;
    node.publish("ns/default", vec![event("1", "x")])
        .await
        .unwrap();
    wait_until("delivery", Duration::from_secs(5), || {
        !node.transport.ids_at("http://sub/").is_empty()
    })
    .await;
    let received = &node.transport.received_at("http://sub/")[0].event;
    assert!(received.extension(TTL_EXTENSION).is_none());
    assert!(received.extension("knativearrivaltime").is_some());
}

#[actix_rt::test]
async fn retries_follow_the_linear_schedule_then_the_dead_letter_sink_gets_the_failure() {
    let delivery = "  delivery: {retry: 3, backoffPolicy: linear, backoffDelay: PT0.05S, deadLetterSink: {uri: 'http://dls/'}}\n";
    let node = start(
        &format!(
            "{BROKER}{}",
            trigger("t", "filter: {}", "http://sub/", delivery)
        ),
        fast_options(),
    )
    .await;
    node.transport.on("http://sub/", |_, _| status(503));
    node.publish("ns/default", vec![event("1", "x")])
        .await
        .unwrap();

    wait_until("dead letter", Duration::from_secs(5), || {
        !node.transport.ids_at("http://dls/").is_empty()
    })
    .await;
    let attempts = node.transport.received_at("http://sub/");
    assert_eq!(attempts.len(), 4, "one attempt and three retries");
    // Waits of 50, 100 and 150 ms (±20 % jitter).
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, expected_ms) in gaps.iter().zip([50u64, 100, 150]) {
        let expected = Duration::from_millis(expected_ms);
        assert!(
            *gap >= expected.mul_f64(0.8),
            "{gap:?} < 0.8 × {expected:?}"
        );
    }

    let dead = &node.transport.received_at("http://dls/")[0].event;
    assert_eq!(dead.id(), "1");
    assert_eq!(
        dead.extension(ERROR_DEST_EXTENSION).unwrap().to_string(),
        "http://sub/"
    );
    assert_eq!(
        dead.extension(ERROR_CODE_EXTENSION).unwrap().to_string(),
        "503"
    );
    let data = base64::engine::general_purpose::STANDARD
        .decode(dead.extension(ERROR_DATA_EXTENSION).unwrap().to_string())
        .unwrap();
    assert_eq!(data, b"status 503");
}

#[actix_rt::test]
async fn a_non_retryable_status_goes_straight_to_the_dead_letter_sink() {
    let delivery = "  delivery: {retry: 5, deadLetterSink: {uri: 'http://dls/'}}\n";
    let node = start(
        &format!(
            "{BROKER}{}",
            trigger("t", "filter: {}", "http://sub/", delivery)
        ),
        fast_options(),
    )
    .await;
    node.transport.on("http://sub/", |_, _| status(400));
    node.publish("ns/default", vec![event("1", "x")])
        .await
        .unwrap();
    wait_until("dead letter", Duration::from_secs(5), || {
        !node.transport.ids_at("http://dls/").is_empty()
    })
    .await;
    assert_eq!(node.transport.received_at("http://sub/").len(), 1);
}

#[actix_rt::test]
async fn without_a_working_dead_letter_sink_events_are_parked_and_can_be_redriven() {
    let delivery = "  delivery: {retry: 1, deadLetterSink: {uri: 'http://dls/'}}\n";
    let node = start(
        &format!(
            "{BROKER}{}",
            trigger("t", "filter: {}", "http://sub/", delivery)
        ),
        fast_options(),
    )
    .await;
    node.transport.on("http://sub/", |_, _| status(500));
    node.transport.on("http://dls/", |_, _| status(500));
    node.publish("ns/default", vec![event("a", "x"), event("b", "x")])
        .await
        .unwrap();

    let parked = parked_when(&node, 2).await;
    assert_eq!(parked.events[0].trigger, "ns/t");
    assert!(
        parked.events[0].reason.contains("dead-letter sink failed"),
        "{}",
        parked.events[0].reason
    );

    // The subscriber recovers; re-driving delivers to it, and only to the trigger that parked.
    node.transport.on("http://sub/", |_, _| accepted());
    let before = node.transport.ids_at("http://sub/").len();
    let report = node
        .node
        .send(RedriveOf {
            broker: key("ns/default"),
            trigger: None,
            only: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.redriven, 2);
    wait_until("re-delivery", Duration::from_secs(5), || {
        node.transport.ids_at("http://sub/").len() == before + 2
    })
    .await;
    let after = node
        .node
        .send(ParkedOf {
            broker: key("ns/default"),
            max: 10,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.total, 0);
    let redriven = node
        .transport
        .received_at("http://sub/")
        .last()
        .unwrap()
        .event
        .clone();
    assert!(
        redriven.extension("knactorredriveto").is_none(),
        "mesh extensions stay inside"
    );
    assert!(redriven.extension(ERROR_CODE_EXTENSION).is_none());
}

#[actix_rt::test]
async fn a_reply_reenters_the_broker_and_a_reply_loop_is_stopped_by_the_ttl() {
    let yaml = format!(
        "{BROKER}{}{}",
        trigger(
            "echo",
            "filter: {attributes: {type: ping}}",
            "http://echo/",
            ""
        ),
        trigger(
            "pongs",
            "filter: {attributes: {type: pong}}",
            "http://pongs/",
            ""
        ),
    );
    let node = start(
        &yaml,
        NodeOptions {
            max_ttl: 10,
            ..fast_options()
        },
    )
    .await;
    // Answers every ping with a ping: a loop only the TTL can stop.
    node.transport.on("http://echo/", |_, n| {
        reply(event(&format!("reply-{n}"), "ping"))
    });
    node.publish(
        "ns/default",
        vec![event("first", "ping"), event("other", "pong")],
    )
    .await
    .unwrap();

    let parked = parked_when(&node, 1).await;
    // TTL 10 on entry, one hop spent per reply: 10 deliveries, then the 10th reply is refused.
    assert_eq!(node.transport.received_at("http://echo/").len(), 10);
    assert!(
        parked.events[0]
            .event
            .extension(ERROR_CODE_EXTENSION)
            .unwrap()
            .to_string()
            == "400"
    );
    assert_eq!(node.transport.ids_at("http://pongs/"), vec!["other"]);
}

#[actix_rt::test]
async fn an_event_with_its_ttl_spent_is_refused() {
    let node = start(
        &format!("{BROKER}{}", trigger("t", "filter: {}", "http://sub/", "")),
        fast_options(),
    )
    .await;
    let mut spent = event("1", "x");
    spent.set_extension(TTL_EXTENSION, 1i64);
    assert!(matches!(
        node.publish("ns/default", vec![spent]).await,
        Err(PublishError::Admit(_))
    ));
}

#[actix_rt::test]
async fn a_slow_subscriber_never_delays_the_other_triggers() {
    let yaml = format!(
        "{BROKER}{}{}",
        trigger("slow", "filter: {}", "http://slow/", ""),
        trigger("fast", "filter: {}", "http://fast/", ""),
    );
    let options = NodeOptions {
        trigger_queue: 5,
        trigger_concurrency: 2,
        ..fast_options()
    };
    let node = start(&yaml, options).await;
    node.transport.on("http://slow/", |_, _| Answer {
        delay: Duration::from_millis(200),
        ..accepted()
    });

    let sent = Instant::now();
    let events: Vec<_> = (0..50).map(|i| event(&i.to_string(), "x")).collect();
    node.publish("ns/default", events).await.unwrap();
    wait_until(
        "the fast trigger has everything",
        Duration::from_secs(5),
        || node.transport.ids_at("http://fast/").len() == 50,
    )
    .await;
    let fast_done = sent.elapsed();
    // The slow one, 2 at a time at 200 ms each, needs about 5 s for 50 events.
    assert!(
        fast_done < Duration::from_secs(1),
        "fast trigger took {fast_done:?}"
    );
    assert!(node.transport.ids_at("http://slow/").len() < 20);

    // And the slow trigger still gets every event, catching up on its own.
    wait_until(
        "the slow trigger caught up",
        Duration::from_secs(15),
        || node.transport.ids_at("http://slow/").len() >= 50,
    )
    .await;
    let slow: HashSet<_> = node.transport.ids_at("http://slow/").into_iter().collect();
    assert_eq!(slow.len(), 50);
}

#[actix_rt::test]
async fn ordered_triggers_deliver_one_at_a_time_in_order() {
    let extra = "";
    let yaml = format!(
        "{BROKER}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: ordered\n  namespace: ns\n  annotations: {{kafka.eventing.knative.dev/delivery.order: ordered}}\nspec:\n  broker: default\n  subscriber: {{uri: 'http://ordered/'}}\n{extra}"
    );
    let node = start(&yaml, fast_options()).await;
    node.transport.on("http://ordered/", |_, n| Answer {
        delay: Duration::from_millis(if n % 2 == 0 { 1 } else { 15 }),
        ..accepted()
    });
    let events: Vec<_> = (0..10).map(|i| event(&i.to_string(), "x")).collect();
    node.publish("ns/default", events).await.unwrap();
    wait_until("deliveries", Duration::from_secs(5), || {
        node.transport.ids_at("http://ordered/").len() == 10
    })
    .await;
    let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(node.transport.ids_at("http://ordered/"), expected);
}

#[actix_rt::test]
async fn a_crashed_actor_is_restarted_and_nothing_accepted_is_lost() {
    let node = start(
        &format!("{BROKER}{}", trigger("t", "filter: {}", "http://sub/", "")),
        fast_options(),
    )
    .await;
    // Hold deliveries so that some are in flight when the crash happens.
    node.transport.on("http://sub/", |_, _| Answer {
        delay: Duration::from_millis(30),
        ..accepted()
    });
    let first: Vec<_> = (0..30).map(|i| event(&format!("a{i}"), "x")).collect();
    node.publish("ns/default", first).await.unwrap();

    for target in [
        FaultTarget::Dispatcher(key("ns/default")),
        FaultTarget::Trigger {
            broker: key("ns/default"),
            trigger: key("ns/t"),
        },
        FaultTarget::Broker(key("ns/default")),
    ] {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let restarts = |status: knactor_actors::actor::NodeStatus| status.brokers[0].restarts;
        let before = restarts(
            node.node
                .send(knactor_actors::actor::GetStatus)
                .await
                .unwrap(),
        );
        node.node.send(InjectFault(target)).await.unwrap().unwrap();
        // Restarted: the watchdog saw the dead actor and the cell runs again.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = node
                .node
                .send(knactor_actors::actor::GetStatus)
                .await
                .unwrap();
            if status.brokers[0].running && restarts(status) > before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the broker's cell was not restarted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let status = node
        .node
        .send(knactor_actors::actor::GetStatus)
        .await
        .unwrap();
    assert!(
        status.brokers[0].restarts >= 1,
        "the cell was restarted: {status:?}"
    );
    let second: Vec<_> = (0..30).map(|i| event(&format!("b{i}"), "x")).collect();
    node.publish("ns/default", second).await.unwrap();

    wait_until(
        "every event arrived at least once",
        Duration::from_secs(10),
        || {
            let ids: HashSet<String> = node.transport.ids_at("http://sub/").into_iter().collect();
            ids.len() == 60
        },
    )
    .await;
}

#[actix_rt::test]
async fn fault_injection_is_refused_unless_enabled() {
    let options = NodeOptions {
        fault_injection: false,
        ..fast_options()
    };
    let node = start(
        &format!("{BROKER}{}", trigger("t", "filter: {}", "http://sub/", "")),
        options,
    )
    .await;
    let result = node
        .node
        .send(InjectFault(FaultTarget::Dispatcher(key("ns/default"))))
        .await
        .unwrap();
    assert!(result.is_err());
}

#[actix_rt::test]
async fn a_trigger_added_while_running_gets_new_events_and_the_others_lose_nothing() {
    let first = format!("{BROKER}{}", trigger("a", "filter: {}", "http://a/", ""));
    let node = start(&first, fast_options()).await;
    node.publish(
        "ns/default",
        (0..10).map(|i| event(&format!("x{i}"), "t")).collect(),
    )
    .await
    .unwrap();
    let second = format!("{first}{}", trigger("b", "filter: {}", "http://b/", ""));
    node.node
        .send(knactor_actors::actor::ApplyRoutes(routes(&second)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    node.publish(
        "ns/default",
        (0..10).map(|i| event(&format!("y{i}"), "t")).collect(),
    )
    .await
    .unwrap();
    wait_until("a got all 20", Duration::from_secs(5), || {
        node.transport.ids_at("http://a/").len() == 20
    })
    .await;
    wait_until("b got the new 10", Duration::from_secs(5), || {
        node.transport.ids_at("http://b/").len() == 10
    })
    .await;
    assert!(node
        .transport
        .ids_at("http://b/")
        .iter()
        .all(|id| id.starts_with('y')));
}

#[actix_rt::test]
async fn each_trigger_counts_what_its_filter_refused_and_the_journal_keeps_every_hop() {
    let yaml = format!(
        "{BROKER}{}{}",
        trigger("a", "filter: {attributes: {type: a}}", "http://a/", ""),
        trigger("b", "filter: {attributes: {type: b}}", "http://b/", ""),
    );
    let node = start(&yaml, fast_options()).await;
    let mut events: Vec<_> = (0..3).map(|i| event(&format!("a{i}"), "a")).collect();
    events.extend((0..2).map(|i| event(&format!("b{i}"), "b")));
    events.push(event("c0", "c"));
    node.publish("ns/default", events).await.unwrap();

    let metrics = &node.shared.metrics;
    let broker = key("ns/default");
    let (a, b) = (
        metrics.trigger(&broker, &key("ns/a")),
        metrics.trigger(&broker, &key("ns/b")),
    );
    let count =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    wait_until("filtered counts settle", Duration::from_secs(5), || {
        count(&a.filtered) == 3 && count(&b.filtered) == 4
    })
    .await;
    assert_eq!((count(&a.matched), count(&b.matched)), (3, 2));
    assert_eq!(count(&metrics.broker(&broker).received), 6);
    assert_eq!(count(&metrics.broker(&broker).unmatched), 1);
    wait_until("delivered", Duration::from_secs(5), || {
        count(&a.delivered) == 3
    })
    .await;
    assert_eq!(a.responses.get(202), 3);

    let stages = |id: &str| -> Vec<&'static str> {
        metrics
            .journal
            .trails(id)
            .into_iter()
            .next()
            .map(|trail| trail.hops.iter().map(|hop| hop.stage.as_str()).collect())
            .unwrap_or_default()
    };
    assert_eq!(stages("a1"), ["stored", "dispatched", "delivered"]);
    assert_eq!(stages("c0"), ["stored", "unmatched"]);
    let trail = metrics.journal.trails("a1").remove(0);
    assert_eq!(trail.hops[2].trigger.as_deref(), Some("ns/a"));
    assert_eq!(trail.hops[2].status, Some(202));
    assert_eq!(trail.hops[1].partition, Some(0));
}

#[actix_rt::test]
async fn a_trigger_that_falls_behind_is_not_counted_twice_as_filtered() {
    let yaml = format!(
        "{BROKER}{}{}",
        trigger(
            "slow",
            "filter: {attributes: {type: a}}",
            "http://slow/",
            ""
        ),
        trigger("fast", "filter: {}", "http://fast/", ""),
    );
    let options = NodeOptions {
        trigger_queue: 2,
        trigger_concurrency: 1,
        ..fast_options()
    };
    let node = start(&yaml, options).await;
    node.transport.on("http://slow/", |_, _| Answer {
        delay: Duration::from_millis(30),
        ..accepted()
    });
    let events: Vec<_> = (0..30)
        .map(|i| event(&format!("e{i}"), if i % 3 == 0 { "b" } else { "a" }))
        .collect();
    node.publish("ns/default", events).await.unwrap();
    let metrics = &node.shared.metrics;
    let broker = key("ns/default");
    let (slow, fast) = (
        metrics.trigger(&broker, &key("ns/slow")),
        metrics.trigger(&broker, &key("ns/fast")),
    );
    let count =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    wait_until(
        "the slow trigger delivered all of its 20",
        Duration::from_secs(10),
        || count(&slow.delivered) == 20,
    )
    .await;
    // Settled at the next commit tick.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count(&slow.filtered), 10);
    assert_eq!(count(&fast.filtered), 0);
    assert_eq!(count(&fast.matched), 30);
}
