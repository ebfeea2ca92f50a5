//! A steady load of events with unique ids, as a producer that wants delivery sends them: each
//! event is retried until a node answers 202 (honouring `Retry-After`, moving on to the next node
//! when one does not answer), and [`Tally`] compares what was accepted with what a subscriber
//! received: delivered, duplicates, lost.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Senders at a fixed total rate, until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    senders: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Load")
            .field("senders", &self.senders.len())
            .field("sent", &self.shared.sent.load(Ordering::Relaxed))
            .field("stopped", &self.stop.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    /// Ids the ingress answered 202 for.
    accepted: Mutex<Vec<String>>,
    /// Answers other than 202, by status (0: no answer).
    refused: Mutex<BTreeMap<u16, usize>>,
    /// 503 answers without a `Retry-After` header.
    unavailable_without_retry_after: AtomicUsize,
    /// The longest one event took to be accepted.
    longest: Mutex<Duration>,
    sent: AtomicUsize,
}

/// What a load sent.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub accepted: Vec<String>,
    pub refused: BTreeMap<u16, usize>,
    pub unavailable_without_retry_after: usize,
    pub longest_to_accept: Duration,
}

impl Load {
    /// `rate` events per second in all, spread over `senders` threads, to the broker URLs in
    /// `targets` (each sender starts at another one and moves on when one does not answer).
    /// Ids are `<prefix>-<n>`; `ce-type` is `ty`.
    pub fn start(targets: &[String], rate: u32, senders: usize, prefix: &str, ty: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let senders = senders.max(1);
        let interval = Duration::from_secs_f64(senders as f64 / f64::from(rate.max(1)));
        let threads = (0..senders)
            .map(|sender| {
                let (stop, shared) = (stop.clone(), shared.clone());
                let targets: Vec<String> = targets.to_vec();
                let (prefix, ty) = (prefix.to_string(), ty.to_string());
                thread::spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .no_proxy()
                        .timeout(Duration::from_secs(15))
                        .build()
                        .expect("an HTTP client");
                    let mut target = sender % targets.len();
                    let mut next = Instant::now();
                    let mut n = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        let id = format!("{prefix}-{sender}-{n}");
                        n += 1;
                        let began = Instant::now();
                        loop {
                            let answer = client
                                .post(&targets[target])
                                .header("ce-specversion", "1.0")
                                .header("ce-id", &id)
                                .header("ce-source", "/load")
                                .header("ce-type", &ty)
                                .header("content-type", "application/json")
                                .body("{}")
                                .send();
                            let (status, retry_after) = match &answer {
                                Ok(response) => (
                                    response.status().as_u16(),
                                    response
                                        .headers()
                                        .get("retry-after")
                                        .and_then(|v| v.to_str().ok())
                                        .and_then(|v| v.parse::<u64>().ok()),
                                ),
                                Err(_) => (0, None),
                            };
                            if status == 202 {
                                shared.accepted.lock().unwrap().push(id.clone());
                                let took = began.elapsed();
                                let mut longest = shared.longest.lock().unwrap();
                                *longest = (*longest).max(took);
                                break;
                            }
                            *shared.refused.lock().unwrap().entry(status).or_default() += 1;
                            if status == 503 && retry_after.is_none() {
                                shared
                                    .unavailable_without_retry_after
                                    .fetch_add(1, Ordering::SeqCst);
                            }
                            // No answer, or this node is stopping: try the next node.
                            if status == 0 || status == 503 || status == 421 {
                                target = (target + 1) % targets.len();
                            }
                            let wait = retry_after.map_or(Duration::from_millis(100), |s| {
                                Duration::from_secs(s).min(Duration::from_secs(1))
                            });
                            thread::sleep(wait);
                            // Stopped: an event never accepted is abandoned (nothing was
                            // promised for it).
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                        }
                        shared.sent.fetch_add(1, Ordering::SeqCst);
                        next += interval;
                        let now = Instant::now();
                        if next > now {
                            thread::sleep(next - now);
                        } else {
                            next = now;
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            senders: threads,
            shared,
        }
    }

    /// Events accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.lock().unwrap().len()
    }

    /// Stops sending (each sender gives its current event one more try) and says what was sent.
    pub fn stop(self) -> Sent {
        self.stop.store(true, Ordering::SeqCst);
        for sender in self.senders {
            sender.join().expect("a sender panicked");
        }
        let shared = &self.shared;
        Sent {
            accepted: shared.accepted.lock().unwrap().clone(),
            refused: shared.refused.lock().unwrap().clone(),
            unavailable_without_retry_after: shared
                .unavailable_without_retry_after
                .load(Ordering::SeqCst),
            longest_to_accept: *shared.longest.lock().unwrap(),
        }
    }
}

/// Accepted against delivered, for one subscriber.
#[derive(Debug, Clone)]
pub struct Tally {
    pub accepted: usize,
    /// Accepted ids that arrived at least once.
    pub delivered: usize,
    /// Deliveries beyond the first of an id.
    pub duplicates: usize,
    /// Accepted ids that never arrived.
    pub lost: Vec<String>,
}

impl Tally {
    /// Compares the accepted ids with the ids a subscriber received.
    pub fn of(accepted: &[String], received: &[String]) -> Self {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for id in received {
            *counts.entry(id.as_str()).or_default() += 1;
        }
        let lost: Vec<String> = accepted
            .iter()
            .filter(|id| !counts.contains_key(id.as_str()))
            .cloned()
            .collect();
        let duplicates = counts.values().map(|&count| count - 1).sum();
        Self {
            accepted: accepted.len(),
            delivered: accepted.len() - lost.len(),
            duplicates,
            lost,
        }
    }

    /// Duplicates as a share of the accepted events, in percent.
    pub fn duplicate_percent(&self) -> f64 {
        self.duplicates as f64 * 100.0 / self.accepted.max(1) as f64
    }

    /// One line for the test's output.
    pub fn line(&self, what: &str) -> String {
        format!(
            "{what}: accepted {}, delivered {}, duplicates {} ({:.3} %), lost {}{}",
            self.accepted,
            self.delivered,
            self.duplicates,
            self.duplicate_percent(),
            self.lost.len(),
            if self.lost.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {:?})", &self.lost[..self.lost.len().min(10)])
            }
        )
    }
}

/// Waits until every accepted id arrived (or `timeout`), and returns the tally either way.
pub fn wait_for_delivery(
    accepted: &[String],
    received: impl Fn() -> Vec<String>,
    timeout: Duration,
) -> Tally {
    let deadline = Instant::now() + timeout;
    loop {
        let tally = Tally::of(accepted, &received());
        if tally.lost.is_empty() || Instant::now() >= deadline {
            return tally;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_lost_and_duplicate_ids() {
        let accepted: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let received: Vec<String> = ["a", "a", "c", "x"].map(String::from).to_vec();
        let tally = Tally::of(&accepted, &received);
        assert_eq!(tally.delivered, 2);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.lost, vec!["b".to_string()]);
    }
}
