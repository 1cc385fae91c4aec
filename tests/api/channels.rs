//! Channels and inbound stock against the real server.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::helpers::TestServer;

#[test]
fn a_storm_on_one_channel_cannot_take_what_another_channel_holds_back() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba", "store-shibuya"], &["HOT"]);
    s.set_stock("b1", &t, "HOT", "tsukuba", 10);
    s.set_stock("b1", &t, "HOT", "store-shibuya", 5);
    s.put("/v1/brands/b1/channels/zozotown", &t, &json!({"name": "ZOZOTOWN", "locations": ["tsukuba"], "buffer": 2})).expect(201);
    s.put("/v1/brands/b1/channels/store", &t, &json!({"name": "店頭", "locations": ["store-shibuya"]})).expect(201);
    let st = s.stock("b1", &t, "HOT");
    assert_eq!(st["channels"], json!({"store": {"available": 5}, "zozotown": {"available": 8}}));
    let ok = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for c in 0..8 {
            let (s, t, ok) = (&s, &t, &ok);
            scope.spawn(move || {
                for i in 0..5 {
                    let r = s.post(
                        "/v1/brands/b1/reservations",
                        t,
                        &json!({"id": format!("Z-{c}-{i}"), "channel": "zozotown", "lines": [{"sku": "HOT", "quantity": 1}]}),
                    );
                    match r.status {
                        201 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        409 => assert_eq!(r.code(), "insufficient_stock"),
                        other => panic!("{other}: {}", r.body),
                    }
                }
            });
        }
    });
    assert_eq!(ok.load(Ordering::Relaxed), 8, "10 at tsukuba minus the buffer of 2");
    let st = s.stock("b1", &t, "HOT");
    assert_eq!(st["locations"]["store-shibuya"]["reserved"], 0, "the store's units were never touched");
    assert_eq!(st["channels"]["zozotown"]["available"], 0);
    assert_eq!(st["channels"]["store"]["available"], 5);
    // The store channel still sells its 5, and only from the store.
    let r = s
        .post("/v1/brands/b1/reservations", &t, &json!({"id": "S-1", "channel": "store", "lines": [{"sku": "HOT", "quantity": 5}]}))
        .expect(201);
    assert_eq!(r["lines"], json!([{"sku": "HOT", "location": "store-shibuya", "quantity": 5}]));
}

#[test]
fn a_misspelt_channel_is_refused_once_the_brand_has_channels() {
    let s = TestServer::spawn();
    let locations = ["tsukuba", "kashiwa", "osaka", "store-shibuya"];
    let t = s.setup_brand("b1", &locations, &["S1"]);
    for (loc, n) in locations.iter().zip([20, 15, 15, 30]) {
        s.set_stock("b1", &t, "S1", loc, n);
    }
    s.put("/v1/brands/b1/channels/zozotown", &t, &json!({"name": "ZOZOTOWN", "locations": ["tsukuba", "kashiwa", "osaka"], "buffer": 3}))
        .expect(201);
    let reserve = |id: &str, channel: &str| {
        s.post("/v1/brands/b1/reservations", &t, &json!({"id": id, "channel": channel, "lines": [{"sku": "S1", "quantity": 50}]}))
    };
    let r = reserve("R-1", "zozotwon");
    assert_eq!((r.status, r.code()), (422, "unknown_channel"), "{}", r.body);
    assert!(r.content_type.starts_with("application/problem+json"));
    assert!(r.body["detail"].as_str().unwrap().contains("zozotown"), "the detail names the brand's channels: {}", r.body);
    let r = reserve("R-2", "zozotown");
    assert_eq!((r.status, r.code()), (409, "insufficient_stock"), "{}", r.body);
    assert_eq!(r.body["shortages"][0]["available"], 47);
    let stock = s.stock("b1", &t, "S1");
    for loc in locations {
        assert_eq!(stock["locations"][loc]["reserved"], 0, "{loc}: nothing was held");
    }
    // A shipment from lines for a channel follows the same rule.
    let ship = json!({"id": "SH-1", "channel": "zozotwon", "lines": [{"sku": "S1", "quantity": 1}],
        "ship_to": {"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"}});
    let r = s.post("/v1/brands/b1/shipments", &t, &ship);
    assert_eq!((r.status, r.code()), (422, "unknown_channel"), "{}", r.body);
    // So does a search of the brand's SKUs by channel.
    let r = s.get("/v1/search/skus?channel=zozotwon", &t);
    assert_eq!((r.status, r.code()), (422, "unknown_channel"), "{}", r.body);
    assert_eq!(s.get("/v1/search/skus?channel=zozotown", &t).status, 200);

    // A brand with no channels sells to any channel name from every location.
    let t2 = s.setup_brand("b2", &[], &["S1"]);
    s.set_stock("b2", &t2, "S1", "store-shibuya", 5);
    let r = s
        .post("/v1/brands/b2/reservations", &t2, &json!({"id": "X-1", "channel": "other", "lines": [{"sku": "S1", "quantity": 5}]}))
        .expect(201);
    assert_eq!(r["lines"][0]["location"], "store-shibuya");
    assert_eq!(s.get("/v1/search/skus?channel=other", &t2).status, 200);
}

#[test]
fn channel_configuration_is_validated_and_listed() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    assert_eq!(s.put("/v1/brands/b1/channels/zozotown", &t, &json!({"name": "Z", "locations": ["nowhere"]})).status, 400);
    assert_eq!(s.put("/v1/brands/b1/channels/zozotown", &t, &json!({"name": "Z", "buffer": -1})).status, 400);
    assert_eq!(s.put("/v1/brands/b1/channels/zozotown", &t, &json!({"name": ""})).status, 400);
    s.put("/v1/brands/b1/channels/zozotown", &t, &json!({"name": "ZOZOTOWN", "buffer": 1})).expect(201);
    s.put("/v1/brands/b1/channels/zozotown", &t, &json!({"name": "ZOZOTOWN", "buffer": 2})).expect(200);
    let list = s.get("/v1/brands/b1/channels", &t).expect(200);
    assert_eq!(list["channels"][0]["buffer"], 2);
    assert_eq!(list["channels"][0]["locations"], serde_json::Value::Null);
}

#[test]
fn inbound_receipts_partial_over_close_retry_and_restart() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1", "S2"]);
    let body = json!({"id": "IN-1", "location": "tsukuba", "expected_at": "2026-12-01T00:00:00Z", "lines": [{"sku": "S1", "quantity": 50}, {"sku": "S2", "quantity": 10}]});
    let created = s.post("/v1/brands/b1/inbounds", &t, &body).expect(201);
    assert_eq!(created["status"], "expected");
    assert_eq!(s.post("/v1/brands/b1/inbounds", &t, &body).status, 200, "same id and body");
    assert_eq!(s.stock("b1", &t, "S1")["locations"]["tsukuba"]["incoming"], 50);
    let receipt = json!({"lines": [{"sku": "S1", "quantity": 20}]});
    let r1 = s.post_key("/v1/brands/b1/inbounds/IN-1/receipts", &t, "rcpt-1", &receipt);
    assert_eq!(r1.status, 200);
    let again = s.post_key("/v1/brands/b1/inbounds/IN-1/receipts", &t, "rcpt-1", &receipt);
    assert_eq!(again.body, r1.body, "a retried receipt with its key receives once");
    let l = &s.stock("b1", &t, "S1")["locations"]["tsukuba"];
    assert_eq!((l["on_hand"].as_i64(), l["incoming"].as_i64()), (Some(20), Some(30)));
    // Over-receipt: 35 arrive for the 30 still expected.
    s.post_key("/v1/brands/b1/inbounds/IN-1/receipts", &t, "rcpt-2", &json!({"lines": [{"sku": "S1", "quantity": 35}]})).expect(200);
    let ib = s.get("/v1/brands/b1/inbounds/IN-1", &t).expect(200);
    assert_eq!(ib["lines"][0]["received"], 55);
    assert_eq!(ib["lines"][0]["over_received"], 5);
    assert_eq!(ib["status"], "receiving");
    assert_eq!(
        s.post_key("/v1/brands/b1/inbounds/IN-1/receipts", &t, "rcpt-3", &json!({"lines": [{"sku": "S9", "quantity": 1}]})).status,
        400
    );
    s.restart();
    let l = &s.stock("b1", &t, "S1")["locations"]["tsukuba"];
    assert_eq!((l["on_hand"].as_i64(), l["incoming"].as_i64()), (Some(55), Some(0)));
    assert_eq!(s.stock("b1", &t, "S2")["locations"]["tsukuba"]["incoming"], 10);
    let closed = s.post("/v1/brands/b1/inbounds/IN-1/close", &t, &json!({})).expect(200);
    assert_eq!(closed["status"], "closed");
    assert_eq!(s.stock("b1", &t, "S2")["locations"]["tsukuba"]["incoming"], 0);
    assert_eq!(s.post_key("/v1/brands/b1/inbounds/IN-1/receipts", &t, "rcpt-4", &receipt).code(), "invalid_transition");
    s.restart();
    assert_eq!(s.get("/v1/brands/b1/inbounds/IN-1", &t).expect(200)["status"], "closed");
}
