//! Bulk imports: upload a CSV or NDJSON file once, applied in the background at a
//! controlled rate, with progress and per-row errors, resumable after a crash with no
//! row applied twice.
//!
//! * [`upload`] — writing an upload to `<data-dir>/imports/` on a blocking thread
//!   (hashed, fsynced, renamed into place) and checking its header.
//! * [`parse`] — CSV header and row parsing (pure).
//! * [`reader`] — the file read in chunks from any recorded position.
//! * [`documents`] — transfers and returns: a chunk's rows grouped into documents.
//! * [`runner`] — the thread that applies queued jobs through the shard actors.
//! * [`client`] — `zaiko import`: upload and follow a job from the command line.
//!
//! A job exists once its `ImportQueued` record is durable (after its file is). The
//! runner learns of new jobs from the change feed thread, which reads every record of
//! the journal, and of unfinished jobs at start from the recovered state.

pub mod client;
pub mod documents;
pub mod parse;
pub mod reader;
mod runner;
pub use runner::OnEnded;
pub mod upload;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::actors::Router;
use crate::domain::import::{ImportFormat, ImportSpec};
use crate::domain::{BrandId, Id};

/// Largest upload.
pub const UPLOAD_BYTES_MAX: u64 = 512 << 20;
/// Uploads streaming at once; more are answered `overloaded`.
pub const UPLOADS_MAX: usize = 4;
/// Rows per chunk (one actor message and one WAL record each).
pub const CHUNK_ROWS_DEFAULT: usize = 1000;
/// Input bytes per chunk, whatever the rows: bounds what a chunk holds in memory. (Its
/// record can still be larger than the journal takes — a stock row records its SKU's
/// stock at every location — and is then split by the runner.)
pub const CHUNK_BYTES_MAX: u64 = 1 << 20;
/// Chunk messages of one job queued in a shard's mailbox at once.
pub const CHUNKS_IN_FLIGHT_DEFAULT: usize = 8;

#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// `<data-dir>/imports`.
    pub dir: PathBuf,
    /// Rows per second of each job at most (0: no cap beyond the in-flight bound).
    pub rows_per_second: u64,
    pub chunk_rows: usize,
    pub chunk_bytes: u64,
    pub chunks_in_flight: usize,
}

/// The file of a job under the imports dir.
pub fn file_name(id: &Id, format: ImportFormat) -> String {
    match format {
        ImportFormat::Csv => format!("{id}.csv"),
        ImportFormat::Ndjson => format!("{id}.ndjson"),
    }
}

/// A handle for the HTTP routes: the upload bounds and the job queue.
#[derive(Clone)]
pub struct Imports {
    pub cfg: Arc<ImportConfig>,
    jobs: Sender<(BrandId, Id)>,
    uploads: Arc<tokio::sync::Semaphore>,
    /// `(brand, Idempotency-Key)` of uploads still streaming.
    in_progress: Arc<Mutex<HashSet<(BrandId, String)>>>,
}

/// Removes a key from the in-progress set when the upload ends, however it ends.
pub struct InProgress {
    set: Arc<Mutex<HashSet<(BrandId, String)>>>,
    key: Option<(BrandId, String)>,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.set.lock().remove(&k);
        }
    }
}

impl Imports {
    /// Creates the handle and the receiving end of the job queue (for the runner).
    pub fn new(cfg: ImportConfig) -> std::io::Result<(Imports, Receiver<(BrandId, Id)>)> {
        std::fs::create_dir_all(&cfg.dir)?;
        let (jobs, rx) = channel();
        let imports = Imports {
            cfg: Arc::new(cfg),
            jobs,
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOADS_MAX)),
            in_progress: Arc::new(Mutex::new(HashSet::new())),
        };
        Ok((imports, rx))
    }

    /// The sender the feed thread tells about newly queued jobs.
    pub fn job_sender(&self) -> Sender<(BrandId, Id)> {
        self.jobs.clone()
    }

    /// Removes files of no unfinished job (a crash during an upload, or before a
    /// finished job's file was removed), queues the unfinished jobs, and starts the
    /// runner thread.
    pub fn start_runner(
        &self,
        rx: Receiver<(BrandId, Id)>,
        router: Router,
        pending: Vec<(BrandId, ImportSpec)>,
        on_ended: Option<OnEnded>,
    ) -> std::io::Result<()> {
        let keep: HashSet<String> = pending.iter().map(|(_, s)| file_name(&s.id, s.format)).collect();
        for entry in std::fs::read_dir(&self.cfg.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if !keep.contains(&name) {
                tracing::info!(file = %name, "removing an import file of no unfinished job");
                std::fs::remove_file(entry.path())?;
            }
        }
        for (brand, spec) in pending {
            tracing::info!(brand = %brand, job = %spec.id, "resuming an unfinished import");
            let _ = self.jobs.send((brand, spec.id));
        }
        runner::start(runner::Runner { cfg: self.cfg.clone(), router, on_ended }, rx)
    }

    /// Gives a job to the runner (once, however often it is named; a job that has
    /// ended is dropped when the runner reads it).
    pub fn queue(&self, brand: BrandId, id: Id) {
        let _ = self.jobs.send((brand, id));
    }

    /// A slot for one streaming upload, or `None` when [`UPLOADS_MAX`] are running.
    pub fn upload_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.uploads.clone().try_acquire_owned().ok()
    }

    /// Marks an `Idempotency-Key` as in progress; `None` if it already is.
    pub fn begin(&self, brand: &BrandId, key: Option<&str>) -> Option<InProgress> {
        let key = key.map(|k| (brand.clone(), k.to_string()));
        if let Some(k) = &key {
            if !self.in_progress.lock().insert(k.clone()) {
                return None;
            }
        }
        Some(InProgress { set: self.in_progress.clone(), key })
    }
}
