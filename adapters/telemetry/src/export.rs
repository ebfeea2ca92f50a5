//! The OTLP exporter and the tracer provider around it.
//!
//! The batch processor runs on a thread of its own and exports from there. The HTTP exporter uses
//! the blocking reqwest client, which is at home on such a thread. The gRPC exporter (tonic) needs a
//! tokio reactor, and actix's single-threaded runtimes are not one it may use, so it is built inside,
//! and every export runs on, a small multi-thread runtime that the [`crate::Telemetry`] owns
//! ([`OnRuntime`]).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use knactor_actors::trace::HeadSampling;

use crate::config::{Export, Protocol, Sampling};
use crate::TelemetryError;

/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn provider(
    export: &Export,
) -> Result<(SdkTracerProvider, Option<tokio::runtime::Runtime>), TelemetryError> {
    let failed = |reason: String| TelemetryError::ExporterFailed {
        endpoint: export.endpoint.to_string(),
        reason,
    };
    // knactor decides at each hop, before making a span, whether an event is traced
    // (`head_sampling`): the spans that reach the SDK are all to be kept.
    let builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(resource(&export.service_name));
    match export.protocol {
        Protocol::HttpProtobuf => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(export.endpoint.as_str())
                .with_timeout(EXPORT_TIMEOUT)
                .with_http_client(
                    reqwest::blocking::Client::builder()
                        .no_proxy()
                        .timeout(EXPORT_TIMEOUT)
                        .build()
                        .map_err(|error| failed(error.to_string()))?,
                )
                .build()
                .map_err(|error| failed(error.to_string()))?;
            Ok((builder.with_batch_exporter(exporter).build(), None))
        }
        Protocol::Grpc => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("knactor-otlp")
                .enable_all()
                .build()
                .map_err(TelemetryError::RuntimeFailed)?;
            let exporter = {
                let _inside = runtime.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(export.endpoint.as_str())
                    .with_timeout(EXPORT_TIMEOUT)
                    .build()
                    .map_err(|error| failed(error.to_string()))?
            };
            let exporter = OnRuntime {
                inner: Arc::new(exporter),
                runtime: runtime.handle().clone(),
            };
            Ok((builder.with_batch_exporter(exporter).build(), Some(runtime)))
        }
    }
}

/// The sampling knactor applies at each hop. A trace id ratio is applied where a trace starts and
/// then followed, as `parentbased_traceidratio` does: a hop never cuts a trace that an earlier hop
/// (on this node or another) decided to keep.
pub(crate) fn head_sampling(sampling: &Sampling) -> HeadSampling {
    fn root_ratio(sampling: &Sampling) -> f64 {
        match sampling {
            Sampling::AlwaysOn => 1.0,
            Sampling::AlwaysOff => 0.0,
            Sampling::Ratio(ratio) => *ratio,
            Sampling::ParentBased(inner) => root_ratio(inner),
        }
    }
    match sampling {
        Sampling::AlwaysOn => HeadSampling::AlwaysOn,
        Sampling::AlwaysOff => HeadSampling::AlwaysOff,
        Sampling::Ratio(_) | Sampling::ParentBased(_) => HeadSampling::ParentBased {
            root: root_ratio(sampling),
        },
    }
}

fn resource(service_name: &str) -> Resource {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into());
    Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new(
                "service.instance.id",
                format!("{host}-{}", std::process::id()),
            ),
        ])
        .build()
}

/// An exporter whose exports run on a tokio runtime of their own.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        async move {
            task.await
                .unwrap_or_else(|error| Err(OTelSdkError::InternalFailure(error.to_string())))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _inside = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _inside = self.runtime.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before any export holds a clone.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_apply_where_a_trace_starts_and_parents_are_followed() {
        assert_eq!(head_sampling(&Sampling::AlwaysOn), HeadSampling::AlwaysOn);
        assert_eq!(head_sampling(&Sampling::AlwaysOff), HeadSampling::AlwaysOff);
        assert_eq!(
            head_sampling(&Sampling::Ratio(0.01)),
            HeadSampling::ParentBased { root: 0.01 }
        );
        assert_eq!(
            head_sampling(&Sampling::ParentBased(Box::new(Sampling::AlwaysOff))),
            HeadSampling::ParentBased { root: 0.0 }
        );
        assert_eq!(
            head_sampling(&Sampling::ParentBased(Box::new(Sampling::AlwaysOn))),
            HeadSampling::ParentBased { root: 1.0 }
        );
    }
}
