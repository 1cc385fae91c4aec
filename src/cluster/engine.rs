//! The JetStream side of cluster mode: connecting, and the stream and buckets every node
//! shares, created on first start and checked on every later one.
//!
//! * `ZAIKO_JOURNAL` — the partition journals, subjects `zaiko.p.<n>` and
//!   `zaiko.registry`; file storage, replicated, discard-new (a full stream refuses
//!   writes; it never drops acknowledged entries), a duplicate window for publish
//!   retries.
//! * `ZAIKO_LEASES` (KV) — one key per partition (`lease.rs`).
//! * `ZAIKO_CLUSTER` (KV) — `config`: the partition count, fixed at creation; and a
//!   heartbeat key per node, `node.<id>`, for placement.
//! * `ZAIKO_WEBHOOKS` (KV) — webhook delivery positions and dead deliveries
//!   (`cluster::webhooks`).
//! * `ZAIKO_IMPORTS` (object store) — import uploads, `<brand>/<job file>`, so that the
//!   owner of a brand's partition reads them whichever node received them
//!   (`cluster::imports`).
//! * `ZAIKO_SNAPSHOTS` (object store) — partition snapshots, `<partition>/<stream seq>`
//!   (`cluster::snapshots`).

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use serde::{Deserialize, Serialize};

/// The journal stream's name.
pub const JOURNAL_STREAM: &str = "ZAIKO_JOURNAL";
pub const LEASES_BUCKET: &str = "ZAIKO_LEASES";
pub const CLUSTER_BUCKET: &str = "ZAIKO_CLUSTER";
/// Webhook delivery positions handed from one owner to the next (`cluster::webhooks`).
pub const WEBHOOKS_BUCKET: &str = "ZAIKO_WEBHOOKS";
/// Import uploads (`cluster::imports`).
pub const IMPORTS_BUCKET: &str = "ZAIKO_IMPORTS";
/// Partition snapshots (`cluster::snapshots`).
pub const SNAPSHOTS_BUCKET: &str = "ZAIKO_SNAPSHOTS";
/// An upload left in the object store by a job that was never queued (its node died
/// between storing it and queuing the job) goes after this long; a job must finish
/// within it.
pub const IMPORT_UPLOAD_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long the server remembers a message id, so that a publish retried after a
/// lost ack is stored once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Reads of the KV buckets and object stores are direct gets, which any replica may
/// answer: one a moment behind a write another node just made may not have it yet. A
/// read that must see such a write (an upload stored by the node that forwarded the
/// request, a checkpoint named by a purge) looks again for this long before it
/// concludes the thing is not there.
pub const READ_VISIBLE_WITHIN: Duration = Duration::from_secs(2);
const READ_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Runs `read` until it finds what it looks for (`Some`), fails, or
/// [`READ_VISIBLE_WITHIN`] has passed (then `None`).
pub async fn read_visible<T, E, F, Fut>(mut read: F) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, E>>,
{
    let visible_by = std::time::Instant::now() + READ_VISIBLE_WITHIN;
    loop {
        match read().await? {
            Some(found) => return Ok(Some(found)),
            None if std::time::Instant::now() >= visible_by => return Ok(None),
            None => tokio::time::sleep(READ_RETRY_DELAY).await,
        }
    }
}
/// How long a JetStream API call may take before it counts as failed.
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

/// The partition a brand belongs to, or the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartitionId {
    Brand(u32),
    Registry,
}

impl PartitionId {
    /// Its journal subject.
    pub fn subject(&self) -> String {
        match self {
            PartitionId::Brand(n) => format!("zaiko.p.{n}"),
            PartitionId::Registry => "zaiko.registry".to_string(),
        }
    }

    /// Its lease key.
    pub fn lease_key(&self) -> String {
        match self {
            PartitionId::Brand(n) => format!("p.{n}"),
            PartitionId::Registry => "registry".to_string(),
        }
    }
}

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionId::Brand(n) => write!(f, "{n}"),
            PartitionId::Registry => f.write_str("registry"),
        }
    }
}

/// The partition of a brand: FNV-1a (64-bit) of the brand id's UTF-8 bytes, modulo the
/// partition count. Documented in `docs/cluster.md` and fixed: changing it would move
/// brands between journals.
pub fn partition_of(brand: &str, partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in brand.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(partitions)) as u32
}

/// What is fixed when the cluster is created (the `config` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterShape {
    pub partitions: u32,
}

/// How the stream and buckets are made.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Comma-separated NATS URLs.
    pub urls: String,
    /// Replicas of the stream and buckets (3 in production; the servers must be at
    /// least this many).
    pub replicas: usize,
    /// Largest entry: one group-commit batch. Must not exceed the servers' max_payload.
    pub entry_bytes_max: usize,
}

/// A connection and the shared JetStream objects.
#[derive(Clone)]
pub struct Engine {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub journal: stream::Stream,
    pub leases: kv::Store,
    pub cluster: kv::Store,
    pub webhooks: kv::Store,
    pub imports: object_store::ObjectStore,
    pub snapshots: object_store::ObjectStore,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to NATS at {urls}: {detail}")]
    Connect { urls: String, detail: String },
    #[error("JetStream setup failed ({what}): {detail}")]
    Setup { what: &'static str, detail: String },
    #[error(
        "this cluster was created with {existing} partitions but this node was started with {asked}; \
         the partition count is fixed when a cluster is created (start with --partitions {existing})"
    )]
    PartitionsMismatch { existing: u32, asked: u32 },
}

fn setup(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> EngineError {
    move |e| EngineError::Setup { what, detail: e.to_string() }
}

impl Engine {
    /// Connects and makes sure the stream and buckets exist with the settings above.
    pub async fn connect(cfg: &EngineConfig, node: &str) -> Result<Engine, EngineError> {
        let addrs = cfg
            .urls
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Connect { urls: cfg.urls.clone(), detail: e.to_string() })?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("zaiko-{node}"))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(addrs.as_slice())
            .await
            .map_err(|e| EngineError::Connect { urls: cfg.urls.clone(), detail: e.to_string() })?;
        let js = jetstream::ContextBuilder::new().timeout(API_TIMEOUT).build(client.clone());
        let stream_cfg = stream::Config {
            name: JOURNAL_STREAM.to_string(),
            subjects: vec!["zaiko.p.*".to_string(), "zaiko.registry".to_string()],
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            discard: stream::DiscardPolicy::New,
            duplicate_window: DUPLICATE_WINDOW,
            max_message_size: i32::try_from(cfg.entry_bytes_max).unwrap_or(i32::MAX),
            allow_direct: true,
            ..Default::default()
        };
        let journal = retry("journal stream", || js.get_or_create_stream(stream_cfg.clone())).await?;
        let bucket = |name: &str| kv::Config {
            bucket: name.to_string(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        };
        let leases = retry("lease bucket", || create_bucket(&js, bucket(LEASES_BUCKET))).await?;
        let cluster = retry("cluster bucket", || create_bucket(&js, bucket(CLUSTER_BUCKET))).await?;
        let webhooks = retry("webhook bucket", || create_bucket(&js, bucket(WEBHOOKS_BUCKET))).await?;
        let uploads = object_store::Config {
            bucket: IMPORTS_BUCKET.to_string(),
            description: Some("zaiko import uploads".to_string()),
            max_age: IMPORT_UPLOAD_MAX_AGE,
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        };
        let imports = retry("import bucket", || create_object_store(&js, uploads.clone())).await?;
        let snapshots = object_store::Config {
            bucket: SNAPSHOTS_BUCKET.to_string(),
            description: Some("zaiko partition snapshots".to_string()),
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        };
        let snapshots = retry("snapshot bucket", || create_object_store(&js, snapshots.clone())).await?;
        Ok(Engine { client, js, journal, leases, cluster, webhooks, imports, snapshots })
    }

    /// Records the cluster's shape on first start; on later starts, refuses another.
    pub async fn check_shape(&self, asked: ClusterShape) -> Result<ClusterShape, EngineError> {
        let bytes = bytes::Bytes::from(serde_json::to_vec(&asked).expect("the shape serialises"));
        let created = retry("cluster config", || async {
            match self.cluster.create("config", bytes.clone()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await?;
        if created {
            return Ok(asked);
        }
        let existing = retry("cluster config", || self.cluster.get("config")).await?;
        let existing: ClusterShape = existing
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| EngineError::Setup { what: "cluster config", detail: "the config key is unreadable".to_string() })?;
        if existing.partitions != asked.partitions {
            return Err(EngineError::PartitionsMismatch { existing: existing.partitions, asked: asked.partitions });
        }
        Ok(existing)
    }
}

/// How long start-up keeps retrying a JetStream setup step. A fresh cluster elects its
/// leaders for a few seconds, and nodes started together race to create the stream and
/// buckets; both answer with errors that go away.
pub const SETUP_RETRY_FOR: Duration = Duration::from_secs(60);

/// Runs a setup step until it succeeds or [`SETUP_RETRY_FOR`] has passed, backing off
/// from 100 ms to 2 s.
async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &'static str,
    mut step: impl FnMut() -> F,
) -> Result<T, EngineError> {
    let deadline = tokio::time::Instant::now() + SETUP_RETRY_FOR;
    let mut pause = Duration::from_millis(100);
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                tracing::info!(what, error = %e, retry_ms = pause.as_millis() as u64, "JetStream setup step failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(setup(what)(&e)),
        }
    }
}

async fn create_bucket(js: &jetstream::Context, cfg: kv::Config) -> Result<kv::Store, String> {
    match js.get_key_value(cfg.bucket.clone()).await {
        Ok(store) => Ok(store),
        Err(_) => match js.create_key_value(cfg.clone()).await {
            Ok(store) => Ok(store),
            // Another node created it between our two calls.
            Err(e) => js.get_key_value(cfg.bucket.clone()).await.map_err(|_| e.to_string()),
        },
    }
}

async fn create_object_store(js: &jetstream::Context, cfg: object_store::Config) -> Result<object_store::ObjectStore, String> {
    match js.get_object_store(&cfg.bucket).await {
        Ok(store) => Ok(store),
        Err(_) => match js.create_object_store(cfg.clone()).await {
            Ok(store) => Ok(store),
            Err(e) => js.get_object_store(&cfg.bucket).await.map_err(|_| e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brand_hash_is_fixed() {
        // Known FNV-1a 64 values: a change here moves brands between journals.
        assert_eq!(partition_of("", u32::MAX), (0xcbf2_9ce4_8422_2325u64 % u64::from(u32::MAX)) as u32);
        assert_eq!(partition_of("a", 1 << 31), (0xaf63_dc4c_8601_ec8cu64 % (1 << 31)) as u32);
        let spread: std::collections::HashSet<u32> = (0..1000).map(|i| partition_of(&format!("b-{i:03}"), 64)).collect();
        assert_eq!(spread.len(), 64, "a thousand brands reach every partition");
    }
}
