//! `knactor completions` and `knactor man`: shell completions (clap_complete) and manual pages
//! (clap_mangen), generated from the command line's own definition. The copies committed under
//! `docs/completions/` and `docs/man/` are checked current by a test (below), as the CRDs are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Command, ValueEnum};
use clap_complete::Shell;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    fn shell(self) -> Shell {
        match self {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
        }
    }

    /// The file name each shell looks for.
    fn file_name(self) -> &'static str {
        match self {
            CompletionShell::Bash => "knactor.bash",
            CompletionShell::Zsh => "_knactor",
            CompletionShell::Fish => "knactor.fish",
        }
    }
}

#[derive(Args)]
#[command(
    after_help = "Install: bash: source <(knactor completions bash); zsh: knactor completions \
    zsh > \"${fpath[1]}/_knactor\"; fish: knactor completions fish > \
    ~/.config/fish/completions/knactor.fish"
)]
pub(crate) struct CompletionsArgs {
    /// The shell to print the completions of.
    #[arg(value_enum, required_unless_present_any = ["out", "check"])]
    shell: Option<CompletionShell>,
    /// Write every shell's file (knactor.bash, _knactor, knactor.fish) into this directory.
    #[arg(long, value_name = "DIR", conflicts_with = "shell")]
    out: Option<PathBuf>,
    /// Check that this directory holds exactly what --out would write (CI); exits non-zero when
    /// stale.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["shell", "out"])]
    check: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct ManArgs {
    /// Write one page per command (knactor.1, knactor-run.1, ...) into this directory; without
    /// it, knactor.1 goes to standard output.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Check that this directory holds exactly what --out would write (CI); exits non-zero when
    /// stale.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    check: Option<PathBuf>,
}

pub(crate) fn completions(args: CompletionsArgs, command: Command) -> anyhow::Result<ExitCode> {
    let files = completion_files(command);
    if let Some(shell) = args.shell {
        print!("{}", String::from_utf8_lossy(&files[shell.file_name()]));
        return Ok(ExitCode::SUCCESS);
    }
    write_or_check(
        &files,
        args.out.as_deref(),
        args.check.as_deref(),
        "completions --out",
    )
}

pub(crate) fn man(args: ManArgs, command: Command) -> anyhow::Result<ExitCode> {
    let pages = man_pages(command)?;
    if args.out.is_none() && args.check.is_none() {
        print!("{}", String::from_utf8_lossy(&pages["knactor.1"]));
        return Ok(ExitCode::SUCCESS);
    }
    write_or_check(
        &pages,
        args.out.as_deref(),
        args.check.as_deref(),
        "man --out",
    )
}

/// The command as the generated files describe it: without what differs between machines (the
/// thread defaults are the machine's CPUs).
pub(crate) fn documented(command: Command) -> Command {
    command.mut_subcommand("run", |run| {
        ["http_workers", "dispatch_workers"]
            .into_iter()
            .fold(run, |run, id| {
                run.mut_arg(id, |arg| {
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    arg.hide_default_value(true)
                        .help(format!("{help} [default: the CPUs, at most 4]"))
                })
            })
    })
}

/// File name -> contents, one per shell.
pub(crate) fn completion_files(command: Command) -> BTreeMap<String, Vec<u8>> {
    let mut command = documented(command);
    [
        CompletionShell::Bash,
        CompletionShell::Zsh,
        CompletionShell::Fish,
    ]
    .into_iter()
    .map(|shell| {
        let mut script = Vec::new();
        clap_complete::generate(shell.shell(), &mut command, "knactor", &mut script);
        (shell.file_name().to_string(), script)
    })
    .collect()
}

/// File name -> contents, one page per command and subcommand (as `clap_mangen::generate_to`
/// names them), hidden ones left out.
pub(crate) fn man_pages(command: Command) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    fn add(command: &Command, pages: &mut BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            add(sub, pages)?;
        }
        let man = clap_mangen::Man::new(command.clone());
        let mut page = Vec::new();
        man.render(&mut page)?;
        pages.insert(man.get_filename(), page);
        Ok(())
    }
    let mut command = documented(command).disable_help_subcommand(true);
    command.build();
    let mut pages = BTreeMap::new();
    add(&command, &mut pages)?;
    Ok(pages)
}

/// `--out DIR` writes `files` there; `--check DIR` says whether DIR holds exactly them (no file
/// missing, different or left over).
fn write_or_check(
    files: &BTreeMap<String, Vec<u8>>,
    out: Option<&Path>,
    check: Option<&Path>,
    regenerate: &str,
) -> anyhow::Result<ExitCode> {
    if let Some(dir) = check {
        let stale = stale_files(files, dir)?;
        if !stale.is_empty() {
            bail!(
                "{} is stale ({}): run `knactor {regenerate} {}`",
                dir.display(),
                stale.join(", "),
                dir.display()
            );
        }
        println!("{} is current", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let dir = out.context("give --out DIR or --check DIR")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for name in stale_files(files, dir)? {
        let path = dir.join(&name);
        match files.get(&name) {
            Some(contents) => std::fs::write(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?,
            None => std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?,
        }
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The names in `dir` that differ from `files`: missing, different, or there and not generated
/// (a page of a command that is gone).
pub(crate) fn stale_files(
    files: &BTreeMap<String, Vec<u8>>,
    dir: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut stale = Vec::new();
    for (name, contents) in files {
        if std::fs::read(dir.join(name)).ok().as_ref() != Some(contents) {
            stale.push(name.clone());
        }
    }
    if dir.is_dir() {
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !files.contains_key(&name) {
                stale.push(name);
            }
        }
    }
    stale.sort();
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    #[test]
    fn the_committed_completions_and_man_pages_are_current() {
        let completions = stale_files(
            &completion_files(crate::Cli::command()),
            &repo("docs/completions"),
        )
        .unwrap();
        let pages = stale_files(
            &man_pages(crate::Cli::command()).unwrap(),
            &repo("docs/man"),
        )
        .unwrap();
        assert!(
            completions.is_empty() && pages.is_empty(),
            "stale: docs/completions {completions:?}, docs/man {pages:?}: run `cargo run -- \
             completions --out docs/completions && cargo run -- man --out docs/man`"
        );
    }

    #[test]
    fn every_shell_completes_every_command() {
        let files = completion_files(crate::Cli::command());
        for (name, script) in &files {
            let script = String::from_utf8_lossy(script);
            for command in [
                "run",
                "send",
                "validate",
                "status",
                "parked",
                "trace",
                "completions",
                "man",
            ] {
                assert!(script.contains(command), "{name} lacks {command}");
            }
        }
    }

    #[test]
    fn the_pages_do_not_depend_on_the_machine() {
        let pages = man_pages(crate::Cli::command()).unwrap();
        let run = String::from_utf8_lossy(&pages["knactor-run.1"]);
        assert!(run.contains("the CPUs, at most 4"), "{run}");
        assert!(pages.contains_key("knactor-parked-list.1"));
        assert!(
            !pages.keys().any(|name| name.contains("help")),
            "{:?}",
            pages.keys()
        );
    }
}
