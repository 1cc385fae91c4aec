//! Unsellable stock against the real server: units moved into and out of `unsellable`
//! by stock changes, never available to a channel, never taking reserved units, in
//! the feed with their cause, and kept across a snapshot and a SIGKILL.

use serde_json::{json, Value};

use crate::helpers::{whole_feed, TestServer, ADMIN};

fn change(s: &TestServer, t: &str, key: &str, op: &str, quantity: i64) -> Value {
    let body = json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": op, "quantity": quantity, "reason": "検品"}]});
    s.post_key("/v1/brands/b1/stock/changes", t, key, &body).expect(200)["results"][0].clone()
}

fn level(s: &TestServer, t: &str) -> Value {
    let st = s.stock("b1", t, "S1");
    let l = &st["locations"]["tsukuba"];
    json!([l["on_hand"], l["reserved"], l["unsellable"], l["available"], st["channels"]["ec"]["available"]])
}

#[test]
fn unsellable_units_are_never_available_and_never_the_reserved_ones() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.put("/v1/brands/b1/channels/ec", &t, &json!({"name": "EC"})).expect(201);
    s.set_stock("b1", &t, "S1", "tsukuba", 10);
    s.post("/v1/brands/b1/reservations", &t, &json!({"id": "R1", "channel": "ec", "lines": [{"sku": "S1", "quantity": 6}]})).expect(201);

    let r = change(&s, &t, "m1", "mark_unsellable", 3);
    assert_eq!((r["status"].as_str(), r["on_hand"].as_i64(), r["available"].as_i64()), (Some("applied"), Some(7), Some(1)));
    assert_eq!(level(&s, &t), json!([7, 6, 3, 1, 1]));
    // Only one sellable unit is not reserved: the second is refused and changes nothing.
    let r = change(&s, &t, "m2", "mark_unsellable", 2);
    assert_eq!((r["status"].as_str(), r["code"].as_str()), (Some("rejected"), Some("insufficient_stock")), "{r}");
    let r = change(&s, &t, "d1", "dispose", 4);
    assert_eq!(r["code"], "insufficient_stock", "{r}");
    assert_eq!(level(&s, &t), json!([7, 6, 3, 1, 1]));

    assert_eq!(change(&s, &t, "r1", "release_unsellable", 1)["on_hand"], 8);
    assert_eq!(change(&s, &t, "d2", "dispose", 2)["status"], "applied");
    assert_eq!(level(&s, &t), json!([8, 6, 0, 2, 2]));

    let causes: Vec<Value> = whole_feed(&s, &t)
        .into_iter()
        .filter(|e| e["type"] == "stock.changed" && e["data"]["cause"]["reason"] == "検品")
        .map(|e| json!([e["data"]["cause"]["kind"], e["data"]["cause"]["quantity"], e["data"]["locations"]["tsukuba"]["unsellable"]]))
        .collect();
    assert_eq!(causes, [json!(["mark_unsellable", 3, 3]), json!(["release_unsellable", 1, 2]), json!(["dispose", 2, 0])]);

    // A snapshot holds unsellable units, and so does the journal after it.
    change(&s, &t, "m3", "mark_unsellable", 1);
    s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201);
    change(&s, &t, "m4", "mark_unsellable", 1);
    let before = s.stock("b1", &t, "S1");
    assert_eq!(before["locations"]["tsukuba"]["unsellable"], 2);
    assert_eq!(before["total"]["unsellable"], 2);
    s.kill9();
    s.start();
    assert_eq!(s.stock("b1", &t, "S1"), before);
}
