//! The live tail of a broker's events, for the console (`GET /-/brokers/{ns}/{broker}/tail`).
//!
//! The [`Journal`](crate::journal::Journal) hands every hop it records to the [`Tail`], which
//! copies it to the clients following that broker, each into a bounded buffer of its own. A client
//! that reads slower than events come loses the oldest entries and is told how many; it never
//! costs the node more than its buffer. With nobody following, a hop costs one atomic load; with
//! followers, one short lock per follower of the hop's broker. At most [`Tail::max_followers`]
//! clients follow at once.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::journal::{Detail, Hop};

/// Entries a follower's buffer holds before the oldest go.
pub const DEFAULT_BUFFER: usize = 1_000;
/// Clients that may follow at once, all brokers together.
pub const DEFAULT_MAX_FOLLOWERS: usize = 8;

/// One thing that happened to one event, as a follower sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailEntry {
    pub at: SystemTime,
    /// `received` (the ingress decoded it: the entry carries its type), else a journal stage.
    pub stage: &'static str,
    pub source: Arc<str>,
    pub id: Arc<str>,
    /// The event's type, on `received` entries.
    pub event_type: Option<Arc<str>>,
    /// `<namespace>/<name>` of the trigger, for delivery hops.
    pub trigger: Option<Arc<str>>,
    pub attempt: Option<u32>,
    pub status: Option<u16>,
    pub detail: Option<String>,
}

/// What a follower reads at once: the entries in order, after `skipped` it lost.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TailBatch {
    /// Entries dropped (oldest first) because the buffer was full since the last read.
    pub skipped: u64,
    pub entries: Vec<TailEntry>,
}

/// Why a client may not follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} clients already follow this node's tails, the most it serves at once: close one")]
pub struct TooManyFollowers(pub usize);

#[derive(Default)]
struct Buffer {
    entries: VecDeque<TailEntry>,
    skipped: u64,
}

struct Follower {
    /// `<namespace>/<name>` of the broker it follows.
    broker: Arc<str>,
    buffer: Mutex<Buffer>,
    capacity: usize,
    wake: tokio::sync::Notify,
}

impl Follower {
    fn push(&self, entry: TailEntry) {
        {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            if buffer.entries.len() >= self.capacity {
                buffer.entries.pop_front();
                buffer.skipped += 1;
            }
            buffer.entries.push_back(entry);
        }
        // Stores a wake-up when the follower is not waiting: none is lost.
        self.wake.notify_one();
    }
}

/// The followers of a node's brokers.
pub struct Tail {
    followers: RwLock<Vec<Arc<Follower>>>,
    /// How many follow: read on every hop, so that nobody following costs nothing more.
    following: AtomicUsize,
    max_followers: usize,
    buffer: usize,
}

impl fmt::Debug for Tail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tail")
            .field("following", &self.following.load(Ordering::Relaxed))
            .field("max_followers", &self.max_followers)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

impl Default for Tail {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FOLLOWERS, DEFAULT_BUFFER)
    }
}

impl Tail {
    /// A tail serving at most `max_followers` clients, each buffering `buffer` entries.
    pub fn new(max_followers: usize, buffer: usize) -> Self {
        Self {
            followers: RwLock::default(),
            following: AtomicUsize::new(0),
            max_followers,
            buffer: buffer.max(1),
        }
    }

    pub fn max_followers(&self) -> usize {
        self.max_followers
    }

    /// Whether anybody follows a broker now.
    pub fn is_followed(&self) -> bool {
        self.following.load(Ordering::Relaxed) > 0
    }

    /// Starts following `broker` (`<namespace>/<name>`); the follower leaves when dropped.
    pub fn follow(self: &Arc<Self>, broker: &str) -> Result<Following, TooManyFollowers> {
        let mut followers = self.followers.write().unwrap_or_else(|p| p.into_inner());
        if followers.len() >= self.max_followers {
            return Err(TooManyFollowers(followers.len()));
        }
        let follower = Arc::new(Follower {
            broker: Arc::from(broker),
            buffer: Mutex::default(),
            capacity: self.buffer,
            wake: tokio::sync::Notify::new(),
        });
        followers.push(follower.clone());
        self.following.store(followers.len(), Ordering::Relaxed);
        Ok(Following {
            tail: self.clone(),
            follower,
        })
    }

    /// A hop the journal recorded.
    pub fn hop(&self, source: &str, id: &str, hop: &Hop) {
        if !self.is_followed() {
            return;
        }
        self.publish(&hop.broker, || TailEntry {
            at: hop.at,
            stage: hop.stage.as_str(),
            source: Arc::from(source),
            id: Arc::from(id),
            event_type: None,
            trigger: hop.trigger.map(|trigger| Arc::from(trigger.as_str())),
            attempt: hop.attempt,
            status: hop.status,
            detail: (hop.detail != Detail::None).then(|| hop.detail.to_string()),
        });
    }

    /// An event the ingress decoded for `broker`, with its type (the journal's hops have none).
    pub fn received(&self, broker: &str, source: &str, id: &str, event_type: &str) {
        if !self.is_followed() {
            return;
        }
        self.publish(broker, || TailEntry {
            at: SystemTime::now(),
            stage: "received",
            source: Arc::from(source),
            id: Arc::from(id),
            event_type: Some(Arc::from(event_type)),
            trigger: None,
            attempt: None,
            status: None,
            detail: None,
        });
    }

    /// Copies the entry (made once, when some follower wants it) to the broker's followers.
    fn publish(&self, broker: &str, make: impl FnOnce() -> TailEntry) {
        let followers = self.followers.read().unwrap_or_else(|p| p.into_inner());
        let mut make = Some(make);
        let mut entry: Option<TailEntry> = None;
        for follower in followers.iter().filter(|f| &*f.broker == broker) {
            if entry.is_none() {
                entry = make.take().map(|make| make());
            }
            if let Some(entry) = &entry {
                follower.push(entry.clone());
            }
        }
    }

    fn leave(&self, follower: &Arc<Follower>) {
        let mut followers = self.followers.write().unwrap_or_else(|p| p.into_inner());
        followers.retain(|other| !Arc::ptr_eq(other, follower));
        self.following.store(followers.len(), Ordering::Relaxed);
    }
}

/// One client following one broker; it stops following when dropped.
pub struct Following {
    tail: Arc<Tail>,
    follower: Arc<Follower>,
}

impl fmt::Debug for Following {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Following")
            .field("broker", &self.follower.broker)
            .field("capacity", &self.follower.capacity)
            .finish_non_exhaustive()
    }
}

impl Following {
    /// Waits until something is buffered, then takes all of it.
    pub async fn next(&self) -> TailBatch {
        loop {
            let batch = self.take();
            if batch.skipped > 0 || !batch.entries.is_empty() {
                return batch;
            }
            self.follower.wake.notified().await;
        }
    }

    /// Takes what is buffered now (maybe nothing).
    pub fn take(&self) -> TailBatch {
        let mut buffer = self
            .follower
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        TailBatch {
            skipped: std::mem::take(&mut buffer.skipped),
            entries: buffer.entries.drain(..).collect(),
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.tail.leave(&self.follower);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Label, Stage};

    fn stored(broker: &str) -> Hop {
        Hop::new(Stage::Stored, Label::new(broker))
    }

    #[test]
    fn a_follower_gets_the_hops_of_its_broker_only() {
        let tail = Arc::new(Tail::new(4, 10));
        let (a, b) = ("ns/a", "ns/b");
        let following = tail.follow("ns/a").unwrap();
        tail.received("ns/a", "/s", "1", "order.created");
        tail.hop("/s", "1", &stored(a));
        tail.hop("/s", "2", &stored(b));
        let batch = following.take();
        assert_eq!(batch.skipped, 0);
        let seen: Vec<_> = batch.entries.iter().map(|e| (e.stage, &*e.id)).collect();
        assert_eq!(seen, [("received", "1"), ("stored", "1")]);
        assert_eq!(
            batch.entries[0].event_type.as_deref(),
            Some("order.created")
        );
    }

    #[test]
    fn a_slow_follower_loses_the_oldest_entries_and_is_told_how_many() {
        let tail = Arc::new(Tail::new(4, 3));
        let broker = "ns/a";
        let following = tail.follow("ns/a").unwrap();
        for n in 0..10 {
            tail.hop("/s", &n.to_string(), &stored(broker));
        }
        let batch = following.take();
        assert_eq!(batch.skipped, 7);
        let ids: Vec<_> = batch.entries.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["7", "8", "9"]);
        assert_eq!(following.take(), TailBatch::default());
    }

    #[test]
    fn followers_are_capped_and_leave_when_dropped() {
        let tail = Arc::new(Tail::new(2, 10));
        let first = tail.follow("ns/a").unwrap();
        let _second = tail.follow("ns/b").unwrap();
        assert_eq!(tail.follow("ns/a").err(), Some(TooManyFollowers(2)));
        drop(first);
        assert!(tail.follow("ns/a").is_ok());
    }

    #[test]
    fn nobody_following_means_nothing_is_kept() {
        let tail = Arc::new(Tail::new(2, 10));
        assert!(!tail.is_followed());
        tail.received("ns/a", "/s", "1", "t");
        let following = tail.follow("ns/a").unwrap();
        assert!(tail.is_followed());
        assert!(following.take().entries.is_empty());
    }

    #[actix_rt::test]
    async fn next_waits_for_an_entry() {
        let tail = Arc::new(Tail::new(2, 10));
        let following = tail.follow("ns/a").unwrap();
        let publisher = tail.clone();
        let waiting = tokio::spawn(async move { following.next().await });
        tokio::task::yield_now().await;
        publisher.received("ns/a", "/s", "1", "t");
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch.entries.len(), 1);
    }
}
