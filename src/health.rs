//! The health of the background workers — the search indexer, the change feed, webhook
//! delivery, scheduled snapshots and the import runner — as each reports it, for
//! `/readyz` and `/metrics`.
//!
//! A worker is `ok`, `retrying` (its last attempt failed with an error it expects to
//! pass — a full disk, no file descriptors left, a SQLite error — and it tries again
//! after a bounded exponential [`Backoff`]), or `stopped` (its thread or task ended:
//! at shutdown, or after a panic). Nothing but a restart brings a stopped worker back.
//!
//! **What makes `/readyz` 503**: a `stopped` worker (the node needs a restart). A
//! `retrying` worker does not: writes and reads still work and what the worker derives
//! (the search index, the feed, deliveries, snapshots, imports) only falls behind and
//! catches up by itself, so taking the node out of a load balancer would turn a lag
//! into an outage. It is shown instead: `/readyz` answers `"status": "degraded"` with
//! the worker's error, and `/metrics` has `zaiko_worker_healthy` 0.
//!
//! The registry is process-wide ([`global`]), like the metrics recorder: each worker
//! reports through a [`WorkerHealth`] handle, and tests make registries of their own.
//! Errors the workers must not retry (a failed journal fsync) never reach here: the
//! journal stops the process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::domain::Timestamp;

/// The background workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Worker {
    Indexer,
    Feed,
    Webhooks,
    Snapshots,
    Imports,
}

impl Worker {
    pub const ALL: [Worker; 5] = [Worker::Indexer, Worker::Feed, Worker::Webhooks, Worker::Snapshots, Worker::Imports];

    /// The name in `/readyz` and in the `worker` label of `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Worker::Indexer => "indexer",
            Worker::Feed => "feed",
            Worker::Webhooks => "webhooks",
            Worker::Snapshots => "snapshots",
            Worker::Imports => "imports",
        }
    }
}

/// Longest error text kept per worker: the message of an I/O error with its path.
const ERROR_CHARS_MAX: usize = 512;

/// What a worker last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WorkerState {
    Ok,
    /// Its attempts fail; it tries again after a growing delay.
    Retrying {
        /// When the first of the failed attempts in a row failed.
        #[serde(with = "crate::domain::time::rfc3339")]
        since: Timestamp,
        /// Failed attempts in a row.
        attempts: u64,
        /// The error of the last one.
        last_error: String,
    },
    /// Its thread or task ended; only a restart brings it back.
    Stopped {
        #[serde(with = "crate::domain::time::rfc3339")]
        since: Timestamp,
        reason: String,
    },
}

#[derive(Debug)]
struct Entry {
    worker: Worker,
    state: Mutex<WorkerState>,
    /// Failed attempts since the process started.
    errors: AtomicU64,
}

/// A registry of the workers' health.
#[derive(Debug)]
pub struct Health {
    entries: Vec<Arc<Entry>>,
}

/// What one worker looks like now.
#[derive(Debug, Clone)]
pub struct Report {
    pub worker: Worker,
    pub state: WorkerState,
    pub errors_total: u64,
}

impl Report {
    pub fn healthy(&self) -> bool {
        self.state == WorkerState::Ok
    }

    /// Failed attempts in a row now (0 unless retrying).
    pub fn attempts(&self) -> u64 {
        match self.state {
            WorkerState::Retrying { attempts, .. } => attempts,
            _ => 0,
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// Every worker `ok`.
    pub fn new() -> Health {
        let entries = Worker::ALL
            .iter()
            .map(|&worker| Arc::new(Entry { worker, state: Mutex::new(WorkerState::Ok), errors: AtomicU64::new(0) }))
            .collect();
        Health { entries }
    }

    /// The handle a worker reports through.
    pub fn worker(&self, worker: Worker) -> WorkerHealth {
        let entry = self.entries.iter().find(|e| e.worker == worker).expect("every worker has an entry").clone();
        WorkerHealth { entry }
    }

    /// Every worker, in [`Worker::ALL`] order.
    pub fn reports(&self) -> Vec<Report> {
        self.entries
            .iter()
            .map(|e| Report { worker: e.worker, state: e.state.lock().clone(), errors_total: e.errors.load(Ordering::Relaxed) })
            .collect()
    }
}

/// The registry the server's workers report to.
pub fn global() -> &'static Health {
    static GLOBAL: LazyLock<Health> = LazyLock::new(Health::new);
    &GLOBAL
}

/// The workers' states keyed by name, as `/readyz` shows them.
pub fn by_name(reports: &[Report]) -> BTreeMap<&'static str, WorkerState> {
    reports.iter().map(|r| (r.worker.name(), r.state.clone())).collect()
}

/// One worker's side of the registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerHealth {
    entry: Arc<Entry>,
}

fn now() -> Timestamp {
    SystemClock.now()
}

fn clip(error: String) -> String {
    match error.char_indices().nth(ERROR_CHARS_MAX) {
        Some((at, _)) => format!("{}…", &error[..at]),
        None => error,
    }
}

impl WorkerHealth {
    /// A handle on a registry of its own (tests).
    pub fn detached(worker: Worker) -> WorkerHealth {
        Health::new().worker(worker)
    }

    /// An attempt succeeded. Logs the recovery if it was retrying.
    pub fn ok(&self) {
        let mut state = self.entry.state.lock();
        if let WorkerState::Retrying { attempts, since, .. } = &*state {
            let failing_ms = (now().0 - since.0).max(0);
            tracing::info!(worker = self.entry.worker.name(), failed_attempts = attempts, failing_ms, "worker recovered");
        }
        if !matches!(*state, WorkerState::Stopped { .. }) {
            *state = WorkerState::Ok;
        }
    }

    /// An attempt failed and will be retried. Returns the failed attempts in a row.
    pub fn failed(&self, error: impl std::fmt::Display) -> u64 {
        self.entry.errors.fetch_add(1, Ordering::Relaxed);
        let last_error = clip(error.to_string());
        let mut state = self.entry.state.lock();
        match &mut *state {
            WorkerState::Retrying { attempts, last_error: last, .. } => {
                *attempts += 1;
                *last = last_error;
                *attempts
            }
            WorkerState::Ok => {
                *state = WorkerState::Retrying { since: now(), attempts: 1, last_error };
                1
            }
            WorkerState::Stopped { .. } => 0,
        }
    }

    /// The worker ended.
    pub fn stopped(&self, reason: impl Into<String>) {
        *self.entry.state.lock() = WorkerState::Stopped { since: now(), reason: clip(reason.into()) };
    }

    /// A guard that marks the worker `stopped` when dropped: when the thread or task
    /// that holds it ends, normally or by a panic.
    pub fn until_dropped(&self) -> StopGuard {
        StopGuard(self.clone())
    }

    pub fn state(&self) -> WorkerState {
        self.entry.state.lock().clone()
    }
}

/// See [`WorkerHealth::until_dropped`].
pub struct StopGuard(WorkerHealth);

impl Drop for StopGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stopped("it panicked (a bug; the log has the panic); restart the server");
        } else {
            self.0.stopped("it ended: the server is stopping");
        }
    }
}

/// A bounded exponential backoff: `first`, twice that, … up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max, next: first }
    }

    /// The delay before the next retry; each call doubles the one after, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_goes_from_ok_to_retrying_and_back() {
        let health = Health::new();
        let h = health.worker(Worker::Indexer);
        assert_eq!(h.failed("no space left on device"), 1);
        assert_eq!(h.failed("no space left on device (again)"), 2);
        let r = &health.reports()[0];
        assert!(!r.healthy());
        assert_eq!((r.attempts(), r.errors_total), (2, 2));
        match &r.state {
            WorkerState::Retrying { last_error, .. } => assert_eq!(last_error, "no space left on device (again)"),
            other => panic!("{other:?}"),
        }
        h.ok();
        let r = &health.reports()[0];
        assert!(r.healthy());
        assert_eq!((r.attempts(), r.errors_total), (0, 2), "the error count stays");
        assert!(health.reports()[1..].iter().all(Report::healthy), "other workers are untouched");
    }

    #[test]
    fn a_stopped_worker_stays_stopped_and_a_guard_marks_it() {
        let health = Health::new();
        let h = health.worker(Worker::Feed);
        drop(h.until_dropped());
        assert!(matches!(h.state(), WorkerState::Stopped { .. }));
        h.ok();
        h.failed("late");
        assert!(matches!(h.state(), WorkerState::Stopped { .. }), "nothing revives a stopped worker");
        let json = serde_json::to_value(by_name(&health.reports())).unwrap();
        assert_eq!(json["feed"]["state"], "stopped");
        assert_eq!(json["indexer"], serde_json::json!({"state": "ok"}));
    }

    #[test]
    fn a_panicking_thread_leaves_its_worker_stopped() {
        let h = WorkerHealth::detached(Worker::Imports);
        let h2 = h.clone();
        let joined = std::thread::spawn(move || {
            let _guard = h2.until_dropped();
            panic!("boom");
        })
        .join();
        assert!(joined.is_err());
        match h.state() {
            WorkerState::Stopped { reason, .. } => assert!(reason.contains("panicked"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_errors_are_clipped() {
        let h = WorkerHealth::detached(Worker::Webhooks);
        h.failed("é".repeat(2 * ERROR_CHARS_MAX));
        match h.state() {
            WorkerState::Retrying { last_error, .. } => assert_eq!(last_error.chars().count(), ERROR_CHARS_MAX + 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
