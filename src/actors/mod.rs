//! Actors own the state in memory and serialise the commands on it.
//!
//! * [`shard::Shard`] — `--shards` of them (default one per two cores), each on its own
//!   actix `Arbiter` (one thread). A shard holds the partitions of the brands that hash
//!   to it; a brand partition holds the brand-level state and its SKU entities. The
//!   partition is the unit of serialisation, so a multi-line reservation is one
//!   synchronous decision and one WAL record, with no cross-actor protocol (see
//!   ARCHITECTURE.md for the measurement behind this choice).
//! * [`registry::RegistryActor`] — locations and tokens; publishes read-only copies for
//!   the HTTP layer (auth) and the shards (location checks).
//! * [`integrations`] — the shard's handling of webhook subscriptions and import jobs.
//! * [`drain`] — the search index's drain protocol and each shard's [`drain::DirtySet`].
//!
//! Protocol: a request travels as a message with a `oneshot` reply channel, sent with
//! `try_send` into a bounded mailbox (full → `overloaded`). The actor decides, appends
//! the record to the journal, applies it, and replies at once with the LSN to wait
//! for; the caller gates its answer on durability (output gate). An actor never waits
//! for an fsync and never awaits inside a handler, so messages cannot interleave.

pub mod drain;
pub mod host;
pub mod integrations;
pub mod registry;
pub mod shard;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use actix::dev::SendError;
use actix::Addr;
use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::clock::SharedClock;
use crate::domain::brand::BrandState;
use crate::domain::event::Event;
use crate::domain::idempotency::{IdemWrite, Lookup, Status};
use crate::domain::registry::Location;
use crate::domain::{BrandId, ErrorCode, Id, Rejection};
use crate::journal::{AppendError, LogRef, Lsn};

/// What every actor shares.
#[derive(Clone)]
pub struct Context {
    pub clock: SharedClock,
    /// The largest record the journals take (`--wal-record-bytes-max`).
    pub record_bytes_max: usize,
    /// Locations as of the newest applied registry record.
    pub locations: Arc<ArcSwap<BTreeMap<Id, Location>>>,
}

/// What a command comes to, decided by the shard (`shard.rs`, `integrations.rs`)
/// without changing anything: a read's answer, or events to write and their answer.
pub enum Decided {
    Read(Vec<u8>),
    /// A write whose answer is rendered from the state after its events (the shard
    /// previews them on a copy before the record is written).
    Write {
        events: Vec<Event>,
        status: Status,
        render: Render,
    },
    /// A write the decision has checked against the state and answered (stock
    /// changes, an import chunk): the shard appends it without a preview, which for a
    /// batch cost more than deciding and applying it together.
    WriteAnswered {
        events: Vec<Event>,
        status: Status,
        body: Vec<u8>,
    },
}

/// Renders a command's answer from the state after its events.
pub type Render = Box<dyn FnOnce(&BrandState) -> Vec<u8>>;

impl Decided {
    pub fn write(events: Vec<Event>, status: Status, render: impl FnOnce(&BrandState) -> Vec<u8> + 'static) -> Decided {
        Decided::Write { events, status, render: Box::new(render) }
    }
}

/// A successful answer: status, JSON body, and the LSN that holds the change.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: Status,
    pub body: Vec<u8>,
    /// Set for mutations (`X-Zaiko-Lsn`).
    pub lsn: Option<Lsn>,
}

/// A position in a log that must be durable before an answer that depends on it may
/// be given: the record of a change, or for a read the newest record the read could
/// have seen.
#[derive(Clone)]
pub struct Pending {
    pub log: LogRef,
    pub lsn: Lsn,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("lsn", &self.lsn).finish_non_exhaustive()
    }
}

/// Why an answer could not be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsettled {
    /// The log stopped (or gave its partition up) before the position was durable:
    /// the change was not acknowledged and may or may not take effect.
    Stopped,
    /// The bound passed first: the change is not yet durable and may or may not take
    /// effect.
    TimedOut,
}

impl Pending {
    /// Waits until the position may be answered for, at most `bound`.
    pub async fn settle(&self, bound: std::time::Duration) -> Result<(), Unsettled> {
        match tokio::time::timeout(bound, self.log.wait_durable(self.lsn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Unsettled::Stopped),
            Err(_) => Err(Unsettled::TimedOut),
        }
    }

    /// The blocking variant, for threads outside the runtime (the import runner).
    pub fn settle_blocking(&self, bound: std::time::Duration) -> Result<(), Unsettled> {
        match self.log.wait_durable_timeout(self.lsn, bound) {
            Ok(d) if d >= self.lsn => Ok(()),
            Ok(_) => Err(Unsettled::TimedOut),
            Err(_) => Err(Unsettled::Stopped),
        }
    }
}

/// An answer and the position that must be durable before it may be sent (`None` for
/// a refusal that saw nothing).
#[derive(Debug)]
pub struct Gated {
    pub pending: Option<Pending>,
    pub result: Result<Reply, Rejection>,
}

impl Gated {
    /// A refusal that depends on nothing written.
    pub fn refused(r: Rejection) -> Gated {
        Gated { pending: None, result: Err(r) }
    }

    /// An answer (or refusal) given after `lsn` of `log` is durable.
    pub fn after(log: &LogRef, lsn: Lsn, result: Result<Reply, Rejection>) -> Gated {
        Gated { pending: Some(Pending { log: log.clone(), lsn }), result }
    }

    /// Waits (at most `bound`) until the answer may be given, and gives it with the
    /// LSN it waited for.
    pub async fn settle(self, bound: std::time::Duration) -> Result<(Lsn, Result<Reply, Rejection>), Unsettled> {
        match &self.pending {
            Some(p) => p.settle(bound).await.map(|()| (p.lsn, self.result)),
            None => Ok((0, self.result)),
        }
    }

    /// The blocking variant of [`Gated::settle`].
    pub fn settle_blocking(self, bound: std::time::Duration) -> Result<(Lsn, Result<Reply, Rejection>), Unsettled> {
        match &self.pending {
            Some(p) => p.settle_blocking(bound).map(|()| (p.lsn, self.result)),
            None => Ok((0, self.result)),
        }
    }
}

pub type ReplyTx = oneshot::Sender<Gated>;

/// The `Idempotency-Key` of a request and the fingerprint of its content.
#[derive(Debug, Clone)]
pub struct IdemKey {
    pub key: String,
    pub fingerprint: [u8; 32],
}

impl IdemKey {
    pub fn to_write(&self, status: Status, body: &[u8]) -> IdemWrite {
        IdemWrite { key: self.key.clone(), fingerprint: self.fingerprint, status, body: body.to_vec() }
    }
}

/// Answers a lookup in an idempotency store of a scope written to `log`: `Some` when
/// the request must not run.
pub fn idempotent_replay(lookup: Lookup<'_>, log: &LogRef) -> Option<Gated> {
    match lookup {
        Lookup::Miss => None,
        Lookup::Replay(e) => Some(Gated::after(log, e.lsn, Ok(Reply { status: e.status, body: e.body.to_vec(), lsn: Some(e.lsn) }))),
        Lookup::Mismatch => Some(Gated::refused(Rejection::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request; use a new key for a new request",
        ))),
    }
}

/// The rejection for an append the journal refused.
pub fn append_refused(e: AppendError) -> Rejection {
    let detail = match e {
        AppendError::DiskFull => "the journal disk is full; nothing was changed; retry after space is freed",
        AppendError::Overloaded => "the journal is behind; nothing was changed; retry shortly",
        AppendError::Stopped => "the server is stopping; nothing was changed; retry on the restarted server",
        AppendError::TooLarge => {
            "the change is too large to record (--wal-record-bytes-max); nothing was changed; send fewer items per request"
        }
    };
    let code = if e == AppendError::TooLarge { ErrorCode::PayloadTooLarge } else { ErrorCode::Overloaded };
    Rejection::new(code, detail)
}

pub fn to_json(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("views serialise")
}

/// Logs and aborts: the in-memory state no longer matches what was logged.
pub fn fatal_apply(what: &str, lsn: Lsn, err: &str) -> ! {
    tracing::error!(lsn, error = err, "applying {what} failed after it was logged; aborting (restart recovers from the journal)");
    eprintln!("zaiko: applying {what} at lsn {lsn} failed: {err}; aborting");
    std::process::abort()
}

/// Where each brand's records go.
#[derive(Clone)]
pub enum Logs {
    /// The single node: every brand's records go to the one local journal.
    One(LogRef),
    /// Cluster mode: a brand's records go to its partition's replicated journal. A shard
    /// holds the journals of the partitions it serves now (`InstallPartition`).
    Partitioned { partitions: u32, owned: std::collections::HashMap<u32, LogRef> },
}

impl Logs {
    /// The partition of a brand (cluster mode).
    pub fn partition(&self, brand: &BrandId) -> Option<u32> {
        match self {
            Logs::One(_) => None,
            Logs::Partitioned { partitions, .. } => Some(crate::cluster::engine::partition_of(brand.as_str(), *partitions)),
        }
    }

    /// The journal a brand's records go to, if this node serves its partition.
    pub fn for_brand(&self, brand: &BrandId) -> Option<&LogRef> {
        match self {
            Logs::One(log) => Some(log),
            Logs::Partitioned { partitions, owned } => owned.get(&crate::cluster::engine::partition_of(brand.as_str(), *partitions)),
        }
    }
}

/// The refusal of a command for a brand whose partition this node does not serve (a
/// takeover or a step-down raced the request's routing).
pub fn partition_moved(brand: &BrandId) -> Rejection {
    Rejection::new(
        ErrorCode::PartitionUnavailable,
        format!(
            "brand {brand}'s partition is not served by this node right now (it is changing owner); nothing was changed; retry shortly"
        ),
    )
}

/// How brands map to shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The single node: a stable hash of the brand id over the shards.
    ByBrand,
    /// Cluster mode: a partition's brands live together, in shard `partition % shards`.
    ByPartition { partitions: u32 },
}

/// Routes brands to shards and holds the registry's address.
#[derive(Clone)]
pub struct Router {
    pub shards: Vec<Addr<shard::Shard>>,
    pub registry: Addr<registry::RegistryActor>,
    /// Brand commands queued in each shard's mailbox and not yet taken (each shard
    /// holds its own counter and takes one off as it starts a command).
    pub queued: Vec<Arc<AtomicI64>>,
    pub placement: Placement,
}

/// The shard a brand lives on: a stable hash (SipHash with fixed keys), so the mapping
/// is the same in every process given the same shard count.
pub fn shard_index(brand: &BrandId, shards: usize) -> usize {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    brand.as_str().hash(&mut h);
    (h.finish() % shards as u64) as usize
}

impl Router {
    fn index(&self, brand: &BrandId) -> usize {
        match self.placement {
            Placement::ByBrand => shard_index(brand, self.shards.len()),
            Placement::ByPartition { partitions } => {
                crate::cluster::engine::partition_of(brand.as_str(), partitions) as usize % self.shards.len()
            }
        }
    }

    /// The shard that serves partition `p` (cluster mode).
    pub fn shard_of_partition(&self, p: u32) -> &Addr<shard::Shard> {
        &self.shards[p as usize % self.shards.len()]
    }

    pub fn shard_for(&self, brand: &BrandId) -> &Addr<shard::Shard> {
        &self.shards[self.index(brand)]
    }

    /// Queues a brand command in its shard's mailbox without waiting (a full mailbox
    /// hands the message back, boxed: it is large and the path is rare), counting it
    /// in the shard's queue depth.
    pub fn try_send_brand(&self, msg: shard::BrandMsg) -> Result<(), Box<SendError<shard::BrandMsg>>> {
        let i = self.index(&msg.brand);
        // Counted before the send: the shard may take the message before `try_send`
        // returns, and the gauge must never go below what is queued.
        self.queued[i].fetch_add(1, Ordering::Relaxed);
        self.shards[i].try_send(msg).map_err(|e| {
            self.queued[i].fetch_sub(1, Ordering::Relaxed);
            Box::new(e)
        })
    }

    /// Brand commands waiting in each shard's mailbox, by shard index.
    pub fn queue_depths(&self) -> Vec<u64> {
        self.queued.iter().map(|q| q.load(Ordering::Relaxed).max(0) as u64).collect()
    }

    /// Runs an expiry sweep on every shard now; returns what each wrote, for the caller
    /// to wait on. Used at start (reservations that expired while the server was down)
    /// and after the manual clock moves.
    pub async fn sweep_all(&self) -> Result<Vec<Pending>, actix::MailboxError> {
        let mut written = Vec::new();
        for shard in &self.shards {
            let (reply, rx) = oneshot::channel();
            shard.send(shard::Sweep { reply: Some(reply) }).await?;
            written.extend(rx.await.map_err(|_| actix::MailboxError::Closed)?);
        }
        Ok(written)
    }
}
