//! Idempotency records: the stored outcome of a request made with an
//! `Idempotency-Key`, kept per scope (a brand, or the admin registry).
//!
//! Entries are written in the same WAL record as the change they describe, so a
//! crash keeps both or neither. Pruning is driven by record times, never a clock, so
//! replay and snapshots reach exactly the same set.

use std::collections::{HashMap, VecDeque};

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
    #[serde(with = "byte_buf")]
    pub body: Vec<u8>,
    pub at: Timestamp,
    pub lsn: Lsn,
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
    entries: HashMap<String, IdemEntry>,
    /// Insertion order, for pruning.
    order: VecDeque<(Timestamp, String)>,
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
        let entry = IdemEntry { fingerprint: w.fingerprint, status: w.status, body: w.body.clone(), at, lsn };
        if self.entries.insert(w.key.clone(), entry).is_none() {
            self.order.push_back((at, w.key.clone()));
        }
    }

    fn prune(&mut self, now: Timestamp) {
        while let Some((at, _)) = self.order.front() {
            let expired = now.0 - at.0 > RETENTION_MS;
            if !expired && self.order.len() < KEYS_MAX_PER_SCOPE {
                break;
            }
            let (_, key) = self.order.pop_front().expect("front exists");
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
        self.order.iter().filter_map(|(_, k)| self.entries.get(k).map(|e| (k.as_str(), e)))
    }

    /// Rebuilds a store from entries in insertion order (snapshot load).
    pub fn from_entries(entries: impl IntoIterator<Item = (String, IdemEntry)>) -> Self {
        let mut s = IdempotencyStore::default();
        for (k, e) in entries {
            s.order.push_back((e.at, k.clone()));
            s.entries.insert(k, e);
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
