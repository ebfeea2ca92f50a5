//! Knative's older shapes, from the docs and articles of 2019, rewritten into today's where that
//! is cheap and exact: `sources.eventing.knative.dev/v1alpha1` ApiServerSource and CronJobSource
//! (now `sources.knative.dev/v1` ApiServerSource and PingSource, the sink a `ref`), and
//! `eventing.knative.dev/v1alpha1`/`v1beta1` Broker and Trigger (the Trigger's
//! `filter.sourceAndType` now `filter.attributes`). What has no exact rewrite (an ApiServerSource
//! resource's `controller`, a Broker's `channelTemplateSpec`) is refused with the v1 shape to
//! write instead. Only lenient loading rewrites; `--strict` refuses these versions as Knative's
//! webhook, which no longer serves them, does.

use serde_yaml::{Mapping, Value};

const SOURCES_V1: &str = "sources.knative.dev/v1";
const EVENTING_V1: &str = "eventing.knative.dev/v1";

/// What a rewrite did, for the warning the loader shows.
#[derive(Debug)]
pub struct Rewritten {
    pub api_version: String,
    pub kind: String,
    /// One sentence: from which shape, to which, and what changed for the user.
    pub note: String,
}

/// Why an older shape is not read as today's: each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("{old}: spec is not a mapping")]
    SpecNotMapping { old: String },
    /// A 2019 source (`ApiServerSource`, `CronJobSource`) whose spec has no exact v1 rewrite.
    #[error("{old} is the 2019 shape and {problem}; write it as {SOURCES_V1} {kind}")]
    SourceNotRewritten {
        old: String,
        /// The v1 kind to write it as.
        kind: &'static str,
        #[source]
        problem: SpecProblem,
    },
    #[error("{old}: {problem}; write it as {EVENTING_V1} Trigger")]
    TriggerNotRewritten {
        old: String,
        #[source]
        problem: SpecProblem,
    },
    #[error("{old} with spec.{field} has no {EVENTING_V1} equivalent knactor runs; write it as {EVENTING_V1} Broker with spec.config (a ConfigMap) or the class annotation")]
    ChannelTemplate { old: String, field: &'static str },
    #[error("{old} is not a shape knactor reads")]
    UnknownShape { old: String },
}

/// What in an older spec has no place in today's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecProblem {
    #[error("spec.resources[{index}] selects by controller, which v1 says with spec.owner")]
    ControllerSelector { index: usize },
    #[error("filter has both sourceAndType and attributes")]
    BothFilters,
    #[error("filter.sourceAndType is not a mapping")]
    SourceAndTypeNotMapping,
    #[error("filter.sourceAndType.{name} is not text")]
    SourceAndTypeNotText { name: String },
    #[error("spec.sink.{field} has no v1 place")]
    SinkFieldUnplaced { field: String },
}

/// Whether `api_version` `kind` is an older shape this module knows.
pub fn is_older_shape(api_version: &str, kind: &str) -> bool {
    matches!(
        (api_version, kind),
        (
            "sources.eventing.knative.dev/v1alpha1",
            "ApiServerSource" | "CronJobSource"
        ) | (
            "eventing.knative.dev/v1alpha1" | "eventing.knative.dev/v1beta1",
            "Broker" | "Trigger"
        )
    )
}

/// Rewrites `document` (an older shape, see [`is_older_shape`]) into today's, in place; the
/// error says what cannot be rewritten and names the shape to write.
pub fn rewrite(
    document: &mut Mapping,
    api_version: &str,
    kind: &str,
) -> Result<Rewritten, RewriteError> {
    let old = format!("{api_version} {kind}");
    let spec = match document.get_mut("spec") {
        Some(Value::Mapping(spec)) => Some(spec),
        Some(Value::Null) | None => None,
        Some(_) => return Err(RewriteError::SpecNotMapping { old }),
    };
    let (api_version, kind, note) = match kind {
        "ApiServerSource" => {
            if let Some(spec) = spec {
                api_server_source(spec).map_err(|problem| RewriteError::SourceNotRewritten {
                    old: old.clone(),
                    kind: "ApiServerSource",
                    problem,
                })?;
            }
            (
                SOURCES_V1,
                "ApiServerSource",
                format!("{old} is the 2019 shape, read as {SOURCES_V1} ApiServerSource (spec.sink.ref, mode Reference for Ref, resources[].selector for labelSelector): write it so"),
            )
        }
        "CronJobSource" => {
            if let Some(spec) = spec {
                cron_job_source(spec).map_err(|problem| RewriteError::SourceNotRewritten {
                    old: old.clone(),
                    kind: "PingSource",
                    problem,
                })?;
            }
            (
                SOURCES_V1,
                "PingSource",
                format!("{old} is the 2019 shape, run as a {SOURCES_V1} PingSource (spec.sink.ref): its events are of type dev.knative.sources.ping, not dev.knative.cronjob.event; write it so"),
            )
        }
        "Broker" => {
            if let Some(spec) = spec {
                if let Some(field) = ["channelTemplateSpec", "channelTemplate"]
                    .into_iter()
                    .find(|field| spec.contains_key(*field))
                {
                    return Err(RewriteError::ChannelTemplate { old, field });
                }
            }
            (
                EVENTING_V1,
                "Broker",
                format!("{old} is read as {EVENTING_V1} Broker: write it so"),
            )
        }
        "Trigger" => {
            if let Some(spec) = spec {
                trigger(spec).map_err(|problem| RewriteError::TriggerNotRewritten {
                    old: old.clone(),
                    problem,
                })?;
            }
            (
                EVENTING_V1,
                "Trigger",
                format!("{old} is read as {EVENTING_V1} Trigger (filter.attributes for filter.sourceAndType): write it so"),
            )
        }
        _ => return Err(RewriteError::UnknownShape { old }),
    };
    document.insert("apiVersion".into(), api_version.into());
    document.insert("kind".into(), kind.into());
    Ok(Rewritten {
        api_version: api_version.into(),
        kind: kind.into(),
        note,
    })
}

/// v1alpha1 ApiServerSource spec -> v1: `mode` Ref -> Reference, `resources[].labelSelector` ->
/// `selector`, the sink an object reference -> `sink.ref`.
fn api_server_source(spec: &mut Mapping) -> Result<(), SpecProblem> {
    if let Some(mode) = spec.get_mut("mode") {
        if mode.as_str() == Some("Ref") {
            *mode = "Reference".into();
        }
    }
    if let Some(Value::Sequence(resources)) = spec.get_mut("resources") {
        for (index, resource) in resources.iter_mut().enumerate() {
            let Value::Mapping(resource) = resource else {
                continue;
            };
            let controller = resource.remove("controller");
            if controller.as_ref().and_then(Value::as_bool) == Some(true)
                || resource.contains_key("controllerSelector")
            {
                return Err(SpecProblem::ControllerSelector { index });
            }
            if let Some(selector) = resource.remove("labelSelector") {
                resource.insert("selector".into(), selector);
            }
        }
    }
    sink_to_destination(spec)
}

/// v1alpha1 CronJobSource spec -> v1 PingSource: `schedule` and `data` as they are, the sink a
/// `ref`; the adapter pod's `serviceAccountName` and `resources` have nothing to configure here.
fn cron_job_source(spec: &mut Mapping) -> Result<(), SpecProblem> {
    spec.remove("serviceAccountName");
    spec.remove("resources");
    sink_to_destination(spec)
}

/// v1alpha1/v1beta1 Trigger spec -> v1: `broker` defaults to `default`, as the webhook of the
/// time set it; `filter.sourceAndType` -> `filter.attributes` (an empty or `Any` value matched
/// everything then, and is left out now).
fn trigger(spec: &mut Mapping) -> Result<(), SpecProblem> {
    if !spec.contains_key("broker") {
        spec.insert("broker".into(), "default".into());
    }
    let Some(Value::Mapping(filter)) = spec.get_mut("filter") else {
        return Ok(());
    };
    let Some(source_and_type) = filter.remove("sourceAndType") else {
        return Ok(());
    };
    if filter.contains_key("attributes") {
        return Err(SpecProblem::BothFilters);
    }
    let Value::Mapping(source_and_type) = source_and_type else {
        return Err(SpecProblem::SourceAndTypeNotMapping);
    };
    let mut attributes = Mapping::new();
    for (name, value) in source_and_type {
        let Some(text) = value.as_str() else {
            return Err(SpecProblem::SourceAndTypeNotText {
                name: describe(&name),
            });
        };
        if !text.is_empty() && text != "Any" {
            attributes.insert(name, text.into());
        }
    }
    filter.insert("attributes".into(), Value::Mapping(attributes));
    Ok(())
}

/// A sink written as an object reference (`{apiVersion, kind, name}`) becomes `{ref: {...}}`;
/// one already written as a destination (`ref`, `uri`) stays.
fn sink_to_destination(spec: &mut Mapping) -> Result<(), SpecProblem> {
    let Some(Value::Mapping(sink)) = spec.get_mut("sink") else {
        return Ok(());
    };
    if sink.contains_key("ref") || sink.contains_key("uri") {
        return Ok(());
    }
    let mut reference = Mapping::new();
    for (name, value) in std::mem::take(sink) {
        match name.as_str() {
            Some("apiVersion" | "kind" | "name" | "namespace") => {
                reference.insert(name, value);
            }
            _ => {
                return Err(SpecProblem::SinkFieldUnplaced {
                    field: describe(&name),
                })
            }
        }
    }
    sink.insert("ref".into(), Value::Mapping(reference));
    Ok(())
}

fn describe(name: &Value) -> String {
    name.as_str()
        .map_or_else(|| format!("{name:?}"), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_2019_apiserversource_becomes_v1_with_its_sink_a_ref() {
        let mut source = document(
            "apiVersion: sources.eventing.knative.dev/v1alpha1\nkind: ApiServerSource\n\
             metadata: {name: testevents, namespace: default}\n\
             spec:\n  serviceAccountName: events-sa\n  mode: Ref\n\
             \x20 resources:\n  - {apiVersion: v1, kind: Event, controller: false, labelSelector: {matchLabels: {app: x}}}\n\
             \x20 sink: {apiVersion: eventing.knative.dev/v1alpha1, kind: Broker, name: default}\n",
        );
        let done = rewrite(
            &mut source,
            "sources.eventing.knative.dev/v1alpha1",
            "ApiServerSource",
        )
        .unwrap();
        assert_eq!(
            (done.api_version.as_str(), done.kind.as_str()),
            ("sources.knative.dev/v1", "ApiServerSource")
        );
        assert!(done.note.contains("write it so"));
        let expected = document(
            "apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\n\
             metadata: {name: testevents, namespace: default}\n\
             spec:\n  serviceAccountName: events-sa\n  mode: Reference\n\
             \x20 resources:\n  - {apiVersion: v1, kind: Event, selector: {matchLabels: {app: x}}}\n\
             \x20 sink: {ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: Broker, name: default}}\n",
        );
        assert_eq!(source, expected);
    }

    #[test]
    fn a_resource_selected_by_controller_is_refused_naming_spec_owner() {
        let mut source = document(
            "apiVersion: sources.eventing.knative.dev/v1alpha1\nkind: ApiServerSource\nmetadata: {name: s}\n\
             spec: {resources: [{apiVersion: v1, kind: Pod, controller: true}]}\n",
        );
        let error = rewrite(
            &mut source,
            "sources.eventing.knative.dev/v1alpha1",
            "ApiServerSource",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(error.contains("spec.owner"), "{error}");
        assert!(
            error.contains("write it as sources.knative.dev/v1 ApiServerSource"),
            "{error}"
        );
    }

    #[test]
    fn a_cronjobsource_becomes_a_pingsource_and_says_its_type_changed() {
        let mut source = document(
            "apiVersion: sources.eventing.knative.dev/v1alpha1\nkind: CronJobSource\nmetadata: {name: c}\n\
             spec: {schedule: '*/2 * * * *', data: '{\"m\": 1}', serviceAccountName: x,\n\
             \x20      sink: {apiVersion: serving.knative.dev/v1alpha1, kind: Service, name: display}}\n",
        );
        let done = rewrite(
            &mut source,
            "sources.eventing.knative.dev/v1alpha1",
            "CronJobSource",
        )
        .unwrap();
        assert_eq!(done.kind, "PingSource");
        assert!(done.note.contains("dev.knative.sources.ping"));
        let spec = source["spec"].as_mapping().unwrap();
        assert!(!spec.contains_key("serviceAccountName"));
        assert_eq!(spec["sink"]["ref"]["name"], "display");
        assert_eq!(spec["schedule"], "*/2 * * * *");
    }

    #[test]
    fn a_trigger_source_and_type_filter_becomes_attributes_and_any_matches_all() {
        let mut trigger = document(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: Trigger\nmetadata: {name: t}\n\
             spec: {filter: {sourceAndType: {type: dev.knative.apiserver.resource.add, source: Any}},\n\
             \x20      subscriber: {ref: {apiVersion: serving.knative.dev/v1alpha1, kind: Service, name: display}}}\n",
        );
        rewrite(&mut trigger, "eventing.knative.dev/v1alpha1", "Trigger").unwrap();
        assert_eq!(trigger["spec"]["broker"], "default");
        let filter = trigger["spec"]["filter"].as_mapping().unwrap();
        assert!(!filter.contains_key("sourceAndType"));
        assert_eq!(
            filter["attributes"],
            serde_yaml::from_str::<Value>("{type: dev.knative.apiserver.resource.add}").unwrap()
        );
    }

    #[test]
    fn a_broker_with_a_channel_template_is_refused() {
        let mut broker = document(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: Broker\nmetadata: {name: b}\n\
             spec: {channelTemplateSpec: {apiVersion: messaging.knative.dev/v1alpha1, kind: InMemoryChannel}}\n",
        );
        let error = rewrite(&mut broker, "eventing.knative.dev/v1alpha1", "Broker")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("channelTemplateSpec"), "{error}");
        assert!(error.contains("eventing.knative.dev/v1 Broker"), "{error}");
    }
}
