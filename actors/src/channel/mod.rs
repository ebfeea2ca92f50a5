//! The channel port: where a broker keeps the events it accepted until every trigger is done with
//! them. Shaped after Kafka, because Kafka is the production channel:
//!
//! - a broker's events live in a **topic** of one or more **partitions**; a record's position is
//!   (partition, offset), offsets increase within a partition;
//! - [`EventLog::append`] returns once the records are stored (Kafka: acknowledged by all in-sync
//!   replicas), which is what a 202 from the gateway promises;
//! - a broker's dispatcher reads as a **consumer group** ([`EventLog::subscribe`]): partitions are
//!   assigned to and revoked from the group's members, and reading resumes at the group's
//!   **committed** offset after a restart or a rebalance;
//! - [`EventLog::read`] reads a partition from any retained offset, without a group: a trigger that
//!   fell behind catches up with it while the group reads on.
//!
//! Implementations: [`MemoryLog`] (the embedded default, one process) and `knactor-kafka`.

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod memory;

pub use memory::{MemoryLimits, MemoryLog};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::envelope::Envelope;
use crate::routes::{ChannelKind, ChannelSpec};

pub type Partition = i32;
pub type Offset = i64;

/// A stored event and where it is.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: Partition,
    pub offset: Offset,
    pub envelope: Arc<Envelope>,
}

/// What a topic should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: Option<i16>,
    /// Topic-level settings (Kafka's `retention.ms`, ...).
    pub config: BTreeMap<String, String>,
    /// An existing topic to use as it is: checked, never created.
    pub external: bool,
    /// A broker's parking lot: on the memory channel only the byte budget bounds it (not the
    /// record count per partition), so that parking does not fail while there is room.
    pub parking: bool,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions: partitions.max(1),
            replication_factor: None,
            config: BTreeMap::new(),
            external: false,
            parking: false,
        }
    }

    /// The topics of a broker's channel: the channel itself and its parking lot.
    pub fn for_channel(channel: &ChannelSpec) -> [TopicSpec; 2] {
        let kafka = channel.kafka();
        let main = TopicSpec {
            name: channel.topic.clone(),
            partitions: channel.partitions.max(1),
            replication_factor: kafka.and_then(|k| k.replication_factor),
            config: kafka.map(|k| k.topic_config.clone()).unwrap_or_default(),
            external: kafka.is_some_and(|k| k.external),
            parking: false,
        };
        let park = TopicSpec {
            name: channel.park_topic(),
            partitions: 1,
            replication_factor: main.replication_factor,
            config: BTreeMap::new(),
            external: false,
            parking: true,
        };
        [main, park]
    }
}

/// Where a group with no committed offset starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    Earliest,
    /// Only records appended from now on.
    #[default]
    Latest,
}

/// What a group subscription yields.
#[derive(Debug)]
pub enum ChannelEvent {
    /// These partitions are now this member's, with the group's committed position (reading
    /// starts at its offset; the readers it names as behind start further back). `None`: the
    /// group has none; reading starts where the channel's reset policy says, and the first record
    /// read tells where that is. A channel that cannot learn a partition's position does not
    /// hand the partition over (it ends the subscription instead): a position's readers behind
    /// would be lost with it.
    Assigned(Vec<(Partition, Option<Position>)>),
    /// These partitions are about to be taken from this member (a rebalance): finish what was
    /// handed out for them, commit, then let the [`Release`] go. The channel waits for that, a
    /// bounded time, before it gives them up, so the next reader does not deliver again what
    /// this member was finishing. `Revoked` follows.
    Revoking(Release),
    /// These partitions are no longer this member's: forget their in-flight bookkeeping.
    Revoked(Vec<Partition>),
    /// Records of assigned partitions, in offset order within each partition.
    Records(Vec<Record>),
}

/// Where a group stands on one partition: every record below `offset` is final for every reader,
/// except that the readers in `behind` (a trigger catching up on its own, by name) still read from
/// the offset given for each. Committing a position lets the group move on past a slow reader
/// without losing its place: the next member of the group starts the shared read at `offset`
/// and each reader behind at its own offset, and the channel keeps their records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position<K = String> {
    pub offset: Offset,
    pub behind: BTreeMap<K, Offset>,
}

impl<K: Ord> Position<K> {
    /// A position with no reader behind it.
    pub fn at(offset: Offset) -> Self {
        Self {
            offset,
            behind: BTreeMap::new(),
        }
    }

    /// The first offset some reader still needs: records below it may go.
    pub fn floor(&self) -> Offset {
        self.behind
            .values()
            .copied()
            .min()
            .map_or(self.offset, |behind| behind.min(self.offset))
    }

    /// The same position with other reader names.
    pub fn map_keys<L: Ord>(self, mut rename: impl FnMut(K) -> Option<L>) -> Position<L> {
        Position {
            offset: self.offset,
            behind: self
                .behind
                .into_iter()
                .filter_map(|(reader, offset)| Some((rename(reader)?, offset)))
                .collect(),
        }
    }
}

/// Partitions a channel is about to revoke ([`ChannelEvent::Revoking`]); dropping it (or
/// [`Release::done`]) tells the channel the member is done with them.
#[derive(Debug)]
pub struct Release {
    pub partitions: Vec<Partition>,
    /// Dropped when done: the channel's end of it then sees the disconnection.
    _done: std::sync::mpsc::SyncSender<()>,
}

impl Release {
    /// A release of `partitions`, and what the channel waits on: `recv_timeout` returns once the
    /// release is done (dropped).
    pub fn new(partitions: Vec<Partition>) -> (Self, std::sync::mpsc::Receiver<()>) {
        let (done, wait) = std::sync::mpsc::sync_channel(0);
        (
            Self {
                partitions,
                _done: done,
            },
            wait,
        )
    }

    /// The member finished and committed what it owed for these partitions.
    pub fn done(self) {}
}

/// What one read of a partition returned ([`EventLog::read`]).
#[derive(Debug, Clone, Default)]
pub struct ReadBatch {
    /// The events read, in offset order.
    pub records: Vec<Record>,
    /// Where the following read starts: past every offset this read looked at (records skipped
    /// as not being events count too), or the offset it was asked for when it saw nothing. An
    /// empty batch whose `next` did not move says nothing about the end of the partition: a read
    /// may time out.
    pub next: Offset,
}

/// Offsets of one partition, for listing and for lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: Partition,
    /// First retained offset.
    pub low: Offset,
    /// Offset the next record will get.
    pub high: Offset,
    /// The group's committed offset, when it has one.
    pub committed: Option<Offset>,
}

/// Why an append failed. The gateway maps each to an HTTP status in one place.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Back-pressure: the channel holds as much as it may; try again later (503 + Retry-After).
    /// `reason` says what fills it.
    #[error("the channel is full ({reason}); retry after {retry_after:?}")]
    Full {
        retry_after: Duration,
        reason: String,
    },
    /// The event, or the batch (`events` of them), can never be stored (413). Nothing of it was.
    /// `limit` says which limit it passes, when the channel knows.
    #[error("{} {size} bytes: more than the channel ever holds{}", if *events > 1 { format!("the batch of {events} events is") } else { "the event is".to_string() }, limit.as_ref().map(|l| format!(" ({l})")).unwrap_or_default())]
    TooLarge {
        size: usize,
        limit: Option<String>,
        events: usize,
    },
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// The channel could not store the event now (Kafka down, timeout): 503.
    #[error("the channel is unavailable: {0}")]
    Unavailable(String),
}

/// Why another channel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: Partition },
    #[error("creating topic {topic} failed: {reason}")]
    TopicCreateFailed { topic: String, reason: String },
    #[error("the channel is unavailable: {0}")]
    Unavailable(String),
}

/// Commits a group's positions for the partitions it holds.
pub trait Committer: fmt::Debug + Send + Sync {
    /// Records below each position are done (see [`Position`]). Must never move a committed
    /// offset backwards. May return before the channel has the commit (the next commit carries
    /// later positions anyway).
    fn commit(&self, positions: &[(Partition, Position)]) -> Result<(), ChannelError>;

    /// Like [`Committer::commit`], returning once the channel has the commit: before partitions
    /// go to another reader, or before the node stops. May block: never call it on an actor's
    /// thread.
    fn commit_and_wait(&self, positions: &[(Partition, Position)]) -> Result<(), ChannelError> {
        self.commit(positions)
    }
}

/// A member's view of a consumer group.
pub struct Subscription {
    pub events: BoxStream<'static, Result<ChannelEvent, ChannelError>>,
    pub committer: Box<dyn Committer>,
    /// What the member learns about the topic as it reads.
    pub stats: Arc<ReadStats>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("committer", &self.committer)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What a group member learns about its topic as it reads, for metrics and status. Updated by
/// the channel, read by the dispatcher.
#[derive(Debug, Default)]
pub struct ReadStats {
    /// Bytes received from the channel's servers (Kafka; the memory channel counts none).
    pub bytes_read: std::sync::atomic::AtomicU64,
    /// The end (high watermark) of each partition the member holds, as last learnt.
    ends: std::sync::Mutex<BTreeMap<Partition, Offset>>,
}

impl ReadStats {
    pub fn set_end(&self, partition: Partition, end: Offset) {
        self.ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition, end);
    }

    pub fn end(&self, partition: Partition) -> Option<Offset> {
        self.ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&partition)
            .copied()
    }
}

/// The port. Methods are cheap to call concurrently (`&self`).
#[async_trait]
pub trait EventLog: fmt::Debug + Send + Sync + 'static {
    /// `memory` or `kafka`, for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Whether what it stores outlives this process (Kafka), so that a node that stops may leave
    /// records to the next reader; the memory channel's records die with the node.
    fn durable(&self) -> bool {
        false
    }

    /// Creates the topic if it does not exist (an existing one is used as it is).
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), ChannelError>;

    async fn delete_topic(&self, topic: &str) -> Result<(), ChannelError>;

    /// Stores the events, in order, and returns once they are stored. The memory channel stores
    /// a batch whole or not at all; on Kafka an error may leave some of a batch stored (the
    /// producer retries; subscribers accept duplicates, per the data-plane contract).
    async fn append(&self, topic: &str, events: Vec<Envelope>) -> Result<(), AppendError>;

    /// Joins `group` on `topic`. A group without committed offsets starts at `start`.
    fn subscribe(
        &self,
        topic: &str,
        group: &str,
        start: StartAt,
    ) -> Result<Subscription, ChannelError>;

    /// Up to `max` records of one partition from offset `from` (or the first retained one after it).
    async fn read(
        &self,
        topic: &str,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<ReadBatch, ChannelError>;

    /// Low and high watermarks of every partition, and `group`'s committed offsets.
    async fn offsets(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Vec<PartitionOffsets>, ChannelError>;

    /// The first offset of `partition` whose record was appended at or after `time` (the high
    /// watermark when none was).
    async fn offset_for_time(
        &self,
        topic: &str,
        partition: Partition,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<Offset, ChannelError>;

    /// Whether `topic` can take appends now, as far as the channel can tell without appending
    /// (Kafka: the topic exists and every partition has a leader). Cheap enough to call every few
    /// seconds.
    async fn probe(&self, _topic: &str) -> Result<(), ChannelError> {
        Ok(())
    }

    /// Commits `group`'s offsets without being a member (for the parking lot's bookkeeping).
    async fn commit_offsets(
        &self,
        topic: &str,
        group: &str,
        offsets: &[(Partition, Offset)],
    ) -> Result<(), ChannelError>;
}

/// Finds the log a broker's channel lives in: the memory log, or the Kafka cluster its
/// `ChannelSpec` names. The binary composes one from what the node was started with.
pub trait ChannelProvider: fmt::Debug + Send + Sync + 'static {
    fn log_for(&self, channel: &ChannelSpec) -> Result<Arc<dyn EventLog>, ChannelError>;
}

/// One log for every broker, whatever its channel kind (tests; a node without Kafka refuses
/// Kafka brokers through [`MemoryOnly`] instead).
#[derive(Debug)]
pub struct SingleLog(pub Arc<dyn EventLog>);

impl ChannelProvider for SingleLog {
    fn log_for(&self, _: &ChannelSpec) -> Result<Arc<dyn EventLog>, ChannelError> {
        Ok(self.0.clone())
    }
}

/// The memory log for memory brokers; Kafka brokers are refused with a reason.
#[derive(Debug)]
pub struct MemoryOnly(pub Arc<dyn EventLog>);

impl ChannelProvider for MemoryOnly {
    fn log_for(&self, channel: &ChannelSpec) -> Result<Arc<dyn EventLog>, ChannelError> {
        match channel.kind {
            ChannelKind::Memory => Ok(self.0.clone()),
            ChannelKind::Kafka(_) => Err(ChannelError::Unavailable(
                "this node runs without Kafka: start it with --kafka-bootstrap to run Kafka brokers".into(),
            )),
        }
    }
}

/// Picks the partition for a record: by key when it has one (same key, same partition, so
/// `partitionkey` keeps order), round robin otherwise.
pub fn partition_for(key: Option<&str>, partitions: u32, round_robin: &mut u64) -> Partition {
    let partitions = u64::from(partitions.max(1));
    let slot = match key {
        Some(key) => fnv1a(key.as_bytes()) % partitions,
        None => {
            *round_robin = round_robin.wrapping_add(1);
            *round_robin % partitions
        }
    };
    slot as Partition
}

/// FNV-1a: stable across processes and versions, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_always_lands_in_the_same_partition() {
        let mut counter = 0;
        let first = partition_for(Some("order-7"), 8, &mut counter);
        for _ in 0..10 {
            assert_eq!(partition_for(Some("order-7"), 8, &mut counter), first);
        }
    }

    #[test]
    fn records_without_a_key_spread_round_robin() {
        let mut counter = 0;
        let mut seen: Vec<Partition> = (0..6)
            .map(|_| partition_for(None, 3, &mut counter))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 0, 1, 1, 2, 2]);
    }
}
