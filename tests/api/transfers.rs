//! Transfers between locations against the real server: shipping only what is
//! available at the origin, in transit at the destination, partial receipts, the
//! write-off on closing, channel availability following both ends, the feed, and
//! everything surviving a snapshot and SIGKILL.

use serde_json::{json, Value};

use crate::helpers::{whole_feed, TestServer, ADMIN};

const T: &str = "/v1/brands/b1/transfers";

fn at(s: &TestServer, t: &str, loc: &str) -> Value {
    let st = s.stock("b1", t, "S1");
    let l = &st["locations"][loc];
    json!({"on_hand": l["on_hand"], "in_transit": l["in_transit"], "ec": st["channels"]["ec"]["available"],
           "store": st["channels"]["store"]["available"]})
}

#[test]
fn a_transfer_moves_units_from_the_warehouse_to_a_store_and_loses_none_unsaid() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["wh", "shibuya"], &["S1"]);
    s.put("/v1/brands/b1/channels/ec", &t, &json!({"name": "EC", "locations": ["wh"]})).expect(201);
    s.put("/v1/brands/b1/channels/store", &t, &json!({"name": "Store", "locations": ["shibuya"]})).expect(201);
    s.set_stock("b1", &t, "S1", "wh", 10);
    s.post("/v1/brands/b1/reservations", &t, &json!({"id": "R1", "channel": "ec", "lines": [{"sku": "S1", "quantity": 3}]})).expect(201);

    // Seven are available: a transfer of eight is created but cannot ship, and changes nothing.
    let big = json!({"id": "T-BIG", "origin": "wh", "destination": "shibuya", "lines": [{"sku": "S1", "quantity": 8}]});
    assert_eq!(s.post(T, &t, &big).expect(201)["status"], "draft");
    let r = s.post(&format!("{T}/T-BIG/ship"), &t, &json!(null));
    assert_eq!((r.status, r.code()), (409, "insufficient_stock"), "{}", r.body);
    assert_eq!(r.body["shortages"], json!([{"sku": "S1", "requested": 8, "available": 7}]));
    assert_eq!(s.post(&format!("{T}/T-BIG/cancel"), &t, &json!(null)).expect(200)["status"], "cancelled");

    let body = json!({"id": "T1", "origin": "wh", "destination": "shibuya", "lines": [{"sku": "S1", "quantity": 5}]});
    s.post(T, &t, &body).expect(201);
    assert_eq!(s.post(T, &t, &body).expect(200)["id"], "T1", "the same id and body again");
    let shipped = s.post_key(&format!("{T}/T1/ship"), &t, "ship-T1", &json!(null));
    assert_eq!(shipped.body["status"], "shipped");
    let again = s.post_key(&format!("{T}/T1/ship"), &t, "ship-T1", &json!(null));
    assert_eq!((again.status, again.lsn, &again.body), (200, shipped.lsn, &shipped.body), "a retry is the same answer");
    // The EC channel lost the warehouse's units at shipping; the store sees them coming.
    assert_eq!(at(&s, &t, "wh"), json!({"on_hand": 5, "in_transit": 0, "ec": 2, "store": 0}));
    assert_eq!(at(&s, &t, "shibuya"), json!({"on_hand": 0, "in_transit": 5, "ec": 2, "store": 0}));

    let receipt = json!({"lines": [{"sku": "S1", "quantity": 3}]});
    let v = s.post_key(&format!("{T}/T1/receipts"), &t, "rcv-1", &receipt).expect(200);
    assert_eq!((v["status"].as_str(), &v["lines"][0]["in_transit"]), (Some("receiving"), &json!(2)));
    assert_eq!(at(&s, &t, "shibuya"), json!({"on_hand": 3, "in_transit": 2, "ec": 2, "store": 3}));
    let r = s.post(&format!("{T}/T1/receipts"), &t, &json!({"lines": [{"sku": "S1", "quantity": 3}]}));
    assert_eq!((r.status, r.body["errors"][0]["field"].as_str()), (400, Some("lines[0].quantity")), "only 2 are still in transit");
    let v = s.post(&format!("{T}/T1/close"), &t, &json!(null)).expect(200);
    assert_eq!(v["lines"], json!([{"sku": "S1", "quantity": 5, "received": 3, "written_off": 2, "in_transit": 0}]));
    assert_eq!(at(&s, &t, "shibuya"), json!({"on_hand": 3, "in_transit": 0, "ec": 2, "store": 3}));

    let feed: Vec<Value> = whole_feed(&s, &t);
    let transfers: Vec<&str> =
        feed.iter().filter(|e| e["type"].as_str().unwrap().starts_with("transfer.")).map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        transfers,
        ["transfer.created", "transfer.cancelled", "transfer.created", "transfer.shipped", "transfer.received", "transfer.closed"]
    );
    let closed = feed.iter().find(|e| e["type"] == "transfer.closed").unwrap();
    assert_eq!(closed["data"], json!({"id": "T1", "status": "closed", "written_off": [{"sku": "S1", "quantity": 2}]}));
    let causes: Vec<&str> =
        feed.iter().filter(|e| e["type"] == "stock.changed").map(|e| e["data"]["cause"]["kind"].as_str().unwrap()).collect();
    assert!(causes.ends_with(&["transfer_shipped", "transfer_received", "transfer_written_off"]), "{causes:?}");
    // Webhooks take the new types like any other.
    let hook = json!({"url": "https://example.com/hook", "events": ["transfer.shipped", "transfer.closed"]});
    s.post("/v1/brands/b1/webhooks", &t, &hook).expect(201);

    // A snapshot, then SIGKILL: the transfers and levels come back as they were.
    s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201);
    s.post(T, &t, &json!({"id": "T2", "origin": "wh", "destination": "shibuya", "lines": [{"sku": "S1", "quantity": 1}]})).expect(201);
    s.post(&format!("{T}/T2/ship"), &t, &json!(null)).expect(200);
    let before = (s.stock("b1", &t, "S1"), s.get(&format!("{T}/T1"), &t).expect(200), s.get(&format!("{T}/T2"), &t).expect(200));
    s.kill9();
    s.start();
    let after = (s.stock("b1", &t, "S1"), s.get(&format!("{T}/T1"), &t).expect(200), s.get(&format!("{T}/T2"), &t).expect(200));
    assert_eq!(after, before);
    assert_eq!(after.0["total"]["in_transit"], 1);
}

/// Closed and cancelled transfers are forgotten after 30 days; open ones are kept.
#[test]
fn ended_transfers_are_purged_after_their_retention() {
    use crate::helpers::Options;
    let mut s =
        TestServer::spawn_with(Options { args: vec!["--manual-clock".into(), "2026-11-28T00:00:00Z".into()], ..Options::default() });
    let t = s.setup_brand("b1", &["wh", "shibuya"], &["S1"]);
    s.set_stock("b1", &t, "S1", "wh", 10);
    let body = |id: &str| json!({"id": id, "origin": "wh", "destination": "shibuya", "lines": [{"sku": "S1", "quantity": 1}]});
    for id in ["T-A", "T-B", "T-C"] {
        s.post(T, &t, &body(id)).expect(201);
    }
    s.post(&format!("{T}/T-A/cancel"), &t, &json!(null)).expect(200);
    s.post(&format!("{T}/T-B/ship"), &t, &json!(null)).expect(200);
    s.post(&format!("{T}/T-B/close"), &t, &json!(null)).expect(200);
    s.set_args(&["--manual-clock", "2026-12-20T00:00:00Z"]);
    s.restart();
    assert_eq!(s.get(&format!("{T}/T-A"), &t).expect(200)["status"], "cancelled", "22 days: still kept");
    s.set_args(&["--manual-clock", "2026-12-29T00:00:00Z"]);
    s.restart();
    for gone in ["T-A", "T-B"] {
        assert_eq!(s.get(&format!("{T}/{gone}"), &t).status, 404, "{gone} was not purged");
    }
    assert_eq!(s.get(&format!("{T}/T-C"), &t).expect(200)["status"], "draft");
    // The write-off stays on the stock: a purge moves no unit.
    assert_eq!(s.stock("b1", &t, "S1")["total"]["on_hand"], 9);
}
