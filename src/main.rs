//! `knactor`: the command line. Wiring only; the mesh lives in `knactor-actors` and
//! `knactor-gateway`.

// Whatever is `pub` is reachable from outside the crate; the rest says pub(crate).
#![warn(unreachable_pub)]
// Every public type can be printed with `{:?}`: in a log line, a test failure, a caller's own Debug.
#![warn(missing_debug_implementations)]

mod cli;
mod config;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

/// jemalloc instead of the C library's malloc, as vector does: a delivered event makes about
/// sixty allocations (many freed on another thread than the one that made them); glibc's malloc
/// and free took 15,800 of a node's 102,000 instructions per event, jemalloc's take 8,400
/// (`benches/instructions.rs`). mimalloc did as well in instructions but kept 25 MiB more
/// resident after a load; jemalloc as little as glibc. Its options are built in from
/// `.cargo/config.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// knactor: an eventing mesh that speaks Knative Eventing.
#[derive(Parser)]
#[command(
    after_help = "Errors are one line on standard error and a non-zero exit (2: invalid \
    arguments). status, parked, trace and validate print JSON or YAML with -o json|yaml; the \
    fields are in docs/cli.md."
)]
#[command(
    name = "knactor",
    version,
    about = "An eventing mesh that speaks Knative Eventing: brokers, triggers, CloudEvents over HTTP",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of `run`'s flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a node: the broker ingress and the broker, trigger and subscriber actors.
    Run(cli::run::RunArgs),
    /// Run an event-display sink that prints every CloudEvent it receives, like Knative's.
    Display(cli::display::DisplayArgs),
    /// Send CloudEvents to a URL (a broker ingress, a subscriber...).
    Send(cli::send::SendArgs),
    /// Check resource files without running them; exits non-zero when one is refused.
    Validate(cli::validate::ValidateArgs),
    /// Show what a running node runs, and what it does not and why.
    Status(cli::admin::StatusArgs),
    /// List or re-drive a broker's parked events on a running node.
    Parked(cli::admin::ParkedArgs),
    /// Where did my event go: the hops and outcomes a running node recorded for one event.
    Trace(cli::trace::TraceArgs),
    /// Write the custom resource definitions (generated from the Rust types), or check a copy.
    Crdgen(cli::crdgen::CrdgenArgs),
    /// Print shell completions (bash, zsh, fish), or write or check them in a directory.
    Completions(cli::completions::CompletionsArgs),
    /// Print the manual page, or write or check one page per command in a directory.
    Man(cli::completions::ManArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                error.exit();
            }
            // One line, like every other error of the CLI.
            let rendered = error.render().to_string();
            eprintln!(
                "{}",
                rendered
                    .lines()
                    .next()
                    .unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Display(args) => cli::display::run(args),
        Command::Send(args) => cli::send::run(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Status(args) => cli::admin::status(args),
        Command::Parked(args) => cli::admin::parked(args),
        Command::Crdgen(args) => cli::crdgen::run(args),
        Command::Trace(args) => cli::trace::run(args),
        Command::Completions(args) => cli::completions::completions(args, Cli::command()),
        Command::Man(args) => cli::completions::man(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // One line: the error and its causes.
            let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
