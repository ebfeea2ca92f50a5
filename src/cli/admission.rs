//! `knactor run --admission-listen`: the node serves the admission webhook (knactor-kube's
//! `admission`) beside its gateway, in cluster mode. Flags and wiring only.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use knactor_kube::admission::broker_defaults::BrokerDefaultsSource;
use knactor_kube::admission::server::{self, AdmissionState};
use knactor_kube::admission::tls::{default_hosts, CertificateSource, ServingCertificate};

#[derive(Args, Clone)]
pub(crate) struct AdmissionArgs {
    /// Serve the admission webhook (HTTPS: POST /mutate and /validate, what the chart's
    /// MutatingWebhookConfiguration and ValidatingWebhookConfiguration call) on this address.
    /// Needs the cluster (--kubernetes or --kubeconfig): it judges the cluster's Knative objects.
    #[arg(long, env = "KNACTOR_ADMISSION_LISTEN")]
    pub admission_listen: Option<SocketAddr>,
    /// The webhook's certificate (PEM, its chain after it), read again when it changes (a renewed
    /// Secret, cert-manager). Without it and --admission-key, knactor generates a CA and a
    /// certificate for localhost, the loopback, the listen address and the host name, and prints
    /// the CA as the caBundle to give the webhook configurations.
    #[arg(long, env = "KNACTOR_ADMISSION_CERT", requires = "admission_key")]
    pub admission_cert: Option<PathBuf>,
    /// The private key of --admission-cert (PEM).
    #[arg(long, env = "KNACTOR_ADMISSION_KEY", requires = "admission_cert")]
    pub admission_key: Option<PathBuf>,
}

impl AdmissionArgs {
    /// Refuses the webhook on a node that does not take its resources from a cluster.
    pub(crate) fn check(&self, cluster_mode: bool) -> anyhow::Result<()> {
        match self.admission_listen {
            Some(address) if !cluster_mode => anyhow::bail!(
                "--admission-listen {address}: the admission webhook judges the cluster's objects; \
                 the node takes its resources from --config (give --kubernetes or --kubeconfig instead)"
            ),
            _ => Ok(()),
        }
    }

    /// Binds the listener, before anything starts (a taken port fails the start at once).
    pub(crate) fn bind(&self, cluster_mode: bool) -> anyhow::Result<Option<TcpListener>> {
        self.check(cluster_mode)?;
        let Some(address) = self.admission_listen else {
            return Ok(None);
        };
        TcpListener::bind(address)
            .map(Some)
            .with_context(|| format!("cannot listen on {address} (--admission-listen)"))
    }

    /// What `--dry-run` says of the webhook, when it is on.
    pub(crate) fn summary(&self) -> Option<String> {
        let address = self.admission_listen?;
        Some(match &self.admission_cert {
            Some(cert) => format!(
                "admission webhook: https://{address} (certificate {}, re-read on change)\n",
                cert.display()
            ),
            None => {
                format!("admission webhook: https://{address} (a certificate generated at start)\n")
            }
        })
    }

    /// Starts the webhook on `listener` (on the node's runtime: the Broker defaults are read with
    /// `client` there) and says where, with the caBundle when knactor made the certificate.
    pub(crate) fn serve(
        &self,
        listener: TcpListener,
        client: knactor_kube::kube::Client,
        default_class: &str,
        hostname: &str,
    ) -> anyhow::Result<actix_web::dev::Server> {
        let bound = listener.local_addr()?;
        let source = match (&self.admission_cert, &self.admission_key) {
            (Some(cert), Some(key)) => CertificateSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => CertificateSource::Generated {
                hosts: default_hosts(bound.ip(), hostname),
            },
        };
        let certificate = ServingCertificate::load(&source)
            .context("the admission webhook's certificate (--admission-cert, --admission-key)")?;
        let state = AdmissionState {
            default_class: Arc::from(default_class),
            broker_defaults: BrokerDefaultsSource::start(client),
        };
        let server = server::serve(listener, &certificate, state)?;
        match certificate.ca_bundle() {
            Some(bundle) => println!(
                "knactor admission webhook on https://{bound} (generated certificate; caBundle {bundle})"
            ),
            None => println!("knactor admission webhook on https://{bound}"),
        }
        Ok(server)
    }
}
