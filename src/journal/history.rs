//! The journal's history: which line of records this data dir follows.
//!
//! LSNs alone do not name a change. A restore from a snapshot, or a `wal repair` that
//! cuts the journal, goes back to an earlier LSN and writes *different* records at the
//! LSNs that follow (as a database timeline forks). Everything derived from the journal
//! that leaves the process — feed cursors, event ids, webhook ids — must tell the two
//! lines apart, or a consumer takes a new change for one it has already seen.
//!
//! A history is an id (64 random bits, written as 16 hex digits) and the LSN after
//! which its records begin (`after_lsn`: 0 for a data dir's first history, the
//! snapshot's LSN after a restore, the last intact LSN after a repair). It is kept in
//! `wal/history.json`, beside the segments it describes, and is read at every open:
//! a plain restart keeps it; only a restore or a repair makes a new one.
//!
//! A data dir's *first* history writes its cursors and event ids without its id, as
//! zaiko did before histories existed, so nothing changes for consumers of a server
//! that has never been restored or repaired. Every later history writes its id into
//! them.
//!
//! The same pair (id, `after_lsn`) is what a replicated journal would keep per
//! partition: a partition's consumers follow one line of its records.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{JournalError, Lsn};

/// The history file, in the journal's directory.
pub const FILE_NAME: &str = "history.json";

/// A history's id: 64 random bits, shown as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryId(pub u64);

impl HistoryId {
    pub fn random() -> HistoryId {
        HistoryId(rand::random())
    }

    /// Parses exactly 16 lowercase hex digits (the form [`std::fmt::Display`] writes).
    pub fn parse(s: &str) -> Option<HistoryId> {
        let hex = s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| u64::from_str_radix(s, 16).ok().map(HistoryId)).flatten()
    }
}

impl std::fmt::Display for HistoryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for HistoryId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HistoryId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HistoryId::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not 16 lowercase hex digits")))
    }
}

/// Why a history began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A new, empty data dir.
    New,
    /// A data dir written before histories existed, taken over as it was.
    Adopted,
    /// `zaiko snapshot restore` (or a restored data dir found without a history).
    Restore,
    /// `zaiko wal repair --accept-data-loss` cut the journal.
    Repair,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::New => "new",
            Cause::Adopted => "adopted",
            Cause::Restore => "restore",
            Cause::Repair => "repair",
        }
    }
}

/// The line of records a data dir follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub id: HistoryId,
    /// The history's records are those after this LSN; the ones at or before it were
    /// written in the history it came from.
    pub after_lsn: Lsn,
    /// The data dir's first history: cursors and event ids carry no id.
    pub first: bool,
    pub cause: Cause,
    /// The history this one forked from, when known.
    pub parent: Option<HistoryId>,
}

impl History {
    /// A data dir's first history.
    pub fn initial(cause: Cause) -> History {
        History { id: HistoryId::random(), after_lsn: 0, first: true, cause, parent: None }
    }

    /// A new history whose records begin after `after_lsn`.
    pub fn fork(after_lsn: Lsn, parent: Option<HistoryId>, cause: Cause) -> History {
        History { id: HistoryId::random(), after_lsn, first: false, cause, parent }
    }

    /// The id that cursors and event ids carry: none in a data dir's first history.
    pub fn label(&self) -> Option<HistoryId> {
        (!self.first).then_some(self.id)
    }
}

pub fn path(wal_dir: &Path) -> PathBuf {
    wal_dir.join(FILE_NAME)
}

/// The history recorded in `wal_dir`, if any. A file that cannot be read is an error:
/// guessing would hand out cursors that mean something else.
pub fn load(wal_dir: &Path) -> Result<Option<History>, JournalError> {
    let p = path(wal_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(JournalError::io(&p, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        JournalError::Invalid(format!(
            "the journal's history file {} is unreadable ({e}); put back the copy from a backup of this data dir \
             (a new history would make every consumer resync)",
            p.display()
        ))
    })
}

/// Writes the history atomically: a temporary file, fsync, rename, fsync of the
/// directory.
pub fn save(wal_dir: &Path, history: &History) -> Result<(), JournalError> {
    std::fs::create_dir_all(wal_dir).map_err(|e| JournalError::io(wal_dir, e))?;
    let target = path(wal_dir);
    let tmp = wal_dir.join(format!("{FILE_NAME}.tmp"));
    fn io(p: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
        move |e| JournalError::io(p, e)
    }
    let mut text = serde_json::to_string_pretty(history).expect("a history serialises");
    text.push('\n');
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &target).map_err(io(&target))?;
    super::files::sync_dir(wal_dir).map_err(io(wal_dir))
}

/// The history of the journal in `wal_dir`, creating it when there is none.
///
/// Without a file: a journal with no segments that starts from a snapshot
/// (`snapshot_lsn > 0`) is a restored data dir — a new history after the snapshot's LSN
/// (this also covers a restore made by a zaiko without histories); any other data dir
/// gets its first history (`new` when empty, `adopted` when it has records).
pub fn establish(wal_dir: &Path, has_segments: bool, snapshot_lsn: Lsn) -> Result<History, JournalError> {
    if let Some(h) = load(wal_dir)? {
        return Ok(h);
    }
    let h = match (has_segments, snapshot_lsn) {
        (false, 0) => History::initial(Cause::New),
        (false, lsn) => History::fork(lsn, None, Cause::Restore),
        (true, _) => History::initial(Cause::Adopted),
    };
    save(wal_dir, &h)?;
    tracing::info!(history = %h.id, after_lsn = h.after_lsn, cause = h.cause.as_str(), "the journal begins a history");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_sixteen_hex_digits_and_nothing_else_parses() {
        let id = HistoryId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!(HistoryId::parse("00abcdef01234567"), Some(id));
        for bad in ["", "abc", "00ABCDEF01234567", "00abcdef0123456", "00abcdef012345678", "+0abcdef01234567", "00abcdef0123456g"] {
            assert_eq!(HistoryId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_history_is_kept_across_opens_and_made_new_only_where_the_journal_forks() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh");
        let h = establish(&fresh, false, 0).unwrap();
        assert!(h.first && h.cause == Cause::New && h.label().is_none());
        assert_eq!(establish(&fresh, true, 0).unwrap(), h, "a restart keeps the history");

        let old = dir.path().join("old");
        assert_eq!(establish(&old, true, 0).unwrap().cause, Cause::Adopted);

        let restored = dir.path().join("restored");
        let r = establish(&restored, false, 70).unwrap();
        assert_eq!((r.first, r.cause, r.after_lsn, r.label()), (false, Cause::Restore, 70, Some(r.id)));

        let fork = History::fork(12, Some(h.id), Cause::Repair);
        save(&fresh, &fork).unwrap();
        assert_eq!(load(&fresh).unwrap(), Some(fork));
    }

    #[test]
    fn an_unreadable_history_file_is_an_error_not_a_new_history() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), "{\"id\":\"nope\"}").unwrap();
        let err = establish(dir.path(), true, 0).unwrap_err().to_string();
        assert!(err.contains("history file") && err.contains("backup"), "{err}");
        assert_eq!(std::fs::read_to_string(path(dir.path())).unwrap(), "{\"id\":\"nope\"}", "left as it was");
    }
}
