//! Opening a journal: list the segments, check them, replay the records after a given
//! LSN, cut a torn tail, and start the writer. Also `wal verify`, which runs the same
//! checks without changing anything.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::files::{list_segments, preallocate, segment_path, sync_dir};
use super::format::{self, Lsn, SegmentEnd, SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_BYTES};
use super::writer::{self, ActiveSegment, Shared};
use super::{Journal, JournalConfig, JournalError};

/// How to open a journal.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub config: JournalConfig,
    /// Records at or below this LSN are skipped, not replayed: they are already in the
    /// snapshot the caller loaded. Zero replays everything.
    pub replay_after: Lsn,
}

/// What opening found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub segments: usize,
    pub records_replayed: u64,
    /// The newest LSN on disk after the tail was cut.
    pub last_lsn: Lsn,
    /// Where a torn tail was cut, and how many bytes were dropped.
    pub torn_tail: Option<(PathBuf, u64)>,
}

/// One segment as `wal verify` sees it.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    pub records: u64,
    pub data_bytes: u64,
    pub end: String,
}

/// The result of `wal verify`.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub segments: Vec<SegmentReport>,
    pub records: u64,
    pub last_lsn: Lsn,
    /// A torn tail that the next start will cut (not an error).
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Damage that stops the server from starting.
    pub corruption: Option<JournalError>,
}

fn read_all(path: &Path) -> Result<Vec<u8>, JournalError> {
    let mut f = File::open(path).map_err(|e| JournalError::io(path, e))?;
    let mut buf = Vec::with_capacity(f.metadata().map(|m| m.len() as usize).unwrap_or(0));
    f.read_to_end(&mut buf).map_err(|e| JournalError::io(path, e))?;
    Ok(buf)
}

/// Everything the checks of one segment found, shared by `open` and `verify`.
struct Checked {
    bytes: Vec<u8>,
    scan: format::SegmentScan,
}

/// Reads and scans one segment, checking its header against its name and against the
/// LSN the previous segment ended at.
fn check_segment(path: &Path, name_lsn: Lsn, expect_first: Option<Lsn>, is_last: bool) -> Result<Checked, JournalError> {
    let bytes = read_all(path)?;
    let corrupt = |offset: u64, detail: String| JournalError::Corrupt { path: path.to_path_buf(), offset, detail };
    let scan = format::scan(&bytes, is_last).map_err(|e| corrupt(0, e.to_string()))?;
    if scan.header.first_lsn != name_lsn {
        return Err(corrupt(16, format!("header says first lsn {} but the file is named for {name_lsn}", scan.header.first_lsn)));
    }
    if let Some(expected) = expect_first {
        if scan.header.first_lsn != expected {
            return Err(corrupt(
                16,
                format!("segment starts at lsn {} but the previous segment ended at {}", scan.header.first_lsn, expected - 1),
            ));
        }
    }
    if let SegmentEnd::Corrupt { offset, damage } = &scan.end {
        return Err(corrupt(*offset as u64, damage.to_string()));
    }
    Ok(Checked { bytes, scan })
}

fn last_lsn_of(scan: &format::SegmentScan) -> Lsn {
    scan.frames.last().map_or(scan.header.first_lsn - 1, |f| f.lsn)
}

/// Checks every segment without changing anything.
pub fn verify(dir: &Path) -> Result<VerifyReport, JournalError> {
    let segments = list_segments(dir)?;
    let mut report = VerifyReport::default();
    let mut expect: Option<Lsn> = None;
    for (i, (lsn, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        match check_segment(path, *lsn, expect, is_last) {
            Ok(c) => {
                let records = c.scan.frames.len() as u64;
                let (end, data_bytes) = match &c.scan.end {
                    SegmentEnd::Clean { data_end } => ("clean".to_string(), *data_end as u64),
                    SegmentEnd::TornTail { offset, damage } => {
                        report.torn_tail = Some((path.clone(), *offset as u64));
                        (format!("torn tail at byte {offset} ({damage}); the next start cuts it"), *offset as u64)
                    }
                    SegmentEnd::Corrupt { .. } => unreachable!("check_segment returns corruption as an error"),
                };
                report.records += records;
                report.last_lsn = last_lsn_of(&c.scan);
                expect = Some(report.last_lsn + 1);
                report.segments.push(SegmentReport { path: path.clone(), first_lsn: *lsn, records, data_bytes, end });
            }
            Err(e) => {
                report.segments.push(SegmentReport { path: path.clone(), first_lsn: *lsn, records: 0, data_bytes: 0, end: e.to_string() });
                report.corruption = Some(e);
                break;
            }
        }
    }
    Ok(report)
}

/// Opens (or creates) the journal in `dir`, replays every record after
/// `opts.replay_after` through `replay`, cuts a torn tail, and starts the writer.
pub fn open(
    dir: &Path,
    opts: OpenOptions,
    replay: impl FnMut(Lsn, &[u8]) -> Result<(), String>,
) -> Result<(Journal, OpenReport), JournalError> {
    open_with(dir, opts, replay, || Ok(()))
}

/// [`open`], calling `finish` once every record has gone through `replay` and before
/// anything on disk changes (a torn tail cut) or the writer starts: a replay that
/// applies records elsewhere (`crate::replay`) says there whether they all applied,
/// or which was the first that did not.
pub fn open_with(
    dir: &Path,
    opts: OpenOptions,
    mut replay: impl FnMut(Lsn, &[u8]) -> Result<(), String>,
    finish: impl FnOnce() -> Result<(), (Lsn, String)>,
) -> Result<(Journal, OpenReport), JournalError> {
    let cfg = opts.config.clone();
    if cfg.segment_bytes < (2 * cfg.record_bytes_max + SEGMENT_HEADER_BYTES) as u64 {
        return Err(JournalError::Invalid(format!(
            "segment size {} is too small for records of up to {} bytes",
            cfg.segment_bytes, cfg.record_bytes_max
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, e))?;
    remove_stale_tmp(dir)?;
    let segments = list_segments(dir)?;
    let history = super::history::establish(dir, !segments.is_empty(), opts.replay_after)?;
    let mut report = OpenReport { segments: segments.len(), ..OpenReport::default() };

    let active = if segments.is_empty() {
        finish().map_err(|(lsn, detail)| JournalError::Replay { lsn, detail })?;
        create_first_segment(dir, &cfg, opts.replay_after + 1)?
    } else {
        // Skip segments wholly covered by the snapshot: the next one starts at or below
        // the first LSN we need.
        let need = opts.replay_after + 1;
        if segments[0].0 > need {
            return Err(JournalError::Invalid(format!(
                "the journal starts at lsn {} but records after lsn {} are needed: segments are missing \
                 (restore a snapshot taken at or after lsn {})",
                segments[0].0,
                opts.replay_after,
                segments[0].0 - 1
            )));
        }
        let start = segments.iter().rposition(|(first, _)| *first <= need).expect("first segment starts at or below need");
        let mut expect: Option<Lsn> = None;
        let mut last_checked = None;
        for (i, (lsn, path)) in segments.iter().enumerate().skip(start) {
            let is_last = i + 1 == segments.len();
            let c = check_segment(path, *lsn, expect, is_last)?;
            for f in &c.scan.frames {
                if f.lsn > opts.replay_after {
                    let payload = &c.bytes[f.payload_start..f.payload_start + f.payload_len];
                    replay(f.lsn, payload).map_err(|detail| JournalError::Replay { lsn: f.lsn, detail })?;
                    report.records_replayed += 1;
                }
            }
            expect = Some(last_lsn_of(&c.scan) + 1);
            last_checked = Some((path.clone(), c));
        }
        finish().map_err(|(lsn, detail)| JournalError::Replay { lsn, detail })?;
        let (path, c) = last_checked.expect("at least one segment checked");
        report.last_lsn = last_lsn_of(&c.scan);
        if report.last_lsn < opts.replay_after {
            return Err(JournalError::Invalid(format!(
                "the journal ends at lsn {} but the snapshot is at lsn {}: this journal does not belong to that snapshot",
                report.last_lsn, opts.replay_after
            )));
        }
        let data_end = match c.scan.end {
            SegmentEnd::Clean { data_end } => data_end as u64,
            SegmentEnd::TornTail { offset, ref damage } => {
                let cut = c.bytes.len() as u64 - offset as u64;
                tracing::warn!(path = %path.display(), offset, bytes_cut = cut, %damage, "cutting a torn journal tail (a crash during a write; nothing cut was acknowledged)");
                report.torn_tail = Some((path.clone(), offset as u64));
                offset as u64
            }
            SegmentEnd::Corrupt { .. } => unreachable!("check_segment returns corruption as an error"),
        };
        reopen_active(&path, c.scan.header.first_lsn, data_end, &cfg)?
    };
    if report.last_lsn == 0 {
        report.last_lsn = active.first_lsn - 1;
    }
    let next_lsn = report.last_lsn + 1;
    let shared = Arc::new(Shared::new(dir.to_path_buf(), cfg, &active, next_lsn));
    let writer_shared = shared.clone();
    let writer = std::thread::Builder::new()
        .name("zaiko-wal-writer".into())
        .spawn(move || writer::run_writer(&writer_shared, active))
        .map_err(|e| JournalError::io(dir, e))?;
    let prep_shared = shared.clone();
    let preparer = std::thread::Builder::new()
        .name("zaiko-wal-prepare".into())
        .spawn(move || writer::run_preparer(&prep_shared))
        .map_err(|e| JournalError::io(dir, e))?;
    let journal =
        Journal { shared, threads: Arc::new(Mutex::new(vec![writer, preparer])), holds: Default::default(), history: Arc::new(history) };
    Ok((journal, report))
}

fn remove_stale_tmp(dir: &Path) -> Result<(), JournalError> {
    for entry in std::fs::read_dir(dir).map_err(|e| JournalError::io(dir, e))? {
        let entry = entry.map_err(|e| JournalError::io(dir, e))?;
        if entry.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
            std::fs::remove_file(entry.path()).map_err(|e| JournalError::io(&entry.path(), e))?;
        }
    }
    Ok(())
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |e| JournalError::io(path, e)
}

fn create_first_segment(dir: &Path, cfg: &JournalConfig, first_lsn: Lsn) -> Result<ActiveSegment, JournalError> {
    let path = segment_path(dir, first_lsn);
    let tmp = dir.join("first.tmp");
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp).map_err(io_err(&tmp))?;
    preallocate(&file, cfg.segment_bytes).map_err(io_err(&tmp))?;
    let header = SegmentHeader { version: FORMAT_VERSION, first_lsn }.encode();
    std::os::unix::fs::FileExt::write_all_at(&file, &header, 0).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir).map_err(io_err(dir))?;
    Ok(ActiveSegment { file, path, first_lsn, offset: SEGMENT_HEADER_BYTES as u64, capacity: cfg.segment_bytes })
}

/// Opens the newest segment for appending at `data_end`, dropping anything after it
/// (a torn tail) and preallocating it back to full size.
fn reopen_active(path: &Path, first_lsn: Lsn, data_end: u64, cfg: &JournalConfig) -> Result<ActiveSegment, JournalError> {
    let io = |e| JournalError::io(path, e);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let capacity = len.max(cfg.segment_bytes);
    // Zero everything past the data: truncate, then preallocate again.
    file.set_len(data_end).map_err(io)?;
    preallocate(&file, capacity).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(ActiveSegment { file, path: path.to_path_buf(), first_lsn, offset: data_end, capacity })
}

/// Deletes segments whose records all lie at or below `lsn`, never the active one.
pub(crate) fn remove_segments_through(dir: &Path, lsn: Lsn, active_first: Lsn) -> Result<usize, JournalError> {
    let segments = list_segments(dir)?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        let (first, ref path) = pair[0];
        let next_first = pair[1].0;
        if next_first <= lsn + 1 && first != active_first {
            std::fs::remove_file(path).map_err(|e| JournalError::io(path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir).map_err(|e| JournalError::io(dir, e))?;
    }
    Ok(removed)
}
