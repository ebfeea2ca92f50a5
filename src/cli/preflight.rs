//! What `knactor run` checks before it starts anything: the configuration it would load
//! (`--dry-run`), and whether a split role (`--role ingress|dispatch`) has brokers it can run.

use std::path::Path;
use std::process::ExitCode;

use knactor_actors::actor::Role;
use knactor_actors::routes::KAFKA_BROKER_CLASSES;

use super::validate::ConfigReport;
use crate::config::ReadLimits;

/// `--dry-run` with `--config`: what `knactor validate` says of it; non-zero when a resource would
/// be refused. In cluster mode the resources are the cluster's, read only once the node runs.
pub(crate) fn dry_run(
    config: Option<&Path>,
    strict: bool,
    limits: ReadLimits,
) -> anyhow::Result<ExitCode> {
    let Some(config) = config else {
        println!(
            "(the cluster's resources are checked by its webhook and read once the node runs)"
        );
        return Ok(ExitCode::SUCCESS);
    };
    let report = ConfigReport::read(config, strict, limits)?;
    report.print();
    let refused = report.refused().len();
    if refused > 0 {
        println!(
            "knactor run would refuse {refused} resource(s) of --config {}",
            config.display()
        );
    }
    Ok(report.exit_code())
}

/// `--role ingress` and `--role dispatch` share a broker's events through its Kafka topic; a broker
/// on the memory channel cannot be split over two processes. Whatever the default class, a broker
/// annotated with a Kafka class runs (and one annotated with another class is reported as not
/// running, once the node runs). What cannot work is a broker without the annotation while the
/// default class is not Kafka: the error names those brokers, or, in cluster mode where they are
/// not known yet, says what the default does to them.
pub(crate) fn split_role_problem(
    role: Role,
    default_class: &str,
    config: Option<&Path>,
    strict: bool,
    limits: ReadLimits,
) -> anyhow::Result<Option<String>> {
    if role == Role::All || KAFKA_BROKER_CLASSES.contains(&default_class) {
        return Ok(None);
    }
    let why = format!(
        "take --default-broker-class {default_class}, the memory channel, which lives inside one \
         process and cannot be split over an ingress and a dispatch node"
    );
    let Some(config) = config else {
        return Ok(Some(format!(
            "--role {role}: brokers without the eventing.knative.dev/broker.class annotation {why}; \
             add --channel kafka (or --default-broker-class Kafka)"
        )));
    };
    let report = ConfigReport::read(config, strict, limits)?;
    let unannotated: Vec<String> = report
        .catalog
        .brokers
        .values()
        .filter(|broker| broker.class.is_none())
        .map(|broker| broker.key.to_string())
        .collect();
    Ok(match unannotated.as_slice() {
        [] => None,
        [broker] => Some(format!(
            "--role {role}: broker {broker} has no eventing.knative.dev/broker.class annotation, so \
             it would {why}; add --channel kafka, or annotate it with the class Kafka"
        )),
        brokers => Some(format!(
            "--role {role}: brokers {} have no eventing.knative.dev/broker.class annotation, so they \
             would {why}; add --channel kafka, or annotate them with the class Kafka",
            brokers.join(", ")
        )),
    })
}
