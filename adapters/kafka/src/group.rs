//! A broker dispatcher's consumer-group membership, on a thread of its own.
//!
//! librdkafka calls the rebalance callbacks from inside `poll`, before it returns the first
//! record of a new assignment. The thread turns that into one ordered stream for the dispatcher:
//!
//! ```text
//!   poll ──► rebalance events queued by the callbacks ──► flush records read before them,
//!        │                                                 then send Assigned / Revoked
//!        └─► a record ──► batch (sent when full, or as soon as poll has nothing more)
//! ```
//!
//! The stream is bounded, so a dispatcher that does not keep up slows the polling down instead of
//! buffering without limit. Dropping the subscription ends the thread, which leaves the group.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use futures::stream;
use knactor_actors::channel::{
    ChannelError, ChannelEvent, Committer, Offset, Partition, Position, ReadStats, Release,
    StartAt, Subscription,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use crate::record::to_record;
use crate::settings::{KafkaSettings, PartitionAssignment};
use crate::unavailable;

/// Records handed to the dispatcher at once.
const MAX_BATCH: usize = 256;
/// Batches in flight between the thread and the dispatcher.
const PIPELINE: usize = 8;
/// How long a revocation waits for the dispatcher to finish the partitions' deliveries (the
/// dispatcher gives up a little earlier, see its own grace).
const RELEASE_GRACE: Duration = Duration::from_secs(6);

struct GroupContext {
    topic: String,
    /// Set when the member cannot take what it was assigned: the polling thread ends the
    /// subscription, the dispatcher stops and the node starts it again (a new member).
    give_up: std::sync::atomic::AtomicBool,
    /// The dispatcher's end of the stream, for the release handshake of a revocation (set once
    /// the stream exists).
    events: Mutex<Option<Events>>,
    /// Assignment changes, queued by the callbacks for the thread to send in order.
    pending: Mutex<Vec<ChannelEvent>>,
    /// Bytes received and partition ends, from librdkafka's statistics.
    stats: Arc<ReadStats>,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        self.stats
            .bytes_read
            .store(statistics.rx_bytes.max(0) as u64, Ordering::Relaxed);
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for partition in topic.partitions.values() {
                // Partition -1 is librdkafka's "unassigned" queue; an unknown end is -1001.
                if partition.partition >= 0 && partition.hi_offset >= 0 {
                    self.stats.set_end(partition.partition, partition.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions: Vec<Partition> =
                list.elements().iter().map(|e| e.partition()).collect();
            debug!(topic = %self.topic, ?partitions, "partitions being revoked");
            self.release(partitions.clone());
            self.push(ChannelEvent::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => match self.start_positions(consumer, list) {
                Ok(assigned) => {
                    debug!(topic = %self.topic, ?assigned, "partitions assigned");
                    self.push(ChannelEvent::Assigned(assigned));
                }
                Err(error) => {
                    error!(topic = %self.topic, "cannot take the partitions assigned without their committed positions; leaving the group to join again: {error}");
                    self.give_up.store(true, Ordering::Relaxed);
                }
            },
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => error!(topic = %self.topic, "rebalance failed: {error}"),
        }
    }
}

impl GroupContext {
    /// Before librdkafka gives partitions up: lets the dispatcher finish and commit what it owes
    /// for them (at most [`RELEASE_GRACE`]), so their next reader does not deliver it again.
    /// Called on the polling thread, inside `poll`; the group's heartbeats go on meanwhile.
    fn release(&self, partitions: Vec<Partition>) {
        let Some(events) = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let (release, done) = Release::new(partitions);
        if events
            .blocking_send(Ok(ChannelEvent::Revoking(release)))
            .is_err()
        {
            return;
        }
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(RELEASE_GRACE) {
            warn!(topic = %self.topic, "the dispatcher did not finish the revoked partitions within {RELEASE_GRACE:?}; their next reader may deliver some records again");
        }
    }

    fn push(&self, event: ChannelEvent) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    /// Where each assigned partition starts: the group's committed position (its offset, and
    /// in the commit's metadata the triggers that stand behind it), or `None` where the group
    /// has no commit. Never a guess: a position whose triggers behind would be lost with it
    /// must be read, so the query is retried, and a member that cannot read it gives up its
    /// subscription (`Err`) rather than run the partitions without it.
    fn start_positions(
        &self,
        consumer: &BaseConsumer<Self>,
        list: &TopicPartitionList,
    ) -> Result<Vec<(Partition, Option<Position>)>, ChannelError> {
        let mut attempt = 0;
        let committed = loop {
            match consumer.committed_offsets(list.clone(), Duration::from_secs(10)) {
                Ok(committed) => break committed,
                Err(error) if attempt < 4 => {
                    attempt += 1;
                    warn!(topic = %self.topic, attempt, "cannot read the group's committed positions yet, asking again: {error}");
                    thread::sleep(Duration::from_millis(500 * attempt));
                }
                Err(error) => {
                    return Err(unavailable(
                        "reading the group's committed positions",
                        &error,
                    ))
                }
            }
        };
        Ok(list
            .elements()
            .iter()
            .map(|element| {
                let partition = element.partition();
                let position = committed
                    .find_partition(&self.topic, partition)
                    .and_then(|e| {
                        let offset = e.offset().to_raw().filter(|offset| *offset >= 0)?;
                        Some(Position {
                            offset,
                            behind: decode_behind(e.metadata()),
                        })
                    });
                (partition, position)
            })
            .collect())
    }
}

/// Commit metadata that names triggers behind the committed offset: `knactor/1 ns/a=12 ns/b=40`.
const BEHIND_PREFIX: &str = "knactor/1";
/// Kafka keeps at most `offset.metadata.max.bytes` (4,096 by default) of metadata per partition.
const MAX_METADATA: usize = 4_000;

fn encode_behind(behind: &BTreeMap<String, Offset>) -> String {
    let mut text = String::from(BEHIND_PREFIX);
    for (reader, offset) in behind {
        text.push(' ');
        text.push_str(reader);
        text.push('=');
        text.push_str(&offset.to_string());
    }
    text
}

fn decode_behind(metadata: &str) -> BTreeMap<String, Offset> {
    let mut words = metadata.split(' ');
    if words.next() != Some(BEHIND_PREFIX) {
        return BTreeMap::new();
    }
    words
        .filter_map(|word| {
            let (reader, offset) = word.rsplit_once('=')?;
            Some((reader.to_string(), offset.parse().ok()?))
        })
        .collect()
}

/// A position as Kafka keeps it: the offset and the triggers behind it in the metadata. When the
/// metadata would not fit, the offset falls back to the first place some trigger still needs (no
/// trigger behind: the fast triggers get some records again after a rebalance, none is lost).
fn as_committed(position: &Position) -> (Offset, String) {
    let metadata = encode_behind(&position.behind);
    if metadata.len() <= MAX_METADATA {
        (position.offset, metadata)
    } else {
        (position.floor(), String::new())
    }
}

type Events = mpsc::Sender<Result<ChannelEvent, ChannelError>>;

/// Joins `group` on `topic`; the returned stream starts with the first assignment.
pub fn subscribe(
    settings: &KafkaSettings,
    topic: &str,
    group: &str,
    start: StartAt,
) -> Result<Subscription, ChannelError> {
    let stats = Arc::new(ReadStats::default());
    let context = GroupContext {
        topic: topic.to_string(),
        give_up: std::sync::atomic::AtomicBool::new(false),
        events: Mutex::new(None),
        pending: Mutex::new(Vec::new()),
        stats: stats.clone(),
    };
    let consumer: BaseConsumer<GroupContext> = settings
        .group_config(group, start)
        .create_with_context(context)
        .map_err(|error| unavailable("creating a group consumer", &error))?;
    let assignment = settings.assignment;
    if assignment == PartitionAssignment::Group {
        consumer
            .subscribe(&[topic])
            .map_err(|error| unavailable("joining the consumer group", &error))?;
    }
    let consumer = Arc::new(consumer);
    let (sender, receiver) = mpsc::channel(PIPELINE);
    *consumer
        .context()
        .events
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
    let polling = consumer.clone();
    let name = format!("kafka-{group}");
    thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || {
            if assignment == PartitionAssignment::All && !assign_all(&polling, &sender) {
                return;
            }
            poll_loop(&polling, &sender)
        })
        .map_err(|error| {
            ChannelError::Unavailable(format!("cannot start the consumer thread: {error}"))
        })?;
    let events = stream::unfold(receiver, |mut receiver| async move {
        let next = receiver.recv().await?;
        Some((next, receiver))
    });
    Ok(Subscription {
        events: Box::pin(events),
        committer: Box::new(GroupCommitter {
            consumer,
            topic: topic.to_string(),
        }),
        stats,
    })
}

/// `PartitionAssignment::All`: takes every partition of the topic, at the group's committed
/// offsets (or where the reset policy says), retrying while the cluster is away. False when the
/// subscription was dropped meanwhile.
fn assign_all(consumer: &BaseConsumer<GroupContext>, sender: &Events) -> bool {
    let context = consumer.context();
    loop {
        if sender.is_closed() {
            return false;
        }
        match try_assign_all(consumer) {
            Ok(assigned) => {
                debug!(topic = %context.topic, ?assigned, "all partitions assigned");
                context.push(ChannelEvent::Assigned(assigned));
                return true;
            }
            Err(error) => {
                warn!(topic = %context.topic, "cannot take the partitions yet, retrying: {error}");
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn try_assign_all(
    consumer: &BaseConsumer<GroupContext>,
) -> Result<Vec<(Partition, Option<Position>)>, ChannelError> {
    let context = consumer.context();
    let topic = &context.topic;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|error| unavailable("reading topic metadata", &error))?;
    let partitions: Vec<Partition> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic.as_str() && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .filter(|p: &Vec<Partition>| !p.is_empty())
        .ok_or_else(|| ChannelError::UnknownTopic(topic.clone()))?;
    let mut list = TopicPartitionList::new();
    for &partition in &partitions {
        list.add_partition(topic, partition);
    }
    let starts = context.start_positions(consumer, &list)?;
    let mut assignment = TopicPartitionList::new();
    for (partition, position) in &starts {
        let partition = *partition;
        // Without a committed offset the consumer fetches its own and resets as configured.
        let offset = position
            .as_ref()
            .map_or(rdkafka::Offset::Stored, |position| {
                rdkafka::Offset::Offset(position.offset)
            });
        assignment
            .add_partition_offset(topic, partition, offset)
            .map_err(|error| unavailable("building the assignment", &error))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| unavailable("assigning the partitions", &error))?;
    Ok(starts)
}

fn poll_loop(consumer: &BaseConsumer<GroupContext>, sender: &Events) {
    let mut batch = Vec::new();
    let send = |event: Result<ChannelEvent, ChannelError>| sender.blocking_send(event).is_ok();
    loop {
        if sender.is_closed() || consumer.context().give_up.load(Ordering::Relaxed) {
            break;
        }
        // Wait only when there is nothing to hand over; otherwise take what is already there.
        let timeout = if batch.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        let polled = consumer.poll(timeout);
        let rebalances: Vec<ChannelEvent> = std::mem::take(
            &mut *consumer
                .context()
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if !rebalances.is_empty() {
            if !batch.is_empty() && !send(Ok(ChannelEvent::Records(std::mem::take(&mut batch)))) {
                break;
            }
            if !rebalances.into_iter().all(|event| send(Ok(event))) {
                break;
            }
        }
        match polled {
            Some(Ok(message)) => {
                if let Some(record) = to_record(&message) {
                    batch.push(record);
                }
                if batch.len() >= MAX_BATCH
                    && !send(Ok(ChannelEvent::Records(std::mem::take(&mut batch))))
                {
                    break;
                }
            }
            Some(Err(error)) => warn!("consumer error (librdkafka retries on its own): {error}"),
            None => {
                if !batch.is_empty() && !send(Ok(ChannelEvent::Records(std::mem::take(&mut batch))))
                {
                    break;
                }
            }
        }
    }
    // The dispatcher is gone: nobody to hand revocations to any more.
    *consumer
        .context()
        .events
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = None;
    // Leaving the group now lets another member take the partitions at once (a static member,
    // one with --node-id, keeps them until its session times out: it is expected back).
    consumer.unsubscribe();
}

struct GroupCommitter {
    consumer: Arc<BaseConsumer<GroupContext>>,
    topic: String,
}

impl fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommitter")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl GroupCommitter {
    fn commit_in(
        &self,
        positions: &[(Partition, Position)],
        mode: CommitMode,
    ) -> Result<(), ChannelError> {
        let mut list = TopicPartitionList::new();
        for (partition, position) in positions {
            let (offset, metadata) = as_committed(position);
            list.add_partition_offset(&self.topic, *partition, rdkafka::Offset::Offset(offset))
                .map_err(|error| unavailable("building a commit", &error))?;
            if let Some(mut element) = list.find_partition(&self.topic, *partition) {
                element.set_metadata(metadata);
            }
        }
        self.consumer
            .commit(&list, mode)
            .map_err(|error| unavailable("committing offsets", &error))
    }
}

impl Committer for GroupCommitter {
    fn commit(&self, positions: &[(Partition, Position)]) -> Result<(), ChannelError> {
        // Asynchronous: the next commit carries later positions anyway, and a lost one only means
        // a few redeliveries after a crash.
        self.commit_in(positions, CommitMode::Async)
    }

    fn commit_and_wait(&self, positions: &[(Partition, Position)]) -> Result<(), ChannelError> {
        self.commit_in(positions, CommitMode::Sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_behind_survive_the_commit_metadata() {
        let behind = BTreeMap::from([("ns/slow".to_string(), 12), ("other/t".to_string(), 40)]);
        let position = Position {
            offset: 100,
            behind: behind.clone(),
        };
        let (offset, metadata) = as_committed(&position);
        assert_eq!(offset, 100);
        assert_eq!(decode_behind(&metadata), behind);
        assert!(decode_behind("").is_empty());
        assert!(decode_behind("written by another tool").is_empty());
    }

    #[test]
    fn too_many_triggers_behind_fall_back_to_the_first_place_needed() {
        let behind = (0..500)
            .map(|n| (format!("namespace/trigger-{n}"), 1_000 + n))
            .collect();
        let position = Position {
            offset: 5_000,
            behind,
        };
        assert_eq!(as_committed(&position), (1_000, String::new()));
    }
}
