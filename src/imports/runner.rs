//! The import runner: one thread that runs queued jobs one at a time, applying their
//! rows through the brand's shard actor exactly as API requests are applied (same
//! mailbox, same decisions, same WAL), a chunk per message.
//!
//! Why an import never starves live traffic: at most `chunks_in_flight` chunk messages
//! are queued in the shard's mailbox at once (a live request waits behind at most
//! that many chunks); a full mailbox or a refused append makes the runner back off
//! instead of pushing; an optional `rows_per_second` cap paces it further; and jobs run
//! one after another, never side by side.
//!
//! Exactly once: each chunk message carries its chunk number; the brand accepts only
//! the job's next chunk and records the progress in the same WAL record as the rows
//! (`domain::import`). After any error, and after a restart, the runner reads the
//! job's recorded position and goes on from there.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::SendError;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::reader::{self, ChunkReader, ReadError};
use super::ImportConfig;
use crate::actors::shard::{BrandCmd, BrandMsg};
use crate::actors::{Gated, Router};
use crate::domain::import::{ChunkCmd, ChunkRows, ImportCmd, ImportFormat, ImportKind, ImportStatus, Resume};
use crate::domain::{BrandId, ErrorCode, Id};
use crate::journal::Journal;

use super::parse::Row;

/// Longest back-off after a refused chunk.
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
}

#[derive(Deserialize)]
struct JobState {
    status: ImportStatus,
    kind: ImportKind,
    format: ImportFormat,
    resume: Resume,
}

pub(super) struct Runner {
    pub cfg: Arc<ImportConfig>,
    pub router: Router,
    pub journal: Journal,
}

impl Runner {
    pub(super) fn run(self, jobs: Receiver<(BrandId, Id)>) {
        let _stopped = crate::health::global().worker(crate::health::Worker::Imports).until_dropped();
        for (brand, id) in jobs {
            if let Err(Stop::Shutdown) = self.run_job(&brand, &id) {
                break;
            }
        }
        tracing::info!("import runner stopped");
    }

    fn run_job(&self, brand: &BrandId, id: &Id) -> Result<(), Stop> {
        let health = crate::health::global().worker(crate::health::Worker::Imports);
        let mut backoff = Duration::from_millis(50);
        loop {
            let state = self.state(brand, id)?;
            let Some(state) = state else { return Ok(()) };
            let path = self.cfg.dir.join(super::file_name(id, state.format));
            if matches!(state.status, ImportStatus::Done | ImportStatus::Failed) {
                remove_file(&path);
                return Ok(());
            }
            match self.pass(brand, id, &state, &path) {
                Ok(()) => {
                    self.ask(brand, ImportCmd::Finish { id: id.clone(), failed: None })?;
                    health.ok();
                    tracing::info!(brand = %brand, job = %id, "import done");
                    remove_file(&path);
                    return Ok(());
                }
                Err(Stop::Retry(why)) => {
                    health.failed(&why);
                    tracing::warn!(brand = %brand, job = %id, reason = %why, backoff_ms = backoff.as_millis() as u64, "import paused; resuming from its recorded position");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(Stop::Fatal(why)) => {
                    // The job fails, not the runner: the next job starts healthy.
                    health.ok();
                    tracing::error!(brand = %brand, job = %id, reason = %why, "import failed");
                    self.ask(brand, ImportCmd::Finish { id: id.clone(), failed: Some(why) })?;
                    remove_file(&path);
                    return Ok(());
                }
                Err(Stop::Shutdown) => return Err(Stop::Shutdown),
            }
        }
    }

    /// The job as recorded; `None` if it no longer exists.
    fn state(&self, brand: &BrandId, id: &Id) -> Result<Option<JobState>, Stop> {
        match self.ask(brand, ImportCmd::Get { id: id.clone() }) {
            Ok(body) => Ok(Some(serde_json::from_slice(&body).map_err(|e| Stop::Fatal(format!("job state unreadable: {e}")))?)),
            Err(Stop::Fatal(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// One pass from the recorded position to the end of the file.
    fn pass(&self, brand: &BrandId, id: &Id, state: &JobState, path: &Path) -> Result<(), Stop> {
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
        let mut rows = ChunkReader::open(path, state.format, state.kind, &start, resume.offset, resume.row).map_err(fatal)?;
        let mut in_flight: VecDeque<oneshot::Receiver<Gated>> = VecDeque::new();
        let (started, mut sent_rows) = (Instant::now(), 0u64);
        let mut chunk_no = resume.chunk;
        while let Some(chunk) = rows.next_chunk(self.cfg.chunk_rows, self.cfg.chunk_bytes).map_err(fatal)? {
            sent_rows += chunk.len() as u64;
            let cmd = chunk_cmd(id, chunk_no, state.kind, chunk);
            in_flight.push_back(self.send(brand, ImportCmd::Chunk(Box::new(cmd)))?);
            chunk_no += 1;
            if in_flight.len() >= self.cfg.chunks_in_flight {
                self.settle_chunk(in_flight.pop_front().expect("non-empty"))?;
            }
            self.pace(started, sent_rows);
        }
        while let Some(rx) = in_flight.pop_front() {
            self.settle_chunk(rx)?;
        }
        Ok(())
    }

    /// Sleeps as long as the rows sent are ahead of the configured rate.
    fn pace(&self, started: Instant, sent_rows: u64) {
        if self.cfg.rows_per_second == 0 {
            return;
        }
        let due = Duration::from_secs_f64(sent_rows as f64 / self.cfg.rows_per_second as f64);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
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
                    // The mailbox is full of live traffic (or our own chunks): yield.
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
        // `wait_durable_timeout` checks the durable LSN under the lock the writer
        // notifies with, so no wake-up is missed; the loop only bounds each wait.
        while self.journal.wait_durable_timeout(gated.wait_lsn, Duration::from_secs(1)).map_err(|_| Stop::Shutdown)? < gated.wait_lsn {}
        match gated.result {
            Ok(reply) => Ok(reply.body),
            Err(r) if r.code == ErrorCode::NotFound => Err(Stop::Fatal(r.detail)),
            Err(r) => Err(Stop::Retry(r.to_string())),
        }
    }

    /// Settles a chunk and counts its rows in `zaiko_import_rows_total` (a chunk
    /// applied before, answered with the job instead, counts nothing).
    fn settle_chunk(&self, rx: oneshot::Receiver<Gated>) -> Result<(), Stop> {
        #[derive(Deserialize)]
        struct Applied {
            chunk: Option<u64>,
            #[serde(default)]
            rows_ok: u64,
            #[serde(default)]
            rows_failed: u64,
        }
        let body = self.settle(rx)?;
        if let Ok(Applied { chunk: Some(_), rows_ok, rows_failed }) = serde_json::from_slice(&body) {
            metrics::counter!("zaiko_import_rows_total", "result" => "ok").increment(rows_ok);
            metrics::counter!("zaiko_import_rows_total", "result" => "failed").increment(rows_failed);
        }
        Ok(())
    }

    fn ask(&self, brand: &BrandId, cmd: ImportCmd) -> Result<Vec<u8>, Stop> {
        let rx = self.send(brand, cmd)?;
        self.settle(rx)
    }
}

fn chunk_cmd(id: &Id, chunk: u64, kind: ImportKind, c: reader::Chunk) -> ChunkCmd {
    let (mut lines, mut changes, mut catalog, mut statuses) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The reader parses every row as the job's kind, so only one of these fills.
    for (line, row) in c.rows {
        match row {
            Row::Stock(cmd) => {
                lines.push(line);
                changes.push(cmd);
            }
            Row::Catalog(sku, cat) => catalog.push((line, sku, cat)),
            Row::ShipmentStatus(cmd) => statuses.push((line, cmd)),
        }
    }
    let rows = match kind {
        ImportKind::Stock => ChunkRows::Stock { lines, changes },
        ImportKind::Catalog => ChunkRows::Catalog(catalog),
        ImportKind::ShipmentStatus => ChunkRows::ShipmentStatus(statuses),
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
