//! One module per subcommand.

pub mod admin;
pub mod crdgen;
pub mod display;
pub mod run;
pub mod send;
pub mod validate;

/// Logs to stderr at `level` (a `RUST_LOG`-style filter), unless `RUST_LOG` says otherwise.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for people: not in files, pipes or a cluster's log collector.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Threads worth using by default: the machine's, up to four.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}
