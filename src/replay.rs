//! Recovery's replay of the journal after a snapshot, brands side by side.
//!
//! Brands are independent: a brand record changes only its brand, a registry record
//! only the registry. So the thread reading the journal decodes each record and hands
//! a brand's records, in LSN order, to the one worker thread that owns that brand; the
//! registry's it applies itself. Each worker folds its records with the same
//! `apply_brand_record` as a live commit and the serial fold (`State::apply_record`),
//! so the state comes out the same. The first record that does not apply (the lowest
//! LSN among the workers' and the reader's) is the error, as in a serial replay.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use crate::actors::drain::{touched_docs, DirtyKey};
use crate::domain::brand::{apply_brand_record, BrandState};
use crate::domain::event::{self, BrandRecord, Event, WalRecord};
use crate::domain::BrandId;
use crate::journal::Lsn;
use crate::state::State;

/// Most worker threads a replay uses (fewer when the machine has fewer cores).
pub const REPLAY_THREADS_MAX: usize = 8;
/// Records handed to a worker at once.
const BATCH_RECORDS: usize = 1024;
/// Batches queued for a worker at most: this bounds the decoded records in memory.
const QUEUED_BATCHES_MAX: usize = 8;

/// Where a replay spent its time.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ReplayTimings {
    pub records: u64,
    pub threads: usize,
    /// Decoding the records (on the reading thread; wall time).
    pub decode: Duration,
    /// Applying them, with the documents they touch for the index: the CPU time of
    /// the workers added up.
    pub apply_cpu: Duration,
}

/// A record failed to apply: its LSN and why.
pub type Failure = (Lsn, String);

struct Worker {
    tx: SyncSender<Vec<(Lsn, BrandRecord)>>,
    batch: Vec<(Lsn, BrandRecord)>,
}

/// What a worker hands back.
struct Done {
    brands: HashMap<BrandId, BrandState>,
    dirty: HashSet<DirtyKey>,
    failure: Option<Failure>,
    apply: Duration,
}

/// The reading side of a replay: feed it every record in LSN order with
/// [`Replay::record`], then [`Replay::finish`].
pub struct Replay<'scope> {
    workers: Vec<Worker>,
    handles: Vec<std::thread::ScopedJoinHandle<'scope, Done>>,
    owner: HashMap<BrandId, usize>,
    next_owner: usize,
    failed: &'scope AtomicBool,
    failure: Option<Failure>,
    timings: ReplayTimings,
    last_lsn: Lsn,
}

/// How many workers to use.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, REPLAY_THREADS_MAX)
}

impl<'scope> Replay<'scope> {
    /// Moves the brands of `state` onto `threads` workers started in `scope`; records
    /// after `dirty_after` note the documents they touch.
    pub fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        state: &mut State,
        threads: usize,
        dirty_after: Option<Lsn>,
        failed: &'scope AtomicBool,
    ) -> Replay<'scope> {
        let threads = threads.max(1);
        let mut ids: Vec<BrandId> = state.brands.keys().cloned().collect();
        ids.sort();
        let mut parts: Vec<HashMap<BrandId, BrandState>> = (0..threads).map(|_| HashMap::new()).collect();
        let mut owner = HashMap::new();
        for (i, id) in ids.into_iter().enumerate() {
            let b = state.brands.remove(&id).expect("listed brand");
            owner.insert(id.clone(), i % threads);
            parts[i % threads].insert(id, b);
        }
        let next_owner = owner.len() % threads;
        let mut workers = Vec::new();
        let mut handles = Vec::new();
        for (index, brands) in parts.into_iter().enumerate() {
            let (tx, rx) = sync_channel(QUEUED_BATCHES_MAX);
            workers.push(Worker { tx, batch: Vec::with_capacity(BATCH_RECORDS) });
            let handle = std::thread::Builder::new()
                .name(format!("zaiko-replay-{index}"))
                .spawn_scoped(scope, move || work(brands, &rx, dirty_after, failed))
                .expect("cannot start a replay thread");
            handles.push(handle);
        }
        Replay {
            workers,
            handles,
            owner,
            next_owner,
            failed,
            failure: None,
            timings: ReplayTimings { threads, ..Default::default() },
            last_lsn: 0,
        }
    }

    /// Folds one record in: the registry's here, a brand's on its worker. Never fails
    /// itself; after a failure the rest is skipped and [`Self::finish`] reports it.
    pub fn record(&mut self, state: &mut State, lsn: Lsn, payload: &[u8]) {
        if self.failure.is_some() || self.failed.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        let decoded = event::decode(payload);
        self.timings.decode += started.elapsed();
        self.timings.records += 1;
        self.last_lsn = lsn;
        match decoded {
            Err(e) => self.failure = Some((lsn, e)),
            Ok(WalRecord::Registry(r)) => {
                if let Err(e) = state.registry.apply(lsn, &r) {
                    self.failure = Some((lsn, e));
                }
            }
            Ok(WalRecord::Brand(b)) => {
                let w = match self.owner.get(&b.brand) {
                    Some(&w) => w,
                    None => {
                        // A new brand (or an unknown one, which its worker refuses).
                        let w = self.next_owner;
                        if matches!(b.events.first(), Some(Event::BrandCreated { .. })) {
                            self.owner.insert(b.brand.clone(), w);
                            self.next_owner = (w + 1) % self.workers.len();
                        }
                        w
                    }
                };
                let worker = &mut self.workers[w];
                worker.batch.push((lsn, b));
                if worker.batch.len() >= BATCH_RECORDS {
                    let batch = std::mem::replace(&mut worker.batch, Vec::with_capacity(BATCH_RECORDS));
                    // A worker that stopped has failed; finish reports it.
                    let _ = worker.tx.send(batch);
                }
            }
        }
    }

    /// Waits for the workers, puts the brands back into `state` and sets its LSN.
    /// Returns the documents touched, or the first record that did not apply.
    pub fn finish(self, state: &mut State) -> Result<(HashSet<DirtyKey>, ReplayTimings), Failure> {
        let Replay { workers, handles, failure, mut timings, last_lsn, .. } = self;
        for w in workers {
            if !w.batch.is_empty() {
                let _ = w.tx.send(w.batch);
            }
        }
        let mut first = failure;
        let mut dirty = HashSet::new();
        for h in handles {
            let done = h.join().expect("a replay thread panicked");
            timings.apply_cpu += done.apply;
            state.brands.extend(done.brands);
            dirty.extend(done.dirty);
            if let Some(f) = done.failure {
                if first.as_ref().is_none_or(|(lsn, _)| f.0 < *lsn) {
                    first = Some(f);
                }
            }
        }
        if let Some(f) = first {
            return Err(f);
        }
        if timings.records > 0 {
            state.lsn = last_lsn;
        }
        Ok((dirty, timings))
    }
}

/// A worker: applies its batches in order until the channel closes, or the first
/// record that does not apply.
fn work(
    mut brands: HashMap<BrandId, BrandState>,
    rx: &Receiver<Vec<(Lsn, BrandRecord)>>,
    dirty_after: Option<Lsn>,
    failed: &AtomicBool,
) -> Done {
    let mut dirty = HashSet::new();
    let mut apply = Duration::ZERO;
    let mut failure = None;
    for batch in rx.iter() {
        if failure.is_some() {
            continue;
        }
        let started = crate::procfs::thread_cpu();
        for (lsn, record) in &batch {
            if let Err(e) = apply_brand_record(&mut brands, *lsn, record) {
                failure = Some((*lsn, e));
                failed.store(true, Ordering::Relaxed);
                break;
            }
            if dirty_after.is_some_and(|after| *lsn > after) {
                dirty.extend(touched_docs(record));
            }
        }
        apply += crate::procfs::thread_cpu().saturating_sub(started);
    }
    Done { brands, dirty, failure, apply }
}
