//! `Trigger` at runtime, converted once from its YAML shape.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::delivery::Delivery;
use super::destination::Destination;
use crate::filter::Filter;
use crate::resources::field::{check_dns_name, Checked, Checker, FieldError};
use crate::resources::filter::check_filters;
use crate::resources::{Object, ObjectKey, TriggerSpec};

/// Knative's Kafka broker annotation for per-partition ordering.
pub const DELIVERY_ORDER_ANNOTATION: &str = "kafka.eventing.knative.dev/delivery.order";
/// knactor's: where a new trigger starts reading (`earliest`, `latest` or an RFC 3339 time).
pub const START_POSITION_ANNOTATION: &str = "knactor.dev/start-position";
const DEPENDENCY_ANNOTATION: &str = "knative.dev/dependency";
const INJECTION_ANNOTATION: &str = "eventing.knative.dev/injection";

/// Whether a trigger's deliveries may overtake each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryOrder {
    /// Many deliveries in flight at once (the default).
    #[default]
    Unordered,
    /// One delivery at a time per partition, in record order.
    Ordered,
}

/// Where a trigger that is new to a broker starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// Only events that arrive from now on (Knative's behaviour).
    #[default]
    Latest,
    /// Everything the channel still holds.
    Earliest,
    /// Events that arrived at or after this time.
    Time(DateTime<Utc>),
}

/// A validated Trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub key: ObjectKey,
    /// The broker it listens to; `None` when the spec names none (the trigger is then not ready).
    pub broker: Option<ObjectKey>,
    pub annotations: BTreeMap<String, String>,
    pub filter: Filter,
    /// `None` when the spec has no subscriber (the trigger is then not ready).
    pub subscriber: Option<Destination>,
    /// `spec.delivery`; replaces the broker's as a whole when present.
    pub delivery: Option<Delivery>,
    pub order: DeliveryOrder,
    pub start: StartPosition,
    /// The spec as written, for people who read it back (the console shows the filter as its
    /// author wrote it, CESQL included).
    pub spec: Arc<TriggerSpec>,
}

impl Trigger {
    /// Validates a Trigger document as Knative's webhook does and converts it.
    pub fn from_object(
        object: &Object<TriggerSpec>,
        checker: Checker,
    ) -> Result<Checked<Trigger>, Vec<FieldError>> {
        let mut checker = checker;
        let spec = &object.spec;
        let namespace = object.metadata.namespace().to_string();
        check_dns_name(&mut checker, "metadata.name", object.metadata.name(), 253);
        check_dns_name(&mut checker, "metadata.namespace", &namespace, 63);

        let broker_name = spec.broker.as_deref().filter(|name| !name.is_empty());
        let broker = match (broker_name, &spec.broker_ref) {
            (Some(_), Some(_)) => {
                checker.error(
                    "spec.brokerRef",
                    "expected exactly one of broker and brokerRef, got both",
                );
                None
            }
            (Some(name), None) => Some(ObjectKey::new(&namespace, name)),
            (None, Some(reference)) => match reference.name.as_deref().filter(|n| !n.is_empty()) {
                Some(name) => Some(ObjectKey::new(
                    reference
                        .namespace
                        .as_deref()
                        .filter(|ns| !ns.is_empty())
                        .unwrap_or(&namespace),
                    name,
                )),
                None => {
                    checker.error("spec.brokerRef.name", "required");
                    None
                }
            },
            (None, None) => {
                checker.tolerate(
                    "spec.broker",
                    "missing: the trigger is loaded but receives nothing until it names a broker",
                );
                None
            }
        };

        // `filters`, when non-empty, replaces `filter` (Knative's rule).
        let filter = match spec.filters.as_deref() {
            Some(filters) if !filters.is_empty() => {
                // Still validated: Knative refuses a bad legacy filter even when it is unused.
                if let Some(legacy) = &spec.filter {
                    legacy.check(&mut checker, "spec.filter");
                }
                check_filters(&mut checker, "spec.filters", filters)
            }
            _ => spec.filter.as_ref().map_or(Filter::MatchAll, |legacy| {
                legacy.check(&mut checker, "spec.filter")
            }),
        };

        let subscriber = match &spec.subscriber {
            Some(subscriber) => {
                Destination::from_spec(subscriber, &mut checker, "spec.subscriber", &namespace)
            }
            None => {
                checker.tolerate(
                    "spec.subscriber",
                    "missing: the trigger is loaded but delivers nothing until it has a subscriber",
                );
                None
            }
        };

        let delivery = spec.delivery.as_ref().and_then(|delivery| {
            Delivery::from_spec(delivery, &mut checker, "spec.delivery", &namespace)
        });

        let order = match object.metadata.annotation(DELIVERY_ORDER_ANNOTATION) {
            None | Some("unordered") => DeliveryOrder::Unordered,
            Some("ordered") => DeliveryOrder::Ordered,
            Some(other) => {
                checker.error(
                    format!("metadata.annotations[{DELIVERY_ORDER_ANNOTATION}]"),
                    format!("{other:?} is not a delivery order: use ordered or unordered"),
                );
                DeliveryOrder::Unordered
            }
        };

        let start = match object.metadata.annotation(START_POSITION_ANNOTATION) {
            None | Some("latest") => StartPosition::Latest,
            Some("earliest") => StartPosition::Earliest,
            Some(text) => match DateTime::parse_from_rfc3339(text) {
                Ok(time) => StartPosition::Time(time.with_timezone(&Utc)),
                Err(_) => {
                    checker.error(
                        format!("metadata.annotations[{START_POSITION_ANNOTATION}]"),
                        format!("{text:?} is not a start position: use earliest, latest or an RFC 3339 time"),
                    );
                    StartPosition::Latest
                }
            },
        };

        check_dependency_annotation(&mut checker, object, &namespace);
        if let Some(value) = object.metadata.annotation(INJECTION_ANNOTATION) {
            let path = format!("metadata.annotations[{INJECTION_ANNOTATION}]");
            if value != "enabled" && value != "disabled" {
                checker.error(
                    &path,
                    format!("{value:?} must be \"enabled\" or \"disabled\""),
                );
            } else if broker_name != Some("default") {
                checker.error(&path, "is only used with the broker named \"default\"");
            }
        }

        checker.finish(Trigger {
            key: ObjectKey::of(&object.metadata),
            broker,
            annotations: object.metadata.annotations.clone(),
            filter,
            subscriber,
            delivery,
            order,
            start,
            spec: Arc::new(spec.clone()),
        })
    }
}

/// `knative.dev/dependency` must be a JSON object reference (a source the trigger waits for).
fn check_dependency_annotation(
    checker: &mut Checker,
    object: &Object<TriggerSpec>,
    namespace: &str,
) {
    let Some(text) = object.metadata.annotation(DEPENDENCY_ANNOTATION) else {
        return;
    };
    let path = format!("metadata.annotations[{DEPENDENCY_ANNOTATION}]");
    let parsed: Result<BTreeMap<String, serde_json::Value>, _> = serde_json::from_str(text);
    let Ok(reference) = parsed else {
        checker.error(path, format!("{text:?} is not a JSON object reference"));
        return;
    };
    let text_field = |name: &str| {
        reference
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    for required in ["kind", "name", "apiVersion"] {
        if text_field(required).is_none() {
            checker.error(format!("{path}.{required}"), "required");
        }
    }
    if let Some(other) = text_field("namespace") {
        if other != namespace {
            checker.error(
                format!("{path}.namespace"),
                format!("must be empty or the trigger's namespace {namespace:?}"),
            );
        }
    }
}
