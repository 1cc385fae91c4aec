//! A SHA-256 of a whole state, over a canonical walk (every map in key order), so the
//! same state always gives the same digest however its hash maps are laid out.
//!
//! What later formats added is walked only where it is there (a SKU's unsellable and
//! in-transit units), so a state that has none of it digests as format 1 did and a
//! snapshot written then still checks.
//!
//! Idempotency outcomes are taken two ways ([`Outcomes`]): up to format 4 each was
//! walked with its answer as sent; from format 5 a scope's outcomes are the SHA-256 of
//! their chunks (`outcomes.rs`), with the fragments the answers are packed with.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::domain::brand::BrandState;
use crate::domain::idempotency::{BodyRef, IdempotencyStore, Status, FRAGMENTS};
use crate::domain::registry::Registry;
use crate::domain::BrandId;
use crate::domain::Timestamp;
use crate::journal::Lsn;
use crate::state::State;

/// The SHA-256 and a buffer each value is encoded into (reused: millions of values).
struct Hasher(Sha256, Vec<u8>);

impl Hasher {
    fn put(&mut self, v: &impl Serialize) {
        self.1.clear();
        bincode::serde::encode_into_std_write(v, &mut self.1, bincode::config::standard()).expect("state encodes");
        self.0.update((self.1.len() as u64).to_le_bytes());
        self.0.update(&self.1);
    }
}

fn sorted<'a, K: Ord + 'a, V: 'a>(it: impl Iterator<Item = (&'a K, &'a V)>) -> Vec<(&'a K, &'a V)> {
    let mut v: Vec<_> = it.collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// The digest of a whole state, as today's format writes it.
pub fn digest(state: &State) -> [u8; 32] {
    let chunks = |store| Outcomes::Chunks(super::outcomes::digest(store));
    let mut s = Stream::new(state.lsn, &state.registry, &chunks(&state.registry.idempotency), Some(&FRAGMENTS[..]));
    for (id, b) in sorted(state.brands.iter()) {
        s.brand(id, b, &chunks(&b.idempotency));
    }
    s.finish()
}

/// What the digest takes of a scope's idempotency outcomes.
pub enum Outcomes {
    /// Each outcome walked from the store with its answer as sent (formats 1 to 4):
    /// for formats 1 and 2, with the last 16 bytes of each fingerprint, one per
    /// outcome in the store's order (see [`walk`]).
    Walk(Option<Vec<[u8; 16]>>),
    /// The SHA-256 of the scope's chunks (format 5).
    Chunks([u8; 32]),
}

/// The digest computed part by part: the registry, then each brand in the order of
/// their ids (so a load can hash each brand as it arrives).
pub struct Stream {
    h: Hasher,
}

impl Stream {
    /// `outcomes`: the registry's. `fragments`: those the answers are packed with,
    /// from format 5 (before, the digest took the answers as sent).
    pub fn new(lsn: Lsn, registry: &Registry, outcomes: &Outcomes, fragments: Option<&[impl Serialize]>) -> Stream {
        let mut h = Hasher(Sha256::new(), Vec::new());
        h.put(&lsn);
        if let Some(f) = fragments {
            h.put(&f);
        }
        let r = registry;
        h.put(&r.last_lsn);
        h.put(&r.admin_sha256);
        for l in r.locations.values() {
            h.put(l);
        }
        for (_, t) in sorted(r.tokens.iter()) {
            h.put(t);
        }
        scope(&mut h, &r.idempotency, outcomes);
        Stream { h }
    }

    /// Adds a brand with what the digest takes of its outcomes; brands must come in
    /// the order of their ids.
    pub fn brand(&mut self, id: &BrandId, b: &BrandState, outcomes: &Outcomes) {
        let h = &mut self.h;
        h.put(&(id, &b.name, &b.created_at, &b.last_lsn));
        for (id, s) in &b.skus {
            // Field by field as bincode encodes `SkuState`, each level as format 1's four
            // integers; then the later fields of the levels that have any.
            let levels: Vec<_> = s.levels.iter().map(|(l, v)| (l, (v.on_hand, v.reserved, v.safety_stock, v.incoming))).collect();
            h.put(&(id, &s.catalog, s.version, s.stock_version, levels, s.created_at, s.updated_at));
            let later: Vec<_> = s
                .levels
                .iter()
                .filter(|(_, v)| v.unsellable != 0 || v.in_transit != 0)
                .map(|(l, v)| (l, v.unsellable, v.in_transit))
                .collect();
            if !later.is_empty() {
                h.put(&later);
            }
        }
        for r in sorted(b.reservations.iter()) {
            h.put(&r);
        }
        for e in &b.expiries {
            h.put(e);
        }
        for s in sorted(b.shipments.iter()) {
            h.put(&s);
        }
        for c in &b.channels {
            h.put(&c);
        }
        for c in &b.channel_syncs {
            h.put(&c);
        }
        for i in sorted(b.inbounds.iter()) {
            h.put(&i);
        }
        for w in &b.webhooks {
            h.put(&w);
        }
        for j in sorted(b.imports.jobs.iter()) {
            h.put(&j);
        }
        h.put(&b.imports.finished);
        // Added by format 2: walked only when there are any (see the module comment).
        if !b.transfers.is_empty() {
            h.put(&*b.transfers);
        }
        if !b.returns.is_empty() {
            h.put(&*b.returns);
        }
        if !b.thresholds.is_empty() || !b.bands.is_empty() {
            h.put(&(&b.thresholds, &b.bands));
        }
        scope(h, &b.idempotency, outcomes);
    }

    pub fn finish(self) -> [u8; 32] {
        self.h.0.finalize().into()
    }
}

/// An outcome as formats 1 and 2 hashed it: with the request's full SHA-256.
#[derive(Serialize)]
struct FullOutcome<'a> {
    fingerprint: [u8; 32],
    status: Status,
    body: BodyRef<'a>,
    at: Timestamp,
    lsn: Lsn,
}

fn scope(h: &mut Hasher, store: &IdempotencyStore, outcomes: &Outcomes) {
    match outcomes {
        Outcomes::Walk(tails) => walk(h, store, tails.as_deref()),
        Outcomes::Chunks(sha) => h.put(sha),
    }
}

/// Hashes a scope's outcomes one by one (formats 1 to 4). Memory keeps the first 16 bytes of a fingerprint
/// (`idempotency::Fingerprint`), and so do snapshots from format 3; a snapshot of an
/// earlier format was hashed over all 32, so checking it takes the `tails` its rows
/// held, one per outcome in the store's order. A count that does not match hashes
/// the store alone, which then fails the check as it should.
fn walk(h: &mut Hasher, store: &IdempotencyStore, tails: Option<&[[u8; 16]]>) {
    match tails {
        Some(tails) if tails.len() == store.len() => {
            for ((key, o), tail) in store.iter().zip(tails) {
                let mut fingerprint = [0; 32];
                fingerprint[..16].copy_from_slice(&o.fingerprint);
                fingerprint[16..].copy_from_slice(tail);
                h.put(&(key, FullOutcome { fingerprint, status: o.status, body: o.body, at: o.at, lsn: o.lsn }));
            }
        }
        _ => {
            for e in store.iter() {
                h.put(&e);
            }
        }
    }
}
