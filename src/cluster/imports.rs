//! Imports in cluster mode: an upload is reachable from the owner of its brand's
//! partition whichever node received it, and a job resumes on a new owner from the
//! chunk its journal last recorded.
//!
//! * The node that receives `POST .../imports` streams the body to its disk (as the
//!   single node does), stores the file in the `ZAIKO_IMPORTS` object store as
//!   `<brand>/<job file>`, and queues the job: itself when it owns the partition,
//!   otherwise through the owner, which fetches the object into its own imports dir
//!   (hashed again: the job's fingerprint is the file's SHA-256 either way) before it
//!   records `ImportQueued`. The body is never forwarded: forwarding holds bodies in
//!   memory, uploads are up to 512 MiB.
//! * A node that takes a partition over hands the partition's unfinished jobs to the
//!   [`Resumer`]; it fetches each file that is not on this node's disk and gives the
//!   job to the runner, which goes on from the recorded position. A chunk is applied
//!   only as the job's next one, in the same journal entry as its progress, so a row
//!   is never applied twice whoever runs the job.
//! * A runner whose chunk is refused because the partition has moved drops the job (the
//!   new owner runs it). When a job ends, its object is deleted; an object no job ever
//!   claimed goes after [`IMPORT_UPLOAD_MAX_AGE`].

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::object_store::{self, ObjectStore};
use parking_lot::{Condvar, Mutex};
use tokio::io::AsyncReadExt;

pub use super::engine::IMPORT_UPLOAD_MAX_AGE;
use crate::domain::import::ImportSpec;
use crate::domain::BrandId;
use crate::imports::upload::{self, Msg, UploadError, Written};
use crate::imports::{Imports, UPLOAD_BYTES_MAX};

/// Set on the request a receiving node sends the owner to queue an upload it stored:
/// the job id. The owner reads the file from the object store, not from the body.
pub const STORED_UPLOAD_HEADER: &str = "x-zaiko-stored-upload";
/// Read size from the object store.
const FETCH_BUFFER_BYTES: usize = 256 << 10;
/// Longest and shortest pause before fetching a resumed job's upload again after a
/// failure of the object store.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// The object of a job's upload.
pub fn object_name(brand: &BrandId, file: &str) -> String {
    format!("{brand}/{file}")
}

/// Why an upload could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the upload is not in the cluster's object store")]
    Missing,
    #[error("the upload could not be read from the cluster's object store: {0}")]
    Store(String),
    #[error(transparent)]
    Write(#[from] UploadError),
}

/// The uploads in the object store.
#[derive(Clone)]
pub struct Uploads {
    store: ObjectStore,
}

impl Uploads {
    pub fn new(store: ObjectStore) -> Uploads {
        Uploads { store }
    }

    /// Stores the file at `path` as the upload `file` of `brand`.
    pub async fn put(&self, brand: &BrandId, file: &str, path: &Path) -> Result<(), String> {
        let mut f = tokio::fs::File::open(path).await.map_err(|e| format!("cannot read the upload back: {e}"))?;
        let meta = object_store::ObjectMetadata { name: object_name(brand, file), ..Default::default() };
        self.store.put(meta, &mut f).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Writes the upload `target.file` of `brand` into `target.dir`, through the same
    /// writer as an HTTP upload (hashed, checked, fsynced, renamed into place).
    pub async fn fetch(&self, brand: &BrandId, target: upload::Target) -> Result<Written, FetchError> {
        let name = object_name(brand, &target.file);
        // Stored by the node that forwarded the request: a replica a moment behind it
        // may answer the read.
        let found = crate::cluster::engine::read_visible(|| async {
            match self.store.get(&name).await {
                Ok(o) => Ok(Some(o)),
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => Ok(None),
                Err(e) => Err(FetchError::Store(e.to_string())),
            }
        })
        .await?;
        let Some(mut object) = found else { return Err(FetchError::Missing) };
        let (tx, writer) = upload::spawn_writer(target);
        let mut failed = None;
        loop {
            let mut buf = vec![0u8; FETCH_BUFFER_BYTES];
            match object.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(Msg::Data(buf.into())).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if failed.is_none() {
            let _ = tx.send(Msg::End).await;
        }
        drop(tx);
        let written = writer.await.map_err(|e| FetchError::Store(format!("the upload writer stopped: {e}")))?;
        match failed {
            Some(why) => Err(FetchError::Store(why)),
            None => Ok(written?),
        }
    }

    /// Deletes a job's upload (done, failed, cancelled, or never queued).
    pub async fn delete(&self, brand: &BrandId, file: &str) {
        match self.store.delete(object_name(brand, file)).await {
            Ok(()) => {}
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(brand = %brand, file, error = %e, "cannot delete an import upload; it goes with the bucket's age limit")
            }
        }
    }
}

/// A job handed over with its partition.
type Job = (BrandId, ImportSpec);

/// Unfinished jobs of partitions this node took over, waiting for their files.
#[derive(Clone, Default)]
pub struct Resumes {
    inner: Arc<(Mutex<VecDeque<Job>>, Condvar)>,
}

impl Resumes {
    /// Hands jobs over (from a partition's install).
    pub fn push(&self, jobs: impl IntoIterator<Item = Job>) {
        let (queue, cv) = &*self.inner;
        queue.lock().extend(jobs);
        cv.notify_all();
    }

    /// The next job, waiting for one at most until `until`.
    fn pop(&self, until: Instant) -> Option<Job> {
        let (queue, cv) = &*self.inner;
        let mut q = queue.lock();
        loop {
            if let Some(job) = q.pop_front() {
                return Some(job);
            }
            if cv.wait_until(&mut q, until).timed_out() {
                return q.pop_front();
            }
        }
    }
}

/// The thread that gets a resumed job's file onto this node and gives the job to the
/// runner. A failure of the object store is retried with a growing pause; a missing
/// upload is left to the runner, which fails the job saying its file is gone.
pub struct Resumer {
    pub resumes: Resumes,
    pub uploads: Uploads,
    pub imports: Imports,
    pub runtime: tokio::runtime::Handle,
}

impl Resumer {
    pub fn start(self) -> std::io::Result<()> {
        std::thread::Builder::new().name("zaiko-import-resume".into()).spawn(move || self.run())?;
        Ok(())
    }

    fn run(self) {
        let mut retry: VecDeque<(Instant, BrandId, ImportSpec)> = VecDeque::new();
        let mut pause = RETRY_MIN;
        loop {
            let until = retry.front().map_or_else(|| Instant::now() + Duration::from_secs(3600), |r| r.0);
            let job = match self.resumes.pop(until) {
                Some(job) => job,
                None => match retry.pop_front() {
                    Some((_, brand, spec)) => (brand, spec),
                    None => continue,
                },
            };
            match self.resume(&job.0, &job.1) {
                Ok(()) => pause = RETRY_MIN,
                Err(e) => {
                    tracing::warn!(brand = %job.0, job = %job.1.id, error = %e, retry_ms = pause.as_millis() as u64, "cannot fetch a resumed import's upload; retrying");
                    retry.push_back((Instant::now() + pause, job.0, job.1));
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Fetches the job's upload unless this node has it, then queues the job here.
    fn resume(&self, brand: &BrandId, spec: &ImportSpec) -> Result<(), FetchError> {
        let dir = self.imports.cfg.dir.clone();
        let have = std::fs::metadata(dir.join(&spec.file)).is_ok_and(|m| m.len() == spec.bytes);
        if !have {
            let target = upload::Target { dir, file: spec.file.clone(), format: spec.format, kind: spec.kind, bytes_max: UPLOAD_BYTES_MAX };
            match self.runtime.block_on(self.uploads.fetch(brand, target)) {
                Ok(w) if w.sha256 == spec.sha256 => {}
                Ok(w) => {
                    tracing::error!(brand = %brand, job = %spec.id, "the stored upload differs from the one the job was queued with");
                    let _ = std::fs::remove_file(&w.path);
                }
                Err(FetchError::Missing) => tracing::error!(brand = %brand, job = %spec.id, "the job's upload is not in the object store"),
                Err(e) => return Err(e),
            }
        }
        tracing::info!(brand = %brand, job = %spec.id, "resuming an import taken over with its partition");
        self.imports.queue(brand.clone(), spec.id.clone());
        Ok(())
    }
}
