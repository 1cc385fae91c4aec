//! Delivery state: `<data-dir>/webhooks.sqlite`, written by one thread.
//!
//! - `subs(webhook, brand, cursor, lost)`: per subscription, the last feed seq looked at
//!   (events after it are not queued yet) and how many events the feed's retention
//!   dropped before they could be queued.
//! - `deliveries(webhook, seq, event_id, type, key, body, status, attempts,
//!   next_attempt_ms, last_attempt_ms, last_status, last_error, updated_ms)`: one row
//!   per event queued for a subscription; `status` is `pending` (not tried yet),
//!   `failed` (tried, retry due at `next_attempt_ms`), `dead` or `delivered`.
//! - `meta(key, value)`: `history`, the journal history whose feed the cursors and
//!   rows are positions in. In another history (after a restore or a repair) they mean
//!   nothing: the file is emptied when it opens, and every subscription starts again
//!   at the beginning of the new history's feed. Undelivered deliveries of the old
//!   history are dropped (logged with a count): their events were cut from the
//!   journal, or belong to what the receiver must resync from; sending them would
//!   report changes the restored server does not have.
//!
//! The thread takes every operation queued, runs them in one transaction and answers
//! after the commit (group commit). A batch that fails (a full disk, no descriptors)
//! answers its errors, marks webhook delivery `retrying` in the health registry (the
//! workers try again after a backoff) and reopens the feed reader for the next batch;
//! the next batch that commits cleanly marks it `ok`. Outcomes of attempts are not waited for: losing the
//! newest ones in a crash only means those events are sent again (at least once, with
//! the same `webhook-id`), and because outcomes are written in the order they happened,
//! an event is never recorded as delivered while an earlier one of its key is not.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::domain::{BrandId, Timestamp};
use crate::feed::store::{open_reader, read_after};
use crate::journal::history::History;
use crate::webhooks::DeadLetter;

/// Operations queued for the thread; a full queue makes callers wait (workers) or
/// answer `overloaded` (HTTP).
pub const DB_QUEUE_MAX: usize = 65_536;
/// Operations in one transaction.
const OPS_PER_TX_MAX: usize = 4096;
/// Feed events looked at by one enqueue (most may be filtered out).
const ENQUEUE_SCAN_MAX: usize = 20_000;
/// Feed events read per step of an enqueue.
const ENQUEUE_PAGE: usize = 500;
/// Queued deliveries a worker loads at once (more wait in the table).
pub const LOAD_MAX: usize = 10_000;
/// Delivered and dead rows kept per subscription for `GET .../deliveries`; older
/// ones are dropped (dead ones past this bound cannot be redriven any more).
pub const FINISHED_KEPT_PER_WEBHOOK: usize = 10_000;
/// How often finished rows past the bound are dropped.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Where a webhook delivery is: `pending` (not tried yet), `failed` (tried, waiting
/// for its retry), `dead` (every retry failed) or `delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = DeliveryStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Failed,
    Dead,
    Delivered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Failed => "failed",
            Status::Dead => "dead",
            Status::Delivered => "delivered",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Pending, Status::Failed, Status::Dead, Status::Delivered].into_iter().find(|x| x.as_str() == s)
    }
}

/// A queued delivery, as a worker holds it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: u64,
    pub event_id: String,
    pub key: String,
    pub body: Arc<str>,
    pub attempts: u32,
    pub next_attempt_ms: i64,
}

/// What an attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub webhook: String,
    pub seq: u64,
    pub status: Status,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub at_ms: i64,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

/// One row of `GET .../deliveries`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Status,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What an enqueue found.
#[derive(Debug, Default)]
pub struct Enqueued {
    pub added: Vec<Delivery>,
    /// The cursor reached the brand's last event.
    pub at_end: bool,
}

pub type Reply<T> = oneshot::Sender<Result<T, String>>;

pub enum Op {
    /// Registers the subscription (cursor at `start_seq`) if new; returns its queue.
    Load {
        webhook: String,
        brand: BrandId,
        start_seq: u64,
        reply: Reply<(Vec<Delivery>, bool)>,
    },
    Enqueue {
        webhook: String,
        brand: BrandId,
        types: Vec<String>,
        limit: usize,
        now_ms: i64,
        reply: Reply<Enqueued>,
    },
    Record(Outcome),
    Redrive {
        webhook: String,
        now_ms: i64,
        reply: Reply<u64>,
    },
    Replay {
        webhook: String,
        after_seq: u64,
        reply: Reply<bool>,
    },
    Remove {
        webhook: String,
    },
    /// Cluster mode: the subscription's delivered watermark — every event at or before
    /// it delivered, dead or not of the subscribed types — to hand over to the next
    /// owner. `None` while the subscription is not registered here.
    Watermark {
        webhook: String,
        reply: Reply<Option<u64>>,
    },
    /// Cluster mode: takes over a previous owner's watermark. A subscription new here
    /// starts after it; one whose cursor is behind it forgets its deliveries at or before
    /// it (delivered elsewhere) and goes on after it; one at or past it keeps its own
    /// state (it is newer).
    Adopt {
        webhook: String,
        brand: BrandId,
        through: u64,
        reply: Reply<()>,
    },
    /// Cluster mode: the newest dead deliveries, at most `max`, to hand over.
    Dead {
        webhook: String,
        max: usize,
        reply: Reply<Vec<DeadLetter>>,
    },
    /// Cluster mode: a previous owner's dead deliveries, added (their events read from
    /// the feed) where this node has no row for the event; returns how many.
    AdoptDead {
        webhook: String,
        brand: BrandId,
        dead: Vec<DeadLetter>,
        reply: Reply<usize>,
    },
    /// Forgets every subscription not in the list (deleted while the server was down).
    RetainOnly {
        webhooks: Vec<String>,
    },
    List {
        webhook: String,
        status: Option<Status>,
        after: u64,
        limit: usize,
        reply: Reply<Vec<DeliveryView>>,
    },
}

/// The sending side of the thread's queue.
#[derive(Clone)]
pub struct Db {
    tx: SyncSender<Op>,
}

impl Db {
    /// Queues an operation, waiting while the queue is full (for workers).
    pub async fn send(&self, op: Op) -> Result<(), String> {
        let mut op = op;
        loop {
            match self.tx.try_send(op) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    op = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(TrySendError::Disconnected(_)) => return Err("the delivery store stopped".into()),
            }
        }
    }

    /// Sends an operation that answers, and waits for the answer.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| "the delivery store stopped".to_string())?
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("webhook delivery store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("webhook delivery store thread: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the store for the journal's `history` and starts its thread.
pub fn start(path: &Path, feed_path: &Path, history: &History) -> Result<Db, StartError> {
    let mut conn = open(path)?;
    enter_history(&mut conn, history)?;
    let feed_path = feed_path.to_path_buf();
    let (tx, rx) = std::sync::mpsc::sync_channel(DB_QUEUE_MAX);
    std::thread::Builder::new().name("zaiko-webhook-db".into()).spawn(move || run(conn, feed_path, rx))?;
    Ok(Db { tx })
}

fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // NORMAL: a commit lost to a power cut only means deliveries sent again.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS subs (webhook TEXT PRIMARY KEY, brand TEXT NOT NULL, cursor INTEGER NOT NULL,
             lost INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS deliveries (webhook TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT NOT NULL,
             type TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
             next_attempt_ms INTEGER NOT NULL, last_attempt_ms INTEGER, last_status INTEGER, last_error TEXT,
             updated_ms INTEGER NOT NULL, PRIMARY KEY (webhook, seq));
         CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (webhook, status, seq);
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;",
    )?;
    Ok(conn)
}

/// Makes the store follow `history` (see the module doc). A store written before
/// histories existed belongs to the data dir's first history.
fn enter_history(conn: &mut Connection, history: &History) -> Result<(), rusqlite::Error> {
    let id = history.id.0 as i64;
    let stored: Option<i64> = conn.query_row("SELECT value FROM meta WHERE key = 'history'", [], |r| r.get(0)).optional()?;
    if stored == Some(id) {
        return Ok(());
    }
    let tx = conn.transaction()?;
    if stored.is_some() || !history.first {
        let undelivered: i64 = tx.query_row("SELECT count(*) FROM deliveries WHERE status IN ('pending', 'failed')", [], |r| r.get(0))?;
        tx.execute_batch("DELETE FROM deliveries; DELETE FROM subs;")?;
        if undelivered > 0 {
            tracing::warn!(
                history = %history.id,
                undelivered,
                "the journal's history changed (a restore or a repair); undelivered webhook deliveries of the old history were dropped"
            );
        }
    }
    tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('history', ?1)", [id])?;
    tx.commit()
}

fn run(mut conn: Connection, feed_path: PathBuf, rx: Receiver<Op>) {
    crate::background::run_in_background();
    let health = crate::health::global().worker(crate::health::Worker::Webhooks);
    let _stopped = health.until_dropped();
    let mut feed: Option<Connection> = None;
    loop {
        let first = match rx.recv_timeout(PRUNE_INTERVAL) {
            Ok(op) => op,
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = prune(&mut conn) {
                    tracing::warn!(error = %e, "pruning finished webhook deliveries failed");
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut ops = vec![first];
        while ops.len() < OPS_PER_TX_MAX {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        if feed.is_none() {
            feed = open_reader(&feed_path).map_err(|e| tracing::error!(error = %e, "cannot open the feed store for delivery")).ok();
        }
        match run_batch(&mut conn, feed.as_mut(), ops) {
            Ok(()) => health.ok(),
            Err(e) => {
                health.failed(e);
                // Whatever failed, the next batch starts on a fresh feed reader.
                feed = None;
            }
        }
    }
}

/// Answers to send once the transaction is committed (or failed).
type Answer = Box<dyn FnOnce(Option<&str>)>;

/// The answer to an operation; an error is also noted as the batch's failure.
fn answer<T: 'static>(reply: Reply<T>, value: Result<T, String>, failed: &mut Option<String>) -> Answer {
    if let Err(e) = &value {
        failed.get_or_insert_with(|| e.clone());
    }
    Box::new(move |commit_error| {
        let _ = reply.send(match commit_error {
            Some(e) => Err(format!("delivery store commit failed: {e}")),
            None => value,
        });
    })
}

/// Runs one batch in one transaction; the first error of the batch, if any.
fn run_batch(conn: &mut Connection, mut feed: Option<&mut Connection>, ops: Vec<Op>) -> Result<(), String> {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a delivery store transaction");
            // Dropping the operations drops their reply senders: the askers see the
            // store as failed and retry.
            return Err(format!("cannot start a delivery store transaction: {e}"));
        }
    };
    let mut answers: Vec<Answer> = Vec::new();
    let mut failed = None;
    for op in ops {
        if let Some(a) = apply(&tx, feed.as_deref_mut(), op, &mut failed) {
            answers.push(a);
        }
    }
    let err = tx.commit().err().map(|e| e.to_string());
    if let Some(e) = &err {
        tracing::error!(error = %e, "delivery store commit failed");
    }
    for a in answers {
        a(err.as_deref());
    }
    match err {
        Some(e) => Err(format!("delivery store commit failed: {e}")),
        None => failed.map_or(Ok(()), Err),
    }
}

fn apply(tx: &Transaction<'_>, feed: Option<&mut Connection>, op: Op, failed: &mut Option<String>) -> Option<Answer> {
    let s = |e: rusqlite::Error| e.to_string();
    match op {
        Op::Load { webhook, brand, start_seq, reply } => Some(answer(reply, load(tx, &webhook, &brand, start_seq).map_err(s), failed)),
        Op::Enqueue { webhook, brand, types, limit, now_ms, reply } => {
            let res = match feed {
                Some(f) => enqueue(tx, f, &webhook, &brand, &types, limit, now_ms),
                None => Err("the feed store is not open".into()),
            };
            Some(answer(reply, res, failed))
        }
        Op::Record(o) => {
            if let Err(e) = record(tx, &o) {
                tracing::error!(error = %e, webhook = %o.webhook, seq = o.seq, "recording a delivery outcome failed");
                failed.get_or_insert_with(|| format!("recording a delivery outcome failed: {e}"));
            }
            None
        }
        Op::Redrive { webhook, now_ms, reply } => {
            let res = tx
                .execute(
                    "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_ms = ?2, updated_ms = ?2
                     WHERE webhook = ?1 AND status = 'dead'",
                    params![webhook, now_ms],
                )
                .map(|n| n as u64);
            Some(answer(reply, res.map_err(s), failed))
        }
        Op::Replay { webhook, after_seq, reply } => {
            let res = tx
                .execute("UPDATE subs SET cursor = MIN(cursor, ?2) WHERE webhook = ?1", params![webhook, after_seq as i64])
                .map(|n| n > 0);
            Some(answer(reply, res.map_err(s), failed))
        }
        Op::Remove { webhook } => {
            let res = tx
                .execute("DELETE FROM deliveries WHERE webhook = ?1", [&webhook])
                .and_then(|_| tx.execute("DELETE FROM subs WHERE webhook = ?1", [&webhook]));
            if let Err(e) = res {
                tracing::error!(error = %e, webhook = %webhook, "removing a deleted webhook's deliveries failed");
                failed.get_or_insert_with(|| format!("removing a deleted webhook's deliveries failed: {e}"));
            }
            None
        }
        Op::Watermark { webhook, reply } => Some(answer(reply, watermark(tx, &webhook).map_err(s), failed)),
        Op::Adopt { webhook, brand, through, reply } => Some(answer(reply, adopt(tx, &webhook, &brand, through).map_err(s), failed)),
        Op::Dead { webhook, max, reply } => Some(answer(reply, dead(tx, &webhook, max).map_err(s), failed)),
        Op::AdoptDead { webhook, brand, dead, reply } => {
            let res = match feed {
                Some(f) => adopt_dead(tx, f, &webhook, &brand, &dead),
                None => Err("the feed store is not open".into()),
            };
            Some(answer(reply, res, failed))
        }
        Op::RetainOnly { webhooks } => {
            if let Err(e) = retain_only(tx, &webhooks) {
                tracing::error!(error = %e, "forgetting the deliveries of deleted webhooks failed");
                failed.get_or_insert_with(|| format!("forgetting the deliveries of deleted webhooks failed: {e}"));
            }
            None
        }
        Op::List { webhook, status, after, limit, reply } => {
            Some(answer(reply, list(tx, &webhook, status, after, limit).map_err(s), failed))
        }
    }
}

fn watermark(tx: &Transaction<'_>, webhook: &str) -> rusqlite::Result<Option<u64>> {
    let cursor: Option<i64> = tx.query_row("SELECT cursor FROM subs WHERE webhook = ?1", [webhook], |r| r.get(0)).optional()?;
    let Some(cursor) = cursor else { return Ok(None) };
    let open: Option<i64> =
        tx.query_row("SELECT min(seq) FROM deliveries WHERE webhook = ?1 AND status IN ('pending', 'failed')", [webhook], |r| r.get(0))?;
    Ok(Some(open.map_or(cursor, |seq| seq - 1) as u64))
}

fn adopt(tx: &Transaction<'_>, webhook: &str, brand: &BrandId, through: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO subs (webhook, brand, cursor) VALUES (?1, ?2, ?3)",
        params![webhook, brand.as_str(), through as i64],
    )?;
    let cursor: i64 = tx.query_row("SELECT cursor FROM subs WHERE webhook = ?1", [webhook], |r| r.get(0))?;
    if (cursor as u64) < through {
        tx.execute(
            "DELETE FROM deliveries WHERE webhook = ?1 AND seq <= ?2 AND status IN ('pending', 'failed')",
            params![webhook, through as i64],
        )?;
        tx.execute("UPDATE subs SET cursor = ?2 WHERE webhook = ?1", params![webhook, through as i64])?;
    }
    Ok(())
}

/// A handed-over dead delivery's error is cut to this many characters, so that the
/// newest [`crate::webhooks::DEAD_HANDED_MAX`] fit one KV value far below a message's
/// size limit.
const DEAD_ERROR_CHARS_MAX: usize = 200;

fn dead(tx: &Transaction<'_>, webhook: &str, max: usize) -> rusqlite::Result<Vec<DeadLetter>> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq, attempts, last_attempt_ms, last_status, substr(last_error, 1, ?3) FROM deliveries
         WHERE webhook = ?1 AND status = 'dead' ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![webhook, max as i64, DEAD_ERROR_CHARS_MAX as i64], |r| {
        Ok(DeadLetter {
            seq: r.get::<_, i64>(0)? as u64,
            attempts: r.get::<_, i64>(1)? as u32,
            last_attempt_ms: r.get(2)?,
            last_status: r.get::<_, Option<i64>>(3)?.map(|v| v as u16),
            last_error: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Adds the dead deliveries this node has no row for, their events read from the
/// feed (one whose event the feed's retention dropped cannot be redriven: skipped).
fn adopt_dead(tx: &Transaction<'_>, feed: &mut Connection, webhook: &str, brand: &BrandId, dead: &[DeadLetter]) -> Result<usize, String> {
    let s = |e: rusqlite::Error| e.to_string();
    let mut insert = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO deliveries (webhook, seq, event_id, type, key, body, status, attempts, next_attempt_ms,
                 last_attempt_ms, last_status, last_error, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'dead', ?7, 0, ?8, ?9, ?10, ?11)",
        )
        .map_err(s)?;
    let mut added = 0;
    for d in dead {
        let found = read_after(feed, brand.as_str(), d.seq.saturating_sub(1), 1).map_err(|e| e.to_string())?;
        let Some(ev) = found.and_then(|(_, evs)| evs.into_iter().next()).filter(|ev| ev.seq == d.seq) else { continue };
        let at = d.last_attempt_ms.unwrap_or(0);
        added += insert
            .execute(params![
                webhook,
                d.seq as i64,
                ev_id(&ev.body),
                ev.kind,
                ev.key,
                ev.body,
                d.attempts as i64,
                d.last_attempt_ms,
                d.last_status.map(i64::from),
                d.last_error,
                at
            ])
            .map_err(s)?;
    }
    Ok(added)
}

fn retain_only(tx: &Transaction<'_>, keep: &[String]) -> rusqlite::Result<()> {
    let known: Vec<String> = tx.prepare("SELECT webhook FROM subs")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for gone in known.iter().filter(|w| !keep.contains(w)) {
        tx.execute("DELETE FROM deliveries WHERE webhook = ?1", [gone])?;
        tx.execute("DELETE FROM subs WHERE webhook = ?1", [gone])?;
        tracing::info!(webhook = %gone, "forgot the deliveries of a webhook deleted while the server was down");
    }
    Ok(())
}

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        seq: r.get::<_, i64>(0)? as u64,
        event_id: r.get(1)?,
        key: r.get(2)?,
        body: Arc::from(r.get::<_, String>(3)?),
        attempts: r.get::<_, i64>(4)? as u32,
        next_attempt_ms: r.get(5)?,
    })
}

fn load(tx: &Transaction<'_>, webhook: &str, brand: &BrandId, start_seq: u64) -> rusqlite::Result<(Vec<Delivery>, bool)> {
    tx.execute(
        "INSERT OR IGNORE INTO subs (webhook, brand, cursor) VALUES (?1, ?2, ?3)",
        params![webhook, brand.as_str(), start_seq as i64],
    )?;
    let mut stmt = tx.prepare_cached(
        "SELECT seq, event_id, key, body, attempts, next_attempt_ms FROM deliveries
         WHERE webhook = ?1 AND status IN ('pending', 'failed') ORDER BY seq LIMIT ?2",
    )?;
    let rows: Vec<Delivery> = stmt.query_map(params![webhook, LOAD_MAX as i64 + 1], delivery_row)?.collect::<Result<_, _>>()?;
    let more = rows.len() > LOAD_MAX;
    Ok((rows.into_iter().take(LOAD_MAX).collect(), more))
}

/// Queues the subscription's events after its cursor, up to `limit` new deliveries.
/// An event already queued and not finished is left alone; a finished one (replay)
/// is queued again.
fn enqueue(
    tx: &Transaction<'_>,
    feed: &mut Connection,
    webhook: &str,
    brand: &BrandId,
    types: &[String],
    limit: usize,
    now_ms: i64,
) -> Result<Enqueued, String> {
    let s = |e: rusqlite::Error| e.to_string();
    let cursor: Option<i64> = tx.query_row("SELECT cursor FROM subs WHERE webhook = ?1", [webhook], |r| r.get(0)).optional().map_err(s)?;
    let Some(cursor) = cursor else {
        // Removed meanwhile (deleted): nothing to queue, and nothing failed. Its worker
        // is being stopped.
        tracing::debug!(webhook, "webhook no longer registered for delivery; nothing queued");
        return Ok(Enqueued { added: Vec::new(), at_end: true });
    };
    let (mut cursor, mut lost, mut scanned) = (cursor as u64, 0u64, 0usize);
    let mut out = Enqueued::default();
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (webhook, seq, event_id, type, key, body, status, attempts, next_attempt_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?7)
             ON CONFLICT (webhook, seq) DO UPDATE SET status = 'pending', attempts = 0, next_attempt_ms = ?7, updated_ms = ?7
             WHERE status IN ('delivered', 'dead')",
        )
        .map_err(s)?;
    'pages: while out.added.len() < limit && scanned < ENQUEUE_SCAN_MAX {
        let Some((pos, events)) = read_after(feed, brand.as_str(), cursor, ENQUEUE_PAGE).map_err(|e| e.to_string())? else {
            out.at_end = true;
            break;
        };
        if pos.pruned_through > cursor {
            lost += pos.pruned_through - cursor;
            cursor = pos.pruned_through;
        }
        for ev in &events {
            if out.added.len() >= limit {
                break 'pages;
            }
            cursor = ev.seq;
            scanned += 1;
            if !types.iter().any(|t| t == &ev.kind) {
                continue;
            }
            let id = ev_id(&ev.body);
            let n = insert.execute(params![webhook, ev.seq as i64, id, ev.kind, ev.key, ev.body, now_ms]).map_err(s)?;
            if n > 0 {
                let body = Arc::from(ev.body.as_str());
                out.added.push(Delivery {
                    seq: ev.seq,
                    event_id: id.to_string(),
                    key: ev.key.clone(),
                    body,
                    attempts: 0,
                    next_attempt_ms: now_ms,
                });
            }
        }
        if cursor >= pos.last_seq {
            out.at_end = true;
            break;
        }
    }
    tx.execute("UPDATE subs SET cursor = ?2, lost = lost + ?3 WHERE webhook = ?1", params![webhook, cursor as i64, lost as i64])
        .map_err(s)?;
    if lost > 0 {
        tracing::warn!(webhook, lost, "the feed retention dropped events before this webhook could queue them");
    }
    Ok(out)
}

/// The `id` of an event JSON object (the feed writes it first).
fn ev_id(body: &str) -> &str {
    body.strip_prefix(r#"{"id":""#).and_then(|rest| rest.split('"').next()).unwrap_or("")
}

fn record(tx: &Transaction<'_>, o: &Outcome) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE deliveries SET status = ?3, attempts = ?4, next_attempt_ms = ?5, last_attempt_ms = ?6, last_status = ?7,
             last_error = ?8, updated_ms = ?6
         WHERE webhook = ?1 AND seq = ?2",
    )?
    .execute(params![
        o.webhook,
        o.seq as i64,
        o.status.as_str(),
        o.attempts as i64,
        o.next_attempt_ms,
        o.at_ms,
        o.http_status.map(i64::from),
        o.error
    ])?;
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    Timestamp(ms).to_rfc3339()
}

fn list(tx: &Transaction<'_>, webhook: &str, status: Option<Status>, after: u64, limit: usize) -> rusqlite::Result<Vec<DeliveryView>> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq, event_id, type, status, attempts, next_attempt_ms, last_attempt_ms, last_status, last_error FROM deliveries
         WHERE webhook = ?1 AND (?2 IS NULL OR status = ?2) AND seq > ?3 ORDER BY seq LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![webhook, status.map(Status::as_str), after as i64, limit as i64], |r| {
        let status = Status::parse(&r.get::<_, String>(3)?).unwrap_or(Status::Pending);
        let waiting = matches!(status, Status::Pending | Status::Failed);
        Ok(DeliveryView {
            seq: r.get::<_, i64>(0)? as u64,
            id: r.get(1)?,
            kind: r.get(2)?,
            status,
            attempts: r.get::<_, i64>(4)? as u32,
            next_attempt_at: waiting.then(|| r.get::<_, i64>(5).map(rfc3339)).transpose()?,
            last_attempt_at: r.get::<_, Option<i64>>(6)?.map(rfc3339),
            last_status: r.get::<_, Option<i64>>(7)?.map(|v| v as u16),
            last_error: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Drops finished rows past [`FINISHED_KEPT_PER_WEBHOOK`] per subscription.
fn prune(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let hooks: Vec<String> = tx.prepare("SELECT webhook FROM subs")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut dropped = 0;
    for h in hooks {
        dropped += tx.execute(
            "DELETE FROM deliveries WHERE webhook = ?1 AND status IN ('delivered', 'dead') AND seq <= (
                 SELECT seq FROM deliveries WHERE webhook = ?1 AND status IN ('delivered', 'dead') ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            params![h, FINISHED_KEPT_PER_WEBHOOK as i64],
        )?;
    }
    tx.commit()?;
    if dropped > 0 {
        tracing::info!(dropped, "old finished webhook deliveries dropped");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
