//! `OffsetTracker`: which offset of one partition may be committed.
//!
//! A dispatcher reads records in order but their deliveries finish in any order (retries, slow
//! subscribers). Committing offset N tells the channel "everything before N is done": after a crash
//! reading resumes at N. So the committable offset is always the end of the contiguous prefix of
//! records whose every delivery is final, never further:
//!
//! ```text
//!   offsets   10  11  12  13  14  15        (read up to 16)
//!   pending    0   0   2   0   1   0
//!              done    ^ first pending -> commit 12
//! ```
//!
//! Records are registered in read order with how many deliveries they owe. (Deliveries a trigger
//! reads itself, catching up, are the `Ledger`'s to count (knactor-actors), against that
//! trigger's place.)

use std::collections::BTreeMap;

/// Offsets of one partition.
#[derive(Debug, Clone)]
pub struct OffsetTracker {
    /// Everything below this is done (but maybe not committed yet).
    read_up_to: i64,
    /// Offsets (>= the done prefix) with deliveries outstanding, and how many.
    pending: BTreeMap<i64, u32>,
}

impl OffsetTracker {
    /// A tracker for a partition whose next record to read is `start`.
    pub fn new(start: i64) -> Self {
        Self {
            read_up_to: start,
            pending: BTreeMap::new(),
        }
    }

    /// Registers the next record read, owing `deliveries` (0 when no trigger matched: it is done at
    /// once). Offsets must increase; gaps are fine (compacted or transactional topics have them).
    pub fn register(&mut self, offset: i64, deliveries: u32) {
        debug_assert!(offset >= self.read_up_to, "records are registered in order");
        if deliveries > 0 {
            *self.pending.entry(offset).or_default() += deliveries;
        }
        self.read_up_to = self.read_up_to.max(offset + 1);
    }

    /// One delivery of `offset` became final. Unknown offsets are ignored (a partition that was
    /// revoked and assigned again starts a fresh tracker).
    pub fn complete(&mut self, offset: i64) {
        if let Some(count) = self.pending.get_mut(&offset) {
            *count -= 1;
            if *count == 0 {
                self.pending.remove(&offset);
            }
        }
    }

    /// The offset to commit: the first record not yet done (or the next to read when all are).
    pub fn committable(&self) -> i64 {
        self.pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.read_up_to)
    }

    /// The next offset the shared reader will register.
    pub fn read_up_to(&self) -> i64 {
        self.read_up_to
    }

    /// Deliveries outstanding across the partition.
    pub fn outstanding(&self) -> u64 {
        self.pending.values().map(|&count| u64::from(count)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_commit_waits_for_the_oldest_pending_record() {
        let mut tracker = OffsetTracker::new(10);
        tracker.register(10, 1);
        tracker.register(11, 0);
        tracker.register(12, 2);
        assert_eq!(tracker.committable(), 10);
        tracker.complete(10);
        assert_eq!(tracker.committable(), 12);
        tracker.complete(12);
        assert_eq!(tracker.committable(), 12);
        tracker.complete(12);
        assert_eq!(tracker.committable(), 13);
    }

    #[test]
    fn records_no_trigger_wanted_are_done_at_once() {
        let mut tracker = OffsetTracker::new(0);
        tracker.register(0, 0);
        tracker.register(5, 0);
        assert_eq!(tracker.committable(), 6);
    }

    #[test]
    fn completing_an_unknown_offset_changes_nothing() {
        let mut tracker = OffsetTracker::new(3);
        tracker.register(3, 1);
        tracker.complete(99);
        assert_eq!(tracker.committable(), 3);
    }

    proptest! {
        /// Model: a record is done when all its deliveries completed; the commit is the first record
        /// not done. Whatever order deliveries complete in, the tracker agrees with the model, and
        /// the commit never moves backwards.
        #[test]
        fn the_commit_is_always_the_contiguous_done_prefix(
            owed in prop::collection::vec(0u32..4, 1..40),
            completion_order in prop::collection::vec(any::<prop::sample::Index>(), 0..160),
        ) {
            let start = 100i64;
            let mut tracker = OffsetTracker::new(start);
            let mut remaining: Vec<u32> = owed.clone();
            for (i, &count) in owed.iter().enumerate() {
                tracker.register(start + i as i64, count);
            }
            let mut last_commit = tracker.committable();
            for pick in completion_order {
                let open: Vec<usize> = (0..remaining.len()).filter(|&i| remaining[i] > 0).collect();
                if open.is_empty() {
                    break;
                }
                let i = open[pick.index(open.len())];
                remaining[i] -= 1;
                tracker.complete(start + i as i64);

                let model = remaining
                    .iter()
                    .position(|&count| count > 0)
                    .map_or(start + owed.len() as i64, |i| start + i as i64);
                let commit = tracker.committable();
                prop_assert_eq!(commit, model);
                prop_assert!(commit >= last_commit);
                last_commit = commit;
            }
        }
    }
}
