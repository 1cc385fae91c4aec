//! The feed store: `<data-dir>/feed.sqlite`, the brands' events in feed order, kept
//! after the WAL segments that held them are gone, up to the retention.
//!
//! Tables (schema version in `meta.schema`):
//! - `events(id INTEGER PRIMARY KEY, lsn, at_ms, type, key, body, event)`: `id` is
//!   `brand_no << 40 | seq`, so one B-tree holds each brand's events in seq order and a
//!   page of the feed is one range scan. `event` is the journal's event, encoded
//!   (`domain::event::encode_feed_event`), rendered to the JSON served when read: a
//!   stock change takes ~70 bytes instead of ~450, and the feed thread's writes were the
//!   largest I/O of a bulk import (twice the bytes, with the checkpoints). Rows of
//!   schema 1 have no `event` and the served JSON in `body` (empty in newer rows).
//!   The encoding carries the journal's record format byte: a version that changes
//!   that format must still decode the events kept here (up to the retention), or
//!   convert them when it upgrades the store.
//! - `brands(brand, brand_no, last_seq, pruned_through)`: events with `seq <=
//!   pruned_through` were dropped by the retention.
//! - `webhooks(id, brand, url, events, secret, created_lsn, start_seq)`: the
//!   subscriptions, a projection of the WAL records kept in step with the events
//!   (delivery reads it); `start_seq` is the brand's last seq when the subscription was
//!   created, so delivery starts with the first event after it.
//! - `events_stock_by_sku`: a partial index of `events(key, id)` over the
//!   `stock.changed` rows, so a SKU's stock history (`feed::history`) is one range
//!   scan of the index. Being an index of `events`, it is written in the same
//!   transaction and dropped with its rows by the retention: it can never disagree
//!   with them. A store made before it existed gets it when it opens (a one-time
//!   scan); older binaries keep it up to date as SQLite does for any index, so it
//!   needs no schema version. Its price is on the feed thread: one insert at a random
//!   place of the index per stock change (an import's rows spread over the whole
//!   index), which makes the feed's writes of a bulk import markedly slower than the
//!   appends alone; indexing later, off the feed's commits, would move that work, not
//!   remove it.
//! - `import_records(brand, lsn, at_ms, job)`: the journal records that were import chunks
//!   (one row per chunk of up to `--import-chunk-rows` rows), so the history can say
//!   which job made a change (the events themselves do not carry it). Dropped by the
//!   age retention, with the events of their time.
//! - `sources(partition, epoch, next_lsn, last_seq)`: cluster mode only — where the
//!   feed stands in each partition's journal (the replay rule's state,
//!   `cluster::entry::Replay`), committed with the events it produced.
//! - `meta(key, value)`: `covered_lsn`, the last journal record reflected here (in
//!   cluster mode: the last stream sequence of the `ZAIKO_JOURNAL` stream read);
//!   `history`, the journal history (`journal::history`) the events belong to, and
//!   `history_label`, the id their ids carry (absent in a data dir's first history).
//!   A store of another history is emptied when it opens: its events and seqs are
//!   of records the journal no longer holds (a restore or a repair went back), so the
//!   new history's feed begins at the fork, with seqs from 1 and the subscriptions of
//!   the state there. A store without `history` was written before histories existed
//!   and is taken over by a first history as it is.
//!
//! One writer (the feed thread) commits one transaction per batch of journal records,
//! with `covered_lsn` in the same transaction, so a restart resumes exactly after the
//! last committed record: nothing is skipped and nothing counted twice. The writer runs
//! with `synchronous=FULL` because journal segments may be removed up to `covered_lsn`;
//! in cluster mode with `synchronous=NORMAL` ([`Store::relax_durability`]).

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::render::{event_id, event_json};
use crate::domain::event::{decode_feed_event, encode_feed_event, Event};
use crate::domain::webhook::Webhook;
use crate::domain::{BrandId, Id, Timestamp};
use crate::journal::history::{History, HistoryId};
use crate::journal::Lsn;

/// Bits of the per-brand sequence number in an event's row id.
pub const SEQ_BITS: u32 = 40;
pub(super) const SEQ_MASK: i64 = (1 << SEQ_BITS) - 1;
/// 1: events as JSON in `body`; 2: adds `event` (see the module doc).
const SCHEMA_VERSION: i64 = 2;
/// Rows looked at per step of the age-based pruning.
const PRUNE_STEP_ROWS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("feed store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("feed store i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("feed store schema version {0} is newer than this binary understands; run a newer zaiko")]
    NewerSchema(i64),
    #[error("feed store: event {seq} of brand {brand} is unreadable: {reason}")]
    Undecodable { brand: String, seq: u64, reason: String },
}

/// How long events are kept. Both bounds apply; the first reached wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age_ms: i64,
    pub max_events_per_brand: u64,
}

/// One feed event of a batch, before it has its seq.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub brand: BrandId,
    pub lsn: Lsn,
    pub at: Timestamp,
    pub kind: &'static str,
    /// The ordering key (`render::key`).
    pub key: String,
    /// `encode_feed_event(index, event)`.
    pub event: Vec<u8>,
    /// The import job whose chunk the record is, if it is one.
    pub import: Option<Id>,
}

impl NewEvent {
    /// The feed event of the `index`-th event of the record at `lsn`; `None` for an
    /// event the feed does not carry.
    pub fn of(brand: &BrandId, lsn: Lsn, index: usize, at: Timestamp, ev: &Event) -> Option<NewEvent> {
        let key = super::render::key(ev)?;
        Some(NewEvent { brand: brand.clone(), lsn, at, kind: ev.type_name(), key, event: encode_feed_event(index, ev), import: None })
    }
}

/// A subscription change seen in the journal.
#[derive(Debug, Clone)]
pub enum HookChange {
    /// `position`: how many events of the batch come before it.
    Created {
        brand: BrandId,
        webhook: Box<Webhook>,
        lsn: Lsn,
        position: usize,
    },
    Deleted {
        id: String,
    },
}

/// What one transaction writes: the feed events of a run of journal records.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<NewEvent>,
    pub hooks: Vec<HookChange>,
    /// The last journal record of the run (feed events or not); in cluster mode the
    /// last stream sequence read.
    pub last_lsn: Lsn,
    /// Cluster mode: where the run leaves each partition it touched.
    pub sources: Vec<SourcePosition>,
    /// Cluster mode: partitions whose feed starts again at a checkpoint
    /// (`feed::seed`), written before the events of the batch.
    pub seeds: Vec<super::seed::FeedSeed>,
}

/// Where the feed stands in one partition's journal (cluster mode): the replay rule's
/// state after the last entry it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourcePosition {
    pub partition: u32,
    pub epoch: u64,
    pub next_lsn: Lsn,
    pub last_seq: u64,
}

impl SourcePosition {
    /// Where `rule` leaves the feed in `partition`'s journal.
    pub fn of(partition: u32, rule: &crate::cluster::entry::Replay) -> SourcePosition {
        SourcePosition { partition, epoch: rule.epoch, next_lsn: rule.next_lsn, last_seq: rule.last_seq }
    }
}

#[derive(Debug, Clone, Copy)]
struct BrandRow {
    no: i64,
    last_seq: u64,
    pruned_through: u64,
}

pub(super) fn row_id(no: i64, seq: u64) -> i64 {
    (no << SEQ_BITS) | seq as i64
}

/// The writer's connection and its cache of the `brands` table.
pub struct Store {
    conn: Connection,
    brands: HashMap<BrandId, BrandRow>,
    next_brand_no: i64,
    covered: Lsn,
    retention: Retention,
}

fn create_schema(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS brands (brand TEXT PRIMARY KEY, brand_no INTEGER NOT NULL UNIQUE,
             last_seq INTEGER NOT NULL, pruned_through INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, lsn INTEGER NOT NULL, at_ms INTEGER NOT NULL,
             type TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, event BLOB);
         CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, brand TEXT NOT NULL, url TEXT NOT NULL,
             events TEXT NOT NULL, secret TEXT NOT NULL, created_lsn INTEGER NOT NULL, start_seq INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS sources (partition INTEGER PRIMARY KEY, epoch INTEGER NOT NULL,
             next_lsn INTEGER NOT NULL, last_seq INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS events_stock_by_sku ON events (key, id) WHERE type = 'stock.changed';
         CREATE TABLE IF NOT EXISTS import_records (brand TEXT NOT NULL, lsn INTEGER NOT NULL, at_ms INTEGER NOT NULL,
             job TEXT NOT NULL, PRIMARY KEY (brand, lsn)) WITHOUT ROWID;
         INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', 2), ('covered_lsn', 0);",
    )?;
    let v: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0))?;
    if v > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema(v));
    }
    if v == 1 {
        // Schema 1's rows keep their JSON; new rows store the event. No rewrite.
        conn.execute_batch("BEGIN; ALTER TABLE events ADD COLUMN event BLOB; UPDATE meta SET value = 2 WHERE key = 'schema'; COMMIT;")?;
        tracing::info!("feed store upgraded to schema 2 (events stored encoded)");
    }
    Ok(())
}

/// Opens a read-only connection for page reads and delivery.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA query_only = ON;")?;
    Ok(conn)
}

/// Makes the store follow `history`: takes over a store of the data dir's first
/// history written before histories existed, and empties a store of another history
/// (see the module doc), seeding the subscriptions of the state at the fork.
fn enter_history(conn: &mut Connection, history: &History, subscriptions: &[(BrandId, Webhook)]) -> Result<(), StoreError> {
    let id = history.id.0 as i64;
    let stored: Option<i64> = conn.query_row("SELECT value FROM meta WHERE key = 'history'", [], |r| r.get(0)).optional()?;
    match stored {
        Some(s) if s == id => return Ok(()),
        None if history.first => {
            conn.execute("INSERT INTO meta (key, value) VALUES ('history', ?1)", [id])?;
            return Ok(());
        }
        _ => {}
    }
    let tx = conn.transaction()?;
    let dropped: i64 = tx.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    tx.execute_batch("DELETE FROM events; DELETE FROM brands; DELETE FROM webhooks; DELETE FROM import_records; DELETE FROM sources;")?;
    tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('history', ?1)", [id])?;
    match history.label() {
        Some(label) => tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('history_label', ?1)", [label.0 as i64])?,
        None => tx.execute("DELETE FROM meta WHERE key = 'history_label'", [])?,
    };
    tx.execute("UPDATE meta SET value = ?1 WHERE key = 'covered_lsn'", [history.after_lsn as i64])?;
    for (brand, webhook) in subscriptions {
        insert_webhook(&tx, brand, webhook, history.after_lsn, 0)?;
    }
    tx.commit()?;
    let level_warn = dropped > 0 || stored.is_some();
    if level_warn {
        tracing::warn!(
            history = %history.id,
            after_lsn = history.after_lsn,
            dropped_events = dropped,
            "the journal's history changed (a restore or a repair); the feed of the old history was dropped and the new one begins after the fork"
        );
    } else {
        tracing::info!(history = %history.id, after_lsn = history.after_lsn, "the feed begins in the journal's history");
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store for the journal's `history`; `subscriptions` are
    /// the webhook subscriptions of the recovered state, which seed the projection when
    /// a new history's feed begins.
    pub fn open(path: &Path, retention: Retention, history: &History, subscriptions: &[(BrandId, Webhook)]) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The page cache holds a batch's pages until its commit: at most
        // FEED_BATCH_EVENTS_MAX encoded events (~100 bytes each with their index
        // entries), so 16 MiB leaves room; it was 64 MiB when events were stored as JSON.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -16384;")?;
        create_schema(&conn)?;
        enter_history(&mut conn, history, subscriptions)?;
        let covered: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'covered_lsn'", [], |r| r.get(0))?;
        let mut brands = HashMap::new();
        let mut next_brand_no = 1;
        {
            let mut stmt = conn.prepare("SELECT brand, brand_no, last_seq, pruned_through FROM brands")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))?;
            for row in rows {
                let (brand, no, last, pruned) = row?;
                next_brand_no = next_brand_no.max(no + 1);
                if let Ok(b) = BrandId::parse(&brand) {
                    brands.insert(b, BrandRow { no, last_seq: last as u64, pruned_through: pruned as u64 });
                }
            }
        }
        Ok(Store { conn, brands, next_brand_no, covered: covered as Lsn, retention })
    }

    /// The last journal record reflected in the store.
    pub fn covered_lsn(&self) -> Lsn {
        self.covered
    }

    /// Cluster mode: where the feed stands in each partition's journal it has read.
    pub fn sources(&self) -> Result<Vec<SourcePosition>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT partition, epoch, next_lsn, last_seq FROM sources ORDER BY partition")?;
        let rows = stmt.query_map([], |r| {
            Ok(SourcePosition {
                partition: r.get(0)?,
                epoch: r.get::<_, i64>(1)? as u64,
                next_lsn: r.get::<_, i64>(2)? as Lsn,
                last_seq: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Cluster mode: a commit need not reach the disk before the next one (SQLite syncs
    /// its WAL at checkpoints only). The journal stream keeps every entry and the store
    /// resumes after its last commit that reached the disk, so a commit lost to a power
    /// cut is read again from the stream — the same events, seqs and ids; a transaction
    /// is still all or nothing. One fsync per batch was close to half a busy node's feed time.
    pub fn relax_durability(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
        Ok(())
    }

    /// Writes a batch in one transaction; returns each touched brand's new last seq.
    /// On error nothing is written, and the caller must reopen the store (the cache of
    /// brand rows may be ahead of the disk).
    pub fn commit(&mut self, batch: &Batch) -> Result<Vec<(BrandId, u64)>, StoreError> {
        let started = std::time::Instant::now();
        let tx = self.conn.transaction()?;
        let mut touched: HashMap<BrandId, BrandRow> = HashMap::new();
        for seed in &batch.seeds {
            seed_partition(&tx, seed, &self.brands, &mut self.next_brand_no, &mut touched)?;
        }
        let hook_starts = hook_start_seqs(batch, |b| touched.get(b).or_else(|| self.brands.get(b)).map_or(0, |r| r.last_seq));
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO events (id, lsn, at_ms, type, key, body, event) VALUES (?1, ?2, ?3, ?4, ?5, '', ?6)")?;
            for ev in &batch.events {
                let row = match touched.get_mut(&ev.brand) {
                    Some(r) => r,
                    None => {
                        let r = self.brands.get(&ev.brand).copied().unwrap_or_else(|| {
                            self.next_brand_no += 1;
                            BrandRow { no: self.next_brand_no - 1, last_seq: 0, pruned_through: 0 }
                        });
                        touched.entry(ev.brand.clone()).or_insert(r)
                    }
                };
                row.last_seq += 1;
                insert.execute(params![row_id(row.no, row.last_seq), ev.lsn as i64, ev.at.0, ev.kind, ev.key, ev.event])?;
            }
            // Keyed by brand too: in cluster mode an LSN is a partition's.
            let mut import = tx.prepare_cached("INSERT OR IGNORE INTO import_records (brand, lsn, at_ms, job) VALUES (?1, ?2, ?3, ?4)")?;
            let mut recorded = None;
            for ev in &batch.events {
                if let (Some(job), false) = (&ev.import, recorded == Some((&ev.brand, ev.lsn))) {
                    import.execute(params![ev.brand.as_str(), ev.lsn as i64, ev.at.0, job.as_str()])?;
                    recorded = Some((&ev.brand, ev.lsn));
                }
            }
        }
        for (brand, row) in touched.iter_mut() {
            prune_by_count(&tx, row, self.retention.max_events_per_brand)?;
            save_brand(&tx, brand, row)?;
        }
        apply_hooks(&tx, &batch.hooks, &hook_starts)?;
        for s in &batch.sources {
            tx.prepare_cached("INSERT OR REPLACE INTO sources (partition, epoch, next_lsn, last_seq) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![s.partition, s.epoch as i64, s.next_lsn as i64, s.last_seq as i64])?;
        }
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'covered_lsn'", [batch.last_lsn as i64])?;
        tx.commit()?;
        metrics::histogram!("zaiko_feed_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("zaiko_feed_events_committed_total").increment(batch.events.len() as u64);
        self.covered = batch.last_lsn;
        let out = touched.iter().map(|(b, r)| (b.clone(), r.last_seq)).collect();
        self.brands.extend(touched);
        Ok(out)
    }

    /// Drops events older than the retention's age, oldest first, per brand. Returns
    /// how many were dropped.
    pub fn prune_by_age(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let cutoff = now.0.saturating_sub(self.retention.max_age_ms);
        let mut dropped = 0;
        let tx = self.conn.transaction()?;
        for (brand, row) in self.brands.iter_mut() {
            let before = row.pruned_through;
            loop {
                let step = oldest_before(&tx, row, cutoff)?;
                let Some(through) = step else { break };
                tx.execute(
                    "DELETE FROM events WHERE id > ?1 AND id <= ?2",
                    params![row_id(row.no, row.pruned_through), row_id(row.no, through)],
                )?;
                row.pruned_through = through;
            }
            if row.pruned_through != before {
                dropped += row.pruned_through - before;
                save_brand(&tx, brand, row)?;
            }
        }
        tx.execute("DELETE FROM import_records WHERE at_ms < ?1", [cutoff])?;
        tx.commit()?;
        Ok(dropped)
    }
}

/// For each hook change of `batch`, the brand's last seq at the point of the batch
/// where it was made; `last_seq` gives each brand's before the batch.
pub(super) fn hook_start_seqs(batch: &Batch, last_seq: impl Fn(&BrandId) -> u64) -> Vec<u64> {
    batch
        .hooks
        .iter()
        .map(|h| match h {
            HookChange::Created { brand, position, .. } => {
                last_seq(brand) + batch.events[..*position].iter().filter(|e| &e.brand == brand).count() as u64
            }
            HookChange::Deleted { .. } => 0,
        })
        .collect()
}

/// Starts a partition's feed again at a checkpoint: each of its brands at the
/// checkpoint's seq, with every event up to it counted as dropped by the retention
/// (the stream no longer holds them, and every other node dropped them by age before
/// the checkpoint was made); its subscriptions replaced by the checkpoint's; its
/// source position set. A brand already at or past the checkpoint is left alone, so
/// that applying a checkpoint twice changes nothing.
fn seed_partition(
    tx: &Transaction<'_>,
    seed: &super::seed::FeedSeed,
    known: &HashMap<BrandId, BrandRow>,
    next_brand_no: &mut i64,
    touched: &mut HashMap<BrandId, BrandRow>,
) -> Result<(), StoreError> {
    let mut advanced = std::collections::HashSet::new();
    for (brand, &seq) in &seed.brands {
        let mut row = touched.get(brand).or_else(|| known.get(brand)).copied().unwrap_or_else(|| {
            *next_brand_no += 1;
            BrandRow { no: *next_brand_no - 1, last_seq: 0, pruned_through: 0 }
        });
        if row.last_seq >= seq {
            continue;
        }
        tx.execute("DELETE FROM events WHERE id > ?1 AND id <= ?2", params![row_id(row.no, 0), row_id(row.no, row.last_seq)])?;
        row.last_seq = seq;
        row.pruned_through = seq;
        save_brand(tx, brand, &row)?;
        touched.insert(brand.clone(), row);
        tx.execute("DELETE FROM webhooks WHERE brand = ?1", [brand.as_str()])?;
        advanced.insert(brand);
    }
    for hook in seed.webhooks.values().filter(|h| advanced.contains(&h.brand)) {
        insert_webhook(tx, &hook.brand, &hook.webhook, hook.created_lsn, hook.start_seq)?;
    }
    let s = seed.position();
    tx.prepare_cached("INSERT OR REPLACE INTO sources (partition, epoch, next_lsn, last_seq) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![s.partition, s.epoch as i64, s.next_lsn as i64, s.last_seq as i64])?;
    Ok(())
}

/// The seq through which the brand's oldest events are all older than `cutoff`,
/// looking at one step of rows; `None` when the oldest is not.
fn oldest_before(tx: &Transaction<'_>, row: &BrandRow, cutoff: i64) -> Result<Option<u64>, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT id, at_ms FROM events WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3")?;
    let rows = stmt.query_map(params![row_id(row.no, row.pruned_through), row_id(row.no, row.last_seq), PRUNE_STEP_ROWS as i64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut through = None;
    for r in rows {
        let (id, at) = r?;
        if at >= cutoff {
            break;
        }
        through = Some((id & SEQ_MASK) as u64);
    }
    Ok(through)
}

fn prune_by_count(tx: &Transaction<'_>, row: &mut BrandRow, max: u64) -> Result<(), StoreError> {
    if row.last_seq - row.pruned_through <= max {
        return Ok(());
    }
    let through = row.last_seq - max;
    tx.execute("DELETE FROM events WHERE id > ?1 AND id <= ?2", params![row_id(row.no, row.pruned_through), row_id(row.no, through)])?;
    row.pruned_through = through;
    Ok(())
}

fn save_brand(tx: &Transaction<'_>, brand: &BrandId, row: &BrandRow) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO brands (brand, brand_no, last_seq, pruned_through) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (brand) DO UPDATE SET last_seq = excluded.last_seq, pruned_through = excluded.pruned_through",
    )?
    .execute(params![brand.as_str(), row.no, row.last_seq as i64, row.pruned_through as i64])?;
    Ok(())
}

fn apply_hooks(tx: &Transaction<'_>, hooks: &[HookChange], start_seqs: &[u64]) -> Result<(), StoreError> {
    for (h, start) in hooks.iter().zip(start_seqs) {
        match h {
            HookChange::Created { brand, webhook, lsn, .. } => insert_webhook(tx, brand, webhook, *lsn, *start)?,
            HookChange::Deleted { id } => {
                tx.execute("DELETE FROM webhooks WHERE id = ?1", [id])?;
            }
        }
    }
    Ok(())
}

fn insert_webhook(tx: &Transaction<'_>, brand: &BrandId, webhook: &Webhook, lsn: Lsn, start_seq: u64) -> Result<(), StoreError> {
    let events = serde_json::to_string(&webhook.events).expect("strings serialise");
    tx.execute(
        "INSERT OR REPLACE INTO webhooks (id, brand, url, events, secret, created_lsn, start_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![webhook.id.as_str(), brand.as_str(), webhook.url, events, webhook.secret, lsn as i64, start_seq as i64],
    )?;
    Ok(())
}

/// Where a brand's feed stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrandPosition {
    pub last_seq: u64,
    pub pruned_through: u64,
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub lsn: Lsn,
    pub kind: String,
    pub key: String,
    pub body: String,
}

/// Whether the brand has a row: every brand's first event is `brand.created`, and a
/// brand's row outlives the retention of its events.
pub fn brand_known(conn: &Connection, brand: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row("SELECT 1 FROM brands WHERE brand = ?1", [brand], |_| Ok(())).optional()?.is_some())
}

/// Reads up to `limit` events of `brand` after `after`, with the brand's position, in
/// one read transaction (so the position and the events agree). `None` when the
/// brand has no events at all yet.
pub fn read_after(
    conn: &mut Connection,
    brand: &str,
    after: u64,
    limit: usize,
) -> Result<Option<(BrandPosition, Vec<StoredEvent>)>, StoreError> {
    let tx = conn.transaction()?;
    let row = tx
        .query_row("SELECT brand_no, last_seq, pruned_through FROM brands WHERE brand = ?1", [brand], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
        .optional()?;
    let Some((no, last, pruned)) = row else { return Ok(None) };
    let label: Option<i64> = tx.query_row("SELECT value FROM meta WHERE key = 'history_label'", [], |r| r.get(0)).optional()?;
    let label = label.map(|l| HistoryId(l as u64));
    let pos = BrandPosition { last_seq: last as u64, pruned_through: pruned as u64 };
    let mut rows = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached("SELECT id, lsn, at_ms, type, key, body, event FROM events WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3")?;
        let from = after.max(pos.pruned_through).min(SEQ_MASK as u64);
        let found = stmt.query_map(params![row_id(no, from), row_id(no, pos.last_seq), limit as i64], |r| {
            let row = StoredEvent {
                seq: (r.get::<_, i64>(0)? & SEQ_MASK) as u64,
                lsn: r.get::<_, i64>(1)? as Lsn,
                kind: r.get(3)?,
                key: r.get(4)?,
                body: r.get(5)?,
            };
            Ok((row, Timestamp(r.get(2)?), r.get::<_, Option<Vec<u8>>>(6)?))
        })?;
        for r in found {
            rows.push(r?);
        }
    }
    tx.commit()?;
    // Rendered outside the read transaction; the events of a record share its time.
    let mut at_text = (Timestamp(i64::MIN), String::new());
    let mut events = Vec::with_capacity(rows.len());
    for (mut row, at, encoded) in rows {
        if let Some(bytes) = encoded {
            let undecodable = |reason: String| StoreError::Undecodable { brand: brand.to_string(), seq: row.seq, reason };
            let (index, ev) = decode_feed_event(&bytes).map_err(undecodable)?;
            let data = super::render::data(&ev).ok_or_else(|| undecodable(format!("{} is not a feed event", ev.type_name())))?;
            if at_text.0 != at {
                at_text = (at, at.to_rfc3339());
            }
            row.body = event_json(&event_id(label, row.lsn, index), row.seq, &row.kind, &at_text.1, &data);
        }
        events.push(row);
    }
    Ok(Some((pos, events)))
}

/// A subscription as the delivery side needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    pub brand: BrandId,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_lsn: Lsn,
    /// Delivery starts after this seq of the brand's feed.
    pub start_seq: u64,
}

impl std::fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookRow({} {} {:?})", self.id, self.url, self.events)
    }
}

pub fn load_webhooks(conn: &Connection) -> Result<Vec<WebhookRow>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, brand, url, events, secret, created_lsn, start_seq FROM webhooks ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get::<_, String>(3)?, r.get(4)?),
            (r.get::<_, i64>(5)?, r.get::<_, i64>(6)?),
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let ((id, brand, url, events, secret), (lsn, start)) = r?;
        let Ok(brand) = BrandId::parse(&brand) else { continue };
        let events = serde_json::from_str(&events).unwrap_or_default();
        out.push(WebhookRow { id, brand, url, events, secret, created_lsn: lsn as Lsn, start_seq: start as u64 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
