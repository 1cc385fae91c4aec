//! Idempotency records: the stored outcome of a request made with an
//! `Idempotency-Key`, kept per scope (a brand, or the admin registry).
//!
//! Entries are written in the same WAL record as the change they describe, so a
//! crash keeps both or neither. Pruning is driven by record times, never a clock, so
//! replay and snapshots reach exactly the same set.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Timestamp;
use crate::journal::Lsn;

/// How long an outcome is kept (the contract promises at least 24 h).
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;
/// Most keys kept per scope; past it the oldest go first, even inside the retention.
pub const KEYS_MAX_PER_SCOPE: usize = 2_000_000;
/// Longest key accepted (visible ASCII only).
pub const KEY_CHARS_MAX: usize = 255;

/// The success status an outcome was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Ok,
    Created,
    Accepted,
    NoContent,
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

/// A stored outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemEntry {
    pub fingerprint: [u8; 32],
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
/// tried first (`FRAGMENT_ORDER`).
const FRAGMENTS: [&str; 31] = [
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

impl Body {
    pub fn new(plain: &[u8]) -> Body {
        let as_sent = || Body { stored: plain.into(), packed: false };
        if plain.len() < BODY_PACK_MIN || plain.iter().any(|&b| fragment(b).is_some()) {
            return as_sent();
        }
        let order = &*FRAGMENT_ORDER;
        let mut out = Vec::with_capacity(plain.len() / 2);
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
        if out.len() >= plain.len() {
            return as_sent();
        }
        Body { stored: out.into_boxed_slice(), packed: true }
    }

    /// The answer as it was sent.
    pub fn to_vec(&self) -> Vec<u8> {
        if !self.packed {
            return self.stored.to_vec();
        }
        let mut out = Vec::with_capacity(self.stored.len() * 3);
        for &b in self.stored.iter() {
            match fragment(b) {
                Some(f) => out.extend_from_slice(f.as_bytes()),
                None => out.push(b),
            }
        }
        out
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

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes, {} stored)", self.len(), self.stored_len())
    }
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_vec())
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

/// Result of looking a key up.
#[derive(Debug)]
pub enum Lookup<'a> {
    Miss,
    /// Same key, same request: send this again.
    Replay(&'a IdemEntry),
    /// Same key, another request.
    Mismatch,
}

pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= KEY_CHARS_MAX && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdempotencyStore {
    /// The key is shared with `order` (one allocation per key, not two).
    entries: HashMap<Arc<str>, IdemEntry>,
    /// Keys in insertion order (so in `at` order), for pruning.
    order: VecDeque<Arc<str>>,
}

impl IdempotencyStore {
    pub fn lookup(&self, key: &str, fingerprint: &[u8; 32]) -> Lookup<'_> {
        match self.entries.get(key) {
            None => Lookup::Miss,
            Some(e) if &e.fingerprint == fingerprint => Lookup::Replay(e),
            Some(_) => Lookup::Mismatch,
        }
    }

    pub fn insert(&mut self, w: &IdemWrite, at: Timestamp, lsn: Lsn) {
        self.prune(at);
        let entry = IdemEntry { fingerprint: w.fingerprint, status: w.status, body: Body::new(&w.body), at, lsn };
        match self.entries.get_mut(w.key.as_str()) {
            // A key is written once (a second use is answered from here, never
            // written); a replayed record that repeats one keeps its first place.
            Some(e) => *e = entry,
            None => {
                let key: Arc<str> = Arc::from(w.key.as_str());
                self.order.push_back(key.clone());
                self.entries.insert(key, entry);
            }
        }
    }

    fn prune(&mut self, now: Timestamp) {
        while let Some(key) = self.order.front() {
            let expired = self.entries.get(key).is_none_or(|e| now.0 - e.at.0 > RETENTION_MS);
            if !expired && self.order.len() < KEYS_MAX_PER_SCOPE {
                break;
            }
            let key = self.order.pop_front().expect("front exists");
            self.entries.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in insertion order (for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &IdemEntry)> {
        self.order.iter().filter_map(|k| self.entries.get(k).map(|e| (&**k, e)))
    }

    /// Rebuilds a store from entries in insertion order (snapshot load).
    pub fn from_entries(entries: impl IntoIterator<Item = (String, IdemEntry)>) -> Self {
        let mut s = IdempotencyStore::default();
        for (k, e) in entries {
            let key: Arc<str> = Arc::from(k);
            if s.entries.insert(key.clone(), e).is_none() {
                s.order.push_back(key);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(key: &str, fp: u8) -> IdemWrite {
        IdemWrite { key: key.into(), fingerprint: [fp; 32], status: Status::Ok, body: b"{}".to_vec() }
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
        let e = IdemEntry { fingerprint: [1; 32], status: Status::Ok, body: Body::new(&[b'x'; 100]), at: Timestamp(5), lsn: 9 };
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
