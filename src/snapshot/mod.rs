//! Snapshots: the whole state at one LSN, in a SQLite file that operators can open with
//! `sqlite3` (schema: `schema.rs`, `docs/snapshots.md`).
//!
//! A snapshot is built off the hot path: the previous snapshot is read and the journal
//! records after it are folded in with the same `apply` as recovery, one brand at a
//! time ([`build`], `build.rs`); the actors are never paused. Each file carries a SHA-256 of the state it holds,
//! recomputed on every load, so a damaged snapshot is detected and recovery falls back
//! to the one before it.

mod build;
mod digest;
mod outcomes;
mod read;
pub mod schema;
mod write;

use std::path::{Path, PathBuf};

use crate::domain::Timestamp;
use crate::journal::{self, Lsn};
use crate::state::State;

pub use build::build;
pub use digest::digest;
pub use read::{LoadTimings, LOAD_THREADS_MAX};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "snapshot {path} has format version {found}, newer than this binary understands ({}); run a newer zaiko",
        schema::FORMAT_VERSION
    )]
    NewerFormat { path: PathBuf, found: i64 },
    #[error("snapshot i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("snapshot sqlite error on {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

/// What identifies a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SnapshotInfo {
    pub id: String,
    pub lsn: Lsn,
    pub bytes: u64,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(skip)]
    #[schema(ignore)]
    pub path: PathBuf,
}

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

fn file_name(lsn: Lsn) -> String {
    format!("snap-{lsn:020}.sqlite")
}

/// Every snapshot file of the data dir, oldest first. Reads only their `meta`.
pub fn list(data_dir: &Path) -> Result<Vec<SnapshotInfo>, SnapshotError> {
    let d = dir(data_dir);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SnapshotError::Io { path: d, source: e }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| SnapshotError::Io { path: d.clone(), source: e })?.path();
        let is_snapshot = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("snap-") && n.ends_with(".sqlite"));
        if is_snapshot {
            match read::info(&path) {
                Ok(info) => out.push(info),
                Err(e @ SnapshotError::NewerFormat { .. }) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "unreadable snapshot file; ignoring it"),
            }
        }
    }
    out.sort_by_key(|i| i.lsn);
    Ok(out)
}

/// Removes the temporary files of snapshot builds a crash interrupted (a failed build
/// removes its own). Returns how many were removed.
pub fn remove_temporary_files(data_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir(data_dir)) else { return 0 };
    let mut removed = 0;
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let is_tmp = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("snap-") && n.ends_with(".sqlite.tmp"));
        if !is_tmp {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed the temporary file of an interrupted snapshot");
                removed += 1;
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove an interrupted snapshot's temporary file"),
        }
    }
    removed
}

/// Loads and checks one snapshot file.
pub fn load(path: &Path) -> Result<(State, SnapshotInfo), SnapshotError> {
    read::load(path).map(|(state, info, _)| (state, info))
}

/// [`load`], with where its time went.
pub fn load_timed(path: &Path) -> Result<(State, SnapshotInfo, LoadTimings), SnapshotError> {
    read::load(path)
}

/// Writes `state` as a snapshot into the data dir (atomically: temp file, fsync,
/// rename, fsync of the directory). Writing the same LSN again is a no-op.
pub fn write(data_dir: &Path, state: &State, now: Timestamp) -> Result<SnapshotInfo, SnapshotError> {
    let d = dir(data_dir);
    std::fs::create_dir_all(&d).map_err(|e| SnapshotError::Io { path: d.clone(), source: e })?;
    let path = d.join(file_name(state.lsn));
    if path.exists() {
        return read::info(&path);
    }
    write::write(&path, state, now)
}

/// The newest snapshot that loads and checks, with its state. A damaged one is logged
/// and skipped (the journal reaches back to the oldest kept snapshot); one of a newer
/// format is an error, since skipping it could lose data.
pub fn load_newest_valid(data_dir: &Path) -> Result<Option<(State, SnapshotInfo)>, SnapshotError> {
    Ok(load_newest_valid_timed(data_dir)?.map(|(state, info, _)| (state, info)))
}

/// [`load_newest_valid`], with where the load of the one it returns spent its time.
pub fn load_newest_valid_timed(data_dir: &Path) -> Result<Option<(State, SnapshotInfo, LoadTimings)>, SnapshotError> {
    for info in list(data_dir)?.into_iter().rev() {
        match load_timed(&info.path) {
            Ok(found) => return Ok(Some(found)),
            Err(e @ SnapshotError::NewerFormat { .. }) => return Err(e),
            Err(e) => tracing::error!(error = %e, "snapshot is damaged; falling back to an older one"),
        }
    }
    Ok(None)
}

/// Keeps the newest `keep` snapshots and deletes the rest. Returns the LSN of the oldest
/// kept one: journal segments wholly at or below it are no longer needed by recovery.
pub fn apply_retention(data_dir: &Path, keep: usize) -> Result<Option<Lsn>, SnapshotError> {
    let all = list(data_dir)?;
    let cut = all.len().saturating_sub(keep.max(1));
    for old in &all[..cut] {
        std::fs::remove_file(&old.path).map_err(|e| SnapshotError::Io { path: old.path.clone(), source: e })?;
        tracing::info!(lsn = old.lsn, path = %old.path.display(), "removed old snapshot");
    }
    Ok(all.get(cut).map(|i| i.lsn))
}

#[cfg(test)]
mod tests;

/// Online snapshots for a running server: one build at a time, off the async executors,
/// then retention and removal of journal segments no snapshot or consumer needs.
pub struct SnapshotService {
    pub data_dir: PathBuf,
    pub keep: usize,
    journal: crate::journal::Journal,
    building: tokio::sync::Mutex<()>,
    /// When the newest snapshot was taken (for the schedule and metrics).
    pub last: std::sync::Mutex<Option<SnapshotInfo>>,
}

impl SnapshotService {
    pub fn new(data_dir: &Path, keep: usize, journal: crate::journal::Journal) -> Self {
        remove_temporary_files(data_dir);
        let last = list(data_dir).ok().and_then(|l| l.into_iter().last());
        SnapshotService {
            data_dir: data_dir.to_path_buf(),
            keep,
            journal,
            building: tokio::sync::Mutex::new(()),
            last: std::sync::Mutex::new(last),
        }
    }

    /// Builds a snapshot at the current durable LSN. Concurrent calls run one after the
    /// other.
    pub async fn create(&self, now: Timestamp) -> Result<SnapshotInfo, SnapshotError> {
        let _one_at_a_time = self.building.lock().await;
        if self.journal.disk_full() {
            // Disk space that comes back goes to the journal's next segment first.
            let why = "the disk is full: the journal cannot prepare its next segment, and snapshots wait until it has";
            return Err(SnapshotError::Io {
                path: self.data_dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::StorageFull, why),
            });
        }
        let through = self.journal.durable_lsn();
        let data_dir = self.data_dir.clone();
        let started = std::time::Instant::now();
        let info = tokio::task::spawn_blocking(move || build(&data_dir, through, now))
            .await
            .map_err(|e| SnapshotError::Io { path: self.data_dir.clone(), source: std::io::Error::other(e.to_string()) })??;
        tracing::info!(lsn = info.lsn, bytes = info.bytes, elapsed_ms = started.elapsed().as_millis() as u64, "snapshot built");
        metrics::histogram!("zaiko_snapshot_build_seconds").record(started.elapsed().as_secs_f64());
        let data_dir = self.data_dir.clone();
        let keep = self.keep;
        let oldest = tokio::task::spawn_blocking(move || apply_retention(&data_dir, keep))
            .await
            .map_err(|e| SnapshotError::Io { path: self.data_dir.clone(), source: std::io::Error::other(e.to_string()) })??;
        if let Some(oldest) = oldest {
            // The journal keeps what its read holds (the change feed) have not consumed.
            let through = oldest;
            let journal = self.journal.clone();
            let removed = tokio::task::spawn_blocking(move || journal.remove_segments_through(through)).await.ok().and_then(Result::ok);
            if let Some(n) = removed.filter(|n| *n > 0) {
                tracing::info!(segments = n, through, "removed journal segments covered by snapshots");
            }
        }
        *self.last.lock().expect("last lock") = Some(info.clone());
        Ok(info)
    }

    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        list(&self.data_dir)
    }
}
