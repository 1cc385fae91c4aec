//! The import runner: [`RUNNERS`] threads that apply queued jobs through the brands'
//! shard actors exactly as API requests are applied (same mailbox, same decisions, same
//! WAL), a chunk per message.
//!
//! Brands run side by side. A brand's jobs run one at a time, in the order they were
//! queued; jobs of different brands run at once, at most [`RUNNERS`] of them. A job
//! runs in turns: while another brand's job waits for a runner, the running one gives
//! its runner up after [`TURN`], when it would sleep for its rate cap, or when it must
//! back off after a refusal — so no job, slow, paced or retrying, holds another brand's.
//!
//! Why an import never starves live traffic: at most `chunks_in_flight` chunk messages
//! of a job are queued in the shard's mailbox at once (a live request waits behind at
//! most that many chunks of each running job); a full mailbox or a refused append
//! makes the runner back off instead of pushing; and an optional `rows_per_second` cap
//! paces each job further.
//!
//! Every chunk fits in one journal record. A chunk's events (each stock row records its
//! SKU's stock at every location) can be larger than the journal's record limit; the
//! shard refuses such a chunk before anything changes, and the runner reads the rows
//! again in chunks half as large, until they fit. A single row whose change alone is
//! over the limit is sent again as a failed row (`payload_too_large`), and the job goes
//! on. After [`GROW_AFTER_CHUNKS`] chunks in a row are taken, the chunk size doubles
//! back towards `--import-chunk-rows`.
//!
//! Exactly once: each chunk message carries its chunk number; the brand accepts only
//! the job's next chunk and records the progress in the same WAL record as the rows
//! (`domain::import`). After any error, a split, a turn, and a restart, the runner reads
//! the job's recorded position and goes on from there. A cancelled job's chunks are
//! answered with the job instead of being applied: the runner then sees it ended.
//!
//! Cluster mode: a command refused because the brand's partition is no longer served
//! here (`partition_unavailable`) drops the job from this node — the partition's new
//! owner resumes it from the recorded position (`cluster::imports`).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::SendError;
use parking_lot::{Condvar, Mutex};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::documents;
use super::reader::{self, Chunk, ChunkReader, ReadError};
use super::ImportConfig;
use crate::actors::shard::{BrandCmd, BrandMsg};
use crate::actors::{Gated, Router, Unsettled};
use crate::domain::import::{ChunkCmd, ChunkRows, ImportCmd, ImportFormat, ImportKind, ImportStatus, Resume, RowError};
use crate::domain::{BrandId, ErrorCode, Id};

use super::parse::Row;

/// Jobs applied at once, each of a different brand.
pub const RUNNERS: usize = 4;
/// How long a job keeps its runner while another brand's job waits for one.
pub const TURN: Duration = Duration::from_secs(1);
/// Chunks taken in a row before a chunk size halved by a refusal doubles again.
pub const GROW_AFTER_CHUNKS: u32 = 32;
/// Shortest and longest back-off after a refused chunk.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a pass over a job stopped.
#[derive(Debug)]
enum Stop {
    /// Try again from the job's recorded position after a pause.
    Retry(String),
    /// The job cannot go on (its file is gone or unreadable): it fails.
    Fatal(String),
    /// The server is stopping.
    Shutdown,
    /// The shard refused a command as too large to record (its detail).
    TooLarge(String),
    /// A chunk was too large to record: go on from the recorded position in smaller chunks.
    Split,
    /// A chunk was answered with the job instead of being applied (the job ended, e.g.
    /// cancelled): read the job again.
    Recheck,
    /// The brand's partition is served by another node now (cluster mode): that node
    /// runs the job.
    Moved,
}

/// How a pass over a job ended without an error.
enum Pass {
    /// The whole file is applied.
    End,
    /// Another brand's job waits: go on from the recorded position at this time.
    Yield(Instant),
}

/// How a turn of a job ended.
enum TurnEnd {
    /// The job is over (done, failed, cancelled or gone).
    Ended,
    /// Go on with the job's next turn, not before this time.
    Later(Instant),
    Shutdown,
}

#[derive(Deserialize)]
struct JobState {
    status: ImportStatus,
    kind: ImportKind,
    format: ImportFormat,
    resume: Resume,
}

/// How a job is chunked, and its back-off: kept across its turns.
#[derive(Debug, Clone)]
struct JobRun {
    /// Rows per chunk now (`--import-chunk-rows`, less after a refusal).
    rows_max: usize,
    /// Chunks taken since the chunk size last changed.
    taken: u32,
    /// The line of a row whose change alone is too large to record, and why.
    oversize: Option<(u64, String)>,
    backoff: Duration,
    /// Transfers or returns files: the documents that fail wherever they fall
    /// (`reader::document_problems`), found once per job by this process.
    problems: Option<Arc<HashMap<Id, String>>>,
}

impl JobRun {
    fn new(rows_max: usize) -> JobRun {
        JobRun { rows_max, taken: 0, oversize: None, backoff: BACKOFF_MIN, problems: None }
    }

    /// A chunk of `rows` rows was refused as too large: the next ones take half as many.
    fn halve(&mut self, rows: usize) {
        self.rows_max = (rows / 2).max(1);
        self.taken = 0;
    }

    /// A chunk was taken: after enough in a row, the chunk size grows back to `full`.
    fn took(&mut self, full: usize) {
        self.backoff = BACKOFF_MIN;
        self.taken += 1;
        if self.rows_max < full && self.taken >= GROW_AFTER_CHUNKS {
            self.rows_max = (self.rows_max * 2).min(full);
            self.taken = 0;
        }
    }

    /// Turns the row known to be too large to record, read alone again, into a failed row.
    fn fail_oversize_row(&mut self, chunk: &mut Chunk) {
        let alone = chunk.errors.is_empty() && chunk.rows.len() == 1;
        if !alone || self.oversize.as_ref().is_none_or(|(line, _)| *line != chunk.rows[0].0) {
            return;
        }
        let (row, why) = self.oversize.take().expect("checked above");
        chunk.rows.clear();
        chunk.errors.push(RowError {
            row,
            code: ErrorCode::PayloadTooLarge,
            detail: format!("the row cannot be applied alone: {why}; an operator can raise --wal-record-bytes-max (at most 16 MiB)"),
        });
    }
}

/// A chunk sent and not yet settled.
struct InFlight {
    rx: oneshot::Receiver<Gated>,
    rows: usize,
    /// The line of its row when it holds exactly one row (and no failed one).
    single_row: Option<u64>,
}

/// The brands with jobs to run, and which of them wait for a runner.
#[derive(Default)]
struct Schedule {
    brands: HashMap<BrandId, BrandJobs>,
    /// Brands whose head job waits for a runner, in turn order (a brand being run is
    /// in `brands` but not here).
    ready: VecDeque<BrandId>,
    /// Runners waiting for a brand.
    idle: usize,
    stopping: bool,
}

struct BrandJobs {
    /// Queued and running jobs, in the order they were queued; the first runs.
    jobs: VecDeque<Id>,
    /// How the first job is chunked.
    run: JobRun,
    /// Its next turn starts no earlier than this (a back-off, its rate cap).
    not_before: Instant,
}

/// The schedule the runners share.
struct Shared {
    schedule: Mutex<Schedule>,
    cv: Condvar,
    chunk_rows: usize,
}

impl Shared {
    /// Adds a job to its brand's queue (once, however often it is named).
    fn add(&self, brand: BrandId, id: Id) {
        let mut s = self.schedule.lock();
        match s.brands.get_mut(&brand) {
            Some(b) => {
                if !b.jobs.contains(&id) {
                    b.jobs.push_back(id);
                }
            }
            None => {
                let b = BrandJobs { jobs: VecDeque::from([id]), run: JobRun::new(self.chunk_rows), not_before: Instant::now() };
                s.brands.insert(brand.clone(), b);
                s.ready.push_back(brand);
                self.cv.notify_all();
            }
        }
    }

    /// Waits for the next brand whose turn it is; returns it with its first job and how
    /// that job is chunked. `None` once the runners stop.
    fn take(&self) -> Option<(BrandId, Id, JobRun)> {
        let mut s = self.schedule.lock();
        loop {
            if s.stopping {
                return None;
            }
            let now = Instant::now();
            if let Some(i) = s.ready.iter().position(|b| s.brands[b].not_before <= now) {
                let brand = s.ready.remove(i).expect("a found position");
                let b = &s.brands[&brand];
                let job = (b.jobs[0].clone(), b.run.clone());
                return Some((brand, job.0, job.1));
            }
            let wake = s.ready.iter().map(|b| s.brands[b].not_before).min();
            s.idle += 1;
            match wake {
                Some(at) => {
                    self.cv.wait_until(&mut s, at);
                }
                None => self.cv.wait(&mut s),
            }
            s.idle -= 1;
        }
    }

    /// Whether another brand's job waits for a runner and none is free.
    fn others_waiting(&self) -> bool {
        let s = self.schedule.lock();
        let now = Instant::now();
        s.idle == 0 && s.ready.iter().any(|b| s.brands[b].not_before <= now)
    }

    /// Hands a brand back after a turn of its first job.
    fn put_back(&self, brand: BrandId, end: &TurnEnd, run: JobRun) {
        let mut s = self.schedule.lock();
        let b = s.brands.get_mut(&brand).expect("a brand being run stays listed");
        match end {
            TurnEnd::Later(at) => {
                b.run = run;
                b.not_before = *at;
            }
            TurnEnd::Ended | TurnEnd::Shutdown => {
                b.jobs.pop_front();
                b.run = JobRun::new(self.chunk_rows);
                b.not_before = Instant::now();
            }
        }
        if b.jobs.is_empty() {
            s.brands.remove(&brand);
        } else {
            s.ready.push_back(brand);
        }
        self.cv.notify_all();
    }

    fn stop(&self) {
        self.schedule.lock().stopping = true;
        self.cv.notify_all();
    }
}

/// Told the brand and file name of every job that ended here (cluster mode deletes the
/// job's stored upload).
pub type OnEnded = Arc<dyn Fn(&BrandId, &str) + Send + Sync>;

pub(super) struct Runner {
    pub cfg: Arc<ImportConfig>,
    pub router: Router,
    pub on_ended: Option<OnEnded>,
}

/// Starts the runners and the thread that hands them the jobs named on `jobs`.
pub(super) fn start(runner: Runner, jobs: Receiver<(BrandId, Id)>) -> std::io::Result<()> {
    let shared = Arc::new(Shared { schedule: Mutex::default(), cv: Condvar::new(), chunk_rows: runner.cfg.chunk_rows });
    let runner = Arc::new(runner);
    for i in 0..RUNNERS {
        let (runner, shared) = (runner.clone(), shared.clone());
        std::thread::Builder::new().name(format!("zaiko-import-{i}")).spawn(move || runner.work(&shared))?;
    }
    std::thread::Builder::new().name("zaiko-imports".into()).spawn(move || {
        for (brand, id) in jobs {
            shared.add(brand, id);
        }
        shared.stop();
    })?;
    Ok(())
}

impl Runner {
    fn work(&self, shared: &Shared) {
        let _stopped = crate::health::global().worker(crate::health::Worker::Imports).until_dropped();
        while let Some((brand, id, mut run)) = shared.take() {
            let end = self.turn(&brand, &id, &mut run, shared);
            let stopping = matches!(end, TurnEnd::Shutdown);
            shared.put_back(brand, &end, run);
            if stopping {
                shared.stop();
            }
        }
        tracing::info!("import runner stopped");
    }

    /// Runs a job from its recorded position until it ends or its turn does.
    fn turn(&self, brand: &BrandId, id: &Id, run: &mut JobRun, shared: &Shared) -> TurnEnd {
        let turn_started = Instant::now();
        loop {
            let state = match self.state(brand, id) {
                Ok(Some(state)) => state,
                Ok(None) => return TurnEnd::Ended,
                Err(stop) => return self.stopped(brand, id, run, stop),
            };
            let path = self.cfg.dir.join(super::file_name(id, state.format));
            if matches!(state.status, ImportStatus::Done | ImportStatus::Failed | ImportStatus::Cancelled) {
                self.ended(brand, &path);
                return TurnEnd::Ended;
            }
            match self.pass(brand, id, &state, &path, run, shared, turn_started) {
                Ok(Pass::End) => match self.ask(brand, ImportCmd::Finish { id: id.clone(), failed: None }) {
                    Ok(_) => {
                        crate::health::global().worker(crate::health::Worker::Imports).ok();
                        tracing::info!(brand = %brand, job = %id, "import done");
                        self.ended(brand, &path);
                        return TurnEnd::Ended;
                    }
                    Err(stop) => return self.stopped(brand, id, run, stop),
                },
                Ok(Pass::Yield(at)) => return TurnEnd::Later(at),
                Err(Stop::Split | Stop::Recheck) => {}
                Err(stop) => return self.stopped(brand, id, run, stop),
            }
        }
    }

    /// What a turn comes to after a pass or a command stopped with `stop`.
    fn stopped(&self, brand: &BrandId, id: &Id, run: &mut JobRun, stop: Stop) -> TurnEnd {
        match stop {
            Stop::Shutdown => TurnEnd::Shutdown,
            Stop::Moved => {
                // A refusal from before the partition came back here is no move.
                if let Ok(Some(_)) = self.state(brand, id) {
                    return TurnEnd::Later(Instant::now());
                }
                tracing::info!(brand = %brand, job = %id, "import handed to the partition's new owner");
                for format in [ImportFormat::Csv, ImportFormat::Ndjson] {
                    remove_file(&self.cfg.dir.join(super::file_name(id, format)));
                }
                TurnEnd::Ended
            }
            Stop::Fatal(why) | Stop::TooLarge(why) => {
                // A job cancelled meanwhile may have lost its file: that is no failure.
                if let Ok(Some(state)) = self.state(brand, id) {
                    if state.status == ImportStatus::Cancelled {
                        return TurnEnd::Ended;
                    }
                }
                // The job fails, not the runner: the next job starts healthy.
                crate::health::global().worker(crate::health::Worker::Imports).ok();
                tracing::error!(brand = %brand, job = %id, reason = %why, "import failed");
                match self.ask(brand, ImportCmd::Finish { id: id.clone(), failed: Some(why) }) {
                    Ok(_) => {
                        if let Ok(Some(state)) = self.state(brand, id) {
                            self.ended(brand, &self.cfg.dir.join(super::file_name(id, state.format)));
                        }
                        TurnEnd::Ended
                    }
                    Err(Stop::Shutdown) => TurnEnd::Shutdown,
                    Err(_) => self.back_off(brand, id, run, "its failure could not be recorded"),
                }
            }
            Stop::Retry(why) => self.back_off(brand, id, run, &why),
            Stop::Split | Stop::Recheck => TurnEnd::Later(Instant::now()),
        }
    }

    fn back_off(&self, brand: &BrandId, id: &Id, run: &mut JobRun, why: &str) -> TurnEnd {
        crate::health::global().worker(crate::health::Worker::Imports).failed(why);
        let pause = run.backoff;
        run.backoff = (run.backoff * 2).min(BACKOFF_MAX);
        tracing::warn!(brand = %brand, job = %id, reason = %why, backoff_ms = pause.as_millis() as u64, "import paused; resuming from its recorded position");
        TurnEnd::Later(Instant::now() + pause)
    }

    /// The job as recorded; `None` if it no longer exists.
    fn state(&self, brand: &BrandId, id: &Id) -> Result<Option<JobState>, Stop> {
        match self.ask(brand, ImportCmd::Get { id: id.clone() }) {
            Ok(body) => Ok(Some(serde_json::from_slice(&body).map_err(|e| Stop::Fatal(format!("job state unreadable: {e}")))?)),
            Err(Stop::Fatal(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// One pass from the recorded position to the end of the file, or until another
    /// brand's job should have the runner.
    #[allow(clippy::too_many_arguments)]
    fn pass(
        &self,
        brand: &BrandId,
        id: &Id,
        state: &JobState,
        path: &Path,
        run: &mut JobRun,
        shared: &Shared,
        turn_started: Instant,
    ) -> Result<Pass, Stop> {
        let fatal = |e: ReadError| Stop::Fatal(e.to_string());
        let start = reader::start(path, state.format, state.kind).map_err(fatal)?;
        let mut resume = state.resume;
        if state.status == ImportStatus::Queued {
            let rows_total = reader::count_rows(path, state.format).map_err(fatal)?;
            self.ask(brand, ImportCmd::Start { id: id.clone(), rows_total })?;
            tracing::info!(brand = %brand, job = %id, rows_total, "import started");
        }
        if resume.chunk == 0 {
            (resume.offset, resume.row) = (start.offset, start.line);
        }
        if state.kind.is_document() && run.problems.is_none() {
            run.problems = Some(Arc::new(reader::document_problems(path, state.format, state.kind, &start).map_err(fatal)?));
        }
        let problems = run.problems.clone().unwrap_or_default();
        let mut rows = ChunkReader::open(path, state.format, state.kind, &start, resume.offset, resume.row).map_err(fatal)?;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let (started, mut sent_rows) = (Instant::now(), 0u64);
        let mut chunk_no = resume.chunk;
        while let Some(mut chunk) = rows.next_chunk(run.rows_max, self.cfg.chunk_bytes).map_err(fatal)? {
            run.fail_oversize_row(&mut chunk);
            let single_row = (chunk.errors.is_empty() && chunk.rows.len() == 1).then(|| chunk.rows[0].0);
            let len = chunk.len();
            sent_rows += len as u64;
            let cmd = chunk_cmd(id, chunk_no, state.kind, chunk, &problems);
            let rx = self.send(brand, ImportCmd::Chunk(Box::new(cmd)))?;
            in_flight.push_back(InFlight { rx, rows: len, single_row });
            chunk_no += 1;
            if in_flight.len() >= self.cfg.chunks_in_flight {
                self.settle_chunk(in_flight.pop_front().expect("non-empty"), run)?;
            }
            // Paced or past its turn, the job gives its runner to a waiting brand.
            loop {
                let wait = self.pace(started, sent_rows);
                if (!wait.is_zero() || turn_started.elapsed() >= TURN) && shared.others_waiting() {
                    while let Some(c) = in_flight.pop_front() {
                        self.settle_chunk(c, run)?;
                    }
                    return Ok(Pass::Yield(Instant::now() + self.pace(started, sent_rows)));
                }
                if wait.is_zero() {
                    break;
                }
                std::thread::sleep(wait.min(TURN));
            }
        }
        while let Some(c) = in_flight.pop_front() {
            self.settle_chunk(c, run)?;
        }
        Ok(Pass::End)
    }

    /// How long to wait before the next chunk for the rows sent to stay within the
    /// configured rate.
    fn pace(&self, started: Instant, sent_rows: u64) -> Duration {
        if self.cfg.rows_per_second == 0 {
            return Duration::ZERO;
        }
        let due = Duration::from_secs_f64(sent_rows as f64 / self.cfg.rows_per_second as f64);
        due.saturating_sub(started.elapsed())
    }

    /// Queues a command in the brand's shard mailbox, waiting while it is full.
    fn send(&self, brand: &BrandId, cmd: ImportCmd) -> Result<oneshot::Receiver<Gated>, Stop> {
        let mut cmd = BrandCmd::Import(cmd);
        let mut backoff = Duration::from_millis(1);
        loop {
            let (reply, rx) = oneshot::channel();
            match self.router.try_send_brand(BrandMsg { brand: brand.clone(), cmd, idem: None, reply }).map_err(|e| *e) {
                Ok(()) => return Ok(rx),
                Err(SendError::Full(msg)) => {
                    // The mailbox is full of live traffic (or chunks): yield.
                    cmd = msg.cmd;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(SendError::Closed(_)) => return Err(Stop::Shutdown),
            }
        }
    }

    /// Waits for a command's answer and for its record to be durable.
    fn settle(&self, rx: oneshot::Receiver<Gated>) -> Result<Vec<u8>, Stop> {
        let gated = rx.blocking_recv().map_err(|_| Stop::Shutdown)?;
        // A chunk waits as long as its record takes: the runner has nothing better to do,
        // and a chunk given up on would be sent again and refused as out of order.
        if let Some(pending) = &gated.pending {
            loop {
                match pending.settle_blocking(Duration::from_secs(1)) {
                    Ok(()) => break,
                    Err(Unsettled::TimedOut) => continue,
                    Err(Unsettled::Stopped) => return Err(Stop::Shutdown),
                }
            }
        }
        match gated.result {
            Ok(reply) => Ok(reply.body),
            Err(r) if r.code == ErrorCode::NotFound => Err(Stop::Fatal(r.detail)),
            Err(r) if r.code == ErrorCode::PayloadTooLarge => Err(Stop::TooLarge(r.detail)),
            Err(r) if r.code == ErrorCode::PartitionUnavailable => Err(Stop::Moved),
            Err(r) => Err(Stop::Retry(r.to_string())),
        }
    }

    /// Settles a chunk and counts its rows in `zaiko_import_rows_total`. A chunk
    /// answered with the job instead (the job ended) is a `Recheck`; one too large to
    /// record is a `Split`, after which the job is read in smaller chunks.
    fn settle_chunk(&self, c: InFlight, run: &mut JobRun) -> Result<(), Stop> {
        #[derive(Deserialize)]
        struct Applied {
            chunk: Option<u64>,
            #[serde(default)]
            rows_ok: u64,
            #[serde(default)]
            rows_failed: u64,
        }
        let body = match self.settle(c.rx) {
            Ok(body) => body,
            Err(Stop::TooLarge(why)) => {
                match c.single_row {
                    Some(line) => {
                        run.oversize = Some((line, why));
                        run.halve(1);
                    }
                    None if c.rows > 1 => run.halve(c.rows),
                    None => return Err(Stop::Fatal(format!("a chunk of failed rows is too large to record: {why}"))),
                }
                return Err(Stop::Split);
            }
            Err(other) => return Err(other),
        };
        match serde_json::from_slice(&body) {
            Ok(Applied { chunk: Some(_), rows_ok, rows_failed }) => {
                metrics::counter!("zaiko_import_rows_total", "result" => "ok").increment(rows_ok);
                metrics::counter!("zaiko_import_rows_total", "result" => "failed").increment(rows_failed);
                run.took(self.cfg.chunk_rows);
                Ok(())
            }
            _ => Err(Stop::Recheck),
        }
    }

    /// A job ended here: its file goes, and the hook hears of it.
    fn ended(&self, brand: &BrandId, path: &Path) {
        remove_file(path);
        if let (Some(hook), Some(name)) = (&self.on_ended, path.file_name().and_then(|n| n.to_str())) {
            hook(brand, name);
        }
    }

    fn ask(&self, brand: &BrandId, cmd: ImportCmd) -> Result<Vec<u8>, Stop> {
        let rx = self.send(brand, cmd)?;
        self.settle(rx)
    }
}

fn chunk_cmd(id: &Id, chunk: u64, kind: ImportKind, c: reader::Chunk, problems: &HashMap<Id, String>) -> ChunkCmd {
    let (mut lines, mut changes, mut catalog, mut statuses, mut docs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The reader parses every row as the job's kind, so only one of these fills.
    for (line, row) in c.rows {
        match row {
            Row::Stock(cmd) => {
                lines.push(line);
                changes.push(cmd);
            }
            Row::Catalog(sku, cat) => catalog.push((line, sku, cat)),
            Row::ShipmentStatus(cmd) => statuses.push((line, cmd)),
            Row::Document(doc, row) => docs.push((line, doc, row)),
        }
    }
    let rows = match kind {
        ImportKind::Stock => ChunkRows::Stock { lines, changes },
        ImportKind::Catalog => ChunkRows::Catalog(catalog),
        ImportKind::ShipmentStatus => ChunkRows::ShipmentStatus(statuses),
        ImportKind::Transfers => ChunkRows::Transfers(documents::transfers(docs, problems)),
        ImportKind::Returns => ChunkRows::Returns(documents::returns(docs, problems)),
    };
    ChunkCmd { id: id.clone(), chunk, next_offset: c.next_offset, next_row: c.next_row, rows, pre_errors: c.errors }
}

fn remove_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a finished import's file"),
    }
}
