//! Purging the cluster journal: a brand partition's subject of `ZAIKO_JOURNAL` is purged
//! only below both its oldest kept snapshot (every cold start — a takeover, a standby,
//! the next snapshot — starts from a snapshot and reads the journal after it) and the
//! change feed's retention (every node has already dropped the events of what is
//! purged), and never its last entry (owners publish with the subject's last sequence
//! as the expected one).
//!
//! The feed needs one more thing: a node whose feed has not read the purged entries
//! (a new node, or one down longer than the retention) must give the partition's
//! brands the same seqs as every other node. So before purging, a pass folds the
//! journal from the previous **checkpoint** (`feed::seed::FeedSeed`: the replay rule,
//! each brand's last seq, the live subscriptions) up to the purge point, by the feed's
//! own steps, and stores the new one; the feed of such a node starts the partition
//! again there (`feed::cluster`).
//!
//! * The checkpoint is the object `feed/<partition>/<seq>` of `ZAIKO_SNAPSHOTS`; the
//!   current one is named by `purge.<partition>` in `ZAIKO_CLUSTER`, moved by
//!   compare-and-set on its revision. The journal is purged only below the sequence a
//!   successful compare-and-set published, so two nodes purging at once cannot leave a
//!   checkpoint older than the purge (the loser of the race purges nothing).
//! * A crash between storing the checkpoint and purging leaves a checkpoint ahead of
//!   the purge: a feed starting there skips entries it could still read, with the same
//!   result. A crash after storing the object and before the compare-and-set leaves an
//!   unreferenced object, removed by the first pass after the purge point passes it.
//! * A pass runs after snapshots are stored (on schedule or `POST /v1/admin/snapshots`),
//!   on the node that stored them, one pass at a time; it folds at most
//!   [`PURGE_ENTRIES_PER_PASS`] entries per partition. The registry's journal is not
//!   purged (it is small: brands, tokens, locations).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, object_store::ObjectStore, stream};
use futures_util::StreamExt;

use super::engine::PartitionId;
use super::plog;
use super::snapshots::Snapshots;
use crate::domain::Timestamp;
use crate::feed::cluster::judge_entry;
use crate::feed::seed::FeedSeed;

/// Entries folded into a partition's checkpoint in one pass, at most.
pub const PURGE_ENTRIES_PER_PASS: u64 = 200_000;
/// Entries are purged only when older than the feed's retention by this much more, so
/// that every node's feed (pruning by age once a minute, by its own clock) dropped
/// their events first.
pub const PURGE_MARGIN: Duration = Duration::from_secs(10 * 60);

fn point_key(partition: u32) -> String {
    format!("purge.{partition}")
}

fn object_name(partition: u32, seq: u64) -> String {
    format!("feed/{partition}/{seq:020}")
}

/// The partitions' feed checkpoints.
#[derive(Clone)]
pub struct Checkpoints {
    /// `ZAIKO_CLUSTER`: the `purge.<partition>` keys.
    pub kv: kv::Store,
    /// `ZAIKO_SNAPSHOTS`: the checkpoints themselves.
    pub objects: ObjectStore,
}

impl Checkpoints {
    /// The partition's current checkpoint and the revision of the key naming it.
    pub async fn current(&self, partition: u32) -> Result<Option<(FeedSeed, u64)>, String> {
        let Some((seq, revision)) = self.point(partition).await? else { return Ok(None) };
        let name = object_name(partition, seq);
        let mut object = self.objects.get(&name).await.map_err(|e| format!("checkpoint {name}: {e}"))?;
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes).await.map_err(|e| format!("reading checkpoint {name}: {e}"))?;
        let seed: FeedSeed = serde_json::from_slice(&bytes).map_err(|e| format!("checkpoint {name} is unreadable: {e}"))?;
        if seed.partition != partition || seed.rule.last_seq != seq {
            return Err(format!("checkpoint {name} holds partition {} at {}", seed.partition, seed.rule.last_seq));
        }
        Ok(Some((seed, revision)))
    }

    /// Stores `seed` and makes it the current checkpoint, if the key is still at
    /// `revision` (`None`: no checkpoint yet); the one it replaces is deleted.
    async fn publish(&self, seed: &FeedSeed, replaces: Option<(u64, u64)>) -> Result<(), String> {
        let seq = seed.rule.last_seq;
        let name = object_name(seed.partition, seq);
        let body = serde_json::to_vec(seed).map_err(|e| e.to_string())?;
        self.objects.put(name.as_str(), &mut body.as_slice()).await.map_err(|e| format!("storing checkpoint {name}: {e}"))?;
        let key = point_key(seed.partition);
        let value = seq.to_string().into_bytes().into();
        let moved = match replaces {
            None => self.kv.create(&key, value).await.map(|_| ()).map_err(|e| e.to_string()),
            Some((_, revision)) => self.kv.update(&key, value, revision).await.map(|_| ()).map_err(|e| e.to_string()),
        };
        if let Err(e) = moved {
            let _ = self.objects.delete(&name).await;
            return Err(format!("the purge point of partition {} moved meanwhile (another node purging it?): {e}", seed.partition));
        }
        if let Some((old_seq, _)) = replaces.filter(|(old, _)| *old != seq) {
            let old = object_name(seed.partition, old_seq);
            if let Err(e) = self.objects.delete(&old).await {
                tracing::warn!(checkpoint = %old, error = %e, "cannot delete a replaced feed checkpoint");
            }
        }
        Ok(())
    }
}

impl Checkpoints {
    /// Deletes the checkpoint objects below their partition's current one: replaced
    /// ones a crash left behind. (One above it may be a concurrent pass's, not yet
    /// published; the purge point only grows, so one below it is never current again.)
    async fn remove_replaced(&self) -> Result<(), String> {
        let mut list = self.objects.list().await.map_err(|e| e.to_string())?;
        let mut stored = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| e.to_string())?;
            let parsed = info.name.strip_prefix("feed/").and_then(|r| r.split_once('/'));
            if let (false, Some((p, seq))) = (info.deleted, parsed) {
                if let (Ok(p), Ok(seq)) = (p.parse::<u32>(), seq.parse::<u64>()) {
                    stored.push((p, seq, info.name.clone()));
                }
            }
        }
        for (p, seq, name) in stored {
            let current = self.point(p).await?;
            if current.is_some_and(|(c, _)| seq < c) {
                self.objects.delete(&name).await.map_err(|e| format!("deleting {name}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The partition's purge point and the revision of its key.
    async fn point(&self, partition: u32) -> Result<Option<(u64, u64)>, String> {
        let Some(entry) = self.kv.entry(point_key(partition)).await.map_err(|e| e.to_string())? else { return Ok(None) };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let seq = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("the purge point of partition {partition} is unreadable"))?;
        Ok(Some((seq, entry.revision)))
    }
}

/// What one pass did to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    pub partition: u32,
    /// The new purge point: every entry at or below it is gone.
    pub through: u64,
    /// Entries the stream dropped.
    pub entries: u64,
}

/// Purges the brand partitions' journals after snapshots.
#[derive(Clone)]
pub struct Purger {
    pub checkpoints: Checkpoints,
    journal: stream::Stream,
    snapshots: Snapshots,
    /// The feed's retention by age.
    retention: Duration,
    running: Arc<AtomicBool>,
    /// The cluster runtime: passes run there, never on an HTTP worker.
    runtime: tokio::runtime::Handle,
}

impl Purger {
    /// Must be called on the cluster runtime.
    pub fn new(checkpoints: Checkpoints, journal: stream::Stream, snapshots: Snapshots, retention: Duration) -> Purger {
        let runtime = tokio::runtime::Handle::current();
        Purger { checkpoints, journal, snapshots, retention, running: Arc::default(), runtime }
    }

    /// Starts a pass over `partitions`, unless one is running (the next snapshot starts
    /// another). `now` is the caller's clock.
    pub fn spawn_pass(&self, partitions: Vec<u32>, now: Timestamp) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let purger = self.clone();
        self.runtime.spawn(async move {
            match purger.snapshots.oldest_seqs().await {
                Ok(oldest) => purger.pass(partitions, &oldest, now).await,
                Err(e) => tracing::warn!(error = %e, "cannot list the snapshots; the journal purge waits for the next snapshot"),
            }
            purger.running.store(false, Ordering::Release);
        });
    }

    async fn pass(&self, partitions: Vec<u32>, oldest: &HashMap<PartitionId, u64>, now: Timestamp) {
        let mut failed = None;
        for p in partitions {
            let Some(&snapshot_seq) = oldest.get(&PartitionId::Brand(p)) else { continue };
            match self.purge(p, snapshot_seq, now).await {
                Ok(Some(done)) => {
                    tracing::info!(
                        partition = p,
                        through = done.through,
                        entries = done.entries,
                        "journal purged below the feed checkpoint"
                    );
                    metrics::counter!("zaiko_cluster_journal_purged_entries_total").increment(done.entries);
                }
                Ok(None) => {}
                Err(e) => failed = Some(format!("purging partition {p}'s journal: {e}")),
            }
        }
        if let Err(e) = self.checkpoints.remove_replaced().await {
            tracing::warn!(error = %e, "cannot remove replaced feed checkpoints; the next pass tries again");
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, "a journal purge failed; the next snapshot tries again");
            crate::health::global().worker(crate::health::Worker::Snapshots).failed(e);
        }
    }

    /// One partition whose oldest kept snapshot is at `snapshot_seq`: folds its
    /// checkpoint forward to the purge point, publishes it, purges below it. `None`
    /// when nothing can be purged.
    pub async fn purge(&self, partition: u32, snapshot_seq: u64, now: Timestamp) -> Result<Option<Purged>, String> {
        let p = PartitionId::Brand(partition);
        let subject = p.subject();
        let last = plog::last_seq(&self.journal, &subject).await?;
        let bound = snapshot_seq.min(last.saturating_sub(1));
        let current = self.checkpoints.current(partition).await?;
        let replaces = current.as_ref().map(|(seed, revision)| (seed.rule.last_seq, *revision));
        let mut seed = current.map_or_else(|| FeedSeed::new(partition), |(seed, _)| seed);
        let from = seed.rule.last_seq;
        if bound <= from {
            return Ok(None);
        }
        let margin = i64::try_from((self.retention + PURGE_MARGIN).as_millis()).unwrap_or(i64::MAX);
        let cutoff = Timestamp(now.0.saturating_sub(margin));
        let mut folded = 0;
        // Entries without records (takeover markers) alone are not worth a pass.
        let mut aged_records = false;
        let mut messages = plog::ordered_consumer(&self.journal, &subject, from + 1).await?;
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| e.to_string())?;
            let seq = msg.info().map_err(|e| e.to_string())?.stream_sequence;
            if seq > bound {
                break;
            }
            let fed = judge_entry(&seed.rule, seq, &msg.payload).map_err(|e| format!("entry {seq}: {e}"))?;
            if fed.newest_at.is_some_and(|at| at >= cutoff) {
                break;
            }
            aged_records |= fed.newest_at.is_some();
            seed.rule = fed.rule;
            seed.apply(&fed.batch);
            folded += 1;
            if seq == bound || folded >= PURGE_ENTRIES_PER_PASS {
                break;
            }
        }
        if !aged_records {
            return Ok(None);
        }
        self.checkpoints.publish(&seed, replaces).await?;
        let through = seed.rule.last_seq;
        let res = self.journal.purge().filter(subject).sequence(through + 1).await.map_err(|e| e.to_string())?;
        Ok(Some(Purged { partition, through, entries: res.purged }))
    }
}
