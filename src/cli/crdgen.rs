//! `knactor crdgen`: the custom resource definitions, generated from the Rust types.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;

#[derive(Args)]
pub(crate) struct CrdgenArgs {
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Check that this file holds exactly what would be generated (CI); exits non-zero when stale.
    #[arg(long, conflicts_with = "out")]
    check: Option<PathBuf>,
}

pub(crate) fn run(args: CrdgenArgs) -> anyhow::Result<ExitCode> {
    let yaml = knactor_kube::crd::crds_yaml();
    if let Some(path) = args.check {
        let committed = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if committed != yaml {
            bail!(
                "{} is stale: run `knactor crdgen --out {}`",
                path.display(),
                path.display()
            );
        }
        println!("{} is current", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    match args.out {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, yaml)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => print!("{yaml}"),
    }
    Ok(ExitCode::SUCCESS)
}
