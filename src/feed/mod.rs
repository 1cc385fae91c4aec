//! The change feed: every committed change of a brand, once, in commit order.
//!
//! * [`render`] — the feed form (type, key, `data`) of each event; no personal data.
//! * [`store`] — `feed.sqlite`: events by (brand, seq), retention, the covered LSN.
//! * [`seed`] — cluster mode: a partition's feed at one entry (a checkpoint), where the
//!   feed of a node behind a purge of the journal starts again.
//! * [`history`] — one SKU's stock changes, read from the store (its own route).
//! * [`tailer`] — the feed thread: follows the journal up to its durable LSN (the WAL
//!   is the queue), writes each run of records in one transaction, wakes waiters.
//!
//! Readers (`GET .../events`, webhook delivery) read the store through a small pool of
//! read connections on the blocking pool, and wait for new events on a per-brand
//! `watch` channel that the feed thread sets after each commit: a long poll wakes as
//! soon as the brand's events are committed, with no polling.
//!
//! The feed thread holds a [`crate::journal::ReadHold`]: journal segments it has not
//! consumed are never removed, whoever asks.
//!
//! The feed follows the journal's history (`journal::history`): a [`Cursor`] names the
//! history it was handed out in, and one from an earlier history (before a restore or
//! a repair) is refused with the position to resync from, never read as a position in
//! the new one.

pub mod cluster;
pub mod history;
pub mod render;
pub mod seed;
pub mod store;
mod tailer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::{watch, Semaphore};

use crate::clock::SharedClock;
use crate::domain::webhook::Webhook;
use crate::domain::{BrandId, Id};
use crate::journal::history::{History, HistoryId};
use crate::journal::{Journal, Lsn};
pub use store::{Retention, StoreError};

/// Most events in one page of `GET .../events`.
pub const PAGE_LIMIT_MAX: usize = 1000;
pub const PAGE_LIMIT_DEFAULT: usize = 100;
/// Longest long poll (`wait`), in seconds.
pub const WAIT_SECONDS_MAX: u64 = 30;
/// Long polls waiting at once; more are answered `overloaded` at once.
pub const LONG_POLLS_MAX: usize = 1024;
/// Long polls one brand may have waiting at once; more are answered `rate_limited` at
/// once, so that no brand takes every slot of [`LONG_POLLS_MAX`] from the others.
pub const LONG_POLLS_PER_BRAND_MAX: usize = 64;
/// Idle read connections kept for reuse.
const READERS_IDLE_MAX: usize = 8;
/// Default retention: 7 days, and at most this many events per brand.
pub const RETENTION_HOURS_DEFAULT: u64 = 7 * 24;
pub const RETENTION_EVENTS_PER_BRAND_DEFAULT: u64 = 5_000_000;

#[derive(Debug, Clone)]
pub struct FeedConfig {
    pub path: PathBuf,
    pub retention: Retention,
    /// How often events older than the retention are dropped.
    pub prune_interval: Duration,
}

/// A position in a brand's feed, as clients hold it: the seq of the last event seen,
/// and the history it was handed out in. Written `<seq>` in a data dir's first history
/// (as before histories existed) and `<history>.<seq>` in any later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `None`: written without a history (the first history's form).
    pub history: Option<HistoryId>,
    pub seq: u64,
}

impl Cursor {
    /// Parses `<seq>` or `<history>.<seq>`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Cursor> {
        let (history, seq) = match s.split_once('.') {
            Some((h, seq)) => (Some(HistoryId::parse(h)?), seq),
            None => (None, s),
        };
        // Digits only: `parse` alone would take a leading `+`.
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Cursor { history, seq: seq.parse().ok()? })
    }

    /// Whether the cursor is a position in `history`. A cursor without a history is
    /// one of the data dir's first history; `0` (before any event) is one in every
    /// history.
    pub fn belongs_to(&self, history: &History) -> bool {
        match self.history {
            Some(h) => h == history.id,
            None => history.first || self.seq == 0,
        }
    }

    /// The cursor of `seq` in a history labelled `label` (`History::label`).
    pub fn render(label: Option<HistoryId>, seq: u64) -> String {
        match label {
            Some(h) => format!("{h}.{seq}"),
            None => seq.to_string(),
        }
    }
}

/// Why a page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cursor {after} is older than the retention: events up to seq {pruned_through} were dropped; start again from the oldest (omit `after`) or from a snapshot of your own")]
    Expired { after: u64, pruned_through: u64 },
    #[error("cursor {after} is ahead of this brand's feed (last seq {last_seq}); use a `next` this server returned")]
    Ahead { after: u64, last_seq: u64 },
    #[error(
        "cursor {cursor} belongs to an earlier history of this feed (the server was restored from a snapshot or its \
         journal was repaired), so the events it follows may not have happened here; resync: read the stock again, \
         then follow the feed from `next` ({next})"
    )]
    HistoryChanged { cursor: String, next: String },
    #[error("the feed has not caught up with the journal yet; retry shortly")]
    Behind,
    #[error("too many long polls are waiting; retry shortly")]
    Busy,
    #[error("this brand already has {LONG_POLLS_PER_BRAND_MAX} long polls waiting; share one poll between readers, or poll with wait=0")]
    BrandBusy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the feed reader stopped")]
    Stopped,
}

/// One page of a brand's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Event JSON objects, in seq order.
    pub events: Vec<String>,
    /// The cursor to pass as `after` next time.
    pub next: u64,
}

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// Last seq per brand, set by the feed thread after each commit.
    brands: Mutex<HashMap<BrandId, watch::Sender<u64>>>,
    covered: watch::Sender<Lsn>,
    /// Bumped whenever the webhooks table changes.
    hooks_version: watch::Sender<u64>,
    long_polls: Arc<Semaphore>,
    /// The journal history the store's events belong to.
    history: History,
    /// Long polls waiting per brand (brands with none are removed).
    long_polls_by_brand: Mutex<HashMap<BrandId, usize>>,
    /// Cluster mode: partitions whose journal the feed could not apply (it stopped
    /// there; see `cluster`).
    stopped_partitions: Mutex<HashSet<u32>>,
}

/// One of a brand's [`LONG_POLLS_PER_BRAND_MAX`] long polls; given back when dropped.
struct BrandPoll {
    inner: Arc<Inner>,
    brand: BrandId,
}

impl Drop for BrandPoll {
    fn drop(&mut self) {
        let mut polls = self.inner.long_polls_by_brand.lock();
        if let Some(n) = polls.get_mut(&self.brand) {
            *n -= 1;
            if *n == 0 {
                polls.remove(&self.brand);
            }
        }
    }
}

/// A waiting long poll's slots, counted in `zaiko_feed_long_polls_waiting`.
struct LongPoll {
    _share: BrandPoll,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        metrics::gauge!("zaiko_feed_long_polls_waiting").decrement(1.0);
    }
}

impl Inner {
    fn new(path: PathBuf, history: History, covered: Lsn) -> Arc<Inner> {
        Arc::new(Inner {
            path,
            readers: Mutex::new(Vec::new()),
            brands: Mutex::new(HashMap::new()),
            covered: watch::Sender::new(covered),
            hooks_version: watch::Sender::new(0),
            long_polls: Arc::new(Semaphore::new(LONG_POLLS_MAX)),
            history,
            long_polls_by_brand: Mutex::new(HashMap::new()),
            stopped_partitions: Mutex::new(HashSet::new()),
        })
    }

    fn brand_tx(&self, brand: &BrandId) -> watch::Sender<u64> {
        self.brands.lock().entry(brand.clone()).or_insert_with(|| watch::Sender::new(0)).clone()
    }
}

/// A handle to the running feed. Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

impl Feed {
    /// Opens the store and starts the feed thread. Queued imports it reads in the
    /// journal are sent to `queued_imports` (the import runner). `subscriptions` are
    /// the webhook subscriptions of the recovered state: they seed the store when the
    /// journal's history is new to it.
    pub fn start(
        cfg: FeedConfig,
        journal: Journal,
        clock: SharedClock,
        queued_imports: std::sync::mpsc::Sender<(BrandId, Id)>,
        subscriptions: &[(BrandId, Webhook)],
    ) -> Result<Feed, StoreError> {
        let history = journal.history().clone();
        let store = store::Store::open(&cfg.path, cfg.retention, &history, subscriptions)?;
        let inner = Inner::new(cfg.path.clone(), history, store.covered_lsn());
        let feed = Feed { inner: inner.clone() };
        let thread = tailer::Tailer::new(cfg, store, journal, clock, inner, queued_imports);
        std::thread::Builder::new().name("zaiko-feed".into()).spawn(move || thread.run())?;
        Ok(feed)
    }

    /// Cluster mode: opens the store and starts building the feed of every partition
    /// from the cluster's journal `stream` (`cluster`). The reading task runs on
    /// `runtime` (the cluster runtime); the store has a thread of its own.
    pub fn start_cluster(
        cfg: FeedConfig,
        stream: async_nats::jetstream::stream::Stream,
        runtime: tokio::runtime::Handle,
        clock: SharedClock,
        checkpoints: Option<crate::cluster::purge::Checkpoints>,
    ) -> Result<Feed, StoreError> {
        let history = cluster::stream_history(&stream);
        let store = store::Store::open(&cfg.path, cfg.retention, &history, &[])?;
        store.relax_durability()?;
        let positions = store.sources()?;
        let covered = store.covered_lsn();
        let inner = Inner::new(cfg.path.clone(), history, covered);
        let (tx, rx) = tokio::sync::mpsc::channel(cluster::BATCHES_IN_FLIGHT);
        let source = cluster::Source::new(stream, &positions, covered, tx, inner.clone(), checkpoints);
        let writer = cluster::Writer { cfg, store, rx, runtime: runtime.clone(), clock, inner: inner.clone() };
        std::thread::Builder::new().name("zaiko-feed".into()).spawn(move || writer.run())?;
        runtime.spawn(source.run());
        Ok(Feed { inner })
    }

    /// Cluster mode: whether the feed of `partition` stopped at an entry it could not
    /// apply.
    pub fn partition_stopped(&self, partition: u32) -> bool {
        self.inner.stopped_partitions.lock().contains(&partition)
    }

    /// Whether the store knows the brand (it has had an event: its first is
    /// `brand.created`).
    pub async fn brand_known(&self, brand: &BrandId) -> Result<bool, FeedError> {
        let b = brand.to_string();
        self.with_reader(move |c| store::brand_known(c, &b)).await
    }

    /// Waits until the feed covers `lsn`; false if `timeout` passed first.
    pub async fn wait_covered(&self, lsn: Lsn, timeout: Duration) -> bool {
        let mut rx = self.inner.covered.subscribe();
        let reached = matches!(tokio::time::timeout(timeout, rx.wait_for(|c| *c >= lsn)).await, Ok(Ok(_)));
        reached
    }

    /// The brand's last seq, updated after each commit that adds to it.
    pub fn brand_watch(&self, brand: &BrandId) -> watch::Receiver<u64> {
        self.inner.brand_tx(brand).subscribe()
    }

    /// Changes whenever a webhook subscription is created or deleted.
    pub fn hooks_watch(&self) -> watch::Receiver<u64> {
        self.inner.hooks_version.subscribe()
    }

    pub fn path(&self) -> &std::path::Path {
        &self.inner.path
    }

    /// The journal history the feed's events belong to.
    pub fn history(&self) -> &History {
        &self.inner.history
    }

    /// The cursor clients get for `seq` (a page's `next`).
    pub fn cursor(&self, seq: u64) -> String {
        Cursor::render(self.inner.history.label(), seq)
    }

    /// The seq of a client's cursor in this feed; a cursor of an earlier history is
    /// `HistoryChanged`, with the brand's newest position as the `next` to resync from.
    pub async fn seq_of(&self, brand: &BrandId, cursor: Cursor, as_given: &str) -> Result<u64, FeedError> {
        if cursor.belongs_to(&self.inner.history) {
            return Ok(cursor.seq);
        }
        let last = self.read(brand, 0, 0).await?.map_or(0, |(pos, _)| pos.last_seq);
        Err(FeedError::HistoryChanged { cursor: as_given.to_string(), next: self.cursor(last) })
    }

    /// Runs `f` on a read connection, on the blocking pool.
    pub async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, FeedError> {
        let inner = self.inner.clone();
        let job = move || {
            let pooled = inner.readers.lock().pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => store::open_reader(&inner.path)?,
            };
            let out = f(&mut conn);
            let mut idle = inner.readers.lock();
            if idle.len() < READERS_IDLE_MAX {
                idle.push(conn);
            }
            out
        };
        Ok(tokio::task::spawn_blocking(job).await.map_err(|_| FeedError::Stopped)??)
    }

    async fn read(
        &self,
        brand: &BrandId,
        after: u64,
        limit: usize,
    ) -> Result<Option<(store::BrandPosition, Vec<store::StoredEvent>)>, FeedError> {
        let b = brand.to_string();
        self.with_reader(move |c| store::read_after(c, &b, after, limit)).await
    }

    /// A slot for a long poll of `brand`: one of the brand's share (else `BrandBusy`)
    /// and one of the server's (else `Busy`).
    fn long_poll(&self, brand: &BrandId) -> Result<LongPoll, FeedError> {
        let share = {
            let mut polls = self.inner.long_polls_by_brand.lock();
            let n = polls.entry(brand.clone()).or_insert(0);
            if *n >= LONG_POLLS_PER_BRAND_MAX {
                return Err(FeedError::BrandBusy);
            }
            *n += 1;
            BrandPoll { inner: self.inner.clone(), brand: brand.clone() }
        };
        let permit = self.inner.long_polls.clone().try_acquire_owned().map_err(|_| FeedError::Busy)?;
        metrics::gauge!("zaiko_feed_long_polls_waiting").increment(1.0);
        Ok(LongPoll { _share: share, _permit: permit })
    }

    /// A page of the brand's feed after `after` (from the oldest kept event when
    /// `None`), waiting up to `wait` for the first new event when there is none.
    pub async fn page(&self, brand: &BrandId, after: Option<u64>, limit: usize, wait: Duration) -> Result<Page, FeedError> {
        let mut rx = self.brand_watch(brand);
        let from = after.unwrap_or(0);
        let mut found = self.read(brand, from, limit).await?;
        let pos = check_cursor(after, found.as_ref().map(|f| f.0))?;
        let empty = found.as_ref().is_none_or(|f| f.1.is_empty());
        if empty && !wait.is_zero() {
            let _poll = self.long_poll(brand)?;
            let seen = from.max(pos.last_seq);
            let woken = matches!(tokio::time::timeout(wait, rx.wait_for(|last| *last > seen)).await, Ok(Ok(_)));
            if woken {
                found = self.read(brand, from, limit).await?;
            }
        }
        let events: Vec<store::StoredEvent> = found.map(|f| f.1).unwrap_or_default();
        let next = events.last().map_or(after.unwrap_or(pos.pruned_through), |e| e.seq);
        Ok(Page { events: events.into_iter().map(|e| e.body).collect(), next })
    }
}

/// One page of a SKU's stock history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Change JSON objects, in the page's order.
    pub changes: Vec<String>,
    /// The cursor to pass as `after` next time.
    pub next: u64,
}

impl Feed {
    /// A page of `sku`'s stock changes from the cursor `after` (a seq of the brand's
    /// feed, checked as the feed checks it) in `order`. `next` is the last change's
    /// seq when the page is full; else, oldest first, the brand's last seq (every
    /// change up to it was read) and, newest first, the oldest kept position.
    pub async fn sku_history(
        &self,
        brand: &BrandId,
        sku: &Id,
        after: Option<u64>,
        order: history::Order,
        limit: usize,
    ) -> Result<HistoryPage, FeedError> {
        let (b, s) = (brand.to_string(), sku.clone());
        let read = self.with_reader(move |c| history::read(c, &b, &s, after, order, limit)).await?;
        let pos = check_cursor(after, read.as_ref().map(|r| r.pos))?;
        let Some(read) = read else { return Ok(HistoryPage { changes: Vec::new(), next: after.unwrap_or(0) }) };
        let next = match (read.last, read.changes.len() >= limit, order) {
            (Some(last), true, _) => last,
            (_, _, history::Order::OldestFirst) => pos.last_seq,
            (_, _, history::Order::NewestFirst) => pos.pruned_through,
        };
        Ok(HistoryPage { changes: read.changes, next })
    }
}

/// Checks a cursor against where the brand's feed stands.
fn check_cursor(after: Option<u64>, pos: Option<store::BrandPosition>) -> Result<store::BrandPosition, FeedError> {
    let pos = pos.unwrap_or_default();
    if let Some(a) = after {
        if a < pos.pruned_through {
            return Err(FeedError::Expired { after: a, pruned_through: pos.pruned_through });
        }
        if a > pos.last_seq {
            return Err(FeedError::Ahead { after: a, last_seq: pos.last_seq });
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests;
