//! Partition leases: who owns a partition, under which epoch, until when.
//!
//! A lease is one key of the `ZAIKO_LEASES` KV bucket (`p.<n>`, and `registry`) holding
//! `{"node","epoch","advertise"}`. Every write is a compare-and-set on the key's
//! revision, so of two nodes racing for a partition exactly one wins. The **epoch** is
//! a counter carried in the value: a takeover writes the previous epoch + 1, a renewal
//! writes the same value again (the revision moves on every renewal; the epoch only on
//! a change of owner), so epochs of a partition strictly increase with its owners.
//!
//! Time, for a lease of length `T` (`--lease-ms`):
//! * the owner renews every `T/3`, and counts its own deadline from when it *sent* its
//!   last successful renewal: it answers nothing for the partition after
//!   `sent + T - margin`;
//! * a would-be owner takes a partition only once it has seen the key's revision
//!   unchanged for `T`, counted from when it *observed* that revision.
//!
//! The renewal reaches the bucket after it was sent and is observed after that, so a
//! successor takes over at least `margin` after the old owner's deadline by any clock
//! that runs at the same rate; the margin covers rate differences and scheduling.
//! This module's arithmetic is pure (instants are arguments); [`LeaseStore`] does the
//! KV calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The value of a lease key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    pub node: String,
    pub epoch: u64,
    /// The owner's HTTP address, where other nodes forward the partition's requests.
    pub advertise: String,
}

/// Lease timing (`--lease-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// `T`: how long a lease lasts without renewal.
    pub lease: Duration,
    /// How long before `T` the owner stops answering.
    pub margin: Duration,
}

impl LeaseTiming {
    /// A lease of `lease`, with a margin of a sixth of it.
    pub fn new(lease: Duration) -> LeaseTiming {
        LeaseTiming { lease, margin: lease / 6 }
    }

    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// The owner's own deadline after a renewal (or the taking write) sent at `sent`.
    pub fn owner_deadline(&self, sent: Instant) -> Instant {
        sent + self.lease - self.margin
    }

    /// When a node that observed a revision at `observed` may take the lease, if the
    /// revision has not changed by then.
    pub fn takeover_at(&self, observed: Instant) -> Instant {
        observed + self.lease
    }
}

/// The newest revision of a lease key this node has seen, and when it first saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `None` when the key does not exist (a partition never owned).
    pub value: Option<LeaseValue>,
    /// The key's revision (0 when absent).
    pub revision: u64,
    pub at: Instant,
}

impl Observed {
    /// Records a newer sighting: the time moves only when the revision does.
    pub fn update(&mut self, value: Option<LeaseValue>, revision: u64, now: Instant) {
        if revision != self.revision {
            *self = Observed { value, revision, at: now };
        }
    }

    /// Whether the lease may be taken at `now`: it was never written, its owner gave
    /// it up, or its owner has not renewed it for a whole lease by this node's clock.
    pub fn expired(&self, timing: &LeaseTiming, now: Instant) -> bool {
        self.value.as_ref().is_none_or(LeaseValue::is_released) || now >= timing.takeover_at(self.at)
    }

    /// The owner named by the newest revision, if any.
    pub fn owner(&self) -> Option<&LeaseValue> {
        self.value.as_ref().filter(|v| !v.is_released())
    }

    /// The epoch a taker writes.
    pub fn next_epoch(&self) -> u64 {
        self.value.as_ref().map_or(1, |v| v.epoch + 1)
    }
}

/// A lease this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub key: String,
    pub value: LeaseValue,
    /// The revision of our last successful write: the expected revision of the next.
    pub revision: u64,
    /// When the last successful write was sent, plus `T - margin`.
    pub deadline: Instant,
}

impl Held {
    pub fn valid_at(&self, now: Instant) -> bool {
        now < self.deadline
    }
}

/// Why a lease write did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else wrote the key first: the lease is not (or no longer) ours.
    #[error("the lease {0} was taken by another node")]
    Lost(String),
    /// The write's fate is unknown or it failed for another reason; retry while the
    /// deadline allows.
    #[error("lease write on {key} failed: {detail}")]
    Unavailable { key: String, detail: String },
}

/// The KV bucket of leases.
#[derive(Clone)]
pub struct LeaseStore {
    pub kv: kv::Store,
    pub timing: LeaseTiming,
}

impl LeaseStore {
    /// The current value and revision of a key, read from the bucket's stream leader
    /// (a KV `get` may be answered by a replica that is behind, and a lease decision
    /// made on an old revision would only fail its compare-and-set later).
    pub async fn read(&self, key: &str) -> Result<(Option<LeaseValue>, u64), LeaseError> {
        let subject = format!("{}{key}", self.kv.prefix);
        match self.kv.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => {
                let deleted = m.headers.get("KV-Operation").is_some_and(|op| op.as_str() != "PUT");
                let value = if deleted { None } else { serde_json::from_slice(&m.payload).ok() };
                Ok((value, m.sequence))
            }
            Err(e) if e.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => Ok((None, 0)),
            Err(e) => Err(unavailable(key, e)),
        }
    }

    /// Takes the lease `key` as `node`, if `observed` says it may be taken now. The
    /// write is a compare-and-set on the observed revision.
    pub async fn take(&self, key: &str, observed: &Observed, node: &str, advertise: &str) -> Result<Held, LeaseError> {
        let value = LeaseValue { node: node.to_string(), epoch: observed.next_epoch(), advertise: advertise.to_string() };
        let bytes = Bytes::from(serde_json::to_vec(&value).expect("a lease value serialises"));
        let sent = Instant::now();
        let written = if observed.revision == 0 {
            self.kv.create(key, bytes).await.map_err(|e| e.to_string())
        } else {
            self.kv.update(key, bytes, observed.revision).await.map_err(|e| e.to_string())
        };
        let revision = match written {
            Ok(revision) => revision,
            Err(detail) => self.settle(key, &value, observed.revision, detail).await?,
        };
        Ok(Held { key: key.to_string(), value, revision, deadline: self.timing.owner_deadline(sent) })
    }

    /// Renews a held lease; on success its deadline moves to `sent + T - margin`.
    pub async fn renew(&self, held: &mut Held) -> Result<(), LeaseError> {
        let bytes = Bytes::from(serde_json::to_vec(&held.value).expect("a lease value serialises"));
        let sent = Instant::now();
        let revision = match self.kv.update(&held.key, bytes, held.revision).await {
            Ok(revision) => revision,
            Err(e) => self.settle(&held.key, &held.value, held.revision, e.to_string()).await?,
        };
        held.revision = revision;
        held.deadline = self.timing.owner_deadline(sent);
        Ok(())
    }

    /// After a failed compare-and-set of `value` over revision `expected`, reads the key
    /// to learn what happened: our write landed (its ack was lost) — its revision; the
    /// key moved to something else — [`LeaseError::Lost`]; nothing changed or the read
    /// failed — [`LeaseError::Unavailable`], retry.
    async fn settle(&self, key: &str, value: &LeaseValue, expected: u64, detail: String) -> Result<u64, LeaseError> {
        let (now, revision) = self.read(key).await?;
        if now.as_ref() == Some(value) && revision != expected {
            Ok(revision)
        } else if revision != expected {
            Err(LeaseError::Lost(key.to_string()))
        } else {
            Err(LeaseError::Unavailable { key: key.to_string(), detail })
        }
    }

    /// Gives a held lease up at once (a planned handover or a clean stop): the key is
    /// rewritten with no owner, so a successor need not wait for it to expire.
    pub async fn release(&self, held: &Held) -> Result<(), LeaseError> {
        let value = LeaseValue { node: String::new(), epoch: held.value.epoch, advertise: String::new() };
        let bytes = Bytes::from(serde_json::to_vec(&value).expect("a lease value serialises"));
        match self.kv.update(&held.key, bytes, held.revision).await {
            Ok(_) => Ok(()),
            Err(e) => self.settle(&held.key, &value, held.revision, e.to_string()).await.map(|_| ()),
        }
    }
}

/// The lease a publisher checks at every ack, kept current by the renewal task.
///
/// A lease is *valid* before its deadline, *lapsed* after it (nothing is answered, but
/// a renewal that still finds our revision revives it: no one can have taken over in
/// between, since taking over changes the revision), and *lost* once another node's
/// write is seen.
pub struct LeaseCell {
    held: parking_lot::Mutex<Held>,
    lost: std::sync::atomic::AtomicBool,
    changed: tokio::sync::Notify,
}

impl LeaseCell {
    pub fn new(held: Held) -> Arc<LeaseCell> {
        Arc::new(LeaseCell { held: parking_lot::Mutex::new(held), lost: Default::default(), changed: tokio::sync::Notify::new() })
    }

    /// Waits until the lease is valid (true) or lost (false).
    pub async fn wait_valid(&self) -> bool {
        loop {
            let changed = self.changed.notified();
            if self.is_lost() {
                return false;
            }
            if self.valid_at(Instant::now()) {
                return true;
            }
            changed.await;
        }
    }

    pub fn valid_at(&self, now: Instant) -> bool {
        !self.lost.load(std::sync::atomic::Ordering::Acquire) && self.held.lock().valid_at(now)
    }

    pub fn epoch(&self) -> u64 {
        self.held.lock().value.epoch
    }

    pub fn deadline(&self) -> Instant {
        self.held.lock().deadline
    }

    pub fn held(&self) -> Held {
        self.held.lock().clone()
    }

    /// Stores a successful renewal.
    pub fn renewed(&self, held: Held) {
        *self.held.lock() = held;
        self.changed.notify_waiters();
    }

    /// Marks the lease as taken by someone else: nothing more is acknowledged under it.
    pub fn lose(&self) {
        self.lost.store(true, std::sync::atomic::Ordering::Release);
        self.changed.notify_waiters();
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Renews `cell`'s lease every `T/3` until it is lost or `stop` resolves. A renewal
/// that fails for a reason other than loss is retried at the next tick; the deadline
/// of the last success stands meanwhile, so the owner goes quiet on time by itself
/// (and speaks again if a later renewal still finds its revision).
pub async fn renew_loop(store: LeaseStore, cell: Arc<LeaseCell>, stop: impl std::future::Future<Output = ()>) {
    let mut tick = tokio::time::interval(store.timing.renew_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let mut held = cell.held();
        match store.renew(&mut held).await {
            Ok(()) => cell.renewed(held),
            Err(LeaseError::Lost(key)) => {
                tracing::warn!(key, "lease taken by another node; giving the partition up");
                cell.lose();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
        }
    }
}

fn unavailable(key: &str, e: impl std::fmt::Display) -> LeaseError {
    LeaseError::Unavailable { key: key.to_string(), detail: e.to_string() }
}

impl LeaseValue {
    /// A released lease: written by an owner that gave the partition up.
    pub fn is_released(&self) -> bool {
        self.node.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_takes_over_only_after_the_owner_stopped_answering() {
        let t = LeaseTiming::new(Duration::from_millis(3000));
        let sent = Instant::now();
        // The renewal lands and is observed no earlier than it was sent.
        for delay_ms in [0u64, 1, 50, 2000] {
            let observed = sent + Duration::from_millis(delay_ms);
            assert!(t.takeover_at(observed) >= t.owner_deadline(sent) + t.margin);
        }
    }

    #[test]
    fn an_observation_ages_only_while_the_revision_stays() {
        let t = LeaseTiming::new(Duration::from_millis(600));
        let v = LeaseValue { node: "n1".into(), epoch: 4, advertise: "http://a".into() };
        let start = Instant::now();
        let mut o = Observed { value: Some(v.clone()), revision: 10, at: start };
        assert!(!o.expired(&t, start + Duration::from_millis(599)));
        o.update(Some(v.clone()), 10, start + Duration::from_millis(500));
        assert!(o.expired(&t, start + Duration::from_millis(600)), "seeing the same revision again does not renew it");
        o.update(Some(v), 11, start + Duration::from_millis(700));
        assert!(!o.expired(&t, start + Duration::from_millis(1200)));
        assert_eq!(o.next_epoch(), 5);
        let never = Observed { value: None, revision: 0, at: start };
        assert!(never.expired(&t, start));
        assert_eq!(never.next_epoch(), 1);
    }
}
