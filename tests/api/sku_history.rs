//! `GET /v1/brands/{brand}/skus/{sku}/history` against the real server: a sequence of
//! operations of every kind (a set and an adjustment with reasons, a reservation, a
//! shipment, an inbound notice and its receipt, a stock import) read back as the
//! SKU's history — cause, delta and levels after each — in both orders and in small
//! pages; the feed's retention and cursor rules; bad input.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{Options, Resp, TestServer, ADMIN};
use crate::receiver::wait_until;

const WAIT: Duration = Duration::from_secs(60);

fn history(s: &TestServer, t: &str, sku: &str, query: &str) -> Resp {
    s.get(&format!("/v1/brands/b1/skus/{sku}/history{query}"), t)
}

/// The whole history in pages of `limit`, following `next`; and the last `next`.
fn read_all(s: &TestServer, t: &str, sku: &str, order: &str, limit: usize) -> (Vec<Value>, String) {
    let (mut out, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let after = cursor.as_ref().map(|c| format!("&after={c}")).unwrap_or_default();
        let page = history(s, t, sku, &format!("?order={order}&limit={limit}{after}")).expect(200);
        assert_eq!(page["sku"], sku);
        let got = page["changes"].as_array().unwrap().clone();
        assert!(got.len() <= limit);
        let next = page["next"].as_str().unwrap().to_string();
        if got.is_empty() {
            return (out, next);
        }
        out.extend(got);
        cursor = Some(next);
    }
}

fn change(s: &TestServer, t: &str, key: &str, c: Value) {
    let r = s.post_key("/v1/brands/b1/stock/changes", t, key, &json!({ "changes": [c] })).expect(200);
    assert_eq!(r["results"][0]["status"], "applied", "{r}");
}

fn import(s: &TestServer, t: &str, csv: &str) -> String {
    let headers = [("content-type", "text/csv")];
    let r = s.raw("POST", "/v1/brands/b1/imports?kind=stock", Some(t), csv.as_bytes().to_vec(), &headers).expect(202);
    let id = r["id"].as_str().unwrap().to_string();
    let done = wait_until(WAIT, || s.get(&format!("/v1/brands/b1/imports/{id}"), t).expect(200)["status"] == "done");
    assert!(done, "the import did not finish");
    id
}

/// What a change should look like: its cause and, at `tsukuba`, the delta of
/// (on_hand, reserved, incoming) and the levels after.
fn summary(c: &Value) -> (Value, (i64, i64, i64), (i64, i64, i64)) {
    let n = |v: &Value, f: &str| v[f].as_i64().unwrap_or(0);
    let d = &c["delta"]["locations"]["tsukuba"];
    let l = &c["locations"]["tsukuba"];
    (c["cause"].clone(), (n(d, "on_hand"), n(d, "reserved"), n(d, "incoming")), (n(l, "on_hand"), n(l, "reserved"), n(l, "incoming")))
}

#[test]
fn the_history_tells_every_change_of_a_sku_with_cause_delta_and_levels() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1", "S2"]);
    change(&s, &t, "k1", json!({"sku": "S1", "location": "tsukuba", "op": "set", "on_hand": 10, "reason": "cycle_count"}));
    change(&s, &t, "k2", json!({"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": -1, "reason": "damaged"}));
    change(&s, &t, "k3", json!({"sku": "S2", "location": "tsukuba", "op": "set", "on_hand": 4}));
    s.post("/v1/brands/b1/reservations", &t, &json!({"id": "R1", "channel": "zozotown", "lines": [{"sku": "S1", "quantity": 3}]}))
        .expect(201);
    let ship_to = json!({"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"});
    s.post("/v1/brands/b1/shipments", &t, &json!({"id": "SH1", "reservation_id": "R1", "ship_to": ship_to})).expect(201);
    for status in ["picking", "packed", "shipped"] {
        s.post("/v1/brands/b1/shipments/SH1/status", &t, &json!({ "status": status })).expect(200);
    }
    s.post("/v1/brands/b1/inbounds", &t, &json!({"id": "IN1", "location": "tsukuba", "lines": [{"sku": "S1", "quantity": 5}]})).expect(201);
    s.post("/v1/brands/b1/inbounds/IN1/receipts", &t, &json!({"lines": [{"sku": "S1", "quantity": 5}]})).expect(200);
    let job = import(&s, &t, "sku,location,delta,reason\nS1,tsukuba,7,restock\nS2,tsukuba,1,\n");

    let (all, next) = read_all(&s, &t, "S1", "oldest_first", 2);
    let got: Vec<_> = all.iter().map(summary).collect();
    let expected = vec![
        (json!({"kind": "set", "on_hand": 10, "reason": "cycle_count"}), (10, 0, 0), (10, 0, 0)),
        (json!({"kind": "adjust", "delta": -1, "reason": "damaged"}), (-1, 0, 0), (9, 0, 0)),
        (json!({"kind": "reserved", "id": "R1"}), (0, 3, 0), (9, 3, 0)),
        (json!({"kind": "shipped", "id": "SH1"}), (-3, -3, 0), (6, 0, 0)),
        (json!({"kind": "inbound", "id": "IN1"}), (0, 0, 5), (6, 0, 5)),
        (json!({"kind": "received", "id": "IN1"}), (5, 0, -5), (11, 0, 0)),
        (json!({"kind": "adjust", "delta": 7, "reason": "restock", "import": job}), (7, 0, 0), (18, 0, 0)),
    ];
    assert_eq!(got, expected);
    // Each change has its time, feed seq and id, and the versions count every change.
    for (i, c) in all.iter().enumerate() {
        assert_eq!(c["version"], i as u64 + 1);
        assert!(c["at"].as_str().unwrap().ends_with('Z'), "{c}");
        assert!(c["id"].as_str().unwrap().starts_with("evt_"));
    }
    assert_eq!(all[2]["delta"]["total"]["available"], -3);
    assert_eq!(all[2]["channels"]["zozotown"], Value::Null, "no channel configured: none shown");
    // The same changes, newest first, in other pages.
    let (newest, _) = read_all(&s, &t, "S1", "newest_first", 3);
    assert_eq!(newest.iter().rev().cloned().collect::<Vec<_>>(), all);
    // The history is the feed's: each change is a stock.changed event with that seq.
    let feed = s.get("/v1/brands/b1/events?limit=1000", &t).expect(200);
    let seqs: Vec<&Value> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "stock.changed" && e["data"]["sku"] == "S1")
        .map(|e| &e["seq"])
        .collect();
    assert_eq!(seqs, all.iter().map(|c| &c["seq"]).collect::<Vec<_>>());
    // From the last `next`, only what comes after: S2's changes are not S1's.
    change(&s, &t, "k4", json!({"sku": "S2", "location": "tsukuba", "op": "adjust", "delta": 1}));
    assert_eq!(history(&s, &t, "S1", &format!("?after={next}")).expect(200)["changes"], json!([]));
    change(&s, &t, "k5", json!({"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": -2, "reason": "sold_in_store"}));
    let after = history(&s, &t, "S1", &format!("?after={next}")).expect(200);
    assert_eq!(summary(&after["changes"][0]).1, (-2, 0, 0));
    let s2: Vec<_> = read_all(&s, &t, "S2", "oldest_first", 100).0.iter().map(|c| c["cause"]["kind"].clone()).collect();
    assert_eq!(s2, vec![json!("set"), json!("adjust"), json!("adjust")]);
}

#[test]
fn the_history_keeps_the_feeds_retention_and_cursor_rules() {
    let s = TestServer::spawn_with(Options { args: vec!["--feed-retention-events".into(), "4".into()], ..Options::default() });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    for i in 0..6 {
        change(&s, &t, &format!("k{i}"), json!({"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}));
    }
    // 8 events (the brand, the SKU, 6 changes): the newest 4 kept.
    let kept = read_all(&s, &t, "S1", "oldest_first", 100).0;
    assert_eq!(kept.iter().map(|c| c["version"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
    assert!(kept[0]["delta"].is_null(), "its previous change is gone: {}", kept[0]);
    assert_eq!(kept[1]["delta"]["total"]["on_hand"], 1);
    let gone = history(&s, &t, "S1", "?after=2");
    assert_eq!((gone.status, gone.code()), (410, "cursor_expired"), "{:?}", gone.body);
    assert_eq!(gone.content_type, "application/problem+json");
    // Unknown SKUs and brands are 404; another brand's token is 403.
    for (path, status) in [("/v1/brands/b1/skus/NOPE/history", 404), ("/v1/brands/nope/skus/S1/history", 404)] {
        let r = s.get(path, ADMIN);
        assert_eq!((r.status, r.code()), (status, "not_found"), "{path}: {:?}", r.body);
    }
    let other = s.setup_brand("b2", &[], &[]);
    assert_eq!(history(&s, &other, "S1", "").status, 403);
}
