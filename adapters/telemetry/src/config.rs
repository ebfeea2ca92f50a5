//! What the flags and the standard `OTEL_*` variables say, checked once: [`TracingConfig::build`]
//! turns their text into an [`Export`] (or none: no endpoint, nothing exported), with an error
//! that names the setting for anything it cannot use.

use std::fmt;
use std::str::FromStr;

use url::Url;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (Jaeger and collectors listen on 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies, to `<endpoint>/v1/traces` (port 4318).
    HttpProtobuf,
}

impl FromStr for Protocol {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(ConfigError::Protocol(other.to_string())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        })
    }
}

/// Which traces are kept (the OpenTelemetry SDK's `OTEL_TRACES_SAMPLER` values).
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    AlwaysOn,
    AlwaysOff,
    /// A fraction of traces, chosen by trace id (so every hop of a trace decides alike).
    Ratio(f64),
    /// Follow the producer's decision when there is one, else decide as the inner sampling does.
    ParentBased(Box<Sampling>),
}

impl Sampling {
    /// `name` and `arg` as `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` spell them.
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Self, ConfigError> {
        let ratio = || -> Result<f64, ConfigError> {
            let Some(arg) = arg.map(str::trim).filter(|arg| !arg.is_empty()) else {
                return Ok(1.0);
            };
            match arg.parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                _ => Err(ConfigError::SamplerArg(arg.to_string())),
            }
        };
        Ok(match name.trim() {
            "always_on" => Sampling::AlwaysOn,
            "always_off" => Sampling::AlwaysOff,
            "traceidratio" => Sampling::Ratio(ratio()?),
            "parentbased_always_on" => Sampling::ParentBased(Box::new(Sampling::AlwaysOn)),
            "parentbased_always_off" => Sampling::ParentBased(Box::new(Sampling::AlwaysOff)),
            "parentbased_traceidratio" => {
                Sampling::ParentBased(Box::new(Sampling::Ratio(ratio()?)))
            }
            other => return Err(ConfigError::Sampler(other.to_string())),
        })
    }
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// The URL the exporter posts to: as given for gRPC; with `/v1/traces` for HTTP.
    pub endpoint: Url,
    pub protocol: Protocol,
    pub service_name: String,
    pub sampling: Sampling,
}

/// The settings as text, from flags or their variables.
#[derive(Debug, Clone, Default)]
pub struct TracingConfig {
    /// `--otlp-endpoint` / `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL.
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the traces URL itself (for HTTP, no `/v1/traces` is
    /// added), used instead of `endpoint` when both are set.
    pub traces_endpoint: Option<String>,
    /// `--otlp-protocol` / `OTEL_EXPORTER_OTLP_PROTOCOL` (default grpc).
    pub protocol: Option<String>,
    /// `OTEL_SERVICE_NAME` (default knactor).
    pub service_name: Option<String>,
    /// `OTEL_TRACES_SAMPLER` (default parentbased_always_on) and `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: Option<String>,
    pub sampler_arg: Option<String>,
    /// `OTEL_SDK_DISABLED=true` turns export off whatever else is set.
    pub disabled: bool,
}

impl TracingConfig {
    /// Checks everything, also when no endpoint is set (a wrong sampler is a mistake either way).
    pub fn build(&self) -> Result<Option<Export>, ConfigError> {
        let protocol = match non_empty(&self.protocol) {
            Some(text) => text.parse()?,
            None => Protocol::Grpc,
        };
        let sampling = Sampling::parse(
            non_empty(&self.sampler).unwrap_or("parentbased_always_on"),
            non_empty(&self.sampler_arg),
        )?;
        let endpoint = match (non_empty(&self.traces_endpoint), non_empty(&self.endpoint)) {
            (Some(traces), _) => parse_endpoint(traces, protocol, Signal::AsGiven)?,
            (None, Some(base)) => parse_endpoint(base, protocol, Signal::Appended)?,
            (None, None) => return Ok(None),
        };
        if self.disabled {
            return Ok(None);
        }
        Ok(Some(Export {
            endpoint,
            protocol,
            service_name: non_empty(&self.service_name)
                .unwrap_or("knactor")
                .to_string(),
            sampling,
        }))
    }
}

fn non_empty(text: &Option<String>) -> Option<&str> {
    text.as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// Whether an endpoint gets the signal's path (`/v1/traces`) for HTTP, as the OTLP spec says:
/// the base endpoint does, the per-signal one is the URL itself.
#[derive(Clone, Copy, PartialEq)]
enum Signal {
    Appended,
    AsGiven,
}

/// An http URL with a host; for HTTP the signal path is added to a base endpoint, unless the URL
/// already ends with it.
fn parse_endpoint(text: &str, protocol: Protocol, signal: Signal) -> Result<Url, ConfigError> {
    let bad = |reason: &str| ConfigError::Endpoint {
        endpoint: text.to_string(),
        reason: reason.to_string(),
    };
    let mut url = Url::parse(text).map_err(|error| bad(&error.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(bad(
                "TLS to the collector is not built in: use http:// (a collector in the cluster or on the host)",
            ))
        }
        _ => return Err(bad("use an http:// URL")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    if protocol == Protocol::HttpProtobuf
        && signal == Signal::Appended
        && !url.path().ends_with("/v1/traces")
    {
        let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

/// A setting knactor cannot use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("OTLP endpoint {endpoint:?} is not usable: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("OTLP protocol {0:?} is not supported: use grpc or http/protobuf")]
    Protocol(String),
    #[error("trace sampler {0:?} is not supported: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio")]
    Sampler(String),
    #[error("trace sampler argument {0:?} is not a ratio between 0 and 1")]
    SamplerArg(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str) -> TracingConfig {
        TracingConfig {
            endpoint: Some(endpoint.into()),
            ..TracingConfig::default()
        }
    }

    #[test]
    fn the_traces_endpoint_wins_and_is_used_as_given() {
        let config = TracingConfig {
            endpoint: Some("http://base:4318".into()),
            traces_endpoint: Some("http://gw/otel/traces".into()),
            protocol: Some("http/protobuf".into()),
            ..TracingConfig::default()
        };
        let export = config.build().unwrap().unwrap();
        assert_eq!(export.endpoint.as_str(), "http://gw/otel/traces");
        let only_traces = TracingConfig {
            traces_endpoint: Some("http://jaeger:4317".into()),
            ..TracingConfig::default()
        };
        assert_eq!(
            only_traces.build().unwrap().unwrap().endpoint.as_str(),
            "http://jaeger:4317/"
        );
    }

    #[test]
    fn no_endpoint_means_no_export() {
        assert_eq!(TracingConfig::default().build(), Ok(None));
        assert_eq!(config("  ").build(), Ok(None));
    }

    #[test]
    fn grpc_is_the_default_and_keeps_the_endpoint_as_given() {
        let export = config("http://jaeger:4317").build().unwrap().unwrap();
        assert_eq!(export.protocol, Protocol::Grpc);
        assert_eq!(export.endpoint.as_str(), "http://jaeger:4317/");
        assert_eq!(export.service_name, "knactor");
        assert_eq!(
            export.sampling,
            Sampling::ParentBased(Box::new(Sampling::AlwaysOn))
        );
    }

    #[test]
    fn http_posts_to_the_traces_path_once() {
        for (given, expected) in [
            ("http://jaeger:4318", "http://jaeger:4318/v1/traces"),
            ("http://jaeger:4318/", "http://jaeger:4318/v1/traces"),
            ("http://gw/otel/", "http://gw/otel/v1/traces"),
            (
                "http://jaeger:4318/v1/traces",
                "http://jaeger:4318/v1/traces",
            ),
        ] {
            let export = TracingConfig {
                protocol: Some("http/protobuf".into()),
                ..config(given)
            }
            .build()
            .unwrap()
            .unwrap();
            assert_eq!(export.endpoint.as_str(), expected);
        }
    }

    #[test]
    fn bad_endpoints_are_refused_with_the_reason() {
        for bad in [
            "jaeger:4317",
            "localhost",
            "ftp://jaeger",
            "http://",
            "not a url",
            "https://jaeger:4317",
        ] {
            let error = config(bad).build().unwrap_err();
            assert!(
                matches!(error, ConfigError::Endpoint { .. }),
                "{bad}: {error:?}"
            );
            assert!(!error.to_string().contains('\n'));
        }
    }

    #[test]
    fn samplers_follow_the_sdk_names() {
        assert_eq!(Sampling::parse("always_off", None), Ok(Sampling::AlwaysOff));
        assert_eq!(
            Sampling::parse("traceidratio", Some("0.01")),
            Ok(Sampling::Ratio(0.01))
        );
        assert_eq!(
            Sampling::parse("parentbased_traceidratio", None),
            Ok(Sampling::ParentBased(Box::new(Sampling::Ratio(1.0))))
        );
        assert_eq!(
            Sampling::parse("sometimes", None),
            Err(ConfigError::Sampler("sometimes".into()))
        );
        for bad in ["1.5", "-0.1", "half"] {
            assert_eq!(
                Sampling::parse("traceidratio", Some(bad)),
                Err(ConfigError::SamplerArg(bad.into()))
            );
        }
    }

    #[test]
    fn a_bad_sampler_is_an_error_even_without_an_endpoint() {
        let config = TracingConfig {
            sampler: Some("sometimes".into()),
            ..TracingConfig::default()
        };
        assert!(config.build().is_err());
    }

    #[test]
    fn the_sdk_can_be_disabled() {
        let config = TracingConfig {
            disabled: true,
            ..config("http://jaeger:4317")
        };
        assert_eq!(config.build(), Ok(None));
    }

    #[test]
    fn only_grpc_and_http_protobuf_are_protocols() {
        assert_eq!("grpc".parse::<Protocol>(), Ok(Protocol::Grpc));
        assert_eq!(
            "http/json".parse::<Protocol>(),
            Err(ConfigError::Protocol("http/json".into()))
        );
    }
}
