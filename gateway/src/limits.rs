//! What the ingress will hold for its clients, and what it refused.
//!
//! A node's memory and file descriptors are bounded by these, whatever its clients do:
//! - [`ConnectionGate`]: at most `max_connections` open connections on the ingress listener and
//!   `max_connections_per_client` from one address; a connection over either is answered
//!   (503 or 429, `Connection: close`, after the request when it comes within 50 ms) and closed,
//!   before any HTTP state or buffer exists for it.
//! - [`BodyBudget`]: the bodies being read hold at most `body_buffer_bytes` together; a request
//!   whose body would go over gets 503 with `Retry-After`. Each body is also capped by
//!   `--max-body-bytes` and must arrive within `request_timeout` of its head (else 408).
//! - [`RefusalTally`]: every refusal is logged at debug; once per interval one warning sums them up,
//!   so a flood of bad requests cannot flood the log.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::binding::AttributeLimits;

/// The ingress limits a node runs with (`knactor run` flags; see the README's Limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngressLimits {
    /// A request's body must arrive within this of its head (408 otherwise).
    pub request_timeout: Duration,
    /// A request's head must arrive within this of the connection opening (actix answers 408).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this (zero: no keep-alive).
    pub keep_alive: Duration,
    /// Open connections on the ingress listener, all clients together.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_connections_per_client: usize,
    /// Bytes all request bodies being read may hold together.
    pub body_buffer_bytes: usize,
    /// Sizes of attributes and the number of extensions of an event.
    pub attributes: AttributeLimits,
}

impl Default for IngressLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(5),
            max_connections: 1024,
            max_connections_per_client: 256,
            body_buffer_bytes: 128 * 1024 * 1024,
            attributes: AttributeLimits::default(),
        }
    }
}

/// The limits and the state that enforces them, shared by every worker of the ingress listener.
#[derive(Debug)]
pub struct Limits {
    pub settings: IngressLimits,
    pub connections: Arc<ConnectionGate>,
    pub bodies: BodyBudget,
    pub refusals: RefusalTally,
}

impl Limits {
    pub fn new(settings: IngressLimits) -> Arc<Self> {
        Arc::new(Self {
            connections: Arc::new(ConnectionGate::new(
                settings.max_connections,
                settings.max_connections_per_client,
            )),
            bodies: BodyBudget::new(settings.body_buffer_bytes),
            refusals: RefusalTally::default(),
            settings,
        })
    }

    /// Prometheus text for the ingress's own gauges and counters.
    pub fn render_metrics(&self, out: &mut String) {
        let open = self.connections.open();
        let refused = self.refusals.totals();
        let _ = writeln!(
            out,
            "# HELP knactor_ingress_connections_open Connections open on the ingress listener.\n\
             # TYPE knactor_ingress_connections_open gauge\n\
             knactor_ingress_connections_open {open}\n\
             # HELP knactor_ingress_connections_refused_total Connections refused over a connection limit.\n\
             # TYPE knactor_ingress_connections_refused_total counter\n\
             knactor_ingress_connections_refused_total{{limit=\"max-connections\"}} {}\n\
             knactor_ingress_connections_refused_total{{limit=\"max-connections-per-client\"}} {}\n\
             # HELP knactor_ingress_body_buffer_bytes Bytes held by request bodies being read.\n\
             # TYPE knactor_ingress_body_buffer_bytes gauge\n\
             knactor_ingress_body_buffer_bytes {}\n\
             # HELP knactor_ingress_requests_refused_total Requests the ingress refused, by status.\n\
             # TYPE knactor_ingress_requests_refused_total counter",
            refused.over_total, refused.over_client, self.bodies.held()
        );
        for (status, count) in &refused.by_status {
            let _ = writeln!(
                out,
                "knactor_ingress_requests_refused_total{{code=\"{status}\"}} {count}"
            );
        }
    }
}

/// Counts the open connections, in total and per client address.
#[derive(Debug)]
pub struct ConnectionGate {
    max_total: usize,
    max_per_client: usize,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    Total(usize),
    PerClient(usize),
}

impl OverLimit {
    /// The response written to a refused connection before it is closed.
    pub fn response(self) -> String {
        let (status, body) = match self {
            OverLimit::Total(limit) => (
                "503 Service Unavailable",
                format!(
                    "this node holds its limit of {limit} connections (--max-connections); retry\n"
                ),
            ),
            OverLimit::PerClient(limit) => (
                "429 Too Many Requests",
                format!(
                    "your address holds its limit of {limit} connections to this node \
                     (--max-connections-per-client); reuse them or retry\n"
                ),
            ),
        };
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

impl ConnectionGate {
    pub fn new(max_total: usize, max_per_client: usize) -> Self {
        Self {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a place for a connection from `client`, or says which limit it is over. The place
    /// is given back when the permit drops (the connection closed).
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<ConnectionPermit, OverLimit> {
        let client = canonical(client);
        let mut per_client = self.lock();
        if self.open.load(Ordering::Acquire) >= self.max_total {
            return Err(OverLimit::Total(self.max_total));
        }
        let held = per_client.entry(client).or_insert(0);
        if *held >= self.max_per_client {
            return Err(OverLimit::PerClient(self.max_per_client));
        }
        *held += 1;
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok(ConnectionPermit {
            gate: self.clone(),
            client,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An IPv4 client seen through an IPv6 socket counts as itself.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// One open connection's place in the [`ConnectionGate`].
#[derive(Debug)]
pub struct ConnectionPermit {
    gate: Arc<ConnectionGate>,
    client: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut per_client = self.gate.lock();
        if let Some(held) = per_client.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                per_client.remove(&self.client);
            }
        }
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The bytes all request bodies being read may hold together.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    held: AtomicUsize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// A reservation of nothing yet, that grows as a body arrives.
    pub fn reservation(&self) -> BodyReservation<'_> {
        BodyReservation {
            budget: self,
            bytes: 0,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .is_ok()
    }
}

/// What one request's body holds of the [`BodyBudget`]; given back when dropped.
#[derive(Debug)]
pub struct BodyReservation<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl BodyReservation<'_> {
    /// Holds `bytes` more, if the budget has them.
    pub fn grow(&mut self, bytes: usize) -> bool {
        if self.budget.take(bytes) {
            self.bytes += bytes;
            true
        } else {
            false
        }
    }

    /// Gives `bytes` back (a buffer that was freed).
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        self.budget.held.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BodyReservation<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Refusals counted since the last summary, and since the start.
#[derive(Debug, Default)]
pub struct RefusalTally {
    window: Mutex<Counts>,
    over_total: AtomicU64,
    over_client: AtomicU64,
    by_status: Mutex<std::collections::BTreeMap<u16, u64>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    by_status: std::collections::BTreeMap<u16, u64>,
    malformed_http: u64,
    over_total: u64,
    over_client: u64,
}

/// Totals since the start, for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefusalTotals {
    pub by_status: Vec<(u16, u64)>,
    pub over_total: u64,
    pub over_client: u64,
}

impl RefusalTally {
    /// A request refused with `status` by the ingress.
    pub fn request(&self, status: u16) {
        *self.window().by_status.entry(status).or_default() += 1;
        *self
            .by_status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    /// A request so malformed that the HTTP layer answered 400 itself.
    pub fn malformed_http(&self) {
        self.window().malformed_http += 1;
        self.request(400);
    }

    /// A connection refused over a limit.
    pub fn connection(&self, over: OverLimit) {
        let mut window = self.window();
        match over {
            OverLimit::Total(_) => {
                window.over_total += 1;
                self.over_total.fetch_add(1, Ordering::Relaxed);
            }
            OverLimit::PerClient(_) => {
                window.over_client += 1;
                self.over_client.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The warning for what was refused since the last call, `None` when nothing was; starts a
    /// new window.
    pub fn summary(&self, interval: Duration) -> Option<String> {
        let counts = std::mem::take(&mut *self.window());
        if counts == Counts::default() {
            return None;
        }
        let mut parts = Vec::new();
        let requests: u64 = counts.by_status.values().sum();
        if requests > 0 {
            let statuses: Vec<String> = counts
                .by_status
                .iter()
                .map(|(status, count)| format!("{status} ×{count}"))
                .collect();
            let mut part = format!("{requests} request(s) ({})", statuses.join(", "));
            if counts.malformed_http > 0 {
                let _ = write!(part, ", {} of them not valid HTTP", counts.malformed_http);
            }
            parts.push(part);
        }
        if counts.over_total > 0 {
            parts.push(format!(
                "{} connection(s) over --max-connections",
                counts.over_total
            ));
        }
        if counts.over_client > 0 {
            parts.push(format!(
                "{} connection(s) over --max-connections-per-client",
                counts.over_client
            ));
        }
        Some(format!(
            "the ingress refused {} in the last {}s (each one is logged at debug)",
            parts.join(" and "),
            interval.as_secs().max(1)
        ))
    }

    pub fn totals(&self) -> RefusalTotals {
        RefusalTotals {
            by_status: self
                .by_status
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .map(|(status, count)| (*status, *count))
                .collect(),
            over_total: self.over_total.load(Ordering::Relaxed),
            over_client: self.over_client.load(Ordering::Relaxed),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Logs the refusals' summary at warn every `interval`, on a thread of its own, for as long as
/// the process runs.
pub fn report_refusals(limits: &Arc<Limits>, interval: Duration) {
    let limits = Arc::downgrade(limits);
    let spawned = std::thread::Builder::new()
        .name("ingress-refusals".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let Some(limits) = limits.upgrade() else {
                return;
            };
            if let Some(summary) = limits.refusals.summary(interval) {
                tracing::warn!("{summary}");
            }
        });
    if let Err(error) = spawned {
        tracing::warn!("cannot start the thread that sums up refused requests: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn client(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn connections_over_the_total_or_per_client_limit_are_refused_until_one_closes() {
        let gate = Arc::new(ConnectionGate::new(3, 2));
        let a1 = gate.admit(client(1)).unwrap();
        let _a2 = gate.admit(client(1)).unwrap();
        assert_eq!(gate.admit(client(1)).unwrap_err(), OverLimit::PerClient(2));
        let _b1 = gate.admit(client(2)).unwrap();
        assert_eq!(gate.admit(client(3)).unwrap_err(), OverLimit::Total(3));
        assert_eq!(gate.open(), 3);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _c1 = gate.admit(client(3)).unwrap();
        assert_eq!(gate.admit(client(1)).unwrap_err(), OverLimit::Total(3));
    }

    #[test]
    fn an_ipv4_client_through_an_ipv6_socket_is_one_client() {
        let gate = Arc::new(ConnectionGate::new(10, 1));
        let _v4 = gate.admit(client(7)).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped());
        assert_eq!(gate.admit(mapped).unwrap_err(), OverLimit::PerClient(1));
    }

    #[test]
    fn a_refused_connection_is_told_why_in_http() {
        let response = OverLimit::PerClient(256).response();
        assert!(response.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(response.contains("\r\nconnection: close\r\n"));
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.contains("--max-connections-per-client"));
        assert!(OverLimit::Total(9)
            .response()
            .starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back_when_a_body_is_done() {
        let budget = BodyBudget::new(100);
        let mut first = budget.reservation();
        assert!(first.grow(60));
        let mut second = budget.reservation();
        assert!(!second.grow(41), "over the budget");
        assert!(second.grow(40));
        assert_eq!(budget.held(), 100);
        first.shrink(10);
        assert_eq!((first.bytes(), budget.held()), (50, 90));
        drop(first);
        drop(second);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn refusals_are_summed_up_once_per_window() {
        let tally = RefusalTally::default();
        assert_eq!(tally.summary(Duration::from_secs(10)), None);
        for _ in 0..3 {
            tally.request(400);
        }
        tally.request(413);
        tally.malformed_http();
        tally.connection(OverLimit::PerClient(2));
        assert_eq!(
            tally.summary(Duration::from_secs(10)).unwrap(),
            "the ingress refused 5 request(s) (400 ×4, 413 ×1), 1 of them not valid HTTP and \
             1 connection(s) over --max-connections-per-client in the last 10s (each one is logged at debug)"
        );
        assert_eq!(tally.summary(Duration::from_secs(10)), None, "a new window");
        let totals = tally.totals();
        assert_eq!(totals.by_status, vec![(400, 4), (413, 1)]);
        assert_eq!((totals.over_total, totals.over_client), (0, 1));
    }
}
