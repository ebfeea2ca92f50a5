//! Retry policy: when a failed delivery is tried again, and how long to wait first.
//!
//! The schedule (documented in the README): the k-th retry (k = 1, 2, ...) waits
//! - linear: `backoffDelay × k`
//! - exponential: `backoffDelay × 2^k`
//!
//! which is the Knative Kafka broker's schedule (Knative's core dispatcher counts from k = 0, so its
//! first linear retry does not wait at all). Each wait is then capped (`max_backoff`), spread by ±20 %
//! jitter so that many failing deliveries do not retry in lock-step, and, for 429 and 503 answers with
//! `Retry-After`, stretched to what the subscriber asked for, up to `retryAfterMax` (or the node's
//! default maximum).

use std::time::Duration;

/// How the wait grows from one retry to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffPolicy {
    Linear,
    Exponential,
}

/// The runtime shape of a `DeliverySpec`'s retry fields, validated once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt: `retry + 1` attempts in all.
    pub retries: u32,
    pub policy: BackoffPolicy,
    pub delay: Duration,
    /// Per-attempt timeout; `None` takes the node's default.
    pub timeout: Option<Duration>,
    /// Upper bound on a `Retry-After` wait; `None` takes the node's default.
    pub retry_after_max: Option<Duration>,
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        policy: BackoffPolicy::Exponential,
        delay: Duration::ZERO,
        timeout: None,
        retry_after_max: None,
    };

    /// The wait before the `retry`-th retry (1-based), before cap and jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = match self.policy {
            BackoffPolicy::Linear => f64::from(retry),
            BackoffPolicy::Exponential => 2f64.powi(retry.min(64) as i32),
        };
        Duration::try_from_secs_f64(self.delay.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }

    /// The wait before the `retry`-th retry, everything applied.
    ///
    /// `jitter` is a number in `[0, 1)` (a random draw; tests pass fixed ones), `retry_after` what the
    /// subscriber's `Retry-After` said, if anything, and `limits` the node's bounds.
    pub fn wait_before(
        &self,
        retry: u32,
        jitter: f64,
        retry_after: Option<Duration>,
        limits: &RetryLimits,
    ) -> Duration {
        let base = self.backoff(retry).min(limits.max_backoff);
        let jittered = Duration::try_from_secs_f64(base.as_secs_f64() * spread(jitter))
            .unwrap_or(limits.max_backoff)
            .min(limits.max_backoff);
        match retry_after {
            Some(asked) => {
                let allowed = self.retry_after_max.unwrap_or(limits.retry_after_max);
                jittered.max(asked.min(allowed))
            }
            None => jittered,
        }
    }

    /// The per-attempt timeout, or the node's default.
    pub fn attempt_timeout(&self, limits: &RetryLimits) -> Duration {
        self.timeout.unwrap_or(limits.default_timeout)
    }
}

/// ±20 % around the scheduled wait.
const JITTER: f64 = 0.2;

/// The factor a wait is multiplied by for a `jitter` draw in `[0, 1)`: 1 ± [`JITTER`].
fn spread(jitter: f64) -> f64 {
    1.0 + JITTER * (2.0 * jitter.clamp(0.0, 1.0) - 1.0)
}

/// The wait of the mesh's own retry loops (a source's sink, a source or a broker's actors
/// restarting, an append to the parking lot): doubling from `first` after each failure in a row,
/// at most `longest`. A subscriber's retries follow its [`RetryPolicy`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub longest: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, longest: Duration) -> Self {
        Self { first, longest }
    }

    /// The wait after the `failures`-th failure in a row (1-based): `first × 2^(failures - 1)`,
    /// at most `longest`.
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.longest)
    }

    /// [`Backoff::after`], spread by ±20 % (`jitter` a draw in `[0, 1)`), so that many loops
    /// failing on one cause do not retry in lock-step.
    pub fn jittered(&self, failures: u32, jitter: f64) -> Duration {
        self.after(failures).mul_f64(spread(jitter))
    }
}

/// Node-wide bounds on every retry policy (flags of `knactor run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryLimits {
    /// No single wait is longer than this.
    pub max_backoff: Duration,
    /// `Retry-After` is honoured up to this when the delivery spec has no `retryAfterMax`.
    pub retry_after_max: Duration,
    /// Per-attempt timeout when the delivery spec has none.
    pub default_timeout: Duration,
}

impl Default for RetryLimits {
    fn default() -> Self {
        Self {
            max_backoff: Duration::from_secs(300),
            retry_after_max: Duration::from_secs(60),
            default_timeout: Duration::from_secs(30),
        }
    }
}

/// Whether an HTTP status from a subscriber is worth another attempt.
///
/// Follows Knative's dispatcher (`pkg/kncloudevents/retries.go`) and the data-plane spec:
/// - 404: the endpoint may not be ready yet (a Service scaling from zero, a route being programmed);
/// - 408: the subscriber timed out reading the request;
/// - 409: the subscriber says the event is being processed already, so the result may change;
/// - 429: the subscriber is overloaded and asks us to slow down;
/// - 5xx: the subscriber failed, possibly transiently.
///
/// Any other 4xx says the request itself is wrong, and sending it again will not help; 1xx and 3xx
/// are protocol errors for a POST of an event.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 404 | 408 | 409 | 429 | 500..=599)
}

/// Whether a status acknowledges the event (delivered).
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(policy: BackoffPolicy, delay_ms: u64) -> RetryPolicy {
        RetryPolicy {
            retries: 5,
            policy,
            delay: Duration::from_millis(delay_ms),
            timeout: None,
            retry_after_max: None,
        }
    }

    const NO_JITTER: f64 = 0.5;

    #[test]
    fn a_backoff_doubles_up_to_its_longest_wait() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let waits: Vec<u128> = (1..=8).map(|n| backoff.after(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.after(0), Duration::from_millis(100));
        assert_eq!(backoff.after(u32::MAX), Duration::from_secs(5));
        assert_eq!(backoff.jittered(2, NO_JITTER), Duration::from_millis(200));
        assert_eq!(backoff.jittered(2, 0.0), Duration::from_millis(160));
        assert!(backoff.jittered(9, 0.999) <= Duration::from_secs(6));
    }

    #[test]
    fn linear_backoff_grows_by_the_delay_each_retry() {
        let policy = policy(BackoffPolicy::Linear, 100);
        let waits: Vec<_> = (1..=3).map(|k| policy.backoff(k).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 300]);
    }

    #[test]
    fn exponential_backoff_doubles_each_retry() {
        let policy = policy(BackoffPolicy::Exponential, 100);
        let waits: Vec<_> = (1..=4).map(|k| policy.backoff(k).as_millis()).collect();
        assert_eq!(waits, vec![200, 400, 800, 1600]);
    }

    #[test]
    fn a_wait_never_exceeds_the_cap_even_with_jitter() {
        let policy = policy(BackoffPolicy::Exponential, 1000);
        let limits = RetryLimits {
            max_backoff: Duration::from_secs(5),
            ..RetryLimits::default()
        };
        for jitter in [0.0, 0.5, 0.999] {
            assert!(policy.wait_before(30, jitter, None, &limits) <= Duration::from_secs(5));
        }
        assert_eq!(
            policy.backoff(1000),
            Duration::MAX.min(policy.backoff(1000))
        );
    }

    #[test]
    fn jitter_spreads_waits_by_at_most_twenty_percent() {
        let policy = policy(BackoffPolicy::Linear, 1000);
        let limits = RetryLimits::default();
        let low = policy.wait_before(1, 0.0, None, &limits);
        let mid = policy.wait_before(1, NO_JITTER, None, &limits);
        let high = policy.wait_before(1, 0.999_999, None, &limits);
        assert_eq!(mid, Duration::from_secs(1));
        assert_eq!(low, Duration::from_millis(800));
        assert!(high > Duration::from_millis(1199) && high <= Duration::from_millis(1200));
    }

    #[test]
    fn retry_after_stretches_the_wait_up_to_its_maximum() {
        let mut policy = policy(BackoffPolicy::Linear, 100);
        let limits = RetryLimits::default();
        let asked = Some(Duration::from_secs(3));
        assert_eq!(
            policy.wait_before(1, NO_JITTER, asked, &limits),
            Duration::from_secs(3)
        );
        policy.retry_after_max = Some(Duration::from_secs(1));
        assert_eq!(
            policy.wait_before(1, NO_JITTER, asked, &limits),
            Duration::from_secs(1)
        );
        assert_eq!(
            policy.wait_before(1, NO_JITTER, Some(Duration::from_millis(1)), &limits),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn retryable_statuses_are_knatives() {
        for status in [404, 408, 409, 429, 500, 502, 503, 504, 599] {
            assert!(is_retryable(status), "{status}");
        }
        for status in [100, 200, 202, 301, 400, 401, 403, 405, 410, 413, 422] {
            assert!(!is_retryable(status), "{status}");
        }
    }
}
