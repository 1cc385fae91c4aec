//! The `zaiko-bench` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use zaiko_bench::args::BenchCommand;

/// The server's allocator (jemalloc, see the server's `src/main.rs`), so that
/// `replay-profile` measures the state in memory as the server holds it.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "zaiko-bench",
    version,
    about = "Load harness for zaiko: throughput and latency beside the server's own ceiling, capacity and recovery, the sale-start storm, imports/feed/webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

fn main() -> ExitCode {
    zaiko_bench::run(Cli::parse().command)
}
