//! `knactor validate`: load resource files and say what would be refused, without running them.
//! `knactor run --dry-run` reads its `--config` the same way ([`ConfigReport`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use knactor_actors::resources::{Refusal, Strictness};
use knactor_actors::routes::{identity, Catalog, Resource};
use serde_json::{json, Value};

use super::output::OutputArgs;
use crate::config::{ConfigSource, ReadLimitArgs, ReadLimits, Snapshot};

#[derive(Args)]
pub(crate) struct ValidateArgs {
    /// A file or a directory of *.yaml / *.yml files.
    path: PathBuf,
    /// Refuse exactly what Knative's webhook refuses.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    read_limits: ReadLimitArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let report = ConfigReport::read(&args.path, args.strict, args.read_limits.limits())?;
    if !args.output.print_document(&report.document())? {
        report.print();
    }
    Ok(report.exit_code())
}

/// What reading a configuration path found: what loads, what is skipped, warned about, refused.
pub(crate) struct ConfigReport {
    path: PathBuf,
    strict: bool,
    snapshot: Snapshot,
    /// Resources refused because another file holds one of the same kind and name.
    duplicates: Vec<Refusal>,
    pub catalog: Catalog,
}

impl ConfigReport {
    /// Reads `path` once, as `knactor run --config` reads it at start.
    pub(crate) fn read(path: &Path, strict: bool, limits: ReadLimits) -> anyhow::Result<Self> {
        let strictness = if strict {
            Strictness::Strict
        } else {
            Strictness::Lenient
        };
        let snapshot = ConfigSource::new(path, strictness)?
            .with_limits(limits)
            .poll()?
            .unwrap_or_else(|| unreachable!("the first poll always reads"));
        let (catalog, duplicates) = Catalog::from_report(&snapshot.report);
        Ok(Self {
            path: path.to_path_buf(),
            strict,
            snapshot,
            duplicates,
            catalog,
        })
    }

    /// Every refusal, as one line each: files that cannot be read, resources, duplicates.
    pub(crate) fn refused(&self) -> Vec<String> {
        let mut refused = self.snapshot.refused.clone();
        refused.extend(self.duplicates.iter().map(ToString::to_string));
        refused
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        if self.refused().is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// The lines `knactor validate` prints, ending with the counts.
    pub(crate) fn print(&self) {
        let report = &self.snapshot.report;
        for (origin, resource) in &report.accepted {
            println!("ok: {origin}: {}", describe(resource));
        }
        for line in &report.skipped {
            println!("skipped: {line}");
        }
        for line in &self.snapshot.warnings {
            println!("warning: {line}");
        }
        let refused = self.refused();
        for line in &refused {
            println!("refused: {line}");
        }
        println!(
            "{} loaded, {} refused, {} warning(s)",
            report.accepted.len(),
            refused.len(),
            self.snapshot.warnings.len()
        );
    }

    /// `-o json|yaml`: the schema of docs/cli.md ("knactor validate").
    pub(crate) fn document(&self) -> Value {
        let report = &self.snapshot.report;
        let loaded: Vec<Value> = report
            .accepted
            .iter()
            .map(|(origin, resource)| {
                let (namespace, name) = match identity(resource) {
                    Some((_, key)) => (Some(key.namespace), Some(key.name)),
                    None => (None, None),
                };
                json!({
                    "kind": resource.kind(),
                    "namespace": namespace,
                    "name": name,
                    "file": origin.source,
                    "document": origin.document,
                })
            })
            .collect();
        // The refusals of documents, with their fields; the rest (a file that cannot be read)
        // are lines only.
        let structured: Vec<&Refusal> = report.refused.iter().chain(&self.duplicates).collect();
        let lines: HashSet<String> = structured.iter().map(ToString::to_string).collect();
        let mut refused: Vec<Value> = structured
            .iter()
            .map(|refusal| {
                json!({
                    "file": refusal.origin.source,
                    "document": refusal.origin.document,
                    "resource": refusal.resource,
                    "errors": refusal.errors.iter().map(|error| json!({
                        "path": error.path,
                        "message": error.message,
                    })).collect::<Vec<_>>(),
                    "message": refusal.to_string(),
                })
            })
            .collect();
        refused.extend(
            self.snapshot
                .refused
                .iter()
                .filter(|line| !lines.contains(*line))
                .map(|line| {
                    json!({
                        "file": null,
                        "document": null,
                        "resource": null,
                        "errors": [],
                        "message": line,
                    })
                }),
        );
        let skipped: Vec<String> = report.skipped.iter().map(ToString::to_string).collect();
        json!({
            "path": self.path.display().to_string(),
            "strict": self.strict,
            "valid": refused.is_empty(),
            "counts": {
                "loaded": loaded.len(),
                "refused": refused.len(),
                "warnings": self.snapshot.warnings.len(),
            },
            "loaded": loaded,
            "skipped": skipped,
            "warnings": self.snapshot.warnings,
            "refused": refused,
        })
    }
}

fn describe(resource: &Resource) -> String {
    match identity(resource) {
        Some((kind, key)) => format!("{kind} {key}"),
        None => resource.kind().to_string(),
    }
}
