//! Where `knactor run` listens: the flags, and the listeners, bound before anything starts (a
//! taken port fails the start at once, before an actor runs or a cluster is asked anything).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use url::Url;

use super::RunArgs;

/// Where the node listens, who may use its admin API, and the URL others reach it at.
#[derive(Args)]
pub(super) struct ListenArgs {
    /// Address of the broker ingress (and /healthz, /readyz, /metrics).
    #[arg(long, env = "KNACTOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve the admin API (`/-/status`, parked events and their re-drive, event trails) on this
    /// address only, not on --listen: keep it off the gateway Service every workload can reach.
    #[arg(long, env = "KNACTOR_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// A file holding the admin API's bearer token: every `/-/` request must carry
    /// `Authorization: Bearer <token>` (`knactor status` and friends read the same variable).
    /// Without it the admin API is open on a loopback listener and off on any other.
    #[arg(long, env = "KNACTOR_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The ingress URL others use to reach this node (default: http://<listen>/).
    #[arg(long, env = "KNACTOR_ADVERTISE", value_parser = crate::cli::node_url)]
    pub advertise: Option<Url>,
}

impl ListenArgs {
    /// The admin API's token (--admin-token-file); refuses an admin listener other machines can
    /// reach without one.
    pub(super) fn admin_token(&self) -> anyhow::Result<Option<Arc<str>>> {
        let admin_token = match &self.admin_token_file {
            Some(path) => Some(read_admin_token(path)?),
            None => None,
        };
        if let Some(address) = self.admin_listen {
            if admin_token.is_none() && !address.ip().is_loopback() {
                anyhow::bail!(
                    "--admin-listen {address} is reachable from other machines: give --admin-token-file \
                     (the admin API shows parked payloads and re-drives events), or listen on 127.0.0.1"
                );
            }
        }
        Ok(admin_token)
    }
}

/// The admin token in `path`: its first line, trimmed; never empty.
fn read_admin_token(path: &std::path::Path) -> anyhow::Result<Arc<str>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--admin-token-file {}: cannot read it", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.len() < 16 {
        anyhow::bail!(
            "--admin-token-file {}: the token must be at least 16 characters (it has {})",
            path.display(),
            token.len()
        );
    }
    Ok(Arc::from(token))
}

/// The node's listeners, bound.
pub(super) struct Listeners {
    /// The broker ingress (--listen).
    pub ingress: TcpListener,
    /// The address the ingress listener got (--listen may ask for port 0).
    pub bound: SocketAddr,
    /// --admin-listen.
    pub admin: Option<TcpListener>,
    /// --probe-listen.
    pub probes: Option<TcpListener>,
    /// --admission-listen (cluster mode only).
    pub admission: Option<TcpListener>,
    /// The ingress URL others reach this node at: --advertise, else http://<bound>/.
    pub advertise: Url,
}

impl Listeners {
    pub(super) fn bind(args: &RunArgs, cluster_mode: bool) -> anyhow::Result<Self> {
        let ingress = TcpListener::bind(args.listen.listen)
            .with_context(|| format!("cannot listen on {}", args.listen.listen))?;
        let bound = ingress.local_addr()?;
        let admin = bind_other(args.listen.admin_listen, "--admin-listen")?;
        let probes = bind_other(args.ingress_limits.probe_listen, "--probe-listen")?;
        let admission = args.admission.bind(cluster_mode)?;
        let advertise = match &args.listen.advertise {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{bound}/")).context("advertised URL")?,
        };
        Ok(Self {
            ingress,
            bound,
            admin,
            probes,
            admission,
            advertise,
        })
    }
}

/// A listener besides the ingress, when its `flag` gives an address.
fn bind_other(address: Option<SocketAddr>, flag: &str) -> anyhow::Result<Option<TcpListener>> {
    let Some(address) = address else {
        return Ok(None);
    };
    TcpListener::bind(address)
        .map(Some)
        .with_context(|| format!("cannot listen on {address} ({flag})"))
}
