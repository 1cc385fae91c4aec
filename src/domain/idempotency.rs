//! Idempotency records: the stored outcome of a request made with an
//! `Idempotency-Key`, kept per scope (a brand, or the admin registry).
//!
//! Entries are written in the same WAL record as the change they describe, so a
//! crash keeps both or neither. Pruning is driven by record times, never a clock, so
//! replay and snapshots reach exactly the same set.

use serde::{Deserialize, Serialize};

use super::{Lsn, Timestamp};

/// How long an outcome is kept (the contract promises at least 24 h).
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;
/// Most keys kept per scope; past it the oldest go first, even inside the retention.
pub const KEYS_MAX_PER_SCOPE: usize = 2_000_000;
/// Longest key accepted (visible ASCII only).
pub const KEY_CHARS_MAX: usize = 255;

/// What a successful command did, as its answer says. Only `src/http/` turns it into a
/// status code (`http::reply_response`).
///
/// Stored with the answer, in the journal (bincode encodes a variant by its position)
/// and in snapshots (the `status` texts of `snapshot/write.rs`): the order of the
/// variants is on-disk format, so a new one goes last. The serde names are the ones
/// the variants had when they were named after HTTP codes, so that a self-describing
/// encoding would keep them too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The command was carried out: a read answered, an object changed, a batch
    /// decided (each of its changes applied or refused).
    #[serde(rename = "Ok")]
    Done,
    /// A new object was made.
    Created,
    /// Work was taken on to be done later (an import job queued).
    Accepted,
    /// An object was removed (deleted, revoked); the answer has no body.
    #[serde(rename = "NoContent")]
    Removed,
}

/// What is written with the change: the key, a fingerprint of the request, and the
/// response that was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemWrite {
    pub key: String,
    pub fingerprint: [u8; 32],
    pub status: Status,
    #[serde(with = "byte_buf")]
    pub body: Vec<u8>,
}

/// The part of a request's SHA-256 fingerprint that its stored outcome keeps: the
/// first 128 bits.
///
/// The fingerprint only tells a retry (same key, same request) from a reuse of the key
/// for another request, among the requests of one scope with the same key: no one
/// compares fingerprints across keys, so the odds that matter are a second preimage of
/// one given request (2^-128 by chance) or a pair a client builds on purpose (a
/// birthday search of ~2^64 SHA-256 evaluations), and such a pair only lets a client
/// get its own first answer back for its own second request. 16 bytes fewer per
/// outcome are ~160 MB at 10 million outcomes. The journal keeps all 32 bytes.
pub type Fingerprint = [u8; FINGERPRINT_BYTES];
pub const FINGERPRINT_BYTES: usize = 16;

/// The [`Fingerprint`] kept of a request's full SHA-256.
pub fn kept_fingerprint(full: &[u8; 32]) -> Fingerprint {
    let mut kept = [0; FINGERPRINT_BYTES];
    kept.copy_from_slice(&full[..FINGERPRINT_BYTES]);
    kept
}

/// A stored outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemEntry {
    pub fingerprint: Fingerprint,
    pub status: Status,
    pub body: Body,
    pub at: Timestamp,
    pub lsn: Lsn,
}

/// A stored answer as it is kept in memory: the JSON fragments every answer repeats
/// (`{"results":[{"index":`, `","location":"`, …) replaced by one byte each, since the
/// outcomes of 24 h of writes are most of the server's memory (a single change's
/// ~120-byte answer keeps ~30 bytes). JSON text never holds the bytes 0x01–0x1f raw, so
/// they are free for the fragments; an answer that does (or is short) is kept as sent.
/// zstd with a dictionary of these answers compressed no better and cost 2–7 µs per
/// answer, which showed in the write path and doubled a replay; this costs ~0.2 µs.
/// Only memory holds this form: the journal and snapshots keep the answer as sent, so
/// the fragments may change from one version to the next. Serialises as the plain bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Body {
    stored: Box<[u8]>,
    /// Whether `stored` is packed (else it is the answer itself).
    packed: bool,
}

/// The fragments, coded 0x01.. in this order; where two start alike the longer is
/// tried first (`FRAGMENT_ORDER`). Snapshots from format 4 keep answers packed and
/// name the fragments they were packed with (`snapshot::read` unpacks with those when
/// they are not these).
pub const FRAGMENTS: [&str; 31] = [
    r#"{"results":["#,
    r#"{"index":"#,
    r#","status":"applied","sku":""#,
    r#","status":"rejected","sku":""#,
    r#"","location":""#,
    r#"","version":"#,
    r#","on_hand":"#,
    r#","available":"#,
    r#"}]}"#,
    r#"},{"index":"#,
    r#","code":""#,
    r#"","detail":""#,
    r#"{"id":""#,
    r#"","status":""#,
    r#"","channel":""#,
    r#"","ttl_seconds":"#,
    r#","created_at":""#,
    r#"","expires_at":""#,
    r#"","lines":[{"sku":""#,
    r#"","quantity":"#,
    r#"},{"sku":""#,
    r#","ended_at":""#,
    r#","shipment_id":""#,
    r#","order_ref":""#,
    r#","reservation_id":""#,
    r#","tracking_number":"#,
    r#","carrier":"#,
    r#","history":[{"status":""#,
    r#"","at":""#,
    r#","updated_at":""#,
    r#"T00:00:00.000Z""#,
];
/// Shorter answers are kept as they are.
const BODY_PACK_MIN: usize = 16;

/// For each first byte, the fragments that start with it, longest first.
static FRAGMENT_ORDER: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(|| {
    let mut by_first = vec![Vec::new(); 256];
    for (i, f) in FRAGMENTS.iter().enumerate() {
        by_first[f.as_bytes()[0] as usize].push(i as u8);
    }
    for codes in &mut by_first {
        codes.sort_by_key(|&c| std::cmp::Reverse(FRAGMENTS[c as usize].len()));
    }
    by_first
});

/// The fragment a packed byte stands for, if it stands for one.
fn fragment(b: u8) -> Option<&'static str> {
    FRAGMENTS.get((b as usize).wrapping_sub(1)).copied()
}

/// Appends to `out` the answer `stored` stands for, packed with `fragments` (byte `c`
/// from 1 on stands for fragment `c - 1`; any other byte for itself): today's
/// [`FRAGMENTS`], or those a snapshot names. Stops, saying so, once `out` would hold
/// more than `max` bytes of it.
pub fn unpack_into<F: AsRef<[u8]>>(fragments: &[F], stored: &[u8], out: &mut Vec<u8>, max: usize) -> bool {
    let start = out.len();
    for &b in stored {
        match (b as usize).checked_sub(1).and_then(|i| fragments.get(i)) {
            Some(f) => out.extend_from_slice(f.as_ref()),
            None => out.push(b),
        }
        if out.len() - start > max {
            return false;
        }
    }
    true
}

/// Appends the packed form of `plain` to `out` and says whether it is packed; when it
/// is not (short, holding a fragment byte, or not shorter packed), `out` gets `plain`.
fn pack_into(plain: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    if plain.len() < BODY_PACK_MIN || plain.iter().any(|&b| fragment(b).is_some()) {
        out.extend_from_slice(plain);
        return false;
    }
    let order = &*FRAGMENT_ORDER;
    let mut i = 0;
    while i < plain.len() {
        let rest = &plain[i..];
        match order[rest[0] as usize].iter().find(|&&c| rest.starts_with(FRAGMENTS[c as usize].as_bytes())) {
            Some(&c) => {
                out.push(c + 1);
                i += FRAGMENTS[c as usize].len();
            }
            None => {
                out.push(rest[0]);
                i += 1;
            }
        }
    }
    if out.len() - start >= plain.len() {
        out.truncate(start);
        out.extend_from_slice(plain);
        return false;
    }
    true
}

impl Body {
    pub fn new(plain: &[u8]) -> Body {
        let mut out = Vec::with_capacity(plain.len());
        let packed = pack_into(plain, &mut out);
        Body { stored: out.into_boxed_slice(), packed }
    }

    /// The answer as it was sent.
    pub fn to_vec(&self) -> Vec<u8> {
        self.as_ref().to_vec()
    }

    /// Length of the answer as sent.
    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }

    /// Bytes kept in memory for it.
    pub fn stored_len(&self) -> usize {
        self.stored.len()
    }

    pub fn as_ref(&self) -> BodyRef<'_> {
        BodyRef { stored: &self.stored, packed: self.packed }
    }
}

/// A stored answer where it lies (in a [`Body`] or in a store's block).
#[derive(Clone, Copy)]
pub struct BodyRef<'a> {
    stored: &'a [u8],
    packed: bool,
}

impl<'a> BodyRef<'a> {
    /// The bytes kept and whether they are packed: what a snapshot stores.
    pub fn stored(&self) -> (&'a [u8], bool) {
        (self.stored, self.packed)
    }

    /// The answer as it was sent.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// Appends the answer as it was sent to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if !self.packed {
            out.extend_from_slice(self.stored);
            return;
        }
        out.reserve(self.stored.len() * 3);
        unpack_into(&FRAGMENTS, self.stored, out, usize::MAX);
    }

    /// Length of the answer as sent.
    pub fn len(&self) -> usize {
        if !self.packed {
            return self.stored.len();
        }
        self.stored.iter().map(|&b| fragment(b).map_or(1, str::len)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }

    /// Bytes kept in memory for it.
    pub fn stored_len(&self) -> usize {
        self.stored.len()
    }
}

impl std::fmt::Debug for BodyRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes, {} stored)", self.len(), self.stored_len())
    }
}

impl Serialize for BodyRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.packed {
            return s.serialize_bytes(self.stored);
        }
        // Unpacked into a buffer of this thread's: digests serialise millions of them.
        thread_local!(static PLAIN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        PLAIN.with(|buf| match buf.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                self.write_to(&mut buf);
                s.serialize_bytes(&buf)
            }
            Err(_) => s.serialize_bytes(&self.to_vec()),
        })
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_ref().fmt(f)
    }
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_ref().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Body, D::Error> {
        Ok(Body::new(&byte_buf::deserialize(d)?))
    }
}

/// Serde for a `Vec<u8>` as one byte string instead of a sequence of `u8`s.
///
/// In bincode both are a varint length and the raw bytes, so the WAL format does not
/// change; but a sequence is encoded and decoded one element at a time, which made the
/// stored response bodies (up to ~100 KB for a 1,000-change batch) a measurable share
/// of both the hot path and replay. In JSON both are an array of numbers.
mod byte_buf {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// A stored outcome as the store hands it out. Serialises as [`IdemEntry`] does.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Outcome<'a> {
    pub fingerprint: Fingerprint,
    pub status: Status,
    pub body: BodyRef<'a>,
    pub at: Timestamp,
    pub lsn: Lsn,
}

/// Result of looking a key up.
#[derive(Debug)]
pub enum Lookup<'a> {
    Miss,
    /// Same key, same request: send this again.
    Replay(Outcome<'a>),
    /// Same key, another request.
    Mismatch,
}

pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= KEY_CHARS_MAX && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The outcomes of one scope, oldest first, in a dense layout: they are most of a busy
/// server's memory (a brand sending a million keyed writes a day keeps a million).
///
/// Outcomes are appended to blocks: each block holds up to `BLOCK_SLOTS_MAX` 32-byte
/// slots and one byte buffer with every slot's key and packed answer, so an outcome
/// costs its slot, its bytes and one `u32` in the hash table (~90 bytes for a single
/// change's answer with a 19-character key). A slot keeps its time and LSN as 32-bit
/// offsets from its block's first ones (a block whose offsets would overflow is closed
/// early) and no answer length (an answer ends where the next slot's key starts).
/// Pruning takes outcomes from the front, as they age or past `KEYS_MAX_PER_SCOPE`, and
/// drops a block once all of it is gone. Blocks start small and double, so a quiet
/// scope stays small.
#[derive(Default)]
pub struct IdempotencyStore {
    /// The [`Addr`] of each live outcome, by its key's hash.
    index: hashbrown::HashTable<Addr>,
    hasher: foldhash::fast::RandomState,
    blocks: std::collections::VecDeque<Block>,
    /// Absolute number of `blocks[0]`.
    first_block: u64,
    /// Slots before this one in `blocks[0]` are pruned.
    front: usize,
    live: usize,
}

/// Where an outcome is: its block's number modulo 2^`BLOCK_NO_BITS`, then its slot.
/// 32 bits, not 64: the hash table is half empty right after it grows (a scope of a
/// million keys has two million buckets), so each byte of an entry costs ~2 per outcome.
type Addr = u32;
const SLOT_BITS: u32 = 10;
const BLOCK_NO_BITS: u32 = Addr::BITS - SLOT_BITS;
/// Blocks a scope holds at most, so that their numbers differ in an [`Addr`]; past it
/// the oldest block's outcomes go first. Only blocks of one outcome each would reach it
/// (outcomes a day apart, or LSNs 2^32 apart): `KEYS_MAX_PER_SCOPE` outcomes written
/// one after another fill ~2,000.
const BLOCKS_MAX_PER_SCOPE: usize = 1 << BLOCK_NO_BITS;

/// The address of slot `slot` of block number `block_no`.
fn address(block_no: u64, slot: usize) -> Addr {
    debug_assert!(slot < BLOCK_SLOTS_MAX, "slot {slot}");
    (block_no as Addr) << SLOT_BITS | slot as Addr
}

/// The block (index into `blocks`) and slot of an address.
fn locate(addr: Addr, first_block: u64) -> (usize, usize) {
    let block = (addr >> SLOT_BITS).wrapping_sub(first_block as Addr) & ((1 << BLOCK_NO_BITS) - 1);
    (block as usize, (addr & ((1 << SLOT_BITS) - 1)) as usize)
}

/// Slots a block holds at most, and at first.
const BLOCK_SLOTS_MAX: usize = 1 << SLOT_BITS;
const BLOCK_SLOTS_MIN: usize = 8;
/// Bytes of keys and answers a block is sized for per slot (a single change's key and
/// packed answer take ~50–70).
const BLOCK_BYTES_PER_SLOT: usize = 80;

struct Block {
    slots: Vec<Slot>,
    bytes: Vec<u8>,
    /// The time and LSN of the block's first outcome: its slots keep theirs as offsets.
    at_base: i64,
    lsn_base: Lsn,
}

/// One outcome: 32 bytes. Its key and then its stored answer are
/// `bytes[start..next start]` of its block (the last slot's run to the end of `bytes`).
struct Slot {
    fingerprint: Fingerprint,
    /// Its record time minus the block's `at_base`, in ms (49 days fit).
    at_ms: u32,
    /// Its LSN minus the block's `lsn_base`.
    lsn: u32,
    start: u32,
    key_len: u8,
    /// `SLOT_STATUS` (the [`Status`] by position), `SLOT_PACKED`, `SLOT_DEAD`.
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

/// The bits of `Slot::flags`: the status, whether the answer is packed, and whether a
/// later outcome of the same key replaced this one (it is no longer in the index).
const SLOT_STATUS: u8 = 0b11;
const SLOT_PACKED: u8 = 0b100;
const SLOT_DEAD: u8 = 0b1000;

const STATUSES: [Status; 4] = [Status::Done, Status::Created, Status::Accepted, Status::Removed];

fn status_bits(s: Status) -> u8 {
    STATUSES.iter().position(|&x| x == s).expect("every status is listed") as u8
}

impl Block {
    fn new(slots: usize, bytes: usize, at: Timestamp, lsn: Lsn) -> Block {
        Block { slots: Vec::with_capacity(slots), bytes: Vec::with_capacity(bytes), at_base: at.0, lsn_base: lsn }
    }

    fn key(&self, i: usize) -> &[u8] {
        let s = &self.slots[i];
        &self.bytes[s.start as usize..s.start as usize + s.key_len as usize]
    }

    fn at(&self, i: usize) -> Timestamp {
        Timestamp(self.at_base + i64::from(self.slots[i].at_ms))
    }

    fn dead(&self, i: usize) -> bool {
        self.slots[i].flags & SLOT_DEAD != 0
    }

    fn outcome(&self, i: usize) -> (&str, Outcome<'_>) {
        let s = &self.slots[i];
        let key_end = s.start as usize + s.key_len as usize;
        let end = self.slots.get(i + 1).map_or(self.bytes.len(), |n| n.start as usize);
        let key = std::str::from_utf8(&self.bytes[s.start as usize..key_end]).expect("keys are ASCII");
        let body = BodyRef { stored: &self.bytes[key_end..end], packed: s.flags & SLOT_PACKED != 0 };
        let status = STATUSES[(s.flags & SLOT_STATUS) as usize];
        (key, Outcome { fingerprint: s.fingerprint, status, body, at: self.at(i), lsn: self.lsn_base + Lsn::from(s.lsn) })
    }

    /// Whether an outcome of `bytes` bytes at `at` and `lsn` fits: room in the slots
    /// and the bytes, and offsets from the block's bases that fit their 32 bits.
    fn has_room(&self, bytes: usize, at: Timestamp, lsn: Lsn) -> bool {
        self.slots.len() < self.slots.capacity().min(BLOCK_SLOTS_MAX)
            && self.bytes.len() + bytes <= self.bytes.capacity()
            && at.0.checked_sub(self.at_base).is_some_and(|d| u32::try_from(d).is_ok())
            && lsn.checked_sub(self.lsn_base).is_some_and(|d| u32::try_from(d).is_ok())
    }
}

impl IdempotencyStore {
    fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn block(&self, addr: Addr) -> (&Block, usize) {
        let (b, i) = locate(addr, self.first_block);
        (&self.blocks[b], i)
    }

    fn find(&self, key: &str) -> Option<Addr> {
        self.index
            .find(self.hash(key.as_bytes()), |&a| {
                let (b, i) = self.block(a);
                b.key(i) == key.as_bytes()
            })
            .copied()
    }

    /// The outcome kept for `key`, and whether the request with this `fingerprint`
    /// (its full SHA-256) is the one it answered.
    pub fn lookup(&self, key: &str, fingerprint: &[u8; 32]) -> Lookup<'_> {
        let Some(addr) = self.find(key) else { return Lookup::Miss };
        let (b, i) = self.block(addr);
        match b.outcome(i).1 {
            o if o.fingerprint == kept_fingerprint(fingerprint) => Lookup::Replay(o),
            _ => Lookup::Mismatch,
        }
    }

    pub fn insert(&mut self, w: &IdemWrite, at: Timestamp, lsn: Lsn) {
        self.prune(at);
        // Packed straight into the block: no answer allocated and copied per write.
        self.push_with(&w.key, &kept_fingerprint(&w.fingerprint), w.status, at, lsn, w.body.len(), |out| pack_into(&w.body, out));
    }

    /// Appends an outcome; one already kept for the key is replaced (a key is written
    /// once — a second use is answered from here, never written — but a replayed record
    /// may repeat one).
    fn push(&mut self, key: &str, e: IdemEntry) {
        let body = &e.body;
        self.push_with(key, &e.fingerprint, e.status, e.at, e.lsn, body.stored.len(), |out| {
            out.extend_from_slice(&body.stored);
            body.packed
        });
    }

    /// Opens a new block fit for an outcome of `need` bytes at `at` and `lsn`.
    fn open_block(&mut self, need: usize, at: Timestamp, lsn: Lsn) {
        // Slots double while blocks fill up with outcomes; a block closed before its
        // slots filled (a batch's answer is tens of KiB, or the offsets overflowed)
        // passes its slot count on unchanged, and gives back the slots and bytes it did
        // not use: 1,000-change answers left slots by the hundred unused.
        let slots = self.blocks.back().map_or(BLOCK_SLOTS_MIN, |b| {
            let slots_full = b.slots.len() == b.slots.capacity();
            if slots_full {
                (b.slots.capacity() * 2).min(BLOCK_SLOTS_MAX)
            } else {
                b.slots.capacity()
            }
        });
        if let Some(closed) = self.blocks.back_mut() {
            closed.bytes.shrink_to_fit();
            closed.slots.shrink_to_fit();
        }
        if self.blocks.len() >= BLOCKS_MAX_PER_SCOPE {
            self.drop_oldest_block();
        }
        self.blocks.push_back(Block::new(slots, (slots * BLOCK_BYTES_PER_SLOT).max(need), at, lsn));
    }

    /// [`Self::push`] with the answer written into the block by `write_body` (at most
    /// `body_max` bytes; it says whether what it wrote is packed).
    #[allow(clippy::too_many_arguments)]
    fn push_with(
        &mut self,
        key: &str,
        fingerprint: &Fingerprint,
        status: Status,
        at: Timestamp,
        lsn: Lsn,
        body_max: usize,
        write_body: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
        // Checked where keys come in (the request, the snapshot reader).
        assert!(key.len() <= KEY_CHARS_MAX, "an idempotency key of {} bytes", key.len());
        let need = key.len() + body_max;
        assert!(need <= u32::MAX as usize, "an idempotency answer of {body_max} bytes");
        if !self.blocks.back().is_some_and(|b| b.has_room(need, at, lsn)) {
            self.open_block(need, at, lsn);
        }
        let block_no = self.first_block + self.blocks.len() as u64 - 1;
        let b = self.blocks.back_mut().expect("a block with room exists");
        let start = b.bytes.len() as u32;
        b.bytes.extend_from_slice(key.as_bytes());
        let packed = write_body(&mut b.bytes);
        debug_assert!(b.bytes.len() - start as usize - key.len() <= body_max, "an answer longer than its bound");
        b.slots.push(Slot {
            fingerprint: *fingerprint,
            at_ms: (at.0 - b.at_base) as u32,
            lsn: (lsn - b.lsn_base) as u32,
            start,
            key_len: key.len() as u8,
            flags: status_bits(status) | if packed { SLOT_PACKED } else { 0 },
        });
        let addr = address(block_no, b.slots.len() - 1);
        let hash = self.hash(key.as_bytes());
        let IdempotencyStore { index, hasher, blocks, first_block, live, .. } = self;
        let key_at = |a: Addr| {
            let (b, i) = locate(a, *first_block);
            blocks[b].key(i)
        };
        match index.find_mut(hash, |&a| key_at(a) == key.as_bytes()) {
            Some(old) => {
                let (b, i) = locate(std::mem::replace(old, addr), *first_block);
                blocks[b].slots[i].flags |= SLOT_DEAD;
            }
            None => {
                index.insert_unique(hash, addr, |&a| std::hash::BuildHasher::hash_one(&*hasher, key_at(a)));
                *live += 1;
            }
        }
    }

    /// Drops outcomes older than the retention at `now`, and the oldest past the bound.
    fn prune(&mut self, now: Timestamp) {
        while let Some(b) = self.blocks.front() {
            if self.front == b.slots.len() {
                if self.blocks.len() == 1 {
                    break;
                }
                self.blocks.pop_front();
                self.first_block += 1;
                self.front = 0;
                continue;
            }
            if !b.dead(self.front) {
                if now.0 - b.at(self.front).0 <= RETENTION_MS && self.live < KEYS_MAX_PER_SCOPE {
                    break;
                }
                self.forget_front();
            }
            self.front += 1;
        }
    }

    /// Takes the live outcome at the front out of the index.
    fn forget_front(&mut self) {
        let addr = address(self.first_block, self.front);
        let hash = self.hash(self.blocks[0].key(self.front));
        match self.index.find_entry(hash, |&a| a == addr) {
            Ok(entry) => drop(entry.remove()),
            Err(_) => unreachable!("a live outcome is in the index"),
        }
        self.live -= 1;
    }

    /// Drops the oldest block with its outcomes (past `BLOCKS_MAX_PER_SCOPE`).
    fn drop_oldest_block(&mut self) {
        while self.front < self.blocks.front().map_or(0, |b| b.slots.len()) {
            if !self.blocks[0].dead(self.front) {
                self.forget_front();
            }
            self.front += 1;
        }
        if self.blocks.pop_front().is_some() {
            self.first_block += 1;
            self.front = 0;
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Outcomes in insertion order (for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Outcome<'_>)> {
        self.blocks.iter().enumerate().flat_map(move |(n, b)| {
            let from = if n == 0 { self.front } else { 0 };
            (from..b.slots.len()).filter(move |&i| !b.dead(i)).map(move |i| b.outcome(i))
        })
    }

    /// Rebuilds a store from entries in insertion order.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, IdemEntry)>) -> Self {
        let mut s = IdempotencyStore::default();
        for (k, e) in entries {
            s.load(&k, e);
        }
        s
    }

    /// Adds an entry read back in insertion order (snapshot load); no pruning.
    pub fn load(&mut self, key: &str, e: IdemEntry) {
        self.push(key, e);
    }

    /// Makes room in the index for `additional` more keys at once (a snapshot load
    /// knows how many it will add; growing step by step rehashes every key each time).
    pub fn reserve(&mut self, additional: usize) {
        let IdempotencyStore { index, hasher, blocks, first_block, .. } = self;
        index.reserve(additional.min(KEYS_MAX_PER_SCOPE), |&a| {
            let (b, i) = locate(a, *first_block);
            std::hash::BuildHasher::hash_one(&*hasher, blocks[b].key(i))
        });
    }

    /// [`Self::load`] from the answer as sent, packed straight into the store (no
    /// allocation per outcome: a snapshot holds millions).
    pub fn load_plain(&mut self, key: &str, fingerprint: &Fingerprint, status: Status, body: &[u8], at: Timestamp, lsn: Lsn) {
        self.push_with(key, fingerprint, status, at, lsn, body.len(), |out| pack_into(body, out));
    }

    /// [`Self::load`] from the answer as memory keeps it ([`BodyRef::stored`]), copied
    /// as it is: the fast way to read a snapshot back.
    #[allow(clippy::too_many_arguments)]
    pub fn load_stored(
        &mut self,
        key: &str,
        fingerprint: &Fingerprint,
        status: Status,
        stored: &[u8],
        packed: bool,
        at: Timestamp,
        lsn: Lsn,
    ) {
        self.push_with(key, fingerprint, status, at, lsn, stored.len(), |out| {
            out.extend_from_slice(stored);
            packed
        });
    }

    /// Bytes the store holds (slots, keys and answers, and the hash table), for the
    /// capacity bench.
    pub fn heap_bytes(&self) -> usize {
        let blocks: usize = self.blocks.iter().map(|b| b.slots.capacity() * std::mem::size_of::<Slot>() + b.bytes.capacity()).sum();
        blocks + self.index.capacity() * (std::mem::size_of::<Addr>() + 1)
    }
}

impl std::fmt::Debug for IdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter().map(|(k, o)| (k, (o.status, o.at, o.lsn)))).finish()
    }
}

impl Clone for IdempotencyStore {
    fn clone(&self) -> Self {
        IdempotencyStore::from_entries(self.iter().map(|(k, o)| (k.to_string(), o.to_entry())))
    }
}

impl PartialEq for IdempotencyStore {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|((ka, a), (kb, b))| ka == kb && a.to_entry() == b.to_entry())
    }
}

impl Eq for IdempotencyStore {}

impl Outcome<'_> {
    pub fn to_entry(&self) -> IdemEntry {
        let body = Body { stored: self.body.stored.into(), packed: self.body.packed };
        IdemEntry { fingerprint: self.fingerprint, status: self.status, body, at: self.at, lsn: self.lsn }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_stored_as_it_always_was() {
        // The journal and the state digest encode a status by its position, so the order
        // of the variants is what old journals mean; the serde names stay too.
        let config = bincode::config::standard();
        for (s, byte) in [(Status::Done, 0u8), (Status::Created, 1), (Status::Accepted, 2), (Status::Removed, 3)] {
            assert_eq!(bincode::serde::encode_to_vec(s, config).unwrap(), [byte], "{s:?}");
        }
        let names = serde_json::to_string(&[Status::Done, Status::Created, Status::Accepted, Status::Removed]).unwrap();
        assert_eq!(names, r#"["Ok","Created","Accepted","NoContent"]"#);
    }

    fn w(key: &str, fp: u8) -> IdemWrite {
        IdemWrite { key: key.into(), fingerprint: [fp; 32], status: Status::Done, body: b"{}".to_vec() }
    }

    #[test]
    fn lookup_distinguishes_replay_and_mismatch() {
        let mut s = IdempotencyStore::default();
        s.insert(&w("k1", 1), Timestamp(0), 5);
        assert!(matches!(s.lookup("k1", &[1; 32]), Lookup::Replay(e) if e.lsn == 5));
        assert!(matches!(s.lookup("k1", &[2; 32]), Lookup::Mismatch));
        assert!(matches!(s.lookup("k2", &[1; 32]), Lookup::Miss));
    }

    #[test]
    fn answers_are_kept_packed_and_come_back_as_sent() {
        let single = br#"{"results":[{"index":0,"status":"applied","sku":"B3-S004711","location":"loc-2","version":27,"on_hand":97,"available":79}]}"#;
        let b = Body::new(single);
        assert_eq!(b.to_vec(), single);
        assert_eq!(b.len(), single.len());
        assert!(b.stored_len() * 3 < single.len(), "{} of {} bytes stored", b.stored_len(), single.len());
        let batch: Vec<u8> = format!(
            "{{\"results\":[{}]}}",
            (0..1000)
                .map(|i| format!(
                    r#"{{"index":{i},"status":"applied","sku":"S{i}","location":"tsukuba","version":{i},"on_hand":{i},"available":{i}}}"#
                ))
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes();
        assert_eq!(Body::new(&batch).to_vec(), batch);
        for short in [&b""[..], b"{}", b"\x00\xff not json at all"] {
            let b = Body::new(short);
            assert_eq!((b.to_vec(), b.len()), (short.to_vec(), short.len()));
        }
        let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let b = Body::new(&noise);
        assert_eq!(b.to_vec(), noise);
        assert_eq!(b.stored_len(), noise.len(), "bytes that are not JSON text are kept as they are");
        // A fragment split over a boundary, and text that merely resembles one.
        for tricky in [
            &br#"{"results":[{"index":}]}}]}"#[..],
            br#""","location":"","location":"x"#,
            "ｘ{\"id\":\"キー\",\"status\":\"active\"}".as_bytes(),
        ] {
            assert_eq!(Body::new(tricky).to_vec(), tricky);
        }
    }

    proptest::proptest! {
        /// Any answer comes back byte for byte, packed or not.
        #[test]
        fn any_answer_comes_back_as_sent(parts in proptest::collection::vec((0usize..40, "[ -~ｱ-ﾝ]{0,12}"), 0..40)) {
            let mut plain = Vec::new();
            for (f, text) in parts {
                if let Some(fragment) = FRAGMENTS.get(f) {
                    plain.extend_from_slice(fragment.as_bytes());
                }
                plain.extend_from_slice(text.as_bytes());
            }
            let b = Body::new(&plain);
            proptest::prop_assert_eq!(b.to_vec(), plain.clone());
            proptest::prop_assert_eq!(b.len(), plain.len());
            proptest::prop_assert!(b.stored_len() <= plain.len());
        }
    }

    #[test]
    fn an_entry_serialises_its_answer_as_sent() {
        let e = IdemEntry { fingerprint: [1; 16], status: Status::Done, body: Body::new(&[b'x'; 100]), at: Timestamp(5), lsn: 9 };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["body"].as_array().unwrap().len(), 100);
        let back: IdemEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn entries_outlive_24h_then_go() {
        let mut s = IdempotencyStore::default();
        s.insert(&w("old", 1), Timestamp(0), 1);
        s.insert(&w("new", 1), Timestamp(RETENTION_MS), 2);
        assert!(matches!(s.lookup("old", &[1; 32]), Lookup::Replay(_)), "exactly 24 h old is still kept");
        s.insert(&w("newer", 1), Timestamp(RETENTION_MS + 1), 3);
        assert!(matches!(s.lookup("old", &[1; 32]), Lookup::Miss));
        assert_eq!(s.len(), 2);
    }

    fn single_change(key: &str, i: usize) -> IdemWrite {
        let body = format!(
            r#"{{"results":[{{"index":0,"status":"applied","sku":"B3-S{i:06}","location":"loc-2","version":{i},"on_hand":97,"available":79}}]}}"#
        );
        IdemWrite { key: key.into(), fingerprint: [(i % 251) as u8; 32], status: Status::Done, body: body.into_bytes() }
    }

    /// The store against a plain model (a map and an order), through pruning by age and
    /// by count, repeated keys and snapshot round trips: same answers, same order.
    #[test]
    fn the_dense_store_keeps_what_a_map_would() {
        let mut s = IdempotencyStore::default();
        let mut model: Vec<(String, IdemWrite, Timestamp, Lsn)> = Vec::new();
        for i in 0..20_000usize {
            // Keys repeat now and then (as a replayed record may); time moves so that
            // outcomes age out in bursts.
            let key = if i % 97 == 0 && i > 0 { format!("k-{}", i - 50) } else { format!("k-{i}") };
            let at = Timestamp((i as i64 / 3_000) * (RETENTION_MS / 2));
            let w = single_change(&key, i);
            s.insert(&w, at, i as Lsn);
            model.retain(|(_, _, t, _)| at.0 - t.0 <= RETENTION_MS);
            model.retain(|(k, ..)| *k != key);
            model.push((key, w, at, i as Lsn));
            if i % 1_999 == 0 {
                s = IdempotencyStore::from_entries(s.iter().map(|(k, o)| (k.to_string(), o.to_entry())));
            }
        }
        assert_eq!(s.len(), model.len());
        let kept: Vec<(String, Vec<u8>, Lsn)> = s.iter().map(|(k, o)| (k.to_string(), o.body.to_vec(), o.lsn)).collect();
        let want: Vec<(String, Vec<u8>, Lsn)> = model.iter().map(|(k, w, _, l)| (k.clone(), w.body.clone(), *l)).collect();
        assert_eq!(kept, want);
        for (k, w, at, lsn) in &model {
            match s.lookup(k, &w.fingerprint) {
                Lookup::Replay(o) => assert_eq!((o.body.to_vec(), o.at, o.lsn), (w.body.clone(), *at, *lsn)),
                other => panic!("{k}: {other:?}"),
            }
        }
        assert!(matches!(s.lookup("k-0", &[0; 32]), Lookup::Miss), "aged out");
        assert!(s.blocks.len() < 40, "blocks of pruned outcomes are dropped ({} kept)", s.blocks.len());
    }

    #[test]
    fn past_the_bound_the_oldest_go_first() {
        let mut s = IdempotencyStore::default();
        let n = KEYS_MAX_PER_SCOPE + 10;
        for i in 0..n {
            s.insert(&w(&format!("{i}"), 1), Timestamp(0), i as Lsn);
        }
        assert_eq!(s.len(), KEYS_MAX_PER_SCOPE);
        assert!(matches!(s.lookup("9", &[1; 32]), Lookup::Miss));
        assert!(matches!(s.lookup("10", &[1; 32]), Lookup::Replay(o) if o.lsn == 10));
        assert_eq!(s.iter().next().map(|(k, _)| k.to_string()), Some("10".to_string()));
    }

    /// What a single change's outcome costs in memory, slots, keys, answers and table
    /// included, with a 36-character key (a UUID, as clients send them): the map of
    /// boxed keys and answers cost ~300 bytes, 64-byte slots and 8-byte addresses ~145.
    #[test]
    fn a_single_change_outcome_costs_under_110_bytes() {
        let mut s = IdempotencyStore::default();
        let n = 100_000;
        for i in 0..n {
            s.insert(&single_change(&format!("{:08x}-4b1e-4c2a-9f0e-{i:012}", i * 7), i), Timestamp(i as i64 * 10), i as Lsn);
        }
        let per = s.heap_bytes() / n;
        eprintln!("{per} bytes per outcome; {} in slots", std::mem::size_of::<Slot>());
        assert!(per < 110, "{per} bytes per outcome");
    }

    /// What a lookup answers: the answer's bytes, its status, time and LSN.
    type Answer = (Vec<u8>, Status, Timestamp, Lsn);

    fn entry_of(w: &IdemWrite, at: Timestamp, lsn: Lsn) -> Answer {
        (w.body.clone(), w.status, at, lsn)
    }

    /// One step of the model test: a keyed write after `gap_ms` and `lsn_gap`, or a
    /// store rebuilt from its outcomes as a snapshot load does.
    #[derive(Debug, Clone)]
    enum Step {
        Write { key: u8, fp: u8, status: u8, body: u8, gap_ms: i64, lsn_gap: u64 },
        Reload,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        // Gaps: none, small, just past the retention, past what a slot's 32-bit
        // offsets hold (49 days; 2^32 LSNs), and backwards (a clock stepped back).
        let gap_ms = prop_oneof![Just(0i64), 1i64..5_000, Just(RETENTION_MS), Just(RETENTION_MS + 1), Just(1i64 << 32), Just(-3_000i64)];
        let lsn_gap = prop_oneof![Just(1u64), 1u64..1_000, Just(1u64 << 32), Just(u32::MAX as u64 + 7)];
        prop_oneof![
            20 => (0u8..40, 0u8..3, 0u8..4, 0u8..5, gap_ms, lsn_gap)
                .prop_map(|(key, fp, status, body, gap_ms, lsn_gap)| Step::Write { key, fp, status, body, gap_ms, lsn_gap }),
            1 => Just(Step::Reload),
        ]
    }

    fn body_of(n: u8, i: usize) -> Vec<u8> {
        match n {
            0 => Vec::new(),
            1 => b"{}".to_vec(),
            2 => single_change("x", i).body,
            3 => format!("{{\"results\":[{}]}}", "{\"index\":0}".repeat(i % 7)).into_bytes(),
            _ => vec![0x01, 0x02, b'{', 0x1f, (i % 256) as u8],
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// The store against a plain model (an ordered list of outcomes, pruned from the
        /// front as the store prunes): after every step the same outcomes in the same
        /// order, each key answered with the same status, bytes, time and LSN, another
        /// request with the key refused, a pruned key missed.
        #[test]
        fn the_store_answers_as_a_plain_list_would(steps in proptest::collection::vec(step(), 1..300), wrap: bool) {
            // Block numbers wrap around in an address: start just before they do.
            let mut s = IdempotencyStore { first_block: if wrap { (1 << BLOCK_NO_BITS) - 2 } else { 0 }, ..Default::default() };
            let mut model: Vec<(String, [u8; 32], Answer)> = Vec::new();
            let (mut at, mut lsn) = (Timestamp(1_796_000_000_000), 1u64);
            let mut gone: Vec<String> = Vec::new();
            for (i, st) in steps.into_iter().enumerate() {
                match st {
                    Step::Reload => s = IdempotencyStore::from_entries(s.iter().map(|(k, o)| (k.to_string(), o.to_entry()))),
                    Step::Write { key, fp, status, body, gap_ms, lsn_gap } => {
                        at = Timestamp(at.0 + gap_ms);
                        lsn += lsn_gap;
                        let w = IdemWrite { key: format!("key-{key}"), fingerprint: [fp; 32], status: STATUSES[status as usize], body: body_of(body, i) };
                        s.insert(&w, at, lsn);
                        while model.first().is_some_and(|(_, _, e)| at.0 - e.2 .0 > RETENTION_MS) {
                            gone.push(model.remove(0).0);
                        }
                        model.retain(|(k, ..)| *k != w.key);
                        gone.retain(|k| *k != w.key);
                        model.push((w.key.clone(), w.fingerprint, entry_of(&w, at, lsn)));
                    }
                }
                let kept: Vec<(String, Answer)> =
                    s.iter().map(|(k, o)| (k.to_string(), (o.body.to_vec(), o.status, o.at, o.lsn))).collect();
                let want: Vec<(String, Answer)> = model.iter().map(|(k, _, e)| (k.clone(), e.clone())).collect();
                proptest::prop_assert_eq!(kept, want);
                proptest::prop_assert_eq!(s.len(), model.len());
                for (k, fp, e) in &model {
                    match s.lookup(k, fp) {
                        Lookup::Replay(o) => proptest::prop_assert_eq!((o.body.to_vec(), o.status, o.at, o.lsn), e.clone()),
                        other => proptest::prop_assert!(false, "{}: {:?}", k, other),
                    }
                    let mut other = *fp;
                    other[0] ^= 0x80;
                    proptest::prop_assert!(matches!(s.lookup(k, &other), Lookup::Mismatch));
                }
                for k in &gone {
                    proptest::prop_assert!(matches!(s.lookup(k, &[0; 32]), Lookup::Miss), "{} was pruned", k);
                }
            }
        }
    }

    /// Past `BLOCKS_MAX_PER_SCOPE` the oldest block goes with its outcomes; the others
    /// still answer, in order.
    #[test]
    fn dropping_the_oldest_block_forgets_exactly_its_outcomes() {
        let mut s = IdempotencyStore::default();
        // A clock stepped back opens a new block: three blocks of two.
        for (i, at) in [10, 11, 5, 6, 1, 2].into_iter().enumerate() {
            s.insert(&w(&format!("k{i}"), 1), Timestamp(at), i as Lsn + 1);
        }
        s.insert(&w("k1", 2), Timestamp(3), 7);
        assert_eq!(s.blocks.len(), 3);
        s.drop_oldest_block();
        assert_eq!((s.blocks.len(), s.len()), (2, 5));
        let keys: Vec<String> = s.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, ["k2", "k3", "k4", "k5", "k1"]);
        assert!(matches!(s.lookup("k0", &[1; 32]), Lookup::Miss));
        assert!(matches!(s.lookup("k1", &[2; 32]), Lookup::Replay(o) if o.lsn == 7), "its later outcome stays");
        assert!(matches!(s.lookup("k5", &[1; 32]), Lookup::Replay(o) if o.lsn == 6 && o.at == Timestamp(2)));
        s.insert(&w("k6", 1), Timestamp(4), 8);
        assert_eq!(s.len(), 6);
    }

    /// Only the first 16 bytes of a fingerprint are kept: a request whose SHA-256
    /// differs there is refused, wherever in them it differs.
    #[test]
    fn a_fingerprint_differing_in_its_kept_bytes_is_refused() {
        let mut s = IdempotencyStore::default();
        let full: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        s.insert(&IdemWrite { key: "k".into(), fingerprint: full, status: Status::Created, body: b"{}".to_vec() }, Timestamp(0), 1);
        assert!(matches!(s.lookup("k", &full), Lookup::Replay(o) if o.status == Status::Created && o.fingerprint == full[..16]));
        for i in 0..FINGERPRINT_BYTES {
            let mut other = full;
            other[i] ^= 1;
            assert!(matches!(s.lookup("k", &other), Lookup::Mismatch), "byte {i}");
        }
    }

    /// A batch's answer (1,000 results, ~114 KB of JSON, ~32 KB packed) costs what it
    /// holds: blocks closed by their bytes give back the slots they did not use (they
    /// cost ~54 KB per answer before).
    #[test]
    fn a_large_answer_costs_about_its_packed_size() {
        use crate::domain::brand::ChangeOutcome;
        use crate::domain::view::{ChangeResultView, ChangeResultsView};
        use crate::domain::Id;
        let locs = ["tsukuba", "osaka", "store-shibuya"];
        let results: Vec<_> = (0..1000usize)
            .map(|slot| {
                let o = ChangeOutcome::Applied { version: (slot % 3 + 1) as u64, on_hand: 100, available: 100 };
                let sku = Id::parse(&format!("S{:07}", 12345 + slot / 3)).unwrap();
                ChangeResultView::new(slot, &sku, &Id::parse(locs[slot % 3]).unwrap(), &o)
            })
            .collect();
        let body = serde_json::to_vec(&ChangeResultsView { results }).unwrap();
        let packed = Body::new(&body).stored.len();
        let mut s = IdempotencyStore::default();
        let n = 300;
        for i in 0..n {
            let w = IdemWrite { key: format!("set-{i}"), fingerprint: [1; 32], status: Status::Done, body: body.clone() };
            s.insert(&w, Timestamp(0), i as Lsn);
        }
        let per = s.heap_bytes() / n;
        assert!(per < packed + packed / 20, "{per} bytes per outcome for a {packed}-byte packed answer");
        for i in 0..n {
            assert!(matches!(s.lookup(&format!("set-{i}"), &[1; 32]), Lookup::Replay(o) if o.lsn == i as Lsn));
        }
    }

    /// The WAL format must not change: a body encodes exactly as the plain `Vec<u8>`
    /// of format 1 did, and records written that way decode.
    #[test]
    fn bodies_encode_as_before_in_bincode_and_json() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Plain {
            key: String,
            fingerprint: [u8; 32],
            status: Status,
            body: Vec<u8>,
        }
        let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let new = IdemWrite { key: "k".into(), fingerprint: [7; 32], status: Status::Created, body: body.clone() };
        let old = Plain { key: "k".into(), fingerprint: [7; 32], status: Status::Created, body };
        let cfg = bincode::config::standard();
        let old_bytes = bincode::serde::encode_to_vec(&old, cfg).unwrap();
        assert_eq!(bincode::serde::encode_to_vec(&new, cfg).unwrap(), old_bytes);
        let (decoded, _): (IdemWrite, usize) = bincode::serde::decode_from_slice(&old_bytes, cfg).unwrap();
        assert_eq!(decoded, new);
        let json = serde_json::to_string(&new).unwrap();
        assert_eq!(json, serde_json::to_string(&old).unwrap());
        assert_eq!(serde_json::from_str::<IdemWrite>(&json).unwrap(), new);
    }

    #[test]
    fn keys_are_visible_ascii() {
        assert!(valid_key("order-123:retry"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key("キー"));
        assert!(!valid_key(&"k".repeat(256)));
    }
}
