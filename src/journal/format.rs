//! The on-disk format of WAL segments: headers, record frames, and the scan that
//! tells a torn tail from corruption. Byte-by-byte description: `docs/wal-format.md`.
//!
//! Nothing here does I/O beyond reading a segment's bytes that the caller hands in;
//! the writer thread and recovery both build on these functions so that what is
//! written and what is read can never disagree.

use std::fmt;

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ZAIKOWAL";
/// Bumped on any change to the segment or frame layout; read at start.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Size of a record frame's header (crc, length, lsn).
pub const FRAME_HEADER_BYTES: usize = 16;
/// Hard upper bound on one record's payload; a larger length field is damage.
pub const RECORD_PAYLOAD_BYTES_LIMIT: usize = 16 << 20;

/// Log sequence number: defined by the domain, which orders its state by it.
pub use crate::domain::Lsn;

/// The parsed header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u32,
    pub first_lsn: Lsn,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        // 12..16 reserved (flags), zero.
        b[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        // 24..28 reserved, zero.
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if b.len() < SEGMENT_HEADER_BYTES {
            return Err(HeaderError::Short);
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let crc = u32::from_le_bytes(b[28..32].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&b[0..28]) {
            return Err(HeaderError::BadChecksum);
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if version > FORMAT_VERSION {
            return Err(HeaderError::NewerVersion(version));
        }
        let first_lsn = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        Ok(SegmentHeader { version, first_lsn })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    BadMagic,
    BadChecksum,
    NewerVersion(u32),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Short => write!(f, "segment header is shorter than {SEGMENT_HEADER_BYTES} bytes"),
            HeaderError::BadMagic => write!(f, "segment does not start with the ZAIKOWAL magic"),
            HeaderError::BadChecksum => write!(f, "segment header checksum mismatch"),
            HeaderError::NewerVersion(v) => {
                write!(f, "segment format version {v} is newer than this binary understands ({FORMAT_VERSION}); run a newer zaiko")
            }
        }
    }
}

/// Appends one framed record to `out`.
pub fn encode_frame(out: &mut Vec<u8>, lsn: Lsn, payload: &[u8]) {
    assert!(
        !payload.is_empty() && payload.len() <= RECORD_PAYLOAD_BYTES_LIMIT,
        "record payload of {} bytes is outside 1..={RECORD_PAYLOAD_BYTES_LIMIT}",
        payload.len()
    );
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Size of the frame that holds a payload of `payload_len` bytes.
pub const fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_BYTES + payload_len
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameDamage {
    /// Fewer bytes remain than the frame header or the declared payload needs.
    Truncated,
    /// The length field is zero or above [`RECORD_PAYLOAD_BYTES_LIMIT`].
    BadLength(u32),
    /// The checksum over length, LSN and payload does not match.
    BadChecksum,
    /// The checksum matches but the LSN is not the next one.
    LsnGap { expected: Lsn, found: Lsn },
}

impl fmt::Display for FrameDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameDamage::Truncated => write!(f, "record is cut short"),
            FrameDamage::BadLength(n) => write!(f, "record length field {n} is out of range"),
            FrameDamage::BadChecksum => write!(f, "record checksum mismatch"),
            FrameDamage::LsnGap { expected, found } => {
                write!(f, "record has lsn {found}, expected {expected}")
            }
        }
    }
}

/// One record found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    pub offset: usize,
    pub lsn: Lsn,
    pub payload_start: usize,
    pub payload_len: usize,
}

/// How the readable part of a segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// The data ends cleanly: end of file, or the zero fill of a preallocated segment.
    Clean { data_end: usize },
    /// The last record was only partly written (a crash during a write). Everything
    /// from `offset` on can be cut away; nothing there was ever acknowledged.
    TornTail { offset: usize, damage: FrameDamage },
    /// A damaged record with data after it: this is not a crash artefact and must not
    /// be skipped.
    Corrupt { offset: usize, damage: FrameDamage },
}

/// The result of scanning a segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    pub header: SegmentHeader,
    pub frames: Vec<FrameRef>,
    pub end: SegmentEnd,
}

/// Offset just past the last non-zero byte of `bytes`.
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// Whether an intact frame carrying `lsn` starts anywhere after `offset`: proof that the
/// damage at `offset` is not the end of what was written.
fn later_frame_exists(bytes: &[u8], offset: usize, lsn: Lsn) -> bool {
    let needle = lsn.to_le_bytes();
    (offset + 1..bytes.len().saturating_sub(FRAME_HEADER_BYTES - 1))
        .any(|q| bytes[q + 8..q + 16] == needle && read_frame(bytes, q, lsn).is_ok())
}

/// Reads the frame at `offset`, checking length, checksum and LSN.
pub fn read_frame(bytes: &[u8], offset: usize, expected_lsn: Lsn) -> Result<FrameRef, FrameDamage> {
    let rest = &bytes[offset..];
    if rest.len() < FRAME_HEADER_BYTES {
        return Err(FrameDamage::Truncated);
    }
    let crc = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len == 0 || len as usize > RECORD_PAYLOAD_BYTES_LIMIT {
        return Err(FrameDamage::BadLength(len));
    }
    let total = frame_len(len as usize);
    if rest.len() < total {
        return Err(FrameDamage::Truncated);
    }
    if crc32fast::hash(&rest[4..total]) != crc {
        return Err(FrameDamage::BadChecksum);
    }
    let lsn = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
    if lsn != expected_lsn {
        return Err(FrameDamage::LsnGap { expected: expected_lsn, found: lsn });
    }
    Ok(FrameRef { offset, lsn, payload_start: offset + FRAME_HEADER_BYTES, payload_len: len as usize })
}

/// Scans a whole segment. `is_last` says whether a damaged record may be a torn tail:
/// only the newest segment can have been cut by a crash.
///
/// A damaged record is a torn tail iff the segment is the last one, no intact record
/// with the next LSN follows it, and the record is not wholly there: its declared end
/// lies past the last non-zero byte (or, with a length field that cannot be right,
/// nothing non-zero follows its header). A crash leaves a prefix of the last write
/// followed by zero fill or end of file, which this accepts; a flipped byte leaves a
/// complete record or whole records after it, which this refuses.
pub fn scan(bytes: &[u8], is_last: bool) -> Result<SegmentScan, HeaderError> {
    let header = SegmentHeader::decode(bytes)?;
    let mut frames = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected = header.first_lsn;
    // Computed once: past this offset there are only zeros (or nothing).
    let written_end = data_end(bytes);
    let end = loop {
        let rest = &bytes[offset..];
        if offset >= written_end {
            // End of file, or the zero fill of a preallocated segment.
            break SegmentEnd::Clean { data_end: offset };
        }
        match read_frame(bytes, offset, expected) {
            Ok(frame) => {
                offset = frame.payload_start + frame.payload_len;
                expected += 1;
                frames.push(frame);
            }
            Err(damage) => {
                let declared = if rest.len() >= 8 { u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize } else { 0 };
                break classify(bytes, offset, damage, declared, expected, is_last);
            }
        }
    };
    Ok(SegmentScan { header, frames, end })
}

fn classify(bytes: &[u8], offset: usize, damage: FrameDamage, declared_len: usize, damaged_lsn: Lsn, is_last: bool) -> SegmentEnd {
    if !is_last || matches!(damage, FrameDamage::LsnGap { .. }) {
        return SegmentEnd::Corrupt { offset, damage };
    }
    if later_frame_exists(bytes, offset, damaged_lsn + 1) {
        return SegmentEnd::Corrupt { offset, damage };
    }
    // A partly written frame has its unwritten part still zero (or missing): it reaches
    // past the last non-zero byte. A frame that is wholly there yet fails its checksum
    // was damaged after it was written.
    let end = data_end(bytes);
    let partly_written = if declared_len > 0 && declared_len <= RECORD_PAYLOAD_BYTES_LIMIT {
        offset.saturating_add(frame_len(declared_len)) > end
    } else {
        end <= offset + FRAME_HEADER_BYTES
    };
    if partly_written {
        SegmentEnd::TornTail { offset, damage }
    } else {
        SegmentEnd::Corrupt { offset, damage }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: Lsn, payloads: &[&[u8]], zero_fill: usize) -> Vec<u8> {
        let mut b = SegmentHeader { version: FORMAT_VERSION, first_lsn: first }.encode().to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_frame(&mut b, first + i as u64, p);
        }
        b.resize(b.len() + zero_fill, 0);
        b
    }

    #[test]
    fn round_trip_with_and_without_zero_fill() {
        for fill in [0, 5, 1000] {
            let seg = segment(7, &[b"a", b"bb", b"ccc"], fill);
            let scan = scan(&seg, true).unwrap();
            assert_eq!(scan.header.first_lsn, 7);
            assert_eq!(scan.frames.iter().map(|f| f.lsn).collect::<Vec<_>>(), vec![7, 8, 9]);
            let last = scan.frames[2];
            assert_eq!(&seg[last.payload_start..last.payload_start + last.payload_len], b"ccc");
            assert!(matches!(scan.end, SegmentEnd::Clean { .. }));
        }
    }

    #[test]
    fn every_truncation_inside_the_last_record_is_a_torn_tail() {
        let full = segment(1, &[b"first record", b"second record", b"third"], 0);
        let scan_full = scan(&full, true).unwrap();
        let last_start = scan_full.frames[2].offset;
        for cut in last_start + 1..full.len() {
            for fill in [0usize, 64] {
                let mut seg = full[..cut].to_vec();
                seg.resize(seg.len() + fill, 0);
                let s = scan(&seg, true).unwrap();
                assert_eq!(s.frames.len(), 2, "cut at {cut}");
                match s.end {
                    SegmentEnd::TornTail { offset, .. } => assert_eq!(offset, last_start),
                    other => panic!("cut at {cut} fill {fill}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_flipped_byte_before_the_tail_is_corruption() {
        let full = segment(1, &[b"first record", b"second record", b"third"], 128);
        let s = scan(&full, true).unwrap();
        let second = s.frames[1];
        for pos in s.frames[0].offset..second.offset {
            let mut seg = full.clone();
            seg[pos] ^= 0x40;
            let s = scan(&seg, true).unwrap();
            assert!(
                matches!(s.end, SegmentEnd::Corrupt { offset, .. } if offset == s.frames.last().map_or(SEGMENT_HEADER_BYTES, |f| f.payload_start + f.payload_len)),
                "byte {pos}: {:?}",
                s.end
            );
        }
    }

    #[test]
    fn a_flipped_payload_byte_in_a_complete_last_record_is_corruption() {
        let full = segment(1, &[b"first record", b"last record!"], 256);
        let s = scan(&full, true).unwrap();
        let last = s.frames[1];
        let mut seg = full.clone();
        seg[last.payload_start + 3] ^= 0x01;
        assert!(matches!(scan(&seg, true).unwrap().end, SegmentEnd::Corrupt { offset, .. } if offset == last.offset));
    }

    #[test]
    fn damage_in_an_older_segment_is_never_a_torn_tail() {
        let full = segment(1, &[b"one", b"two"], 0);
        let cut = &full[..full.len() - 1];
        assert!(matches!(scan(cut, false).unwrap().end, SegmentEnd::Corrupt { .. }));
    }

    #[test]
    fn header_checks() {
        let mut seg = segment(1, &[b"x"], 0);
        seg[3] = b'!';
        assert_eq!(scan(&seg, true).unwrap_err(), HeaderError::BadMagic);
        let mut seg = segment(1, &[b"x"], 0);
        seg[16] ^= 1;
        assert_eq!(scan(&seg, true).unwrap_err(), HeaderError::BadChecksum);
        let hdr = SegmentHeader { version: FORMAT_VERSION + 1, first_lsn: 1 }.encode();
        assert_eq!(SegmentHeader::decode(&hdr).unwrap_err(), HeaderError::NewerVersion(FORMAT_VERSION + 1));
    }

    #[test]
    fn lsn_gap_is_corruption_even_at_the_tail() {
        let mut seg = segment(1, &[b"one"], 0);
        encode_frame(&mut seg, 5, b"skipped ahead");
        assert!(matches!(scan(&seg, true).unwrap().end, SegmentEnd::Corrupt { damage: FrameDamage::LsnGap { expected: 2, found: 5 }, .. }));
    }
}
