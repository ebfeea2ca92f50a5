//! The webhook's serving certificate: files given by the chart (a Secret it generated, or one
//! cert-manager keeps renewed), re-read when they change so a rotated certificate is served without
//! a restart; or, when none is given, a CA and a certificate knactor generates at start (for a
//! webhook configuration written by hand, on a laptop or in a test, with that CA as its caBundle).

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tracing::{info, warn};

/// How often the certificate files are read again: a mounted Secret changes within a minute or
/// so of its update, cert-manager renews days before expiry.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    ReadFailed {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {problem}")]
    BadKey { path: PathBuf, problem: String },
    #[error("{cert} and {key} do not go together: {problem}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        problem: rustls::Error,
    },
    #[error("cannot generate the webhook's certificate: {0}")]
    GenerateFailed(#[from] rcgen::Error),
    #[error("cannot use the generated certificate: {0}")]
    GeneratedUnusable(rustls::Error),
    #[error("TLS settings: {0}")]
    ConfigFailed(rustls::Error),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// PEM files (the chain first, then any intermediates) and the PEM key.
    Files { cert: PathBuf, key: PathBuf },
    /// A CA and a certificate for these names (DNS names or IP addresses), generated at start.
    Generated { hosts: Vec<String> },
}

/// The certificate a listener serves, swapped in place when its files change.
#[derive(Debug)]
pub struct ServingCertificate {
    resolver: Arc<Resolver>,
    /// The CA that signed a generated certificate (PEM): the webhook configurations' caBundle.
    pub generated_ca: Option<String>,
}

#[derive(Debug)]
struct Resolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The crypto knactor uses everywhere (ring; the Kubernetes client's too).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServingCertificate {
    /// Reads or generates the certificate; files are then watched (see [`RELOAD_INTERVAL`]) for
    /// as long as the certificate is in use.
    pub fn load(source: &CertificateSource) -> Result<Self, TlsError> {
        match source {
            CertificateSource::Files { cert, key } => {
                let (pem, certified) = read_files(cert, key)?;
                let resolver = Arc::new(Resolver {
                    current: ArcSwap::from_pointee(certified),
                });
                watch(Arc::downgrade(&resolver), cert.clone(), key.clone(), pem);
                Ok(Self {
                    resolver,
                    generated_ca: None,
                })
            }
            CertificateSource::Generated { hosts } => {
                let (certified, ca) = generate(hosts)?;
                Ok(Self {
                    resolver: Arc::new(Resolver {
                        current: ArcSwap::from_pointee(certified),
                    }),
                    generated_ca: Some(ca),
                })
            }
        }
    }

    /// The generated CA as a webhook configuration's `caBundle` (base64 of the PEM).
    pub fn ca_bundle(&self) -> Option<String> {
        use base64::Engine as _;
        let ca = self.generated_ca.as_ref()?;
        Some(base64::engine::general_purpose::STANDARD.encode(ca))
    }

    /// rustls settings serving this certificate (TLS 1.2 and 1.3, no client certificates: the API
    /// server is the caller, and what it sends is public knowledge to anyone who may create the
    /// objects).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        Ok(rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::ConfigFailed)?
            .with_no_client_auth()
            .with_cert_resolver(self.resolver.clone()))
    }
}

/// The files' bytes (to notice a change) and the certificate they make.
fn read_files(cert: &Path, key: &Path) -> Result<(Vec<u8>, CertifiedKey), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::ReadFailed {
            path: path.to_path_buf(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::BadKey {
        path: key.to_path_buf(),
        problem: error.to_string(),
    })?;
    let certified = CertifiedKey::from_der(chain, private, &provider()).map_err(|problem| {
        TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            problem,
        }
    })?;
    let mut both = cert_pem;
    both.extend(key_pem);
    Ok((both, certified))
}

/// Reads the files every [`RELOAD_INTERVAL`] on a thread of its own (reading may block) until the
/// certificate is no longer used; serves what they hold once they change and make a certificate
/// again (a rotation writes the two files one after the other: the old certificate stays until
/// both are new).
fn watch(resolver: Weak<Resolver>, cert: PathBuf, key: PathBuf, mut served: Vec<u8>) {
    let spawned = std::thread::Builder::new()
        .name("webhook-certificate".into())
        .spawn(move || {
            let mut failing: Option<String> = None;
            loop {
                std::thread::sleep(RELOAD_INTERVAL);
                let Some(resolver) = resolver.upgrade() else {
                    return;
                };
                match read_files(&cert, &key) {
                    Ok((bytes, _)) if bytes == served => failing = None,
                    Ok((bytes, certified)) => {
                        resolver.current.store(Arc::new(certified));
                        served = bytes;
                        failing = None;
                        info!(cert = %cert.display(), "the admission webhook serves its new certificate");
                    }
                    Err(error) => {
                        let error = error.to_string();
                        if failing.as_ref() != Some(&error) {
                            warn!("the admission webhook keeps its certificate: {error}");
                        }
                        failing = Some(error);
                    }
                }
            }
        });
    if let Err(error) = spawned {
        warn!("the admission webhook will not notice a new certificate: cannot start its reader: {error}");
    }
}

/// A CA and a serving certificate for `hosts`, signed by it: the certificate and the CA's PEM.
fn generate(hosts: &[String]) -> Result<(CertifiedKey, String), TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "knactor admission webhook CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "knactor admission webhook");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca, &ca_key)?;

    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let certified = CertifiedKey::from_der(vec![cert.der().clone()], private, &provider())
        .map_err(TlsError::GeneratedUnusable)?;
    Ok((certified, ca.pem()))
}

/// The names a generated certificate is for: the listen address when it is a specific one, the
/// loopback and localhost, and this machine's name.
pub fn default_hosts(listen: IpAddr, hostname: &str) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !listen.is_unspecified() {
        hosts.push(listen.to_string());
    }
    if !hostname.is_empty() && hostname.parse::<IpAddr>().is_err() {
        hosts.push(hostname.to_string());
    }
    let mut unique = Vec::new();
    for host in hosts {
        if !unique.contains(&host) {
            unique.push(host);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier as _;

    use super::*;

    #[test]
    fn a_generated_certificate_is_signed_by_the_ca_it_hands_out() {
        let hosts = default_hosts("127.0.0.1".parse().unwrap(), "node-a");
        assert_eq!(hosts, vec!["localhost", "127.0.0.1", "::1", "node-a"]);
        let serving = ServingCertificate::load(&CertificateSource::Generated { hosts }).unwrap();
        let ca = serving.generated_ca.clone().unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        serving.server_config().unwrap();
        // The CA verifies the served certificate for 127.0.0.1.
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let served = serving.resolver.current.load_full();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        verifier
            .verify_server_cert(
                &served.cert[0],
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap();
    }

    #[test]
    fn files_that_do_not_make_a_certificate_are_refused_naming_the_file() {
        let dir = tempfile_dir();
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        let files = CertificateSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
        let error = ServingCertificate::load(&files).err().unwrap().to_string();
        assert!(
            error.starts_with(&format!("cannot read {}", cert.display())),
            "{error}"
        );
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let error = ServingCertificate::load(&files).err().unwrap().to_string();
        assert!(error.contains("no PEM certificate"), "{error}");

        // Two generated certificates: the key of one does not go with the other.
        let (one, _) = generate(&["localhost".into()]).unwrap();
        let (_, _) = generate(&["localhost".into()]).unwrap();
        let pem = |der: &[u8]| {
            use base64::Engine as _;
            let body = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        };
        std::fs::write(&cert, pem(one.cert[0].as_ref())).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        let error = ServingCertificate::load(&files).err().unwrap().to_string();
        assert!(error.contains("do not go together"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "knactor-tls-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
