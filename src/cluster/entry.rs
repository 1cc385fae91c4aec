//! A partition journal entry — the body of one JetStream message — and the replay rule
//! that decides which entries count.
//!
//! An entry is a group-commit batch of one partition: a 32-byte header, then the same
//! framed, checksummed records as a local WAL segment (`journal::format`), with dense
//! partition LSNs. A *takeover marker* is an entry with no records that a new owner
//! publishes before anything else; its epoch fences every older owner off.
//!
//! ```text
//! offset size field
//!      0    4 magic "ZKJE"
//!      4    1 version (1)
//!      5    1 kind: 1 = batch, 2 = takeover marker
//!      6    2 reserved, zero
//!      8    8 epoch (u64 LE): the owner's lease epoch
//!     16    8 first LSN (u64 LE): of the first record; for a marker, the next LSN
//!     24    4 record count (u32 LE); zero for a marker
//!     28    4 CRC-32 (IEEE) of bytes 0..28
//!     32    … `count` frames, LSNs first_lsn, first_lsn+1, …
//! ```
//!
//! Nothing here does I/O: the replay rule is a state machine fed entries in stream
//! order, so that a standby, a takeover and a cold start apply exactly the same records.

use std::fmt;

use crate::journal::format::{encode_frame, frame_len, read_frame, FrameDamage};
use crate::journal::Lsn;

pub const ENTRY_MAGIC: [u8; 4] = *b"ZKJE";
pub const ENTRY_VERSION: u8 = 1;
pub const ENTRY_HEADER_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Batch,
    Takeover,
}

/// The header of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    pub kind: EntryKind,
    pub epoch: u64,
    pub first_lsn: Lsn,
    pub count: u32,
}

/// Encodes a batch of records with LSNs `first_lsn..`.
pub fn encode_batch<P: AsRef<[u8]>>(epoch: u64, first_lsn: Lsn, payloads: &[P]) -> Vec<u8> {
    let size = ENTRY_HEADER_BYTES + payloads.iter().map(|p| frame_len(p.as_ref().len())).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let count = u32::try_from(payloads.len()).expect("a batch holds fewer than 2^32 records");
    push_header(&mut out, EntryHeader { kind: EntryKind::Batch, epoch, first_lsn, count });
    for (i, p) in payloads.iter().enumerate() {
        encode_frame(&mut out, first_lsn + i as u64, p.as_ref());
    }
    out
}

/// Encodes a takeover marker: the owner of `epoch` writes from `next_lsn` on.
pub fn encode_takeover(epoch: u64, next_lsn: Lsn) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_HEADER_BYTES);
    push_header(&mut out, EntryHeader { kind: EntryKind::Takeover, epoch, first_lsn: next_lsn, count: 0 });
    out
}

fn push_header(out: &mut Vec<u8>, h: EntryHeader) {
    let start = out.len();
    out.extend_from_slice(&ENTRY_MAGIC);
    out.push(ENTRY_VERSION);
    out.push(match h.kind {
        EntryKind::Batch => 1,
        EntryKind::Takeover => 2,
    });
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&h.epoch.to_le_bytes());
    out.extend_from_slice(&h.first_lsn.to_le_bytes());
    out.extend_from_slice(&h.count.to_le_bytes());
    let crc = crc32fast::hash(&out[start..start + 28]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Why an entry could not be read. Any of these is damage: replay stops and says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryDamage {
    Short,
    BadMagic,
    NewerVersion(u8),
    BadKind(u8),
    BadHeaderChecksum,
    Frame { index: u32, damage: FrameDamage },
    TrailingBytes(usize),
    MarkerWithRecords(u32),
}

impl fmt::Display for EntryDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryDamage::Short => write!(f, "entry is shorter than its {ENTRY_HEADER_BYTES}-byte header"),
            EntryDamage::BadMagic => write!(f, "entry does not start with the ZKJE magic"),
            EntryDamage::NewerVersion(v) => {
                write!(f, "entry version {v} is newer than this binary understands ({ENTRY_VERSION}); run a newer zaiko")
            }
            EntryDamage::BadKind(k) => write!(f, "entry kind {k} is unknown"),
            EntryDamage::BadHeaderChecksum => write!(f, "entry header checksum mismatch"),
            EntryDamage::Frame { index, damage } => write!(f, "record {index} of the entry: {damage}"),
            EntryDamage::TrailingBytes(n) => write!(f, "{n} bytes after the entry's last record"),
            EntryDamage::MarkerWithRecords(n) => write!(f, "a takeover marker that holds {n} records"),
        }
    }
}

/// A decoded entry: its header and the records' payloads (borrowed from the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub header: EntryHeader,
    pub records: Vec<(Lsn, &'a [u8])>,
}

/// Decodes and checks a whole entry: header checksum, every frame's checksum and LSN.
pub fn decode(bytes: &[u8]) -> Result<Entry<'_>, EntryDamage> {
    if bytes.len() < ENTRY_HEADER_BYTES {
        return Err(EntryDamage::Short);
    }
    if bytes[0..4] != ENTRY_MAGIC {
        return Err(EntryDamage::BadMagic);
    }
    let crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(&bytes[0..28]) {
        return Err(EntryDamage::BadHeaderChecksum);
    }
    if bytes[4] > ENTRY_VERSION {
        return Err(EntryDamage::NewerVersion(bytes[4]));
    }
    let kind = match bytes[5] {
        1 => EntryKind::Batch,
        2 => EntryKind::Takeover,
        k => return Err(EntryDamage::BadKind(k)),
    };
    let epoch = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let first_lsn = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    if kind == EntryKind::Takeover && count != 0 {
        return Err(EntryDamage::MarkerWithRecords(count));
    }
    let mut records = Vec::with_capacity(count.min(4096) as usize);
    let mut offset = ENTRY_HEADER_BYTES;
    for index in 0..count {
        let frame = read_frame(bytes, offset, first_lsn + u64::from(index)).map_err(|damage| EntryDamage::Frame { index, damage })?;
        records.push((frame.lsn, &bytes[frame.payload_start..frame.payload_start + frame.payload_len]));
        offset = frame.payload_start + frame.payload_len;
    }
    if offset != bytes.len() {
        return Err(EntryDamage::TrailingBytes(bytes.len() - offset));
    }
    Ok(Entry { header: EntryHeader { kind, epoch, first_lsn, count }, records })
}

/// What the replay rule makes of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply these records (a batch of the current owner).
    Apply,
    /// A takeover marker: the epoch it names owns the partition from here on.
    Takeover,
    /// An entry of an owner that a later takeover fenced off: ignored and counted.
    Fenced,
    /// A re-publication of records already applied (same epoch, LSNs below the next
    /// one): ignored. The server's duplicate window normally drops these first.
    Duplicate,
}

/// An entry the replay rule cannot accept: the log is not what any sequence of owners
/// following the protocol could have written. Replay stops here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition journal entry at stream sequence {seq}: {detail}")]
pub struct ReplayError {
    pub seq: u64,
    pub detail: String,
}

/// The replay rule, fed every entry of a partition's subject in stream order.
///
/// * A takeover marker of epoch `e` raises the fence to `e`; it must name the next LSN.
/// * An entry of an epoch below the fence is ignored (fenced).
/// * A batch must be of the fenced epoch (every owner writes its marker first) and
///   continue the LSNs densely.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replay {
    /// The epoch of the newest takeover marker: the partition's current owner.
    pub epoch: u64,
    /// The LSN the next record must carry.
    pub next_lsn: Lsn,
    /// The stream sequence of the last entry read (any verdict).
    pub last_seq: u64,
    /// Entries ignored because a newer owner had taken over.
    pub fenced: u64,
}

impl Default for Replay {
    /// The rule at the start of a subject (LSNs start at 1).
    fn default() -> Replay {
        Replay::new()
    }
}

impl Replay {
    /// The rule at the start of a subject: nothing applied, next LSN 1.
    pub fn new() -> Replay {
        Replay { epoch: 0, next_lsn: 1, last_seq: 0, fenced: 0 }
    }

    /// The rule resumed after `next_lsn - 1` records of `epoch`, the last entry read
    /// being at stream sequence `last_seq` (a snapshot's position).
    pub fn resume(epoch: u64, next_lsn: Lsn, last_seq: u64) -> Replay {
        Replay { epoch, next_lsn, last_seq, fenced: 0 }
    }

    /// Judges the entry at stream sequence `seq`. On [`Verdict::Apply`] the caller
    /// applies `entry.records` in order; the rule has already moved past them.
    pub fn judge(&mut self, seq: u64, header: &EntryHeader) -> Result<Verdict, ReplayError> {
        let fail = |detail: String| Err(ReplayError { seq, detail });
        if seq <= self.last_seq {
            return fail(format!("stream sequence goes back (after {})", self.last_seq));
        }
        self.last_seq = seq;
        if header.epoch < self.epoch {
            self.fenced += 1;
            return Ok(Verdict::Fenced);
        }
        match header.kind {
            EntryKind::Takeover => {
                if header.first_lsn != self.next_lsn {
                    return fail(format!(
                        "takeover marker of epoch {} starts at lsn {} but the partition's next lsn is {}",
                        header.epoch, header.first_lsn, self.next_lsn
                    ));
                }
                self.epoch = header.epoch;
                Ok(Verdict::Takeover)
            }
            EntryKind::Batch if header.epoch > self.epoch => {
                fail(format!("a batch of epoch {} without its takeover marker (current epoch {})", header.epoch, self.epoch))
            }
            EntryKind::Batch => {
                let end = header.first_lsn + u64::from(header.count);
                if end <= self.next_lsn && header.count > 0 {
                    return Ok(Verdict::Duplicate);
                }
                if header.first_lsn != self.next_lsn {
                    return fail(format!("batch starts at lsn {} but the partition's next lsn is {}", header.first_lsn, self.next_lsn));
                }
                self.next_lsn = end;
                Ok(Verdict::Apply)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: u64, first_lsn: Lsn, n: u32) -> EntryHeader {
        EntryHeader { kind: EntryKind::Batch, epoch, first_lsn, count: n }
    }

    fn marker(epoch: u64, next: Lsn) -> EntryHeader {
        EntryHeader { kind: EntryKind::Takeover, epoch, first_lsn: next, count: 0 }
    }

    #[test]
    fn a_batch_round_trips_with_dense_lsns() {
        let bytes = encode_batch(7, 41, &[b"one".to_vec(), b"two".to_vec()]);
        let e = decode(&bytes).unwrap();
        assert_eq!(e.header, batch(7, 41, 2));
        assert_eq!(e.records, vec![(41, &b"one"[..]), (42, &b"two"[..])]);
        let marker_bytes = encode_takeover(8, 43);
        let m = decode(&marker_bytes).unwrap();
        assert_eq!(m.header, marker(8, 43));
        assert!(m.records.is_empty());
    }

    #[test]
    fn every_damaged_byte_is_refused() {
        let bytes = encode_batch(3, 1, &[b"payload".to_vec()]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "a flipped byte at offset {i} went unnoticed");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 1]).unwrap_err(), EntryDamage::Frame { index: 0, damage: FrameDamage::Truncated });
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer).unwrap_err(), EntryDamage::TrailingBytes(1));
    }

    #[test]
    fn a_takeover_fences_the_old_owner_off() {
        let mut r = Replay::new();
        assert_eq!(r.judge(1, &marker(1, 1)), Ok(Verdict::Takeover));
        assert_eq!(r.judge(2, &batch(1, 1, 3)), Ok(Verdict::Apply));
        // The new owner read up to sequence 2 and writes its marker.
        assert_eq!(r.judge(3, &marker(2, 4)), Ok(Verdict::Takeover));
        // A late entry of the old owner that slipped past the expected-sequence check.
        assert_eq!(r.judge(4, &batch(1, 4, 2)), Ok(Verdict::Fenced));
        assert_eq!(r.judge(5, &batch(2, 4, 1)), Ok(Verdict::Apply));
        assert_eq!((r.epoch, r.next_lsn, r.fenced), (2, 5, 1));
    }

    #[test]
    fn entries_no_owner_could_write_stop_the_replay() {
        let mut r = Replay::new();
        assert!(r.judge(1, &batch(1, 1, 1)).is_err(), "a batch before any takeover marker");
        let mut r = Replay::new();
        r.judge(1, &marker(1, 1)).unwrap();
        assert!(r.clone().judge(2, &batch(1, 2, 1)).is_err(), "a gap in the lsns");
        assert!(r.clone().judge(2, &marker(2, 5)).is_err(), "a marker that skips lsns");
        assert!(r.clone().judge(2, &batch(3, 1, 1)).is_err(), "a newer epoch without its marker");
        assert!(r.clone().judge(1, &batch(1, 1, 1)).is_err(), "a stream sequence read twice");
    }

    #[test]
    fn a_republished_batch_is_a_duplicate() {
        let mut r = Replay::new();
        r.judge(1, &marker(1, 1)).unwrap();
        r.judge(2, &batch(1, 1, 2)).unwrap();
        assert_eq!(r.judge(3, &batch(1, 1, 2)), Ok(Verdict::Duplicate));
        assert_eq!(r.judge(4, &batch(1, 3, 1)), Ok(Verdict::Apply));
    }
}
