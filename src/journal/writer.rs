//! The writer thread (group commit) and the segment preparer thread.
//!
//! Architecture invariant: only the writer thread writes to or fsyncs a segment that
//! holds records; appenders only move payloads into the queue.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::files;
use super::format::{self, Lsn, SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_BYTES};
use super::{AppendError, FailureAction, JournalConfig, JournalStats};

/// Published as the durable LSN once the journal is poisoned, so waiters wake and fail.
pub(super) const POISONED: Lsn = Lsn::MAX;

/// Longest an append waits for the preparer to finish allocating the next segment
/// before it is refused as disk full.
const PREPARE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// A preallocated segment file that has no records and no name yet.
pub(super) struct PreparedSegment {
    pub file: File,
    pub tmp_path: PathBuf,
    pub capacity: u64,
}

struct Pending {
    lsn: Lsn,
    payload: Vec<u8>,
    /// Set on the first record of a new segment: the writer switches to it first.
    roll_to: Option<PreparedSegment>,
}

pub(super) struct Queue {
    pub next_lsn: Lsn,
    records: VecDeque<Pending>,
    pub queued_bytes: usize,
    /// Bytes still free in the segment the newest queued record goes to.
    room_in_current: u64,
    next_segment: Option<PreparedSegment>,
    pub disk_full: bool,
    pub shutdown: bool,
    pub stopped: bool,
}

pub(super) struct Shared {
    pub dir: PathBuf,
    pub cfg: JournalConfig,
    pub queue: Mutex<Queue>,
    pub queue_cv: Condvar,
    pub prep_cv: Condvar,
    /// Signalled when a prepared segment becomes available (or preparation fails).
    pub ready_cv: Condvar,
    pub durable_cv: Condvar,
    pub durable_lsn: AtomicU64,
    pub durable_tx: watch::Sender<Lsn>,
    pub stats: JournalStats,
    active_first: AtomicU64,
}

/// The segment the writer is appending to.
pub(super) struct ActiveSegment {
    pub file: File,
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// Where the next frame goes.
    pub offset: u64,
    pub capacity: u64,
}

impl Shared {
    pub fn new(dir: PathBuf, cfg: JournalConfig, active: &ActiveSegment, next_lsn: Lsn) -> Shared {
        let durable = next_lsn - 1;
        Shared {
            dir,
            cfg,
            queue: Mutex::new(Queue {
                next_lsn,
                records: VecDeque::new(),
                queued_bytes: 0,
                room_in_current: active.capacity - active.offset,
                next_segment: None,
                disk_full: false,
                shutdown: false,
                stopped: false,
            }),
            queue_cv: Condvar::new(),
            prep_cv: Condvar::new(),
            ready_cv: Condvar::new(),
            durable_cv: Condvar::new(),
            durable_lsn: AtomicU64::new(durable),
            durable_tx: watch::Sender::new(durable),
            stats: JournalStats::default(),
            active_first: AtomicU64::new(active.first_lsn),
        }
    }

    pub fn active_first_lsn(&self) -> Lsn {
        self.active_first.load(Ordering::Acquire)
    }

    pub fn append(&self, payload: Vec<u8>) -> Result<Lsn, AppendError> {
        if payload.is_empty() || payload.len() > self.cfg.record_bytes_max {
            return Err(AppendError::TooLarge);
        }
        let frame = format::frame_len(payload.len()) as u64;
        let mut q = self.queue.lock();
        let refused = if q.shutdown || q.stopped {
            Some(AppendError::Stopped)
        } else if q.queued_bytes + payload.len() > self.cfg.queue_bytes_max {
            Some(AppendError::Overloaded)
        } else {
            None
        };
        if let Some(e) = refused {
            drop(q);
            self.stats.appends_refused.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        if frame > q.room_in_current && q.next_segment.is_none() && !q.disk_full {
            // The preparer is still allocating the next segment (it starts as soon as
            // the previous one is taken, so this is rare): wait for it, boundedly.
            let deadline = Instant::now() + PREPARE_WAIT_MAX;
            while q.next_segment.is_none() && !q.disk_full && !q.stopped && !q.shutdown {
                if self.ready_cv.wait_until(&mut q, deadline).timed_out() {
                    break;
                }
            }
        }
        let roll_to = if frame <= q.room_in_current {
            q.room_in_current -= frame;
            None
        } else if let Some(next) = q.next_segment.take() {
            // The record opens the prepared segment; ask for another one.
            q.room_in_current = next.capacity - SEGMENT_HEADER_BYTES as u64 - frame;
            self.prep_cv.notify_one();
            Some(next)
        } else {
            drop(q);
            self.stats.appends_refused.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::DiskFull);
        };
        let lsn = q.next_lsn;
        q.next_lsn += 1;
        q.queued_bytes += payload.len();
        q.records.push_back(Pending { lsn, payload, roll_to });
        drop(q);
        self.queue_cv.notify_one();
        Ok(lsn)
    }

    fn publish_durable(&self, lsn: Lsn) {
        self.durable_lsn.store(lsn, Ordering::Release);
        self.durable_tx.send_replace(lsn);
        let _guard = self.queue.lock();
        self.durable_cv.notify_all();
    }

    /// Fail-stop: a failed write or fsync leaves the file in an unknown state, so
    /// nothing queued may ever be acknowledged.
    fn fail(&self, what: &str, path: &Path, err: &std::io::Error) {
        tracing::error!(path = %path.display(), error = %err, "journal {what} failed; stopping (fail-stop)");
        eprintln!("zaiko: journal {what} failed on {}: {err}; stopping the process", path.display());
        match self.cfg.on_failure {
            FailureAction::Abort => std::process::abort(),
            FailureAction::Poison => {
                let mut q = self.queue.lock();
                q.stopped = true;
                q.records.clear();
                drop(q);
                self.durable_tx.send_replace(POISONED);
                self.durable_cv.notify_all();
            }
        }
    }
}

/// Takes the next batch: everything queued, within the batch bounds. Blocks while the
/// queue is empty. Returns `None` once shut down (or stopped) with nothing left.
fn take_batch(shared: &Shared) -> Option<Vec<Pending>> {
    let cfg = &shared.cfg;
    let mut q = shared.queue.lock();
    loop {
        if q.stopped {
            return None;
        }
        if !q.records.is_empty() {
            break;
        }
        if q.shutdown {
            return None;
        }
        shared.queue_cv.wait(&mut q);
    }
    if !cfg.commit_delay.is_zero() && q.records.len() < cfg.batch_records_max {
        let deadline = Instant::now() + cfg.commit_delay;
        while q.records.len() < cfg.batch_records_max && !q.shutdown {
            if shared.queue_cv.wait_until(&mut q, deadline).timed_out() {
                break;
            }
        }
    }
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    while let Some(p) = q.records.front() {
        if !batch.is_empty() && (batch.len() >= cfg.batch_records_max || bytes + p.payload.len() > cfg.batch_bytes_max) {
            break;
        }
        bytes += p.payload.len();
        batch.push(q.records.pop_front().expect("front exists"));
    }
    q.queued_bytes -= bytes;
    Some(batch)
}

/// The writer thread: one write and one fdatasync per batch.
pub(super) fn run_writer(shared: &Shared, mut seg: ActiveSegment) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut writes_ok = 0u64;
    let mut syncs_ok = 0u64;
    while let Some(batch) = take_batch(shared) {
        let last = batch.last().expect("batch is never empty").lsn;
        let count = batch.len() as u64;
        buf.clear();
        for p in batch {
            if let Some(next) = p.roll_to {
                if !flush(shared, &mut seg, &mut buf, &mut writes_ok, &mut syncs_ok) {
                    return;
                }
                match open_rolled(shared, next, p.lsn) {
                    Ok(s) => {
                        seg = s;
                        shared.active_first.store(seg.first_lsn, Ordering::Release);
                    }
                    Err((path, e)) => return shared.fail("segment roll", &path, &e),
                }
            }
            format::encode_frame(&mut buf, p.lsn, &p.payload);
        }
        let bytes = buf.len() as u64;
        if !flush(shared, &mut seg, &mut buf, &mut writes_ok, &mut syncs_ok) {
            return;
        }
        shared.stats.batches.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("zaiko_wal_batch_records").record(count as f64);
        shared.stats.records.fetch_add(count, Ordering::Relaxed);
        shared.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        shared.publish_durable(last);
    }
    shared.prep_cv.notify_all();
}

/// Writes `buf` at the segment's offset and fdatasyncs. Returns false after a failure
/// (the journal is then stopped or the process gone).
fn flush(shared: &Shared, seg: &mut ActiveSegment, buf: &mut Vec<u8>, writes_ok: &mut u64, syncs_ok: &mut u64) -> bool {
    let faults = &shared.cfg.faults;
    if !buf.is_empty() {
        let res = if faults.fail_write_after.is_some_and(|n| *writes_ok >= n) {
            Err(std::io::Error::other("injected write failure"))
        } else {
            seg.file.write_all_at(buf, seg.offset)
        };
        if let Err(e) = res {
            shared.fail("write", &seg.path, &e);
            return false;
        }
        *writes_ok += 1;
        seg.offset += buf.len() as u64;
        debug_assert!(seg.offset <= seg.capacity, "segment overfilled: space accounting is wrong");
        buf.clear();
    }
    let started = Instant::now();
    if !faults.fsync_delay.is_zero() {
        std::thread::sleep(faults.fsync_delay);
    }
    let res = if faults.fail_fsync_after.is_some_and(|n| *syncs_ok >= n) {
        Err(std::io::Error::other("injected fsync failure"))
    } else {
        seg.file.sync_data()
    };
    if let Err(e) = res {
        shared.fail("fsync", &seg.path, &e);
        return false;
    }
    *syncs_ok += 1;
    let took = started.elapsed();
    shared.stats.fsync_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    metrics::histogram!("zaiko_wal_fsync_seconds").record(took.as_secs_f64());
    true
}

/// Turns a prepared file into the segment that starts at `first_lsn`: header, sync,
/// rename to its final name, sync the directory.
fn open_rolled(shared: &Shared, next: PreparedSegment, first_lsn: Lsn) -> Result<ActiveSegment, (PathBuf, std::io::Error)> {
    let header = SegmentHeader { version: FORMAT_VERSION, first_lsn }.encode();
    let tmp = next.tmp_path.clone();
    next.file.write_all_at(&header, 0).map_err(|e| (tmp.clone(), e))?;
    next.file.sync_data().map_err(|e| (tmp.clone(), e))?;
    let path = files::segment_path(&shared.dir, first_lsn);
    std::fs::rename(&tmp, &path).map_err(|e| (path.clone(), e))?;
    files::sync_dir(&shared.dir).map_err(|e| (shared.dir.clone(), e))?;
    Ok(ActiveSegment { file: next.file, path, first_lsn, offset: SEGMENT_HEADER_BYTES as u64, capacity: next.capacity })
}

/// The preparer thread: keeps one preallocated segment ready. When the disk is full it
/// marks the journal `disk_full` (appends that need a new segment are refused) and
/// retries every `space_retry`.
pub(super) fn run_preparer(shared: &Shared) {
    let mut counter = 0u64;
    loop {
        {
            let mut q = shared.queue.lock();
            while q.next_segment.is_some() && !q.shutdown && !q.stopped {
                shared.prep_cv.wait(&mut q);
            }
            if q.shutdown || q.stopped {
                return;
            }
        }
        counter += 1;
        match prepare(shared, counter) {
            Ok(seg) => {
                let mut q = shared.queue.lock();
                if q.disk_full {
                    tracing::info!("journal space is available again; accepting writes");
                }
                q.disk_full = false;
                q.next_segment = Some(seg);
                shared.ready_cv.notify_all();
            }
            Err(e) => {
                let mut q = shared.queue.lock();
                if !q.disk_full {
                    tracing::error!(error = %e, dir = %shared.dir.display(), "cannot preallocate the next journal segment; refusing writes that need it");
                }
                q.disk_full = true;
                shared.ready_cv.notify_all();
                let retry = shared.cfg.space_retry;
                shared.prep_cv.wait_for(&mut q, retry);
            }
        }
    }
}

fn prepare(shared: &Shared, counter: u64) -> std::io::Result<PreparedSegment> {
    if let Some(flag) = &shared.cfg.faults.enospc_while_exists {
        if flag.exists() {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
    }
    let tmp_path = shared.dir.join(format!("prepared-{}-{counter}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp_path)?;
    let capacity = shared.cfg.segment_bytes;
    if let Err(e) = files::preallocate(&file, capacity) {
        drop(file);
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    file.sync_all()?;
    Ok(PreparedSegment { file, tmp_path, capacity })
}
