//! Command line and configuration: flags > environment (`ZAIKO_*`) > defaults.
//! Every knob is validated here, at start, with a message that says what to change.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::event::RECORD_BYTES_MAX_FLOOR;
use crate::domain::Timestamp;
use crate::journal::{FailureAction, FaultPlan, JournalConfig};

/// Request limits. Each is a named bound with a documented default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON body accepted (413 past it).
    pub body_bytes_max: usize,
    /// Most changes in one `stock/changes` request.
    pub changes_max: usize,
    /// Sustained requests per second per brand (token bucket), and the burst above it.
    pub brand_rps: u32,
    pub brand_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { body_bytes_max: 1 << 20, changes_max: 1000, brand_rps: 5000, brand_burst: 10_000 }
    }
}

#[derive(Debug, Parser)]
#[command(name = "zaiko", version, about = "zaiko (在庫): inventory and fulfilment-sync service")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Inspect the write-ahead log.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Upload a CSV or NDJSON file as an import job and follow it to its end.
    Import(crate::imports::client::ImportArgs),
    /// Create, list and restore snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Maintain the search index.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Look at a cluster (`serve --cluster`).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The nodes and the partitions' owners as one node sees them; exits 1 while a
    /// partition has no live owner, 2 when the node cannot be asked.
    Status(crate::cluster::status::StatusArgs),
    /// Drains a node before maintenance: its partitions are handed over one after the
    /// other; waits until it owns none (exit 0) or the wait runs out (exit 1). With
    /// --undo the node takes its share again.
    Drain(crate::cluster::status::DrainArgs),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Build a snapshot of a stopped data dir at its last journal record (on a running
    /// server use `POST /v1/admin/snapshots`).
    Create {
        #[arg(long, env = "ZAIKO_DATA_DIR", default_value = "./zaiko-data")]
        data_dir: PathBuf,
    },
    /// List the snapshots of a data dir (id, LSN, size, time, file), or with --cluster
    /// the partition snapshots stored in a cluster.
    List {
        #[arg(long, env = "ZAIKO_DATA_DIR", default_value = "./zaiko-data")]
        data_dir: PathBuf,
        /// A cluster's NATS URLs (comma-separated): list its partition snapshots instead.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Check a snapshot file — or with --cluster every partition's newest snapshot of a
    /// cluster, merged — and install it into an empty data dir; a server started on that
    /// dir has exactly the state of the snapshot.
    Restore {
        /// The snapshot file.
        #[arg(long, required_unless_present = "cluster", conflicts_with = "cluster")]
        from: Option<PathBuf>,
        /// A cluster's NATS URLs (comma-separated): restore its newest partition snapshots.
        #[arg(long)]
        cluster: Option<String>,
        /// The new, empty data dir.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Rebuild the SKU search index from the state in the journal (offline: the
    /// server must be stopped). The server also rebuilds a missing index on start.
    Rebuild {
        #[arg(long, env = "ZAIKO_DATA_DIR", default_value = "./zaiko-data")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Check every record of every segment; print where any damage is. Exit status 0
    /// when the journal would open (a torn tail is cut on start), 1 on corruption.
    Verify {
        #[arg(long, env = "ZAIKO_DATA_DIR", default_value = "./zaiko-data")]
        data_dir: PathBuf,
    },
    /// Cut the journal at its first damaged record so the server can start with
    /// everything before it. Records from the damage on are lost: the damaged segment
    /// is copied aside and later segments are moved to `wal/quarantine-<time>/` first.
    /// Run it only on a stopped server, after `wal verify`, and only if no snapshot
    /// covers what you need (restoring one loses less).
    Repair {
        #[arg(long, env = "ZAIKO_DATA_DIR", default_value = "./zaiko-data")]
        data_dir: PathBuf,
        /// Required: say that you accept losing the records from the damage on.
        #[arg(long)]
        accept_data_loss: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file of settings, keyed like the flags (`listen = "0.0.0.0:8080"`,
    /// `wal_segment_bytes = 67108864`). Flags and `ZAIKO_*` variables override it.
    #[arg(long, env = "ZAIKO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "ZAIKO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Directory for the journal, snapshots and index.
    #[arg(long, env = "ZAIKO_DATA_DIR", default_value = "./zaiko-data")]
    pub data_dir: PathBuf,
    /// The admin token. If unset on first start, one is generated, its hash stored,
    /// and the token printed once to stderr. A flag is visible to other users in `ps`:
    /// prefer `--admin-token-file` or the variable.
    #[arg(long, env = "ZAIKO_ADMIN_TOKEN", hide_env_values = true, conflicts_with = "admin_token_file")]
    pub admin_token: Option<String>,
    /// A file whose first line is the admin token (keep it readable by this user only).
    #[arg(long, env = "ZAIKO_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Load the sample data of `data/` into an empty data dir.
    #[arg(long, env = "ZAIKO_DEMO")]
    pub demo: bool,
    /// Serve `/metrics` on this address (e.g. an internal interface) instead of on `--listen`.
    #[arg(long, env = "ZAIKO_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Log format.
    #[arg(long, env = "ZAIKO_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Shard actors (one thread each) [default: half the cores, at least 1].
    #[arg(long, env = "ZAIKO_SHARDS")]
    pub shards: Option<usize>,
    /// HTTP worker threads [default: number of cores].
    #[arg(long, env = "ZAIKO_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// Open client connections at most, over all HTTP workers; past it new connections
    /// wait in the listen backlog [default: what the open-file limit allows after the
    /// descriptors kept for files, at most 10000 per worker]. A value above what the
    /// limit allows is lowered to it, with a warning.
    #[arg(long, env = "ZAIKO_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Bound of each actor's mailbox; a full mailbox answers 503 `overloaded`.
    #[arg(long, env = "ZAIKO_MAILBOX_CAPACITY", default_value_t = crate::actors::shard::MAILBOX_CAPACITY_DEFAULT)]
    pub mailbox_capacity: usize,
    /// Largest JSON request body in bytes (413 past it).
    #[arg(long, env = "ZAIKO_BODY_BYTES_MAX", default_value_t = Limits::default().body_bytes_max)]
    pub body_bytes_max: usize,
    /// Sustained requests per second allowed per brand (429 past it, with Retry-After).
    #[arg(long, env = "ZAIKO_BRAND_RPS", default_value_t = Limits::default().brand_rps)]
    pub brand_rps: u32,
    /// Burst of requests a brand may send above its sustained rate.
    #[arg(long, env = "ZAIKO_BRAND_BURST", default_value_t = Limits::default().brand_burst)]
    pub brand_burst: u32,
    /// Size of a WAL segment file in bytes (preallocated).
    #[arg(long, env = "ZAIKO_WAL_SEGMENT_BYTES", default_value_t = JournalConfig::default().segment_bytes)]
    pub wal_segment_bytes: u64,
    /// Largest journal record in bytes (one request's changes; a request whose change
    /// would be larger is refused with 413), 64 KiB..=16 MiB; a segment holds at least two.
    #[arg(long, env = "ZAIKO_WAL_RECORD_BYTES_MAX", default_value_t = JournalConfig::default().record_bytes_max)]
    pub wal_record_bytes_max: usize,
    /// Most records written with one fdatasync.
    #[arg(long, env = "ZAIKO_WAL_BATCH_RECORDS_MAX", default_value_t = JournalConfig::default().batch_records_max)]
    pub wal_batch_records_max: usize,
    /// Most bytes written with one fdatasync.
    #[arg(long, env = "ZAIKO_WAL_BATCH_BYTES_MAX", default_value_t = JournalConfig::default().batch_bytes_max)]
    pub wal_batch_bytes_max: usize,
    /// Extra wait for more records before each fdatasync, in microseconds (0: take
    /// what queued during the previous fdatasync).
    #[arg(long, env = "ZAIKO_WAL_COMMIT_DELAY_US", default_value_t = 0)]
    pub wal_commit_delay_us: u64,
    /// Most bytes queued for the WAL writer; appends past it answer 503 `overloaded`.
    #[arg(long, env = "ZAIKO_WAL_QUEUE_BYTES_MAX", default_value_t = JournalConfig::default().queue_bytes_max)]
    pub wal_queue_bytes_max: usize,
    /// Take a snapshot after this many journal records (0: never by count).
    #[arg(long, env = "ZAIKO_SNAPSHOT_EVERY_RECORDS", default_value_t = 1_000_000)]
    pub snapshot_every_records: u64,
    /// Take a snapshot after this many minutes with changes (0: never by time).
    #[arg(long, env = "ZAIKO_SNAPSHOT_EVERY_MINUTES", default_value_t = 60)]
    pub snapshot_every_minutes: u64,
    /// How many snapshots to keep; journal segments before the oldest kept are deleted.
    #[arg(long, env = "ZAIKO_SNAPSHOTS_KEEP", default_value_t = 3)]
    pub snapshots_keep: usize,
    /// Longest time between search index commits, in milliseconds: how stale a search
    /// without `min_lsn` may be. A search with `min_lsn` triggers a commit at once.
    #[arg(long, env = "ZAIKO_INDEX_COMMIT_INTERVAL_MS", default_value_t = crate::index::indexer::COMMIT_INTERVAL_DEFAULT.as_millis() as u64)]
    pub index_commit_interval_ms: u64,
    /// A file of search synonyms added to the shipped ones: one group per line, terms
    /// separated by commas, `#` comments (docs/api-v1.md, "Search"). A bad file stops
    /// the start with the line that is wrong.
    #[arg(long, env = "ZAIKO_SEARCH_SYNONYMS")]
    pub search_synonyms: Option<PathBuf>,
    /// Test hook: run on a clock that only moves through `POST /v1/admin/clock`,
    /// starting at this RFC 3339 time. In cluster mode each node has its own (the
    /// records' times and the feed's retention; leases and heartbeats keep real time):
    /// a test moves every node's.
    #[arg(long, env = "ZAIKO_MANUAL_CLOCK", hide = true)]
    pub manual_clock: Option<String>,
    /// Test hook: fail the fsync after this many successful ones.
    #[arg(long, env = "ZAIKO_FAULT_FSYNC_FAIL_AFTER", hide = true)]
    pub fault_fsync_fail_after: Option<u64>,
    /// Test hook: fail the write after this many successful ones.
    #[arg(long, env = "ZAIKO_FAULT_WRITE_FAIL_AFTER", hide = true)]
    pub fault_write_fail_after: Option<u64>,
    /// Test hook: add this many milliseconds to every fsync.
    #[arg(long, env = "ZAIKO_FAULT_FSYNC_DELAY_MS", hide = true)]
    pub fault_fsync_delay_ms: Option<u64>,
    /// Test hook: while this file exists, new WAL segments cannot be allocated (ENOSPC).
    #[arg(long, env = "ZAIKO_FAULT_ENOSPC_FILE", hide = true)]
    pub fault_enospc_file: Option<PathBuf>,
    #[command(flatten)]
    pub integration: crate::integration::IntegrationArgs,
    #[command(flatten)]
    pub cluster: crate::cluster::config::ClusterArgs,
}

/// Parses the command line with configuration-file support: flags > `ZAIKO_*`
/// environment > the TOML file of `--config` > defaults.
///
/// clap already merges flags over environment over defaults. A setting from the file is
/// added as a flag only where clap says the value came from a default (or nowhere), and
/// the command line is parsed again; so the file can never override a flag or a
/// variable. Unknown keys in the file are an error, not silently ignored.
pub fn parse_cli(argv: Vec<std::ffi::OsString>) -> Result<Cli, CliError> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command();
    let matches = cmd.clone().try_get_matches_from(&argv)?;
    let Some(("serve", serve)) = matches.subcommand() else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let Some(path) = serve.get_one::<PathBuf>("config") else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Config(format!("cannot read --config {}: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e| CliError::Config(format!("--config {}: {e}", path.display())))?;
    let serve_cmd = cmd.find_subcommand("serve").expect("serve exists");
    let mut extra = Vec::new();
    for (key, value) in table {
        let Some(arg) = serve_cmd.get_arguments().find(|a| a.get_id() == key.as_str() && a.get_long().is_some()) else {
            return Err(CliError::Config(format!(
                "--config {}: unknown setting {key:?}; settings are the flag names with underscores",
                path.display()
            )));
        };
        if key == "config" {
            return Err(CliError::Config(format!("--config {}: a config file cannot name another", path.display())));
        }
        if !matches!(serve.value_source(&key), None | Some(ValueSource::DefaultValue)) {
            continue;
        }
        let long = arg.get_long().expect("checked above");
        match value {
            toml::Value::Boolean(true) => extra.push(format!("--{long}")),
            toml::Value::Boolean(false) => {}
            toml::Value::String(v) => extra.push(format!("--{long}={v}")),
            toml::Value::Integer(v) => extra.push(format!("--{long}={v}")),
            other => {
                return Err(CliError::Config(format!(
                    "--config {}: {key} must be a string, integer or boolean, not {}",
                    path.display(),
                    other.type_str()
                )))
            }
        }
    }
    let mut argv = argv;
    argv.extend(extra.into_iter().map(Into::into));
    let matches = cmd.try_get_matches_from(&argv)?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// Why the command line could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// clap's own errors, and `--help`/`--version` (which it prints and exits 0 for).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error("{0}")]
    Config(String),
}

/// The validated configuration of `zaiko serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    /// Where `/metrics` is served, when not on `listen`.
    pub metrics_listen: Option<String>,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub demo: bool,
    pub log_format: LogFormat,
    pub shards: usize,
    pub http_workers: usize,
    /// `--max-connections` as given; the bound in force also depends on the open-file
    /// limit (`fdlimit::connection_cap`).
    pub max_connections: Option<usize>,
    pub mailbox_capacity: usize,
    pub limits: Limits,
    pub journal: JournalConfig,
    pub manual_clock: Option<Timestamp>,
    /// The change feed, webhooks and imports.
    pub integration: crate::integration::IntegrationConfig,
    pub snapshot_every_records: u64,
    pub snapshot_every: Option<Duration>,
    pub snapshots_keep: usize,
    pub index_commit_interval: Duration,
    /// The shipped search synonyms and those of `--search-synonyms`.
    pub search_synonyms: std::sync::Arc<crate::index::synonyms::Synonyms>,
    /// Cluster mode (`--cluster`); `None` for the single node.
    pub cluster: Option<crate::cluster::config::ClusterConfig>,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Shard threads by default: one per two cores. Deciding and applying a command is a
/// small share of a write's CPU (the HTTP stack, the journal and the index take the
/// rest), and a shard thread per core left the cores switching between more runnable
/// threads than they have: on 2 cores at 256 connections, one shard took 15 % less CPU
/// per single change than two and answered 18 % more; at 64 connections it answered
/// ~9 % fewer (BENCHMARKS.md, "How many shards").
fn default_shards() -> usize {
    (cores() / 2).max(1)
}

/// The admin token from `--admin-token-file`: its first line, without the line end.
fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read --admin-token-file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(format!("--admin-token-file {} is empty; write the token on its first line", path.display()));
    }
    Ok(token.to_string())
}

impl ServeArgs {
    pub fn resolve(&self) -> Result<ServeConfig, String> {
        let shards = self.shards.unwrap_or_else(default_shards);
        if !(1..=256).contains(&shards) {
            return Err(format!("--shards must be 1..=256, got {shards}"));
        }
        let http_workers = self.http_workers.unwrap_or_else(cores);
        if !(1..=256).contains(&http_workers) {
            return Err(format!("--http-workers must be 1..=256, got {http_workers}"));
        }
        if let Some(n) = self.max_connections {
            if !(crate::fdlimit::CONNECTIONS_MIN..=1 << 20).contains(&n) {
                return Err(format!("--max-connections must be {}..=1048576, got {n}", crate::fdlimit::CONNECTIONS_MIN));
            }
        }
        if !(16..=1 << 20).contains(&self.mailbox_capacity) {
            return Err(format!("--mailbox-capacity must be 16..=1048576, got {}", self.mailbox_capacity));
        }
        if !(1024..=64 << 20).contains(&self.body_bytes_max) {
            return Err(format!("--body-bytes-max must be 1 KiB..=64 MiB, got {}", self.body_bytes_max));
        }
        if self.brand_rps == 0 || self.brand_burst < self.brand_rps {
            return Err(format!(
                "--brand-rps must be at least 1 and --brand-burst at least --brand-rps (got {} and {})",
                self.brand_rps, self.brand_burst
            ));
        }
        let admin_token = match &self.admin_token_file {
            Some(path) => Some(read_token_file(path)?),
            None => self.admin_token.clone(),
        };
        if let Some(t) = &admin_token {
            if t.len() < 16 {
                return Err("--admin-token must be at least 16 characters".into());
            }
        }
        let journal = JournalConfig {
            segment_bytes: self.wal_segment_bytes,
            batch_records_max: self.wal_batch_records_max.max(1),
            batch_bytes_max: self.wal_batch_bytes_max.max(1),
            commit_delay: Duration::from_micros(self.wal_commit_delay_us),
            queue_bytes_max: self.wal_queue_bytes_max,
            record_bytes_max: self.wal_record_bytes_max,
            on_failure: FailureAction::Abort,
            faults: FaultPlan {
                fail_fsync_after: self.fault_fsync_fail_after,
                fail_write_after: self.fault_write_fail_after,
                fsync_delay: Duration::from_millis(self.fault_fsync_delay_ms.unwrap_or(0)),
                enospc_while_exists: self.fault_enospc_file.clone(),
            },
            ..JournalConfig::default()
        };
        // Below the floor, a step the server writes on its own could not fit in a record.
        if !(RECORD_BYTES_MAX_FLOOR..=16 << 20).contains(&journal.record_bytes_max) {
            return Err(format!("--wal-record-bytes-max must be 64 KiB..=16 MiB, got {}", journal.record_bytes_max));
        }
        let min_segment = 2 * journal.record_bytes_max as u64 + 4096;
        if journal.segment_bytes < min_segment {
            return Err(format!("--wal-segment-bytes must be at least {min_segment}"));
        }
        if journal.commit_delay > Duration::from_millis(100) {
            return Err("--wal-commit-delay-us must be at most 100000 (100 ms)".into());
        }
        if journal.queue_bytes_max < journal.record_bytes_max {
            return Err(format!("--wal-queue-bytes-max must be at least {}", journal.record_bytes_max));
        }
        if !(1..=1000).contains(&self.snapshots_keep) {
            return Err(format!("--snapshots-keep must be 1..=1000, got {}", self.snapshots_keep));
        }
        if !(10..=60_000).contains(&self.index_commit_interval_ms) {
            return Err(format!("--index-commit-interval-ms must be 10..=60000, got {}", self.index_commit_interval_ms));
        }
        let search_synonyms = match &self.search_synonyms {
            Some(path) => crate::index::synonyms::Synonyms::load(path).map_err(|e| e.to_string())?,
            None => crate::index::synonyms::Synonyms::shipped(),
        };
        let cluster = self.cluster.resolve()?;
        if cluster.is_some() {
            if admin_token.is_none() {
                return Err("cluster mode needs the same --admin-token (or --admin-token-file) on every node".into());
            }
            if self.demo {
                return Err("--demo runs on a single node; start it without --cluster".into());
            }
        }
        let manual_clock = match &self.manual_clock {
            None => None,
            Some(s) => Some(Timestamp::parse_rfc3339(s).ok_or_else(|| format!("--manual-clock: {s:?} is not an RFC 3339 time"))?),
        };
        Ok(ServeConfig {
            listen: self.listen.clone(),
            metrics_listen: self.metrics_listen.clone(),
            data_dir: self.data_dir.clone(),
            admin_token,
            demo: self.demo,
            log_format: self.log_format,
            shards,
            http_workers,
            max_connections: self.max_connections,
            mailbox_capacity: self.mailbox_capacity,
            limits: Limits {
                body_bytes_max: self.body_bytes_max,
                brand_rps: self.brand_rps,
                brand_burst: self.brand_burst,
                ..Limits::default()
            },
            journal,
            manual_clock,
            integration: self.integration.resolve()?,
            snapshot_every_records: self.snapshot_every_records,
            snapshot_every: (self.snapshot_every_minutes > 0).then(|| Duration::from_secs(self.snapshot_every_minutes * 60)),
            snapshots_keep: self.snapshots_keep,
            index_commit_interval: Duration::from_millis(self.index_commit_interval_ms),
            search_synonyms: std::sync::Arc::new(search_synonyms),
            cluster,
        })
    }
}
