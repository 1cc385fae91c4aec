//! Reading a range of records beside a running writer, without opening the journal
//! (snapshot building), and reading those records again one at a time by where they
//! lie, so a reader can visit them in another order without keeping them in memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, Lsn, FRAME_HEADER_BYTES};
use super::tail::Tail;
use super::JournalError;

/// Where one record's frame lies: enough to read it again with [`RangeFiles::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAt {
    pub lsn: Lsn,
    offset: u64,
    /// Index into [`RangeFiles`]' segments.
    segment: u32,
    payload_len: u32,
}

/// The segment files a [`read_range_located`] went over, kept open: a segment that
/// is removed meanwhile (retention) stays readable through its open file.
pub struct RangeFiles {
    segments: Vec<(PathBuf, File)>,
}

impl RangeFiles {
    /// The payload of the record at `at`, read into `buf`; its frame is checked again
    /// (length, checksum, LSN) as when it was first read.
    pub fn read<'b>(&self, at: FrameAt, buf: &'b mut Vec<u8>) -> Result<&'b [u8], JournalError> {
        let (path, file) = &self.segments[at.segment as usize];
        buf.resize(format::frame_len(at.payload_len as usize), 0);
        file.read_exact_at(buf, at.offset).map_err(|e| JournalError::io(path, e))?;
        let corrupt = |detail: String| JournalError::Corrupt { path: path.clone(), offset: at.offset, detail };
        let frame = format::read_frame(buf, 0, at.lsn).map_err(|d| corrupt(d.to_string()))?;
        if frame.payload_len != at.payload_len as usize {
            return Err(corrupt(format!("record lsn {} changed length since it was read", at.lsn)));
        }
        Ok(&buf[FRAME_HEADER_BYTES..])
    }
}

/// Reads the records with `after < lsn <= through` from the segments of `dir` without
/// opening the journal for writing (snapshot building reads beside a running writer).
/// Every record up to `through` must be durable and present; damage at or below it is
/// an error, anything past it is not looked at.
pub fn read_range(
    dir: &Path,
    after: Lsn,
    through: Lsn,
    mut visit: impl FnMut(Lsn, &[u8]) -> Result<(), String>,
) -> Result<(), JournalError> {
    read_range_located(dir, after, through, |lsn, payload, _| visit(lsn, payload)).map(drop)
}

/// [`read_range`], telling `visit` where each record lies, and returning the segment
/// files open so the records can be read again ([`RangeFiles::read`]). Reads through a
/// [`Tail`] (blocks of [`super::tail::TAIL_READ_BYTES`]), so memory holds one block
/// and one record, never a whole segment.
pub fn read_range_located(
    dir: &Path,
    after: Lsn,
    through: Lsn,
    mut visit: impl FnMut(Lsn, &[u8], FrameAt) -> Result<(), String>,
) -> Result<RangeFiles, JournalError> {
    let mut files = RangeFiles { segments: Vec::new() };
    if through <= after {
        return Ok(files);
    }
    let mut tail = Tail::new(dir, after + 1);
    let read = tail.read_durable_placed(through, usize::MAX, |lsn, payload, place| {
        if files.segments.last().is_none_or(|(path, _)| path != place.path) {
            let file = place.file.try_clone().map_err(|e| JournalError::io(place.path, e))?;
            files.segments.push((place.path.to_path_buf(), file));
        }
        let at = FrameAt {
            lsn,
            offset: place.frame_offset,
            segment: u32::try_from(files.segments.len() - 1).expect("fewer than 2^32 segments"),
            payload_len: u32::try_from(payload.len()).expect("a payload is at most RECORD_PAYLOAD_BYTES_LIMIT"),
        };
        visit(lsn, payload, at).map_err(|detail| JournalError::Replay { lsn, detail })
    })??;
    if read as u64 != through - after {
        return Err(JournalError::Invalid(format!("the journal ends before lsn {through}; read up to {}", after + read as u64)));
    }
    Ok(files)
}
