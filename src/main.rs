//! The `zaiko` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use zaiko::config::{parse_cli, CliError, ClusterCommand, Command, IndexCommand, SnapshotCommand, WalCommand};

/// jemalloc instead of glibc's malloc: the write path allocates per request on several
/// threads (HTTP workers, shards, the journal writer), and glibc spent ~12 % of their
/// CPU in malloc/free (its fastbin consolidation included) and kept more of the freed
/// heap resident. `BENCHMARKS.md` has the measurements. jemalloc is also the C
/// library's `malloc` (tikv-jemalloc-sys' unprefixed feature), so SQLite's memory is
/// in the same heap, its statistics and its purging.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`MALLOC_CONF` in the environment
/// overrides them): a background thread gives freed pages back to the kernel, and it
/// does so after 1 s unused instead of 10 s. Without the thread, pages are only
/// returned while the thread that freed them allocates again, so an idle server kept
/// the heap of its last burst resident. `BENCHMARKS.md` (capacity) has the measurements.
#[cfg(not(target_env = "msvc"))]
#[export_name = "malloc_conf"]
static MALLOC_CONF: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

fn main() -> ExitCode {
    let cli = match parse_cli(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(CliError::Clap(e)) => e.exit(),
        Err(CliError::Config(e)) => {
            eprintln!("zaiko: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve(args) => {
            let cfg = match args.resolve() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("zaiko: invalid configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            zaiko::telemetry::init(cfg.log_format);
            zaiko::telemetry::install_metrics();
            let listen_host = cfg.listen.rsplit_once(':').map_or("127.0.0.1".to_string(), |(h, _)| h.to_string());
            let result = actix_rt::System::new().block_on(async move {
                let app = zaiko::app::Application::build(cfg).await?;
                // One plain line on stdout, for people and for tests that bind port 0.
                zaiko::app::announce(&format!("zaiko listening on http://{}:{}", listen_host, app.port()));
                app.run().await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("zaiko: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Wal { command: WalCommand::Verify { data_dir } } => zaiko::cli::wal_verify(&data_dir),
        Command::Wal { command: WalCommand::Repair { data_dir, accept_data_loss } } => zaiko::cli::wal_repair(&data_dir, accept_data_loss),
        Command::Snapshot { command } => match command {
            SnapshotCommand::Create { data_dir } => zaiko::cli::snapshot_create(&data_dir),
            SnapshotCommand::List { cluster: Some(urls), .. } => zaiko::cli::cluster_snapshot_list(&urls),
            SnapshotCommand::List { data_dir, cluster: None } => zaiko::cli::snapshot_list(&data_dir),
            SnapshotCommand::Restore { cluster: Some(urls), data_dir, .. } => zaiko::cli::cluster_snapshot_restore(&urls, &data_dir),
            SnapshotCommand::Restore { from: Some(from), data_dir, .. } => zaiko::cli::snapshot_restore(&from, &data_dir),
            SnapshotCommand::Restore { .. } => unreachable!("clap requires --from or --cluster"),
        },
        Command::Index { command: IndexCommand::Rebuild { data_dir } } => {
            zaiko::telemetry::init(zaiko::config::LogFormat::Human);
            zaiko::cli::index_rebuild(&data_dir)
        }
        Command::Import(args) => zaiko::imports::client::run(&args),
        Command::Cluster { command: ClusterCommand::Status(args) } => zaiko::cluster::status::run(&args),
        Command::Cluster { command: ClusterCommand::Drain(args) } => zaiko::cluster::status::drain(&args),
    }
}
