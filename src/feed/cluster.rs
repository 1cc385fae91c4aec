//! The change feed in cluster mode (`docs/cluster.md`): every node builds the feed of
//! every partition from the replicated journal, so a brand's seqs, event ids and
//! cursors are the same whichever node is asked, and a failover changes nothing in them.
//!
//! * The **source** (a task on the cluster runtime) reads the `ZAIKO_JOURNAL` stream's
//!   partition subjects (`zaiko.p.>`) with one ordered consumer, in stream order, and
//!   judges each entry by its partition's replay rule (`cluster::entry::Replay`, the
//!   rule standbys and takeovers apply): only entries the rule applies give events, so
//!   an entry of a fenced owner never reaches a feed. It hands runs of entries to the
//!   store thread as [`Batch`]es that carry each touched partition's rule state.
//! * The **store thread** commits each batch in one transaction with the stream
//!   sequence it covers and the partitions' rule states, so a restart resumes exactly
//!   after the last committed entry; then it wakes the brands' long polls.
//!
//! A reader waits until the store covers the stream sequence of the partition's last
//! entry as it stood when the request came (one JetStream request), so a client that
//! wrote through any node and then reads the feed from any node sees its write.
//!
//! An entry the rule refuses (no sequence of owners following the protocol writes one)
//! stops that partition's feed, loudly: its readers get 503 and `/readyz` says the feed
//! is retrying; the other partitions go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::seed::FeedSeed;
use super::store::{Batch, HookChange, SourcePosition, Store, StoreError};
use super::tailer::{collect_record, FEED_BATCH_EVENTS_MAX, FEED_BATCH_RECORDS_MAX};
use super::{FeedConfig, Inner};
use crate::clock::SharedClock;
use crate::cluster::entry::{self, Replay, Verdict};
use crate::cluster::plog;
use crate::cluster::purge::Checkpoints;
use crate::domain::event::{self, WalRecord};
use crate::domain::Timestamp;
use crate::health::{Backoff, WorkerHealth};
use crate::journal::history::History;

/// The subjects of the brand partitions' journals (the registry's is not a feed's).
pub const PARTITION_SUBJECTS: &str = "zaiko.p.>";
/// Batches read and not yet committed, at most.
pub(super) const BATCHES_IN_FLIGHT: usize = 4;
/// Longest wait for a batch before checking the age retention.
const IDLE_WAIT: Duration = Duration::from_secs(1);
const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(30);

/// The partition of a journal subject `zaiko.p.<n>`.
fn partition_of_subject(subject: &str) -> Option<u32> {
    subject.strip_prefix("zaiko.p.")?.parse().ok()
}

/// Reads the stream and hands batches to the store thread.
pub(super) struct Source {
    stream: stream::Stream,
    rules: HashMap<u32, Replay>,
    /// The next stream sequence to read.
    next_seq: u64,
    tx: mpsc::Sender<Batch>,
    inner: Arc<Inner>,
    health: WorkerHealth,
    /// Where a partition's feed starts again after its journal was purged.
    checkpoints: Option<Checkpoints>,
}

impl Source {
    pub(super) fn new(
        stream: stream::Stream,
        positions: &[SourcePosition],
        covered_seq: u64,
        tx: mpsc::Sender<Batch>,
        inner: Arc<Inner>,
        checkpoints: Option<Checkpoints>,
    ) -> Source {
        let rules = positions.iter().map(|p| (p.partition, Replay::resume(p.epoch, p.next_lsn, p.last_seq))).collect();
        let health = crate::health::global().worker(crate::health::Worker::Feed);
        Source { stream, rules, next_seq: covered_seq + 1, tx, inner, health, checkpoints }
    }

    /// Reads until the store thread is gone.
    pub(super) async fn run(mut self) {
        let mut backoff = Backoff::new(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
        loop {
            let mut messages = match plog::ordered_consumer(&self.stream, PARTITION_SUBJECTS, self.next_seq).await {
                Ok(m) => m,
                Err(e) => {
                    let attempts = self.health.failed(format!("cannot read the cluster journal: {e}"));
                    tracing::warn!(error = %e, attempts, "the feed cannot read the cluster journal; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            backoff.reset();
            let mut batch = self.new_batch();
            let mut records = 0;
            let mut unsent = false;
            while let Some(msg) = messages.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        // The ordered consumer recreates itself after gaps and errors.
                        tracing::debug!(error = %e, "feed consumer error");
                        continue;
                    }
                };
                let Ok((seq, pending)) = msg.info().map(|i| (i.stream_sequence, i.pending)) else { continue };
                if seq < self.next_seq {
                    continue;
                }
                let partition = partition_of_subject(msg.subject.as_str()).filter(|p| !self.inner.stopped_partitions.lock().contains(p));
                if let Some(partition) = partition {
                    match self.take(&mut batch, seq, partition, &msg.payload).await {
                        Some(n) => records += n,
                        None => return,
                    }
                }
                self.next_seq = seq + 1;
                batch.last_lsn = seq;
                unsent = true;
                if pending == 0 || records >= FEED_BATCH_RECORDS_MAX || batch.events.len() >= FEED_BATCH_EVENTS_MAX {
                    if self.tx.send(std::mem::replace(&mut batch, self.new_batch())).await.is_err() {
                        return;
                    }
                    records = 0;
                    unsent = false;
                }
            }
            if unsent && self.tx.send(batch).await.is_err() {
                return;
            }
            tracing::warn!(next_seq = self.next_seq, "the feed's journal consumer ended; reading again");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    fn new_batch(&self) -> Batch {
        Batch { last_lsn: self.next_seq - 1, ..Batch::default() }
    }

    /// Adds what the entry at `seq` of `partition` means for the feed to `batch`;
    /// returns the records it applied. An entry is taken whole or not at all; `Err`
    /// when the partition's rule refuses it (the caller decides what follows).
    fn read(&mut self, batch: &mut Batch, seq: u64, partition: u32, bytes: &[u8]) -> Result<usize, String> {
        let rule = self.rules.entry(partition).or_default();
        if seq <= rule.last_seq {
            // Folded into the checkpoint the partition's feed started from again.
            return Ok(0);
        }
        let fed = judge_entry(rule, seq, bytes)?;
        *rule = fed.rule;
        let position = SourcePosition::of(partition, rule);
        match batch.sources.iter_mut().find(|s| s.partition == partition) {
            Some(s) => *s = position,
            None => batch.sources.push(position),
        }
        let mut taken = fed.batch;
        let offset = batch.events.len();
        for mut hook in taken.hooks {
            if let HookChange::Created { position, .. } = &mut hook {
                *position += offset;
            }
            batch.hooks.push(hook);
        }
        batch.events.append(&mut taken.events);
        Ok(fed.records)
    }

    /// Reads the entry at `seq` into `batch`. An entry the rule refuses is most often the
    /// first one after a purge of the partition's journal below a checkpoint this feed
    /// has not reached (a new node, or one down longer than the retention): the feed of
    /// the partition starts again at the checkpoint (after `batch`, which is sent
    /// first) and the entry is read again. Otherwise the partition's feed stops.
    /// Returns the records applied, or `None` when the store thread is gone.
    async fn take(&mut self, batch: &mut Batch, seq: u64, partition: u32, bytes: &[u8]) -> Option<usize> {
        let detail = match self.read(batch, seq, partition, bytes) {
            Ok(n) => return Some(n),
            Err(detail) => detail,
        };
        let behind = self.rules.get(&partition).map_or(0, |r| r.last_seq);
        let Some(seed) = self.checkpoint_past(partition, behind).await else {
            self.stop(partition, seq, &detail);
            return Some(0);
        };
        tracing::info!(
            partition,
            from_seq = behind,
            checkpoint_seq = seed.rule.last_seq,
            "the partition's journal was purged past this feed; its feed starts again at the checkpoint"
        );
        self.rules.insert(partition, seed.rule.clone());
        let unsent = std::mem::replace(batch, self.new_batch());
        if self.tx.send(unsent).await.is_err() {
            return None;
        }
        let seeded = Batch { seeds: vec![seed], ..self.new_batch() };
        if self.tx.send(seeded).await.is_err() {
            return None;
        }
        match self.read(batch, seq, partition, bytes) {
            Ok(n) => Some(n),
            Err(detail) => {
                self.stop(partition, seq, &detail);
                Some(0)
            }
        }
    }

    /// The partition's checkpoint, when there is one past `behind`; retried (with the
    /// feed's health failed) until the cluster answers.
    async fn checkpoint_past(&self, partition: u32, behind: u64) -> Option<FeedSeed> {
        let checkpoints = self.checkpoints.as_ref()?;
        let mut backoff = Backoff::new(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
        loop {
            // A replica a moment behind the purge may answer the read.
            let past = crate::cluster::engine::read_visible(|| async {
                Ok::<_, String>(checkpoints.current(partition).await?.map(|(seed, _)| seed).filter(|s| s.rule.last_seq > behind))
            });
            match past.await {
                Ok(found) => return found,
                Err(e) => {
                    let attempts = self.health.failed(format!("cannot read partition {partition}'s feed checkpoint: {e}"));
                    tracing::warn!(partition, error = %e, attempts, "cannot read the partition's feed checkpoint; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Stops the partition's feed, loudly: its readers get 503 and `/readyz` says so.
    fn stop(&self, partition: u32, seq: u64, detail: &str) {
        self.inner.stopped_partitions.lock().insert(partition);
        self.health.failed(format!("partition {partition}'s journal cannot be read at stream sequence {seq}: {detail}"));
        tracing::error!(partition, seq, detail, "the feed of this partition stopped: its journal cannot be applied");
    }
}

/// What one entry of a partition's journal gives the feed.
pub struct EntryFeed {
    /// The partition's rule after the entry.
    pub rule: Replay,
    /// Its events and subscription changes (no sources, no `last_lsn`).
    pub batch: Batch,
    /// The records applied (0 for an entry the rule ignores).
    pub records: usize,
    /// The time of its newest record applied.
    pub newest_at: Option<Timestamp>,
}

/// Judges the entry at `seq` by `rule` (left as it is) and collects what it gives the
/// feed: the one reading of an entry for the feed and for its checkpoints. `Err` when
/// the entry cannot be decoded or the rule refuses it.
pub fn judge_entry(rule: &Replay, seq: u64, bytes: &[u8]) -> Result<EntryFeed, String> {
    let mut rule = rule.clone();
    let e = entry::decode(bytes).map_err(|d| d.to_string())?;
    let mut out = EntryFeed { rule: Replay::new(), batch: Batch::default(), records: 0, newest_at: None };
    if rule.judge(seq, &e.header).map_err(|e| e.detail)? == Verdict::Apply {
        let mut imports = Vec::new();
        for (lsn, payload) in &e.records {
            match event::decode(payload) {
                Ok(WalRecord::Brand(rec)) => {
                    out.newest_at = out.newest_at.max(Some(rec.at));
                    collect_record(&mut out.batch, &mut imports, &rec, *lsn);
                }
                Ok(WalRecord::Registry(_)) => {}
                Err(detail) => return Err(format!("record {lsn} cannot be decoded: {detail}")),
            }
        }
        out.records = e.records.len();
    }
    out.rule = rule;
    Ok(out)
}

/// The store thread: commits each batch (retrying the same batch after a store error,
/// on a backoff), wakes the readers, prunes by age.
pub(super) struct Writer {
    pub(super) cfg: FeedConfig,
    pub(super) store: Store,
    pub(super) rx: mpsc::Receiver<Batch>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) clock: SharedClock,
    pub(super) inner: Arc<Inner>,
}

impl Writer {
    pub(super) fn run(mut self) {
        crate::background::run_in_background();
        let health = crate::health::global().worker(crate::health::Worker::Feed);
        let _stopped = health.until_dropped();
        tracing::info!(covered_seq = self.store.covered_lsn(), "feed started (cluster journal)");
        let mut last_prune = Instant::now();
        loop {
            let rx = &mut self.rx;
            match self.runtime.block_on(async { tokio::time::timeout(IDLE_WAIT, rx.recv()).await }) {
                Ok(Some(batch)) => self.commit(&batch, &health),
                Ok(None) => break,
                Err(_) => {}
            }
            if last_prune.elapsed() >= self.cfg.prune_interval {
                last_prune = Instant::now();
                match self.store.prune_by_age(self.clock.now()) {
                    Ok(0) => {}
                    Ok(dropped) => tracing::info!(dropped, "feed events older than the retention dropped"),
                    Err(e) => tracing::warn!(error = %e, "pruning the feed failed; trying again later"),
                }
            }
        }
        tracing::info!(covered_seq = self.store.covered_lsn(), "feed stopped");
    }

    /// Commits `batch`, however many attempts it takes: the source has moved past it.
    fn commit(&mut self, batch: &Batch, health: &WorkerHealth) {
        let mut backoff = Backoff::new(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
        loop {
            // A commit whose answer was lost may have landed: the store says. (A
            // checkpoint does not move the covered sequence; applying it twice changes
            // nothing.)
            if self.store.covered_lsn() >= batch.last_lsn && batch.seeds.is_empty() {
                return;
            }
            match self.store.commit(batch) {
                Ok(touched) => {
                    // A stopped partition keeps the feed's health failed.
                    if self.inner.stopped_partitions.lock().is_empty() {
                        health.ok();
                    }
                    for (brand, last_seq) in touched {
                        self.inner.brand_tx(&brand).send_replace(last_seq);
                    }
                    if !batch.hooks.is_empty() {
                        self.inner.hooks_version.send_modify(|v| *v += 1);
                    }
                    self.inner.covered.send_replace(batch.last_lsn);
                    return;
                }
                Err(e) => {
                    let attempts = health.failed(&e);
                    let delay = backoff.next_delay();
                    tracing::error!(error = %e, attempts, retry_ms = delay.as_millis() as u64, "the feed cannot commit; retrying");
                    std::thread::sleep(delay);
                    if let Err(e) = self.reopen() {
                        tracing::error!(error = %e, "reopening the feed store failed");
                    }
                }
            }
        }
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        self.store = Store::open(&self.cfg.path, self.cfg.retention, &self.inner.history, &[])?;
        self.store.relax_durability()?;
        Ok(())
    }
}

/// The history a cluster's feed belongs to: the journal stream's, named by when the
/// stream was created, so that a node's feed store of another cluster (or of a stream
/// made again) is emptied instead of mixed in.
pub fn stream_history(stream: &stream::Stream) -> History {
    let created = stream.cached_info().created.unix_timestamp_nanos() as u64;
    History {
        id: crate::journal::history::HistoryId(created),
        after_lsn: 0,
        first: true,
        cause: crate::journal::history::Cause::New,
        parent: None,
    }
}
