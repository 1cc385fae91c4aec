//! Writing an upload to disk off the async executors: the request's chunks go
//! through a bounded channel to a task on the blocking pool that hashes and writes
//! them to `<id>.<ext>.part`, fsyncs the file, checks the header, renames it into
//! place and fsyncs the directory. Memory use is the channel's few chunks and a write
//! buffer, whatever the size of the upload.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use actix_web::web::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::reader::{self, ReadError};
use crate::domain::import::{ImportFormat, ImportKind};

/// Chunks of a request queued for the writer.
const CHUNKS_QUEUED_MAX: usize = 16;
const WRITE_BUFFER_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the upload ended before its end (the client went away)")]
    Aborted,
    #[error("the file cannot be imported: {0}")]
    Unusable(String),
    #[error("writing the upload failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What reached the disk.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: [u8; 32],
}

pub enum Msg {
    Data(Bytes),
    /// The request body ended normally.
    End,
}

/// What an upload is and where it goes.
pub struct Target {
    pub dir: PathBuf,
    pub file: String,
    pub format: ImportFormat,
    pub kind: ImportKind,
    pub bytes_max: u64,
}

/// Starts the writer; send it the chunks, then [`Msg::End`], then await the handle.
pub fn spawn_writer(t: Target) -> (mpsc::Sender<Msg>, tokio::task::JoinHandle<Result<Written, UploadError>>) {
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED_MAX);
    let handle = tokio::task::spawn_blocking(move || {
        let part = t.dir.join(format!("{}.part", t.file));
        let result = write(&part, &t, rx);
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    });
    (tx, handle)
}

fn write(part: &Path, t: &Target, mut rx: mpsc::Receiver<Msg>) -> Result<Written, UploadError> {
    let file = File::create(part)?;
    let mut w = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    loop {
        match rx.blocking_recv() {
            Some(Msg::Data(chunk)) => {
                bytes += chunk.len() as u64;
                if bytes > t.bytes_max {
                    return Err(UploadError::TooLarge(t.bytes_max));
                }
                hash.update(&chunk);
                w.write_all(&chunk)?;
            }
            Some(Msg::End) => break,
            None => return Err(UploadError::Aborted),
        }
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    match reader::start(part, t.format, t.kind) {
        Ok(_) => {}
        Err(ReadError::Unusable(why)) => return Err(UploadError::Unusable(why)),
        Err(e) => return Err(UploadError::Unusable(e.to_string())),
    }
    let path = t.dir.join(&t.file);
    std::fs::rename(part, &path)?;
    File::open(&t.dir)?.sync_all()?;
    Ok(Written { path, bytes, sha256: hash.finalize().into() })
}
