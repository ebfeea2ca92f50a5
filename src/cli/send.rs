//! `knactor send`: send CloudEvents to a URL and report the status codes that came back.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use cloudevents::{EventBuilder, EventBuilderV10};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use knactor_gateway::binding::{to_binary, to_structured};
use url::Url;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Binary,
    Structured,
}

#[derive(Args)]
pub struct SendArgs {
    /// Where to send, e.g. http://127.0.0.1:8080/default/default
    url: Url,
    /// The events' `type`.
    #[arg(long = "type")]
    ty: String,
    /// The events' `source`.
    #[arg(long)]
    source: String,
    /// The event id (a fresh UUID per event by default; with --count, "<id>-<n>").
    #[arg(long)]
    id: Option<String>,
    /// JSON data (sent as application/json).
    #[arg(long)]
    data: Option<String>,
    #[arg(long)]
    subject: Option<String>,
    /// An extension attribute, name=value; repeatable.
    #[arg(long = "extension", value_parser = parse_extension)]
    extensions: Vec<(String, String)>,
    /// How many events to send.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP content mode.
    #[arg(long, value_enum, default_value = "binary")]
    mode: Mode,
}

fn parse_extension(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not name=value"))?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "{name:?} is not an extension name (lowercase letters and digits)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

pub fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let data = match &args.data {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text).context("--data is not valid JSON")?,
        ),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(send_all(args, data))
}

async fn send_all(args: SendArgs, data: Option<serde_json::Value>) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let args = Arc::new(args);
    let progress = if args.count > 1 {
        let bar = ProgressBar::new(args.count);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let outcomes = futures::stream::iter(1..=args.count)
        .map(|n| {
            let (client, args, data, progress) =
                (client.clone(), args.clone(), data.clone(), progress.clone());
            async move {
                let outcome = send_one(&client, &args, data, n).await;
                progress.inc(1);
                outcome
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    progress.finish_and_clear();

    let mut tally: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_error_body = None;
    for outcome in &outcomes {
        let key = match outcome {
            Ok((status, body)) => {
                if !(200..300).contains(status) && !body.trim().is_empty() {
                    last_error_body = Some(body.trim().to_string());
                }
                status_text(*status)
            }
            Err(error) => format!("error: {error}"),
        };
        *tally.entry(key).or_default() += 1;
    }
    for (status, count) in &tally {
        if args.count == 1 {
            println!("{status}");
        } else {
            println!("{status} × {count}");
        }
    }
    if let Some(body) = last_error_body {
        println!("  {body}");
    }
    if args.count > 1 {
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{} events in {seconds:.2}s ({:.0}/s)",
            args.count,
            args.count as f64 / seconds.max(1e-9)
        );
    }
    let all_ok = outcomes
        .iter()
        .all(|outcome| matches!(outcome, Ok((status, _)) if (200..300).contains(status)));
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn status_text(status: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_string()
}

async fn send_one(
    client: &reqwest::Client,
    args: &SendArgs,
    data: Option<serde_json::Value>,
    n: u64,
) -> Result<(u16, String), String> {
    let id = match (&args.id, args.count) {
        (Some(id), 1) => id.clone(),
        (Some(id), _) => format!("{id}-{n}"),
        (None, _) => uuid::Uuid::new_v4().to_string(),
    };
    let mut builder = EventBuilderV10::new()
        .id(id)
        .ty(args.ty.clone())
        .source(args.source.clone())
        .time(chrono::Utc::now());
    if let Some(subject) = &args.subject {
        builder = builder.subject(subject.clone());
    }
    for (name, value) in &args.extensions {
        builder = builder.extension(name, value.clone());
    }
    if let Some(data) = data {
        builder = builder.data("application/json", data);
    }
    let event = builder.build().map_err(|error| error.to_string())?;
    let mut request = client.post(args.url.clone());
    request = match args.mode {
        Mode::Binary => {
            let (headers, body) = to_binary(&event);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.body(body)
        }
        Mode::Structured => {
            let (body, content_type) = to_structured(&event);
            request.header("content-type", content_type).body(body)
        }
    };
    let response = request.send().await.map_err(|error| {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        message
    })?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok((status, body))
}
