//! Command line and configuration: flags > environment (`ZAIKO_*`) > defaults.
//! Every knob is validated here, at start, with a message that says what to change.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::Timestamp;
use crate::http::Limits;
use crate::journal::{FailureAction, FaultPlan, JournalConfig};

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
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Check every record of every segment; print where any damage is. Exit status 0
    /// when the journal would open (a torn tail is cut on start), 1 on corruption.
    Verify {
        #[arg(long, env = "ZAIKO_DATA_DIR", default_value = "./zaiko-data")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ZAIKO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Directory for the journal, snapshots and index.
    #[arg(long, env = "ZAIKO_DATA_DIR", default_value = "./zaiko-data")]
    pub data_dir: PathBuf,
    /// The admin token. If unset on first start, one is generated, its hash stored,
    /// and the token printed once to stderr.
    #[arg(long, env = "ZAIKO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Load the sample data of `data/` into an empty data dir.
    #[arg(long)]
    pub demo: bool,
    /// Log format.
    #[arg(long, env = "ZAIKO_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Shard actors (one thread each) [default: number of cores].
    #[arg(long, env = "ZAIKO_SHARDS")]
    pub shards: Option<usize>,
    /// HTTP worker threads [default: number of cores].
    #[arg(long, env = "ZAIKO_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// Bound of each actor's mailbox; a full mailbox answers 503 `overloaded`.
    #[arg(long, env = "ZAIKO_MAILBOX_CAPACITY", default_value_t = crate::actors::shard::MAILBOX_CAPACITY_DEFAULT)]
    pub mailbox_capacity: usize,
    /// Largest JSON request body in bytes (413 past it).
    #[arg(long, env = "ZAIKO_BODY_BYTES_MAX", default_value_t = Limits::default().body_bytes_max)]
    pub body_bytes_max: usize,
    /// Size of a WAL segment file in bytes (preallocated).
    #[arg(long, env = "ZAIKO_WAL_SEGMENT_BYTES", default_value_t = JournalConfig::default().segment_bytes)]
    pub wal_segment_bytes: u64,
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
    /// Test hook: run on a clock that only moves through `POST /v1/admin/clock`,
    /// starting at this RFC 3339 time.
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
}

/// The validated configuration of `zaiko serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub demo: bool,
    pub log_format: LogFormat,
    pub shards: usize,
    pub http_workers: usize,
    pub mailbox_capacity: usize,
    pub limits: Limits,
    pub journal: JournalConfig,
    pub manual_clock: Option<Timestamp>,
    /// The change feed, webhooks and imports.
    pub integration: crate::integration::IntegrationConfig,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl ServeArgs {
    pub fn resolve(&self) -> Result<ServeConfig, String> {
        let shards = self.shards.unwrap_or_else(cores);
        if !(1..=256).contains(&shards) {
            return Err(format!("--shards must be 1..=256, got {shards}"));
        }
        let http_workers = self.http_workers.unwrap_or_else(cores);
        if !(1..=256).contains(&http_workers) {
            return Err(format!("--http-workers must be 1..=256, got {http_workers}"));
        }
        if !(16..=1 << 20).contains(&self.mailbox_capacity) {
            return Err(format!("--mailbox-capacity must be 16..=1048576, got {}", self.mailbox_capacity));
        }
        if !(1024..=64 << 20).contains(&self.body_bytes_max) {
            return Err(format!("--body-bytes-max must be 1 KiB..=64 MiB, got {}", self.body_bytes_max));
        }
        if let Some(t) = &self.admin_token {
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
            on_failure: FailureAction::Abort,
            faults: FaultPlan {
                fail_fsync_after: self.fault_fsync_fail_after,
                fail_write_after: self.fault_write_fail_after,
                fsync_delay: Duration::from_millis(self.fault_fsync_delay_ms.unwrap_or(0)),
                enospc_while_exists: self.fault_enospc_file.clone(),
            },
            ..JournalConfig::default()
        };
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
        let manual_clock = match &self.manual_clock {
            None => None,
            Some(s) => Some(Timestamp::parse_rfc3339(s).ok_or_else(|| format!("--manual-clock: {s:?} is not an RFC 3339 time"))?),
        };
        Ok(ServeConfig {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            admin_token: self.admin_token.clone(),
            demo: self.demo,
            log_format: self.log_format,
            shards,
            http_workers,
            mailbox_capacity: self.mailbox_capacity,
            limits: Limits { body_bytes_max: self.body_bytes_max, ..Limits::default() },
            journal,
            manual_clock,
            integration: self.integration.resolve()?,
        })
    }
}
