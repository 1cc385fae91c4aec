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

/// The stock import names the unsellable ops in an `op` column with their `quantity`,
/// and applies them by the API's rules, row by row.
#[test]
fn a_stock_import_marks_releases_and_disposes_of_unsellable_units() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.put("/v1/brands/b1/channels/ec", &t, &json!({"name": "EC"})).expect(201);
    s.set_stock("b1", &t, "S1", "tsukuba", 10);
    let csv = "sku,location,op,quantity,reason\n\
               S1,tsukuba,mark_unsellable,3,damaged\n\
               S1,tsukuba,release_unsellable,1,repaired\n\
               S1,tsukuba,dispose,1,scrapped\n\
               S1,tsukuba,dispose,5,\n\
               S1,tsukuba,explode,1,\n\
               S1,tsukuba,mark_unsellable,,\n\
               S1,tsukuba,mark_unsellable,0,\n";
    let r = s.raw("POST", "/v1/brands/b1/imports?kind=stock", Some(&t), csv.as_bytes().to_vec(), &[("content-type", "text/csv")]);
    let id = r.expect(202)["id"].as_str().unwrap().to_string();
    let mut job = Value::Null;
    assert!(crate::receiver::wait_until(std::time::Duration::from_secs(60), || {
        job = s.get(&format!("/v1/brands/b1/imports/{id}"), &t).expect(200);
        job["status"] == "done"
    }));
    assert_eq!((job["rows_ok"].as_u64(), job["rows_failed"].as_u64()), (Some(3), Some(4)), "{job}");
    let errors: Vec<(u64, &str)> =
        job["errors"].as_array().unwrap().iter().map(|e| (e["row"].as_u64().unwrap(), e["code"].as_str().unwrap())).collect();
    assert_eq!(errors, vec![(5, "insufficient_stock"), (6, "invalid_request"), (7, "invalid_request"), (8, "invalid_request")]);
    assert!(job["errors"][1]["detail"].as_str().unwrap().contains("mark_unsellable, release_unsellable, dispose"), "{job}");
    assert!(job["errors"][2]["detail"].as_str().unwrap().starts_with("quantity"), "{job}");
    // 10 on hand, 3 marked, 1 released, 1 disposed of: 8 on hand, 1 unsellable.
    assert_eq!(level(&s, &t), json!([8, 0, 1, 8, 8]));
    let causes: Vec<Value> = whole_feed(&s, &t)
        .iter()
        .filter(|e| e["type"] == "stock.changed" && e["data"]["cause"]["kind"] != "set")
        .map(|e| e["data"]["cause"].clone())
        .collect();
    let kinds: Vec<&str> = causes.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["mark_unsellable", "release_unsellable", "dispose"]);
    // A header with op needs quantity, and may not mix op with on_hand or delta.
    for header in ["sku,location,op", "sku,location,op,quantity,delta", "sku,location,quantity,on_hand"] {
        let r = s.raw(
            "POST",
            "/v1/brands/b1/imports?kind=stock",
            Some(&t),
            format!("{header}\n").into_bytes(),
            &[("content-type", "text/csv")],
        );
        assert_eq!((r.status, r.code()), (422, "unprocessable"), "{header}: {:?}", r.body);
    }
}
