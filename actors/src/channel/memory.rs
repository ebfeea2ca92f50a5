//! `MemoryLog`: the embedded channel, for one process with no Kafka.
//!
//! Same semantics as Kafka where the dispatcher can tell: partitions and offsets, a committed offset
//! per group, reading resumes at the committed offset when a group member restarts, a new member
//! takes the partitions over from the old one. Records are kept until every group of the topic has
//! committed past them, and the number kept per partition is bounded: a full partition refuses
//! appends (the gateway answers 503 with Retry-After) rather than growing without limit.
//!
//! What it cannot do is survive the process: events in memory are gone when the node stops. Use the
//! Kafka channel for that.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream;
use tokio::sync::Notify;

use super::{
    partition_for, AppendError, ChannelError, ChannelEvent, Committer, EventLog, Offset, Partition,
    PartitionOffsets, Position, ReadBatch, ReadStats, Record, StartAt, Subscription, TopicSpec,
};
use crate::envelope::Envelope;

/// Bounds of the memory channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Records kept per partition (committed ones are dropped first).
    pub max_records_per_partition: usize,
    /// Bytes of events kept in all (every topic, parking lots included), as
    /// [`Envelope::footprint`] counts them: what bounds the channel's memory.
    pub max_bytes: usize,
    /// What a refused append asks the producer to wait.
    pub retry_after: Duration,
    /// Records handed to a subscriber at once.
    pub max_batch: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        Self {
            max_records_per_partition: 100_000,
            max_bytes: 256 * 1024 * 1024,
            retry_after: Duration::from_secs(1),
            max_batch: 256,
        }
    }
}

/// The in-memory channel. Cheap to clone (a handle).
#[derive(Clone, Default)]
pub struct MemoryLog {
    state: Arc<Mutex<State>>,
    limits: MemoryLimits,
}

/// The events stay out of it: a topic may hold a hundred thousand of them.
impl fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLog")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Hashed with foldhash, as each topic's groups: every append, read and commit looks its
    /// topic and group up by name, and the names are the node's own, not a client's.
    topics: foldhash::HashMap<String, Topic>,
    next_member: u64,
    /// Bytes of every record held, in all topics.
    bytes: usize,
}

struct Topic {
    partitions: Vec<PartitionLog>,
    /// Records kept per partition at most (`None`: only the byte budget bounds it).
    max_records: Option<usize>,
    groups: foldhash::HashMap<String, Group>,
    /// Woken on every append and on every change of membership.
    notify: Arc<Notify>,
    round_robin: u64,
}

#[derive(Default)]
struct PartitionLog {
    /// Offset of `records[0]`.
    base: Offset,
    records: VecDeque<Record>,
    /// Bytes of the records held (their footprints).
    bytes: usize,
}

impl PartitionLog {
    fn high(&self) -> Offset {
        self.base + self.records.len() as Offset
    }
}

struct Group {
    committed: Vec<Option<Offset>>,
    /// Per partition, the readers that stand behind the committed offset (see [`Position`]).
    behind: Vec<BTreeMap<String, Offset>>,
    /// The member currently holding every partition; a newer member takes over.
    member: Option<u64>,
}

impl Group {
    /// The first offset of partition `index` some reader of the group still needs.
    fn floor(&self, index: usize) -> Option<Offset> {
        let committed = self.committed[index]?;
        Some(
            self.behind[index]
                .values()
                .copied()
                .fold(committed, Offset::min),
        )
    }

    fn position(&self, index: usize) -> Option<Position> {
        Some(Position {
            offset: self.committed[index]?,
            behind: self.behind[index].clone(),
        })
    }
}

impl MemoryLog {
    /// Why the channel is full: its budget, and the topics that hold the most of it.
    fn who_holds(&self, state: &State, held: usize) -> String {
        let mut topics: Vec<(&str, usize)> = state
            .topics
            .iter()
            .map(|(name, topic)| (name.as_str(), topic.bytes()))
            .filter(|(_, bytes)| *bytes > 0)
            .collect();
        topics.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
        let holders: Vec<String> = topics
            .iter()
            .take(3)
            .map(|(name, bytes)| format!("{name} {} KiB", bytes / 1024))
            .collect();
        format!(
            "the memory channel holds {} KiB of its {} KiB (--memory-max-bytes) in events not yet delivered to every trigger or parked: {}",
            held / 1024,
            self.limits.max_bytes / 1024,
            holders.join(", ")
        )
    }

    pub fn new(limits: MemoryLimits) -> Self {
        Self {
            state: Arc::default(),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written in a way that matters
        // more than losing the node, so recover the guard instead of poisoning every caller.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn topic(&mut self, name: &str) -> Result<&mut Topic, ChannelError> {
        self.topics
            .get_mut(name)
            .ok_or_else(|| ChannelError::UnknownTopic(name.to_string()))
    }
}

impl Topic {
    /// Takes out the records every group has committed past, into `released`; how many bytes
    /// that freed. A topic without groups keeps its records (the parking lot is read by a group
    /// only when someone lists it). The caller drops `released` once the log's lock is free: a
    /// commit releases a hundred milliseconds of events at once, often the last holder of each,
    /// and freeing them all under the lock would hold up every append meanwhile.
    fn trim(&mut self, released: &mut Vec<Record>) -> usize {
        if self.groups.is_empty() {
            return 0;
        }
        let mut freed = 0;
        for (index, partition) in self.partitions.iter_mut().enumerate() {
            let floor = self
                .groups
                .values()
                .map(|group| group.floor(index).unwrap_or(partition.base))
                .min()
                .unwrap_or(partition.base);
            while partition.base < floor {
                let Some(record) = partition.records.pop_front() else {
                    break;
                };
                let size = record.envelope.footprint();
                partition.bytes -= size;
                freed += size;
                partition.base += 1;
                released.push(record);
            }
        }
        freed
    }

    fn bytes(&self) -> usize {
        self.partitions
            .iter()
            .map(|partition| partition.bytes)
            .sum()
    }

    fn group(&mut self, name: &str) -> &mut Group {
        // Looked up by `&str` first: `entry` would take an owned name, allocated at every read
        // and commit for a group that nearly always exists.
        if !self.groups.contains_key(name) {
            let partitions = self.partitions.len();
            self.groups.insert(
                name.to_string(),
                Group {
                    committed: vec![None; partitions],
                    behind: vec![BTreeMap::new(); partitions],
                    member: None,
                },
            );
        }
        self.groups
            .get_mut(name)
            .expect("the group was just looked up or added")
    }

    /// Commits and trims (into `released`, see [`Topic::trim`]); how many bytes the trim freed.
    fn commit(
        &mut self,
        group: &str,
        positions: &[(Partition, Position)],
        released: &mut Vec<Record>,
    ) -> Result<usize, ChannelError> {
        let partitions = self.partitions.len();
        let group = self.group(group);
        for (partition, position) in positions {
            let slot = usize::try_from(*partition)
                .ok()
                .filter(|&p| p < partitions)
                .ok_or_else(|| ChannelError::UnknownPartition {
                    topic: String::new(),
                    partition: *partition,
                })?;
            let committed = &mut group.committed[slot];
            if committed.is_none_or(|current| position.offset >= current) {
                *committed = Some(position.offset);
                group.behind[slot] = position.behind.clone();
            }
        }
        Ok(self.trim(released))
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), ChannelError> {
        let mut state = self.lock();
        state
            .topics
            .entry(spec.name.clone())
            .or_insert_with(|| Topic {
                partitions: (0..spec.partitions.max(1))
                    .map(|_| PartitionLog::default())
                    .collect(),
                max_records: (!spec.parking).then_some(self.limits.max_records_per_partition),
                groups: foldhash::HashMap::default(),
                notify: Arc::new(Notify::new()),
                round_robin: 0,
            });
        Ok(())
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), ChannelError> {
        let mut state = self.lock();
        if let Some(removed) = state.topics.remove(topic) {
            state.bytes -= removed.bytes();
            removed.notify.notify_waiters();
        }
        Ok(())
    }

    async fn append(&self, topic: &str, events: Vec<Envelope>) -> Result<(), AppendError> {
        let limits = &self.limits;
        let mut state = self.lock();
        let held = state.bytes;
        let topic_state = state
            .topics
            .get_mut(topic)
            .ok_or_else(|| AppendError::UnknownTopic(topic.to_string()))?;
        let count = topic_state.partitions.len() as u32;
        // Where each event goes and what it weighs, before anything is stored: a batch is
        // stored whole or not at all.
        let mut round_robin = topic_state.round_robin;
        let placed: Vec<(Partition, usize)> = events
            .iter()
            .map(|envelope| {
                let key = envelope.partition_key();
                let partition = partition_for(key.as_deref(), count, &mut round_robin);
                (partition, envelope.footprint())
            })
            .collect();
        let size: usize = placed.iter().map(|(_, size)| size).sum();
        let mut per_partition = vec![0usize; count as usize];
        for (partition, _) in &placed {
            per_partition[*partition as usize] += 1;
        }
        let max_records = topic_state.max_records.unwrap_or(usize::MAX);
        let most_in_a_partition = per_partition.iter().copied().max().unwrap_or(0);
        let never_fits = if size > limits.max_bytes {
            Some(format!(
                "{} KiB in all, --memory-max-bytes",
                limits.max_bytes / 1024
            ))
        } else if most_in_a_partition > max_records {
            Some(format!(
                "{max_records} events per partition, --memory-max-records; {most_in_a_partition} would go to one"
            ))
        } else {
            None
        };
        if let Some(limit) = never_fits {
            return Err(AppendError::TooLarge {
                size,
                limit: Some(limit),
                events: events.len(),
            });
        }
        let full_partition = topic_state
            .partitions
            .iter()
            .zip(&per_partition)
            .position(|(log, &adding)| log.records.len() + adding > max_records);
        if held + size > limits.max_bytes || full_partition.is_some() {
            topic_state.notify.notify_waiters();
            let reason = match full_partition {
                Some(partition) => format!(
                    "partition {partition} of {topic} holds {} events not yet delivered to every trigger (--memory-max-records)",
                    topic_state.partitions[partition].records.len()
                ),
                None => self.who_holds(&state, held),
            };
            return Err(AppendError::Full {
                retry_after: limits.retry_after,
                reason,
            });
        }
        topic_state.round_robin = round_robin;
        for (envelope, (partition, size)) in events.into_iter().zip(placed) {
            let log = &mut topic_state.partitions[partition as usize];
            let offset = log.high();
            log.bytes += size;
            log.records.push_back(Record {
                partition,
                offset,
                envelope: Arc::new(envelope),
            });
        }
        let notify = topic_state.notify.clone();
        state.bytes += size;
        // Wakes the readers once the lock is free: a reader woken while the appender still held it
        // would only wait for it again.
        drop(state);
        notify.notify_waiters();
        Ok(())
    }

    fn subscribe(
        &self,
        topic: &str,
        group: &str,
        start: StartAt,
    ) -> Result<Subscription, ChannelError> {
        let (member, notify) = {
            let mut state = self.lock();
            state.next_member += 1;
            let member = state.next_member;
            let topic_state = state.topic(topic)?;
            topic_state.group(group).member = Some(member);
            // The previous member, if any, sees it lost the group on its next poll.
            topic_state.notify.notify_waiters();
            (member, topic_state.notify.clone())
        };
        let stats = Arc::new(ReadStats::default());
        let reader = GroupReader {
            log: self.clone(),
            topic: topic.to_string(),
            group: group.to_string(),
            member,
            start,
            notify,
            cursors: None,
            done: false,
            stats: stats.clone(),
        };
        let events = stream::unfold(reader, |mut reader| async move {
            let next = reader.next().await?;
            Some((next, reader))
        });
        Ok(Subscription {
            events: Box::pin(events),
            committer: Box::new(MemoryCommitter {
                log: self.clone(),
                topic: topic.to_string(),
                group: group.to_string(),
                member,
            }),
            stats,
        })
    }

    async fn read(
        &self,
        topic: &str,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<ReadBatch, ChannelError> {
        let mut state = self.lock();
        let topic_state = state.topic(topic)?;
        let log = usize::try_from(partition)
            .ok()
            .and_then(|p| topic_state.partitions.get(p))
            .ok_or_else(|| ChannelError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        let skip = usize::try_from(from.saturating_sub(log.base)).unwrap_or(0);
        let records: Vec<Record> = log.records.iter().skip(skip).take(max).cloned().collect();
        let next = records.last().map_or(from, |last| last.offset + 1);
        Ok(ReadBatch { records, next })
    }

    async fn offsets(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Vec<PartitionOffsets>, ChannelError> {
        let mut state = self.lock();
        let topic_state = state.topic(topic)?;
        let committed = topic_state
            .groups
            .get(group)
            .map(|group| group.committed.clone())
            .unwrap_or_else(|| vec![None; topic_state.partitions.len()]);
        Ok(topic_state
            .partitions
            .iter()
            .enumerate()
            .map(|(index, log)| PartitionOffsets {
                partition: index as Partition,
                low: log.base,
                high: log.high(),
                committed: committed[index],
            })
            .collect())
    }

    async fn offset_for_time(
        &self,
        topic: &str,
        partition: Partition,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<Offset, ChannelError> {
        let mut state = self.lock();
        let topic_state = state.topic(topic)?;
        let log = usize::try_from(partition)
            .ok()
            .and_then(|p| topic_state.partitions.get(p))
            .ok_or_else(|| ChannelError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        // Records carry the time the broker accepted them.
        let arrived_since = |record: &&Record| {
            record
                .envelope
                .arrival_time()
                .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
                .is_some_and(|arrival| arrival >= time)
        };
        Ok(log
            .records
            .iter()
            .find(arrived_since)
            .map_or(log.high(), |record| record.offset))
    }

    async fn commit_offsets(
        &self,
        topic: &str,
        group: &str,
        offsets: &[(Partition, Offset)],
    ) -> Result<(), ChannelError> {
        let positions: Vec<(Partition, Position)> = offsets
            .iter()
            .map(|&(partition, offset)| (partition, Position::at(offset)))
            .collect();
        let mut released = Vec::new();
        let mut state = self.lock();
        let freed = state
            .topic(topic)?
            .commit(group, &positions, &mut released)?;
        state.bytes -= freed;
        drop(state);
        drop(released);
        Ok(())
    }
}

/// One member's read loop.
struct GroupReader {
    log: MemoryLog,
    topic: String,
    group: String,
    member: u64,
    start: StartAt,
    notify: Arc<Notify>,
    /// Next offset to hand out, per partition; `None` until the assignment was announced.
    cursors: Option<Vec<Offset>>,
    done: bool,
    stats: Arc<ReadStats>,
}

impl GroupReader {
    async fn next(&mut self) -> Option<Result<ChannelEvent, ChannelError>> {
        if self.done {
            return None;
        }
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.log.lock();
                let Some(topic) = state.topics.get_mut(&self.topic) else {
                    self.done = true;
                    return Some(Err(ChannelError::UnknownTopic(self.topic.clone())));
                };
                let group = topic.group(&self.group);
                if group.member != Some(self.member) {
                    self.done = true;
                    let revoked = (0..topic.partitions.len() as Partition).collect();
                    return Some(Ok(ChannelEvent::Revoked(revoked)));
                }
                let Some(cursors) = &mut self.cursors else {
                    // The first read: where each partition starts.
                    let committed = group.committed.clone();
                    let positions: Vec<Option<Position>> = (0..committed.len())
                        .map(|index| group.position(index))
                        .collect();
                    let start: Vec<Offset> = topic
                        .partitions
                        .iter()
                        .zip(committed)
                        .map(|(log, committed)| match (committed, self.start) {
                            (Some(offset), _) => offset.max(log.base),
                            (None, StartAt::Earliest) => log.base,
                            (None, StartAt::Latest) => log.high(),
                        })
                        .collect();
                    let assigned = start
                        .iter()
                        .enumerate()
                        .map(|(index, &offset)| {
                            let position = positions[index]
                                .clone()
                                .filter(|position| position.offset == offset)
                                .unwrap_or_else(|| Position::at(offset));
                            (index as Partition, Some(position))
                        })
                        .collect();
                    self.cursors = Some(start);
                    return Some(Ok(ChannelEvent::Assigned(assigned)));
                };
                let mut batch = Vec::new();
                for (index, log) in topic.partitions.iter().enumerate() {
                    self.stats.set_end(index as Partition, log.high());
                    let cursor = &mut cursors[index];
                    *cursor = (*cursor).max(log.base);
                    let skip = (*cursor - log.base) as usize;
                    let room = self.log.limits.max_batch.saturating_sub(batch.len());
                    let before = batch.len();
                    batch.extend(log.records.iter().skip(skip).take(room).cloned());
                    *cursor += (batch.len() - before) as Offset;
                }
                if !batch.is_empty() {
                    return Some(Ok(ChannelEvent::Records(batch)));
                }
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct MemoryCommitter {
    log: MemoryLog,
    topic: String,
    group: String,
    member: u64,
}

impl Committer for MemoryCommitter {
    fn commit(&self, positions: &[(Partition, Position)]) -> Result<(), ChannelError> {
        let mut released = Vec::new();
        let mut state = self.log.lock();
        let topic = state.topic(&self.topic)?;
        // A member that lost the group must not move its offsets (Kafka refuses such commits too).
        if topic.group(&self.group).member != Some(self.member) {
            return Ok(());
        }
        let freed = topic.commit(&self.group, positions, &mut released)?;
        state.bytes -= freed;
        drop(state);
        drop(released);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::DEFAULT_MAX_TTL;
    use chrono::Utc;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use futures::StreamExt;

    fn envelope(id: &str) -> Envelope {
        let event = EventBuilderV10::new()
            .id(id)
            .source("/test")
            .ty("t")
            .build()
            .unwrap();
        Envelope::admit(event, DEFAULT_MAX_TTL, Utc::now()).unwrap()
    }

    async fn log_with_topic(limits: MemoryLimits) -> MemoryLog {
        let log = MemoryLog::new(limits);
        log.ensure_topic(&TopicSpec::new("t", 1)).await.unwrap();
        log
    }

    async fn next(subscription: &mut Subscription) -> ChannelEvent {
        tokio::time::timeout(Duration::from_secs(2), subscription.events.next())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap()
    }

    fn ids(event: ChannelEvent) -> Vec<String> {
        match event {
            ChannelEvent::Records(records) => records
                .iter()
                .map(|r| r.envelope.id().to_string())
                .collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_group_resumes_at_its_committed_offset() {
        let log = log_with_topic(MemoryLimits::default()).await;
        log.append("t", vec![envelope("a"), envelope("b"), envelope("c")])
            .await
            .unwrap();
        let mut first = log.subscribe("t", "g", StartAt::Earliest).unwrap();
        assert!(
            matches!(next(&mut first).await, ChannelEvent::Assigned(ref a) if a == &vec![(0, Some(Position::at(0)))])
        );
        assert_eq!(ids(next(&mut first).await), vec!["a", "b", "c"]);
        first.committer.commit(&[(0, Position::at(1))]).unwrap();

        let mut second = log.subscribe("t", "g", StartAt::Earliest).unwrap();
        assert!(
            matches!(next(&mut first).await, ChannelEvent::Revoked(_)),
            "the old member loses the group"
        );
        assert!(
            matches!(next(&mut second).await, ChannelEvent::Assigned(ref a) if a == &vec![(0, Some(Position::at(1)))])
        );
        assert_eq!(ids(next(&mut second).await), vec!["b", "c"]);
    }

    #[tokio::test]
    async fn a_new_group_at_latest_sees_only_new_records() {
        let log = log_with_topic(MemoryLimits::default()).await;
        log.append("t", vec![envelope("old")]).await.unwrap();
        let mut subscription = log.subscribe("t", "g", StartAt::Latest).unwrap();
        next(&mut subscription).await;
        log.append("t", vec![envelope("new")]).await.unwrap();
        assert_eq!(ids(next(&mut subscription).await), vec!["new"]);
    }

    #[tokio::test]
    async fn committed_records_are_dropped_and_a_full_partition_refuses_appends() {
        let limits = MemoryLimits {
            max_records_per_partition: 2,
            ..MemoryLimits::default()
        };
        let log = log_with_topic(limits).await;
        let subscription = log.subscribe("t", "g", StartAt::Earliest).unwrap();
        log.append("t", vec![envelope("a"), envelope("b")])
            .await
            .unwrap();
        assert!(matches!(
            log.append("t", vec![envelope("c")]).await,
            Err(AppendError::Full { .. })
        ));
        subscription
            .committer
            .commit(&[(0, Position::at(1))])
            .unwrap();
        log.append("t", vec![envelope("c")]).await.unwrap();
        let offsets = log.offsets("t", "g").await.unwrap();
        assert_eq!(offsets[0].low, 1);
        assert_eq!(offsets[0].high, 3);
        assert_eq!(offsets[0].committed, Some(1));
    }

    #[tokio::test]
    async fn a_batch_that_does_not_fit_is_refused_whole() {
        let limits = MemoryLimits {
            max_records_per_partition: 3,
            ..MemoryLimits::default()
        };
        let log = log_with_topic(limits).await;
        log.append("t", vec![envelope("a"), envelope("b")])
            .await
            .unwrap();
        let refused = log
            .append("t", vec![envelope("c"), envelope("d")])
            .await
            .unwrap_err();
        assert!(matches!(refused, AppendError::Full { .. }), "{refused}");
        let offsets = log.offsets("t", "g").await.unwrap();
        assert_eq!(
            offsets[0].high, 2,
            "nothing of the refused batch was stored"
        );
        let never = log
            .append("t", (0..4).map(|i| envelope(&i.to_string())).collect())
            .await
            .unwrap_err();
        assert!(
            matches!(never, AppendError::TooLarge { events: 4, .. }),
            "{never}"
        );
    }

    #[tokio::test]
    async fn the_byte_budget_refuses_what_would_pass_it_and_frees_what_was_delivered() {
        let one = envelope("x").footprint();
        let limits = MemoryLimits {
            max_bytes: one * 2,
            ..MemoryLimits::default()
        };
        let log = log_with_topic(limits).await;
        let subscription = log.subscribe("t", "g", StartAt::Earliest).unwrap();
        log.append("t", vec![envelope("a"), envelope("b")])
            .await
            .unwrap();
        let full = log.append("t", vec![envelope("c")]).await.unwrap_err();
        match &full {
            AppendError::Full { reason, .. } => {
                assert!(reason.contains("--memory-max-bytes"), "{reason}")
            }
            other => panic!("expected Full, got {other}"),
        }
        subscription
            .committer
            .commit(&[(0, Position::at(1))])
            .unwrap();
        log.append("t", vec![envelope("c")]).await.unwrap();
        let too_big = log
            .append("t", (0..3).map(|i| envelope(&i.to_string())).collect())
            .await
            .unwrap_err();
        assert!(matches!(too_big, AppendError::TooLarge { .. }), "{too_big}");
    }

    #[tokio::test]
    async fn commits_never_move_backwards() {
        let log = log_with_topic(MemoryLimits::default()).await;
        log.commit_offsets("t", "g", &[(0, 5)]).await.unwrap();
        log.commit_offsets("t", "g", &[(0, 2)]).await.unwrap();
        assert_eq!(log.offsets("t", "g").await.unwrap()[0].committed, Some(5));
    }

    #[tokio::test]
    async fn read_serves_any_retained_offset_without_a_group() {
        let log = log_with_topic(MemoryLimits::default()).await;
        log.append("t", (0..5).map(|i| envelope(&i.to_string())).collect())
            .await
            .unwrap();
        let read = log.read("t", 0, 2, 2).await.unwrap();
        let offsets: Vec<Offset> = read.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![2, 3]);
        assert_eq!(read.next, 4);
        let past_the_end = log.read("t", 0, 5, 2).await.unwrap();
        assert!(past_the_end.records.is_empty());
        assert_eq!(
            past_the_end.next, 5,
            "a read that saw nothing does not move"
        );
        assert!(log.read("t", 7, 0, 1).await.is_err());
    }

    #[tokio::test]
    async fn appending_to_an_unknown_topic_is_an_error() {
        let log = MemoryLog::default();
        assert!(matches!(
            log.append("nope", vec![envelope("a")]).await,
            Err(AppendError::UnknownTopic(_))
        ));
    }
}
