//! Segment files on disk: their names, the listing of a journal directory, the
//! preallocation of a segment's blocks and the sync of the directory. Shared by the
//! writer, recovery, the tail reader and the history file, so none of them imports
//! another for these.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::format::Lsn;
use super::JournalError;

const SEGMENT_SUFFIX: &str = ".wal";

/// The path of the segment whose first record is `first_lsn`.
pub(crate) fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format!("{first_lsn:020}{SEGMENT_SUFFIX}"))
}

/// Makes the directory entries of `dir` (created, renamed or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment files of `dir`, ordered by first LSN.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(JournalError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else { continue };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            let lsn: Lsn = stem.parse().map_err(|_| JournalError::Invalid(format!("bad segment name {name}")))?;
            out.push((lsn, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reserves `len` bytes of real disk blocks for `file` so that writes into them cannot
/// fail with ENOSPC. Falls back to a sparse `set_len` where the filesystem cannot
/// preallocate (then a full disk surfaces as a failed write: fail-stop).
pub(super) fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP => file.set_len(len),
        Err(e) => Err(std::io::Error::from_raw_os_error(e.raw_os_error())),
    }
}
