//! A Broker named `default` in every namespace the selector matches (Knative's namespace
//! injection), created by the leader.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde_json::json;
use tracing::{info, warn};

use super::{Kind, Shared};

/// Creates a Broker named `default` in every namespace the selector matches (leader only).
pub(super) async fn default_brokers(shared: Arc<Shared>) {
    let selector = shared
        .options
        .default_broker_selector
        .clone()
        .unwrap_or_default();
    let namespaces: Api<Namespace> = Api::all(shared.client.clone());
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !shared.handles.leader.load(Ordering::Relaxed) {
            continue;
        }
        let list = match namespaces
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => list,
            Err(error) => {
                warn!(
                    "cannot list the namespaces labelled {selector}: {}",
                    crate::apiserver::describe(&error)
                );
                continue;
            }
        };
        for namespace in list.items {
            let Some(name) = namespace.metadata.name else {
                continue;
            };
            if namespace.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let brokers: Api<DynamicObject> =
                Api::namespaced_with(shared.client.clone(), &name, &Kind::Broker.resource());
            match brokers.get_opt("default").await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(error) => {
                    warn!(
                        "cannot read Broker {name}/default: {}",
                        crate::apiserver::describe(&error)
                    );
                    continue;
                }
            }
            let broker: DynamicObject = match serde_json::from_value(json!({
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {
                    "name": "default",
                    "namespace": name,
                    "labels": {"eventing.knative.dev/namespaceInjected": "true"},
                },
                "spec": {},
            })) {
                Ok(broker) => broker,
                Err(_) => continue,
            };
            match brokers.create(&PostParams::default(), &broker).await {
                Ok(_) => {
                    info!(namespace = %name, "created the namespace's default Broker ({selector})")
                }
                Err(error) => warn!(
                    "cannot create Broker {name}/default: {}",
                    crate::apiserver::describe(&error)
                ),
            }
        }
    }
}
