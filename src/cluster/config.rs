//! Cluster mode's flags (`zaiko serve --cluster …`), each with its `ZAIKO_*` variable.

use std::time::Duration;

use clap::Args;

use super::engine::EngineConfig;
use super::lease::LeaseTiming;

/// The partition count a new cluster gets unless told otherwise.
pub const PARTITIONS_DEFAULT: u32 = 64;
/// Largest journal entry (one group-commit batch of a partition), under the servers'
/// `max_payload` (`docs/cluster.md` sets 8 MB).
pub const ENTRY_BYTES_MAX: usize = 6 << 20;

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Run in cluster mode on these NATS servers (comma-separated URLs, e.g.
    /// `nats://h1:4222,nats://h2:4222,nats://h3:4222`); see docs/cluster.md.
    #[arg(long = "cluster", env = "ZAIKO_CLUSTER")]
    pub urls: Option<String>,
    /// This node's id in the cluster (stable across restarts; [A-Za-z0-9_-], 1..=64).
    #[arg(long, env = "ZAIKO_NODE_ID", requires = "urls")]
    pub node_id: Option<String>,
    /// The address other nodes forward requests to (e.g. `http://10.0.0.5:8080`).
    #[arg(long, env = "ZAIKO_ADVERTISE", requires = "urls")]
    pub advertise: Option<String>,
    /// Brand partitions, fixed when the cluster is created; a node started with another
    /// count refuses to start.
    #[arg(long, env = "ZAIKO_PARTITIONS", default_value_t = PARTITIONS_DEFAULT)]
    pub partitions: u32,
    /// Lease length in milliseconds: how long a dead owner's partitions wait before
    /// another node takes them over (renewed every third of it).
    #[arg(long, env = "ZAIKO_LEASE_MS", default_value_t = 3000)]
    pub lease_ms: u64,
    /// Hot standbys per partition (nodes that follow its journal and keep its state).
    #[arg(long, env = "ZAIKO_STANDBYS", default_value_t = 1)]
    pub standbys: usize,
    /// Replicas of the journal stream and buckets (3 in production; 1 for a single
    /// nats-server in development). Only used when they are created.
    #[arg(long, env = "ZAIKO_CLUSTER_REPLICAS", default_value_t = 3)]
    pub cluster_replicas: usize,
}

/// Cluster mode's validated settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub engine: EngineConfig,
    pub node_id: String,
    pub advertise: String,
    pub partitions: u32,
    pub timing: LeaseTiming,
    pub standbys: usize,
}

impl ClusterArgs {
    /// `None` without `--cluster`.
    pub fn resolve(&self) -> Result<Option<ClusterConfig>, String> {
        let Some(urls) = &self.urls else { return Ok(None) };
        let node_id = self.node_id.clone().ok_or("--cluster needs --node-id")?;
        if node_id.is_empty() || node_id.len() > 64 || !node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!("--node-id must be 1..=64 of [A-Za-z0-9_-], got {node_id:?}"));
        }
        let advertise = self.advertise.clone().ok_or("--cluster needs --advertise (the URL other nodes reach this one at)")?;
        if !(advertise.starts_with("http://") || advertise.starts_with("https://")) {
            return Err(format!("--advertise must be an http:// or https:// URL, got {advertise:?}"));
        }
        if !(1..=4096).contains(&self.partitions) {
            return Err(format!("--partitions must be 1..=4096, got {}", self.partitions));
        }
        if !(300..=60_000).contains(&self.lease_ms) {
            return Err(format!("--lease-ms must be 300..=60000, got {}", self.lease_ms));
        }
        if self.standbys > 8 {
            return Err(format!("--standbys must be 0..=8, got {}", self.standbys));
        }
        if !(1..=5).contains(&self.cluster_replicas) {
            return Err(format!("--cluster-replicas must be 1..=5, got {}", self.cluster_replicas));
        }
        Ok(Some(ClusterConfig {
            engine: EngineConfig { urls: urls.clone(), replicas: self.cluster_replicas, entry_bytes_max: ENTRY_BYTES_MAX },
            node_id,
            advertise: advertise.trim_end_matches('/').to_string(),
            partitions: self.partitions,
            timing: LeaseTiming::new(Duration::from_millis(self.lease_ms)),
            standbys: self.standbys,
        }))
    }
}
