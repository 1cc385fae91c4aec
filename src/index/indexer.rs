//! The indexer: one thread that owns the `IndexWriter` of every kind (SKUs,
//! shipments), pulls changed documents from the shards, and commits.
//!
//! A cycle: read `L0 = journal.last_assigned_lsn()`; drain every shard's dirty set
//! (`DrainDirty`: SKUs and shipments in one first-in-first-out order) and apply each
//! item to its kind's index; commit every index with `L0` in its payload; reload the
//! readers; publish `L0` as the covered LSN — one LSN for every kind, published only
//! once all of them are committed and visible. `L0` is covered because a shard applies
//! a record in the same actor message that appends it, so every record ≤ `L0` was
//! applied before the shard handled a drain sent after `L0` was read.
//!
//! Before committing, the cycle waits until `L1 = last_assigned_lsn()`, read *after*
//! the drains, is durable — not only `L0`. The drained state may include records past
//! `L0`; if one of them were lost in a crash, an index committed with it would keep a
//! change that never happened, and the catch-up (which only re-dirties SKUs touched by
//! records after `L0`) would never take it back. Anything a drain saw was appended
//! before the reply, so its LSN is at most `L1`.
//!
//! Cycles run every `commit_interval`, or at once when a search waits for an LSN the
//! index has not covered yet (a *nudge*). A cycle that found nothing to apply does not
//! commit: it publishes `L0` as covered straight away, since the reader already shows
//! everything up to it.
//!
//! An index error (a full disk, no file descriptors left) does not stop the indexer:
//! the covered LSN stops moving (searches that ask for `min_lsn` answer `not_ready`),
//! the health registry says `retrying`, and after a bounded exponential backoff
//! ([`RETRY_DELAY_MIN`] to [`RETRY_DELAY_MAX`]) the cycle runs again. Before that, the
//! failed cycle's writers are dropped (tantivy rolls back what they had not
//! committed; a new writer is opened on the next cycle) and every document it drained
//! since its last commit is put back in its shard's dirty set (`MarkDirty`), so the
//! next cycle indexes it again from the state then: nothing drained is lost, and the
//! covered LSN only moves once a commit holds everything at or below it. Only a stopped
//! journal or stopped shards end the indexer (the server is stopping).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::Addr;
use tantivy::query::TermSetQuery;
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument, Term};
use tokio::sync::watch;

use super::schema::{sku_doc, uid, Fields};
use super::shipments::schema::{self as shipment_schema, ShipmentFields};
pub use super::wake::Wake;
use super::{IndexError, Opened, Payload};
use crate::actors::drain::{DirtyKey, DocKind, DrainDirty, Drained, IndexItem, MarkDirty, ShipmentItem, SkuItem};
use crate::actors::shard::Shard;
use crate::domain::BrandId;
use crate::health::{Backoff, WorkerHealth};
use crate::journal::{Journal, LogRef, Lsn};

/// Default time between cycles: the freshness bound for searches without `min_lsn`.
pub const COMMIT_INTERVAL_DEFAULT: Duration = Duration::from_millis(200);
/// Shortest time between two cycles, so a stream of nudges still batches its commits.
pub const CYCLE_SPACING_MIN: Duration = Duration::from_millis(5);
/// After a cycle, the indexer rests this many times as long as the cycle took before
/// the next one starts (nudged or not), so under a sustained stream of changes it is
/// busy at most a quarter of the time: the longer the cycles, the more changes to a
/// SKU coalesce into one re-indexing, instead of the indexer taking a core from the
/// writes (a 1M-row import re-indexed nearly a document per row at 200 ms cycles).
/// (6 was tried: under a flood of single changes over 10,000 SKUs re-indexing took
/// 0.15 cores instead of 0.17, within the noise, for twice the staleness.)
pub const REST_PER_BUSY: u32 = 3;
/// The rest when a search waits for `min_lsn` (a nudge): as long as the cycle took,
/// so read-your-writes searches still get a cycle soon, at most half the time busy.
pub const NUDGED_REST_PER_BUSY: u32 = 1;
/// The longest rest, so a search waiting for `min_lsn` still gets its cycle well
/// within its wait.
pub const REST_MAX: Duration = Duration::from_secs(1);
/// Most items one `DrainDirty` asks for.
pub const DRAIN_ITEMS_MAX: usize = 2048;
/// Most applied items before a commit within a long cycle (a rebuild), so the writer's
/// memory and the work lost to a crash stay bounded.
pub const COMMIT_DOCS_MAX: usize = 100_000;
/// Longest the last cycle (at shutdown) indexes before it commits what it covers and
/// leaves the rest to the catch-up of the next start (which re-reads the journal from
/// the committed LSN, as after a crash). Without it, a shutdown right after a burst
/// over many SKUs indexed every one of them first (31 s after 4 M changes over 1 M
/// SKUs), past a supervisor's usual grace period.
pub const LAST_CYCLE_MAX_DEFAULT: Duration = Duration::from_secs(5);
/// Memory of the writer's indexing buffer (one indexing thread).
pub const WRITER_MEMORY_BYTES: usize = 64 << 20;
/// The first wait before a cycle that failed runs again; each failure in a row doubles
/// it, up to [`RETRY_DELAY_MAX`].
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two attempts: how long the index may stay behind after the
/// disk space or descriptors it lacked come back.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(30);

/// Where changed SKUs come from: the shards in the server, anything in tests.
pub trait DirtySource: Send + 'static {
    fn shard_count(&self) -> usize;
    fn drain(&self, shard: usize, max: usize) -> Result<Drained, SourceError>;
    /// Puts drained documents (and partitions to purge) back (their cycle failed),
    /// ahead of the next drain. A stopped shard drops them: the next start's catch-up
    /// finds them in the journal.
    fn requeue(&self, shard: usize, keys: Vec<DirtyKey>, purged: Vec<u32>);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceError {
    /// The shard's mailbox is full; try again next cycle.
    Busy,
    /// The shard has stopped.
    Stopped,
}

/// The shard actors, asked from a plain thread: `try_send` (never past the mailbox
/// bound) and a blocking wait on the reply.
pub struct ShardSource(pub Vec<Addr<Shard>>);

impl DirtySource for ShardSource {
    fn shard_count(&self) -> usize {
        self.0.len()
    }

    fn drain(&self, shard: usize, max: usize) -> Result<Drained, SourceError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.0[shard].try_send(DrainDirty { max, reply }).map_err(|e| match e {
            actix::prelude::SendError::Full(_) => SourceError::Busy,
            actix::prelude::SendError::Closed(_) => SourceError::Stopped,
        })?;
        rx.blocking_recv().map_err(|_| SourceError::Stopped)
    }

    fn requeue(&self, shard: usize, keys: Vec<DirtyKey>, purged: Vec<u32>) {
        // Past the mailbox bound: one message after a failed cycle (failures are spaced
        // by the backoff), and it must reach the shard before the next drain.
        self.0[shard].do_send(MarkDirty { keys, purged });
    }
}

/// The running indexer thread.
pub struct IndexerHandle {
    wake: Arc<Wake>,
    thread: Option<JoinHandle<()>>,
}

impl IndexerHandle {
    /// Runs a last cycle (so the index is committed up to the journal), then stops.
    /// Blocking: call it off the async executors, before the journal shuts down.
    pub fn shutdown(mut self) {
        self.wake.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One index the indexer writes: its writer (opened again after a failure), the
/// reader searches use, its fields and the format its commits carry.
pub struct Target<F> {
    pub index: Index,
    /// `None` after a failure dropped it; the next use opens a new one.
    pub writer: Option<IndexWriter<TantivyDocument>>,
    pub reader: IndexReader,
    pub fields: F,
    pub format: u32,
}

impl<F> Target<F> {
    /// The writer (one indexing thread) and a manually reloaded reader of an index.
    pub fn open(opened: Opened<F>) -> Result<Target<F>, IndexError> {
        let Opened { index, fields, format, .. } = opened;
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        let reader = index.reader_builder().reload_policy(tantivy::ReloadPolicy::Manual).try_into()?;
        Ok(Target { index, writer: Some(writer), reader, fields, format })
    }

    /// The writer, opened first if a failure dropped it, and the fields.
    fn writer(&mut self) -> Result<(&mut IndexWriter<TantivyDocument>, &F), IndexError> {
        if self.writer.is_none() {
            self.writer = Some(self.index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?);
        }
        Ok((self.writer.as_mut().expect("opened above"), &self.fields))
    }

    /// Drops the writer: tantivy rolls back everything it had not committed, and
    /// releases the index's writer lock for the next one.
    fn discard_writer(&mut self) {
        self.writer = None;
    }

    fn commit(&mut self, lsn: Lsn) -> Result<(), IndexError> {
        let format = self.format;
        let (writer, _) = self.writer()?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&Payload { format, lsn }.encode());
        prepared.commit()?;
        Ok(())
    }
}

/// The documents (and partitions purged) a cycle drained since its last commit, per
/// shard: what goes back to the shards when the cycle fails.
struct Taken(Vec<(Vec<DirtyKey>, Vec<u32>)>);

impl Taken {
    fn note(&mut self, shard: usize, drained: &Drained) {
        self.0[shard].0.extend(drained.items.iter().map(key_of));
        self.0[shard].1.extend(&drained.purged);
    }

    fn committed(&mut self) {
        self.0.iter_mut().for_each(|taken| *taken = Default::default());
    }
}

/// What the index follows: the records the shards apply, and when they are durable.
pub enum Followed {
    /// The single node's journal: the covered LSN is its LSN.
    Journal(Journal),
    /// Cluster mode: the log of each partition installed on this node (kept by the
    /// actor host: a partition's log is in the map only once its documents are marked
    /// for indexing, and leaves it before the partition is removed). Coverage is per
    /// partition. The index is rebuilt at every start and a partition is indexed whole
    /// when it arrives and purged when it leaves, so nothing waits for durability: a
    /// change that never becomes durable leaves with its partition.
    Partitions(Arc<parking_lot::Mutex<BTreeMap<u32, LogRef>>>),
}

/// Per partition, the LSN the index covers (cluster mode).
pub type PartitionMarks = BTreeMap<u32, Lsn>;

impl Followed {
    /// The journal's last assigned LSN (0 in cluster mode), and each installed
    /// partition's.
    fn assigned(&self) -> (Lsn, PartitionMarks) {
        match self {
            Followed::Journal(j) => (j.last_assigned_lsn(), BTreeMap::new()),
            Followed::Partitions(logs) => (0, logs.lock().iter().map(|(p, log)| (*p, log.last_assigned_lsn())).collect()),
        }
    }

    /// Waits until everything a drain could have seen is durable (the single node).
    fn wait_durable(&self) -> Result<(), IndexError> {
        match self {
            Followed::Journal(j) => j.wait_durable_blocking(j.last_assigned_lsn()).map_err(|_| IndexError::Stopped("journal")),
            Followed::Partitions(_) => Ok(()),
        }
    }
}

/// The dirty-set key of an item.
fn key_of(item: &IndexItem) -> DirtyKey {
    match item {
        IndexItem::Sku(SkuItem::Upsert { brand, sku, .. } | SkuItem::Delete { brand, sku }) => (brand.clone(), DocKind::Sku, sku.clone()),
        IndexItem::Shipment(ShipmentItem::Upsert { brand, shipment }) => (brand.clone(), DocKind::Shipment, shipment.id.clone()),
        IndexItem::Shipment(ShipmentItem::Delete { brand, id }) => (brand.clone(), DocKind::Shipment, id.clone()),
    }
}

pub struct Indexer {
    pub skus: Target<Fields>,
    pub shipments: Target<ShipmentFields>,
    pub source: Box<dyn DirtySource>,
    pub followed: Followed,
    pub covered_tx: watch::Sender<Lsn>,
    /// Cluster mode: the partition count (documents carry their brand's partition)
    /// and where the covered LSN of each partition is published.
    pub partitions: Option<(u32, watch::Sender<Arc<PartitionMarks>>)>,
    pub wake: Arc<Wake>,
    pub commit_interval: Duration,
    /// See [`LAST_CYCLE_MAX_DEFAULT`].
    pub last_cycle_max: Duration,
    /// The lower of the LSNs in the last commit payloads.
    pub committed_lsn: Lsn,
    /// Where the indexer says whether it is retrying.
    pub health: WorkerHealth,
}

impl Indexer {
    /// Starts the thread. The first cycle runs at once (catch-up after a start).
    pub fn spawn(self) -> std::io::Result<IndexerHandle> {
        let wake = self.wake.clone();
        wake.nudge();
        let thread = std::thread::Builder::new().name("zaiko-indexer".into()).spawn(move || self.run())?;
        Ok(IndexerHandle { wake, thread: Some(thread) })
    }

    fn run(mut self) {
        // Background priority, inherited by the indexing threads tantivy starts from
        // here at each commit: under a flood of writes the index falls behind (its
        // cycles and rests stretch, more changes coalesce) instead of taking the CPU
        // of the requests. A search that waits for `min_lsn` waits longer then.
        crate::background::run_in_background();
        let _stopped = self.health.until_dropped();
        let mut backoff = Backoff::new(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
        // Start of the last cycle, and when the rest after it ends (nudged or not).
        let mut last: Option<Instant> = None;
        let (mut nudged_rested, mut rested) = (Instant::now(), Instant::now());
        loop {
            // Cycles start every `commit_interval` (start to start), so a change waits
            // at most one interval plus one cycle (and its rest) to become visible.
            let mut stop = self.wake.rest(nudged_rested, rested);
            if !stop {
                let since = last.map_or(self.commit_interval, |l| l.elapsed());
                stop = self.wake.wait(self.commit_interval.saturating_sub(since));
            }
            let began = Instant::now();
            last = Some(began);
            match self.cycle(stop) {
                Ok(()) => {
                    self.health.ok();
                    backoff.reset();
                }
                Err(IndexError::Stopped(what)) => {
                    tracing::info!(stopped = what, "search indexer stopped");
                    return;
                }
                Err(e) if stop => {
                    tracing::error!(error = %e, lsn = self.committed_lsn, "search index not committed at shutdown; the next start catches it up from the journal");
                    return;
                }
                Err(e) => {
                    let attempts = self.health.failed(&e);
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = %e,
                        attempts,
                        retry_ms = delay.as_millis() as u64,
                        covered_lsn = self.covered(),
                        "search indexer failed; retrying (searches stay at the covered lsn, min_lsn searches answer not_ready)"
                    );
                    // Nudges do not shorten the wait: a search asking for `min_lsn`
                    // must not turn the backoff into a busy loop. A stop ends it (and
                    // the last cycle makes one more attempt).
                    let until = Instant::now() + delay;
                    self.wake.rest(until, until);
                    (nudged_rested, rested) = (Instant::now(), Instant::now());
                    continue;
                }
            }
            if stop {
                tracing::info!(lsn = self.committed_lsn, "search index committed; indexer stopped");
                return;
            }
            let (busy, now) = (began.elapsed(), Instant::now());
            (nudged_rested, rested) = (now + rest_after(busy, NUDGED_REST_PER_BUSY), now + rest_after(busy, REST_PER_BUSY));
        }
    }

    /// One cycle. `last` forces a commit of the covered LSN (shutdown). On failure, the
    /// writers are dropped (rolling back what was not committed) and what the cycle
    /// drained since its last commit goes back to the shards.
    fn cycle(&mut self, last: bool) -> Result<(), IndexError> {
        let mut taken = Taken(vec![Default::default(); self.source.shard_count()]);
        let result = self.cycle_inner(last, &mut taken);
        if let Err(e) = &result {
            if !matches!(e, IndexError::Stopped(_)) {
                self.skus.discard_writer();
                self.shipments.discard_writer();
            }
            for (shard, (keys, purged)) in taken.0.into_iter().enumerate().filter(|(_, (k, p))| !k.is_empty() || !p.is_empty()) {
                self.source.requeue(shard, keys, purged);
            }
        }
        result
    }

    fn cycle_inner(&mut self, last: bool, taken: &mut Taken) -> Result<(), IndexError> {
        let (l0, marks) = self.followed.assigned();
        let mut pending = 0usize;
        let mut committed_mid_cycle = false;
        let mut complete = true;
        let started = Instant::now();
        'shards: for shard in 0..self.source.shard_count() {
            // How many of the SKUs waiting at this shard's first drain are still to be
            // taken: drains take the oldest first, so at zero every SKU dirtied by a
            // record up to `l0` is in, and the cycle ends however fast writes arrive.
            let mut left = usize::MAX;
            loop {
                if last && started.elapsed() >= self.last_cycle_max {
                    // Shutting down with more to index than the bound allows: commit
                    // the LSN covered so far; the next start catches up from it.
                    complete = false;
                    break 'shards;
                }
                let drained = match self.source.drain(shard, left.min(DRAIN_ITEMS_MAX)) {
                    Ok(d) => d,
                    // On the last cycle a stopped shard is not an error: what it still
                    // holds is re-found by the catch-up from the committed LSN.
                    Err(SourceError::Busy) | Err(SourceError::Stopped) if last => {
                        complete = false;
                        break;
                    }
                    Err(SourceError::Busy) => {
                        complete = false;
                        break;
                    }
                    Err(SourceError::Stopped) => return Err(IndexError::Stopped("shards")),
                };
                let count = drained.items.len();
                left = if left == usize::MAX { drained.remaining } else { left.saturating_sub(count) };
                pending += count + drained.purged.len();
                taken.note(shard, &drained);
                // Before the items: those of a partition installed again come after.
                self.purge(&drained.purged)?;
                self.apply(drained.items)?;
                if pending >= COMMIT_DOCS_MAX {
                    // Progress, but not coverage: other shards are not drained yet.
                    self.commit(self.covered())?;
                    taken.committed();
                    pending = 0;
                    committed_mid_cycle = true;
                }
                if left == 0 || count == 0 {
                    break;
                }
            }
        }
        let covered = if complete { l0 } else { self.covered() };
        if pending > 0 || ((last || committed_mid_cycle) && covered > self.committed_lsn) {
            self.commit(covered)?;
            taken.committed();
        }
        self.covered_tx.send_if_modified(|c| {
            let moved = covered > *c;
            *c = (*c).max(covered);
            moved
        });
        if let (true, Some((_, tx))) = (complete, &self.partitions) {
            tx.send_if_modified(|c| {
                let moved = **c != marks;
                if moved {
                    *c = Arc::new(marks);
                }
                moved
            });
        }
        Ok(())
    }

    /// Deletes the documents of partitions that left this node (cluster mode).
    fn purge(&mut self, partitions: &[u32]) -> Result<(), IndexError> {
        for p in partitions {
            tracing::info!(partition = p, "search documents of a partition that left this node deleted");
            let (writer, fields) = self.skus.writer()?;
            writer.delete_term(Term::from_field_u64(fields.partition, u64::from(*p)));
            let (writer, fields) = self.shipments.writer()?;
            writer.delete_term(Term::from_field_u64(fields.partition, u64::from(*p)));
        }
        Ok(())
    }

    /// The LSN searches are told the index covers: everything the reader shows.
    fn covered(&self) -> Lsn {
        *self.covered_tx.borrow()
    }

    fn apply(&mut self, items: Vec<IndexItem>) -> Result<(), IndexError> {
        let (mut skus, mut shipments) = (Vec::new(), Vec::new());
        for item in items {
            match item {
                IndexItem::Sku(i) => skus.push(i),
                IndexItem::Shipment(i) => shipments.push(i),
            }
        }
        let partitions = self.partitions.as_ref().map(|(n, _)| *n);
        if !skus.is_empty() {
            let (writer, fields) = self.skus.writer()?;
            apply_items(writer, fields, skus, partitions)?;
        }
        if !shipments.is_empty() {
            let (writer, fields) = self.shipments.writer()?;
            apply_shipment_items(writer, fields, shipments, partitions)?;
        }
        Ok(())
    }

    /// Commits what was applied to every index, with `lsn` as the covered LSN, once
    /// everything the drains could have seen is durable; then makes it visible to
    /// searches. Every index is committed, changed or not, so that their payloads
    /// move together and an idle kind never falls behind a snapshot (which would
    /// force its rebuild on the next start).
    fn commit(&mut self, lsn: Lsn) -> Result<(), IndexError> {
        let started = Instant::now();
        self.followed.wait_durable()?;
        let durable = started.elapsed();
        self.skus.commit(lsn)?;
        self.shipments.commit(lsn)?;
        let committed = started.elapsed();
        self.skus.reader.reload()?;
        self.shipments.reader.reload()?;
        self.committed_lsn = lsn;
        tracing::debug!(
            lsn,
            wait_durable_us = durable.as_micros() as u64,
            commit_us = (committed - durable).as_micros() as u64,
            reload_us = (started.elapsed() - committed).as_micros() as u64,
            "search index committed"
        );
        Ok(())
    }
}

/// How long the indexer rests after a cycle that took `busy`, `per_busy` times as long
/// within bounds.
pub fn rest_after(busy: Duration, per_busy: u32) -> Duration {
    (busy * per_busy).clamp(CYCLE_SPACING_MIN, REST_MAX)
}

/// Applies a batch of SKU changes: one delete of every changed SKU's `uid` term, then
/// an add per upsert, whose opstamps come after the delete's, so they survive it.
///
/// One delete per batch, not one per SKU: tantivy keeps each queued delete as a term
/// weight with its own 1 KiB BM25 cache until the next commit, so deleting term by term
/// held ~1.2 KiB per changed SKU (120 MiB at `COMMIT_DOCS_MAX`), and the freed heap
/// stayed resident. A `TermSetQuery` holds the batch's terms as one small FST.
/// With `partitions` (cluster mode), each document carries its brand's partition.
pub fn apply_items(
    writer: &IndexWriter<TantivyDocument>,
    fields: &Fields,
    items: Vec<SkuItem>,
    partitions: Option<u32>,
) -> Result<(), IndexError> {
    let keyed = items.into_iter().map(|item| {
        let key = match &item {
            SkuItem::Upsert { brand, sku, .. } | SkuItem::Delete { brand, sku } => uid(brand, sku),
        };
        (key, item)
    });
    apply_batch(writer, fields.uid, keyed, |item| match item {
        SkuItem::Upsert { brand, brand_name, sku, state, channels } => {
            let mut doc = sku_doc(fields, &brand, &brand_name, &sku, &state, &channels);
            mark_partition(&mut doc, fields.partition, &brand, partitions);
            Some(doc)
        }
        SkuItem::Delete { .. } => None,
    })
}

/// Applies a batch of shipment changes, the same way.
pub fn apply_shipment_items(
    writer: &IndexWriter<TantivyDocument>,
    fields: &ShipmentFields,
    items: Vec<ShipmentItem>,
    partitions: Option<u32>,
) -> Result<(), IndexError> {
    let keyed = items.into_iter().map(|item| {
        let key = match &item {
            ShipmentItem::Upsert { brand, shipment } => shipment_schema::uid(brand, shipment.id.as_str()),
            ShipmentItem::Delete { brand, id } => shipment_schema::uid(brand, id.as_str()),
        };
        (key, item)
    });
    apply_batch(writer, fields.uid, keyed, |item| match item {
        ShipmentItem::Upsert { brand, shipment } => {
            let mut doc = shipment_schema::shipment_doc(fields, &brand, &shipment);
            mark_partition(&mut doc, fields.partition, &brand, partitions);
            Some(doc)
        }
        ShipmentItem::Delete { .. } => None,
    })
}

/// Cluster mode: the document carries its brand's partition (of `partitions`).
fn mark_partition(doc: &mut TantivyDocument, field: tantivy::schema::Field, brand: &BrandId, partitions: Option<u32>) {
    if let Some(n) = partitions {
        doc.add_u64(field, u64::from(crate::cluster::engine::partition_of(brand.as_str(), n)));
    }
}

/// Deletes every document whose `uid_field` holds one of the batch's keys, then adds
/// the document `doc` makes of each item (none for a delete). Where a key comes twice,
/// its last item is the one that counts.
fn apply_batch<I>(
    writer: &IndexWriter<TantivyDocument>,
    uid_field: tantivy::schema::Field,
    items: impl Iterator<Item = (String, I)>,
    doc: impl Fn(I) -> Option<TantivyDocument>,
) -> Result<(), IndexError> {
    let mut last: foldhash::HashMap<String, I> = foldhash::HashMap::default();
    let mut order = Vec::new();
    for (key, item) in items {
        if last.insert(key.clone(), item).is_none() {
            order.push(key);
        }
    }
    if order.is_empty() {
        return Ok(());
    }
    let terms: Vec<Term> = order.iter().map(|k| Term::from_field_text(uid_field, k)).collect();
    // `delete_query` is public but `#[doc(hidden)]` in tantivy 0.27 (pinned); it is what
    // `delete_term` calls with a `TermQuery`.
    writer.delete_query(Box::new(TermSetQuery::new(terms)))?;
    for key in &order {
        if let Some(d) = last.remove(key).and_then(&doc) {
            writer.add_document(d)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parking_lot::Mutex;
    use tantivy::ReloadPolicy;

    use super::*;
    use crate::actors::drain::DirtySet;
    use crate::domain::brand::SkuState;
    use crate::domain::{BrandId, Id};
    use crate::index::{Kind, SHIPMENTS, SKUS};
    use crate::journal::{JournalConfig, OpenOptions};

    /// One shard whose writes outpace the indexer: every drain dirties as many new
    /// SKUs as it takes. Gives up (`Stopped`) after `DRAINS_MAX` drains, so a cycle
    /// that never ends fails the test instead of hanging it.
    struct Flood {
        dirty: Mutex<DirtySet>,
        next: AtomicUsize,
        drains: AtomicUsize,
    }

    const DRAINS_MAX: usize = 1000;

    fn key(i: usize) -> DirtyKey {
        (BrandId::parse("b").unwrap(), DocKind::Sku, Id::parse(&format!("S{i}")).unwrap())
    }

    impl DirtySource for Arc<Flood> {
        fn shard_count(&self) -> usize {
            1
        }

        fn drain(&self, _shard: usize, max: usize) -> Result<Drained, SourceError> {
            if self.drains.fetch_add(1, Ordering::Relaxed) >= DRAINS_MAX {
                return Err(SourceError::Stopped);
            }
            let mut dirty = self.dirty.lock();
            let items: Vec<IndexItem> = std::iter::from_fn(|| dirty.pop())
                .take(max)
                .map(|(brand, _, sku)| {
                    IndexItem::Sku(SkuItem::Upsert {
                        brand,
                        brand_name: "b".into(),
                        sku,
                        state: Box::new(sku_state()),
                        channels: Vec::new(),
                    })
                })
                .collect();
            let remaining = dirty.len();
            // The writes that arrive while the indexer applies this batch.
            for _ in 0..items.len() {
                dirty.insert(key(self.next.fetch_add(1, Ordering::Relaxed)));
            }
            Ok(Drained { purged: Vec::new(), more: remaining > 0, remaining, items })
        }

        fn requeue(&self, _shard: usize, keys: Vec<DirtyKey>, _purged: Vec<u32>) {
            self.dirty.lock().extend(keys);
        }
    }

    fn sku_state() -> SkuState {
        SkuState {
            catalog: crate::domain::catalog::Catalog { name: "ニット".into(), ..Default::default() },
            version: 1,
            stock_version: 0,
            levels: Default::default(),
            created_at: crate::domain::Timestamp(0),
            updated_at: crate::domain::Timestamp(0),
        }
    }

    #[test]
    fn the_rest_after_a_cycle_grows_with_it_within_bounds() {
        assert_eq!(rest_after(Duration::from_micros(300), REST_PER_BUSY), CYCLE_SPACING_MIN, "a short cycle still spaces nudges");
        assert_eq!(rest_after(Duration::from_millis(100), REST_PER_BUSY), Duration::from_millis(300));
        assert_eq!(rest_after(Duration::from_millis(100), NUDGED_REST_PER_BUSY), Duration::from_millis(100));
        assert_eq!(rest_after(Duration::from_secs(2), REST_PER_BUSY), REST_MAX, "a search waiting for min_lsn is not kept past its wait");
    }

    #[test]
    fn a_stop_ends_a_rest() {
        let wake = Arc::new(Wake::default());
        let far = Instant::now() + Duration::from_secs(3600);
        let w = wake.clone();
        let stopper = std::thread::spawn(move || w.stop());
        assert!(wake.rest(far, far), "a stop ends the rest");
        stopper.join().unwrap();
    }

    #[test]
    fn a_cycle_ends_and_covers_its_lsn_while_writes_keep_coming() {
        let dir = tempfile::tempdir().unwrap();
        let opts = OpenOptions { config: JournalConfig { segment_bytes: 1 << 24, ..JournalConfig::default() }, replay_after: 0 };
        let (journal, _) = crate::journal::open(dir.path(), opts, |_, _| Ok(())).unwrap();
        let mut lsn = 0;
        for _ in 0..3 {
            lsn = journal.append(vec![1, 2, 3]).unwrap();
        }
        let waiting = 3 * DRAIN_ITEMS_MAX + 5;
        let flood = Arc::new(Flood {
            dirty: Mutex::new((0..waiting).map(key).collect()),
            next: AtomicUsize::new(waiting),
            drains: AtomicUsize::new(0),
        });
        let (covered_tx, covered_rx) = watch::channel(0);
        let mut indexer = indexer(Box::new(flood.clone()), &journal, covered_tx);
        indexer.cycle(false).expect("the cycle ends");
        assert_eq!(*covered_rx.borrow(), lsn, "the cycle covers the lsn read before its drains");
        assert_eq!(flood.drains.load(Ordering::Relaxed), 4, "it drains what was waiting, no more");
        assert!(indexer.skus.reader.searcher().num_docs() >= waiting as u64, "everything waiting is indexed and visible");
        journal.shutdown();
    }

    fn ram_target<F>(kind: Kind<F>) -> Target<F> {
        let (schema, fields) = (kind.build)();
        let index = Index::create_in_ram(schema);
        super::super::register_tokenizer(&index);
        let reader: IndexReader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().unwrap();
        let writer = Some(index.writer_with_num_threads(1, 15_000_000).unwrap());
        Target { index, writer, reader, fields, format: kind.format }
    }

    fn indexer(source: Box<dyn DirtySource>, journal: &Journal, covered_tx: watch::Sender<Lsn>) -> Indexer {
        Indexer {
            skus: ram_target(SKUS),
            shipments: ram_target(SHIPMENTS),
            source,
            followed: Followed::Journal(journal.clone()),
            covered_tx,
            partitions: None,
            wake: Arc::new(Wake::default()),
            commit_interval: COMMIT_INTERVAL_DEFAULT,
            last_cycle_max: LAST_CYCLE_MAX_DEFAULT,
            committed_lsn: 0,
            health: WorkerHealth::detached(crate::health::Worker::Indexer),
        }
    }

    /// One shard holding fixed items, handed out in order.
    struct Fixed(Mutex<Vec<IndexItem>>);

    impl DirtySource for Arc<Fixed> {
        fn shard_count(&self) -> usize {
            1
        }

        fn drain(&self, _shard: usize, max: usize) -> Result<Drained, SourceError> {
            let mut items = self.0.lock();
            let n = max.min(items.len());
            let taken: Vec<IndexItem> = items.drain(..n).collect();
            Ok(Drained { purged: Vec::new(), more: !items.is_empty(), remaining: items.len(), items: taken })
        }

        fn requeue(&self, _shard: usize, keys: Vec<DirtyKey>, _purged: Vec<u32>) {
            panic!("no cycle of these tests fails, yet {} documents came back", keys.len());
        }
    }

    /// One shard whose drains are scripted, then empty.
    struct Script(Mutex<std::collections::VecDeque<Drained>>);

    impl DirtySource for Arc<Script> {
        fn shard_count(&self) -> usize {
            1
        }

        fn drain(&self, _shard: usize, _max: usize) -> Result<Drained, SourceError> {
            let next = self.0.lock().pop_front();
            Ok(next.unwrap_or(Drained { purged: Vec::new(), items: Vec::new(), more: false, remaining: 0 }))
        }

        fn requeue(&self, _shard: usize, keys: Vec<DirtyKey>, _purged: Vec<u32>) {
            panic!("no cycle of this test fails, yet {} documents came back", keys.len());
        }
    }

    #[test]
    fn a_partition_that_leaves_is_purged_before_its_next_stay_is_indexed() {
        let upsert = |sku: usize| {
            IndexItem::Sku(SkuItem::Upsert {
                brand: BrandId::parse("b").unwrap(),
                brand_name: "b".into(),
                sku: key(sku).2,
                state: Box::new(sku_state()),
                channels: vec![],
            })
        };
        let partition = crate::cluster::engine::partition_of("b", 4);
        let drained = |purged: Vec<u32>, items: Vec<IndexItem>| Drained { purged, items, more: false, remaining: 0 };
        // The partition's first stay indexes S1 and S2; it leaves, S2 is deleted on its
        // other owner, and it comes back with S1 only: one drain, the purge first.
        let script =
            Arc::new(Script(Mutex::new([drained(vec![], vec![upsert(1), upsert(2)]), drained(vec![partition], vec![upsert(1)])].into())));
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = crate::journal::open(dir.path(), OpenOptions::default(), |_, _| Ok(())).unwrap();
        let (covered_tx, _) = watch::channel(0);
        let (marks_tx, marks_rx) = watch::channel(Arc::default());
        let mut ix = Indexer {
            followed: Followed::Partitions(Arc::default()),
            partitions: Some((4, marks_tx)),
            ..indexer(Box::new(script), &journal, covered_tx)
        };
        let in_partition = |ix: &Indexer| {
            let term = Term::from_field_u64(ix.skus.fields.partition, u64::from(partition));
            let query = tantivy::query::TermQuery::new(term, tantivy::schema::IndexRecordOption::Basic);
            ix.skus.reader.searcher().search(&query, &tantivy::collector::Count).unwrap()
        };
        ix.cycle(false).unwrap();
        assert_eq!(ix.skus.reader.searcher().num_docs(), 2);
        assert_eq!(in_partition(&ix), 2, "documents carry their partition");
        assert!(marks_rx.borrow().is_empty(), "no partition is installed, none is covered");
        ix.cycle(false).unwrap();
        assert_eq!(ix.skus.reader.searcher().num_docs(), 1, "S2 went with the purge; S1 of the second stay stays");
        assert_eq!(in_partition(&ix), 1);
        journal.shutdown();
    }

    fn shipment(id: &str) -> crate::domain::view::ShipmentSummary {
        crate::domain::view::ShipmentSummary {
            id: Id::parse(id).unwrap(),
            order_ref: None,
            channel: None,
            status: crate::domain::fulfilment::ShipmentStatus::Accepted,
            tracking_number: None,
            carrier: None,
            skus: vec![Id::parse("S1").unwrap()],
            reservation_id: None,
            created_at: crate::domain::Timestamp(1),
            updated_at: crate::domain::Timestamp(1),
        }
    }

    #[test]
    fn the_last_cycle_stops_at_its_bound_and_commits_only_what_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let opts = OpenOptions { config: JournalConfig { segment_bytes: 1 << 24, ..JournalConfig::default() }, replay_after: 0 };
        let (journal, _) = crate::journal::open(dir.path(), opts, |_, _| Ok(())).unwrap();
        let lsn = journal.append(vec![1]).unwrap();
        let item = || {
            IndexItem::Sku(SkuItem::Upsert {
                brand: BrandId::parse("b").unwrap(),
                brand_name: "b".into(),
                sku: key(1).2,
                state: Box::new(sku_state()),
                channels: vec![],
            })
        };
        // No time left: nothing is drained, the covered LSN stays where it was, and the
        // waiting item stays for the catch-up.
        let source = Arc::new(Fixed(Mutex::new(vec![item()])));
        let (covered_tx, covered_rx) = watch::channel(0);
        let mut ix = indexer(Box::new(source.clone()), &journal, covered_tx);
        ix.last_cycle_max = Duration::ZERO;
        ix.cycle(true).unwrap();
        assert_eq!((*covered_rx.borrow(), ix.committed_lsn), (0, 0), "nothing covered beyond what was");
        assert_eq!(source.0.lock().len(), 1, "the waiting item was not taken");
        // The bound only applies to the last cycle: a normal one takes everything.
        ix.cycle(false).unwrap();
        assert_eq!(*covered_rx.borrow(), lsn);
        assert_eq!(ix.skus.reader.searcher().num_docs(), 1);
        // With time enough, the last cycle covers the journal.
        let (covered_tx, covered_rx) = watch::channel(0);
        let mut ix = indexer(Box::new(Arc::new(Fixed(Mutex::new(vec![item()])))), &journal, covered_tx);
        ix.cycle(true).unwrap();
        assert_eq!((*covered_rx.borrow(), ix.committed_lsn), (lsn, lsn));
        journal.shutdown();
    }

    /// A RAM directory whose writes fail with ENOSPC while `full` is set.
    #[derive(Debug, Clone)]
    struct FullDisk {
        inner: tantivy::directory::RamDirectory,
        full: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FullDisk {
        fn check(&self) -> std::io::Result<()> {
            if self.full.load(Ordering::Relaxed) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            Ok(())
        }
    }

    impl tantivy::Directory for FullDisk {
        fn get_file_handle(
            &self,
            path: &std::path::Path,
        ) -> Result<Arc<dyn tantivy::directory::FileHandle>, tantivy::directory::error::OpenReadError> {
            self.inner.get_file_handle(path)
        }
        fn delete(&self, path: &std::path::Path) -> Result<(), tantivy::directory::error::DeleteError> {
            self.inner.delete(path)
        }
        fn exists(&self, path: &std::path::Path) -> Result<bool, tantivy::directory::error::OpenReadError> {
            self.inner.exists(path)
        }
        fn open_write(&self, path: &std::path::Path) -> Result<tantivy::directory::WritePtr, tantivy::directory::error::OpenWriteError> {
            self.check().map_err(|e| tantivy::directory::error::OpenWriteError::wrap_io_error(e, path.to_path_buf()))?;
            self.inner.open_write(path)
        }
        fn atomic_read(&self, path: &std::path::Path) -> Result<Vec<u8>, tantivy::directory::error::OpenReadError> {
            self.inner.atomic_read(path)
        }
        fn atomic_write(&self, path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.inner.atomic_write(path, data)
        }
        fn sync_directory(&self) -> std::io::Result<()> {
            self.inner.sync_directory()
        }
        fn watch(&self, cb: tantivy::directory::WatchCallback) -> tantivy::Result<tantivy::directory::WatchHandle> {
            self.inner.watch(cb)
        }
    }

    /// One shard's dirty set over fixed SKUs, rendered at each drain, as a shard does.
    struct Keys(Mutex<DirtySet>);

    impl DirtySource for Arc<Keys> {
        fn shard_count(&self) -> usize {
            1
        }

        fn drain(&self, _shard: usize, max: usize) -> Result<Drained, SourceError> {
            let mut dirty = self.0.lock();
            let items: Vec<IndexItem> = std::iter::from_fn(|| dirty.pop())
                .take(max)
                .map(|(brand, _, sku)| {
                    IndexItem::Sku(SkuItem::Upsert { brand, brand_name: "b".into(), sku, state: Box::new(sku_state()), channels: vec![] })
                })
                .collect();
            Ok(Drained { purged: Vec::new(), more: !dirty.is_empty(), remaining: dirty.len(), items })
        }

        fn requeue(&self, _shard: usize, keys: Vec<DirtyKey>, _purged: Vec<u32>) {
            self.0.lock().extend(keys);
        }
    }

    #[test]
    fn a_failed_cycle_loses_nothing_it_drained_and_the_next_one_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let opts = OpenOptions { config: JournalConfig { segment_bytes: 1 << 24, ..JournalConfig::default() }, replay_after: 0 };
        let (journal, _) = crate::journal::open(dir.path(), opts, |_, _| Ok(())).unwrap();
        let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let disk = FullDisk { inner: Default::default(), full: full.clone() };
        let (schema, fields) = (SKUS.build)();
        let index = Index::create(disk, schema, Default::default()).unwrap();
        super::super::register_tokenizer(&index);
        let source = Arc::new(Keys(Mutex::new([key(1)].into_iter().collect())));
        let (covered_tx, covered_rx) = watch::channel(0);
        let mut ix = indexer(Box::new(source.clone()), &journal, covered_tx);
        ix.skus = Target::open(Opened { index, fields, committed_lsn: None, format: SKUS.format }).unwrap();
        let first = journal.append(vec![1]).unwrap();
        ix.cycle(false).unwrap();
        assert_eq!(*covered_rx.borrow(), first);

        // The disk fills: the commit fails, and so does the next cycle's new writer.
        full.store(true, Ordering::Relaxed);
        let second = journal.append(vec![2]).unwrap();
        source.0.lock().extend([key(2), key(3)]);
        for attempt in 0..2 {
            assert!(ix.cycle(false).is_err(), "attempt {attempt} fails");
            assert_eq!(*covered_rx.borrow(), first, "the covered lsn does not move past what is committed");
            assert!(ix.skus.writer.is_none(), "the failed writer was dropped");
            let mut back: Vec<String> = std::iter::from_fn(|| source.0.lock().pop()).map(|k| k.2.to_string()).collect();
            back.sort();
            assert_eq!(back, ["S2", "S3"], "attempt {attempt}: what was drained went back to the shard");
            source.0.lock().extend([key(2), key(3)]);
        }
        assert_eq!(ix.skus.reader.searcher().num_docs(), 1, "searches still see the last commit");

        full.store(false, Ordering::Relaxed);
        ix.cycle(false).unwrap();
        assert_eq!(*covered_rx.borrow(), second);
        assert_eq!(ix.skus.reader.searcher().num_docs(), 3, "everything drained while the disk was full is indexed");
        assert!(source.0.lock().is_empty());
        journal.shutdown();
    }

    #[test]
    fn one_cycle_commits_skus_and_shipments_under_one_covered_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let opts = OpenOptions { config: JournalConfig { segment_bytes: 1 << 24, ..JournalConfig::default() }, replay_after: 0 };
        let (journal, _) = crate::journal::open(dir.path(), opts, |_, _| Ok(())).unwrap();
        let lsn = journal.append(vec![1]).unwrap();
        let b = || BrandId::parse("b").unwrap();
        let items = vec![
            IndexItem::Shipment(ShipmentItem::Upsert { brand: b(), shipment: Box::new(shipment("SH-1")) }),
            IndexItem::Sku(SkuItem::Upsert {
                brand: b(),
                brand_name: "b".into(),
                sku: key(1).2,
                state: Box::new(sku_state()),
                channels: vec![],
            }),
            IndexItem::Shipment(ShipmentItem::Upsert { brand: b(), shipment: Box::new(shipment("SH-2")) }),
            IndexItem::Shipment(ShipmentItem::Delete { brand: b(), id: Id::parse("SH-1").unwrap() }),
        ];
        let (covered_tx, covered_rx) = watch::channel(0);
        let mut indexer = indexer(Box::new(Arc::new(Fixed(Mutex::new(items)))), &journal, covered_tx);
        indexer.cycle(false).unwrap();
        assert_eq!(*covered_rx.borrow(), lsn);
        assert_eq!(indexer.skus.reader.searcher().num_docs(), 1, "the SKU went to the SKU index");
        assert_eq!(indexer.shipments.reader.searcher().num_docs(), 1, "SH-2 is in the shipment index and SH-1 deleted");
        for (name, meta) in [
            ("skus", indexer.skus.reader.searcher().index().load_metas()),
            ("shipments", indexer.shipments.reader.searcher().index().load_metas()),
        ] {
            let payload: Payload = serde_json::from_str(&meta.unwrap().payload.expect("a payload")).unwrap();
            assert_eq!(payload.lsn, lsn, "{name} index payload");
        }
        journal.shutdown();
    }
}
