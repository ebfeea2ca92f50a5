//! One module per subcommand.

pub mod admin;
pub mod crdgen;
pub mod display;
pub mod limits;
pub mod run;
pub mod send;
pub mod telemetry;
pub mod trace;
pub mod validate;

/// Threads worth using by default: the machine's, up to four.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}
