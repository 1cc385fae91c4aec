//! Reading the journal while it is written: a cursor over the segment files that
//! yields each record once, in LSN order, never past the durable LSN.
//!
//! Readers that follow the journal (the change feed) use this instead of a second
//! copy of the data: the WAL is the queue. Snapshot building reads its range of
//! records through it too (`range.rs`), in bounded memory. A [`Tail`] reads frames with `pread` in
//! blocks of [`TAIL_READ_BYTES`], checks each frame's checksum and LSN with the same
//! [`format::read_frame`] the recovery scan uses, and moves to the next segment when
//! the current one holds no further frame. Only records at or below the durable LSN
//! the caller passes are read: those are wholly written, so a damaged frame there is
//! corruption and an error, never a tail to skip.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::files::list_segments;
use super::format::{self, FrameDamage, Lsn, SegmentHeader, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use super::JournalError;

/// Bytes read from a segment at a time.
pub const TAIL_READ_BYTES: usize = 1 << 20;

/// The segment a [`Tail`] is reading, with a block of its bytes.
struct OpenSegment {
    file: File,
    path: PathBuf,
    /// Offset of the next frame to read.
    offset: u64,
    /// Bytes of the file from `buf_start` on (may end with zero fill not yet written).
    buf: Vec<u8>,
    buf_start: u64,
}

/// Where a record read by [`Tail::read_durable_placed`] lies: its segment and the
/// offset of its frame there.
pub struct Place<'a> {
    pub path: &'a Path,
    pub file: &'a File,
    pub frame_offset: u64,
}

/// A cursor over the journal: the next record it yields is `next_lsn`.
pub struct Tail {
    dir: PathBuf,
    next_lsn: Lsn,
    seg: Option<OpenSegment>,
}

impl Tail {
    /// A cursor that starts at `next_lsn` (the first record it will yield).
    pub fn new(dir: &Path, next_lsn: Lsn) -> Tail {
        Tail { dir: dir.to_path_buf(), next_lsn: next_lsn.max(1), seg: None }
    }

    /// The LSN of the next record to be read.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Calls `f` for each record from the cursor up to `durable` (inclusive), at most
    /// `max` of them, and returns how many it read. Bytes read ahead of `durable` are
    /// dropped, because the writer may not have written them yet.
    pub fn read_durable<E>(
        &mut self,
        durable: Lsn,
        max: usize,
        mut f: impl FnMut(Lsn, &[u8]) -> Result<(), E>,
    ) -> Result<Result<usize, E>, JournalError> {
        self.read_durable_placed(durable, max, |lsn, payload, _| f(lsn, payload))
    }

    /// [`Tail::read_durable`], telling `f` where each record lies.
    pub fn read_durable_placed<E>(
        &mut self,
        durable: Lsn,
        max: usize,
        mut f: impl FnMut(Lsn, &[u8], Place<'_>) -> Result<(), E>,
    ) -> Result<Result<usize, E>, JournalError> {
        let result = self.read_frames(durable, max, &mut f);
        if let Some(seg) = self.seg.as_mut() {
            // What lies past the last durable frame may change before the next call.
            seg.buf.clear();
            seg.buf_start = seg.offset;
        }
        result
    }

    fn read_frames<E>(
        &mut self,
        durable: Lsn,
        max: usize,
        f: &mut impl FnMut(Lsn, &[u8], Place<'_>) -> Result<(), E>,
    ) -> Result<Result<usize, E>, JournalError> {
        let mut read = 0;
        while read < max && self.next_lsn <= durable {
            let (start, len) = self.locate_next()?;
            let seg = self.seg.as_mut().expect("located");
            let rel = (start - seg.buf_start) as usize;
            let place = Place { path: &seg.path, file: &seg.file, frame_offset: start - FRAME_HEADER_BYTES as u64 };
            // A record the callback refuses is not consumed: it comes again next time.
            if let Err(e) = f(self.next_lsn, &seg.buf[rel..rel + len], place) {
                return Ok(Err(e));
            }
            seg.offset = start + len as u64;
            self.next_lsn += 1;
            read += 1;
        }
        Ok(Ok(read))
    }

    /// Makes sure the frame of `next_lsn` is in the buffer; returns its payload's file
    /// offset and length. Moves to the next segment when the current one has no more.
    fn locate_next(&mut self) -> Result<(u64, usize), JournalError> {
        for _ in 0..3 {
            if self.seg.is_none() {
                self.seg = Some(self.open_segment_for(self.next_lsn)?);
            }
            let seg = self.seg.as_mut().expect("just opened");
            match read_frame_at(seg, self.next_lsn)? {
                Some(found) => return Ok(found),
                // No frame here: the record is the first of the next segment.
                None => self.seg = None,
            }
        }
        Err(JournalError::Invalid(format!("journal record {} cannot be found in {}", self.next_lsn, self.dir.display())))
    }

    /// Opens the segment that holds `lsn` and positions it at that record.
    fn open_segment_for(&self, lsn: Lsn) -> Result<OpenSegment, JournalError> {
        let segments = list_segments(&self.dir)?;
        let Some((first, path)) = segments.iter().rev().find(|(first, _)| *first <= lsn).cloned() else {
            return Err(JournalError::Invalid(format!(
                "journal record {lsn} is no longer on disk (the oldest segment starts at {}); \
                 a reader fell behind segment removal",
                segments.first().map_or(0, |s| s.0)
            )));
        };
        let file = File::open(&path).map_err(|e| JournalError::io(&path, e))?;
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        file.read_exact_at(&mut header, 0).map_err(|e| JournalError::io(&path, e))?;
        let corrupt = |detail: String| JournalError::Corrupt { path: path.clone(), offset: 0, detail };
        let h = SegmentHeader::decode(&header).map_err(|e| corrupt(e.to_string()))?;
        if h.first_lsn != first {
            return Err(corrupt(format!("header says first lsn {} but the file is named for {first}", h.first_lsn)));
        }
        let start = SEGMENT_HEADER_BYTES as u64;
        let mut seg = OpenSegment { file, path, offset: start, buf: Vec::new(), buf_start: start };
        // Skip the records before `lsn`.
        for skip in first..lsn {
            let (payload, len) = read_frame_at(&mut seg, skip)?
                .ok_or_else(|| JournalError::Invalid(format!("journal record {skip} is missing from {}", seg.path.display())))?;
            seg.offset = payload + len as u64;
        }
        Ok(seg)
    }
}

/// Reads the frame at the segment's offset, expecting `lsn`. `None` when the segment
/// has no frame there (zero fill or end of file): the record lives in the next one.
fn read_frame_at(seg: &mut OpenSegment, lsn: Lsn) -> Result<Option<(u64, usize)>, JournalError> {
    if !ensure(seg, seg.offset, FRAME_HEADER_BYTES)? {
        return Ok(None);
    }
    let rel = (seg.offset - seg.buf_start) as usize;
    let declared = u32::from_le_bytes(seg.buf[rel + 4..rel + 8].try_into().expect("4 bytes")) as usize;
    if declared == 0 {
        return Ok(None);
    }
    if declared > format::RECORD_PAYLOAD_BYTES_LIMIT || !ensure(seg, seg.offset, format::frame_len(declared))? {
        return Err(damage(seg, FrameDamage::BadLength(declared as u32)));
    }
    let rel = (seg.offset - seg.buf_start) as usize;
    let frame = format::read_frame(&seg.buf[rel..], 0, lsn).map_err(|d| damage(seg, d))?;
    Ok(Some((seg.offset + frame.payload_start as u64, frame.payload_len)))
}

fn damage(seg: &OpenSegment, d: FrameDamage) -> JournalError {
    JournalError::Corrupt { path: seg.path.clone(), offset: seg.offset, detail: format!("{d} (in a durable record read by a tail)") }
}

/// Makes the buffer cover `len` bytes at `at`. Returns false when the file ends first.
fn ensure(seg: &mut OpenSegment, at: u64, len: usize) -> Result<bool, JournalError> {
    let covered = at >= seg.buf_start && at + len as u64 <= seg.buf_start + seg.buf.len() as u64;
    if covered {
        return Ok(true);
    }
    let want = len.max(TAIL_READ_BYTES);
    seg.buf.resize(want, 0);
    let mut filled = 0;
    while filled < want {
        let n = seg.file.read_at(&mut seg.buf[filled..], at + filled as u64).map_err(|e| JournalError::io(&seg.path, e))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    seg.buf.truncate(filled);
    seg.buf_start = at;
    Ok(filled >= len)
}
