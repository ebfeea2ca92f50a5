//! knactor-telemetry: a node's logs and traces.
//!
//! [`init`] installs the process's `tracing` subscriber: the log lines on stderr (as before), and,
//! when an OTLP endpoint is configured ([`TracingConfig`]), an OpenTelemetry layer that exports
//! the spans of the event path (target `knactor::trace`, made by `knactor_actors::event_span!`)
//! over OTLP gRPC or HTTP. Without an endpoint no layer wants those spans, so they are disabled
//! at their call sites and cost next to nothing. The returned [`Telemetry`] flushes what is
//! buffered when dropped: keep it alive for the life of the node.
//!
//! The trace context itself (W3C `traceparent` carried inside each event) is the actors' business:
//! see `knactor_actors::trace`. Start with [`init`].

// Whatever is `pub` is reachable from outside the crate; the rest says pub(crate).
#![warn(unreachable_pub)]
// Every public type can be printed with `{:?}`: in a log line, a test failure, a caller's own Debug.
#![warn(missing_debug_implementations)]

mod config;
mod export;

pub use config::{ConfigError, Export, Protocol, Sampling, TracingConfig};

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// The spans that follow events; what the OpenTelemetry layer exports.
pub const TRACE_TARGET: &str = "knactor::trace";

/// How long shutdown waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the OTLP exporter for {endpoint}: {reason}")]
    ExporterFailed { endpoint: String, reason: String },
    #[error("cannot start the exporter's runtime: {0}")]
    RuntimeFailed(#[source] std::io::Error),
    #[error("log filter {filter:?} is not valid: {reason}")]
    LogFilter { filter: String, reason: String },
}

/// The installed telemetry; dropping it flushes and stops the exporter.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// The gRPC exporter's own runtime (tonic needs a tokio reactor; actix's is not one to share).
    runtime: Option<tokio::runtime::Runtime>,
    export: Option<Export>,
}

impl Telemetry {
    /// Where spans go, if anywhere.
    pub fn export(&self) -> Option<&Export> {
        self.export.as_ref()
    }

    /// Exports what is buffered now.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            if let Err(error) = provider.force_flush() {
                tracing::warn!("flushing spans failed: {error}");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
                eprintln!("warning: flushing the last spans failed: {error}");
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Installs logging at `log_filter` (a `RUST_LOG`-style filter; `RUST_LOG` wins when set) and,
/// when `tracing` says where, the OTLP export. Call once, before the actix system starts.
pub fn init(log_filter: &str, tracing: &TracingConfig) -> Result<Telemetry, TelemetryError> {
    let export = tracing.build()?;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => EnvFilter::try_new(log_filter).map_err(|error| TelemetryError::LogFilter {
            filter: log_filter.to_string(),
            reason: error.to_string(),
        })?,
    };
    // The event path's spans are for the exporter only: formatting them per event would cost
    // every node, traced or not.
    let filter = filter.add_directive(
        format!("{TRACE_TARGET}=off")
            .parse()
            .expect("a valid directive"),
    );
    use std::io::IsTerminal as _;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour only for people: not in files, pipes or a cluster's log collector.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter);

    let Some(export) = export else {
        let _ = tracing_subscriber::registry().with(logs).try_init();
        return Ok(Telemetry {
            provider: None,
            runtime: None,
            export: None,
        });
    };
    let (provider, runtime) = export::provider(&export)?;
    let tracer = provider.tracer("knactor");
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_filter(Targets::new().with_target(TRACE_TARGET, Level::INFO));
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    knactor_actors::trace::set_exporting(export::head_sampling(&export.sampling));
    tracing::info!(
        endpoint = %export.endpoint,
        protocol = %export.protocol,
        service = %export.service_name,
        sampling = ?export.sampling,
        "exporting traces over OTLP"
    );
    Ok(Telemetry {
        provider: Some(provider),
        runtime,
        export: Some(export),
    })
}
