//! `knactor trace EVENT_ID`: where did my event go? The hops and outcomes a running node recorded
//! for one event (its journal), oldest first, and the trace id to open in Jaeger.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;
use url::Url;

use super::admin::{call, client};
use super::output::OutputArgs;

#[derive(Args)]
pub(crate) struct TraceArgs {
    /// The event's id (the CloudEvents `id` attribute).
    event_id: String,
    /// The event's `source`, when several producers used the same id (default: the most recent
    /// event of that id).
    #[arg(long)]
    source: Option<String>,
    /// The node's admin API: its --listen address, or its --admin-listen address when it has one.
    #[arg(long, env = "KNACTOR_NODE", default_value = "http://127.0.0.1:8080", value_parser = super::node_url)]
    node: Url,
    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) fn run(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let mut url = args.node.clone();
    url.path_segments_mut()
        .ok()
        .context("the node URL cannot take a path")?
        .clear()
        .extend(["-", "events", args.event_id.as_str()]);
    if let Some(source) = &args.source {
        url.query_pairs_mut().append_pair("source", source);
    }
    let trail = call(client()?.get(url))?;
    if args.output.print_document(&trail)? {
        return Ok(ExitCode::SUCCESS);
    }
    let text = |value: &Value| match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let source = text(&trail["source"]);
    match trail["traceId"].as_str() {
        Some(trace_id) => println!("event {} from {source}  trace {trace_id}", args.event_id),
        None => println!("event {} from {source}  (no trace context)", args.event_id),
    }
    let others: Vec<String> = trail["otherSources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if !others.is_empty() {
        println!(
            "(events with this id also came from {}: pick one with --source)",
            others.join(", ")
        );
    }
    println!(
        "{:<28} {:<14} {:<22} {:<22} {:>7} {:>6}  DETAIL",
        "TIME", "STAGE", "BROKER", "TRIGGER", "ATTEMPT", "STATUS"
    );
    for hop in trail["hops"].as_array().into_iter().flatten() {
        let position = match (hop["partition"].as_i64(), hop["offset"].as_i64()) {
            (Some(partition), Some(offset)) => format!("partition {partition} offset {offset}; "),
            _ => String::new(),
        };
        println!(
            "{:<28} {:<14} {:<22} {:<22} {:>7} {:>6}  {position}{}",
            text(&hop["at"]),
            text(&hop["stage"]),
            text(&hop["broker"]),
            text(&hop["trigger"]),
            text(&hop["attempt"]),
            text(&hop["status"]),
            text(&hop["detail"]),
        );
    }
    if let Some(dropped) = trail["droppedHops"].as_u64().filter(|&n| n > 0) {
        println!("... and {dropped} later hops not kept");
    }
    let verdicts = trail["triggers"].as_array().cloned().unwrap_or_default();
    if !verdicts.is_empty() {
        println!("triggers:");
        for verdict in &verdicts {
            let name = text(&verdict["name"]);
            match verdict["why"].as_str() {
                Some(why) => println!("  {name}: not matched: {why}"),
                None => println!("  {name}: matched"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
