//! The command line of `zaiko-bench`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Closed-loop load: scenarios at several connection counts, each beside the
    /// `/healthz` ceiling of the same run, with stock accounting after every write
    /// scenario.
    Load(LoadArgs),
    /// Memory per SKU with many SKUs loaded, then the time to recover them on restart
    /// (needs --spawn).
    Capacity(CapacityArgs),
    /// Where recovery time goes on a stopped data dir: read, scan + CRC, decode, apply.
    ReplayProfile(ReplayProfileArgs),
    /// A sale start for the last units: many clients reserve one unit each of a SKU
    /// with few units, all at once; exactly the units must sell. Beside the same storm
    /// of `GET /healthz`.
    Storm(StormArgs),
    /// Bulk imports, the change feed and webhooks on a spawned server: live single
    /// changes alone, a stock import alone and under the live load, the feed's lag
    /// behind the import, webhook deliveries/s to a local receiver.
    Integrations(IntegrationsArgs),
    /// On a running cluster: the change feed's lag behind acknowledged writes before
    /// and after the owner of a brand's partition is killed -9 under a write load.
    Failover(FailoverArgs),
}

/// Which server to measure.
#[derive(Args)]
pub struct TargetArgs {
    /// URL of a running server, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "spawn", required_unless_present = "spawn")]
    pub url: Option<String>,
    /// The admin token of that server (generated when spawning).
    #[arg(long, env = "ZAIKO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Pid of the server given by --url, for its RSS from /proc.
    #[arg(long, requires = "url")]
    pub server_pid: Option<u32>,
    /// Start `zaiko serve` on a fresh data dir under --data-root.
    #[arg(long)]
    pub spawn: bool,
    /// The server binary --spawn starts [default: `zaiko` beside this binary, where
    /// `cargo build --release` puts it].
    #[arg(long, env = "ZAIKO_SERVER_BIN", hide_env_values = true)]
    pub server_bin: Option<PathBuf>,
    /// Where the spawned server's data dir goes (must be the disk you mean to measure).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub data_root: PathBuf,
    /// Extra argument for the spawned `zaiko serve` (repeat), e.g. --serve-arg=--wal-commit-delay-us=200.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    /// Environment variable for the spawned server only (repeat), e.g.
    /// --serve-env=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2.
    #[arg(long = "serve-env", value_parser = parse_key_value)]
    pub serve_env: Vec<(String, String)>,
    /// Keep the spawned server's data dir.
    #[arg(long)]
    pub keep_data: bool,
}

/// What a result file records of the token: that there was one.
const REDACTED: &str = "<redacted>";

/// The settings go into every result file: without the admin token.
impl std::fmt::Debug for TargetArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetArgs")
            .field("url", &self.url)
            .field("admin_token", &self.admin_token.as_ref().map(|_| REDACTED))
            .field("server_pid", &self.server_pid)
            .field("spawn", &self.spawn)
            .field("server_bin", &self.server_bin)
            .field("data_root", &self.data_root)
            .field("serve_args", &self.serve_args)
            .field("serve_env", &self.serve_env)
            .field("keep_data", &self.keep_data)
            .finish()
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    Ok((k.to_string(), v.to_string()))
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Scenarios, comma-separated: single-change, batch-100, batch-1000, mixed,
    /// reserve-1, reserve-5, search, spike, channels-1, channels-5 (healthz runs
    /// beside each anyway).
    #[arg(long, value_delimiter = ',', default_value = "single-change,batch-100,mixed")]
    pub scenarios: Vec<String>,
    /// Connection counts, comma-separated; each scenario runs at each.
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    pub connections: Vec<usize>,
    /// Measured seconds per scenario run.
    #[arg(long, default_value_t = 15)]
    pub duration_s: u64,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 3)]
    pub warmup_s: u64,
    /// Runs of the whole matrix (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Brands in the fixture.
    #[arg(long, default_value_t = 4)]
    pub brands: usize,
    /// SKUs per brand.
    #[arg(long, default_value_t = 5000)]
    pub skus_per_brand: usize,
    /// Locations every SKU has stock at.
    #[arg(long, default_value_t = 3)]
    pub locations: usize,
    /// Client (tokio) threads.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// JSON result file [default: target/zaiko-bench/load-<unix time>.json].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A cluster's other nodes (repeat; with --url): each brand's requests then go to
    /// the node that owns its partition (a partitioned load, nothing forwarded), the
    /// others (`/healthz`) spread over every node by connection.
    #[arg(long = "route-url", requires = "url")]
    pub route_urls: Vec<String>,
    /// Processes whose CPU over each window is reported together (repeat), e.g. every
    /// zaiko node and nats-server of a cluster.
    #[arg(long = "cpu-pid")]
    pub cpu_pids: Vec<u32>,
    /// A quick smoke run: 1 run, 5 s + 1 s warm-up, 64 connections, 2 brands × 1000 SKUs.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Args)]
pub struct CapacityArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// SKUs to create (PUT), spread over the brands.
    #[arg(long, default_value_t = 1_000_000)]
    pub skus: usize,
    /// Brands the SKUs are spread over.
    #[arg(long, default_value_t = 10)]
    pub brands: usize,
    /// Locations every SKU gets stock at.
    #[arg(long, default_value_t = 3)]
    pub locations: usize,
    /// WAL records to reach in total before the restart; the rest after the SKUs and
    /// stock are single-change requests.
    #[arg(long, default_value_t = 5_000_000)]
    pub records: u64,
    /// Connections used to load.
    #[arg(long, default_value_t = 128)]
    pub connections: usize,
    /// Client (tokio) threads.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Also profile the replay of the data dir offline after the restart.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub replay_profile: bool,
    /// JSON result file [default: target/zaiko-bench/capacity-<unix time>.json].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A quick run: 100,000 SKUs and 500,000 records.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Args)]
pub struct StormArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Clients, each reserving one unit once.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Units of the SKU, split over two locations.
    #[arg(long, default_value_t = 100)]
    pub units: u64,
    /// Connections the clients' requests go over, opened before the storm (one per
    /// client by default, at most --clients).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Storms, each on a fresh brand (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Client (tokio) threads.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// JSON result file [default: target/zaiko-bench/storm-<unix time>.json].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplayProfileArgs {
    /// A data dir no server is running on.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Evict the segments from the page cache first (posix_fadvise DONTNEED) so the
    /// read is from disk.
    #[arg(long)]
    pub cold: bool,
}

#[derive(Debug, Args)]
pub struct IntegrationsArgs {
    /// Rows of each stock import.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// SKUs of the catalog import first made; the stock rows cycle over them.
    #[arg(long, default_value_t = 100_000)]
    pub skus: usize,
    /// Closed-loop live clients, each sending one single stock change at a time.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seconds the live clients run alone, before the imports.
    #[arg(long, default_value_t = 10)]
    pub live_seconds: u64,
    /// Events of the import whose webhook deliveries are timed.
    #[arg(long, default_value_t = 100_000)]
    pub webhook_rows: usize,
    /// The server binary to start [default: `zaiko` beside this binary, where
    /// `cargo build --release` puts it].
    #[arg(long, env = "ZAIKO_SERVER_BIN", hide_env_values = true)]
    pub server_bin: Option<PathBuf>,
    /// Where the server's temporary data dir goes (must be the disk you mean to measure).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub data_root: PathBuf,
}

#[derive(Args)]
pub struct FailoverArgs {
    /// A node of the cluster as URL=PID (repeat; at least two), e.g.
    /// http://127.0.0.1:18081=4242. The owner of the brand's partition is killed by
    /// its pid; the feed is read from another node.
    #[arg(long = "node", required = true)]
    pub nodes: Vec<String>,
    /// The cluster's admin token.
    #[arg(long, env = "ZAIKO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Closed-loop writers, each sending one single stock change at a time.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Seconds of load before the owner is killed.
    #[arg(long, default_value_t = 10)]
    pub before_s: u64,
    /// Seconds of load after it.
    #[arg(long, default_value_t = 20)]
    pub after_s: u64,
    /// JSON result file [default: target/zaiko-bench/failover-<unix time>.json].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl std::fmt::Debug for FailoverArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverArgs")
            .field("nodes", &self.nodes)
            .field("admin_token", &REDACTED)
            .field("writers", &self.writers)
            .field("before_s", &self.before_s)
            .field("after_s", &self.after_s)
            .field("out", &self.out)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: BenchCommand,
    }

    #[test]
    fn the_settings_a_result_file_records_leave_the_admin_token_out() {
        for argv in [
            vec!["zaiko-bench", "load", "--url", "http://127.0.0.1:1", "--admin-token", "secret-token-0123456789"],
            vec!["zaiko-bench", "failover", "--node", "http://a:1=1", "--node", "http://b:2=2", "--admin-token", "secret-token-0123456789"],
        ] {
            let settings = match Cli::parse_from(argv).command {
                BenchCommand::Load(a) => format!("{a:?}"),
                BenchCommand::Failover(a) => format!("{a:?}"),
                _ => unreachable!(),
            };
            assert!(!settings.contains("secret-token") && settings.contains(REDACTED), "{settings}");
        }
    }
}
