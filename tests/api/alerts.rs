//! Low-stock alerts against the real server: a channel's threshold (and a SKU's own),
//! `stock.low`, `stock.out` and `stock.back` once per crossing whatever moves the
//! stock, in the feed, and the bands kept across a restart.

use serde_json::{json, Value};

use crate::helpers::{whole_feed, TestServer, ADMIN};

fn adjust(s: &TestServer, t: &str, key: &str, delta: i64) {
    let body = json!({"changes": [{"sku": "S1", "location": "wh", "op": "adjust", "delta": delta}]});
    assert_eq!(s.post_key("/v1/brands/b1/stock/changes", t, key, &body).expect(200)["results"][0]["status"], "applied");
}

fn alerts(s: &TestServer, t: &str) -> Vec<Value> {
    whole_feed(s, t)
        .into_iter()
        .filter(|e| e["type"].as_str().is_some_and(|x| ["stock.low", "stock.out", "stock.back"].contains(&x)))
        .map(|e| json!([e["type"], e["data"]["channel"], e["data"]["available"], e["data"]["threshold"]]))
        .collect()
}

#[test]
fn stock_low_out_and_back_come_once_per_crossing() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["wh"], &["S1", "S2"]);
    s.put("/v1/brands/b1/channels/ec", &t, &json!({"name": "EC", "buffer": 1})).expect(201);
    s.put("/v1/brands/b1/channels/zozo", &t, &json!({"name": "ZOZO"})).expect(201);
    let r = s.put("/v1/brands/b1/low-stock/ec", &t, &json!({"default": 5, "skus": [{"sku": "S2", "threshold": 50}]}));
    assert_eq!(r.expect(200), json!({"channel": "ec", "default": 5, "skus": [{"sku": "S2", "threshold": 50}]}));
    assert_eq!(s.get("/v1/brands/b1/low-stock/ec", &t).expect(200)["default"], 5);
    let hook = json!({"url": "https://example.com/hook", "events": ["stock.low", "stock.out", "stock.back"]});
    s.post("/v1/brands/b1/webhooks", &t, &hook).expect(201);

    s.set_stock("b1", &t, "S1", "wh", 10); // ec: 9, ok
    adjust(&s, &t, "a1", -4); // ec: 5, ok
    adjust(&s, &t, "a2", -1); // ec: 4, low
    adjust(&s, &t, "a3", -1); // ec: 3, still low: no event
                              // A reservation takes the rest: out, whatever moved the stock.
    s.post("/v1/brands/b1/reservations", &t, &json!({"id": "R1", "channel": "zozo", "lines": [{"sku": "S1", "quantity": 4}]})).expect(201);
    s.post("/v1/brands/b1/reservations/R1/release", &t, &json!({})).expect(200); // ec: 3, low
    adjust(&s, &t, "a4", 10); // ec: 13, back
    adjust(&s, &t, "a5", 1); // ec: 14, no event
    let want = [
        json!(["stock.low", "ec", 4, 5]),
        json!(["stock.out", "ec", 0, 5]),
        json!(["stock.low", "ec", 3, 5]),
        json!(["stock.back", "ec", 13, 5]),
    ];
    assert_eq!(alerts(&s, &t), want, "zozo has no threshold; S1 uses the default");

    // A restart keeps the band: the next change below the threshold is a crossing only once.
    s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201);
    adjust(&s, &t, "a6", -10); // ec: 4, low
    s.kill9();
    s.start();
    adjust(&s, &t, "a7", -1); // ec: 3, still low
    let got = alerts(&s, &t);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[4], json!(["stock.low", "ec", 4, 5]));
}
