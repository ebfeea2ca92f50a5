//! knactor-kube: knactor on Kubernetes. [`crd`] holds the Knative resources as custom resources
//! (generated from the API shapes of `knactor-actors`); [`cluster`] runs them; [`admission`] is the
//! webhook that refuses and defaults them at `kubectl apply` time, with the same loader.

// Whatever is `pub` is reachable from outside the crate; the rest says pub(crate).
#![warn(unreachable_pub)]
// Every public type can be printed with `{:?}`: in a log line, a test failure, a caller's own Debug.
#![warn(missing_debug_implementations)]

pub mod admission;
pub mod apiserver;
pub mod broker_config;
pub mod cluster;
pub mod crd;
pub mod lease;
pub mod state;

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Config;

/// Why the cluster's client configuration could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("cannot read the kubeconfig {}: {source}", path.display())]
    ReadFailed {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {}: {source}", path.display())]
    Unusable {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration found: {0}")]
    NotFound(#[source] kube::config::InferConfigError),
}

/// The cluster's client configuration: from a kubeconfig file, or (no path) inferred the way
/// kubectl does (`KUBECONFIG`, `~/.kube/config`, then the in-cluster ServiceAccount).
pub async fn client_config(kubeconfig: Option<&Path>) -> Result<Config, ClientConfigError> {
    match kubeconfig {
        Some(path) => {
            let file =
                Kubeconfig::read_from(path).map_err(|source| ClientConfigError::ReadFailed {
                    path: path.to_path_buf(),
                    source,
                })?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClientConfigError::Unusable {
                    path: path.to_path_buf(),
                    source,
                })
        }
        None => Config::infer().await.map_err(ClientConfigError::NotFound),
    }
}

/// The kube client crate, for callers that hold a [`Config`].
pub use kube;
