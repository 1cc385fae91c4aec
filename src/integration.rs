//! Wiring of what brand systems integrate through: the change feed, webhooks and
//! import jobs — their configuration (flags, environment, defaults) and start-up,
//! after recovery and before the server is ready.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::actors::Router;
use crate::clock::SharedClock;
use crate::domain::brand::BrandState;
use crate::domain::import::ImportSpec;
use crate::domain::webhook::Webhook;
use crate::domain::BrandId;
use crate::feed::{self, Feed, FeedConfig, Retention};
use crate::imports::{self, ImportConfig, Imports};
use crate::journal::Journal;
use crate::webhooks::{self, WebhookConfig, Webhooks};

/// How often feed events older than the retention are dropped.
const FEED_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Args)]
pub struct IntegrationArgs {
    /// Feed events are kept this many hours (a cursor older than that gets 410).
    #[arg(long, env = "ZAIKO_FEED_RETENTION_HOURS", default_value_t = feed::RETENTION_HOURS_DEFAULT)]
    pub feed_retention_hours: u64,
    /// At most this many feed events are kept per brand (the oldest go first).
    #[arg(long, env = "ZAIKO_FEED_RETENTION_EVENTS", default_value_t = feed::RETENTION_EVENTS_PER_BRAND_DEFAULT)]
    pub feed_retention_events: u64,
    /// Delays before each webhook retry (units ms, s, m, h); after the last the delivery is dead.
    #[arg(long, env = "ZAIKO_WEBHOOK_RETRY_SCHEDULE", default_value = webhooks::RETRY_SCHEDULE_DEFAULT)]
    pub webhook_retry_schedule: String,
    /// Deliveries taken from the feed and not finished, per webhook; the rest waits in the feed.
    #[arg(long, env = "ZAIKO_WEBHOOK_QUEUE_MAX", default_value_t = webhooks::QUEUE_MAX_DEFAULT)]
    pub webhook_queue_max: usize,
    /// Webhook attempts at once over all webhooks.
    #[arg(long, env = "ZAIKO_WEBHOOK_IN_FLIGHT_MAX", default_value_t = webhooks::IN_FLIGHT_MAX_DEFAULT)]
    pub webhook_in_flight_max: usize,
    /// Allow webhooks to loopback and private addresses (refused by default).
    #[arg(long, env = "ZAIKO_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Import rows each job applies per second at most (0: only the in-flight bound paces imports).
    #[arg(long, env = "ZAIKO_IMPORT_ROWS_PER_SECOND", default_value_t = 0)]
    pub import_rows_per_second: u64,
    /// Import rows per chunk (one actor message and one WAL record each; fewer while a
    /// chunk this large would be over --wal-record-bytes-max).
    #[arg(long, env = "ZAIKO_IMPORT_CHUNK_ROWS", default_value_t = imports::CHUNK_ROWS_DEFAULT)]
    pub import_chunk_rows: usize,
    /// Import chunks queued in the brand's shard mailbox at once: more keeps the shard
    /// busy through scheduling hiccups; each is time a live request of the brand may
    /// wait behind.
    #[arg(long, env = "ZAIKO_IMPORT_CHUNKS_IN_FLIGHT", default_value_t = imports::CHUNKS_IN_FLIGHT_DEFAULT)]
    pub import_chunks_in_flight: usize,
}

/// The validated settings.
#[derive(Debug, Clone)]
pub struct IntegrationConfig {
    pub retention: Retention,
    pub schedule: Vec<Duration>,
    pub webhook_queue_max: usize,
    pub webhook_in_flight_max: usize,
    pub webhook_allow_private: bool,
    pub import_rows_per_second: u64,
    pub import_chunk_rows: usize,
    pub import_chunks_in_flight: usize,
}

impl IntegrationArgs {
    pub fn resolve(&self) -> Result<IntegrationConfig, String> {
        if !(1..=24 * 366).contains(&self.feed_retention_hours) {
            return Err("--feed-retention-hours must be 1..=8784".into());
        }
        if self.feed_retention_events < 1 {
            return Err("--feed-retention-events must be at least 1".into());
        }
        let schedule = webhooks::parse_schedule(&self.webhook_retry_schedule).map_err(|e| format!("--webhook-retry-schedule: {e}"))?;
        if !(1..=100_000).contains(&self.webhook_queue_max) {
            return Err("--webhook-queue-max must be 1..=100000".into());
        }
        if !(1..=4096).contains(&self.webhook_in_flight_max) {
            return Err("--webhook-in-flight-max must be 1..=4096".into());
        }
        if !(1..=10_000).contains(&self.import_chunk_rows) {
            return Err("--import-chunk-rows must be 1..=10000".into());
        }
        if !(1..=64).contains(&self.import_chunks_in_flight) {
            return Err("--import-chunks-in-flight must be 1..=64".into());
        }
        Ok(IntegrationConfig {
            retention: Retention {
                max_age_ms: self.feed_retention_hours as i64 * 3_600_000,
                max_events_per_brand: self.feed_retention_events,
            },
            schedule,
            webhook_queue_max: self.webhook_queue_max,
            webhook_in_flight_max: self.webhook_in_flight_max,
            webhook_allow_private: self.webhook_allow_private,
            import_rows_per_second: self.import_rows_per_second,
            import_chunk_rows: self.import_chunk_rows,
            import_chunks_in_flight: self.import_chunks_in_flight,
        })
    }
}

/// Handles for the HTTP routes.
#[derive(Clone)]
pub struct Integrations {
    pub feed: Feed,
    pub webhooks: Webhooks,
    pub imports: Imports,
}

/// Unfinished import jobs of the recovered state, to resume.
pub fn pending_imports(brands: &HashMap<BrandId, BrandState>) -> Vec<(BrandId, ImportSpec)> {
    let mut v: Vec<(BrandId, ImportSpec)> =
        brands.values().flat_map(|b| b.pending_imports().into_iter().map(|s| (b.id.clone(), s.clone()))).collect();
    v.sort_by_key(|(_, s)| (s.created_at, s.id.clone()));
    v
}

/// The webhook subscriptions of the recovered state: what the feed's projection of
/// them starts from when a new journal history begins (after a restore, the journal
/// holds no record that created them).
pub fn subscriptions(brands: &HashMap<BrandId, BrandState>) -> Vec<(BrandId, Webhook)> {
    brands.values().flat_map(|b| b.webhooks.values().map(|w| (b.id.clone(), w.clone()))).collect()
}

/// Cluster mode's handles: the feed of every partition, the delivery of the webhooks
/// of the partitions this node owns, and the imports of their brands.
#[derive(Clone)]
pub struct ClusterIntegrations {
    pub feed: Feed,
    pub webhooks: Webhooks,
    pub imports: Imports,
    pub uploads: crate::cluster::imports::Uploads,
}

/// Cluster mode: starts building the change feed of every partition from the cluster's
/// journal (`feed::cluster`), reading on `runtime`, webhook delivery for the brands
/// whose partition this node owns (`cluster::webhooks`), and the import runner for
/// their jobs, which `resumes` hands it as partitions are taken over
/// (`cluster::imports`). Must run inside an actix `System`.
pub fn start_cluster(
    data_dir: &Path,
    cfg: &IntegrationConfig,
    node: &crate::cluster::node::Node,
    runtime: tokio::runtime::Handle,
    clock: SharedClock,
    router: Router,
    resumes: crate::cluster::imports::Resumes,
) -> anyhow::Result<ClusterIntegrations> {
    use crate::cluster::imports::{Resumer, Uploads};
    let feed_cfg = FeedConfig { path: data_dir.join("feed.sqlite"), retention: cfg.retention, prune_interval: FEED_PRUNE_INTERVAL };
    let feed = Feed::start_cluster(feed_cfg, node.engine.journal.clone(), runtime.clone(), clock, Some(node.purger.checkpoints.clone()))
        .context("cannot start the change feed")?;
    let handover = crate::cluster::webhooks::KvHandover { node: node.clone(), kv: node.engine.webhooks.clone() };
    let webhooks = Webhooks::start(webhook_config(data_dir, cfg), feed.clone(), Some(std::sync::Arc::new(handover)))
        .context("cannot start webhook delivery")?;
    let (imports, jobs) = Imports::new(import_config(data_dir, cfg)).context("cannot create the imports directory")?;
    let uploads = Uploads::new(node.engine.imports.clone());
    let on_ended: imports::OnEnded = {
        let (uploads, runtime) = (uploads.clone(), runtime.clone());
        std::sync::Arc::new(move |brand: &BrandId, file: &str| {
            let (uploads, brand, file) = (uploads.clone(), brand.clone(), file.to_string());
            runtime.spawn(async move { uploads.delete(&brand, &file).await });
        })
    };
    // No partition is served yet: files left by an earlier run go, and each job comes
    // back with its partition.
    imports.start_runner(jobs, router, Vec::new(), Some(on_ended)).context("cannot start the import runner")?;
    Resumer { resumes, uploads: uploads.clone(), imports: imports.clone(), runtime }.start().context("cannot start the import resumer")?;
    Ok(ClusterIntegrations { feed, webhooks, imports, uploads })
}

fn import_config(data_dir: &Path, cfg: &IntegrationConfig) -> ImportConfig {
    ImportConfig {
        dir: data_dir.join("imports"),
        rows_per_second: cfg.import_rows_per_second,
        chunk_rows: cfg.import_chunk_rows,
        chunk_bytes: imports::CHUNK_BYTES_MAX,
        chunks_in_flight: cfg.import_chunks_in_flight,
    }
}

fn webhook_config(data_dir: &Path, cfg: &IntegrationConfig) -> WebhookConfig {
    WebhookConfig {
        path: data_dir.join("webhooks.sqlite"),
        schedule: cfg.schedule.clone(),
        timeout: webhooks::ATTEMPT_TIMEOUT,
        queue_max: cfg.webhook_queue_max,
        lanes: webhooks::LANES_DEFAULT,
        in_flight_max: cfg.webhook_in_flight_max,
        allow_private: cfg.webhook_allow_private,
    }
}

/// Starts the feed thread, the webhook manager and the import runner. Must run inside
/// an actix `System`, after recovery.
pub fn start(
    data_dir: &Path,
    cfg: &IntegrationConfig,
    journal: &Journal,
    clock: SharedClock,
    router: Router,
    pending: Vec<(BrandId, ImportSpec)>,
    subscriptions: Vec<(BrandId, Webhook)>,
) -> anyhow::Result<Integrations> {
    let (imports, jobs) = Imports::new(import_config(data_dir, cfg)).context("cannot create the imports directory")?;
    let feed_cfg = FeedConfig { path: data_dir.join("feed.sqlite"), retention: cfg.retention, prune_interval: FEED_PRUNE_INTERVAL };
    let feed =
        Feed::start(feed_cfg, journal.clone(), clock, imports.job_sender(), &subscriptions).context("cannot start the change feed")?;
    let webhooks = Webhooks::start(webhook_config(data_dir, cfg), feed.clone(), None).context("cannot start webhook delivery")?;
    imports.start_runner(jobs, router, pending, None).context("cannot start the import runner")?;
    Ok(Integrations { feed, webhooks, imports })
}
