//! What every [`EventLog`] must do, written once and run against each implementation: the memory
//! channel in this crate's tests, Kafka (against a real broker) in `knactor-kafka`'s.
//!
//! Each scenario takes the log and a topic-name prefix of its own (a real broker is shared by many
//! tests), panics with what went wrong, and returns when the behaviour held.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cloudevents::{EventBuilder, EventBuilderV10};
use futures::StreamExt;

use super::{
    ChannelEvent, EventLog, Offset, Partition, Position, Record, StartAt, Subscription, TopicSpec,
};
use crate::envelope::{Envelope, DEFAULT_MAX_TTL, PARTITION_KEY_EXTENSION};

/// How long a scenario waits for something a real broker does asynchronously (group joins).
const PATIENCE: Duration = Duration::from_secs(60);

fn envelope(id: &str, key: Option<&str>) -> Envelope {
    let mut builder = EventBuilderV10::new()
        .id(id)
        .source("/conformance")
        .ty("conformance")
        .data("application/json", serde_json::json!({ "id": id }));
    if let Some(key) = key {
        builder = builder.extension(PARTITION_KEY_EXTENSION, key);
    }
    Envelope::admit(
        builder.build().expect("a valid event"),
        DEFAULT_MAX_TTL,
        Utc::now(),
    )
    .expect("a fresh event is admitted")
}

/// The event's data as JSON, whichever way the channel handed it back (bytes or parsed).
fn data_json(envelope: &Envelope) -> serde_json::Value {
    let data = envelope
        .event()
        .data()
        .cloned()
        .expect("the event has data");
    serde_json::Value::try_from(data).expect("JSON data")
}

fn ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.envelope.id().to_string())
        .collect()
}

/// Reads the subscription until `count` records arrived (after the assignment), or fails.
async fn read_records(
    subscription: &mut Subscription,
    count: usize,
) -> (Vec<(Partition, Option<Position>)>, Vec<Record>) {
    let mut assigned = Vec::new();
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while records.len() < count {
        let next = tokio::time::timeout_at(deadline, subscription.events.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out with {} of {count} records: {:?}",
                    records.len(),
                    ids(&records)
                )
            })
            .expect("the subscription does not end")
            .expect("no channel error");
        match next {
            ChannelEvent::Assigned(partitions) => assigned.extend(partitions),
            ChannelEvent::Revoking(release) => release.done(),
            ChannelEvent::Revoked(partitions) => assigned.retain(|(p, _)| !partitions.contains(p)),
            ChannelEvent::Records(batch) => records.extend(batch),
        }
    }
    (assigned, records)
}

/// Waits until the subscription reports its assignment.
async fn assignment(subscription: &mut Subscription) -> Vec<(Partition, Option<Position>)> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let next = tokio::time::timeout_at(deadline, subscription.events.next())
            .await
            .expect("an assignment in time")
            .expect("the subscription does not end")
            .expect("no channel error");
        if let ChannelEvent::Assigned(partitions) = next {
            return partitions;
        }
    }
}

/// Records come back in append order, with increasing offsets, to a group starting at earliest.
pub async fn appended_events_are_read_back_in_order(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}-order");
    log.ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("topic created");
    log.ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("ensure_topic is idempotent");
    let batch: Vec<Envelope> = (0..5).map(|i| envelope(&format!("e{i}"), None)).collect();
    log.append(&topic, batch).await.expect("append");
    let mut subscription = log
        .subscribe(&topic, &format!("{prefix}-g"), StartAt::Earliest)
        .expect("subscribe");
    let (_, records) = read_records(&mut subscription, 5).await;
    assert_eq!(ids(&records), vec!["e0", "e1", "e2", "e3", "e4"]);
    assert!(
        records.windows(2).all(|w| w[0].offset < w[1].offset),
        "offsets increase"
    );
    let first = &records[0].envelope;
    assert_eq!(
        first.ttl(),
        Some(DEFAULT_MAX_TTL),
        "the mesh's extensions survive the channel"
    );
    assert!(first.arrival_time().is_some());
    assert_eq!(
        data_json(first),
        serde_json::json!({ "id": "e0" }),
        "data survives"
    );
}

/// A group that comes back resumes at its committed offset.
pub async fn a_group_resumes_at_its_committed_offset(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}-resume");
    let group = format!("{prefix}-g");
    log.ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("topic created");
    log.append(
        &topic,
        (0..4).map(|i| envelope(&format!("r{i}"), None)).collect(),
    )
    .await
    .expect("append");
    {
        let mut subscription = log
            .subscribe(&topic, &group, StartAt::Earliest)
            .expect("subscribe");
        let (_, records) = read_records(&mut subscription, 4).await;
        // Done with the first two only.
        subscription
            .committer
            .commit(&[(records[0].partition, Position::at(records[2].offset))])
            .expect("commit");
        wait_for_commit(&log, &topic, &group, records[2].offset).await;
    }
    let mut again = log
        .subscribe(&topic, &group, StartAt::Earliest)
        .expect("subscribe again");
    let (_, records) = read_records(&mut again, 2).await;
    assert_eq!(ids(&records), vec!["r2", "r3"]);
}

/// A position with readers behind it is what the next member of the group is given, and the
/// records those readers still need stay readable.
pub async fn a_position_with_readers_behind_is_kept_for_the_next_member(
    log: Arc<dyn EventLog>,
    prefix: &str,
) {
    let topic = format!("{prefix}-behind");
    let group = format!("{prefix}-g");
    log.ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("topic created");
    log.append(
        &topic,
        (0..6).map(|i| envelope(&format!("b{i}"), None)).collect(),
    )
    .await
    .expect("append");
    let position = {
        let mut subscription = log
            .subscribe(&topic, &group, StartAt::Earliest)
            .expect("subscribe");
        let (_, records) = read_records(&mut subscription, 6).await;
        let position = Position {
            offset: records[5].offset,
            behind: BTreeMap::from([
                ("ns/slow".to_string(), records[1].offset),
                ("ns/slower".to_string(), records[0].offset + 1),
            ]),
        };
        subscription
            .committer
            .commit_and_wait(&[(records[0].partition, position.clone())])
            .expect("commit");
        wait_for_commit(&log, &topic, &group, position.offset).await;
        position
    };
    let mut again = log
        .subscribe(&topic, &group, StartAt::Earliest)
        .expect("subscribe again");
    let assigned = assignment(&mut again).await;
    assert_eq!(
        assigned,
        vec![(0, Some(position.clone()))],
        "the position as committed"
    );
    let (_, records) = read_records(&mut again, 1).await;
    assert_eq!(
        ids(&records),
        vec!["b5"],
        "the shared read starts at the offset"
    );
    let read = log
        .read(&topic, 0, position.floor(), 10)
        .await
        .expect("read behind");
    assert_eq!(
        ids(&read.records).first().map(String::as_str),
        Some("b1"),
        "what the readers behind need is still there"
    );
}

async fn wait_for_commit(log: &Arc<dyn EventLog>, topic: &str, group: &str, offset: Offset) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let offsets = log.offsets(topic, group).await.expect("offsets");
        if offsets.iter().any(|p| p.committed == Some(offset)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "commit of {offset} not visible: {offsets:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new group starting at latest sees only what is appended after it joined.
pub async fn a_new_group_at_latest_sees_only_new_events(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}-latest");
    log.ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("topic created");
    log.append(&topic, vec![envelope("old", None)])
        .await
        .expect("append");
    let mut subscription = log
        .subscribe(&topic, &format!("{prefix}-g"), StartAt::Latest)
        .expect("subscribe");
    assignment(&mut subscription).await;
    // The reset to the end happens when the member first fetches; give it that time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    log.append(&topic, vec![envelope("new", None)])
        .await
        .expect("append");
    let (_, records) = read_records(&mut subscription, 1).await;
    assert_eq!(ids(&records), vec!["new"]);
}

/// Any retained offset can be read without a group, and watermarks and commits are reported.
pub async fn reads_offsets_and_commits_work_without_a_group(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}-read");
    let group = format!("{prefix}-bookkeeping");
    log.ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("topic created");
    log.append(
        &topic,
        (0..6).map(|i| envelope(&format!("x{i}"), None)).collect(),
    )
    .await
    .expect("append");
    let offsets = log.offsets(&topic, &group).await.expect("offsets");
    assert_eq!(offsets.len(), 1);
    let low = offsets[0].low;
    assert_eq!(offsets[0].high - low, 6, "{offsets:?}");
    assert_eq!(offsets[0].committed, None);
    let read = log.read(&topic, 0, low + 2, 3).await.expect("read");
    assert_eq!(ids(&read.records), vec!["x2", "x3", "x4"]);
    assert_eq!(read.records[0].offset, low + 2);
    assert_eq!(
        read.next,
        low + 5,
        "the next read starts past what was read"
    );
    let past_the_end = log.read(&topic, 0, low + 6, 3).await.expect("read");
    assert!(past_the_end.records.is_empty());
    assert_eq!(
        past_the_end.next,
        low + 6,
        "a read that saw nothing does not move"
    );
    log.commit_offsets(&topic, &group, &[(0, low + 4)])
        .await
        .expect("commit without membership");
    wait_for_commit(&log, &topic, &group, low + 4).await;
    assert!(
        log.read(&topic, 99, 0, 1).await.is_err(),
        "an unknown partition is an error"
    );
}

/// The same partition key always lands in the same partition, so its order is kept.
pub async fn a_partition_key_keeps_its_events_in_order(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}-keys");
    log.ensure_topic(&TopicSpec::new(&topic, 4))
        .await
        .expect("topic created");
    let batch: Vec<Envelope> = (0..12)
        .map(|i| {
            envelope(
                &format!("k{i}"),
                Some(if i % 2 == 0 { "even" } else { "odd" }),
            )
        })
        .collect();
    log.append(&topic, batch).await.expect("append");
    let mut subscription = log
        .subscribe(&topic, &format!("{prefix}-g"), StartAt::Earliest)
        .expect("subscribe");
    let (_, records) = read_records(&mut subscription, 12).await;
    let mut by_key: BTreeMap<String, Vec<(Partition, String)>> = BTreeMap::new();
    for record in &records {
        let key = record.envelope.partition_key().expect("the key survives");
        by_key
            .entry(key)
            .or_default()
            .push((record.partition, record.envelope.id().to_string()));
    }
    for (key, events) in by_key {
        let partitions: Vec<Partition> = events.iter().map(|(p, _)| *p).collect();
        assert!(
            partitions.windows(2).all(|w| w[0] == w[1]),
            "{key}: one partition"
        );
        let order: Vec<u32> = events
            .iter()
            .map(|(_, id)| id[1..].parse().expect("the ids appended are k0 to k11"))
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{key}: in order {order:?}"
        );
    }
}

/// An offset can be found by time: records appended after a moment.
pub async fn an_offset_can_be_found_by_time(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}-time");
    log.ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("topic created");
    log.append(&topic, vec![envelope("before", None)])
        .await
        .expect("append");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let moment = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    log.append(&topic, vec![envelope("after", None)])
        .await
        .expect("append");
    let offset = log
        .offset_for_time(&topic, 0, moment)
        .await
        .expect("offset for time");
    let read = log.read(&topic, 0, offset, 1).await.expect("read");
    assert_eq!(ids(&read.records), vec!["after"]);
    let future = log
        .offset_for_time(&topic, 0, moment + chrono::Duration::hours(1))
        .await
        .expect("offset for a future time");
    assert_eq!(
        future,
        log.offsets(&topic, "none").await.expect("offsets")[0].high
    );
}

/// A deleted topic is gone: created again, it starts empty.
///
/// Not part of [`run_all`]: a backend runs it as a test of its own (on Kafka, beside the other
/// scenarios on the same broker). It never reads or appends to the topic while it is deleted:
/// what a client asking for a deleted topic gets is up to the broker (tansu 0.6, the broker of
/// earlier tests, answered with a topic without a name, which crashed librdkafka 2.12).
pub async fn a_deleted_topic_is_gone(log: Arc<dyn EventLog>, prefix: &str) {
    let topic = format!("{prefix}-deleted");
    log.ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("topic created");
    log.append(&topic, vec![envelope("gone", None), envelope("too", None)])
        .await
        .expect("append");
    log.delete_topic(&topic).await.expect("delete");
    log.delete_topic(&topic)
        .await
        .expect("deleting a deleted topic is fine");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if log.ensure_topic(&TopicSpec::new(&topic, 1)).await.is_ok() {
            let offsets = log.offsets(&topic, "none").await.expect("offsets");
            if offsets.len() == 1 && offsets[0].high == offsets[0].low {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the topic was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every scenario but [`a_deleted_topic_is_gone`], in turn.
pub async fn run_all(log: Arc<dyn EventLog>, prefix: &str) {
    appended_events_are_read_back_in_order(log.clone(), prefix).await;
    a_group_resumes_at_its_committed_offset(log.clone(), prefix).await;
    a_position_with_readers_behind_is_kept_for_the_next_member(log.clone(), prefix).await;
    a_new_group_at_latest_sees_only_new_events(log.clone(), prefix).await;
    reads_offsets_and_commits_work_without_a_group(log.clone(), prefix).await;
    a_partition_key_keeps_its_events_in_order(log.clone(), prefix).await;
    an_offset_can_be_found_by_time(log, prefix).await;
}
