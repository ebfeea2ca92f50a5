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

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use futures::stream;
use knactor_actors::channel::{
    ChannelError, ChannelEvent, Committer, Offset, Partition, ReadStats, Release, StartAt,
    Subscription,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use crate::log::{to_record, unavailable};
use crate::settings::{KafkaSettings, PartitionAssignment};

/// Records handed to the dispatcher at once.
const MAX_BATCH: usize = 256;
/// Batches in flight between the thread and the dispatcher.
const PIPELINE: usize = 8;
/// How long a revocation waits for the dispatcher to finish the partitions' deliveries (the
/// dispatcher gives up a little earlier, see its own grace).
const RELEASE_GRACE: Duration = Duration::from_secs(6);

struct GroupContext {
    topic: String,
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
            Rebalance::Assign(list) => {
                let assigned = self.start_positions(consumer, list);
                debug!(topic = %self.topic, ?assigned, "partitions assigned");
                self.push(ChannelEvent::Assigned(assigned));
            }
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

    /// Where each assigned partition starts: the group's committed offset, when the member can
    /// learn it. Never a guess: a partition whose committed offset could not be read (the
    /// coordinator is moving, a timeout) starts where the consumer's reset policy says, and the
    /// dispatcher learns that position from the first record it reads. (Guessing the high
    /// watermark here once let a dispatcher commit past records it had not read yet.)
    fn start_positions(
        &self,
        consumer: &BaseConsumer<Self>,
        list: &TopicPartitionList,
    ) -> Vec<(Partition, Option<Offset>)> {
        let committed = match consumer.committed_offsets(list.clone(), Duration::from_secs(10)) {
            Ok(committed) => Some(committed),
            Err(error) => {
                warn!(topic = %self.topic, "cannot read the group's committed offsets; the positions will come from the first records: {error}");
                None
            }
        };
        list.elements()
            .iter()
            .map(|element| {
                let partition = element.partition();
                let start = committed
                    .as_ref()
                    .and_then(|c| c.find_partition(&self.topic, partition))
                    .and_then(|e| e.offset().to_raw())
                    .filter(|offset| *offset >= 0);
                (partition, start)
            })
            .collect()
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
) -> Result<Vec<(Partition, Option<Offset>)>, ChannelError> {
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
    let starts = context.start_positions(consumer, &list);
    let mut assignment = TopicPartitionList::new();
    for &(partition, offset) in &starts {
        // Without a committed offset the consumer fetches its own and resets as configured.
        let offset = offset.map_or(rdkafka::Offset::Stored, rdkafka::Offset::Offset);
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
        if sender.is_closed() {
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

impl GroupCommitter {
    fn commit_in(
        &self,
        offsets: &[(Partition, Offset)],
        mode: CommitMode,
    ) -> Result<(), ChannelError> {
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in offsets {
            list.add_partition_offset(&self.topic, partition, rdkafka::Offset::Offset(offset))
                .map_err(|error| unavailable("building a commit", &error))?;
        }
        self.consumer
            .commit(&list, mode)
            .map_err(|error| unavailable("committing offsets", &error))
    }
}

impl Committer for GroupCommitter {
    fn commit(&self, offsets: &[(Partition, Offset)]) -> Result<(), ChannelError> {
        // Asynchronous: the next commit carries later offsets anyway, and a lost one only means a
        // few redeliveries after a crash.
        self.commit_in(offsets, CommitMode::Async)
    }

    fn commit_and_wait(&self, offsets: &[(Partition, Offset)]) -> Result<(), ChannelError> {
        self.commit_in(offsets, CommitMode::Sync)
    }
}
