//! The flags of `knactor run` that say where traces go (with the standard OpenTelemetry variables
//! as fallbacks), and how many events the node's journal remembers.

use clap::Args;
use knactor_telemetry::{Telemetry, TracingConfig};

#[derive(Args)]
pub(crate) struct TelemetryArgs {
    /// Export traces over OTLP to this collector, e.g. http://localhost:4317 (Jaeger, gRPC) or
    /// http://localhost:4318 with --otlp-protocol http/protobuf. Without it nothing is exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL", value_parser = otlp_url)]
    otlp_endpoint: Option<String>,
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the traces URL itself; wins over
    /// OTEL_EXPORTER_OTLP_ENDPOINT, not over --otlp-endpoint.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", hide = true, value_parser = otlp_url)]
    otlp_traces_endpoint: Option<String>,
    /// OTLP transport: grpc or http/protobuf.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", default_value = "grpc")]
    otlp_protocol: String,
    /// The service name spans are reported under.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "knactor")]
    otel_service_name: String,
    /// Which traces are kept: always_on, always_off, traceidratio, parentbased_always_on,
    /// parentbased_always_off, parentbased_traceidratio.
    #[arg(
        long,
        env = "OTEL_TRACES_SAMPLER",
        default_value = "parentbased_always_on"
    )]
    trace_sampler: String,
    /// The ratio of the *traceidratio samplers, between 0 and 1 (e.g. 0.01).
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", allow_hyphen_values = true)]
    trace_sampler_arg: Option<String>,
    /// OTEL_SDK_DISABLED=true turns export off whatever else is set.
    #[arg(long, env = "OTEL_SDK_DISABLED", hide = true)]
    otel_sdk_disabled: Option<String>,
    /// Events whose hops the node remembers for `knactor trace EVENT_ID` (0: none).
    #[arg(long, env = "KNACTOR_TRACE_JOURNAL_EVENTS", default_value_t = knactor_actors::journal::DEFAULT_CAPACITY)]
    pub trace_journal_events: usize,
    /// Bytes the journal may hold (ids, sources, hops and their details); the oldest events are
    /// forgotten first. Events with an id or source over 1 KiB are not journaled.
    #[arg(long, env = "KNACTOR_TRACE_JOURNAL_BYTES", default_value_t = knactor_actors::journal::DEFAULT_MAX_BYTES)]
    pub trace_journal_bytes: usize,
    /// Jaeger's web UI, e.g. http://localhost:16686: the console links each event to its trace
    /// there (<url>/trace/<trace id>).
    #[arg(long, env = "KNACTOR_JAEGER_UI_URL", value_name = "URL", value_parser = jaeger_ui_url)]
    pub jaeger_ui_url: Option<url::Url>,
}

/// `--jaeger-ui-url`: an http(s) URL, said as the other URL flags say it.
fn jaeger_ui_url(text: &str) -> Result<url::Url, String> {
    super::http_url(text, "http://localhost:16686")
}

/// An OTLP endpoint is an http(s) URL: said at once, naming the flag (or its variable) and the URL
/// to write, rather than "relative URL without a base". The text is kept as given (the exporter
/// settings decide what a trailing path means).
fn otlp_url(text: &str) -> Result<String, String> {
    super::http_url(text, "http://localhost:4317")
        .map(|_| text.to_string())
        .map_err(|reason| format!("not a usable OTLP endpoint: {reason}"))
}

impl TelemetryArgs {
    /// Installs logging at `log` and, with an endpoint, the OTLP export; keep the result alive
    /// until the node stops (dropping it flushes the last spans).
    pub(crate) fn init(&self, log: &str) -> anyhow::Result<Telemetry> {
        // --otlp-endpoint given on the command line wins over both variables; the variable
        // OTEL_EXPORTER_OTLP_ENDPOINT yields to the traces-specific one.
        let endpoint_from_variable = self.otlp_endpoint.is_some()
            && std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok() == self.otlp_endpoint;
        let traces_endpoint = self
            .otlp_traces_endpoint
            .clone()
            .filter(|_| self.otlp_endpoint.is_none() || endpoint_from_variable);
        let config = TracingConfig {
            endpoint: self.otlp_endpoint.clone(),
            traces_endpoint,
            protocol: Some(self.otlp_protocol.clone()),
            service_name: Some(self.otel_service_name.clone()),
            sampler: Some(self.trace_sampler.clone()),
            sampler_arg: self.trace_sampler_arg.clone(),
            disabled: self
                .otel_sdk_disabled
                .as_deref()
                .is_some_and(|value| value.trim().eq_ignore_ascii_case("true")),
        };
        Ok(knactor_telemetry::init(log, &config)?)
    }
}
