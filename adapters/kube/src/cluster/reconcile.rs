//! The controllers' reconcile: the leader writes each object's status (only when it changed,
//! with the conditions' transition times kept), and a Broker's finalizer with kube's
//! [`finalizer`] helper (its cleanup waits for the node to stop the Broker).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use knactor_actors::actor::GetStatus;
use knactor_actors::resources::ObjectKey;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer;
use kube::ResourceExt as _;
use serde_json::{json, Value};
use tracing::{debug, warn};

use super::{Kind, Shared, FINALIZER};

pub(super) struct Reconciler {
    pub(super) shared: Arc<Shared>,
    pub(super) kind: Kind,
}

/// Why a reconcile did not finish; the controller tries it again ([`error_policy`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum ReconcileError {
    /// Writing the object's status to the API server failed.
    #[error("cannot write the status: {}", crate::apiserver::describe(.0))]
    WriteStatus(#[source] kube::Error),
    /// A deleted Broker still runs on the node, or its topics are still being deleted: its
    /// finalizer stays (not a failure; looked at again shortly).
    #[error("the node still runs the deleted Broker or deletes its topics")]
    StillRunning,
    /// Adding or removing the Broker's finalizer, or what ran inside it, failed.
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<ReconcileError>>),
}

impl ReconcileError {
    /// A deleted Broker that is not finished yet (its cleanup, inside the finalizer, said so).
    fn is_still_running(&self) -> bool {
        matches!(self, ReconcileError::Finalizer(error)
            if matches!(**error, finalizer::Error::CleanupFailed(ReconcileError::StillRunning)))
    }
}

pub(super) async fn reconcile(
    object: Arc<DynamicObject>,
    context: Arc<Reconciler>,
) -> Result<Action, ReconcileError> {
    let shared = &context.shared;
    shared.rebuild.notify_one();
    if !shared.handles.leader.load(Ordering::Relaxed) {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let resource = context.kind.resource();
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<DynamicObject> =
        Api::namespaced_with(shared.client.clone(), &namespace, &resource);
    let key = ObjectKey {
        namespace,
        name: object.name_any(),
    };
    // Only a Broker has something to finish when it is deleted (its actors, its topics); Triggers
    // and sources stop as soon as they leave the watch, and carry no finalizer.
    if context.kind != Kind::Broker {
        return write_status(&api, &object, &context, key).await;
    }
    finalizer::finalizer(&api, FINALIZER, object, |event| async {
        match event {
            finalizer::Event::Apply(object) => write_status(&api, &object, &context, key).await,
            finalizer::Event::Cleanup(_) if still_running(shared, &key).await => {
                Err(ReconcileError::StillRunning)
            }
            finalizer::Event::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|error| ReconcileError::Finalizer(Box::new(error)))
}

/// Writes the status the latest build computed for the object, when it differs from what the
/// object has.
async fn write_status(
    api: &Api<DynamicObject>,
    object: &DynamicObject,
    context: &Reconciler,
    key: ObjectKey,
) -> Result<Action, ReconcileError> {
    let desired = {
        let statuses = context
            .shared
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        statuses.get(&(context.kind, key)).cloned()
    };
    let Some(desired) = desired else {
        // Not in the latest build yet: the rebuild we asked for publishes it.
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let current = object.data.get("status").cloned().unwrap_or(Value::Null);
    let desired = with_dropped_fields_cleared(&current, desired);
    if !same_status(&current, &desired) {
        let mut status = desired.clone();
        stamp_transitions(&current, &mut status);
        api.patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .map_err(ReconcileError::WriteStatus)?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Whether this node still runs a deleted Broker, or is still deleting its topics
/// (`--kafka-delete-topics`): its finalizer stays until neither is true.
pub(super) async fn still_running(shared: &Shared, key: &ObjectKey) -> bool {
    match shared.handles.node.send(GetStatus).await {
        Ok(status) => {
            status.brokers.iter().any(|broker| &broker.key == key) || status.removing.contains(key)
        }
        Err(_) => true,
    }
}

/// `desired` with a null for each field `current` has and `desired` no longer does (a Broker's
/// `address` once its spec became invalid, say): the merge patch then removes it instead of
/// leaving the last valid value in place.
pub(super) fn with_dropped_fields_cleared(current: &Value, mut desired: Value) -> Value {
    if let (Some(current), Some(fields)) = (current.as_object(), desired.as_object_mut()) {
        for name in current.keys() {
            fields.entry(name.clone()).or_insert(Value::Null);
        }
    }
    desired
}

/// Whether `current` already says what `desired` says (transition times aside).
pub(super) fn same_status(current: &Value, desired: &Value) -> bool {
    let Some(desired_map) = desired.as_object() else {
        return true;
    };
    desired_map.iter().all(|(name, value)| {
        if name == "conditions" {
            let strip = |conditions: &Value| -> Vec<Value> {
                conditions
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let mut c = c.clone();
                        if let Some(map) = c.as_object_mut() {
                            map.remove("lastTransitionTime");
                        }
                        c
                    })
                    .collect()
            };
            strip(&current["conditions"]) == strip(value)
        } else {
            &current[name] == value
        }
    })
}

/// Keeps a condition's `lastTransitionTime` while its status stays, stamps now when it changes.
pub(super) fn stamp_transitions(current: &Value, desired: &mut Value) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let previous: BTreeMap<String, (Value, Value)> = current["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["type"].as_str()?.to_string(),
                (c["status"].clone(), c["lastTransitionTime"].clone()),
            ))
        })
        .collect();
    if let Some(conditions) = desired["conditions"].as_array_mut() {
        for condition in conditions {
            let type_ = condition["type"].as_str().unwrap_or_default().to_string();
            let time = match previous.get(&type_) {
                Some((status, time)) if *status == condition["status"] && time.is_string() => {
                    time.clone()
                }
                _ => json!(now),
            };
            condition["lastTransitionTime"] = time;
        }
    }
}

pub(super) fn error_policy(
    object: Arc<DynamicObject>,
    error: &ReconcileError,
    context: Arc<Reconciler>,
) -> Action {
    let object = format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    );
    if error.is_still_running() {
        debug!(kind = context.kind.name(), %object, "deleted; waiting for the node to stop it");
        return Action::requeue(Duration::from_secs(1));
    }
    warn!(
        kind = context.kind.name(),
        %object,
        "reconcile failed, trying again in 5 s: {error}"
    );
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_the_new_status_drops_is_cleared_not_kept() {
        let current = json!({"address": {"url": "http://gw/ns/b"}, "observedGeneration": 1,
                             "conditions": [{"type": "Ready", "status": "True"}]});
        let desired = json!({"observedGeneration": 2,
                             "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec"}]});
        let patch = with_dropped_fields_cleared(&current, desired);
        assert_eq!(patch["address"], Value::Null);
        assert!(patch.as_object().unwrap().contains_key("address"));
        assert_eq!(patch["observedGeneration"], 2);
        assert!(!same_status(&current, &patch));
    }

    #[test]
    fn a_status_already_without_the_field_needs_no_patch() {
        let current = json!({"observedGeneration": 2,
                             "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t"}]});
        let desired =
            json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]});
        let patch = with_dropped_fields_cleared(&current, desired);
        assert!(same_status(&current, &patch));
    }
}
