//! "Where did my event go": the hops and outcomes of the last events this node handled, by event
//! source and id (what makes a CloudEvent unique), in memory and bounded, for a user without Jaeger
//! (`knactor trace ID [--source S]`, `GET /-/events/ID[?source=S]`).
//!
//! The journal keeps at most `capacity` events and at most `max_bytes` of them (strings,
//! hops and details counted); the oldest event is forgotten first. An event keeps at most
//! [`MAX_HOPS_PER_EVENT`] hops (a retry storm cannot grow it without end), a detail at most
//! [`MAX_DETAIL_BYTES`], and an event whose id or source is longer than [`MAX_KEY_BYTES`] is not
//! journaled at all (nobody types such an id, and it would cost the journal its budget). It is
//! split into shards by event id so that the threads of a node rarely wait on one another. It is
//! on every event's path, so a hop costs one short lock and a push: details are kept as values and
//! only rendered when asked for, and once the journal is full the trail of the event it forgets is
//! reused for the next one, so a busy node allocates nothing here.
//!
//! Every hop it records is also handed to its [`Tail`], which copies it to the console clients
//! following the hop's broker (when any do).

use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::trace::TraceId;
use rustc_hash::FxHashMap;

use crate::channel::{Offset, Partition};
use crate::envelope::Envelope;
use crate::tail::Tail;

/// Hops kept per event; later ones are counted, not kept.
pub const MAX_HOPS_PER_EVENT: usize = 64;
/// Longest id or source journaled.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest detail kept (longer ones are cut, at a character boundary).
pub const MAX_DETAIL_BYTES: usize = 1024;
/// Bytes a node's journal may hold by default.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// An event kept with its trail keeps its data up to this size (beyond, its attributes only).
pub const MAX_KEPT_EVENT_BYTES: usize = 4 * 1024;
const SHARDS: usize = 16;

/// What happened to an event at one hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The broker stored it in its channel (the producer got 202).
    Stored,
    /// The broker refused it (TTL spent, channel full or unavailable).
    Refused,
    /// The dispatcher read it from the channel and matched it against the triggers.
    Dispatched,
    /// The dispatcher read it and no trigger's filter passed it.
    Unmatched,
    /// One HTTP attempt to a subscriber (or the dead-letter sink).
    Attempt,
    /// The subscriber acknowledged it (the attempt that succeeded).
    Delivered,
    /// The subscriber's reply was put back into the broker.
    Replied,
    /// The dead-letter sink took it.
    DeadLettered,
    /// Every attempt and the dead-letter sink failed: kept in the broker's parking lot.
    Parked,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Stored => "stored",
            Stage::Refused => "refused",
            Stage::Dispatched => "dispatched",
            Stage::Unmatched => "unmatched",
            Stage::Attempt => "attempt",
            Stage::Delivered => "delivered",
            Stage::Replied => "replied",
            Stage::DeadLettered => "dead-lettered",
            Stage::Parked => "parked",
        }
    }
}

/// One hop of one event.
#[derive(Debug, Clone)]
pub struct Hop {
    pub at: SystemTime,
    pub stage: Stage,
    /// `<namespace>/<name>` of the broker.
    pub broker: Arc<str>,
    /// `<namespace>/<name>` of the trigger, for delivery hops.
    pub trigger: Option<Arc<str>>,
    /// 1 for the first attempt of a delivery, 2 for the first retry...
    pub attempt: Option<u32>,
    /// The HTTP status an attempt got (500 when there was no response).
    pub status: Option<u16>,
    pub partition: Option<Partition>,
    pub offset: Option<Offset>,
    /// What else a reader needs: the URL, the error, the reply's id, why it parked.
    pub detail: Detail,
}

/// The detail of a hop, rendered only when someone asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Detail {
    #[default]
    None,
    /// How many triggers' filters passed the event.
    Matched(usize),
    /// Where an attempt went.
    Url(Arc<str>),
    /// An attempt to the dead-letter sink.
    DeadLetterSink(Arc<str>),
    Text(String),
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::None => Ok(()),
            Detail::Matched(count) => write!(f, "{count} trigger(s) matched"),
            Detail::Url(url) => f.write_str(url),
            Detail::DeadLetterSink(url) => write!(f, "dead-letter sink {url}"),
            Detail::Text(text) => f.write_str(text),
        }
    }
}

impl Hop {
    pub fn new(stage: Stage, broker: &Arc<str>) -> Self {
        Self {
            at: SystemTime::now(),
            stage,
            broker: broker.clone(),
            trigger: None,
            attempt: None,
            status: None,
            partition: None,
            offset: None,
            detail: Detail::None,
        }
    }

    pub fn trigger(mut self, trigger: &Arc<str>) -> Self {
        self.trigger = Some(trigger.clone());
        self
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt);
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn position(mut self, partition: Partition, offset: Offset) -> Self {
        self.partition = Some(partition);
        self.offset = Some(offset);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        let mut text = detail.into();
        if text.len() > MAX_DETAIL_BYTES {
            let mut cut = MAX_DETAIL_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
            text.shrink_to_fit();
        }
        self.detail = Detail::Text(text);
        self
    }

    /// Bytes this hop holds.
    fn weight(&self) -> usize {
        std::mem::size_of::<Hop>()
            + match &self.detail {
                Detail::Text(text) => text.capacity(),
                _ => 0,
            }
    }

    pub fn with(mut self, detail: Detail) -> Self {
        self.detail = detail;
        self
    }
}

/// Everything the journal holds about one event (a source and an id).
#[derive(Debug, Clone, Default)]
pub struct Trail {
    pub source: String,
    pub id: String,
    /// The W3C trace id the event carried when first seen here, to look it up in Jaeger.
    pub trace_id: Option<TraceId>,
    pub hops: Vec<Hop>,
    /// Hops not kept once the event had [`MAX_HOPS_PER_EVENT`].
    pub dropped: u64,
    /// The event as the dispatcher read it (its data only when small), to explain afterwards
    /// why a trigger did or did not take it.
    pub event: Option<Arc<Envelope>>,
    /// Bytes it holds, as the journal's budget counts them.
    weight: usize,
}

impl Trail {
    /// Makes this trail the event's, keeping its allocations (within [`MAX_KEY_BYTES`] each:
    /// the journal's budget counts what a trail holds, not what it once needed).
    fn reset(&mut self, source: &str, id: &str) {
        for (text, value) in [(&mut self.source, source), (&mut self.id, id)] {
            text.clear();
            text.shrink_to(MAX_KEY_BYTES);
            text.push_str(value);
        }
        self.trace_id = None;
        self.hops.clear();
        self.dropped = 0;
        self.event = None;
        self.weight = std::mem::size_of::<Trail>()
            + self.source.capacity()
            + self.id.capacity()
            + self.hops.capacity() * std::mem::size_of::<Hop>();
    }
}

/// Trails by the hash of their source and id (the trail holds both, to tell a collision).
#[derive(Default)]
struct Shard {
    trails: FxHashMap<u64, Trail>,
    /// Hashes in the order their events were first seen: the front is forgotten first.
    order: VecDeque<u64>,
    /// Bytes its trails hold.
    bytes: usize,
}

impl Shard {
    /// Forgets the oldest event, and gives its trail back for reuse.
    fn forget_oldest(&mut self) -> Option<Trail> {
        let oldest = self.order.pop_front()?;
        let trail = self.trails.remove(&oldest)?;
        self.bytes -= trail.weight;
        Some(trail)
    }
}

/// The bounded journal of a node.
pub struct Journal {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    bytes_per_shard: usize,
    tail: Arc<Tail>,
}

/// Its bounds, not its trails (thousands of events).
impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .field("bytes_per_shard", &self.bytes_per_shard)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

impl Default for Journal {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_MAX_BYTES)
    }
}

/// Events a node remembers by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

impl Journal {
    /// A journal of about `capacity` events holding about `max_bytes` (either 0: off, nothing
    /// is recorded).
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        let bytes_per_shard = max_bytes / SHARDS;
        let per_shard = if bytes_per_shard == 0 {
            0
        } else {
            capacity.div_ceil(SHARDS)
        };
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard,
            bytes_per_shard,
            tail: Arc::default(),
        }
    }

    /// The live tail of the hops this journal records.
    pub fn tail(&self) -> &Arc<Tail> {
        &self.tail
    }

    /// Bytes the journal holds now.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|p| p.into_inner()).bytes)
            .sum()
    }

    pub fn is_on(&self) -> bool {
        self.per_shard > 0
    }

    /// The shard of an id: every source's event of that id is in it, so that a look-up by id
    /// alone reads one shard.
    fn shard_of(&self, id: &str) -> &Mutex<Shard> {
        &self.shards[Self::shard_index(&Self::id_hasher(id))]
    }

    /// A hasher that has taken `id`: [`Journal::shard_index`] reads its state, and the event's
    /// key goes on from it with the source, so that a hop hashes its id once. Ids are often alike
    /// (`order-1`, `order-2`...): foldhash spreads them over all 64 bits (as SipHash does, at a
    /// fraction of its cost); the shard takes the top bits.
    fn id_hasher(id: &str) -> impl Hasher {
        let mut hasher = foldhash::fast::FixedState::with_seed(0).build_hasher();
        id.hash(&mut hasher);
        hasher
    }

    /// `finish` reads the hasher's state and leaves it as it was, to go on with the source.
    fn shard_index(id_hasher: &impl Hasher) -> usize {
        (id_hasher.finish() >> 60) as usize % SHARDS
    }

    /// The shard of an event and its key there (the hash of its id and source).
    fn place_of(&self, source: &str, id: &str) -> (&Mutex<Shard>, u64) {
        let mut hasher = Self::id_hasher(id);
        let shard = &self.shards[Self::shard_index(&hasher)];
        source.hash(&mut hasher);
        (shard, hasher.finish())
    }

    /// Records a hop of the event `source` + `id`. `trace_id` is asked only while the trail has
    /// no trace id yet.
    pub fn record(
        &self,
        source: &str,
        id: &str,
        trace_id: impl FnOnce() -> Option<TraceId>,
        hop: Hop,
    ) {
        if self.per_shard == 0 || id.len() > MAX_KEY_BYTES || source.len() > MAX_KEY_BYTES {
            return;
        }
        self.tail.hop(source, id, &hop);
        let (shard, hash) = self.place_of(source, id);
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let shard = &mut *shard;
        if let Some(trail) = shard.trails.get_mut(&hash) {
            let before = trail.weight;
            if trail.id != id || trail.source != source {
                // Another event with the same hash: the newer event takes the place.
                trail.reset(source, id);
            }
            trail.push(trace_id, hop);
            shard.bytes = shard.bytes - before + trail.weight;
        } else {
            let mut trail = if shard.order.len() >= self.per_shard {
                shard.forget_oldest().unwrap_or_default()
            } else {
                Trail::default()
            };
            trail.reset(source, id);
            trail.push(trace_id, hop);
            shard.bytes += trail.weight;
            shard.order.push_back(hash);
            shard.trails.insert(hash, trail);
        }
        // Over budget: the oldest events go (never the one just recorded).
        while shard.bytes > self.bytes_per_shard && shard.order.len() > 1 {
            shard.forget_oldest();
        }
    }

    /// Keeps the event itself with its trail (the first time only): its attributes, and its data
    /// when that is small, so that `knactor trace` can say why each trigger took it or not.
    pub fn keep_event(&self, envelope: &Arc<Envelope>) {
        if self.per_shard == 0 {
            return;
        }
        let (source, id) = (envelope.source(), envelope.id());
        let (shard, hash) = self.place_of(source, id);
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let shard = &mut *shard;
        let Some(trail) = shard.trails.get_mut(&hash) else {
            return;
        };
        if trail.event.is_some() || trail.id != id || trail.source != source {
            return;
        }
        let kept = if envelope.footprint() <= MAX_KEPT_EVENT_BYTES {
            envelope.clone()
        } else {
            let mut event = envelope.event().clone();
            event.take_data();
            Arc::new(Envelope::from_stored(event))
        };
        let weight = kept.footprint();
        trail.event = Some(kept);
        trail.weight += weight;
        shard.bytes += weight;
        while shard.bytes > self.bytes_per_shard && shard.order.len() > 1 {
            shard.forget_oldest();
        }
    }

    /// What the journal holds about the events of id `id`, one trail per source (several
    /// producers may use the same ids), the most recently started first; hops in time order.
    pub fn trails(&self, id: &str) -> Vec<Trail> {
        let shard = self.shard_of(id).lock().unwrap_or_else(|p| p.into_inner());
        let mut trails: Vec<Trail> = shard
            .trails
            .values()
            .filter(|trail| trail.id == id)
            .cloned()
            .collect();
        drop(shard);
        for trail in &mut trails {
            trail.hops.sort_by_key(|hop| hop.at);
        }
        trails.sort_by_key(|trail| std::cmp::Reverse(trail.hops.first().map(|hop| hop.at)));
        trails
    }
}

impl Trail {
    fn push(&mut self, trace_id: impl FnOnce() -> Option<TraceId>, hop: Hop) {
        if self.trace_id.is_none() {
            self.trace_id = trace_id();
        }
        if self.hops.len() < MAX_HOPS_PER_EVENT {
            let capacity = self.hops.capacity();
            self.weight += hop.weight();
            self.hops.push(hop);
            self.weight += (self.hops.capacity() - capacity) * std::mem::size_of::<Hop>();
        } else {
            self.dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> Arc<str> {
        Arc::from("team-a/default")
    }

    fn first(journal: &Journal, id: &str) -> Option<Trail> {
        journal.trails(id).into_iter().next()
    }

    #[test]
    fn the_journal_stays_within_its_byte_budget_and_skips_huge_ids() {
        let budget = 64 * 1024;
        let journal = Journal::new(100_000, budget);
        let broker = broker();
        let huge = "x".repeat(MAX_KEY_BYTES + 1);
        journal.record("/s", &huge, || None, Hop::new(Stage::Stored, &broker));
        assert!(
            journal.trails(&huge).is_empty(),
            "a huge id is not journaled"
        );
        for n in 0..5_000 {
            let id = format!("event-{n}");
            journal.record(
                "/s",
                &id,
                || None,
                Hop::new(Stage::Attempt, &broker).detail("e".repeat(5_000)),
            );
        }
        assert!(
            journal.bytes() <= budget + SHARDS * 8 * 1024,
            "{} bytes held for a budget of {budget}",
            journal.bytes()
        );
        let last = first(&journal, "event-4999").expect("the newest event is kept");
        let Detail::Text(text) = &last.hops[0].detail else {
            panic!("a text detail")
        };
        assert!(text.len() <= MAX_DETAIL_BYTES + '…'.len_utf8());
    }

    #[test]
    fn the_same_id_from_two_sources_is_two_events() {
        let journal = Journal::new(100, DEFAULT_MAX_BYTES);
        let broker = broker();
        journal.record("/orders", "1", || None, Hop::new(Stage::Stored, &broker));
        journal.record("/payments", "1", || None, Hop::new(Stage::Stored, &broker));
        journal.record(
            "/payments",
            "1",
            || None,
            Hop::new(Stage::Delivered, &broker),
        );
        let trails = journal.trails("1");
        assert_eq!(trails.len(), 2);
        // The most recently started first.
        assert_eq!(trails[0].source, "/payments");
        assert_eq!(trails[0].hops.len(), 2);
        assert_eq!(trails[1].source, "/orders");
        assert_eq!(trails[1].hops.len(), 1);
    }

    #[test]
    fn hops_of_an_event_come_back_in_order_with_its_trace_id() {
        let journal = Journal::new(100, DEFAULT_MAX_BYTES);
        let broker = broker();
        let trigger: Arc<str> = Arc::from("team-a/t");
        journal.record("/src", "e1", || None, Hop::new(Stage::Stored, &broker));
        journal.record(
            "/src",
            "e1",
            || Some(TraceId::from(7)),
            Hop::new(Stage::Attempt, &broker)
                .trigger(&trigger)
                .attempt(1)
                .status(503),
        );
        journal.record(
            "/src",
            "e1",
            || unreachable!("the trail has its trace id"),
            Hop::new(Stage::Parked, &broker).with(Detail::Matched(2)),
        );
        let trail = first(&journal, "e1").unwrap();
        assert_eq!(trail.trace_id, Some(TraceId::from(7)));
        assert_eq!(trail.hops[2].detail.to_string(), "2 trigger(s) matched");
        let stages: Vec<_> = trail.hops.iter().map(|hop| hop.stage).collect();
        assert_eq!(stages, [Stage::Stored, Stage::Attempt, Stage::Parked]);
        assert_eq!(trail.hops[1].status, Some(503));
        assert!(first(&journal, "e2").is_none());
    }

    #[test]
    fn the_oldest_events_are_forgotten_first() {
        let journal = Journal::new(SHARDS * 2, DEFAULT_MAX_BYTES);
        let broker = broker();
        for i in 0..1000 {
            journal.record(
                "/src",
                &format!("e{i}"),
                || None,
                Hop::new(Stage::Stored, &broker),
            );
        }
        let kept = (0..1000)
            .filter(|i| first(&journal, &format!("e{i}")).is_some())
            .count();
        assert!(kept <= SHARDS * 2, "{kept}");
        assert!(first(&journal, "e999").is_some());
        assert!(first(&journal, "e0").is_none());
    }

    #[test]
    fn an_event_keeps_a_bounded_number_of_hops() {
        let journal = Journal::new(10, DEFAULT_MAX_BYTES);
        let broker = broker();
        for _ in 0..(MAX_HOPS_PER_EVENT + 5) {
            journal.record("/src", "e", || None, Hop::new(Stage::Attempt, &broker));
        }
        let trail = first(&journal, "e").unwrap();
        assert_eq!(trail.hops.len(), MAX_HOPS_PER_EVENT);
        assert_eq!(trail.dropped, 5);
    }

    #[test]
    fn a_journal_of_size_zero_records_nothing() {
        let journal = Journal::new(0, DEFAULT_MAX_BYTES);
        journal.record("/src", "e", || None, Hop::new(Stage::Stored, &broker()));
        assert!(first(&journal, "e").is_none());
        assert!(!journal.is_on());
    }
}
