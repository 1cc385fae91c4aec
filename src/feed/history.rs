//! A SKU's stock history (`GET /v1/brands/{brand}/skus/{sku}/history`): the brand's
//! `stock.changed` events of that SKU, read from the feed store.
//!
//! Why from the feed and not a store of its own: the feed already keeps every change
//! of every brand, once, in commit order, with the history and retention rules its
//! cursors follow. A partial index of its events (`events_stock_by_sku`, see
//! `store.rs`) finds one SKU's changes with a range scan, is written in the feed's own
//! transaction and pruned with its rows, so the history is exactly the feed's
//! `stock.changed` events of the SKU: the same retention, the same cursors (a history
//! cursor is the feed seq of a change), the same 410s.
//!
//! Each change is rendered with the levels after it (events carry resulting values)
//! and its `delta`: the difference from the SKU's previous change, found as the
//! stored event one version earlier. Versions count every stock change of a SKU from
//! 1, so the first change's delta is against nothing, and a change whose previous one
//! is no longer kept (retention, or a new journal history) has `delta: null`.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::render::{cause_view, event_id, CauseView};
use super::store::{row_id, BrandPosition, StoreError, SEQ_MASK};
use crate::domain::event::{decode_feed_event, Event};
use crate::domain::stock::{Level, Levels};
use crate::domain::view::{ChannelAvailableView, LevelView, StockView};
use crate::domain::{Id, Timestamp};
use crate::journal::history::HistoryId;

/// Most changes in one page of a SKU's history.
pub const LIMIT_MAX: usize = 1000;
pub const LIMIT_DEFAULT: usize = 100;

/// Which way a page goes from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Changes after the cursor, oldest first (the feed's order).
    OldestFirst,
    /// Changes before the cursor, newest first.
    NewestFirst,
}

/// What one read of the store found.
#[derive(Debug)]
pub struct Read {
    pub pos: BrandPosition,
    /// Each change as its JSON object, in the page's order.
    pub changes: Vec<String>,
    /// The seq of the last change of the page.
    pub last: Option<u64>,
}

/// One stored `stock.changed` row.
struct Row {
    seq: u64,
    lsn: u64,
    at: Timestamp,
    body: String,
    event: Option<Vec<u8>>,
}

const COLUMNS: &str = "SELECT id, lsn, at_ms, body, event FROM events WHERE key = ?1 AND type = 'stock.changed'";

fn rows(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Row>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let found = stmt.query_map(args, |r| {
        Ok(Row {
            seq: (r.get::<_, i64>(0)? & SEQ_MASK) as u64,
            lsn: r.get::<_, i64>(1)? as u64,
            at: Timestamp(r.get(2)?),
            body: r.get(3)?,
            event: r.get(4)?,
        })
    })?;
    Ok(found.collect::<Result<_, _>>()?)
}

/// Reads up to `limit` changes of `sku` in `brand`'s feed from the cursor `after`
/// (a seq), with the brand's position, in one read transaction; `None` when the brand
/// has no events yet. The cursor is not checked here (`Feed::history` does).
pub fn read(
    conn: &mut Connection,
    brand: &str,
    sku: &Id,
    after: Option<u64>,
    order: Order,
    limit: usize,
) -> Result<Option<Read>, StoreError> {
    let tx = conn.transaction()?;
    let row = tx
        .query_row("SELECT brand_no, last_seq, pruned_through FROM brands WHERE brand = ?1", [brand], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
        .optional()?;
    let Some((no, last, pruned)) = row else { return Ok(None) };
    let pos = BrandPosition { last_seq: last as u64, pruned_through: pruned as u64 };
    let label: Option<i64> = tx.query_row("SELECT value FROM meta WHERE key = 'history_label'", [], |r| r.get(0)).optional()?;
    let key = format!("sku:{sku}");
    let oldest = row_id(no, pos.pruned_through);
    // The page, and before it in time the change preceding its oldest (for its delta).
    let (page, previous) = match order {
        Order::OldestFirst => {
            let from = row_id(no, after.unwrap_or(0).max(pos.pruned_through).min(pos.last_seq));
            let page = rows(
                &tx,
                &format!("{COLUMNS} AND id > ?2 AND id <= ?3 ORDER BY id LIMIT ?4"),
                params![key, from, row_id(no, pos.last_seq), limit as i64],
            )?;
            let previous = rows(&tx, &format!("{COLUMNS} AND id > ?2 AND id <= ?3 ORDER BY id DESC LIMIT 1"), params![key, oldest, from])?;
            (page, previous.into_iter().next())
        }
        Order::NewestFirst => {
            let before = row_id(no, after.map_or(pos.last_seq + 1, |a| a.min(pos.last_seq + 1)));
            let mut page = rows(
                &tx,
                &format!("{COLUMNS} AND id > ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4"),
                params![key, oldest, before, limit as i64 + 1],
            )?;
            let previous = if page.len() > limit { page.pop() } else { None };
            page.reverse();
            (page, previous)
        }
    };
    let mut imports = tx.prepare_cached("SELECT job FROM import_records WHERE brand = ?1 AND lsn = ?2")?;
    let label = label.map(|l| HistoryId(l as u64));
    let mut changes = Vec::with_capacity(page.len());
    let mut before = previous.as_ref().map(|r| decode(brand, r)).transpose()?.flatten();
    for r in &page {
        let import: Option<String> = imports.query_row(params![brand, r.lsn as i64], |x| x.get(0)).optional()?;
        let now = decode(brand, r)?;
        changes.push(render(label, r, now.as_ref(), before.as_ref(), import.as_deref())?);
        before = now;
    }
    drop(imports);
    tx.commit()?;
    if order == Order::NewestFirst {
        changes.reverse();
    }
    let last = match order {
        Order::OldestFirst => page.last().map(|r| r.seq),
        Order::NewestFirst => page.first().map(|r| r.seq),
    };
    Ok(Some(Read { pos, changes, last }))
}

/// A decoded `stock.changed` event: its index in the record, version, levels,
/// channels and cause. `None` for a row stored as JSON only (schema 1).
struct Change {
    index: usize,
    event: Event,
}

fn decode(brand: &str, r: &Row) -> Result<Option<Change>, StoreError> {
    let Some(bytes) = &r.event else { return Ok(None) };
    let undecodable = |reason: String| StoreError::Undecodable { brand: brand.to_string(), seq: r.seq, reason };
    let (index, event) = decode_feed_event(bytes).map_err(undecodable)?;
    if !matches!(event, Event::StockChanged { .. }) {
        return Err(undecodable(format!("{} stored as stock.changed", event.type_name())));
    }
    Ok(Some(Change { index, event }))
}

/// Why the stock changed: the feed's `cause`, and the import job whose row it was.
#[derive(Serialize)]
struct CauseWithImport<'a> {
    #[serde(flatten)]
    cause: CauseView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<&'a str>,
}

#[derive(Serialize)]
struct DeltaView {
    /// Only the locations whose levels changed.
    locations: BTreeMap<Id, LevelView>,
    total: LevelView,
}

#[derive(Serialize)]
struct ChangeView<'a> {
    seq: u64,
    id: String,
    at: String,
    #[serde(flatten)]
    stock: StockView,
    cause: CauseWithImport<'a>,
    delta: Option<DeltaView>,
}

fn diff(after: &Level, before: &Level) -> LevelView {
    LevelView {
        on_hand: after.on_hand - before.on_hand,
        reserved: after.reserved - before.reserved,
        safety_stock: after.safety_stock - before.safety_stock,
        available: after.available() - before.available(),
        incoming: after.incoming - before.incoming,
        unsellable: after.unsellable - before.unsellable,
        in_transit: after.in_transit - before.in_transit,
    }
}

fn available(levels: &Levels) -> i64 {
    levels.iter().map(|(_, l)| l.available()).sum()
}

/// The difference between two levels of a SKU, over every location either has.
fn delta(after: &Levels, before: &Levels) -> DeltaView {
    let mut locations = BTreeMap::new();
    let places = after.iter().chain(before.iter()).map(|(loc, _)| loc);
    for loc in places {
        let d = diff(&after.get(loc), &before.get(loc));
        let zero = d.on_hand == 0
            && d.reserved == 0
            && d.safety_stock == 0
            && d.available == 0
            && d.incoming == 0
            && d.unsellable == 0
            && d.in_transit == 0;
        if !zero && !locations.contains_key(loc) {
            locations.insert(loc.clone(), d);
        }
    }
    let mut total = diff(&after.total(), &before.total());
    // As in the stock view: the total's available is the sum of the locations'.
    total.available = available(after) - available(before);
    DeltaView { locations, total }
}

fn render(
    label: Option<HistoryId>,
    r: &Row,
    now: Option<&Change>,
    before: Option<&Change>,
    import: Option<&str>,
) -> Result<String, StoreError> {
    let Some(Change { index, event: Event::StockChanged { sku, version, levels, channels, cause } }) = now else {
        return Ok(legacy(r));
    };
    let previous = match before.map(|b| &b.event) {
        Some(Event::StockChanged { version: v, levels: l, .. }) if *v + 1 == *version => Some(l.clone()),
        _ if *version == 1 => Some(Levels::default()),
        _ => None,
    };
    let mut stock = StockView::new(sku, *version, levels);
    stock.channels = channels.iter().map(|(c, available)| (c.clone(), ChannelAvailableView { available: *available })).collect();
    let view = ChangeView {
        seq: r.seq,
        id: event_id(label, r.lsn, *index),
        at: r.at.to_rfc3339(),
        stock,
        cause: CauseWithImport { cause: cause_view(cause), import },
        delta: previous.map(|p| delta(levels, &p)),
    };
    Ok(serde_json::to_string(&view).expect("history views serialise"))
}

/// A change stored as JSON only (schema 1): its `data` with the event's seq, id and
/// time, and no delta.
fn legacy(r: &Row) -> String {
    let ev: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    let mut out = serde_json::json!({ "seq": r.seq, "id": ev["id"], "at": ev["at"] });
    if let (Some(o), Some(data)) = (out.as_object_mut(), ev["data"].as_object()) {
        o.extend(data.clone());
    }
    out["delta"] = serde_json::Value::Null;
    out.to_string()
}

#[cfg(test)]
mod tests;
