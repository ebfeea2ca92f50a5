//! A real OTLP trace collector on loopback that answers Jaeger's query API (crates.io
//! `otlp-embedded`: the same `/api/traces` a Jaeger all-in-one serves on 16686).
//!
//! It takes spans over both OTLP transports: gRPC (otlp-embedded's own `TraceService`), and
//! OTLP/HTTP with protobuf bodies (`POST /v1/traces`, decoded here and handed to the same
//! service), so one store answers for whichever transport a node used.

use std::fmt;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use otlp_embedded::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use otlp_embedded::proto::common::v1::{any_value, AnyValue, KeyValue};
use otlp_embedded::proto::resource::v1::Resource;
use otlp_embedded::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otlp_embedded::{Config, State, StateRef, TraceService, TraceServiceImpl, TraceServiceServer};
use prost::Message as _;
use serde_json::Value;

use crate::http;

pub struct Collector {
    /// OTLP over gRPC, e.g. `http://127.0.0.1:41234`.
    pub grpc: String,
    /// OTLP over HTTP: the base URL (`/v1/traces` below it).
    pub otlp_http: String,
    /// Jaeger's query API (`/api/traces`, `/api/traces/{id}`, `/api/services`).
    pub query: String,
    state: StateRef,
    runtime: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("grpc", &self.grpc)
            .field("otlp_http", &self.otlp_http)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl Collector {
    pub fn start() -> Self {
        let bind = || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            (listener, url)
        };
        let (grpc_listener, grpc) = bind();
        let (http_listener, otlp_http) = bind();
        let (query_listener, query) = bind();
        let state = State::new(Config {
            max_length: 10_000,
            max_memory_usage: 1 << 28,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, wait) = mpsc::channel();
        let served = state.clone();
        thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            ready.send(runtime.handle().clone()).unwrap();
            runtime.block_on(async move {
                let grpc_listener = tokio::net::TcpListener::from_std(grpc_listener).unwrap();
                let grpc_service = TraceServiceServer::new(TraceServiceImpl::new(served.clone()));
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(grpc_service)
                        .serve_with_incoming(tokio_stream(grpc_listener)),
                );
                let receiver = std::sync::Arc::new(TraceServiceImpl::new(served.clone()));
                let otlp_http = axum::Router::new().route(
                    "/v1/traces",
                    axum::routing::post(move |body: axum::body::Bytes| {
                        let receiver = receiver.clone();
                        async move { receive_http(&receiver, &body).await }
                    }),
                );
                let http_listener = tokio::net::TcpListener::from_std(http_listener).unwrap();
                tokio::spawn(async move { axum::serve(http_listener, otlp_http).await });
                let query_listener = tokio::net::TcpListener::from_std(query_listener).unwrap();
                let ui = otlp_embedded::ui_app(served, "/");
                tokio::spawn(async move { axum::serve(query_listener, ui).await });
                let _ = stopped.await;
            });
        });
        let runtime = wait.recv().unwrap();
        Self {
            grpc,
            otlp_http,
            query,
            state,
            runtime,
            _stop: stop,
        }
    }

    /// Records a span as a producer would report it (service `service`), so that a trace that
    /// starts with it is complete.
    pub fn record_span(
        &self,
        service: &str,
        name: &str,
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent: Option<[u8; 8]>,
    ) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let text = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        text("service.name", service),
                        text("service.instance.id", service),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: trace_id.to_vec(),
                        span_id: span_id.to_vec(),
                        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
                        name: name.into(),
                        kind: 4, // producer
                        start_time_unix_nano: now - 1_000_000,
                        end_time_unix_nano: now,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let service = TraceServiceImpl::new(self.state.clone());
        self.runtime
            .block_on(service.export(tonic::Request::new(request)))
            .unwrap();
    }

    /// `GET /api/traces?service=...`: the complete traces whose root span is `service`'s.
    pub fn traces(&self, service: &str) -> Vec<Value> {
        let answer: Value = http()
            .get(format!("{}/api/traces", self.query))
            .query(&[("service", service), ("limit", "1000")])
            .send()
            .unwrap()
            .json()
            .unwrap();
        answer["data"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /api/traces/{id}`: one trace, complete or not.
    pub fn trace(&self, trace_id: &str) -> Option<Value> {
        let response = http()
            .get(format!("{}/api/traces/{trace_id}", self.query))
            .send()
            .unwrap();
        if response.status() != 200 {
            return None;
        }
        let answer: Value = response.json().unwrap();
        answer["data"].get(0).cloned()
    }

    /// Waits until trace `trace_id` holds at least `spans` spans, and returns it.
    pub fn wait_for_trace(&self, trace_id: &str, spans: usize, timeout: Duration) -> Value {
        let mut last = None;
        let found = crate::poll(timeout, || {
            last = self.trace(trace_id);
            last.as_ref()
                .and_then(|trace| trace["spans"].as_array())
                .is_some_and(|all| all.len() >= spans)
        });
        assert!(
            found,
            "trace {trace_id} did not reach {spans} spans within {timeout:?}; it holds: {:#}",
            last.unwrap_or(Value::Null)
        );
        last.unwrap()
    }
}

/// OTLP/HTTP: a protobuf `ExportTraceServiceRequest` in, the protobuf response out.
async fn receive_http(
    receiver: &TraceServiceImpl,
    body: &[u8],
) -> (axum::http::StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
    };
    match receiver.export(tonic::Request::new(request)).await {
        Ok(_) => (
            axum::http::StatusCode::OK,
            ExportTraceServiceResponse::default().encode_to_vec(),
        ),
        Err(_) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
    }
}

/// The accepted connections of a listener, as tonic's `serve_with_incoming` takes them.
fn tokio_stream(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}
