//! The feed thread: reads the journal's durable records after the store's covered
//! LSN, turns the brand records into feed events, and commits each run of records in
//! one transaction together with the new covered LSN. After a commit it advances its
//! journal read hold and wakes the waiters of the touched brands.
//!
//! On a store error it reopens the store and resumes from the committed covered LSN
//! (the batch is read again from the journal, so nothing is lost or doubled). On a
//! journal error (damage, a missing segment) it logs and retries with a growing delay:
//! the feed stops advancing, loudly, rather than skipping a record. While it retries,
//! the health registry (`/readyz`, `/metrics`) says so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store::{Batch, HookChange, NewEvent, Store, StoreError};
use super::{FeedConfig, Inner};
use crate::clock::SharedClock;
use crate::domain::event::{self, Event, WalRecord};
use crate::domain::{BrandId, Id};
use crate::journal::files::list_segments;
use crate::journal::tail::Tail;
use crate::journal::{Journal, JournalError, Lsn, ReadHold};

/// Most journal records written to the store in one transaction.
pub const FEED_BATCH_RECORDS_MAX: usize = 4096;
/// Most feed events in one transaction (a record is never split).
pub const FEED_BATCH_EVENTS_MAX: usize = 20_000;
/// Longest wait for new durable records before checking the age retention.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// First and longest delay between retries after an error.
const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("journal record {lsn} cannot be decoded: {detail}")]
    Decode { lsn: Lsn, detail: String },
    #[error("the journal stopped")]
    Stopped,
}

pub(super) struct Tailer {
    cfg: FeedConfig,
    store: Store,
    tail: Tail,
    journal: Journal,
    hold: ReadHold,
    clock: SharedClock,
    inner: Arc<Inner>,
    queued_imports: std::sync::mpsc::Sender<(BrandId, Id)>,
    last_prune: Instant,
}

/// Where to start reading: after the covered LSN, or at the oldest record on disk for
/// a new store on a journal whose beginning was removed (a restored data dir).
fn start_lsn(journal: &Journal, covered: Lsn) -> Lsn {
    if covered > 0 {
        return covered + 1;
    }
    let first = list_segments(journal.dir()).ok().and_then(|s| s.first().map(|s| s.0)).unwrap_or(1);
    if first > 1 {
        tracing::warn!(
            first_lsn = first,
            "the feed store is new but the journal starts later; the feed starts at the oldest record on disk"
        );
    }
    first
}

impl Tailer {
    pub(super) fn new(
        cfg: FeedConfig,
        store: Store,
        journal: Journal,
        clock: SharedClock,
        inner: Arc<Inner>,
        queued_imports: std::sync::mpsc::Sender<(BrandId, Id)>,
    ) -> Tailer {
        let covered = store.covered_lsn();
        let next = start_lsn(&journal, covered);
        if covered > journal.durable_lsn() {
            tracing::warn!(
                covered,
                durable = journal.durable_lsn(),
                "the feed store is ahead of the journal; was it copied from another data dir?"
            );
        }
        let hold = journal.hold("feed", next - 1);
        let tail = Tail::new(journal.dir(), next);
        Tailer { cfg, store, tail, journal, hold, clock, inner, queued_imports, last_prune: Instant::now() }
    }

    pub(super) fn run(mut self) {
        crate::background::run_in_background();
        let health = crate::health::global().worker(crate::health::Worker::Feed);
        let _stopped = health.until_dropped();
        tracing::info!(covered_lsn = self.store.covered_lsn(), "feed started");
        metrics::gauge!("zaiko_feed_covered_lsn").set(self.store.covered_lsn() as f64);
        let mut backoff = crate::health::Backoff::new(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
        loop {
            match self.step() {
                Ok(()) => {
                    health.ok();
                    backoff.reset();
                }
                Err(StepError::Stopped) => break,
                Err(e) => {
                    let attempts = health.failed(&e);
                    let delay = backoff.next_delay();
                    tracing::error!(error = %e, attempts, covered_lsn = self.store.covered_lsn(), retry_ms = delay.as_millis() as u64, "the feed cannot advance; retrying");
                    std::thread::sleep(delay);
                    if let Err(e) = self.reopen() {
                        tracing::error!(error = %e, "reopening the feed store failed");
                    }
                }
            }
        }
        tracing::info!(covered_lsn = self.store.covered_lsn(), "feed stopped");
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        // The store entered the history when it was first opened: nothing to seed.
        self.store = Store::open(&self.cfg.path, self.cfg.retention, &self.inner.history, &[])?;
        self.tail = Tail::new(self.journal.dir(), start_lsn(&self.journal, self.store.covered_lsn()));
        Ok(())
    }

    /// Waits for new durable records (boundedly), writes one batch, prunes when due.
    fn step(&mut self) -> Result<(), StepError> {
        let next = self.tail.next_lsn();
        let durable = self.journal.wait_durable_timeout(next, IDLE_WAIT).map_err(|_| StepError::Stopped)?;
        if !self.journal_has_space() {
            return Ok(());
        }
        if durable >= next {
            let (batch, imports) = self.read_batch(durable)?;
            let touched = self.store.commit(&batch)?;
            self.publish(&batch, touched, imports);
        }
        if self.last_prune.elapsed() >= self.cfg.prune_interval {
            self.last_prune = Instant::now();
            let dropped = self.store.prune_by_age(self.clock.now())?;
            if dropped > 0 {
                tracing::info!(dropped, "feed events older than the retention dropped");
            }
        }
        Ok(())
    }

    /// Whether the feed may write: not while the journal cannot prepare its next
    /// segment for lack of disk space (waits for it at most [`IDLE_WAIT`]), so that space
    /// coming back goes to the journal, not to `feed.sqlite`.
    fn journal_has_space(&self) -> bool {
        if !self.journal.disk_full() {
            return true;
        }
        metrics::gauge!("zaiko_feed_waiting_for_wal_space").set(1.0);
        let has = self.journal.wait_for_space(IDLE_WAIT);
        if has {
            metrics::gauge!("zaiko_feed_waiting_for_wal_space").set(0.0);
        }
        has
    }

    fn read_batch(&mut self, durable: Lsn) -> Result<(Batch, Vec<(BrandId, Id)>), StepError> {
        let mut batch = Batch { last_lsn: self.tail.next_lsn() - 1, ..Batch::default() };
        let mut imports = Vec::new();
        let read = self.tail.read_durable(durable, FEED_BATCH_RECORDS_MAX, |lsn, payload| {
            if batch.events.len() >= FEED_BATCH_EVENTS_MAX {
                return Err(None);
            }
            match event::decode(payload) {
                Ok(WalRecord::Brand(rec)) => collect_record(&mut batch, &mut imports, &rec, lsn),
                Ok(WalRecord::Registry(_)) => {}
                Err(detail) => return Err(Some(StepError::Decode { lsn, detail })),
            }
            batch.last_lsn = lsn;
            Ok(())
        })?;
        if let Err(Some(e)) = read {
            return Err(e);
        }
        Ok((batch, imports))
    }

    fn publish(&mut self, batch: &Batch, touched: Vec<(BrandId, u64)>, imports: Vec<(BrandId, Id)>) {
        self.hold.advance(batch.last_lsn);
        for (brand, last_seq) in touched {
            self.inner.brand_tx(&brand).send_replace(last_seq);
        }
        if !batch.hooks.is_empty() {
            self.inner.hooks_version.send_modify(|v| *v += 1);
        }
        self.inner.covered.send_replace(batch.last_lsn);
        metrics::gauge!("zaiko_feed_covered_lsn").set(batch.last_lsn as f64);
        for job in imports {
            // The runner may be gone at shutdown; nothing to do then.
            let _ = self.queued_imports.send(job);
        }
    }
}

/// Adds what one brand record means for the feed to the batch.
pub(super) fn collect_record(batch: &mut Batch, imports: &mut Vec<(BrandId, Id)>, rec: &event::BrandRecord, lsn: Lsn) {
    let from = batch.events.len();
    for (index, ev) in rec.events.iter().enumerate() {
        collect(batch, imports, &rec.brand, lsn, index, rec.at, ev);
    }
    // An import chunk's rows' events are in its record: the stock history names the
    // job that made them.
    let chunk_of = rec.events.iter().find_map(|ev| match ev {
        Event::ImportChunkApplied { progress } => Some(&progress.id),
        _ => None,
    });
    if let Some(job) = chunk_of {
        batch.events[from..].iter_mut().for_each(|e| e.import = Some(job.clone()));
    }
}

/// Adds what one event means for the feed to the batch.
fn collect(
    batch: &mut Batch,
    imports: &mut Vec<(BrandId, Id)>,
    brand: &BrandId,
    lsn: Lsn,
    index: usize,
    at: crate::domain::Timestamp,
    ev: &Event,
) {
    match ev {
        Event::WebhookCreated { webhook } => {
            let position = batch.events.len();
            batch.hooks.push(HookChange::Created { brand: brand.clone(), webhook: webhook.clone(), lsn, position })
        }
        Event::WebhookDeleted { id } => batch.hooks.push(HookChange::Deleted { id: id.to_string() }),
        Event::ImportQueued { job } => imports.push((brand.clone(), job.id.clone())),
        _ => {}
    }
    batch.events.extend(NewEvent::of(brand, lsn, index, at, ev));
}
