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

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use opentelemetry::trace::TraceId;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

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
/// Distinct labels a process keeps (see [`Label`]).
pub const MAX_LABELS: usize = 100_000;

/// The name of a broker or a trigger (`<namespace>/<name>`), or a subscriber's URL, as hops keep
/// it. Interned when the broker, dispatcher or trigger that records hops is built, so that a hop
/// copies a pointer where it used to clone an `Arc<str>`: one atomic add and one subtract per hop
/// on a count that every thread of a busy node shares, whose cache line went from core to core.
/// The pointer is a thin one (to the name's own pointer), so that a hop, which names a broker and
/// often a trigger, stays small: the journal holds thousands of them.
/// A label lives as long as the process: the first [`MAX_LABELS`] distinct names are kept (a
/// node's configuration would have to churn through that many brokers, triggers and URLs), and
/// later ones read [`Label::UNKNOWN`] in the journal.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label(&'static &'static str);

impl Label {
    /// What a label reads once [`MAX_LABELS`] names were interned.
    pub const UNKNOWN: Label = Label(&"(name not kept: too many distinct names)");

    pub fn new(name: &str) -> Self {
        static LABELS: OnceLock<Mutex<FxHashMap<&'static str, Label>>> = OnceLock::new();
        let mut labels = LABELS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(&kept) = labels.get(name) {
            return kept;
        }
        if labels.len() >= MAX_LABELS {
            return Label::UNKNOWN;
        }
        let text: &'static str = Box::leak(name.into());
        let label = Label(Box::leak(Box::new(text)));
        labels.insert(text, label);
        label
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::ops::Deref for Label {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

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
    pub broker: Label,
    /// `<namespace>/<name>` of the trigger, for delivery hops.
    pub trigger: Option<Label>,
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
    Url(Label),
    /// An attempt to the dead-letter sink.
    DeadLetterSink(Label),
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
    pub fn new(stage: Stage, broker: Label) -> Self {
        Self {
            at: SystemTime::now(),
            stage,
            broker,
            trigger: None,
            attempt: None,
            status: None,
            partition: None,
            offset: None,
            detail: Detail::None,
        }
    }

    pub fn trigger(mut self, trigger: Label) -> Self {
        self.trigger = Some(trigger);
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

    /// Bytes this hop holds beyond its own size (a text detail).
    fn detail_bytes(&self) -> usize {
        match &self.detail {
            Detail::Text(text) => text.capacity(),
            _ => 0,
        }
    }

    pub fn with(mut self, detail: Detail) -> Self {
        self.detail = detail;
        self
    }
}

/// Everything the journal holds about one event (a source and an id), as [`Journal::trails`]
/// gives it.
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
}

/// Key bytes (id and source together) an entry holds in itself; longer keys go to the heap.
const INLINE_KEY_BYTES: usize = 96;
/// Hops an entry holds in itself: an event delivered at the first attempt has three (stored,
/// dispatched, delivered); more go to the heap.
const INLINE_HOPS: usize = 3;

/// One event's trail as its shard keeps it: in one piece, its key and first hops inside it, so
/// that the slot of the ring is all a usual event touches. The slot an event takes is the
/// oldest one's, last touched thousands of events earlier and gone from the CPU's caches: one
/// piece, reached in the ring's order, costs a few cache misses the CPU sees coming, where a
/// trail with a buffer of its own for each of its source, id and hops cost four at random.
#[derive(Default)]
struct Entry {
    /// The hash of its source and id, its key in its shard.
    hash: u64,
    /// The id's bytes, then the source's.
    key: SmallVec<[u8; INLINE_KEY_BYTES]>,
    id_len: usize,
    trace_id: Option<TraceId>,
    hops: SmallVec<[Hop; INLINE_HOPS]>,
    dropped: u64,
    event: Option<Arc<Envelope>>,
    /// Bytes it holds, as the journal's budget counts them.
    weight: usize,
}

impl Entry {
    fn id(&self) -> &[u8] {
        &self.key[..self.id_len]
    }

    fn source(&self) -> &[u8] {
        &self.key[self.id_len..]
    }

    /// Its source and id as text (they were written from `&str`s: borrowed, never replaced).
    fn texts(&self) -> (Cow<'_, str>, Cow<'_, str>) {
        (
            String::from_utf8_lossy(self.source()),
            String::from_utf8_lossy(self.id()),
        )
    }

    fn is(&self, source: &str, id: &str) -> bool {
        self.id() == id.as_bytes() && self.source() == source.as_bytes()
    }

    /// What it holds on the heap: a long key, hops beyond the first few.
    fn heap_bytes(&self) -> usize {
        let key = if self.key.spilled() {
            self.key.capacity()
        } else {
            0
        };
        let hops = if self.hops.spilled() {
            self.hops.capacity() * std::mem::size_of::<Hop>()
        } else {
            0
        };
        key + hops
    }

    /// Makes this entry the event's, keeping no more than an event of its own would need (what
    /// a long key or a retry storm took on the heap goes).
    fn reset(&mut self, hash: u64, source: &str, id: &str) {
        self.release();
        self.hash = hash;
        self.key.extend_from_slice(id.as_bytes());
        self.key.extend_from_slice(source.as_bytes());
        self.id_len = id.len();
        self.trace_id = None;
        self.dropped = 0;
        self.weight = std::mem::size_of::<Entry>() + self.heap_bytes();
    }

    /// Lets go of what it holds (its event, its key, its hops and their details, and what a long
    /// key or a retry storm took on the heap): it is forgotten, or about to be another event's.
    fn release(&mut self) {
        self.key.clear();
        if self.key.spilled() {
            self.key.shrink_to_fit();
        }
        self.hops.clear();
        if self.hops.spilled() {
            self.hops.shrink_to_fit();
        }
        self.event = None;
        self.weight = 0;
    }

    fn push(&mut self, trace_id: impl FnOnce() -> Option<TraceId>, hop: Hop) {
        if self.trace_id.is_none() {
            self.trace_id = trace_id();
        }
        if self.hops.len() < MAX_HOPS_PER_EVENT {
            let before = self.heap_bytes();
            self.weight += hop.detail_bytes();
            self.hops.push(hop);
            self.weight = self.weight + self.heap_bytes() - before;
        } else {
            self.dropped += 1;
        }
    }

    /// Where the hop `pending` stands for is, when the entry still has it.
    fn pending(&self, pending: &PendingHop) -> Option<usize> {
        self.hops
            .iter()
            .rposition(|hop| hop.at == pending.at && hop.stage == pending.stage)
    }

    fn trail(&self) -> Trail {
        let mut hops: Vec<Hop> = self.hops.to_vec();
        hops.sort_by_key(|hop| hop.at);
        let (source, id) = self.texts();
        Trail {
            source: source.into_owned(),
            id: id.into_owned(),
            trace_id: self.trace_id,
            hops,
            dropped: self.dropped,
            event: self.event.clone(),
        }
    }
}

/// The entries of the events whose ids hash to one shard, in a ring: an event's entry stays in
/// its slot from its first hop until it is forgotten, and a new event reuses the oldest's slot in
/// place (an entry is a few hundred bytes that moving out of and back into a queue copied twice,
/// from memory gone cold). An entry is found by the hash of its source and id (the entry holds
/// both, to tell a collision) through an index of entry numbers, so that the index's entries stay
/// small and an entry never moves in or out of a hash table.
struct Shard {
    /// The entry numbered `n` is in `slots[n % capacity]` while `first <= n < next`.
    slots: Vec<Entry>,
    capacity: usize,
    /// The number of the oldest entry kept: the one forgotten first.
    first: u64,
    /// The number the next new entry takes.
    next: u64,
    /// Entry numbers by the hash of source and id.
    index: FxHashMap<u64, u64>,
    /// Bytes its entries hold.
    bytes: usize,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::new(),
            capacity,
            first: 0,
            next: 0,
            index: FxHashMap::default(),
            bytes: 0,
        }
    }

    fn slot(&self, number: u64) -> usize {
        (number % self.capacity as u64) as usize
    }

    /// Entries kept, oldest first.
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        (self.first..self.next).map(|number| &self.slots[self.slot(number)])
    }

    fn get_mut(&mut self, hash: u64) -> Option<&mut Entry> {
        let slot = self.slot(*self.index.get(&hash)?);
        self.slots.get_mut(slot)
    }

    fn get(&self, hash: u64) -> Option<&Entry> {
        self.slots.get(self.slot(*self.index.get(&hash)?))
    }

    /// Forgets the oldest event: what its entry held on the heap goes, its slot stays for reuse.
    fn forget_oldest(&mut self) {
        if self.first == self.next {
            return;
        }
        let slot = self.slot(self.first);
        let entry = &mut self.slots[slot];
        self.index.remove(&entry.hash);
        self.bytes -= entry.weight;
        entry.release();
        self.first += 1;
    }

    /// The entry whose hash is `hash` (maybe another event's: see [`Entry::is`]), or a new one
    /// made the event's with [`Shard::add`].
    fn found_or_added(&mut self, hash: u64, source: &str, id: &str) -> &mut Entry {
        match self.index.get(&hash) {
            Some(&number) => {
                let slot = self.slot(number);
                &mut self.slots[slot]
            }
            None => self.add(hash, source, id),
        }
    }

    /// The entry of a new event (the oldest forgotten when the ring is full), made its own.
    fn add(&mut self, hash: u64, source: &str, id: &str) -> &mut Entry {
        if self.next - self.first >= self.capacity as u64 {
            self.forget_oldest();
        }
        let number = self.next;
        self.next += 1;
        let slot = self.slot(number);
        if slot == self.slots.len() {
            self.slots.push(Entry::default());
        }
        self.index.insert(hash, number);
        let entry = &mut self.slots[slot];
        entry.reset(hash, source, id);
        self.bytes += entry.weight;
        entry
    }

    /// Over budget: the oldest events go (never the newest).
    fn keep_within(&mut self, max_bytes: usize) {
        while self.bytes > max_bytes && self.next - self.first > 1 {
            self.forget_oldest();
        }
    }
}

/// A hop recorded before what it says is certain (a broker's `Stored`, recorded as its append
/// starts): [`Journal::confirm`] hands it to the live tail once it is, [`Journal::amend`] turns
/// it into what happened instead. Holds where the trail is, not the event's source and id.
#[derive(Debug, Clone, Copy)]
pub struct PendingHop {
    shard: usize,
    hash: u64,
    at: SystemTime,
    stage: Stage,
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
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::new(per_shard)))
                .collect(),
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
    /// Every source's event of one id is in the same shard, so that a look-up by id alone
    /// reads one shard.
    fn shard_index(id_hasher: &impl Hasher) -> usize {
        (id_hasher.finish() >> 60) as usize % SHARDS
    }

    /// The shard of an event and its key there (the hash of its id and source).
    fn place_of(source: &str, id: &str) -> (usize, u64) {
        let mut hasher = Self::id_hasher(id);
        let shard = Self::shard_index(&hasher);
        source.hash(&mut hasher);
        (shard, hasher.finish())
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[shard].lock().unwrap_or_else(|p| p.into_inner())
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
        if !self.takes(source, id) {
            return;
        }
        self.tail.hop(source, id, &hop);
        self.store(source, id, trace_id, hop);
    }

    /// Records a hop as [`Journal::record`] does, except that the live tail sees it only once
    /// [`Journal::confirm`] says it holds. `None` when the journal does not keep this event.
    pub fn record_pending(
        &self,
        source: &str,
        id: &str,
        trace_id: impl FnOnce() -> Option<TraceId>,
        hop: Hop,
    ) -> Option<PendingHop> {
        if !self.takes(source, id) {
            return None;
        }
        let (at, stage) = (hop.at, hop.stage);
        let (shard, hash) = self.store(source, id, trace_id, hop);
        Some(PendingHop {
            shard,
            hash,
            at,
            stage,
        })
    }

    /// A pending hop holds: the live tail sees it now.
    pub fn confirm(&self, pending: PendingHop) {
        if !self.tail.is_followed() {
            return;
        }
        let shard = self.lock(pending.shard);
        if let Some(entry) = shard.get(pending.hash) {
            if let Some(at) = entry.pending(&pending) {
                let (source, id) = entry.texts();
                self.tail.hop(&source, &id, &entry.hops[at]);
            }
        }
    }

    /// A pending hop did not hold: `hop` takes its place (and goes to the live tail).
    pub fn amend(&self, pending: PendingHop, hop: Hop) {
        let mut shard = self.lock(pending.shard);
        let shard = &mut *shard;
        let Some(entry) = shard.get_mut(pending.hash) else {
            return;
        };
        let Some(at) = entry.pending(&pending) else {
            return;
        };
        let (before, after) = (entry.hops[at].detail_bytes(), hop.detail_bytes());
        if self.tail.is_followed() {
            let (source, id) = entry.texts();
            self.tail.hop(&source, &id, &hop);
        }
        entry.hops[at] = hop;
        entry.weight = entry.weight - before + after;
        shard.bytes = shard.bytes - before + after;
        shard.keep_within(self.bytes_per_shard);
    }

    /// Whether this event is journaled: the journal is on and its key is not too long.
    fn takes(&self, source: &str, id: &str) -> bool {
        self.per_shard > 0 && id.len() <= MAX_KEY_BYTES && source.len() <= MAX_KEY_BYTES
    }

    /// Puts `hop` on the event's entry (a new one, the oldest's reused, when the event has
    /// none); says where the entry is.
    fn store(
        &self,
        source: &str,
        id: &str,
        trace_id: impl FnOnce() -> Option<TraceId>,
        hop: Hop,
    ) -> (usize, u64) {
        let (index, hash) = Self::place_of(source, id);
        let mut shard = self.lock(index);
        let shard = &mut *shard;
        let entry = shard.found_or_added(hash, source, id);
        let before = entry.weight;
        if !entry.is(source, id) {
            // Another event with the same hash: the newer event takes the place.
            entry.reset(hash, source, id);
        }
        entry.push(trace_id, hop);
        let after = entry.weight;
        shard.bytes = shard.bytes - before + after;
        shard.keep_within(self.bytes_per_shard);
        (index, hash)
    }

    /// Keeps the event itself with its trail (the first time only): its attributes, and its data
    /// when that is small, so that `knactor trace` can say why each trigger took it or not.
    pub fn keep_event(&self, envelope: &Arc<Envelope>) {
        if self.per_shard == 0 {
            return;
        }
        let (source, id) = (envelope.source(), envelope.id());
        let (index, hash) = Self::place_of(source, id);
        let mut shard = self.lock(index);
        let shard = &mut *shard;
        let Some(entry) = shard.get_mut(hash) else {
            return;
        };
        if entry.event.is_some() || !entry.is(source, id) {
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
        entry.event = Some(kept);
        entry.weight += weight;
        shard.bytes += weight;
        shard.keep_within(self.bytes_per_shard);
    }

    /// What the journal holds about the events of id `id`, one trail per source (several
    /// producers may use the same ids), the most recently started first; hops in time order.
    pub fn trails(&self, id: &str) -> Vec<Trail> {
        let shard = self.lock(Self::shard_index(&Self::id_hasher(id)));
        let mut trails: Vec<Trail> = shard
            .entries()
            .filter(|entry| entry.id() == id.as_bytes())
            .map(Entry::trail)
            .collect();
        drop(shard);
        trails.sort_by_key(|trail| std::cmp::Reverse(trail.hops.first().map(|hop| hop.at)));
        trails
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> Label {
        Label::new("team-a/default")
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
        journal.record("/s", &huge, || None, Hop::new(Stage::Stored, broker));
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
                Hop::new(Stage::Attempt, broker).detail("e".repeat(5_000)),
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
        journal.record("/orders", "1", || None, Hop::new(Stage::Stored, broker));
        journal.record("/payments", "1", || None, Hop::new(Stage::Stored, broker));
        journal.record(
            "/payments",
            "1",
            || None,
            Hop::new(Stage::Delivered, broker),
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
        let trigger = Label::new("team-a/t");
        journal.record("/src", "e1", || None, Hop::new(Stage::Stored, broker));
        journal.record(
            "/src",
            "e1",
            || Some(TraceId::from(7)),
            Hop::new(Stage::Attempt, broker)
                .trigger(trigger)
                .attempt(1)
                .status(503),
        );
        journal.record(
            "/src",
            "e1",
            || unreachable!("the trail has its trace id"),
            Hop::new(Stage::Parked, broker).with(Detail::Matched(2)),
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
    fn a_long_key_and_a_retry_storm_leave_nothing_behind_in_the_entry_the_next_event_reuses() {
        // One entry per shard: every event reuses the entry of the one before it in its shard.
        let journal = Journal::new(SHARDS, DEFAULT_MAX_BYTES);
        let broker = broker();
        let long_source = format!("/{}", "s".repeat(INLINE_KEY_BYTES * 2));
        for n in 0..200 {
            let id = format!("long-{n}");
            for _ in 0..(INLINE_HOPS * 4) {
                journal.record(&long_source, &id, || None, Hop::new(Stage::Attempt, broker));
            }
            let trail = first(&journal, &id).expect("the newest event is kept");
            assert_eq!(trail.source, long_source);
            assert_eq!(trail.hops.len(), INLINE_HOPS * 4);
        }
        let long_bytes = journal.bytes();
        for n in 0..200 {
            let id = format!("short-{n}");
            journal.record("/s", &id, || None, Hop::new(Stage::Stored, broker));
            let trail = first(&journal, &id).expect("the newest event is kept");
            assert_eq!((trail.source.as_str(), trail.hops.len()), ("/s", 1));
        }
        assert!(
            journal.bytes() < long_bytes,
            "short events hold less than long ones did: {} then {long_bytes}",
            journal.bytes()
        );
        assert!(journal.bytes() <= SHARDS * std::mem::size_of::<Entry>());
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
                Hop::new(Stage::Stored, broker),
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
    fn the_ring_reuses_its_slots_in_place_and_keeps_its_count_of_bytes() {
        // Round a small ring many times, its byte budget forgetting some events early (those
        // with a long detail), each event's second hop recorded after the next event's first.
        let journal = Journal::new(SHARDS * 4, SHARDS * 2 * 1024);
        let broker = broker();
        let stored = |i: usize| {
            let hop = Hop::new(Stage::Stored, broker);
            if i % 7 == 0 {
                hop.detail("d".repeat(900))
            } else {
                hop
            }
        };
        for i in 0..2_000 {
            journal.record("/src", &format!("e{i}"), || None, stored(i));
            if i > 0 {
                let previous = format!("e{}", i - 1);
                let dispatched = Hop::new(Stage::Dispatched, broker);
                journal.record("/src", &previous, || None, dispatched);
            }
        }
        // The newest event's long hops take its shard over budget: older events go, their slots
        // left for the next events.
        for _ in 0..2 {
            let attempt = Hop::new(Stage::Attempt, broker).detail("a".repeat(1_000));
            journal.record("/src", "e1999", || None, attempt);
        }
        let (mut kept, mut forgotten) = (0, 0);
        for shard in &journal.shards {
            let shard = shard.lock().unwrap();
            let held: usize = shard.entries().map(|entry| entry.weight).sum();
            assert_eq!(held, shard.bytes, "the shard counts what its entries hold");
            assert!(shard.next - shard.first <= shard.capacity as u64);
            assert_eq!(shard.index.len() as u64, shard.next - shard.first);
            kept += shard.index.len();
            let kept_slots: Vec<usize> = (shard.first..shard.next)
                .map(|number| shard.slot(number))
                .collect();
            for (slot, entry) in shard.slots.iter().enumerate() {
                if !kept_slots.contains(&slot) {
                    forgotten += 1;
                    assert!(
                        entry.hops.is_empty() && entry.event.is_none() && entry.weight == 0,
                        "a forgotten entry holds nothing (its hops' details neither)"
                    );
                }
            }
        }
        assert!(kept > 0);
        assert!(
            forgotten > 0,
            "the budget forgot some events before their turn"
        );
        let stages = |id: &str| -> Vec<Stage> {
            let trail = first(&journal, id).expect("kept");
            assert_eq!(trail.id, id, "a reused slot holds its new event only");
            trail.hops.iter().map(|hop| hop.stage).collect()
        };
        assert_eq!(stages("e1998"), [Stage::Stored, Stage::Dispatched]);
        assert_eq!(
            stages("e1999"),
            [Stage::Stored, Stage::Attempt, Stage::Attempt]
        );
        assert!(first(&journal, "e0").is_none());
    }

    #[test]
    fn an_event_keeps_a_bounded_number_of_hops() {
        let journal = Journal::new(10, DEFAULT_MAX_BYTES);
        let broker = broker();
        for _ in 0..(MAX_HOPS_PER_EVENT + 5) {
            journal.record("/src", "e", || None, Hop::new(Stage::Attempt, broker));
        }
        let trail = first(&journal, "e").unwrap();
        assert_eq!(trail.hops.len(), MAX_HOPS_PER_EVENT);
        assert_eq!(trail.dropped, 5);
    }

    #[test]
    fn a_pending_hop_reaches_the_tail_when_confirmed_and_is_replaced_when_amended() {
        let journal = Journal::new(100, DEFAULT_MAX_BYTES);
        let broker = broker();
        let following = journal.tail().follow(&broker).unwrap();
        let stored = journal
            .record_pending("/src", "ok", || None, Hop::new(Stage::Stored, broker))
            .expect("journaled");
        let refused = journal
            .record_pending("/src", "no", || None, Hop::new(Stage::Stored, broker))
            .expect("journaled");
        assert!(
            following.take().entries.is_empty(),
            "the tail sees a pending hop only once it holds"
        );

        journal.confirm(stored);
        journal.amend(
            refused,
            Hop::new(Stage::Refused, broker).status(503).detail("full"),
        );
        let seen: Vec<_> = following
            .take()
            .entries
            .into_iter()
            .map(|entry| (entry.id.to_string(), entry.stage))
            .collect();
        assert_eq!(
            seen,
            [("ok".to_string(), "stored"), ("no".to_string(), "refused")]
        );
        let stages = |id| {
            first(&journal, id)
                .unwrap()
                .hops
                .iter()
                .map(|hop| (hop.stage, hop.status))
                .collect::<Vec<_>>()
        };
        assert_eq!(stages("ok"), [(Stage::Stored, None)]);
        assert_eq!(stages("no"), [(Stage::Refused, Some(503))]);
    }

    #[test]
    fn an_event_the_journal_does_not_keep_has_no_pending_hop() {
        let journal = Journal::new(100, DEFAULT_MAX_BYTES);
        let huge = "x".repeat(MAX_KEY_BYTES + 1);
        let hop = || Hop::new(Stage::Stored, broker());
        assert!(journal
            .record_pending("/s", &huge, || None, hop())
            .is_none());
        let off = Journal::new(0, DEFAULT_MAX_BYTES);
        assert!(off.record_pending("/s", "e", || None, hop()).is_none());
    }

    #[test]
    fn a_label_is_kept_once_per_name() {
        let (a, again) = (
            Label::new("ns/label-a"),
            Label::new(&String::from("ns/label-a")),
        );
        assert!(std::ptr::eq(a.as_str(), again.as_str()));
        assert_eq!(a, again);
        assert_ne!(a, Label::new("ns/label-b"));
        assert_eq!(a.to_string(), "ns/label-a");
    }

    #[test]
    fn a_journal_of_size_zero_records_nothing() {
        let journal = Journal::new(0, DEFAULT_MAX_BYTES);
        journal.record("/src", "e", || None, Hop::new(Stage::Stored, broker()));
        assert!(first(&journal, "e").is_none());
        assert!(!journal.is_on());
    }
}
