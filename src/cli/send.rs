//! `knactor send`: send CloudEvents to a URL and report the status codes that came back, and the
//! ids it gave the events.
//!
//! Standard output is the result (the statuses and ids, or with `-o json` one line per event);
//! standard error is progress: a bar on a terminal, else a one-line summary every
//! `--progress-interval`, which a CI log or `kubectl logs` shows as it goes.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use cloudevents::{Data, EventBuilder, EventBuilderV10};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use knactor_gateway::binding::{to_binary, to_structured};
use serde_json::json;
use url::Url;

use crate::config::parse_duration_flag;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Binary,
    Structured,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SendFormat {
    /// The statuses, their counts and the ids (the first and the last of several).
    Text,
    /// One JSON object per event and line, as each answer arrives: {"id", "status", "error"}.
    Json,
}

#[derive(Args)]
pub(crate) struct SendArgs {
    /// Where to send, e.g. http://127.0.0.1:8080/default/default
    #[arg(value_parser = super::target_url)]
    url: Url,
    /// The events' `type`, e.g. com.example.order.created.
    #[arg(long = "type", value_name = "TYPE", value_parser = required_attribute(
        "a CloudEvent's type is a non-empty string, such as com.example.order.created"
    ))]
    ty: String,
    /// The events' `source`, a URI reference, e.g. /my/app or https://example.com/app.
    #[arg(long, value_parser = required_attribute(
        "a CloudEvent's source is a non-empty URI reference, such as /my/app or https://example.com/app"
    ))]
    source: String,
    /// The event id (a fresh UUID per event by default; with --count, "<id>-<n>").
    #[arg(long, value_parser = required_attribute(
        "a CloudEvent's id is a non-empty string (leave --id out for a fresh UUID per event)"
    ))]
    id: Option<String>,
    /// The events' data: the text itself, or @FILE to read it from a file (@- reads standard
    /// input). JSON unless --content-type says otherwise.
    #[arg(long, value_name = "DATA|@FILE")]
    data: Option<String>,
    /// The data's media type (`datacontenttype`), e.g. text/plain or application/octet-stream;
    /// data of a JSON type (application/json, *+json) must be valid JSON.
    #[arg(long, value_name = "TYPE", default_value = "application/json")]
    content_type: String,
    /// The events' `subject` (non-empty when given).
    #[arg(long, value_parser = required_attribute(
        "a CloudEvent's subject, when it has one, is a non-empty string"
    ))]
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
    /// Output format: text, or json (one object per event and line: id, status, error).
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: SendFormat,
    /// When standard error is not a terminal, print a one-line summary (sent, accepted, refused
    /// by status) this often while sending (0s: none).
    #[arg(long, default_value = "2s", value_parser = parse_duration_flag)]
    progress_interval: Duration,
}

/// Refuses an empty value with `why`: the CloudEvents SDK would refuse an empty source only when
/// the event is built, in its own words ("Invalid value setting attribute 'source' with uriref
/// type"), and an empty id, type or subject not at all (the receiver would, with 400).
fn required_attribute(why: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |text: &str| {
        if text.is_empty() {
            Err(why.to_string())
        } else {
            Ok(text.to_string())
        }
    }
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

pub(crate) fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let data = match &args.data {
        Some(data) => Some(event_data(&read_data(data)?, &args.content_type)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(send_all(args, data))
}

/// `--data`: the text itself, `@FILE`, or `@-` for standard input.
fn read_data(data: &str) -> anyhow::Result<Vec<u8>> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("--data @-: cannot read standard input")?;
            Ok(bytes)
        }
        Some(path) => {
            std::fs::read(path).with_context(|| format!("--data @{path}: cannot read the file"))
        }
        None => Ok(data.as_bytes().to_vec()),
    }
}

/// Whether a media type carries JSON (`application/json`, `text/json`, `application/*+json`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(essence.as_str(), "application/json" | "text/json") || essence.ends_with("+json")
}

/// The data as the event carries it: parsed JSON for a JSON type (so structured mode embeds it),
/// text when it is UTF-8, bytes otherwise (structured mode sends those as `data_base64`).
fn event_data(bytes: &[u8], content_type: &str) -> anyhow::Result<Data> {
    if is_json(content_type) {
        let value = serde_json::from_slice(bytes).with_context(|| {
            format!(
                "--data is not valid JSON, as --content-type {content_type} says it is (give \
                 --content-type text/plain or another type for other data)"
            )
        })?;
        return Ok(Data::Json(value));
    }
    let binary = content_type.split(';').next().is_some_and(|essence| {
        essence
            .trim()
            .eq_ignore_ascii_case("application/octet-stream")
    });
    Ok(match std::str::from_utf8(bytes) {
        Ok(text) if !binary => Data::String(text.to_string()),
        _ => Data::Binary(bytes.to_vec()),
    })
}

/// What came back for one event.
struct Outcome {
    n: u64,
    id: String,
    /// The status and body, or why there was no answer.
    answer: Result<(u16, String), String>,
}

/// What came back so far.
#[derive(Default)]
struct Tally {
    done: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    last_error_body: Option<String>,
    first_id: Option<String>,
    last_id: Option<String>,
}

impl Tally {
    fn record(&mut self, outcome: &Outcome, count: u64) {
        self.done += 1;
        match &outcome.answer {
            Ok((status, body)) => {
                *self.statuses.entry(*status).or_default() += 1;
                if !(200..300).contains(status) && !body.trim().is_empty() {
                    self.last_error_body = Some(body.trim().to_string());
                }
            }
            Err(error) => *self.errors.entry(error.clone()).or_default() += 1,
        }
        if outcome.n == 1 {
            self.first_id = Some(outcome.id.clone());
        }
        if outcome.n == count {
            self.last_id = Some(outcome.id.clone());
        }
    }

    fn accepted(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, count)| count)
            .sum()
    }

    fn all_accepted(&self) -> bool {
        self.accepted() == self.done
    }

    /// The periodic line on a non-terminal: `sent 1200/5000 in 2.0s: accepted 1150, refused 50
    /// (503 ×50), no answer 0`.
    fn summary(&self, count: u64, elapsed: Duration) -> String {
        let refused: Vec<String> = self
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(status, n)| format!("{status} ×{n}"))
            .collect();
        let refused_total: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(_, n)| n)
            .sum();
        let refused = if refused.is_empty() {
            "refused 0".to_string()
        } else {
            format!("refused {refused_total} ({})", refused.join(", "))
        };
        format!(
            "sent {}/{count} in {:.1}s: accepted {}, {refused}, no answer {}",
            self.done,
            elapsed.as_secs_f64(),
            self.accepted(),
            self.errors.values().sum::<u64>()
        )
    }
}

async fn send_all(args: SendArgs, data: Option<Data>) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let args = Arc::new(args);
    let count = args.count;
    let on_terminal = std::io::stderr().is_terminal();
    let progress = if count > 1 && on_terminal {
        let bar = ProgressBar::new(count);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let periodic = count > 1 && !on_terminal && !args.progress_interval.is_zero();
    let every = args.progress_interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let started = Instant::now();
    let mut outcomes = futures::stream::iter(1..=count)
        .map(|n| {
            let (client, args, data) = (client.clone(), args.clone(), data.clone());
            async move {
                let id = match (&args.id, args.count) {
                    (Some(id), 1) => id.clone(),
                    (Some(id), _) => format!("{id}-{n}"),
                    (None, _) => uuid::Uuid::new_v4().to_string(),
                };
                let answer = send_one(&client, &args, data, &id).await;
                Outcome { n, id, answer }
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    let mut tally = Tally::default();
    let stdout = std::io::stdout();
    loop {
        tokio::select! {
            next = outcomes.next() => {
                let Some(outcome) = next else { break };
                tally.record(&outcome, count);
                progress.inc(1);
                if args.output == SendFormat::Json {
                    let (status, error) = match &outcome.answer {
                        Ok((status, _)) if (200..300).contains(status) => (Some(*status), None),
                        Ok((status, body)) => (Some(*status), Some(body.trim().to_string())),
                        Err(error) => (None, Some(error.clone())),
                    };
                    let line = json!({"id": outcome.id, "status": status, "error": error});
                    writeln!(stdout.lock(), "{line}")?;
                }
            }
            _ = ticker.tick(), if periodic => {
                eprintln!("{}", tally.summary(count, started.elapsed()));
            }
        }
    }
    progress.finish_and_clear();
    if args.output == SendFormat::Text {
        print_text(&tally, count, started.elapsed());
    }
    Ok(if tally.all_accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The statuses with their counts (errors last), the last refusal's body, the rate, and the ids.
fn print_text(tally: &Tally, count: u64, elapsed: Duration) {
    let lines = tally
        .statuses
        .iter()
        .map(|(status, n)| (status_text(*status), n))
        .chain(
            tally
                .errors
                .iter()
                .map(|(error, n)| (format!("error: {error}"), n)),
        );
    for (what, n) in lines {
        if count == 1 {
            println!("{what}");
        } else {
            println!("{what} × {n}");
        }
    }
    if let Some(body) = &tally.last_error_body {
        println!("  {body}");
    }
    let first = tally.first_id.as_deref().unwrap_or("?");
    if count == 1 {
        println!("id: {first}");
        return;
    }
    let seconds = elapsed.as_secs_f64();
    println!(
        "{count} events in {seconds:.2}s ({:.0}/s)",
        count as f64 / seconds.max(1e-9)
    );
    println!(
        "ids: first {first}, last {}, {count} in all",
        tally.last_id.as_deref().unwrap_or("?")
    );
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
    data: Option<Data>,
    id: &str,
) -> Result<(u16, String), String> {
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
        builder = builder.data(args.content_type.clone(), data);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_json_only_when_its_type_says_so() {
        assert_eq!(
            event_data(br#"{"a":1}"#, "application/json").unwrap(),
            Data::Json(json!({"a": 1}))
        );
        assert_eq!(
            event_data(b"[1]", "application/cloudevents-batch+json; charset=utf-8").unwrap(),
            Data::Json(json!([1]))
        );
        let error = format!(
            "{:#}",
            event_data(b"hello", "application/json").unwrap_err()
        );
        assert!(error.starts_with("--data is not valid JSON"), "{error}");
        assert!(error.contains("--content-type text/plain"), "{error}");
        assert_eq!(
            event_data(b"hello", "text/plain").unwrap(),
            Data::String("hello".into())
        );
        assert_eq!(
            event_data(b"hello", "application/octet-stream").unwrap(),
            Data::Binary(b"hello".to_vec())
        );
        assert_eq!(
            event_data(&[0xff, 0x00], "image/png").unwrap(),
            Data::Binary(vec![0xff, 0x00])
        );
    }

    #[test]
    fn the_periodic_summary_says_sent_accepted_and_refused_by_status() {
        let mut tally = Tally::default();
        let outcome = |n, answer| Outcome {
            n,
            id: format!("e-{n}"),
            answer,
        };
        tally.record(&outcome(1, Ok((202, String::new()))), 10);
        tally.record(&outcome(2, Ok((503, "full".into()))), 10);
        tally.record(&outcome(3, Ok((503, "full".into()))), 10);
        tally.record(&outcome(10, Err("refused".into())), 10);
        assert_eq!(
            tally.summary(10, Duration::from_millis(2000)),
            "sent 4/10 in 2.0s: accepted 1, refused 2 (503 ×2), no answer 1"
        );
        assert_eq!(tally.first_id.as_deref(), Some("e-1"));
        assert_eq!(tally.last_id.as_deref(), Some("e-10"));
        assert!(!tally.all_accepted());
    }
}
