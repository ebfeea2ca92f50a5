//! One active controller among the replicas: a `coordination.k8s.io/v1` Lease, taken when it is
//! free or expired, renewed every `RENEW_EVERY`, lost when it could not be renewed in time, and
//! given up when the replica stops (so another takes over at once instead of after the lease
//! expires).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tracing::{info, warn};

pub const LEASE_SECONDS: i32 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(3);

/// Holds (or waits for) the lease, keeping `leader` current, until `give_up` is notified: then
/// `leader` turns false and a lease this replica holds is released.
pub async fn hold(
    client: Client,
    namespace: String,
    name: String,
    identity: String,
    leader: Arc<AtomicBool>,
    give_up: Arc<tokio::sync::Notify>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    loop {
        let held = match try_acquire(&api, &name, &identity).await {
            Ok(held) => held,
            Err(error) => {
                warn!(lease = %format!("{namespace}/{name}"), "cannot take or renew the lease: {}", crate::apiserver::describe(&error));
                false
            }
        };
        if held != leader.swap(held, Ordering::Relaxed) {
            if held {
                info!(lease = %format!("{namespace}/{name}"), %identity, "this replica leads: it runs the sources and writes status");
            } else {
                info!(lease = %format!("{namespace}/{name}"), "this replica no longer leads");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RENEW_EVERY) => {}
            () = give_up.notified() => {
                leader.store(false, Ordering::Relaxed);
                match release(&api, &name, &identity).await {
                    Ok(true) => info!(lease = %format!("{namespace}/{name}"), "lease given up: another replica takes over now"),
                    Ok(false) => {}
                    Err(error) => warn!(lease = %format!("{namespace}/{name}"), "cannot give the lease up; it expires in {LEASE_SECONDS}s: {}", crate::apiserver::describe(&error)),
                }
                return;
            }
        }
    }
}

/// Releases the lease when this replica holds it, as client-go's leader election does on
/// cancel: no holder, a one-second duration, so the next replica to look takes it.
async fn release(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

async fn try_acquire(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    match api.get_opt(name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.to_string()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            let ours = spec.holder_identity.as_deref() == Some(identity);
            let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
                let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
                renewed.0.as_second() + duration < now.0.as_second()
            });
            if !ours && !expired {
                return Ok(false);
            }
            if !ours {
                spec.holder_identity = Some(identity.to_string());
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(LEASE_SECONDS);
            spec.renew_time = Some(now);
            // The resourceVersion it was read at: a concurrent taker makes this a 409.
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            }
        }
    }
}
