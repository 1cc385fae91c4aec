//! A scope's idempotency outcomes (a brand's, or the registry's under `""`) as snapshots
//! hold them from format 5: encoded back to back into chunks of `idempotency_chunks`,
//! read in bulk rather than a row each. A 24-hour window at scale is millions of
//! outcomes, most of a snapshot's rows; read one SQLite row at a time, they were most
//! of a restart's CPU.
//!
//! One outcome, integers little-endian:
//!
//! | bytes | what |
//! |---|---|
//! | 1 | key length `n` |
//! | `n` | the key (printable ASCII, as the API takes it) |
//! | 16 | fingerprint: the first 16 bytes of the request's SHA-256 |
//! | 1 | flags: the status in bits 0–1 (`ok`, `created`, `accepted`, `no_content`), packed in bit 2 |
//! | 8 | record time, ms since the epoch (i64) |
//! | 8 | LSN (u64) |
//! | 4 | answer length `m` (u32) |
//! | `m` | the answer as memory keeps it: packed with `meta.body_fragments` if flagged |
//!
//! A chunk holds whole outcomes, in the store's order, and ends past [`CHUNK_BYTES`]
//! (one long answer makes a longer chunk). The digest takes a scope's outcomes as the
//! SHA-256 of its chunks' bytes in order ([`encode`]), so a load checks them as they
//! are read, on the thread that reads them, with no answer unpacked.

use sha2::{Digest as _, Sha256};

use crate::domain::idempotency::{unpack_into, valid_key, Fingerprint, IdempotencyStore, Status, FINGERPRINT_BYTES};
use crate::domain::Timestamp;

/// A chunk is cut once it holds this many bytes.
pub(super) const CHUNK_BYTES: usize = 256 << 10;

/// The statuses by their code in the flags byte (snapshot format: never reordered).
const STATUSES: [Status; 4] = [Status::Done, Status::Created, Status::Accepted, Status::Removed];
const STATUS_BITS: u8 = 0b11;
const PACKED: u8 = 0b100;

fn status_code(s: Status) -> u8 {
    match s {
        Status::Done => 0,
        Status::Created => 1,
        Status::Accepted => 2,
        Status::Removed => 3,
    }
}

/// Encodes a store's outcomes into chunks, handing each to `chunk` with how many
/// outcomes it holds; returns the SHA-256 of all their bytes in order (what the digest
/// takes of the scope).
pub(super) fn encode<E>(store: &IdempotencyStore, mut chunk: impl FnMut(&[u8], usize) -> Result<(), E>) -> Result<[u8; 32], E> {
    let mut sha = Sha256::new();
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 1024);
    let mut n = 0;
    for (key, o) in store.iter() {
        let (body, packed) = o.body.stored();
        buf.push(key.len() as u8);
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(&o.fingerprint);
        buf.push(status_code(o.status) | if packed { PACKED } else { 0 });
        buf.extend_from_slice(&o.at.0.to_le_bytes());
        buf.extend_from_slice(&o.lsn.to_le_bytes());
        buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        buf.extend_from_slice(body);
        n += 1;
        if buf.len() >= CHUNK_BYTES {
            sha.update(&buf);
            chunk(&buf, n)?;
            buf.clear();
            n = 0;
        }
    }
    if n > 0 {
        sha.update(&buf);
        chunk(&buf, n)?;
    }
    Ok(sha.finalize().into())
}

/// What the digest takes of a store's outcomes (see [`encode`]).
pub(super) fn digest(store: &IdempotencyStore) -> [u8; 32] {
    match encode(store, |_, _| Ok::<(), std::convert::Infallible>(())) {
        Ok(sha) => sha,
        Err(never) => match never {},
    }
}

/// The longest answer a snapshot may unpack to (the server's answers are far shorter:
/// a batch's is tens of KB).
const UNPACKED_MAX: usize = 64 << 20;

/// How a snapshot's answers go into memory: copied as memory keeps them, or unpacked
/// with the fragments they were packed with (none for answers stored as sent) and
/// packed again with today's. Keeps the buffer each unpacked answer goes through.
pub(super) struct Answers<'a> {
    unpack_with: Option<&'a [String]>,
    plain: Vec<u8>,
}

impl<'a> Answers<'a> {
    pub(super) fn new(unpack_with: Option<&'a [String]>) -> Answers<'a> {
        Answers { unpack_with, plain: Vec::new() }
    }

    /// Adds one outcome read back in the store's order.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn load(
        &mut self,
        store: &mut IdempotencyStore,
        key: &str,
        fingerprint: &Fingerprint,
        status: Status,
        body: &[u8],
        packed: bool,
        at: Timestamp,
        lsn: u64,
    ) -> Result<(), String> {
        match self.unpack_with {
            None => store.load_stored(key, fingerprint, status, body, packed, at, lsn),
            Some(fragments) if packed => {
                self.plain.clear();
                if !unpack_into(fragments, body, &mut self.plain, UNPACKED_MAX) {
                    return Err(format!("a stored answer unpacks to more than {UNPACKED_MAX} bytes"));
                }
                store.load_plain(key, fingerprint, status, &self.plain, at, lsn);
            }
            Some(_) => store.load_plain(key, fingerprint, status, body, at, lsn),
        }
        Ok(())
    }
}

/// Reads one chunk's outcomes into `store`, checking each field (the file may be
/// damaged or hostile). Returns how many outcomes the chunk held.
pub(super) fn decode(chunk: &[u8], store: &mut IdempotencyStore, answers: &mut Answers<'_>) -> Result<usize, String> {
    let mut r = Reader(chunk);
    let mut n = 0;
    while !r.0.is_empty() {
        let key_len = r.take(1)?[0] as usize;
        let key = std::str::from_utf8(r.take(key_len)?).ok().filter(|k| valid_key(k)).ok_or("a bad idempotency key")?;
        let fingerprint: Fingerprint = r.array::<FINGERPRINT_BYTES>()?;
        let flags = r.take(1)?[0];
        if flags & !(STATUS_BITS | PACKED) != 0 {
            return Err(format!("bad outcome flags {flags:#04x}"));
        }
        let (status, packed) = (STATUSES[(flags & STATUS_BITS) as usize], flags & PACKED != 0);
        let at = Timestamp(i64::from_le_bytes(r.array()?));
        let lsn = u64::from_le_bytes(r.array()?);
        let body_len = u32::from_le_bytes(r.array()?) as usize;
        let body = r.take(body_len)?;
        answers.load(store, key, &fingerprint, status, body, packed, at, lsn)?;
        n += 1;
    }
    Ok(n)
}

/// The unread rest of a chunk.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!("a chunk ends inside an outcome ({n} bytes wanted, {} left)", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes taken"))
    }
}
