//! Returns against the real server: from a shipped shipment only, never more than it
//! shipped, inspected into restock, unsellable and missing, shown on the shipment, in
//! the feed, and surviving SIGKILL.

use serde_json::{json, Value};

use crate::helpers::{whole_feed, TestServer};

const R: &str = "/v1/brands/b1/returns";

fn ship(s: &TestServer, t: &str) {
    let body = json!({"id": "SH-1", "order_ref": "EC-1", "lines": [{"sku": "S1", "location": "wh", "quantity": 3}],
                      "ship_to": {"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"}});
    s.post("/v1/brands/b1/shipments", t, &body).expect(201);
    let early = s.post(R, t, &json!({"id": "RT-0", "shipment_id": "SH-1", "reason": "size", "lines": [{"sku": "S1", "quantity": 1}]}));
    assert_eq!((early.status, early.code()), (409, "invalid_transition"), "not shipped yet: {}", early.body);
    for status in ["picking", "packed", "shipped"] {
        s.post("/v1/brands/b1/shipments/SH-1/status", t, &json!({"status": status})).expect(200);
    }
}

fn level(s: &TestServer, t: &str, loc: &str) -> Value {
    let l = &s.stock("b1", t, "S1")["locations"][loc];
    json!([l["on_hand"], l["unsellable"]])
}

#[test]
fn a_return_comes_back_into_restock_unsellable_and_missing() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["wh", "shibuya"], &["S1"]);
    s.set_stock("b1", &t, "S1", "wh", 10);
    ship(&s, &t);
    assert_eq!(level(&s, &t, "wh"), json!([7, 0]));

    let body = json!({"id": "RT-1", "shipment_id": "SH-1", "reason": "サイズ違い", "lines": [{"sku": "S1", "quantity": 3}]});
    let v = s.post(R, &t, &body).expect(201);
    assert_eq!((v["status"].as_str(), &v["lines"][0]["remaining"]), (Some("requested"), &json!(3)));
    assert_eq!(s.post(R, &t, &body).expect(200)["id"], "RT-1", "the same id and body again");
    // The shipment shipped 3 and RT-1 asks for all of them: nothing more can be asked.
    let more = s.post(R, &t, &json!({"id": "RT-2", "shipment_id": "SH-1", "reason": "x", "lines": [{"sku": "S1", "quantity": 1}]}));
    assert_eq!((more.status, more.body["errors"][0]["field"].as_str()), (400, Some("lines[0].quantity")), "{}", more.body);
    assert_eq!(s.post(&format!("{R}/RT-1/in_transit"), &t, &json!(null)).expect(200)["status"], "in_transit");

    let receipt = json!({"lines": [
        {"sku": "S1", "quantity": 1, "disposition": "restock", "location": "shibuya"},
        {"sku": "S1", "quantity": 1, "disposition": "unsellable", "location": "wh"}]});
    let v = s.post_key(&format!("{R}/RT-1/receipts"), &t, "rt-1-a", &receipt).expect(200);
    assert_eq!(v["status"], "receiving");
    assert_eq!((level(&s, &t, "shibuya"), level(&s, &t, "wh")), (json!([1, 0]), json!([7, 1])));
    let again = s.post_key(&format!("{R}/RT-1/receipts"), &t, "rt-1-a", &receipt).expect(200);
    assert_eq!(again, v, "a retried receipt with its key is not received twice");
    assert_eq!(level(&s, &t, "shibuya"), json!([1, 0]));
    let over = s.post(&format!("{R}/RT-1/receipts"), &t, &json!({"lines": [{"sku": "S1", "quantity": 2, "disposition": "missing"}]}));
    assert_eq!((over.status, over.body["errors"][0]["field"].as_str()), (400, Some("lines[0].quantity")));
    let v =
        s.post(&format!("{R}/RT-1/receipts"), &t, &json!({"lines": [{"sku": "S1", "quantity": 1, "disposition": "missing"}]})).expect(200);
    assert_eq!(v["lines"], json!([{"sku": "S1", "quantity": 3, "restocked": 1, "unsellable": 1, "missing": 1, "remaining": 0}]));
    assert_eq!(v["status"], "received");
    assert_eq!(s.post(&format!("{R}/RT-1/close"), &t, &json!(null)).expect(200)["status"], "closed");

    // The shipment shows what came back.
    let sh = s.get("/v1/brands/b1/shipments/SH-1", &t).expect(200);
    assert_eq!(sh["returned"], json!([{"sku": "S1", "requested": 3, "restocked": 1, "unsellable": 1, "missing": 1}]));

    let feed = whole_feed(&s, &t);
    let types: Vec<&str> = feed.iter().map(|e| e["type"].as_str().unwrap()).filter(|t| t.starts_with("return.")).collect();
    assert_eq!(types, ["return.created", "return.in_transit", "return.received", "return.received", "return.closed"]);
    let first = feed.iter().find(|e| e["type"] == "return.received").unwrap();
    assert_eq!(first["data"]["lines"][1], json!({"sku": "S1", "quantity": 1, "disposition": "unsellable", "location": "wh"}));
    let kinds: Vec<&str> = feed
        .iter()
        .filter(|e| e["type"] == "stock.changed" && e["data"]["cause"]["kind"] == "return_received")
        .map(|e| e["data"]["cause"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["RT-1"], "one stock.changed for the receipt that moved stock (missing moves none)");

    let before = (s.get(&format!("{R}/RT-1"), &t).expect(200), s.stock("b1", &t, "S1"), sh);
    s.kill9();
    s.start();
    let after =
        (s.get(&format!("{R}/RT-1"), &t).expect(200), s.stock("b1", &t, "S1"), s.get("/v1/brands/b1/shipments/SH-1", &t).expect(200));
    assert_eq!(after, before);
}

/// Ended returns are forgotten after 30 days, but never while their shipment is kept:
/// a shipment that is still `shipped` keeps its returns, so what was already returned
/// is never forgotten for it.
#[test]
fn ended_returns_are_purged_with_their_shipment_and_not_before() {
    use crate::helpers::Options;
    let mut s =
        TestServer::spawn_with(Options { args: vec!["--manual-clock".into(), "2026-11-28T00:00:00Z".into()], ..Options::default() });
    let t = s.setup_brand("b1", &["wh"], &["S1"]);
    s.set_stock("b1", &t, "S1", "wh", 10);
    ship(&s, &t);
    let body = json!({"id": "SH-2", "lines": [{"sku": "S1", "quantity": 3}],
                      "ship_to": {"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"}});
    s.post("/v1/brands/b1/shipments", &t, &body).expect(201);
    for status in ["picking", "packed", "shipped"] {
        s.post("/v1/brands/b1/shipments/SH-2/status", &t, &json!({"status": status})).expect(200);
    }
    let ret = |id: &str, sh: &str| json!({"id": id, "shipment_id": sh, "reason": "size", "lines": [{"sku": "S1", "quantity": 1}]});
    s.post(R, &t, &ret("RT-1", "SH-1")).expect(201);
    s.post(&format!("{R}/RT-1/cancel"), &t, &json!(null)).expect(200);
    s.post(R, &t, &ret("RT-2", "SH-2")).expect(201);
    s.post(&format!("{R}/RT-2/close"), &t, &json!(null)).expect(200);
    s.post(R, &t, &ret("RT-3", "SH-2")).expect(201);
    s.post("/v1/brands/b1/shipments/SH-1/status", &t, &json!({"status": "delivered"})).expect(200);

    // 31 days later: the first sweep after the start purges.
    s.set_args(&["--manual-clock", "2026-12-29T00:00:00Z"]);
    s.restart();
    assert_eq!(s.get("/v1/brands/b1/shipments/SH-1", &t).status, 404, "the delivered shipment is purged");
    assert_eq!(s.get(&format!("{R}/RT-1"), &t).status, 404, "and its ended return with it");
    assert_eq!(s.get(&format!("{R}/RT-2"), &t).expect(200)["status"], "closed", "SH-2 is kept, so is its return");
    assert_eq!(s.get(&format!("{R}/RT-3"), &t).expect(200)["status"], "requested");
    let sh2 = s.get("/v1/brands/b1/shipments/SH-2", &t).expect(200);
    assert_eq!(sh2["returned"][0]["requested"], 2);
    let over = s.post(R, &t, &json!({"id": "RT-4", "shipment_id": "SH-2", "reason": "x", "lines": [{"sku": "S1", "quantity": 2}]}));
    assert_eq!((over.status, over.body["errors"][0]["field"].as_str()), (400, Some("lines[0].quantity")), "{}", over.body);
    // The purge is a record: it holds across another start.
    s.restart();
    assert_eq!(s.get(&format!("{R}/RT-1"), &t).status, 404);
    assert_eq!(s.get(&format!("{R}/RT-2"), &t).expect(200)["status"], "closed");
}
