//! `GET /-/topology`: what the console draws. Sources, brokers, triggers (running or not, each
//! with its state and the reason `knactor status` gives) and the subscribers and dead-letter sinks
//! they deliver to; for each trigger its filter as written and its delivery as it runs (after the
//! broker's and the node's defaults). And `GET /-/node`: this node, as far as it knows itself.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use knactor_actors::actor::{GetRoutes, GetStatus};
use knactor_actors::resources::ObjectKey;
use knactor_actors::retry::BackoffPolicy;
use knactor_actors::routes::{
    broker_of_path, BrokerRoute, ContentMode, DeliveryOrder, RouteIssue, Routes, StartPosition,
    TriggerRoute,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ask, AdminError, Authorized, ErrorBody, PartitionDoc};
use crate::ingress::GatewayState;

/// The mesh as this node runs it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TopologyDoc {
    sources: Vec<SourceNode>,
    /// By name; each with its triggers.
    brokers: Vec<BrokerNode>,
    /// Triggers whose broker is not a broker of this node (missing, or not named).
    unplaced_triggers: Vec<TriggerNode>,
    /// Distinct subscriber and dead-letter endpoints, with the triggers that use them.
    endpoints: Vec<EndpointNode>,
}

/// `ready`: runs as written; `degraded`: runs, with a problem (its reason says which);
/// `notReady`: does not run (its reason says why).
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) enum State {
    Ready,
    Degraded,
    NotReady,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SourceNode {
    kind: &'static str,
    name: String,
    state: State,
    reason: Option<String>,
    message: Option<String>,
    /// The resolved sink.
    sink: Option<String>,
    /// `<namespace>/<name>` of the broker of this node the sink is, if it is one.
    broker: Option<String>,
    /// Events it sent (running here only).
    sent: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct BrokerNode {
    /// `<namespace>/<name>`.
    name: String,
    state: State,
    reason: Option<String>,
    message: Option<String>,
    /// Its broker class, when it names one.
    class: Option<String>,
    /// `memory` or `kafka`; null when it does not run.
    channel: Option<&'static str>,
    topic: Option<String>,
    partitions: Vec<PartitionDoc>,
    triggers: Vec<TriggerNode>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TriggerNode {
    /// `<namespace>/<name>`.
    name: String,
    /// `<namespace>/<name>` of the broker it names.
    broker: Option<String>,
    state: State,
    reason: Option<String>,
    message: Option<String>,
    /// The subscriber as Knative reports it (`status.subscriberUri`), when resolved.
    subscriber: Option<String>,
    /// `spec.subscriber` as written.
    subscriber_as_written: Option<serde_json::Value>,
    filter: FilterDoc,
    /// What it runs with; null when it does not run.
    delivery: Option<EffectiveDelivery>,
    /// `unordered` or `ordered`.
    order: Option<&'static str>,
    /// `latest`, `earliest` or an RFC 3339 time.
    start: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct FilterDoc {
    /// `spec.filter` as written (Knative's attributes filter).
    filter: Option<serde_json::Value>,
    /// `spec.filters` as written (exact, prefix, suffix, all, any, not, cesql); replaces `filter`
    /// when not empty.
    filters: Option<serde_json::Value>,
    /// What it runs, in a few words.
    runs: Option<String>,
}

/// A delivery policy as it runs: the trigger's, else its broker's, else the node's default.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct EffectiveDelivery {
    /// `trigger`, `broker` or `node`: whose `delivery` this is (it replaces the others whole).
    from: &'static str,
    /// Retries after the first attempt.
    retry: u32,
    /// `linear` or `exponential`.
    backoff_policy: &'static str,
    /// ISO-8601.
    backoff_delay: String,
    /// Per attempt, ISO-8601; null: the node's `--delivery-timeout`.
    timeout: Option<String>,
    /// Longest Retry-After honoured; null: the node's `--retry-after-max`.
    retry_after_max: Option<String>,
    dead_letter_sink: Option<String>,
    /// `binary` or `json` (structured).
    format: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(super) struct EndpointNode {
    url: String,
    /// `subscriber` or `deadLetterSink`.
    role: &'static str,
    /// `<namespace>/<name>` of the triggers that deliver here.
    triggers: Vec<String>,
}

/// Sources, brokers, triggers and endpoints with their states, as this node runs them.
#[utoipa::path(
    get, path = "/-/topology", tag = "node",
    responses((status = 200, body = TopologyDoc), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn topology(
    _: Authorized,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let routes = ask(&state, GetRoutes).await?;
    let status = ask(&state, GetStatus).await?;
    let sources = state.sources.all();
    Ok(HttpResponse::Ok().json(draw(&routes, &status, &sources, &state)))
}

fn draw(
    routes: &Routes,
    status: &knactor_actors::actor::NodeStatus,
    sources: &[(
        knactor_actors::source::SourceId,
        knactor_actors::source::SourceHealth,
    )],
    state: &GatewayState,
) -> TopologyDoc {
    let issues_of = |kind: &str, key: &ObjectKey| -> Vec<&RouteIssue> {
        status
            .issues
            .iter()
            .filter(|issue| issue.kind == kind && &issue.key == key)
            .collect()
    };
    let mut brokers: BTreeMap<ObjectKey, BrokerNode> = BTreeMap::new();
    for route in routes.brokers() {
        let running = status.brokers.iter().find(|b| &b.key == route.key());
        let issues = issues_of("Broker", route.key());
        let (broker_state, reason, message) = match running {
            Some(broker) if broker.running => match &broker.channel_problem {
                Some(problem) => (
                    State::Degraded,
                    Some("ChannelNotStoring".to_string()),
                    Some(problem.clone()),
                ),
                None => match issues.first() {
                    Some(issue) => (
                        State::Degraded,
                        Some(issue.reason.to_string()),
                        Some(issue.message.clone()),
                    ),
                    None => (State::Ready, None, None),
                },
            },
            _ => match issues.first() {
                Some(issue) => (
                    State::NotReady,
                    Some(issue.reason.to_string()),
                    Some(issue.message.clone()),
                ),
                None => (
                    State::NotReady,
                    Some("BrokerStarting".to_string()),
                    Some("its actors are starting".to_string()),
                ),
            },
        };
        brokers.insert(
            route.key().clone(),
            BrokerNode {
                name: route.key().to_string(),
                state: broker_state,
                reason,
                message,
                class: route.broker.class.clone(),
                channel: Some(route.channel.kind.name()),
                topic: Some(route.channel.topic.clone()),
                partitions: running
                    .map(|broker| {
                        broker
                            .partitions
                            .iter()
                            .map(|(partition, gauges)| PartitionDoc::of(*partition, gauges))
                            .collect()
                    })
                    .unwrap_or_default(),
                triggers: Vec::new(),
            },
        );
    }
    // Brokers loaded and not running (a channel that cannot be configured).
    for issue in status.issues.iter().filter(|issue| issue.kind == "Broker") {
        brokers
            .entry(issue.key.clone())
            .or_insert_with(|| BrokerNode {
                name: issue.key.to_string(),
                state: State::NotReady,
                reason: Some(issue.reason.to_string()),
                message: Some(issue.message.clone()),
                class: None,
                channel: None,
                topic: None,
                partitions: Vec::new(),
                triggers: Vec::new(),
            });
    }

    let mut unplaced = Vec::new();
    let mut endpoints: BTreeMap<(String, &'static str), Vec<String>> = BTreeMap::new();
    for (key, written) in routes.written_triggers() {
        let route = written
            .broker
            .as_ref()
            .and_then(|broker| routes.broker(broker))
            .and_then(|broker| broker.trigger(key).map(|trigger| (broker, trigger)));
        let issues = issues_of("Trigger", key);
        let (trigger_state, reason, message) = match (route.is_some(), issues.first()) {
            (true, None) => (State::Ready, None, None),
            (true, Some(issue)) => (
                State::Degraded,
                Some(issue.reason.to_string()),
                Some(issue.message.clone()),
            ),
            (false, Some(issue)) => (
                State::NotReady,
                Some(issue.reason.to_string()),
                Some(issue.message.clone()),
            ),
            (false, None) => (
                State::NotReady,
                Some("NotRunning".to_string()),
                Some("not among the routes this node runs".to_string()),
            ),
        };
        let spec = &written.spec;
        let node = TriggerNode {
            name: key.to_string(),
            broker: written.broker.as_ref().map(ToString::to_string),
            state: trigger_state,
            reason,
            message,
            subscriber: route.map(|(_, trigger)| trigger.subscriber_uri.to_string()),
            subscriber_as_written: spec.subscriber.as_ref().map(as_json),
            filter: FilterDoc {
                filter: spec.filter.as_ref().map(as_json),
                filters: spec.filters.as_ref().map(as_json),
                runs: route.map(|(_, trigger)| trigger.filter.describe()),
            },
            delivery: route.map(|(broker, trigger)| effective(broker, trigger, spec)),
            order: route.map(|(_, trigger)| match trigger.order {
                DeliveryOrder::Unordered => "unordered",
                DeliveryOrder::Ordered => "ordered",
            }),
            start: route.map(|(_, trigger)| match trigger.start {
                StartPosition::Latest => "latest".to_string(),
                StartPosition::Earliest => "earliest".to_string(),
                StartPosition::Time(time) => time.to_rfc3339(),
            }),
        };
        if let Some((_, trigger)) = route {
            endpoints
                .entry((trigger.subscriber.to_string(), "subscriber"))
                .or_default()
                .push(key.to_string());
            if let Some(sink) = &trigger.delivery.dead_letter {
                endpoints
                    .entry((sink.to_string(), "deadLetterSink"))
                    .or_default()
                    .push(key.to_string());
            }
        }
        match written.broker.as_ref().and_then(|b| brokers.get_mut(b)) {
            Some(broker) => broker.triggers.push(node),
            None => unplaced.push(node),
        }
    }
    let ingress = state.console.ingress.as_ref();
    let mut source_nodes = Vec::new();
    for route in routes.sources() {
        let key = route.source.key();
        let kind = route.source.kind();
        let health = sources
            .iter()
            .find(|((k, id), _)| *k == kind && id == key)
            .map(|(_, health)| health);
        let broker = ingress
            .and_then(|ingress| route.sink.as_str().strip_prefix(ingress.as_str()))
            .and_then(|path| broker_of_path(path.trim_end_matches('/')))
            .map(|broker| broker.to_string());
        let (source_state, reason, message) = match health {
            Some(health) if health.running && health.problem.is_none() => {
                (State::Ready, None, None)
            }
            Some(health) if health.running => (
                State::Degraded,
                Some("SourceProblem".to_string()),
                health.problem.clone(),
            ),
            _ => (
                State::NotReady,
                Some("NotRunningHere".to_string()),
                Some(
                    "not running on this node (in a cluster, the Lease holder runs the sources)"
                        .to_string(),
                ),
            ),
        };
        source_nodes.push(SourceNode {
            kind,
            name: key.to_string(),
            state: source_state,
            reason,
            message,
            sink: Some(route.sink.to_string()),
            broker,
            sent: health.map_or(0, |health| health.sent),
        });
    }
    for issue in status
        .issues
        .iter()
        .filter(|issue| issue.kind.ends_with("Source"))
    {
        source_nodes.push(SourceNode {
            kind: issue.kind,
            name: issue.key.to_string(),
            state: State::NotReady,
            reason: Some(issue.reason.to_string()),
            message: Some(issue.message.clone()),
            sink: None,
            broker: None,
            sent: 0,
        });
    }

    TopologyDoc {
        sources: source_nodes,
        brokers: brokers.into_values().collect(),
        unplaced_triggers: unplaced,
        endpoints: endpoints
            .into_iter()
            .map(|((url, role), triggers)| EndpointNode {
                url,
                role,
                triggers,
            })
            .collect(),
    }
}

/// A part of a spec as JSON, as written: the API shapes serialize what they read, and the fields
/// left out as nulls, which are dropped again.
fn as_json<T: Serialize>(value: &T) -> serde_json::Value {
    fn without_nulls(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(fields) => fields
                .into_iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(name, value)| (name, without_nulls(value)))
                .collect(),
            serde_json::Value::Array(items) => items.into_iter().map(without_nulls).collect(),
            other => other,
        }
    }
    without_nulls(serde_json::to_value(value).unwrap_or_default())
}

fn effective(
    broker: &BrokerRoute,
    trigger: &TriggerRoute,
    spec: &knactor_actors::resources::TriggerSpec,
) -> EffectiveDelivery {
    let delivery = &trigger.delivery;
    let retry = &delivery.retry;
    let iso = |duration: std::time::Duration| knactor_actors::duration::format(duration);
    EffectiveDelivery {
        from: if spec.delivery.is_some() {
            "trigger"
        } else if broker.broker.delivery.is_some() {
            "broker"
        } else {
            "node"
        },
        retry: retry.retries,
        backoff_policy: match retry.policy {
            BackoffPolicy::Linear => "linear",
            BackoffPolicy::Exponential => "exponential",
        },
        backoff_delay: iso(retry.delay),
        timeout: retry.timeout.map(iso),
        retry_after_max: retry.retry_after_max.map(iso),
        dead_letter_sink: delivery.dead_letter.as_ref().map(ToString::to_string),
        format: match delivery.mode {
            ContentMode::Binary => "binary",
            ContentMode::Structured => "json",
        },
    }
}

/// This node, as it knows itself.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NodeDoc {
    /// `--node-id`, else the host name.
    name: String,
    version: &'static str,
    /// `all`, `ingress` or `dispatch`.
    role: &'static str,
    ready: bool,
    /// When the node started (RFC 3339).
    started_at: String,
    /// Its broker ingress, as others reach it.
    ingress: Option<String>,
    /// Whether sources run here (in a cluster: this node holds the controller's Lease).
    runs_sources: bool,
    /// The brokers it runs and the partitions it holds.
    brokers: Vec<NodeBroker>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct NodeBroker {
    name: String,
    channel: &'static str,
    running: bool,
    restarts: u32,
    partitions: Vec<PartitionDoc>,
}

/// This node: name, role, readiness, the brokers and partitions it holds, whether it runs the
/// sources. One node answers for itself: in a cluster, each pod's admin API tells its own part.
#[utoipa::path(
    get, path = "/-/node", tag = "node",
    responses((status = 200, body = NodeDoc), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn node(
    _: Authorized,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let status = ask(&state, GetStatus).await?;
    let runs_sources = state.sources.all().iter().any(|(_, health)| health.running);
    Ok(HttpResponse::Ok().json(NodeDoc {
        name: state.console.node.clone(),
        version: env!("CARGO_PKG_VERSION"),
        role: status.role.name(),
        ready: status.ready,
        started_at: chrono::DateTime::<chrono::Utc>::from(state.console.started_at)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ingress: state.console.ingress.as_ref().map(ToString::to_string),
        runs_sources,
        brokers: status
            .brokers
            .iter()
            .map(|broker| NodeBroker {
                name: broker.key.to_string(),
                channel: broker.channel,
                running: broker.running,
                restarts: broker.restarts,
                partitions: broker
                    .partitions
                    .iter()
                    .map(|(partition, gauges)| PartitionDoc::of(*partition, gauges))
                    .collect(),
            })
            .collect(),
    }))
}
