//! Partition snapshots in cluster mode: a partition's state and its replay rule at one
//! stream sequence, in the `ZAIKO_SNAPSHOTS` object store as `<partition>/<seq>` — the
//! single node's SQLite snapshot file (`snapshot::write`, digest included), with the
//! rule in the object's metadata.
//!
//! * **Taking one** reads the partition's newest snapshot (or nothing), folds the
//!   journal in after it with the same rule and fold a standby uses
//!   ([`Followed::catch_up`]), and stores the result: any node can take any partition's
//!   snapshot, off the owner's hot path. [`KEEP_PER_PARTITION`] are kept.
//! * **A cold start** (a takeover or a standby with nothing applied yet) starts from the
//!   newest snapshot that loads and checks, and reads the journal after its sequence:
//!   the rule's state is part of the snapshot, so the result is the one a replay from
//!   the start gives.
//! * `zaiko snapshot restore --cluster` merges every partition's newest snapshot into a
//!   single-node data dir.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use serde::Serialize;

use super::engine::PartitionId;
use super::entry::Replay;
use super::follower::Followed;
use crate::domain::Timestamp;
use crate::state::State;

/// Snapshots kept per partition; older ones are deleted after a new one is stored.
pub const KEEP_PER_PARTITION: usize = 2;

/// One stored partition snapshot.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartitionSnapshot {
    /// The partition (`0`…, or `registry`).
    pub partition: String,
    /// The object's name.
    pub id: String,
    /// The stream sequence of the last journal entry folded in.
    pub seq: u64,
    /// The partition LSN of the last record folded in.
    pub lsn: u64,
    pub bytes: u64,
    /// When it was stored (RFC 3339), as the object store says.
    pub created_at: Option<String>,
}

/// The snapshots of a cluster.
#[derive(Clone)]
pub struct Snapshots {
    store: ObjectStore,
    journal: stream::Stream,
    /// Where files are written and read on their way to and from the store.
    scratch: PathBuf,
}

static SCRATCH_SEQ: AtomicU64 = AtomicU64::new(0);

fn label(p: PartitionId) -> String {
    p.to_string()
}

fn parse_label(s: &str) -> Option<PartitionId> {
    match s {
        "registry" => Some(PartitionId::Registry),
        n => n.parse().ok().map(PartitionId::Brand),
    }
}

fn meta(info: &object_store::ObjectInfo, key: &str) -> Option<u64> {
    info.metadata.get(key)?.parse().ok()
}

fn describe(info: &object_store::ObjectInfo) -> Option<(PartitionId, PartitionSnapshot)> {
    let (p, seq) = info.name.split_once('/')?;
    let partition = parse_label(p)?;
    let seq: u64 = seq.parse().ok()?;
    let created_at = info.modified.and_then(|t| chrono::DateTime::from_timestamp(t.unix_timestamp(), 0)).map(|t| t.to_rfc3339());
    let snap = PartitionSnapshot {
        partition: p.to_string(),
        id: info.name.clone(),
        seq,
        lsn: meta(info, "lsn").unwrap_or(0),
        bytes: info.size as u64,
        created_at,
    };
    Some((partition, snap))
}

impl Snapshots {
    /// Files a crash left on their way are removed.
    pub fn new(store: ObjectStore, journal: stream::Stream, scratch: PathBuf) -> Snapshots {
        let _ = std::fs::remove_dir_all(&scratch);
        Snapshots { store, journal, scratch }
    }

    /// A fresh directory for one file on its way.
    fn scratch_dir(&self) -> PathBuf {
        self.scratch.join(format!("s{}-{}", std::process::id(), SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed)))
    }

    /// Every stored snapshot, by partition then sequence.
    pub async fn list(&self) -> Result<Vec<PartitionSnapshot>, String> {
        Ok(self.listed().await?.into_iter().map(|(_, s)| s).collect())
    }

    async fn listed(&self) -> Result<Vec<(PartitionId, PartitionSnapshot)>, String> {
        let mut list = self.store.list().await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| e.to_string())?;
            if info.deleted {
                continue;
            }
            if let Some(found) = describe(&info) {
                out.push(found);
            }
        }
        out.sort_by_key(|(p, s)| (*p, s.seq));
        Ok(out)
    }

    /// Each partition's oldest kept snapshot's sequence: the journal below it is no
    /// longer needed to start the partition (`cluster::purge`).
    pub async fn oldest_seqs(&self) -> Result<std::collections::HashMap<PartitionId, u64>, String> {
        let mut oldest = std::collections::HashMap::new();
        for (p, s) in self.listed().await? {
            oldest.entry(p).or_insert(s.seq);
        }
        Ok(oldest)
    }

    /// The newest snapshot of `p` that loads and checks, as a starting point for
    /// following it; `None` when it has none. A damaged one is logged and skipped.
    pub async fn newest(&self, p: PartitionId) -> Result<Option<Followed>, String> {
        let listed = self.listed().await?;
        for (_, snap) in listed.iter().rev().filter(|(q, _)| *q == p) {
            match self.load(&snap.id).await {
                Ok(f) => {
                    tracing::info!(partition = %p, seq = f.rule.last_seq, lsn = f.state.lsn, "starting from the partition's snapshot");
                    return Ok(Some(f));
                }
                Err(e) => {
                    tracing::error!(partition = %p, snapshot = %snap.id, error = %e, "a partition snapshot is damaged; trying an older one")
                }
            }
        }
        Ok(None)
    }

    /// Reads one snapshot: its state (checked against its digest) and its rule.
    pub async fn load(&self, name: &str) -> Result<Followed, String> {
        let dir = self.scratch_dir();
        let res = self.load_in(name, &dir).await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        res
    }

    async fn load_in(&self, name: &str, dir: &Path) -> Result<Followed, String> {
        let mut object = self.store.get(name).await.map_err(|e| e.to_string())?;
        let info = object.info().clone();
        let rule = Replay {
            epoch: meta(&info, "epoch").ok_or("no epoch in its metadata")?,
            next_lsn: meta(&info, "next_lsn").ok_or("no next_lsn in its metadata")?,
            last_seq: meta(&info, "last_seq").ok_or("no last_seq in its metadata")?,
            fenced: meta(&info, "fenced").unwrap_or(0),
        };
        tokio::fs::create_dir_all(dir).await.map_err(|e| e.to_string())?;
        let path = dir.join("snapshot.sqlite");
        let mut file = tokio::fs::File::create(&path).await.map_err(|e| e.to_string())?;
        tokio::io::copy(&mut object, &mut file).await.map_err(|e| format!("reading it: {e}"))?;
        drop(file);
        let (state, _) = tokio::task::spawn_blocking(move || crate::snapshot::load(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if state.lsn + 1 != rule.next_lsn {
            return Err(format!("its state is at lsn {} but its rule expects lsn {} next", state.lsn, rule.next_lsn));
        }
        Ok(Followed { state, rule })
    }

    /// Takes a snapshot of `p` as its journal stands now: the newest one and the
    /// journal after it. Returns the newest one when the journal has not moved since.
    pub async fn take(&self, p: PartitionId, now: Timestamp) -> Result<PartitionSnapshot, String> {
        let listed = self.listed().await?;
        let mine: Vec<&PartitionSnapshot> = listed.iter().filter(|(q, _)| *q == p).map(|(_, s)| s).collect();
        let mut from = self.newest(p).await?.unwrap_or_default();
        let before = from.rule.last_seq;
        from.catch_up(&self.journal, p).await.map_err(|e| e.to_string())?;
        if let Some(last) = mine.last().filter(|s| s.seq == from.rule.last_seq && before == s.seq) {
            return Ok((*last).clone());
        }
        let dir = self.scratch_dir();
        let stored = self.store_in(p, &from, now, &dir).await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let stored = stored?;
        // The older ones past the bound go (the new one is listed last).
        let keep_from = (mine.len() + 1).saturating_sub(KEEP_PER_PARTITION);
        for old in mine.iter().take(keep_from) {
            if let Err(e) = self.store.delete(&old.id).await {
                tracing::warn!(snapshot = %old.id, error = %e, "cannot delete an old partition snapshot");
            }
        }
        Ok(stored)
    }

    async fn store_in(&self, p: PartitionId, from: &Followed, now: Timestamp, dir: &Path) -> Result<PartitionSnapshot, String> {
        let state: State = from.state.clone();
        let data_dir = dir.to_path_buf();
        let info = tokio::task::spawn_blocking(move || crate::snapshot::write(&data_dir, &state, now))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let name = format!("{}/{:020}", label(p), from.rule.last_seq);
        let rule = &from.rule;
        let metadata = [
            ("epoch", rule.epoch),
            ("next_lsn", rule.next_lsn),
            ("last_seq", rule.last_seq),
            ("fenced", rule.fenced),
            ("lsn", from.state.lsn),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let meta = object_store::ObjectMetadata { name: name.clone(), metadata, ..Default::default() };
        let mut file = tokio::fs::File::open(&info.path).await.map_err(|e| e.to_string())?;
        let stored = self.store.put(meta, &mut file).await.map_err(|e| e.to_string())?;
        describe(&stored).map(|(_, s)| s).ok_or_else(|| format!("the store named the snapshot {}", stored.name))
    }

    /// Takes a snapshot of every partition, one after another (one partition's state in
    /// memory at a time).
    pub async fn take_all(
        &self,
        partitions: impl IntoIterator<Item = PartitionId>,
        now: Timestamp,
    ) -> Result<Vec<PartitionSnapshot>, String> {
        let mut out = Vec::new();
        for p in partitions {
            out.push(self.take(p, now).await.map_err(|e| format!("partition {p}: {e}"))?);
        }
        Ok(out)
    }

    /// Every partition's newest snapshot merged into one state (the single node's), for
    /// `zaiko snapshot restore --cluster`. Its LSN is the highest of the partitions'.
    pub async fn merged(&self) -> Result<(State, Vec<PartitionSnapshot>), String> {
        let listed = self.listed().await?;
        let mut newest: std::collections::BTreeMap<PartitionId, PartitionSnapshot> = Default::default();
        for (p, s) in listed {
            newest.insert(p, s);
        }
        let mut state = State::default();
        for (p, snap) in &newest {
            let f = self.load(&snap.id).await.map_err(|e| format!("snapshot {}: {e}", snap.id))?;
            state.lsn = state.lsn.max(f.state.lsn);
            match p {
                PartitionId::Registry => state.registry = f.state.registry,
                PartitionId::Brand(_) => state.brands.extend(f.state.brands),
            }
        }
        Ok((state, newest.into_values().collect()))
    }
}

/// How often the schedule looks at the partitions this node owns.
pub const SCHEDULE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Scheduled snapshots: each node snapshots the partitions it owns once
/// `every_records` records or `every` time (with at least one record) have passed
/// since their last one — the single node's knobs, per partition. Failures are retried
/// at the next check and shown as the snapshot worker's health.
pub fn schedule(
    node: super::node::Node,
    clock: crate::clock::SharedClock,
    every_records: u64,
    every: Option<std::time::Duration>,
    runtime: &tokio::runtime::Handle,
) {
    if every_records == 0 && every.is_none() {
        return;
    }
    let health = crate::health::global().worker(crate::health::Worker::Snapshots);
    runtime.spawn(async move {
        let _stopped = health.until_dropped();
        // Per partition: the LSN of its last snapshot and when this node took it.
        let mut last: std::collections::HashMap<String, (u64, std::time::Instant)> = Default::default();
        if let Ok(list) = node.snapshots.list().await {
            for s in list {
                last.insert(s.partition, (s.lsn, std::time::Instant::now()));
            }
        }
        let mut ticker = tokio::time::interval(SCHEDULE_CHECK_INTERVAL);
        loop {
            ticker.tick().await;
            let view = node.view();
            let mine = view.partitions.iter().filter(|p| p.owner.as_ref().is_some_and(|o| o.node == node.cfg.node_id));
            let mut failed = None;
            let mut stored = Vec::new();
            for p in mine {
                let (done_lsn, at) = last.get(&p.id).copied().unwrap_or((0, std::time::Instant::now()));
                let new_records = p.lsn.saturating_sub(done_lsn);
                let due =
                    (every_records > 0 && new_records >= every_records) || (every.is_some_and(|e| at.elapsed() >= e) && new_records > 0);
                let Some(partition) = parse_label(&p.id) else { continue };
                if !due {
                    last.entry(p.id.clone()).or_insert((done_lsn, at));
                    continue;
                }
                match node.snapshots.take(partition, clock.now()).await {
                    Ok(s) => {
                        tracing::info!(partition = %p.id, seq = s.seq, lsn = s.lsn, "partition snapshot stored");
                        last.insert(p.id.clone(), (s.lsn, std::time::Instant::now()));
                        if let PartitionId::Brand(n) = partition {
                            stored.push(n);
                        }
                    }
                    Err(e) => failed = Some(format!("partition {}: {e}", p.id)),
                }
            }
            if !stored.is_empty() {
                node.purger.spawn_pass(stored, clock.now());
            }
            match failed {
                Some(e) => {
                    tracing::warn!(error = %e, "a scheduled partition snapshot failed; retrying at the next check");
                    health.failed(&e);
                }
                None => health.ok(),
            }
        }
    });
}
