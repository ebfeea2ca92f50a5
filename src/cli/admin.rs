//! `knactor status` and `knactor parked`: talk to a running node's admin API.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde_json::Value;
use url::Url;

use super::output::OutputArgs;

#[derive(Args)]
pub(crate) struct StatusArgs {
    /// The node's admin API: its --listen address, or its --admin-listen address when it has one.
    #[arg(long, env = "KNACTOR_NODE", default_value = "http://127.0.0.1:8080", value_parser = super::node_url)]
    node: Url,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
pub(crate) struct ParkedArgs {
    #[command(subcommand)]
    action: ParkedAction,
    /// The node's admin API: its --listen address, or its --admin-listen address when it has one.
    #[arg(
        long,
        global = true,
        env = "KNACTOR_NODE",
        default_value = "http://127.0.0.1:8080",
        value_parser = super::node_url
    )]
    node: Url,
    /// The broker's namespace, as kubectl's and kn's -n (default: default; a <namespace>/<broker>
    /// argument says it too).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Subcommand)]
enum ParkedAction {
    /// List a broker's parked events.
    List {
        /// The broker: a name (in -n NAMESPACE), or <namespace>/<broker>.
        broker: String,
        /// List at most this many events (the total is counted all the same).
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Deliver a broker's parked events again, each to the trigger that parked it.
    Redrive {
        /// The broker: a name (in -n NAMESPACE), or <namespace>/<broker>.
        broker: String,
        /// Only this trigger's events (<namespace>/<name>, or a name in the broker's namespace).
        #[arg(long)]
        trigger: Option<String>,
    },
}

/// A client for the node's admin API, carrying its token when one is given:
/// `KNACTOR_ADMIN_TOKEN`, or the file `KNACTOR_ADMIN_TOKEN_FILE` names (the variable the node
/// reads its own token from).
pub(super) fn client() -> anyhow::Result<reqwest::blocking::Client> {
    let token = match (
        std::env::var("KNACTOR_ADMIN_TOKEN").ok(),
        std::env::var_os("KNACTOR_ADMIN_TOKEN_FILE"),
    ) {
        (Some(token), _) if !token.trim().is_empty() => Some(token.trim().to_string()),
        (_, Some(path)) => {
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "KNACTOR_ADMIN_TOKEN_FILE={}: cannot read it",
                    std::path::Path::new(&path).display()
                )
            })?;
            Some(text.lines().next().unwrap_or_default().trim().to_string())
        }
        _ => None,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the admin token is not valid in an HTTP header")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::blocking::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .build()
        .context("cannot build the HTTP client")
}

pub(super) fn call(request: reqwest::blocking::RequestBuilder) -> anyhow::Result<Value> {
    let response = request.send().context("the node did not answer")?;
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    if !status.is_success() {
        let reason = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        bail!("the node answered {status}: {reason}");
    }
    Ok(body)
}

/// The broker a `parked` command names: `name` in `-n NAMESPACE` (default `default`, as kubectl's
/// current namespace without a context), or `namespace/name`.
fn broker_key(broker: &str, namespace: Option<&str>) -> anyhow::Result<(String, String)> {
    let (from_argument, name) = match broker.split_once('/') {
        Some((namespace, name)) => (Some(namespace), name),
        None => (None, broker),
    };
    if name.is_empty() || name.contains('/') || from_argument.is_some_and(str::is_empty) {
        bail!("{broker:?} is not a broker: give <broker> (with -n <namespace>) or <namespace>/<broker>");
    }
    let namespace = match (from_argument, namespace) {
        (Some(given), Some(flag)) if given != flag => {
            bail!("{broker:?} is in namespace {given:?} but -n says {flag:?}: give one of them")
        }
        (Some(given), _) => given,
        (None, Some("")) => bail!("-n: the namespace is empty"),
        (None, Some(flag)) => flag,
        (None, None) => "default",
    };
    Ok((namespace.to_string(), name.to_string()))
}

/// `{node}/-/brokers/{namespace}/{name}/{tail...}`, each part escaped.
fn broker_url(
    node: &Url,
    (namespace, name): &(String, String),
    tail: &[&str],
) -> anyhow::Result<Url> {
    let mut url = node.clone();
    url.path_segments_mut()
        .ok()
        .context("the node URL cannot take a path")?
        .clear()
        .extend(["-", "brokers", namespace, name])
        .extend(tail);
    Ok(url)
}

pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let status = call(client()?.get(args.node.join("/-/status")?))?;
    if args.output.print_document(&status)? {
        return Ok(ExitCode::SUCCESS);
    }
    println!("role: {}", status["role"].as_str().unwrap_or("all"));
    println!("ready: {}", status["ready"]);
    for broker in status["brokers"].as_array().into_iter().flatten() {
        let storing = match broker["channelProblem"].as_str() {
            Some(problem) => format!("no ({problem})"),
            None => broker["storing"].to_string(),
        };
        println!(
            "broker {}/{}  channel={} topic={} running={} storing={} restarts={}",
            broker["namespace"].as_str().unwrap_or_default(),
            broker["name"].as_str().unwrap_or_default(),
            broker["channel"].as_str().unwrap_or_default(),
            broker["topic"].as_str().unwrap_or_default(),
            broker["running"],
            storing,
            broker["restarts"]
        );
        let partitions = broker["partitions"].as_array().cloned().unwrap_or_default();
        if !partitions.is_empty() {
            let number = |value: &Value| value.as_i64().map_or("?".into(), |n| n.to_string());
            let held: Vec<String> = partitions
                .iter()
                .map(|p| {
                    format!(
                        "{} (end {}, committed {}, lag {})",
                        p["partition"],
                        number(&p["end"]),
                        number(&p["committed"]),
                        number(&p["lag"])
                    )
                })
                .collect();
            println!("  partitions read here: {}", held.join(", "));
        }
        for trigger in broker["triggerProgress"].as_array().into_iter().flatten() {
            let behind = trigger["behind"].as_u64().unwrap_or(0);
            let lagging = if behind > 0 {
                format!(
                    ", {behind} behind on {} partition(s), catching up",
                    trigger["laggingPartitions"]
                )
            } else {
                String::new()
            };
            println!(
                "  trigger {}: {} queued, {} in flight{lagging}",
                trigger["name"].as_str().unwrap_or_default(),
                trigger["queued"],
                trigger["inFlight"]
            );
        }
    }
    for source in status["sources"].as_array().into_iter().flatten() {
        let state = match (source["ready"].as_bool(), source["running"].as_bool()) {
            (Some(true), _) => "ready",
            (_, Some(true)) => "starting",
            _ => "stopped",
        };
        println!(
            "source {} {}/{}: {state}, {} sent, {} refused by the sink{}",
            source["kind"].as_str().unwrap_or_default(),
            source["namespace"].as_str().unwrap_or_default(),
            source["name"].as_str().unwrap_or_default(),
            source["sent"],
            source["rejected"],
            source["problem"]
                .as_str()
                .map(|problem| format!(": {problem}"))
                .unwrap_or_default()
        );
        if let Some(skipped) = source["skipped"].as_str() {
            println!("  skipped: {skipped}");
        }
    }
    for issue in status["notRunning"].as_array().into_iter().flatten() {
        println!(
            "not running: {} {}/{}: {}: {}",
            issue["kind"].as_str().unwrap_or_default(),
            issue["namespace"].as_str().unwrap_or_default(),
            issue["name"].as_str().unwrap_or_default(),
            issue["reason"].as_str().unwrap_or_default(),
            issue["message"].as_str().unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn parked(args: ParkedArgs) -> anyhow::Result<ExitCode> {
    let client = client()?;
    match args.action {
        ParkedAction::List { broker, max } => {
            let key = broker_key(&broker, args.namespace.as_deref())?;
            let url = broker_url(&args.node, &key, &["parked"])?;
            let parked = call(client.get(url).query(&[("max", max)]))?;
            if args.output.print_document(&parked)? {
                return Ok(ExitCode::SUCCESS);
            }
            println!("{} parked", parked["total"]);
            for event in parked["events"].as_array().into_iter().flatten() {
                println!(
                    "{} id={} type={} trigger={} reason={}",
                    event["parkedAt"].as_str().unwrap_or_default(),
                    event["event"]["id"].as_str().unwrap_or_default(),
                    event["event"]["type"].as_str().unwrap_or_default(),
                    event["trigger"].as_str().unwrap_or_default(),
                    event["reason"].as_str().unwrap_or_default()
                );
            }
        }
        ParkedAction::Redrive { broker, trigger } => {
            let key = broker_key(&broker, args.namespace.as_deref())?;
            let url = broker_url(&args.node, &key, &["parked", "redrive"])?;
            let mut request = client.post(url);
            if let Some(trigger) = trigger {
                request = request.query(&[("trigger", trigger)]);
            }
            let report = call(request)?;
            if args.output.print_document(&report)? {
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "re-driven: {}   still parked: {}",
                report["redriven"], report["kept"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(broker: &str, namespace: Option<&str>) -> Result<(String, String), String> {
        broker_key(broker, namespace).map_err(|error| error.to_string())
    }

    #[test]
    fn a_broker_is_named_as_kubectl_names_an_object() {
        let pair = |ns: &str, name: &str| Ok((ns.to_string(), name.to_string()));
        assert_eq!(key("default", None), pair("default", "default"));
        assert_eq!(key("orders", Some("team-a")), pair("team-a", "orders"));
        assert_eq!(key("team-a/orders", None), pair("team-a", "orders"));
        assert_eq!(
            key("team-a/orders", Some("team-a")),
            pair("team-a", "orders")
        );
        assert!(key("team-a/orders", Some("team-b"))
            .unwrap_err()
            .contains("but -n says \"team-b\""));
        for bad in ["", "/orders", "team-a/", "a/b/c"] {
            assert!(
                key(bad, None).unwrap_err().contains("is not a broker"),
                "{bad}"
            );
        }
    }
}
