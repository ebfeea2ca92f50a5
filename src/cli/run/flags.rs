//! What `knactor run` decides from its flags before it starts anything, and what `--dry-run`
//! prints of it. Every refusal here comes before a listener is bound or an actor started.

use std::process::ExitCode;
use std::sync::Arc;

use knactor_actors::resources::{Checker, DeliverySpec, Strictness};
use knactor_actors::routes::Delivery;

use super::RunArgs;
use crate::cli::preflight;

/// What the checks of the flags decide.
pub(super) struct Checked {
    /// No --config: the resources come from a cluster (--kubernetes, --kubeconfig or the pod's).
    pub cluster_mode: bool,
    /// The delivery of brokers and triggers that give none: --default-delivery, else Knative's.
    pub knative_default: Delivery,
    /// The admin API's bearer token (--admin-token-file).
    pub admin_token: Option<Arc<str>>,
}

/// Checks the flags together, and settles two of them: --channel sets --default-broker-class,
/// and inside a pod with neither --config nor a kubeconfig, --kubernetes is implied.
pub(super) fn check(args: &mut RunArgs) -> anyhow::Result<Checked> {
    match args.channel.as_deref() {
        Some("kafka") => args.kafka.default_broker_class = "Kafka".into(),
        Some(_) => args.kafka.default_broker_class = "MTChannelBasedBroker".into(),
        None => {}
    }
    let knative_default = match &args.default_delivery {
        Some(json) => parse_default_delivery(json)?,
        None => knative_default_delivery(),
    };
    let cluster_mode = args.config.is_none();
    if cluster_mode && !args.kubernetes && args.kubeconfig_path().is_none() {
        // Inside a pod with neither a config nor a kubeconfig: the pod's own cluster.
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            anyhow::bail!("give --config FILE_OR_DIR (resources from YAML), or --kubernetes / --kubeconfig PATH (resources from a cluster)");
        }
        args.kubernetes = true;
    }
    if let Some(problem) = preflight::split_role_problem(
        args.role,
        &args.kafka.default_broker_class,
        args.config.as_deref(),
        args.strict,
        args.config_limits.limits(),
    )? {
        anyhow::bail!(problem);
    }
    let admin_token = args.listen.admin_token()?;
    Ok(Checked {
        cluster_mode,
        knative_default,
        admin_token,
    })
}

/// `--dry-run`: says what the node would run and checks --config as `knactor validate` does;
/// starts nothing.
pub(super) fn dry_run(args: &RunArgs, checked: &Checked) -> anyhow::Result<ExitCode> {
    print!("{}", dry_run_summary(args));
    args.admission.check(checked.cluster_mode)?;
    print!("{}", args.admission.summary().unwrap_or_default());
    preflight::dry_run(
        args.config.as_deref(),
        args.strict,
        args.config_limits.limits(),
    )
}

/// What `--dry-run` prints: the settings that decide what the node runs.
fn dry_run_summary(args: &RunArgs) -> String {
    let resources = match (&args.config, args.kubeconfig_path()) {
        (Some(config), _) => format!("--config {}", config.display()),
        (None, Some(path)) => format!("the cluster of {}", path.display()),
        (None, None) => "the cluster this pod runs in".into(),
    };
    let kafka = args
        .kafka
        .settings()
        .map_or_else(|| "none".to_string(), |kafka| kafka.bootstrap.to_string());
    format!(
        "knactor run: the flags are valid; nothing was started\n\
         role: {}\n\
         resources: {resources}\n\
         default broker class: {}\n\
         Kafka bootstrap servers: {kafka}\n\
         listen: {}\n\
         admin API: {}{}\n",
        args.role,
        args.kafka.default_broker_class,
        args.listen.listen,
        args.listen.admin_listen.map_or_else(
            || "on the listen address".to_string(),
            |address| address.to_string()
        ),
        match &args.listen.admin_token_file {
            Some(path) => format!(", bearer token from {}", path.display()),
            None => ", no token (open on a loopback listener only)".to_string(),
        }
    )
}

/// `--default-delivery`: a Knative DeliverySpec as JSON.
fn parse_default_delivery(json: &str) -> anyhow::Result<Delivery> {
    let spec: DeliverySpec = serde_json::from_str(json)
        .map_err(|error| anyhow::anyhow!("--default-delivery: {error}"))?;
    let mut checker = Checker::new(Strictness::Strict);
    let delivery = Delivery::from_spec(&spec, &mut checker, "", "default");
    match checker.finish(delivery) {
        Ok(checked) => checked
            .value
            .ok_or_else(|| anyhow::anyhow!("--default-delivery: not a delivery spec")),
        Err(errors) => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::bail!("--default-delivery: {}", errors.join("; "))
        }
    }
}

fn knative_default_delivery() -> Delivery {
    let mut checker = Checker::new(Strictness::Strict);
    Delivery::from_spec(
        &DeliverySpec::knative_default(),
        &mut checker,
        "default",
        "default",
    )
    .unwrap_or_else(Delivery::none)
}
