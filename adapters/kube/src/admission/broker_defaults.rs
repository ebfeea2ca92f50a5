//! Knative's `config-br-defaults` as the API server has it now, for the webhook's Broker defaults:
//! read by name (the chart's `rbac.readKnativeBrokerDefaults` grants exactly that), at most once a
//! second, by a task on the node's main runtime, where its Kubernetes client lives (the webhook's
//! HTTP workers run runtimes of their own and ask it over a channel).
//!
//! A ConfigMap that does not exist, or that knactor may not read, gives no defaults (Brokers then
//! get knactor's `--default-broker-class`); a wrong one is ignored, as the controller ignores it;
//! an API server that does not answer leaves the last value read in place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use knactor_actors::resources::broker_defaults;
use knactor_actors::routes::BrokerDefaults;
use kube::api::Api;
use kube::Client;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// How long a read is reused.
const FRESH: Duration = Duration::from_secs(1);
/// How long a read may take before the last value is used.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

type Ask = oneshot::Sender<Arc<BrokerDefaults>>;

/// Where the webhook gets the Broker defaults.
#[derive(Debug, Clone)]
pub enum BrokerDefaultsSource {
    /// Read from the cluster by [`BrokerDefaultsSource::start`]'s task.
    Cluster(mpsc::Sender<Ask>),
    /// Always these (tests, and a node with no cluster).
    Fixed(Arc<BrokerDefaults>),
}

impl BrokerDefaultsSource {
    /// Starts the reader on the current runtime (the node's main one).
    pub fn start(client: Client) -> Self {
        let (sender, receiver) = mpsc::channel(64);
        actix_rt::spawn(read_on_demand(client, receiver));
        Self::Cluster(sender)
    }

    /// The defaults now (none when the reader is gone).
    pub async fn current(&self) -> Arc<BrokerDefaults> {
        match self {
            Self::Fixed(defaults) => defaults.clone(),
            Self::Cluster(sender) => {
                let (reply, answer) = oneshot::channel();
                if sender.send(reply).await.is_err() {
                    return Arc::default();
                }
                answer.await.unwrap_or_default()
            }
        }
    }
}

async fn read_on_demand(client: Client, mut asks: mpsc::Receiver<Ask>) {
    let key = broker_defaults::config_map_key();
    let api: Api<ConfigMap> = Api::namespaced(client, &key.namespace);
    let mut last: Option<(Instant, Arc<BrokerDefaults>)> = None;
    let mut said_forbidden = false;
    while let Some(reply) = asks.recv().await {
        let fresh = last
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, defaults)| defaults.clone());
        let defaults = match fresh {
            Some(defaults) => defaults,
            None => {
                let previous = last.as_ref().map(|(_, defaults)| defaults.clone());
                let read = match tokio::time::timeout(READ_TIMEOUT, api.get_opt(&key.name)).await {
                    Ok(Ok(Some(config_map))) => {
                        let data = config_map.data.unwrap_or_default().into_iter().collect();
                        match BrokerDefaults::from_data(&data) {
                            Ok(defaults) => defaults,
                            Err(errors) => {
                                warn!(config_map = %key, "the admission webhook ignores a wrong config-br-defaults: {}", errors[0]);
                                BrokerDefaults::default()
                            }
                        }
                    }
                    Ok(Ok(None)) => BrokerDefaults::default(),
                    Ok(Err(kube::Error::Api(status))) if status.code == 403 => {
                        if !said_forbidden {
                            warn!(config_map = %key, "the admission webhook may not read Knative's Broker defaults (the chart's rbac.readKnativeBrokerDefaults grants it): Brokers get knactor's default class");
                            said_forbidden = true;
                        }
                        BrokerDefaults::default()
                    }
                    Ok(Err(error)) => {
                        warn!(config_map = %key, "the admission webhook cannot read the Broker defaults, using the last ones read: {}", crate::apiserver::describe(&error));
                        previous.as_deref().cloned().unwrap_or_default()
                    }
                    Err(_) => {
                        warn!(config_map = %key, "the API server took more than {READ_TIMEOUT:?} to answer for the Broker defaults, using the last ones read");
                        previous.as_deref().cloned().unwrap_or_default()
                    }
                };
                let read = Arc::new(read);
                last = Some((Instant::now(), read.clone()));
                read
            }
        };
        let _ = reply.send(defaults);
    }
}
