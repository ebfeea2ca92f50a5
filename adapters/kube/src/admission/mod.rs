//! The admission webhook: `kubectl apply` of a Broker, Trigger, ApiServerSource or PingSource is
//! refused when knactor would refuse it, with the same one-line reason `knactor validate` prints,
//! and what it admits is stored defaulted, as Knative's own webhooks do.
//!
//! ```text
//!  API server ── AdmissionReview (HTTPS, server.rs) ──► review::parse ──400 when it is not one──►
//!       │
//!       ▼  judge()
//!  1. the object read by cluster::load: the loader of `knactor validate` and of the controller
//!     ── refused: the refusal's one line (an UPDATE that leaves an already stored spec alone,
//!        a finalizer or a label, is let through: blocking it would only block its deletion)
//!  2. UPDATE: immutable.rs (a Broker's class and spec.config, a Trigger's broker)
//!  3. /mutate: patch.rs, the defaults as a JSON patch; /validate: the loader's warnings
//! ```
//!
//! Both webhooks judge (1) and (2): the mutating one runs before the API server checks the CRD's
//! schema, so a flawed object gets knactor's reason rather than the schema's; the validating one
//! runs last, on the object as every mutating webhook left it. Start with [`judge`]; certificates
//! are in [`tls`], the listener in [`server`].

pub mod broker_defaults;
pub mod immutable;
pub mod patch;
pub mod review;
pub mod server;
pub mod tls;

use knactor_actors::routes::BrokerDefaults;
use kube::api::DynamicObject;
use kube::ResourceExt as _;

use crate::cluster::{self, Kind};
use review::{Answer, Operation, Request};

/// Which of the two webhooks a review came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    /// The MutatingWebhookConfiguration's: judges, and defaults.
    Mutate,
    /// The ValidatingWebhookConfiguration's: judges the object as it will be stored.
    Validate,
}

/// What Brokers that say nothing get.
#[derive(Debug)]
pub struct Defaults<'a> {
    /// Knative's `config-br-defaults`, as the API server has it (empty when it has none, or
    /// knactor may not read it).
    pub brokers: &'a BrokerDefaults,
    /// knactor's `--default-broker-class`.
    pub class: &'a str,
}

/// knactor's answer to one request. Pure: the request and the defaults in, the answer out.
pub fn judge(webhook: Webhook, request: &Request, defaults: &Defaults) -> Answer {
    let Some(kind) = Kind::of(&request.kind.group, &request.kind.kind) else {
        // A webhook configuration scoped wider than knactor's four kinds: not knactor's business.
        return Answer::allow();
    };
    let (Some(object), Operation::Create | Operation::Update) =
        (request.object.as_ref(), request.operation)
    else {
        return Answer::allow();
    };
    let mut object = object.clone();
    if object.namespace().is_none() {
        object.metadata.namespace = request.namespace.clone();
    }
    let namespace = object.namespace().unwrap_or_default();
    let old = request
        .old_object
        .as_ref()
        .filter(|_| request.operation == Operation::Update);
    // Finishing a deleted object (its finalizers) must never be blocked.
    if old.is_some() && object.metadata.deletion_timestamp.is_some() {
        return Answer::allow();
    }
    let Some(report) = cluster::load(kind, &object) else {
        return Answer::refuse(format!(
            "{} {namespace}/{}: not an object knactor can read",
            kind.name(),
            object.name_any()
        ));
    };
    if let Some(refusal) = report.refused.first() {
        let spec_unchanged = old.is_some_and(|old| old.data.get("spec") == object.data.get("spec"));
        if !spec_unchanged {
            return Answer::refuse(refusal.reason());
        }
    }
    let value = json_of(&object);
    if let Some(old) = old {
        if let Some(problem) = immutable::changed(kind, &json_of(old), &value, &namespace, defaults)
        {
            return Answer::refuse(format!(
                "{} {namespace}/{}: {problem}",
                kind.name(),
                object.name_any()
            ));
        }
    }
    match webhook {
        Webhook::Mutate => Answer {
            patch: patch::defaults(kind, &value, &namespace, defaults),
            ..Answer::allow()
        },
        Webhook::Validate => Answer {
            warnings: report.warnings.iter().map(|notice| notice.text()).collect(),
            ..Answer::allow()
        },
    }
}

fn json_of(object: &DynamicObject) -> serde_json::Value {
    serde_json::to_value(object).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn request(operation: &str, object: Value, old: Option<Value>) -> Request {
        let kind = object["kind"].as_str().unwrap().to_string();
        let group = object["apiVersion"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let body = json!({"apiVersion": review::API_VERSION, "kind": "AdmissionReview", "request": {
            "uid": "u", "kind": {"group": group, "version": "v1", "kind": kind}, "namespace": "team-a",
            "operation": operation, "object": object, "oldObject": old}});
        review::parse(body.to_string().as_bytes()).unwrap()
    }

    fn trigger(spec: Value) -> Value {
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": "t", "namespace": "team-a"}, "spec": spec})
    }

    fn answer(webhook: Webhook, request: &Request) -> Answer {
        let none = BrokerDefaults::default();
        judge(
            webhook,
            request,
            &Defaults {
                brokers: &none,
                class: "MTChannelBasedBroker",
            },
        )
    }

    #[test]
    fn an_invalid_object_is_refused_by_both_webhooks_with_the_loaders_line() {
        let bad = request(
            "CREATE",
            trigger(
                json!({"broker": "default", "filter": {"attributes": {"Type": "x"}}, "subscriber": {"uri": "http://s/"}}),
            ),
            None,
        );
        for webhook in [Webhook::Mutate, Webhook::Validate] {
            assert_eq!(
                answer(webhook, &bad).refusal.as_deref(),
                Some("Trigger team-a/t: spec.filter.attributes.Type: invalid attribute name \"Type\": it must start with a lowercase letter and contain only lowercase letters and digits")
            );
        }
    }

    #[test]
    fn a_valid_object_is_defaulted_by_one_and_warned_about_by_the_other() {
        let tolerated = request("CREATE", trigger(json!({"broker": "default"})), None);
        let mutated = answer(Webhook::Mutate, &tolerated);
        assert_eq!(mutated.refusal, None);
        assert!(
            mutated.patch.iter().any(|op| op["path"] == "/spec/filter"),
            "{:?}",
            mutated.patch
        );
        assert!(mutated.warnings.is_empty());
        let validated = answer(Webhook::Validate, &tolerated);
        assert!(validated.patch.is_empty());
        assert_eq!(validated.warnings.len(), 1, "{:?}", validated.warnings);
        assert!(validated.warnings[0].starts_with("Trigger team-a/t: spec.subscriber: missing"));
    }

    #[test]
    fn an_update_that_leaves_a_stored_invalid_spec_alone_goes_through() {
        let invalid =
            trigger(json!({"broker": "default", "filter": {"attributes": {"Type": "x"}}}));
        let mut with_finalizer = invalid.clone();
        with_finalizer["metadata"]["finalizers"] = json!(["someone/else"]);
        let update = request("UPDATE", with_finalizer, Some(invalid.clone()));
        assert_eq!(answer(Webhook::Validate, &update).refusal, None);
        let mut changed = invalid.clone();
        changed["spec"]["filter"] = json!({"attributes": {"Kind": "y"}});
        let update = request("UPDATE", changed, Some(invalid));
        assert!(answer(Webhook::Validate, &update).refusal.is_some());
    }

    #[test]
    fn an_immutable_field_is_refused_with_the_object_named() {
        let update = request(
            "UPDATE",
            trigger(json!({"broker": "other", "subscriber": {"uri": "http://s/"}})),
            Some(trigger(
                json!({"broker": "default", "subscriber": {"uri": "http://s/"}}),
            )),
        );
        let refusal = answer(Webhook::Validate, &update).refusal.unwrap();
        assert!(
            refusal.starts_with("Trigger team-a/t: spec.broker: immutable"),
            "{refusal}"
        );
    }

    #[test]
    fn deletes_other_kinds_and_finishing_objects_are_let_through() {
        let delete = request("DELETE", trigger(json!({"broker": "Not A Name"})), None);
        assert_eq!(answer(Webhook::Validate, &delete), Answer::allow());
        let pod = request(
            "CREATE",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"nonsense": 1}}),
            None,
        );
        assert_eq!(answer(Webhook::Mutate, &pod), Answer::allow());
        let mut deleting = trigger(json!({"broker": "other"}));
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let finishing = request(
            "UPDATE",
            deleting,
            Some(trigger(json!({"broker": "default"}))),
        );
        assert_eq!(answer(Webhook::Validate, &finishing), Answer::allow());
    }

    #[test]
    fn an_object_without_a_namespace_takes_the_requests() {
        let mut object = trigger(
            json!({"broker": "default", "subscriber": {"ref": {"kind": "Service", "name": "s", "apiVersion": "v1"}}}),
        );
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        let create = request("CREATE", object, None);
        let mutated = answer(Webhook::Mutate, &create);
        assert!(
            mutated.patch.contains(
                &json!({"op": "add", "path": "/spec/subscriber/ref/namespace", "value": "team-a"})
            ),
            "{:?}",
            mutated.patch
        );
    }
}
