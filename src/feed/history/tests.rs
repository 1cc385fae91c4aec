//! A SKU's history read from a real store: deltas between versions, the import that
//! made a change, both orders, and the retention and index the feed's rows have.

use super::*;
use crate::domain::event::Cause;
use crate::domain::stock::StockOp;
use crate::domain::BrandId;
use crate::feed::store::{open_reader, Batch, NewEvent, Retention, Store};
use crate::journal::history::History;

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

const KEEP_ALL: Retention = Retention { max_age_ms: i64::MAX / 2, max_events_per_brand: u64::MAX / 2 };

fn first() -> History {
    History { id: HistoryId(1), ..History::initial(crate::journal::history::Cause::New) }
}

/// A `stock.changed` of `sku` at version `version` with `on_hand` at `tsukuba`.
fn changed(lsn: u64, sku: &str, version: u64, on_hand: i64, reserved: i64, cause: Cause) -> NewEvent {
    let levels = Levels(Box::new([(id("tsukuba"), Level { on_hand, reserved, ..Level::default() })]));
    let ev = Event::StockChanged { sku: id(sku), version, levels, channels: vec![(id("ec"), on_hand - reserved)], cause };
    NewEvent::of(&BrandId::parse("b1").unwrap(), lsn, 0, Timestamp(lsn as i64 * 1000), &ev).unwrap()
}

fn adjust(delta: i64, reason: &str) -> Cause {
    Cause::Change { op: StockOp::Adjust { delta }, reason: Some(reason.into()) }
}

fn page(conn: &mut Connection, sku: &str, after: Option<u64>, order: Order, limit: usize) -> Vec<serde_json::Value> {
    let read = read(conn, "b1", &id(sku), after, order, limit).unwrap().unwrap();
    read.changes.iter().map(|c| serde_json::from_str(c).unwrap()).collect()
}

#[test]
fn each_change_has_its_cause_levels_and_delta_from_the_version_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    let mut imported = changed(4, "S1", 3, 12, 2, Cause::Change { op: StockOp::Set { on_hand: 12 }, reason: None });
    imported.import = Some(id("job-1"));
    let events = vec![
        changed(1, "S1", 1, 10, 0, adjust(10, "opening")),
        changed(2, "S2", 1, 5, 0, adjust(5, "opening")),
        changed(3, "S1", 2, 10, 2, Cause::Reserved { id: id("R-1") }),
        imported,
    ];
    s.commit(&Batch { events, last_lsn: 4, ..Batch::default() }).unwrap();
    let mut r = open_reader(&path).unwrap();
    let got = page(&mut r, "S1", None, Order::OldestFirst, 10);
    assert_eq!(got.iter().map(|c| c["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 3, 4], "only S1's changes");
    assert_eq!(got[0]["cause"], serde_json::json!({"kind": "adjust", "delta": 10, "reason": "opening"}));
    assert_eq!(got[0]["delta"]["locations"]["tsukuba"]["on_hand"], 10, "the first version is against nothing");
    assert_eq!(got[1]["cause"], serde_json::json!({"kind": "reserved", "id": "R-1"}));
    assert_eq!(
        got[1]["delta"]["total"],
        serde_json::json!({"on_hand": 0, "reserved": 2, "safety_stock": 0, "available": -2, "incoming": 0, "unsellable": 0, "in_transit": 0})
    );
    assert_eq!(got[1]["locations"]["tsukuba"]["available"], 8);
    assert_eq!(got[1]["channels"]["ec"]["available"], 8);
    assert_eq!(got[2]["cause"]["import"], "job-1");
    assert_eq!(got[2]["delta"]["total"]["on_hand"], 2);
    assert_eq!(got[2]["id"], "evt_4_0");
    assert_eq!(got[2]["at"], "1970-01-01T00:00:04.000Z");
    // A page that starts later still has the delta of its first change.
    let later = page(&mut r, "S1", Some(3), Order::OldestFirst, 10);
    assert_eq!(later.len(), 1);
    assert_eq!(later[0]["delta"]["total"]["on_hand"], 2);
    // Newest first, in pages of one: the same changes backwards, with the same deltas.
    let newest = page(&mut r, "S1", None, Order::NewestFirst, 1);
    assert_eq!((newest[0]["seq"].as_u64(), newest[0]["delta"]["total"]["on_hand"].as_i64()), (Some(4), Some(2)));
    let older = page(&mut r, "S1", Some(4), Order::NewestFirst, 2);
    assert_eq!(older.iter().map(|c| c["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 1]);
    assert_eq!(older[0]["delta"]["total"]["reserved"], 2);
}

#[test]
fn a_change_whose_previous_version_is_gone_has_no_delta() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, Retention { max_age_ms: i64::MAX / 2, max_events_per_brand: 2 }, &first(), &[]).unwrap();
    let events = (1..=4).map(|v| changed(v, "S1", v, v as i64, 0, adjust(1, "count"))).collect();
    s.commit(&Batch { events, last_lsn: 4, ..Batch::default() }).unwrap();
    let mut r = open_reader(&path).unwrap();
    let got = page(&mut r, "S1", None, Order::OldestFirst, 10);
    assert_eq!(got.iter().map(|c| c["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 4], "the retention drops history too");
    assert!(got[0]["delta"].is_null(), "version 2 is no longer kept: {}", got[0]);
    assert_eq!(got[1]["delta"]["total"]["on_hand"], 1);
}

#[test]
fn the_history_is_read_through_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    drop(Store::open(&path, KEEP_ALL, &first(), &[]).unwrap());
    let r = open_reader(&path).unwrap();
    let plan: Vec<String> = r
        .prepare(&format!("EXPLAIN QUERY PLAN {COLUMNS} AND id > ?2 AND id <= ?3 ORDER BY id LIMIT ?4"))
        .unwrap()
        .query_map(params!["sku:S1", 0, 10, 10], |row| row.get::<_, String>(3))
        .unwrap()
        .map(|p| p.unwrap())
        .collect();
    assert!(plan.iter().any(|p| p.contains("USING INDEX events_stock_by_sku")), "{plan:?}");
    assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "no sort: {plan:?}");
}
