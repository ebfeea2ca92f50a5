//! `Ledger`: what a broker's dispatcher owes its triggers, and which position it may commit.
//!
//! The dispatcher reads each partition once for all triggers (the *shared read*) and hands every
//! record to the triggers whose filters match. A trigger may have at most `capacity` deliveries
//! outstanding; when a record finds it full, the trigger **falls behind** on that partition: the
//! shared read goes on without it, and the trigger later **catches up on its own** with reads of
//! the partition from its *cursor*, until the cursor reaches the shared read's position and the
//! shared read serves it again.
//!
//! ```text
//!   partition p      0 1 2 3 4 5 6 7 8 9 10 11 12        (the log)
//!   shared read                            ^ position 12  (records < 12 registered in the tracker)
//!   trigger A        ....... all handed to A ........
//!   trigger B              ^ cursor 3: B fell behind at 3 and reads 3.. itself
//!
//!   committable(p) = Position { offset: tracker(p).committable(),   first shared record with a
//!                                                                   delivery not yet final
//!                               behind: { B: 3 } }                  where each trigger behind
//!                                                                   that offset stands
//! ```
//!
//! A trigger's place is its cursor, or the oldest record it read itself whose delivery is not
//! final yet, whichever is first. The committed position carries the places of the triggers
//! behind its offset, so a slow trigger never holds the shared commit back: after a rebalance or
//! a restart, the next reader starts the shared read at the offset (the fast triggers get nothing
//! twice) and each trigger behind at its own place.
//!
//! The law, property-tested below over random interleavings of shared reads, catch-up reads that
//! return records, nothing (a timeout) or an error, settled deliveries, releases, revocations and
//! reassignments: **below a committed position, every record a trigger wants is finished by it
//! (delivered, dead-lettered or parked), or the position names the trigger behind at or before
//! that record**. Four rules make it hold:
//!
//! - a catch-up read that returns nothing is not "caught up": only a cursor that reached the
//!   shared position is;
//! - nothing is committed for a partition before the shared read's position is known: where a
//!   consumer really starts (the group's committed offset, or where its reset policy sends it)
//!   is learnt from what it reads, not guessed;
//! - a delivery a trigger read itself holds that trigger's place, not the shared offset;
//! - a revoked partition is forgotten whole; whoever reads it next starts from its committed
//!   position, and deliveries still running for it only cause duplicates.
//!
//! Pure: no I/O, no actors. [`crate::actor::DispatcherActor`] feeds it what happened and does
//! what it answers (deliver, read, commit).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::channel::{Offset, Partition, Position, ReadBatch, Record};
use crate::offsets::OffsetTracker;

/// The bookkeeping of one broker's dispatcher, generic over the trigger key.
#[derive(Debug, Clone)]
pub struct Ledger<T> {
    /// Deliveries a trigger may have outstanding before it falls behind.
    capacity: usize,
    partitions: BTreeMap<Partition, PartitionBook<T>>,
    /// Looked up a few times per record and per settlement: keyed with a fast hash (the keys are
    /// the node's own trigger names and record positions, nothing a client chooses).
    triggers: FxHashMap<T, TriggerBook>,
}

#[derive(Debug, Clone)]
struct PartitionBook<T> {
    /// Records the shared read took and what their shared deliveries still owe. `None` until
    /// the shared read's position is known (see [`Ledger::assign`]).
    tracker: Option<OffsetTracker>,
    /// The last position committed, or the group's committed position at assignment.
    committed: Option<Position<T>>,
    /// Being handed to another reader (see [`Ledger::release`]): it takes no more records and
    /// starts no more reads; what is outstanding finishes.
    releasing: bool,
}

#[derive(Debug, Clone, Default)]
struct TriggerBook {
    /// Deliveries handed out and not yet final.
    outstanding: FxHashSet<(Partition, Offset)>,
    /// Of those, the ones it read itself (catching up), per partition: they hold its place, not
    /// the shared offset.
    reading: BTreeMap<Partition, BTreeSet<Offset>>,
    /// Partitions on which the trigger fell behind.
    lagging: BTreeMap<Partition, Lag>,
}

impl TriggerBook {
    /// Where the trigger stands on `partition` when that is behind the shared read: its cursor,
    /// or the oldest record it read itself and has not finished.
    fn place(&self, partition: Partition) -> Option<Offset> {
        let cursor = self.lagging.get(&partition).map(|lag| lag.cursor);
        let reading = self
            .reading
            .get(&partition)
            .and_then(|offsets| offsets.first().copied());
        match (cursor, reading) {
            (Some(cursor), Some(reading)) => Some(cursor.min(reading)),
            (place, None) | (None, place) => place,
        }
    }
}

#[derive(Debug, Clone)]
struct Lag {
    /// The next offset the trigger has to read itself.
    cursor: Offset,
    state: LagState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LagState {
    /// A read may start.
    Idle,
    /// A read from the cursor is under way.
    Reading,
    /// The last read returned nothing or failed: wait for [`Ledger::resume`].
    Paused,
}

/// What the shared read does with a record for one trigger that wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Hand it over now (the delivery is outstanding from here on).
    Deliver,
    /// The trigger lags on this partition: it will read the record itself.
    Lagging,
    /// The trigger is full: it falls behind here and will read this record itself.
    FellBehind,
}

/// How a catch-up read left the trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// The cursor reached the shared read's position: the shared read serves the trigger again.
    CaughtUp,
    /// Progress, or no room left for what came back, and more to read: [`Ledger::reads_due`] has
    /// the next read once there is room.
    Behind,
    /// Nothing came back (a timeout, or records not readable yet): read again after a pause,
    /// with [`Ledger::resume`]. Never taken for "caught up".
    Empty,
    /// The read was for a position the ledger no longer has (revoked, caught up meanwhile).
    Stale,
}

/// A partition's positions, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: Partition,
    /// The next offset the shared read takes (`None`: not known yet).
    pub position: Option<Offset>,
    /// The first offset some trigger still needs: below it everything is final for every
    /// trigger (`None`: not known yet).
    pub floor: Option<Offset>,
    /// The offset of the last position committed.
    pub committed: Option<Offset>,
    /// Deliveries outstanding for records of the partition.
    pub outstanding: u64,
}

/// A trigger's standing, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TriggerProgress {
    /// Deliveries handed out and not yet final (queued or in flight in the trigger).
    pub outstanding: usize,
    /// Partitions on which it fell behind.
    pub lagging_partitions: usize,
    /// Records between its cursors and the shared read's positions, summed over partitions.
    pub behind: u64,
}

impl<T: Clone + Eq + Hash + Ord> Ledger<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            partitions: BTreeMap::new(),
            triggers: FxHashMap::default(),
        }
    }

    /// The partition is now this member's. `committed` is the group's committed position: the
    /// shared read starts at its offset, its position is known at once, and each trigger it
    /// names as behind lags from its place there (a trigger no longer here is forgotten). `None`
    /// when the group has none: the position is learnt from the first record the shared read
    /// takes, and until then nothing of the partition is committed.
    pub fn assign(&mut self, partition: Partition, committed: Option<Position<T>>) {
        self.forget(partition);
        if let Some(position) = &committed {
            for (trigger, &place) in &position.behind {
                if let Some(book) = self.triggers.get_mut(trigger) {
                    if place < position.offset {
                        book.lagging.insert(
                            partition,
                            Lag {
                                cursor: place,
                                state: LagState::Idle,
                            },
                        );
                    }
                }
            }
        }
        self.partitions.insert(
            partition,
            PartitionBook {
                tracker: committed
                    .as_ref()
                    .map(|position| OffsetTracker::new(position.offset)),
                committed,
                releasing: false,
            },
        );
    }

    /// The partition is no longer this member's: everything about it is forgotten. Deliveries
    /// still running for it settle unnoticed; whoever reads it next starts from its committed
    /// offset.
    pub fn revoke(&mut self, partition: Partition) {
        self.forget(partition);
    }

    fn forget(&mut self, partition: Partition) {
        self.partitions.remove(&partition);
        for book in self.triggers.values_mut() {
            book.outstanding.retain(|(p, _)| *p != partition);
            book.reading.remove(&partition);
            book.lagging.remove(&partition);
        }
    }

    pub fn is_assigned(&self, partition: Partition) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Whether the shared read's record at `offset` is to be dispatched: its partition is
    /// assigned, and the record is not below the partition's known position (already taken, or
    /// finished by the partition's previous reader, which committed past it).
    pub fn takes(&self, partition: Partition, offset: Offset) -> bool {
        self.partitions.get(&partition).is_some_and(|book| {
            !book.releasing
                && book
                    .tracker
                    .as_ref()
                    .is_none_or(|tracker| offset >= tracker.read_up_to())
        })
    }

    /// The partition is about to go to another reader (a rebalance, or this node stopping): it
    /// takes no more records and its lagging triggers start no more reads, while the deliveries
    /// already handed out finish. Its commit stays where the law puts it; whoever reads the
    /// partition next starts there.
    pub fn release(&mut self, partition: Partition) {
        if let Some(book) = self.partitions.get_mut(&partition) {
            book.releasing = true;
        }
    }

    /// Whether nothing handed out for `partition` is still running (true for a partition this
    /// ledger does not hold).
    pub fn is_settled(&self, partition: Partition) -> bool {
        let shared = self
            .partitions
            .get(&partition)
            .and_then(|book| book.tracker.as_ref())
            .is_none_or(|tracker| tracker.outstanding() == 0);
        shared
            && self
                .triggers
                .values()
                .all(|book| !book.reading.contains_key(&partition))
    }

    pub fn assigned(&self) -> impl Iterator<Item = Partition> + '_ {
        self.partitions.keys().copied()
    }

    /// A new trigger. With `from_start` it owes every record still held of the partitions
    /// assigned now: it lags on each from offset 0 and reads them itself.
    pub fn add_trigger(&mut self, trigger: T, from_start: bool) {
        let mut book = TriggerBook::default();
        if from_start {
            for &partition in self.partitions.keys() {
                book.lagging.insert(
                    partition,
                    Lag {
                        cursor: 0,
                        state: LagState::Idle,
                    },
                );
            }
        }
        self.triggers.insert(trigger, book);
    }

    /// A trigger that went away owes nothing any more.
    pub fn remove_trigger(&mut self, trigger: &T) {
        let Some(book) = self.triggers.remove(trigger) else {
            return;
        };
        for (partition, offset) in book.outstanding {
            let read_itself = book
                .reading
                .get(&partition)
                .is_some_and(|offsets| offsets.contains(&offset));
            if !read_itself {
                if let Some(tracker) = self.tracker_mut(partition) {
                    tracker.complete(offset);
                }
            }
        }
    }

    pub fn has_trigger(&self, trigger: &T) -> bool {
        self.triggers.contains_key(trigger)
    }

    /// The next offset `trigger` reads itself on `partition`, when it lags there.
    pub fn cursor(&self, trigger: &T, partition: Partition) -> Option<Offset> {
        self.triggers
            .get(trigger)?
            .lagging
            .get(&partition)
            .map(|lag| lag.cursor)
    }

    /// Whether the next record handed to `trigger` would make it fall behind.
    pub fn is_full(&self, trigger: &T) -> bool {
        self.triggers
            .get(trigger)
            .is_some_and(|book| book.outstanding.len() >= self.capacity)
    }

    pub fn is_lagging(&self, trigger: &T, partition: Partition) -> bool {
        self.triggers
            .get(trigger)
            .is_some_and(|book| book.lagging.contains_key(&partition))
    }

    fn tracker_mut(&mut self, partition: Partition) -> Option<&mut OffsetTracker> {
        self.partitions
            .get_mut(&partition)
            .and_then(|book| book.tracker.as_mut())
    }

    /// The shared read took the record at `offset`; `wanting` are the triggers whose filters
    /// match it. `each` learns, for each of them, whether to hand the record over now. False
    /// when the record is not to be dispatched at all (see [`Ledger::takes`]): its partition is
    /// not assigned (a revoked partition's last records), or it lies below the partition's known
    /// position.
    pub fn on_record<'t>(
        &mut self,
        partition: Partition,
        offset: Offset,
        wanting: impl IntoIterator<Item = &'t T>,
        mut each: impl FnMut(&'t T, Handoff),
    ) -> bool
    where
        T: 't,
    {
        let Some(book) = self.partitions.get_mut(&partition) else {
            return false;
        };
        let tracker = book
            .tracker
            .get_or_insert_with(|| OffsetTracker::new(offset));
        if offset < tracker.read_up_to() {
            return false;
        }
        let mut owed = 0;
        for trigger in wanting {
            let Some(trigger_book) = self.triggers.get_mut(trigger) else {
                continue;
            };
            let handoff = if trigger_book.lagging.contains_key(&partition) {
                Handoff::Lagging
            } else if trigger_book.outstanding.len() >= self.capacity {
                trigger_book.lagging.insert(
                    partition,
                    Lag {
                        cursor: offset,
                        state: LagState::Idle,
                    },
                );
                Handoff::FellBehind
            } else {
                trigger_book.outstanding.insert((partition, offset));
                owed += 1;
                Handoff::Deliver
            };
            each(trigger, handoff);
        }
        tracker.register(offset, owed);
        true
    }

    /// A delivery became final. False when the ledger did not expect it (its partition was
    /// revoked, or its trigger removed, since it was handed out).
    pub fn settle(&mut self, trigger: &T, partition: Partition, offset: Offset) -> bool {
        let Some(book) = self.triggers.get_mut(trigger) else {
            return false;
        };
        if !book.outstanding.remove(&(partition, offset)) {
            return false;
        }
        if let Some(offsets) = book.reading.get_mut(&partition) {
            if offsets.remove(&offset) {
                if offsets.is_empty() {
                    book.reading.remove(&partition);
                }
                return true;
            }
        }
        if let Some(tracker) = self.tracker_mut(partition) {
            tracker.complete(offset);
        }
        true
    }

    /// The catch-up reads `trigger` may start now, as (partition, from); each is marked as under
    /// way. None while the trigger is more than half full (so that it reads in batches), nor on a
    /// partition whose shared position is not known yet (there would be nothing to stop at).
    pub fn reads_due(&mut self, trigger: &T) -> Vec<(Partition, Offset)> {
        let Some(book) = self.triggers.get_mut(trigger) else {
            return Vec::new();
        };
        if book.lagging.is_empty() || book.outstanding.len() * 2 > self.capacity {
            return Vec::new();
        }
        let partitions = &self.partitions;
        book.lagging
            .iter_mut()
            .filter(|(partition, lag)| {
                lag.state == LagState::Idle
                    && partitions
                        .get(partition)
                        .is_some_and(|book| book.tracker.is_some() && !book.releasing)
            })
            .map(|(&partition, lag)| {
                lag.state = LagState::Reading;
                (partition, lag.cursor)
            })
            .collect()
    }

    /// A catch-up read of `trigger` on `partition` from `from` returned `batch`. `wants` says
    /// whether the trigger's filter takes a record; `each` gets the records to hand over now.
    pub fn on_read<'r>(
        &mut self,
        trigger: &T,
        partition: Partition,
        from: Offset,
        batch: &'r ReadBatch,
        mut wants: impl FnMut(&Record) -> bool,
        mut each: impl FnMut(&'r Record),
    ) -> CatchUp {
        let Some(book) = self.triggers.get_mut(trigger) else {
            return CatchUp::Stale;
        };
        let Some(tracker) = self
            .partitions
            .get_mut(&partition)
            .filter(|book| !book.releasing)
            .and_then(|book| book.tracker.as_mut())
        else {
            return CatchUp::Stale;
        };
        let Some(lag) = book.lagging.get_mut(&partition) else {
            return CatchUp::Stale;
        };
        if lag.state != LagState::Reading || lag.cursor != from {
            return CatchUp::Stale;
        }
        let shared = tracker.read_up_to();
        let mut cursor = lag.cursor;
        let mut full = false;
        for record in &batch.records {
            if record.offset < cursor {
                continue;
            }
            if record.offset >= shared {
                break;
            }
            if book.outstanding.len() >= self.capacity {
                full = true;
                break;
            }
            if wants(record) {
                book.outstanding.insert((partition, record.offset));
                book.reading
                    .entry(partition)
                    .or_default()
                    .insert(record.offset);
                each(record);
            }
            cursor = record.offset + 1;
        }
        if !full {
            // Offsets the read looked at without an event there (gaps, records that are not
            // events) are behind the cursor too; what lies at or past the shared position is
            // the shared read's.
            cursor = cursor.max(batch.next.min(shared));
        }
        if cursor >= shared {
            book.lagging.remove(&partition);
            return CatchUp::CaughtUp;
        }
        let progressed = cursor > lag.cursor;
        lag.cursor = cursor;
        if progressed || full {
            // A trigger that had no room left reads again once it has (its other reads filled
            // it): that is not an empty read.
            lag.state = LagState::Idle;
            CatchUp::Behind
        } else {
            lag.state = LagState::Paused;
            CatchUp::Empty
        }
    }

    /// A catch-up read failed: the trigger reads again from the same cursor after
    /// [`Ledger::resume`].
    pub fn read_failed(&mut self, trigger: &T, partition: Partition, from: Offset) {
        if let Some(lag) = self
            .triggers
            .get_mut(trigger)
            .and_then(|book| book.lagging.get_mut(&partition))
            .filter(|lag| lag.cursor == from)
        {
            lag.state = LagState::Paused;
        }
    }

    /// Lets reads paused by an empty or failed read start again.
    pub fn resume(&mut self, trigger: &T, partition: Partition) {
        if let Some(lag) = self
            .triggers
            .get_mut(trigger)
            .and_then(|book| book.lagging.get_mut(&partition))
            .filter(|lag| lag.state == LagState::Paused)
        {
            lag.state = LagState::Idle;
        }
    }

    /// The position each partition may commit now, where it changed since the last commit.
    pub fn committable(&self) -> Vec<(Partition, Position<T>)> {
        self.partitions
            .iter()
            .filter_map(|(&partition, book)| {
                let position = self.position(partition, book)?;
                let moved = book.committed.as_ref().is_none_or(|done| {
                    position.offset > done.offset
                        || (position.offset == done.offset && position.behind != done.behind)
                });
                moved.then_some((partition, position))
            })
            .collect()
    }

    fn position(&self, partition: Partition, book: &PartitionBook<T>) -> Option<Position<T>> {
        let offset = book.tracker.as_ref()?.committable();
        let behind = self
            .triggers
            .iter()
            .filter_map(|(trigger, trigger_book)| {
                let place = trigger_book.place(partition)?;
                (place < offset).then(|| (trigger.clone(), place))
            })
            .collect();
        Some(Position { offset, behind })
    }

    /// These positions were committed.
    pub fn committed(&mut self, positions: &[(Partition, Position<T>)]) {
        for (partition, position) in positions {
            if let Some(book) = self.partitions.get_mut(partition) {
                if book
                    .committed
                    .as_ref()
                    .is_none_or(|done| position.offset >= done.offset)
                {
                    book.committed = Some(position.clone());
                }
            }
        }
    }

    /// Every assigned partition's positions.
    pub fn partitions(&self) -> Vec<PartitionProgress> {
        self.partitions
            .iter()
            .map(|(&partition, book)| PartitionProgress {
                partition,
                position: book.tracker.as_ref().map(OffsetTracker::read_up_to),
                floor: self
                    .position(partition, book)
                    .map(|position| position.floor()),
                committed: book.committed.as_ref().map(|position| position.offset),
                outstanding: book.tracker.as_ref().map_or(0, OffsetTracker::outstanding),
            })
            .collect()
    }

    /// Where a trigger stands.
    pub fn trigger(&self, trigger: &T) -> TriggerProgress {
        let Some(book) = self.triggers.get(trigger) else {
            return TriggerProgress::default();
        };
        let behind = book
            .lagging
            .iter()
            .map(|(partition, lag)| {
                let position = self
                    .partitions
                    .get(partition)
                    .and_then(|book| book.tracker.as_ref())
                    .map_or(lag.cursor, OffsetTracker::read_up_to);
                (position - lag.cursor).max(0) as u64
            })
            .sum();
        TriggerProgress {
            outstanding: book.outstanding.len(),
            lagging_partitions: book.lagging.len(),
            behind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn record(partition: Partition, offset: Offset) -> Record {
        use cloudevents::EventBuilder as _;
        let event = cloudevents::EventBuilderV10::new()
            .id(offset.to_string())
            .source("/ledger")
            .ty("t")
            .build()
            .expect("an event");
        Record {
            partition,
            offset,
            envelope: Arc::new(Envelope::from_stored(event)),
        }
    }

    fn take(
        ledger: &mut Ledger<&'static str>,
        offset: Offset,
        wanting: &[&'static str],
    ) -> Vec<(&'static str, Handoff)> {
        let mut handed = Vec::new();
        ledger.on_record(0, offset, wanting, |trigger, handoff| {
            handed.push((*trigger, handoff))
        });
        handed
    }

    /// A position at `offset` with these triggers behind it.
    fn at(offset: Offset, behind: &[(&'static str, Offset)]) -> Position<&'static str> {
        Position {
            offset,
            behind: behind.iter().copied().collect(),
        }
    }

    #[test]
    fn a_full_trigger_falls_behind_and_the_commit_goes_on_with_its_place() {
        let mut ledger = Ledger::new(2);
        ledger.assign(0, Some(Position::at(0)));
        ledger.add_trigger("slow", false);
        ledger.add_trigger("fast", false);
        for offset in 0..5 {
            let handed = take(&mut ledger, offset, &["slow", "fast"]);
            assert!(handed.contains(&("fast", Handoff::Deliver)) || offset >= 2);
            ledger.settle(&"fast", 0, offset);
        }
        // slow took 0 and 1, fell behind at 2.
        assert!(ledger.is_lagging(&"slow", 0));
        ledger.settle(&"slow", 0, 0);
        ledger.settle(&"slow", 0, 1);
        assert_eq!(ledger.committable(), vec![(0, at(5, &[("slow", 2)]))]);
    }

    #[test]
    fn a_committed_place_makes_the_next_reader_start_the_trigger_there() {
        let mut ledger = Ledger::new(10);
        ledger.add_trigger("slow", false);
        ledger.add_trigger("fast", false);
        ledger.add_trigger("gone", false);
        ledger.assign(0, Some(at(50, &[("slow", 20), ("gone", 30)])));
        assert!(ledger.is_lagging(&"slow", 0));
        assert!(!ledger.is_lagging(&"fast", 0));
        assert_eq!(ledger.reads_due(&"slow"), vec![(0, 20)]);
        assert_eq!(
            take(&mut ledger, 50, &["slow", "fast"]),
            vec![("slow", Handoff::Lagging), ("fast", Handoff::Deliver)]
        );
    }

    #[test]
    fn what_a_trigger_read_itself_holds_its_place_not_the_shared_offset() {
        let mut ledger = Ledger::new(10);
        ledger.add_trigger("t", false);
        ledger.assign(0, Some(at(4, &[("t", 0)])));
        for offset in 4..8 {
            take(&mut ledger, offset, &[]);
        }
        assert_eq!(ledger.reads_due(&"t"), vec![(0, 0)]);
        let batch = ReadBatch {
            records: (0..8).map(|offset| record(0, offset)).collect(),
            next: 8,
        };
        let outcome = ledger.on_read(&"t", 0, 0, &batch, |_| true, |_| {});
        assert_eq!(outcome, CatchUp::CaughtUp);
        // Caught up, but its deliveries of 0..8 are not final: its place is 0.
        assert_eq!(ledger.committable(), vec![(0, at(8, &[("t", 0)]))]);
        ledger.committed(&ledger.committable());
        for offset in 0..8 {
            ledger.settle(&"t", 0, offset);
        }
        assert_eq!(ledger.committable(), vec![(0, at(8, &[]))]);
    }

    #[test]
    fn an_empty_catch_up_read_is_not_caught_up() {
        let mut ledger = Ledger::new(1);
        ledger.assign(0, Some(Position::at(0)));
        ledger.add_trigger("t", false);
        for offset in 0..4 {
            take(&mut ledger, offset, &["t"]);
        }
        ledger.settle(&"t", 0, 0);
        assert_eq!(ledger.reads_due(&"t"), vec![(0, 1)]);
        let empty = ReadBatch {
            records: Vec::new(),
            next: 1,
        };
        let outcome = ledger.on_read(&"t", 0, 1, &empty, |_| true, |_| {});
        assert_eq!(outcome, CatchUp::Empty);
        assert!(ledger.is_lagging(&"t", 0));
        assert_eq!(ledger.committable(), vec![(0, at(4, &[("t", 1)]))]);
        // Paused until resumed.
        assert!(ledger.reads_due(&"t").is_empty());
        ledger.resume(&"t", 0);
        assert_eq!(ledger.reads_due(&"t"), vec![(0, 1)]);
    }

    #[test]
    fn a_catch_up_read_stops_at_the_shared_position() {
        let mut ledger = Ledger::new(10);
        ledger.assign(0, Some(Position::at(0)));
        ledger.add_trigger("t", true);
        for offset in 0..3 {
            assert_eq!(
                take(&mut ledger, offset, &["t"]),
                vec![("t", Handoff::Lagging)]
            );
        }
        assert_eq!(ledger.reads_due(&"t"), vec![(0, 0)]);
        let batch = ReadBatch {
            records: (0..6).map(|offset| record(0, offset)).collect(),
            next: 6,
        };
        let mut handed = Vec::new();
        let outcome = ledger.on_read(&"t", 0, 0, &batch, |_| true, |r| handed.push(r.offset));
        assert_eq!(outcome, CatchUp::CaughtUp);
        assert_eq!(handed, vec![0, 1, 2]);
        assert_eq!(take(&mut ledger, 3, &["t"]), vec![("t", Handoff::Deliver)]);
    }

    #[test]
    fn nothing_is_committed_before_the_start_is_known() {
        let mut ledger: Ledger<&str> = Ledger::new(10);
        ledger.assign(0, None);
        assert!(ledger.committable().is_empty());
        take(&mut ledger, 40, &[]);
        assert_eq!(ledger.committable(), vec![(0, at(41, &[]))]);
    }

    #[test]
    fn records_below_a_known_start_are_not_dispatched() {
        let mut ledger = Ledger::new(10);
        ledger.assign(0, Some(Position::at(10)));
        ledger.add_trigger("t", false);
        assert!(!ledger.on_record(0, 7, &["t"], |_, _| panic!("not handed")));
        assert!(ledger.on_record(0, 10, &["t"], |_, _| {}));
    }

    #[test]
    fn a_revoked_partition_is_forgotten_and_its_settlements_ignored() {
        let mut ledger = Ledger::new(10);
        ledger.assign(0, Some(Position::at(0)));
        ledger.add_trigger("t", false);
        take(&mut ledger, 0, &["t"]);
        ledger.revoke(0);
        assert!(!ledger.settle(&"t", 0, 0));
        assert!(ledger.committable().is_empty());
        assert_eq!(ledger.trigger(&"t").outstanding, 0);
    }

    #[test]
    fn a_removed_trigger_releases_what_it_owed() {
        let mut ledger = Ledger::new(10);
        ledger.assign(0, Some(Position::at(0)));
        ledger.add_trigger("t", false);
        take(&mut ledger, 0, &["t"]);
        assert_eq!(ledger.committable(), Vec::new());
        ledger.remove_trigger(&"t");
        assert_eq!(ledger.committable(), vec![(0, at(1, &[]))]);
    }

    /// One step of the world the dispatcher lives in.
    #[derive(Debug, Clone)]
    enum Step {
        /// A producer appends a record to a partition, wanted by these triggers (bit set).
        Append { partition: usize, wanted_by: u8 },
        /// The shared read takes up to `count` records of a partition.
        SharedRead { partition: usize, count: usize },
        /// A catch-up read that may start starts; its result comes with `Finish`.
        StartRead { trigger: usize },
        /// The oldest read under way returns up to `count` records (0: a timeout), or fails.
        FinishRead { count: usize, fails: bool },
        /// Pauses end.
        Resume,
        /// One outstanding delivery (picked by `pick`) becomes final.
        Settle { pick: prop::sample::Index },
        /// The dispatcher commits.
        Commit,
        /// A partition is revoked and (maybe later) assigned again, from its committed offset,
        /// its start known or not; before that, with `release`, it was released first (the
        /// reads and settlements in between happen while it is released).
        Rebalance { partition: usize, start_known: bool },
        /// A partition is released (about to be revoked): records and reads of it stop.
        Release { partition: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..2usize, 0u8..8).prop_map(|(partition, wanted_by)| Step::Append { partition, wanted_by }),
            3 => (0..2usize, 1..6usize).prop_map(|(partition, count)| Step::SharedRead { partition, count }),
            2 => (0..3usize).prop_map(|trigger| Step::StartRead { trigger }),
            2 => (0..5usize, prop::bool::weighted(0.15)).prop_map(|(count, fails)| Step::FinishRead { count, fails }),
            1 => Just(Step::Resume),
            5 => any::<prop::sample::Index>().prop_map(|pick| Step::Settle { pick }),
            2 => Just(Step::Commit),
            1 => (0..2usize, any::<bool>()).prop_map(|(partition, start_known)| Step::Rebalance { partition, start_known }),
            1 => (0..2usize).prop_map(|partition| Step::Release { partition }),
        ]
    }

    const TRIGGERS: [&str; 3] = ["a", "b", "c"];

    /// The world: the log, the group's committed positions, what each trigger has finished, the
    /// consumer's position per partition, and the ledger under test.
    struct World {
        log: Vec<Vec<u8>>,
        committed: Vec<Position<usize>>,
        finished: HashSet<(usize, Partition, Offset)>,
        position: Vec<Offset>,
        reads: Vec<(usize, Partition, Offset)>,
        outstanding: Vec<(usize, Partition, Offset)>,
        /// Partitions released and not yet handed over.
        released: [bool; 2],
        ledger: Ledger<usize>,
    }

    impl World {
        fn new(capacity: usize) -> Self {
            let mut ledger = Ledger::new(capacity);
            for partition in 0..2 {
                ledger.assign(partition, Some(Position::at(0)));
            }
            for trigger in 0..TRIGGERS.len() {
                ledger.add_trigger(trigger, false);
            }
            Self {
                log: vec![Vec::new(), Vec::new()],
                committed: vec![Position::at(0), Position::at(0)],
                finished: HashSet::new(),
                position: vec![0, 0],
                reads: Vec::new(),
                outstanding: Vec::new(),
                released: [false; 2],
                ledger,
            }
        }

        fn wants(&self, trigger: usize, partition: Partition, offset: Offset) -> bool {
            self.log[partition as usize][offset as usize] & (1 << trigger) != 0
        }

        fn record(partition: Partition, offset: Offset) -> Record {
            record(partition, offset)
        }

        fn apply(&mut self, step: Step) {
            match step {
                Step::Append {
                    partition,
                    wanted_by,
                } => self.log[partition].push(wanted_by),
                Step::SharedRead { partition, count } => {
                    let p = partition as Partition;
                    if !self.ledger.is_assigned(p) {
                        return;
                    }
                    let end = (self.position[partition] + count as Offset)
                        .min(self.log[partition].len() as Offset);
                    for offset in self.position[partition]..end {
                        let wanting: Vec<usize> = (0..TRIGGERS.len())
                            .filter(|&t| self.wants(t, p, offset))
                            .collect();
                        let mut handed = Vec::new();
                        self.ledger.on_record(p, offset, &wanting, |&t, handoff| {
                            if handoff == Handoff::Deliver {
                                handed.push(t);
                            }
                        });
                        self.outstanding
                            .extend(handed.into_iter().map(|t| (t, p, offset)));
                    }
                    self.position[partition] = end;
                }
                Step::StartRead { trigger } => {
                    for (partition, from) in self.ledger.reads_due(&trigger) {
                        self.reads.push((trigger, partition, from));
                    }
                }
                Step::FinishRead { count, fails } => {
                    if self.reads.is_empty() {
                        return;
                    }
                    let (trigger, partition, from) = self.reads.remove(0);
                    if fails {
                        self.ledger.read_failed(&trigger, partition, from);
                        return;
                    }
                    let end =
                        (from + count as Offset).min(self.log[partition as usize].len() as Offset);
                    let batch = ReadBatch {
                        records: (from..end)
                            .map(|offset| Self::record(partition, offset))
                            .collect(),
                        next: end.max(from),
                    };
                    let log = &self.log;
                    let mut handed = Vec::new();
                    self.ledger.on_read(
                        &trigger,
                        partition,
                        from,
                        &batch,
                        |r| log[partition as usize][r.offset as usize] & (1 << trigger) != 0,
                        |r| handed.push(r.offset),
                    );
                    self.outstanding.extend(
                        handed
                            .into_iter()
                            .map(|offset| (trigger, partition, offset)),
                    );
                }
                Step::Resume => {
                    for trigger in 0..TRIGGERS.len() {
                        for partition in 0..2 {
                            self.ledger.resume(&trigger, partition);
                        }
                    }
                }
                Step::Settle { pick } => {
                    if !self.outstanding.is_empty() {
                        self.settle(pick.index(self.outstanding.len()));
                    }
                }
                Step::Commit => {
                    let positions = self.ledger.committable();
                    for (partition, position) in &positions {
                        self.committed[*partition as usize] = position.clone();
                    }
                    self.ledger.committed(&positions);
                }
                Step::Release { partition } => {
                    self.ledger.release(partition as Partition);
                    self.released[partition] = true;
                }
                Step::Rebalance {
                    partition,
                    start_known,
                } => {
                    let p = partition as Partition;
                    self.released[partition] = false;
                    self.ledger.revoke(p);
                    self.reads.retain(|(_, read, _)| *read != p);
                    // The new reader starts the shared read at the committed offset. Only a
                    // group with no position at all leaves the start to be learnt (a channel
                    // that cannot read a position does not hand the partition over).
                    let committed = self.committed[partition].clone();
                    self.position[partition] = committed.offset;
                    let known = start_known || !committed.behind.is_empty();
                    self.ledger.assign(p, known.then_some(committed));
                }
            }
        }

        /// The `i`th outstanding delivery becomes final: it happened, whether the ledger still
        /// cares about it or not.
        fn settle(&mut self, i: usize) {
            let (trigger, partition, offset) = self.outstanding.swap_remove(i);
            self.finished.insert((trigger, partition, offset));
            self.ledger.settle(&trigger, partition, offset);
        }

        /// The law: below each committed position, every record a trigger wants is finished by
        /// it, or the position names the trigger behind at or before that record.
        fn check(&self) -> Result<(), TestCaseError> {
            for partition in 0..2 {
                let committed = &self.committed[partition];
                for offset in 0..committed.offset {
                    for (trigger, name) in TRIGGERS.iter().enumerate() {
                        let p = partition as Partition;
                        let behind = committed
                            .behind
                            .get(&trigger)
                            .is_some_and(|&place| place <= offset);
                        if self.wants(trigger, p, offset) && !behind {
                            prop_assert!(
                                self.finished.contains(&(trigger, p, offset)),
                                "committed {:?} on partition {} but trigger {} never finished offset {}",
                                committed, partition, name, offset
                            );
                        }
                    }
                }
            }
            Ok(())
        }

        /// Runs the world to quiescence without faults: everything appended is read, delivered
        /// and committed.
        fn drain(&mut self) -> Result<(), TestCaseError> {
            // A released partition goes to its next reader.
            for partition in 0..2 {
                if self.released[partition] {
                    self.apply(Step::Rebalance {
                        partition,
                        start_known: true,
                    });
                }
            }
            for _ in 0..10_000 {
                for partition in 0..2 {
                    self.apply(Step::SharedRead {
                        partition,
                        count: 8,
                    });
                }
                self.apply(Step::Resume);
                for trigger in 0..TRIGGERS.len() {
                    self.apply(Step::StartRead { trigger });
                }
                while !self.reads.is_empty() {
                    self.apply(Step::FinishRead {
                        count: 8,
                        fails: false,
                    });
                }
                while !self.outstanding.is_empty() {
                    self.settle(0);
                }
                self.apply(Step::Commit);
                self.check()?;
                let done = (0..2).all(|p| {
                    self.committed[p].offset == self.log[p].len() as Offset
                        && self.committed[p].behind.is_empty()
                });
                if done {
                    return Ok(());
                }
            }
            prop_assert!(
                false,
                "the world never settled: committed {:?}, log {:?}",
                self.committed,
                self.log.iter().map(Vec::len).collect::<Vec<_>>()
            );
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the interleaving, the commit never passes a record a trigger wants and has
        /// not finished; and once the faults stop, everything is delivered and committed.
        #[test]
        fn the_commit_never_passes_an_unfinished_record(
            capacity in 1usize..4,
            steps in prop::collection::vec(step(), 1..300),
        ) {
            let mut world = World::new(capacity);
            for step in steps {
                world.apply(step);
                world.check()?;
            }
            world.drain()?;
        }
    }
}
