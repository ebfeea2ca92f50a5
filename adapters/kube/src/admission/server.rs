//! The webhook's HTTPS listener: `POST /mutate` (the MutatingWebhookConfiguration's path) and
//! `POST /validate` (the ValidatingWebhookConfiguration's). A body that is not an AdmissionReview
//! gets 400 with the reason, one over the size limit 413, another method 405; every review gets
//! 200 with knactor's answer in it, as the API server expects.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use knactor_actors::routes::BrokerDefaults;
use tracing::{info, warn};

use super::broker_defaults::BrokerDefaultsSource;
use super::review::{self, Operation};
use super::tls::{ServingCertificate, TlsError};
use super::{judge, Defaults, Webhook};

/// The largest review read: an object (at most 1.5 MiB in etcd) and its old version, with room.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AdmissionState {
    /// knactor's `--default-broker-class`.
    pub default_class: Arc<str>,
    pub broker_defaults: BrokerDefaultsSource,
}

/// Serves the webhook on `listener` with `certificate` (2 threads; signals are the node's).
pub fn serve(
    listener: TcpListener,
    certificate: &ServingCertificate,
    state: AdmissionState,
) -> Result<Server, ServeError> {
    let tls = certificate.server_config()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .service(web::resource("/mutate").route(web::post().to(mutate)))
            .service(web::resource("/validate").route(web::post().to(validate)))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5)
    .listen_rustls_0_23(listener, tls)?
    .run();
    Ok(server)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot serve the admission webhook: {0}")]
    ListenFailed(#[from] std::io::Error),
}

async fn mutate(state: web::Data<AdmissionState>, body: web::Bytes) -> HttpResponse {
    answer(Webhook::Mutate, &state, &body).await
}

async fn validate(state: web::Data<AdmissionState>, body: web::Bytes) -> HttpResponse {
    answer(Webhook::Validate, &state, &body).await
}

async fn answer(webhook: Webhook, state: &AdmissionState, body: &[u8]) -> HttpResponse {
    let request = match review::parse(body) {
        Ok(request) => request,
        Err(bad) => {
            warn!("admission webhook: {bad}");
            return HttpResponse::BadRequest()
                .content_type("text/plain; charset=utf-8")
                .body(bad.to_string());
        }
    };
    // Only Brokers have defaults from the cluster: no read for the other kinds.
    let brokers = if request.kind.kind == "Broker"
        && matches!(request.operation, Operation::Create | Operation::Update)
    {
        state.broker_defaults.current().await
    } else {
        Arc::new(BrokerDefaults::default())
    };
    let answer = judge(
        webhook,
        &request,
        &Defaults {
            brokers: &brokers,
            class: &state.default_class,
        },
    );
    if let Some(reason) = &answer.refusal {
        info!(webhook = ?webhook, operation = ?request.operation, "admission refused: {reason}");
    }
    HttpResponse::Ok().json(answer.into_review(&request.uid))
}
