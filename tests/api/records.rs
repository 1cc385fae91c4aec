//! No command builds a record the journal refuses for its size (issue 18): the expiry
//! sweep, the purges and a channel reconfiguration write bounded records however much is
//! due, and a request whose change would not fit in one record is refused up front with
//! 413 `payload_too_large`, changing nothing. The journal's record limit is lowered
//! (`--wal-record-bytes-max 65536`, the smallest allowed) so that the limit is reached
//! with a few hundred objects.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{rand_suffix, whole_feed, Options, TestServer, ADMIN};
use crate::receiver::wait_until;

const WAIT: Duration = Duration::from_secs(120);
const LIMIT: usize = 65536;
const T0: &str = "2026-11-28T00:00:00Z";

fn args(extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--wal-record-bytes-max".to_string(), LIMIT.to_string()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// An id of `len` characters ending in `n` (ids may be 128 characters long).
fn long_id(prefix: &str, n: usize, len: usize) -> String {
    let tail = format!("{prefix}-{n}");
    format!("{}{tail}", "x".repeat(len - tail.len()))
}

fn changes(s: &TestServer, t: &str, changes: Vec<Value>) -> crate::helpers::Resp {
    s.post_key("/v1/brands/b1/stock/changes", t, &format!("c-{}", rand_suffix()), &json!({ "changes": changes }))
}

fn set_all(s: &TestServer, t: &str, sets: Vec<Value>, per_request: usize) {
    for batch in sets.chunks(per_request) {
        let r = changes(s, t, batch.to_vec());
        let body = r.expect(200);
        assert!(body["results"].as_array().unwrap().iter().all(|x| x["status"] == "applied"), "{body}");
    }
}

#[test]
fn reservations_due_at_once_all_expire_however_many_records_they_take() {
    let s = TestServer::spawn_with(Options { args: args(&["--manual-clock", T0]), ..Options::default() });
    let skus: Vec<String> = (0..100).map(|i| format!("S{i:02}")).collect();
    let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    let t = s.setup_brand("b1", &["tsukuba"], &refs);
    set_all(&s, &t, skus.iter().map(|k| json!({"sku": k, "location": "tsukuba", "op": "set", "on_hand": 1000})).collect(), 100);
    // Each expiry of a 100-line reservation records 100 SKUs' stock, at least 20 bytes
    // each: enough reservations for three times the record limit.
    let n = 3 * LIMIT / (100 * 20) + 1;
    let lines: Vec<Value> = skus.iter().map(|k| json!({"sku": k, "quantity": 1})).collect();
    for i in 0..n {
        let body = json!({"id": format!("R{i}"), "channel": "zozotown", "ttl_seconds": 60, "lines": lines});
        s.post("/v1/brands/b1/reservations", &t, &body).expect(201);
    }
    assert_eq!(s.stock("b1", &t, "S00")["total"]["reserved"], n);
    s.post("/v1/admin/clock", ADMIN, &json!({"advance_seconds": 120})).expect(200);
    for i in 0..n {
        assert_eq!(s.get(&format!("/v1/brands/b1/reservations/R{i}"), &t).expect(200)["status"], "expired", "R{i}");
    }
    for k in &skus {
        assert_eq!(s.stock("b1", &t, k)["total"]["reserved"], 0, "{k}");
    }
    let ship = json!({"id": "SH1", "reservation_id": "R0",
        "ship_to": {"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"}});
    let r = s.post("/v1/brands/b1/shipments", &t, &ship);
    assert_eq!((r.status, r.code()), (409, "invalid_transition"), "{:?}", r.body);
    let expired = whole_feed(&s, &t).iter().filter(|e| e["type"] == "reservation.expired").count();
    assert_eq!(expired, n, "each expiry is in the feed once");
}

#[test]
fn purges_of_many_long_ids_are_written_in_bounded_records() {
    let mut s = TestServer::spawn_with(Options { args: args(&["--manual-clock", T0]), ..Options::default() });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 1000);
    // 600 purges of 128-character ids take more than 64 KiB.
    let ids: Vec<String> = (0..600).map(|i| long_id("R", i, 128)).collect();
    for id in &ids {
        let body = json!({"id": id, "channel": "zozotown", "lines": [{"sku": "S1", "quantity": 1}]});
        s.post("/v1/brands/b1/reservations", &t, &body).expect(201);
        s.post(&format!("/v1/brands/b1/reservations/{id}/release"), &t, &json!({})).expect(200);
    }
    // Eight days later the released reservations are past their retention; the first
    // sweep after a start purges.
    s.set_args(&["--wal-record-bytes-max", &LIMIT.to_string(), "--manual-clock", "2026-12-06T00:00:00Z"]);
    s.restart();
    for id in &ids {
        let r = s.get(&format!("/v1/brands/b1/reservations/{id}"), &t);
        assert_eq!(r.status, 404, "{id} was not purged: {:?}", r.body);
    }
}

#[test]
fn a_channel_reconfiguration_streams_in_records_within_the_limit() {
    let s = TestServer::spawn_with(Options { args: args(&[]), ..Options::default() });
    let t = s.setup_brand("b1", &["tsukuba"], &[]);
    // 600 SKUs of 128-character ids: their availability is more than 64 KiB.
    let skus: Vec<String> = (0..600).map(|i| long_id("S", i, 128)).collect();
    for k in &skus {
        s.put(&format!("/v1/brands/b1/skus/{k}"), &t, &json!({"name": "商品"})).expect(201);
    }
    s.put("/v1/brands/b1/channels/zozotown", &t, &json!({"name": "ZOZOTOWN", "buffer": 1})).expect(201);
    let mut steps = Vec::new();
    let done = wait_until(WAIT, || {
        steps = whole_feed(&s, &t).into_iter().filter(|e| e["type"] == "channel.availability_changed").collect();
        steps.last().is_some_and(|e| e["data"]["done"] == true)
    });
    assert!(done, "the reconfiguration did not finish; {} steps", steps.len());
    let covered: usize = steps.iter().map(|e| e["data"]["skus"].as_array().unwrap().len()).sum();
    assert_eq!(covered, skus.len(), "a new channel's availability is sent for every SKU");
    assert!(steps.len() >= 2, "more than the record limit takes more than one step");
}

#[test]
fn a_stock_change_batch_over_the_record_limit_is_refused_whole_and_changes_nothing() {
    let s = TestServer::spawn_with(Options { args: args(&[]), ..Options::default() });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 10);
    let before = s.stock("b1", &t, "S1");
    let adjust = |n: usize| (0..n).map(|_| json!({"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1})).collect::<Vec<_>>();
    // 1000 changes and their answers make a record of more than 64 KiB.
    let r = changes(&s, &t, adjust(1000));
    assert_eq!((r.status, r.code()), (413, "payload_too_large"), "{:?}", r.body);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains(&LIMIT.to_string()) && detail.contains("fewer changes"), "{detail}");
    assert!(r.lsn.is_none());
    assert_eq!(s.stock("b1", &t, "S1"), before, "nothing was applied");
    // A batch that fits is applied.
    assert_eq!(changes(&s, &t, adjust(100)).expect(200)["results"][99]["status"], "applied");
    assert_eq!(s.stock("b1", &t, "S1")["total"]["on_hand"], 110);
}

#[test]
fn reservations_and_shipments_whose_record_would_not_fit_are_refused_and_hold_nothing() {
    // Set up with the default limit, then restart with the smallest: the SKUs' stock at
    // 30 locations of 100-character ids takes ~3 KB per SKU in every record.
    let mut s = TestServer::spawn();
    let locs: Vec<String> = (0..30).map(|i| long_id("L", i, 100)).collect();
    let loc_refs: Vec<&str> = locs.iter().map(String::as_str).collect();
    let skus: Vec<String> = (0..100).map(|i| format!("S{i:02}")).collect();
    let sku_refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    let t = s.setup_brand("b1", &loc_refs, &sku_refs);
    let sets = skus.iter().flat_map(|k| locs.iter().map(move |l| json!({"sku": k, "location": l, "op": "set", "on_hand": 5}))).collect();
    set_all(&s, &t, sets, 500);
    s.set_args(&["--wal-record-bytes-max", &LIMIT.to_string()]);
    s.restart();
    let lines = |n: usize| skus[..n].iter().map(|k| json!({"sku": k, "quantity": 1})).collect::<Vec<_>>();
    let r = s.post("/v1/brands/b1/reservations", &t, &json!({"id": "R-BIG", "channel": "zozotown", "lines": lines(100)}));
    assert_eq!((r.status, r.code()), (413, "payload_too_large"), "{:?}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("fewer lines"), "{:?}", r.body);
    assert_eq!(s.get("/v1/brands/b1/reservations/R-BIG", &t).status, 404);
    let ship_to = json!({"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"});
    let r = s.post("/v1/brands/b1/shipments", &t, &json!({"id": "SH-BIG", "lines": lines(100), "ship_to": ship_to}));
    assert_eq!((r.status, r.code()), (413, "payload_too_large"), "{:?}", r.body);
    assert_eq!(s.get("/v1/brands/b1/shipments/SH-BIG", &t).status, 404);
    for k in &skus {
        assert_eq!(s.stock("b1", &t, k)["total"]["reserved"], 0, "{k}: nothing is held");
    }
    // Fewer lines fit.
    s.post("/v1/brands/b1/reservations", &t, &json!({"id": "R-SMALL", "channel": "zozotown", "lines": lines(5)})).expect(201);
    assert_eq!(s.stock("b1", &t, "S00")["total"]["reserved"], 1);
}
