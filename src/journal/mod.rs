//! The write-ahead log: the commit point of every change.
//!
//! * [`format`] — segment and record layout, and the scan that tells a torn tail
//!   from corruption (documented byte by byte in `docs/wal-format.md`).
//! * [`writer`] — the one thread that writes and `fdatasync`s (group commit), and
//!   the thread that preallocates the next segment so that a full disk shows up as a
//!   refused append, never as a failed write of something already applied.
//! * [`files`] — segment file names, listing, preallocation and directory sync,
//!   shared by the writer, recovery and the readers.
//! * [`recovery`] — opening a journal (replay, torn-tail cut) and `wal verify`.
//! * [`range`] — reading a range of records beside a running writer, and reading
//!   them again one by one by where they lie (snapshot building).
//! * [`history`] — which line of records the journal follows (`wal/history.json`):
//!   a restore or a repair that cuts begins a new one, so LSNs reused after the fork
//!   are never taken for the records they replaced.
//! * [`tail`] — reading records while the journal is written (the change feed
//!   follows the journal this way); [`ReadHold`]s keep segment removal behind such
//!   readers.
//!
//! Callers hand in an encoded payload and get an LSN back at once ([`Journal::append`]);
//! they apply the change in memory and gate their *reply* on
//! [`Journal::wait_durable`]. The journal knows nothing of what the payloads mean.

pub(crate) mod files;
pub mod format;
pub mod history;
pub mod range;
pub mod recovery;
pub mod tail;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub use format::Lsn;
pub use range::{read_range, read_range_located, FrameAt, RangeFiles};
pub use recovery::{open, open_with, verify, OpenOptions, OpenReport, SegmentReport, VerifyReport};

/// What the journal does when a write or an fsync fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Log and abort the process (the server's behaviour: fail-stop, as PostgreSQL
    /// does since "fsyncgate"). Nothing queued is acknowledged.
    Abort,
    /// Refuse every append and wait from then on (for in-process tests).
    Poison,
}

/// Test hooks that make the journal fail on purpose. All off by default.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// After this many successful fsyncs, the next one fails.
    pub fail_fsync_after: Option<u64>,
    /// After this many successful batch writes, the next write fails.
    pub fail_write_after: Option<u64>,
    /// Extra latency added to every fsync (a slow disk).
    pub fsync_delay: Duration,
    /// While this file exists, preparing a new segment fails with ENOSPC.
    pub enospc_while_exists: Option<PathBuf>,
}

/// Tuning of the journal. Every bound is named and has a default.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Size of a segment file (preallocated).
    pub segment_bytes: u64,
    /// Most records written with one fdatasync.
    pub batch_records_max: usize,
    /// Most bytes written with one fdatasync.
    pub batch_bytes_max: usize,
    /// How long the writer waits for more records after the first one of a batch;
    /// zero means "take what queued up during the last fsync" (natural batching).
    pub commit_delay: Duration,
    /// Most payload bytes queued and not yet written; appends past it are refused
    /// with [`AppendError::Overloaded`].
    pub queue_bytes_max: usize,
    /// Largest payload accepted.
    pub record_bytes_max: usize,
    /// How often a failed segment preparation (disk full) is retried.
    pub space_retry: Duration,
    pub on_failure: FailureAction,
    pub faults: FaultPlan,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_bytes: 64 << 20,
            batch_records_max: 4096,
            batch_bytes_max: 8 << 20,
            commit_delay: Duration::ZERO,
            queue_bytes_max: 64 << 20,
            record_bytes_max: 4 << 20,
            space_retry: Duration::from_secs(1),
            on_failure: FailureAction::Abort,
            faults: FaultPlan::default(),
        }
    }
}

/// Why an append was refused. Nothing was queued; the caller must not apply the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("the journal disk is full; writes resume when space is freed")]
    DiskFull,
    #[error("the journal queue is full; retry shortly")]
    Overloaded,
    #[error("the journal has stopped after a failed write or fsync, or is shutting down")]
    Stopped,
    #[error("the record is larger than the journal accepts")]
    TooLarge,
}

/// Errors opening or reading a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "journal corruption in {path} at byte offset {offset}: {detail}; refusing to start \
         (run `zaiko wal verify`, then restore the newest snapshot or repair the file)"
    )]
    Corrupt { path: PathBuf, offset: u64, detail: String },
    #[error("replay of record lsn {lsn} failed: {detail}")]
    Replay { lsn: Lsn, detail: String },
    #[error("{0}")]
    Invalid(String),
}

impl JournalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        JournalError::Io { path: path.to_path_buf(), source }
    }
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct JournalStats {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub fsync_nanos: AtomicU64,
    pub appends_refused: AtomicU64,
}

/// A snapshot of [`JournalStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    pub fsync_nanos: u64,
    pub appends_refused: u64,
    pub durable_lsn: Lsn,
    pub queued_bytes: u64,
    pub disk_full: bool,
}

/// The journal's face for what writes through it — the shards, the registry and the
/// output gate: append a record and get its position at once, learn when a position
/// is durable. The local WAL ([`Journal`]) is one backend; cluster mode's replicated
/// partition journal (`cluster::plog`) is another. Readers that follow the records
/// (the change feed, the indexer's catch-up) use the local journal's [`tail`] and
/// [`ReadHold`]s.
pub trait Log: Send + Sync + 'static {
    /// Queues `payload` and returns its LSN; never waits for the disk or the network.
    /// A refusal means nothing was queued: the caller must not apply the change.
    fn append(&self, payload: Vec<u8>) -> Result<Lsn, AppendError>;
    /// The largest payload [`Log::append`] accepts.
    fn record_bytes_max(&self) -> usize;
    /// The highest LSN known to be durable.
    fn durable_lsn(&self) -> Lsn;
    /// The newest LSN handed out.
    fn last_assigned_lsn(&self) -> Lsn;
    /// Resolves once `lsn` may be answered for: it is durable (and, in cluster mode, the
    /// partition's lease is valid). Errors if the log stopped first.
    fn wait_durable(&self, lsn: Lsn) -> futures_util::future::BoxFuture<'static, Result<(), AppendError>>;
    /// Blocking variant with a bound, for threads outside the runtime: returns the
    /// durable LSN when `lsn` became durable or `timeout` passed.
    fn wait_durable_timeout(&self, lsn: Lsn, timeout: Duration) -> Result<Lsn, AppendError>;
}

/// A shared handle on a [`Log`].
pub type LogRef = Arc<dyn Log>;

impl Log for Journal {
    fn append(&self, payload: Vec<u8>) -> Result<Lsn, AppendError> {
        Journal::append(self, payload)
    }

    fn record_bytes_max(&self) -> usize {
        Journal::record_bytes_max(self)
    }

    fn durable_lsn(&self) -> Lsn {
        Journal::durable_lsn(self)
    }

    fn last_assigned_lsn(&self) -> Lsn {
        Journal::last_assigned_lsn(self)
    }

    fn wait_durable(&self, lsn: Lsn) -> futures_util::future::BoxFuture<'static, Result<(), AppendError>> {
        let journal = self.clone();
        Box::pin(async move { Journal::wait_durable(&journal, lsn).await })
    }

    fn wait_durable_timeout(&self, lsn: Lsn, timeout: Duration) -> Result<Lsn, AppendError> {
        Journal::wait_durable_timeout(self, lsn, timeout)
    }
}

/// A handle to an open journal. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Journal {
    shared: Arc<writer::Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    holds: Arc<Holds>,
    history: Arc<history::History>,
}

/// The readers that still need records, each with the newest LSN it has consumed.
#[derive(Default)]
pub(crate) struct Holds {
    next_id: AtomicU64,
    by_id: Mutex<BTreeMap<u64, (String, Lsn)>>,
}

impl Holds {
    /// The lowest LSN any reader has consumed, if there are readers.
    fn floor(&self) -> Option<Lsn> {
        self.by_id.lock().values().map(|(_, lsn)| *lsn).min()
    }
}

/// A reader's claim on the journal: segments holding records after the LSN it has
/// consumed are never removed. Dropping the hold releases the claim.
pub struct ReadHold {
    holds: Arc<Holds>,
    id: u64,
}

impl ReadHold {
    /// Records that the reader has consumed everything up to `lsn`.
    pub fn advance(&self, lsn: Lsn) {
        if let Some(entry) = self.holds.by_id.lock().get_mut(&self.id) {
            debug_assert!(lsn >= entry.1, "a read hold moves forward only");
            entry.1 = lsn;
        }
    }
}

impl Drop for ReadHold {
    fn drop(&mut self) {
        self.holds.by_id.lock().remove(&self.id);
    }
}

impl Journal {
    /// Queues `payload` for the next group commit and returns its LSN.
    ///
    /// LSNs are handed out in the order appends take the queue lock, and records are
    /// written in LSN order, so anything a caller appends after observing the effect
    /// of an earlier append is durable only after it.
    pub fn append(&self, payload: Vec<u8>) -> Result<Lsn, AppendError> {
        self.shared.append(payload)
    }

    /// The largest payload [`Journal::append`] accepts ([`JournalConfig::record_bytes_max`]):
    /// what a command must keep its record within.
    pub fn record_bytes_max(&self) -> usize {
        self.shared.cfg.record_bytes_max
    }

    /// The highest LSN known to be on disk.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable_lsn.load(Ordering::Acquire)
    }

    /// The LSN the next append will get, minus one: the newest LSN handed out.
    pub fn last_assigned_lsn(&self) -> Lsn {
        self.shared.queue.lock().next_lsn - 1
    }

    /// Resolves once `lsn` is durable. Errors if the journal stopped first.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), AppendError> {
        if self.durable_lsn() >= lsn {
            return Ok(());
        }
        let mut rx = self.shared.durable_tx.subscribe();
        let res = rx.wait_for(|&d| d >= lsn || d == writer::POISONED).await;
        match res {
            Ok(v) if *v != writer::POISONED => Ok(()),
            _ => Err(AppendError::Stopped),
        }
    }

    /// Blocking variant of [`Journal::wait_durable`], for threads outside the runtime.
    pub fn wait_durable_blocking(&self, lsn: Lsn) -> Result<(), AppendError> {
        let mut rx = self.shared.durable_tx.subscribe();
        loop {
            let d = *rx.borrow_and_update();
            if d == writer::POISONED {
                return Err(AppendError::Stopped);
            }
            if d >= lsn {
                return Ok(());
            }
            let mut guard = self.shared.queue.lock();
            if guard.stopped {
                return Err(AppendError::Stopped);
            }
            // Checked again under the lock the writer notifies with: a publish between the
            // check above and the lock would otherwise go unnoticed for the whole wait.
            if self.durable_lsn() >= lsn {
                return Ok(());
            }
            self.shared.durable_cv.wait_for(&mut guard, Duration::from_millis(50));
        }
    }

    /// Blocks until `lsn` is durable or `timeout` has passed, and returns the durable
    /// LSN then (which may still be below `lsn`). For reader threads that follow the
    /// journal. Errors once the journal is stopped or shutting down.
    pub fn wait_durable_timeout(&self, lsn: Lsn, timeout: Duration) -> Result<Lsn, AppendError> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.shared.queue.lock();
        loop {
            let d = self.durable_lsn();
            if guard.stopped || guard.shutdown || d == writer::POISONED {
                return Err(AppendError::Stopped);
            }
            if d >= lsn || self.shared.durable_cv.wait_until(&mut guard, deadline).timed_out() {
                return Ok(self.durable_lsn().min(writer::POISONED - 1));
            }
        }
    }

    /// Registers a reader that has consumed the journal up to `lsn`: segment removal
    /// stays behind it until the hold advances or is dropped.
    pub fn hold(&self, name: &str, lsn: Lsn) -> ReadHold {
        let id = self.holds.next_id.fetch_add(1, Ordering::Relaxed);
        self.holds.by_id.lock().insert(id, (name.to_string(), lsn));
        ReadHold { holds: self.holds.clone(), id }
    }

    /// Whether appends are currently refused because no space could be reserved.
    pub fn disk_full(&self) -> bool {
        self.shared.queue.lock().disk_full
    }

    /// Waits (at most `timeout`) while the journal cannot prepare its next segment for
    /// lack of disk space; true once it can. Other writers to the data dir's disk (the
    /// feed, snapshots, uploads) hold back while it cannot, so that space coming back
    /// goes to the journal first.
    pub fn wait_for_space(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.queue.lock();
        while q.disk_full && !q.stopped && !q.shutdown {
            if self.shared.ready_cv.wait_until(&mut q, deadline).timed_out() {
                break;
            }
        }
        !q.disk_full
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        let q = self.shared.queue.lock();
        StatsSnapshot {
            batches: s.batches.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            fsync_nanos: s.fsync_nanos.load(Ordering::Relaxed),
            appends_refused: s.appends_refused.load(Ordering::Relaxed),
            durable_lsn: self.durable_lsn(),
            queued_bytes: q.queued_bytes as u64,
            disk_full: q.disk_full,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The history this journal's records belong to (read or begun at open).
    pub fn history(&self) -> &history::History {
        &self.history
    }

    /// Deletes segments whose every record is at or below `lsn` (covered by a snapshot)
    /// and consumed by every [`ReadHold`]er. The active segment is never deleted.
    /// Returns the number of files removed.
    pub fn remove_segments_through(&self, lsn: Lsn) -> Result<usize, JournalError> {
        let lsn = self.holds.floor().map_or(lsn, |floor| lsn.min(floor));
        recovery::remove_segments_through(&self.shared.dir, lsn, self.shared.active_first_lsn())
    }

    /// Writes everything queued, stops the threads, and returns once they have exited.
    /// Appends after this are refused.
    pub fn shutdown(&self) {
        {
            let mut q = self.shared.queue.lock();
            q.shutdown = true;
        }
        self.shared.queue_cv.notify_all();
        self.shared.prep_cv.notify_all();
        self.shared.ready_cv.notify_all();
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}
