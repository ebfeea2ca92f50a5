//! `knactor validate`: load resource files and say what would be refused, without running them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use knactor_actors::resources::Strictness;
use knactor_actors::routes::Catalog;

use crate::config::{ConfigSource, ReadLimitArgs};

#[derive(Args)]
pub struct ValidateArgs {
    /// A file or a directory of *.yaml / *.yml files.
    path: PathBuf,
    /// Refuse exactly what Knative's webhook refuses.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    read_limits: ReadLimitArgs,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let strictness = if args.strict {
        Strictness::Strict
    } else {
        Strictness::Lenient
    };
    let mut source =
        ConfigSource::new(&args.path, strictness)?.with_limits(args.read_limits.limits());
    let snapshot = source
        .poll()?
        .unwrap_or_else(|| unreachable!("the first poll always reads"));
    let (_, duplicates) = Catalog::from_report(&snapshot.report);
    let mut refused = snapshot.refused.clone();
    refused.extend(duplicates.iter().map(ToString::to_string));
    for (origin, resource) in &snapshot.report.accepted {
        println!("ok: {origin}: {}", describe(resource));
    }
    for line in &snapshot.report.skipped {
        println!("skipped: {line}");
    }
    for line in &snapshot.warnings {
        println!("warning: {line}");
    }
    for line in &refused {
        println!("refused: {line}");
    }
    println!(
        "{} loaded, {} refused, {} warning(s)",
        snapshot.report.accepted.len(),
        refused.len(),
        snapshot.warnings.len()
    );
    Ok(if refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn describe(resource: &knactor_actors::resources::Resource) -> String {
    match knactor_actors::resources::loader::identity(resource) {
        Some((kind, key)) => format!("{kind} {key}"),
        None => resource.kind().to_string(),
    }
}
