//! The flags of `knactor run` that bound what the ingress holds for its clients (connections,
//! time, body bytes, attribute sizes), and the probe listener a flood cannot starve. See the
//! README's "Limits" for the memory bound they give.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use knactor_gateway::binding::AttributeLimits;
use knactor_gateway::limits::IngressLimits;

use crate::config::parse_duration_flag;

#[derive(Args, Debug, Clone)]
pub(crate) struct IngressLimitArgs {
    /// A request's body must arrive within this of its head; a slower one gets 408 and its
    /// connection is closed.
    #[arg(long, env = "KNACTOR_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_duration_flag)]
    pub request_timeout: Duration,
    /// A request's head must arrive within this of the connection opening; else 408 and the
    /// connection is closed.
    #[arg(long, env = "KNACTOR_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_duration_flag)]
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection stays open (0: no keep-alive).
    #[arg(long, env = "KNACTOR_KEEP_ALIVE", default_value = "5s", value_parser = parse_duration_flag)]
    pub keep_alive: Duration,
    /// Connections the ingress listener holds open at once, all clients together; one more is
    /// answered 503 and closed before anything is read from it.
    #[arg(long, env = "KNACTOR_MAX_CONNECTIONS", default_value_t = IngressLimits::default().max_connections)]
    pub max_connections: usize,
    /// Connections one client address may hold open; one more is answered 429 and closed.
    #[arg(long, env = "KNACTOR_MAX_CONNECTIONS_PER_CLIENT", default_value_t = IngressLimits::default().max_connections_per_client)]
    pub max_connections_per_client: usize,
    /// Bytes the request bodies being read may hold together; a body that would go over gets 503
    /// with Retry-After.
    #[arg(long, env = "KNACTOR_BODY_BUFFER_BYTES", default_value_t = IngressLimits::default().body_buffer_bytes)]
    pub body_buffer_bytes: usize,
    /// Bytes of one attribute value (id, source, type, subject, any extension) or extension name;
    /// an event with a larger one gets 400 naming it.
    #[arg(long, env = "KNACTOR_MAX_ATTRIBUTE_BYTES", default_value_t = AttributeLimits::default().max_attribute_bytes)]
    pub max_attribute_bytes: usize,
    /// Extension attributes one event may carry; more get 400.
    #[arg(long, env = "KNACTOR_MAX_EXTENSIONS", default_value_t = AttributeLimits::default().max_extensions)]
    pub max_extensions: usize,
    /// Also serve /healthz and /readyz here, on a worker of its own that no client of the
    /// ingress can starve: point the liveness and readiness probes at it.
    #[arg(long, env = "KNACTOR_PROBE_LISTEN")]
    pub probe_listen: Option<SocketAddr>,
}

impl IngressLimitArgs {
    /// The limits, after saying when the connection limit leaves the node no file descriptors.
    pub(crate) fn checked_limits(&self) -> IngressLimits {
        if let Some(warning) = open_files_warning(self.max_connections, open_file_limit()) {
            tracing::warn!("{warning}");
        }
        IngressLimits {
            request_timeout: self.request_timeout.max(Duration::from_millis(1)),
            header_timeout: self.header_timeout.max(Duration::from_millis(1)),
            keep_alive: self.keep_alive,
            max_connections: self.max_connections.max(1),
            max_connections_per_client: self.max_connections_per_client.max(1),
            body_buffer_bytes: self.body_buffer_bytes,
            attributes: AttributeLimits {
                max_attribute_bytes: self.max_attribute_bytes,
                max_extensions: self.max_extensions,
            },
        }
    }
}

/// File descriptors the node needs besides its ingress connections: deliveries, Kafka, the
/// configuration, the other listeners.
const OTHER_FILES: u64 = 512;

fn open_files_warning(max_connections: usize, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    let wanted = max_connections as u64 + OTHER_FILES;
    (wanted > limit).then(|| {
        format!(
            "--max-connections {max_connections} and the node's other files need about {wanted} \
             file descriptors, over this process's limit of {limit} (ulimit -n): raise the limit \
             or lower --max-connections, or a flood of connections leaves none for deliveries"
        )
    })
}

/// The soft limit on open files (Linux; `None` elsewhere or when unlimited).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// actix-http logs every request it cannot parse at ERROR ("stream error: ..."): anyone could
/// flood the log. The ingress counts those itself (at debug, summed up at warn), so they are off
/// unless the filter names actix_http.
pub(crate) fn log_filter(log: &str) -> String {
    if log.contains("actix_http") {
        log.to_string()
    } else {
        format!("{log},actix_http::h1::dispatcher=off")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_limit_beyond_the_open_file_limit_is_warned_about() {
        assert_eq!(open_files_warning(4096, Some(1_048_576)), None);
        assert_eq!(open_files_warning(4096, None), None);
        let warning = open_files_warning(4096, Some(1024)).unwrap();
        assert!(warning.contains("about 4608 file descriptors, over this process's limit of 1024"));
    }

    #[test]
    fn the_open_file_limit_is_read_from_proc() {
        assert!(open_file_limit().is_some_and(|limit| limit > 0));
    }

    #[test]
    fn actix_parse_errors_leave_the_log_unless_asked_for() {
        assert_eq!(log_filter("info"), "info,actix_http::h1::dispatcher=off");
        assert_eq!(
            log_filter("debug,actix_http=trace"),
            "debug,actix_http=trace"
        );
    }
}
