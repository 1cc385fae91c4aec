//! Reservations and shipments against the real server: the storm for the last units,
//! all-or-nothing lines, idempotency by id, expiry on a manual clock, shipment
//! transitions, and everything surviving SIGKILL.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use crate::helpers::{Options, TestServer, ADMIN};

const T0: &str = "2026-11-28T00:00:00Z";

fn manual_clock() -> Options {
    Options { args: vec!["--manual-clock".into(), T0.into()], ..Options::default() }
}

fn reserve(s: &TestServer, t: &str, id: &str, lines: Value) -> crate::helpers::Resp {
    s.post("/v1/brands/b1/reservations", t, &json!({"id": id, "channel": "zozotown", "ttl_seconds": 600, "lines": lines}))
}

fn level(s: &TestServer, t: &str, sku: &str, loc: &str) -> (i64, i64, i64) {
    let st = s.stock("b1", t, sku);
    let l = &st["locations"][loc];
    (l["on_hand"].as_i64().unwrap_or(0), l["reserved"].as_i64().unwrap_or(0), l["available"].as_i64().unwrap_or(0))
}

fn ship_to() -> Value {
    json!({"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1", "phone": "03-0000-0000"})
}

#[test]
fn a_storm_for_the_last_units_at_two_locations_sells_exactly_what_is_there() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba", "osaka"], &["HOT"]);
    s.set_stock("b1", &t, "HOT", "tsukuba", 13);
    s.set_stock("b1", &t, "HOT", "osaka", 7);
    let (ok, short) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for c in 0..16 {
            let (s, t, ok, short) = (&s, &t, &ok, &short);
            scope.spawn(move || {
                for i in 0..10 {
                    let r = reserve(s, t, &format!("R-{c}-{i}"), json!([{"sku": "HOT", "quantity": 1}]));
                    match (r.status, r.code()) {
                        (201, _) => ok.fetch_add(1, Ordering::Relaxed),
                        (409, "insufficient_stock") => {
                            assert_eq!(r.body["shortages"][0]["sku"], "HOT");
                            short.fetch_add(1, Ordering::Relaxed)
                        }
                        other => panic!("unexpected {other:?}: {}", r.body),
                    };
                }
            });
        }
    });
    assert_eq!(ok.load(Ordering::Relaxed), 20, "exactly the 20 units are sold");
    assert_eq!(short.load(Ordering::Relaxed), 140);
    assert_eq!(level(&s, &t, "HOT", "tsukuba"), (13, 13, 0));
    assert_eq!(level(&s, &t, "HOT", "osaka"), (7, 7, 0));
}

#[test]
fn one_short_line_holds_nothing_and_lines_split_across_locations() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba", "osaka"], &["S1", "S2"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 3);
    s.set_stock("b1", &t, "S1", "osaka", 4);
    s.set_stock("b1", &t, "S2", "tsukuba", 1);
    let r = reserve(&s, &t, "R1", json!([{"sku": "S1", "quantity": 6}, {"sku": "S2", "location": "tsukuba", "quantity": 2}]));
    assert_eq!(r.status, 409);
    assert_eq!(r.body["shortages"], json!([{"sku": "S2", "requested": 2, "available": 1}]));
    assert_eq!(level(&s, &t, "S1", "osaka").1, 0, "nothing held");
    assert_eq!(level(&s, &t, "S1", "tsukuba").1, 0);
    let r = reserve(&s, &t, "R2", json!([{"sku": "S1", "quantity": 6}])).expect(201);
    assert_eq!(r["lines"], json!([{"sku": "S1", "location": "osaka", "quantity": 4}, {"sku": "S1", "location": "tsukuba", "quantity": 2}]));
    assert_eq!(r["status"], "active");
    // Same SKU twice, zero quantity, too many lines, unknown location: 400 / 404.
    assert_eq!(reserve(&s, &t, "R3", json!([{"sku": "S1", "quantity": 1}, {"sku": "S1", "quantity": 1}])).status, 400);
    assert_eq!(reserve(&s, &t, "R3", json!([{"sku": "S1", "quantity": 0}])).status, 400);
    let many: Vec<_> = (0..101).map(|i| json!({"sku": format!("X{i}"), "quantity": 1})).collect();
    assert_eq!(reserve(&s, &t, "R3", json!(many)).status, 400);
    assert_eq!(reserve(&s, &t, "R3", json!([{"sku": "S1", "location": "nowhere", "quantity": 1}])).status, 404);
    assert_eq!(reserve(&s, &t, "R3", json!([{"sku": "NOPE", "quantity": 1}])).status, 404);
}

#[test]
fn reservations_are_idempotent_by_id_and_expire_on_the_clock() {
    let s = TestServer::spawn_with(manual_clock());
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 5);
    let first = reserve(&s, &t, "R1", json!([{"sku": "S1", "quantity": 2}]));
    assert_eq!(first.status, 201);
    assert!(first.lsn.is_some());
    let again = reserve(&s, &t, "R1", json!([{"sku": "S1", "quantity": 2}]));
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(reserve(&s, &t, "R1", json!([{"sku": "S1", "quantity": 3}])).code(), "already_exists");
    assert_eq!(level(&s, &t, "S1", "tsukuba").1, 2);
    reserve(&s, &t, "R2", json!([{"sku": "S1", "quantity": 1}])).expect(201);
    let released = s.post("/v1/brands/b1/reservations/R2/release", &t, &json!({})).expect(200);
    assert_eq!(released["status"], "released");
    assert_eq!(s.post("/v1/brands/b1/reservations/R2/release", &t, &json!({})).status, 200, "a repeated release is a no-op");
    // Time moves: 599 s is not enough, 600 s is.
    s.post("/v1/admin/clock", ADMIN, &json!({"advance_seconds": 599})).expect(200);
    assert_eq!(s.get("/v1/brands/b1/reservations/R1", &t).expect(200)["status"], "active");
    s.post("/v1/admin/clock", ADMIN, &json!({"advance_seconds": 1})).expect(200);
    assert_eq!(s.get("/v1/brands/b1/reservations/R1", &t).expect(200)["status"], "expired");
    assert_eq!(level(&s, &t, "S1", "tsukuba"), (5, 0, 5));
    assert_eq!(s.post("/v1/brands/b1/reservations/R1/release", &t, &json!({})).code(), "invalid_transition");
    assert_eq!(s.post("/v1/admin/clock", &t, &json!({"advance_seconds": 1})).status, 403);
}

#[test]
fn shipments_move_through_their_states_and_stock_follows() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1", "S2"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 5);
    s.set_stock("b1", &t, "S2", "tsukuba", 5);
    reserve(&s, &t, "R1", json!([{"sku": "S1", "quantity": 2}])).expect(201);
    let body = json!({"id": "SH1", "order_ref": "EC-20261128-001", "channel": "zozotown", "reservation_id": "R1", "ship_to": ship_to()});
    let sh = s.post("/v1/brands/b1/shipments", &t, &body).expect(201);
    assert_eq!(sh["status"], "accepted");
    assert_eq!(sh["ship_to"]["name"], "山田 太郎", "the brand gets ship_to back");
    assert_eq!(s.post("/v1/brands/b1/shipments", &t, &body).status, 200, "same id and body: the existing shipment");
    assert_eq!(s.get("/v1/brands/b1/reservations/R1", &t).expect(200)["status"], "consumed");
    let from_lines = json!({"id": "SH2", "lines": [{"sku": "S2", "quantity": 3}], "ship_to": ship_to()});
    s.post("/v1/brands/b1/shipments", &t, &from_lines).expect(201);
    assert_eq!(level(&s, &t, "S2", "tsukuba"), (5, 3, 2));
    let status = |id: &str, st: &str| s.post(&format!("/v1/brands/b1/shipments/{id}/status"), &t, &json!({"status": st}));
    assert_eq!(status("SH1", "shipped").code(), "invalid_transition");
    status("SH1", "picking").expect(200);
    status("SH1", "packed").expect(200);
    assert_eq!(status("SH1", "packed").status, 200, "repeat is a no-op");
    let shipped = s
        .post(
            "/v1/brands/b1/shipments/SH1/status",
            &t,
            &json!({"status": "shipped", "tracking_number": "1234-5678-9012", "carrier": "ヤマト運輸"}),
        )
        .expect(200);
    assert_eq!(shipped["tracking_number"], "1234-5678-9012");
    let history: Vec<_> = shipped["status_history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(history, ["accepted", "picking", "packed", "shipped"]);
    assert_eq!(level(&s, &t, "S1", "tsukuba"), (3, 0, 3));
    assert_eq!(status("SH1", "cancelled").code(), "invalid_transition");
    status("SH1", "delivered").expect(200);
    status("SH2", "cancelled").expect(200);
    assert_eq!(level(&s, &t, "S2", "tsukuba"), (5, 0, 5));
    // Bad input.
    assert_eq!(s.post("/v1/brands/b1/shipments", &t, &json!({"id": "SH3", "ship_to": ship_to()})).status, 400);
    assert_eq!(status("SH2", "lost").status, 400);
    assert_eq!(
        s.post("/v1/brands/b1/shipments", &t, &json!({"id": "SH4", "reservation_id": "R1", "ship_to": ship_to()})).code(),
        "invalid_transition"
    );
}

#[test]
fn a_sku_holding_stock_cannot_be_deleted() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 1);
    assert_eq!(s.delete("/v1/brands/b1/skus/S1", &t).code(), "invalid_transition");
    s.set_stock("b1", &t, "S1", "tsukuba", 0);
    assert_eq!(s.delete("/v1/brands/b1/skus/S1", &t).status, 204);
    assert_eq!(s.get("/v1/brands/b1/skus/S1", &t).status, 404);
}

#[test]
fn reservations_shipments_and_expiries_survive_sigkill() {
    let mut s = TestServer::spawn_with(manual_clock());
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 10);
    reserve(&s, &t, "R-short", json!([{"sku": "S1", "quantity": 1}])).expect(201);
    s.post(
        "/v1/brands/b1/reservations",
        &t,
        &json!({"id": "R-long", "channel": "brand_ec", "ttl_seconds": 86400, "lines": [{"sku": "S1", "quantity": 2}]}),
    )
    .expect(201);
    reserve(&s, &t, "R-ship", json!([{"sku": "S1", "quantity": 3}])).expect(201);
    s.post("/v1/brands/b1/shipments", &t, &json!({"id": "SH1", "reservation_id": "R-ship", "ship_to": ship_to()})).expect(201);
    s.post("/v1/brands/b1/shipments/SH1/status", &t, &json!({"status": "picking"})).expect(200);
    assert_eq!(level(&s, &t, "S1", "tsukuba"), (10, 6, 4));
    s.kill9();
    // The server comes back 700 s later: R-short expired while it was down.
    s.set_args(&["--manual-clock", "2026-11-28T00:11:40Z"]);
    s.start();
    assert_eq!(s.get("/v1/brands/b1/reservations/R-short", &t).expect(200)["status"], "expired");
    assert_eq!(s.get("/v1/brands/b1/reservations/R-long", &t).expect(200)["status"], "active");
    assert_eq!(s.get("/v1/brands/b1/reservations/R-ship", &t).expect(200)["status"], "consumed");
    assert_eq!(s.get("/v1/brands/b1/shipments/SH1", &t).expect(200)["status"], "picking");
    assert_eq!(level(&s, &t, "S1", "tsukuba"), (10, 5, 5));
    // And once more, with nothing new: the same state.
    s.restart();
    assert_eq!(level(&s, &t, "S1", "tsukuba"), (10, 5, 5));
    assert_eq!(s.get("/v1/brands/b1/shipments/SH1", &t).expect(200)["status_history"].as_array().unwrap().len(), 2);
}
