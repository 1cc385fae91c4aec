//! Issue 4, "what must be shown": every route of the server, called by a caller who may
//! not use it — another brand's token, a viewer token, a revoked token, an unknown token
//! and no token — answers exactly the status the contract gives (401 / 403, or 200 where
//! the caller may read), as a problem, and changes nothing: a full read of the state
//! (every object of both brands, the feed, webhooks, import jobs, snapshots, search) and
//! the WAL position are the same before and after.
//!
//! [`ROUTES`] is the route table as data. [`route_table_covers_every_registered_route`]
//! scans `src/http/routes/*.rs` for registrations and fails when a route is added there
//! without a row here.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{rand_suffix, Options, Resp, TestServer, ADMIN};

/// Who may call a route, as the contract (and `docs/api-v1.md`'s notes) say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No auth at all; every caller gets this status.
    Public(u16),
    /// The admin token only (brands, tokens, locations, ops).
    Admin,
    /// Admin or viewer: a read across all brands (`GET /v1/brands`, `GET /v1/locations`).
    GlobalRead,
    /// The brand's own token, the admin, or a viewer (read only).
    BrandRead,
    /// The brand's own token or the admin.
    BrandWrite,
    /// Search: any valid token; a brand token only for its own brand (`brand=` of another
    /// brand is 403).
    Search,
    /// Any valid token, whatever its brand or role (`GET /v1/search/labels`: the same
    /// names for everyone).
    AnyToken,
}

/// A request body.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    None,
    Json(&'static str),
    Csv(&'static str),
}

/// How the server registers the route: `.route("path", web::verb())` (found by the
/// scan) or a resource whose path is not a literal (the UI's assets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Route,
    Resource,
}

/// One row of the route table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// The path template exactly as registered; placeholders are filled by [`Fixture::fill`].
    pub path: &'static str,
    /// Query string (without `?`); `{brand}` is filled too.
    pub query: &'static str,
    pub access: Access,
    /// A well-formed body for the route: a refusal must come from auth, not from parsing.
    pub body: Body,
    pub registered: Registered,
}

const fn r(method: &'static str, path: &'static str, access: Access, body: Body) -> Route {
    Route { method, path, query: "", access, body, registered: Registered::Route }
}

const fn rq(method: &'static str, path: &'static str, query: &'static str, access: Access, body: Body) -> Route {
    Route { method, path, query, access, body, registered: Registered::Route }
}

const fn asset(method: &'static str, path: &'static str) -> Route {
    Route { method, path, query: "", access: Access::Public(200), body: Body::None, registered: Registered::Resource }
}

use Access::*;
use Body::{Csv, Json};

/// Every route of the server. Add a row when you add a route (the scan test says so).
pub const ROUTES: &[Route] = &[
    // health, metrics (no auth by default), UI (static files; the page asks for a token)
    r("GET", "/healthz", Public(200), Body::None),
    r("GET", "/readyz", Public(200), Body::None),
    r("GET", "/metrics", Public(200), Body::None),
    r("GET", "/openapi.json", Public(200), Body::None),
    // 308 to /ui/, which the test client follows
    r("GET", "/ui", Public(200), Body::None),
    asset("GET", "/ui/"),
    asset("HEAD", "/ui/"),
    asset("GET", "/ui/app.js"),
    asset("HEAD", "/ui/app.js"),
    asset("GET", "/ui/app.css"),
    asset("HEAD", "/ui/app.css"),
    asset("GET", "/ui/favicon.svg"),
    asset("HEAD", "/ui/favicon.svg"),
    // brands, tokens, locations, ops (admin)
    r("POST", "/v1/brands", Admin, Json(r#"{"id":"iso-c","name":"Brand C"}"#)),
    r("GET", "/v1/brands", GlobalRead, Body::None),
    r("GET", "/v1/brands/{brand}", BrandRead, Body::None),
    r("POST", "/v1/brands/{brand}/tokens", Admin, Json("{}")),
    r("POST", "/v1/tokens", Admin, Json(r#"{"role":"viewer"}"#)),
    r("DELETE", "/v1/tokens/{id}", Admin, Body::None),
    r("GET", "/v1/locations", GlobalRead, Body::None),
    r("PUT", "/v1/locations/{location}", Admin, Json(r#"{"name":"renamed","kind":"store"}"#)),
    r("POST", "/v1/admin/clock", Admin, Json(r#"{"advance_seconds":1}"#)),
    r("GET", "/v1/admin/cluster", Admin, Body::None),
    r("PUT", "/v1/admin/cluster/nodes/{node}/drain", Admin, Body::None),
    r("DELETE", "/v1/admin/cluster/nodes/{node}/drain", Admin, Body::None),
    r("POST", "/v1/admin/snapshots", Admin, Body::None),
    r("GET", "/v1/admin/snapshots", Admin, Body::None),
    // catalog and stock
    r("PUT", "/v1/brands/{brand}/skus/{sku}", BrandWrite, Json(r#"{"name":"renamed","price":1}"#)),
    r("GET", "/v1/brands/{brand}/skus/{sku}", BrandRead, Body::None),
    r("DELETE", "/v1/brands/{brand}/skus/{sku}", BrandWrite, Body::None),
    r("GET", "/v1/brands/{brand}/skus/{sku}/stock", BrandRead, Body::None),
    rq("GET", "/v1/brands/{brand}/skus/{sku}/history", "limit=5", BrandRead, Body::None),
    r(
        "POST",
        "/v1/brands/{brand}/stock/changes",
        BrandWrite,
        Json(r#"{"changes":[{"sku":"S1","location":"tsukuba","op":"adjust","delta":-1}]}"#),
    ),
    // reservations and shipments
    r(
        "POST",
        "/v1/brands/{brand}/reservations",
        BrandWrite,
        Json(r#"{"id":"R2","channel":"zozotown","ttl_seconds":600,"lines":[{"sku":"S1","quantity":1}]}"#),
    ),
    r("GET", "/v1/brands/{brand}/reservations/{id}", BrandRead, Body::None),
    r("POST", "/v1/brands/{brand}/reservations/{id}/release", BrandWrite, Body::None),
    r(
        "POST",
        "/v1/brands/{brand}/shipments",
        BrandWrite,
        Json(
            r#"{"id":"SH2","order_ref":"EC-2","lines":[{"sku":"S2","quantity":1}],"ship_to":{"name":"山田 太郎","postal_code":"100-0001","prefecture":"東京都","address":"千代田区1-1"}}"#,
        ),
    ),
    r("GET", "/v1/brands/{brand}/shipments/{id}", BrandRead, Body::None),
    r("POST", "/v1/brands/{brand}/shipments/{id}/status", BrandWrite, Json(r#"{"status":"cancelled"}"#)),
    // channels and inbounds
    r("GET", "/v1/brands/{brand}/channels", BrandRead, Body::None),
    r("PUT", "/v1/brands/{brand}/channels/{channel}", BrandWrite, Json(r#"{"name":"Z","buffer":5}"#)),
    r("POST", "/v1/brands/{brand}/inbounds", BrandWrite, Json(r#"{"id":"IN2","location":"tsukuba","lines":[{"sku":"S2","quantity":3}]}"#)),
    r("GET", "/v1/brands/{brand}/inbounds/{id}", BrandRead, Body::None),
    r("POST", "/v1/brands/{brand}/inbounds/{id}/receipts", BrandWrite, Json(r#"{"lines":[{"sku":"S1","quantity":2}]}"#)),
    r("POST", "/v1/brands/{brand}/inbounds/{id}/close", BrandWrite, Body::None),
    // transfers
    r(
        "POST",
        "/v1/brands/{brand}/transfers",
        BrandWrite,
        Json(r#"{"id":"T2","origin":"tsukuba","destination":"shibuya","lines":[{"sku":"S2","quantity":1}]}"#),
    ),
    r("GET", "/v1/brands/{brand}/transfers/{id}", BrandRead, Body::None),
    r("POST", "/v1/brands/{brand}/transfers/{id}/ship", BrandWrite, Body::None),
    r("POST", "/v1/brands/{brand}/transfers/{id}/receipts", BrandWrite, Json(r#"{"lines":[{"sku":"S2","quantity":1}]}"#)),
    r("POST", "/v1/brands/{brand}/transfers/{id}/close", BrandWrite, Body::None),
    r("POST", "/v1/brands/{brand}/transfers/{id}/cancel", BrandWrite, Body::None),
    // low-stock thresholds
    r("PUT", "/v1/brands/{brand}/low-stock/{channel}", BrandWrite, Json(r#"{"default":3,"skus":[{"sku":"S1","threshold":10}]}"#)),
    r("GET", "/v1/brands/{brand}/low-stock/{channel}", BrandRead, Body::None),
    // returns
    r(
        "POST",
        "/v1/brands/{brand}/returns",
        BrandWrite,
        Json(r#"{"id":"RT2","shipment_id":"SH-R","reason":"size","lines":[{"sku":"S2","quantity":1}]}"#),
    ),
    r("GET", "/v1/brands/{brand}/returns/{id}", BrandRead, Body::None),
    r("POST", "/v1/brands/{brand}/returns/{id}/in_transit", BrandWrite, Body::None),
    r(
        "POST",
        "/v1/brands/{brand}/returns/{id}/receipts",
        BrandWrite,
        Json(r#"{"lines":[{"sku":"S2","quantity":1,"disposition":"restock","location":"tsukuba"}]}"#),
    ),
    r("POST", "/v1/brands/{brand}/returns/{id}/close", BrandWrite, Body::None),
    r("POST", "/v1/brands/{brand}/returns/{id}/cancel", BrandWrite, Body::None),
    // change feed and webhooks
    rq("GET", "/v1/brands/{brand}/events", "limit=5", BrandRead, Body::None),
    r("POST", "/v1/brands/{brand}/webhooks", BrandWrite, Json(r#"{"url":"http://127.0.0.1:9/other","events":["stock.changed"]}"#)),
    r("GET", "/v1/brands/{brand}/webhooks", BrandRead, Body::None),
    r("DELETE", "/v1/brands/{brand}/webhooks/{id}", BrandWrite, Body::None),
    r("GET", "/v1/brands/{brand}/webhooks/{id}/deliveries", BrandRead, Body::None),
    r("POST", "/v1/brands/{brand}/webhooks/{id}/redrive", BrandWrite, Body::None),
    r("POST", "/v1/brands/{brand}/webhooks/{id}/replay", BrandWrite, Json(r#"{"after_seq":0}"#)),
    // imports
    rq("POST", "/v1/brands/{brand}/imports", "kind=stock", BrandWrite, Csv("sku,location,delta\nS1,tsukuba,7\n")),
    r("GET", "/v1/brands/{brand}/imports/{id}", BrandRead, Body::None),
    r("POST", "/v1/brands/{brand}/imports/{id}/cancel", BrandWrite, Body::None),
    // search: `brand=` names the brand under test, so another brand's token asks for a
    // brand that is not its own
    rq("GET", "/v1/search/skus", "brand={brand}", Search, Body::None),
    rq("GET", "/v1/search/shipments", "brand={brand}", Search, Body::None),
    r("GET", "/v1/search/labels", AnyToken, Body::None),
];

/// The callers of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A valid token of another brand.
    OtherBrand,
    Viewer,
    /// A token of the brand under test that was revoked.
    Revoked,
    /// A well-formed token the server never issued.
    Unknown,
    /// No `Authorization` header.
    Nobody,
}

pub const CALLERS: [Who; 5] = [Who::OtherBrand, Who::Viewer, Who::Revoked, Who::Unknown, Who::Nobody];

/// The status the contract gives `who` on a route of `access`.
pub fn expected_status(access: Access, who: Who) -> u16 {
    match (access, who) {
        (Public(s), _) => s,
        (_, Who::Revoked | Who::Unknown | Who::Nobody) => 401,
        (AnyToken, _) => 200,
        (GlobalRead | BrandRead | Search, Who::Viewer) => 200,
        (_, Who::Viewer | Who::OtherBrand) => 403,
    }
}

/// The brand under test ("iso-a") with one of everything, another brand ("iso-b"), and
/// the tokens of the walk.
pub struct Fixture {
    pub a: String,
    pub b: String,
    pub viewer: String,
    pub revoked: String,
    /// The id of a live token of brand A (the `{id}` of `DELETE /v1/tokens/{id}`).
    pub spare_token_id: String,
    pub spare_token: String,
    pub hook: String,
    pub job: String,
}

/// A server for these tests: webhooks may target loopback (nothing listens there; the
/// subscription is to an event type the tests never cause).
pub fn server() -> TestServer {
    TestServer::spawn_with(Options { args: vec!["--webhook-allow-private".into()], ..Options::default() })
}

/// Polls `cond` until it holds; fails after `limit`. Waiting on a condition, not a sleep
/// standing in for one.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Fixture {
    pub fn new(s: &TestServer) -> Fixture {
        let a = s.setup_brand("iso-a", &["tsukuba", "shibuya"], &["S1", "S2"]);
        let b = s.setup_brand("iso-b", &[], &["S1"]);
        s.put("/v1/brands/iso-a/skus/S1", &a, &json!({"name": "オーバーサイズ Tシャツ", "color": "navy", "price": 3990})).expect(200);
        let viewer = s.post("/v1/tokens", ADMIN, &json!({"role": "viewer"})).expect(201)["token"].as_str().unwrap().to_string();
        let token = |s: &TestServer| {
            let t = s.post("/v1/brands/iso-a/tokens", ADMIN, &json!({})).expect(201);
            (t["id"].as_str().unwrap().to_string(), t["token"].as_str().unwrap().to_string())
        };
        let (revoked_id, revoked) = token(s);
        assert_eq!(s.get("/v1/brands/iso-a/skus/S1", &revoked).status, 200);
        assert_eq!(s.delete(&format!("/v1/tokens/{revoked_id}"), ADMIN).status, 204);
        let (spare_token_id, spare_token) = token(s);
        s.set_stock("iso-a", &a, "S1", "tsukuba", 100);
        s.set_stock("iso-a", &a, "S2", "tsukuba", 50);
        s.set_stock("iso-b", &b, "S1", "tsukuba", 9);
        s.put("/v1/brands/iso-a/channels/zozotown", &a, &json!({"name": "ZOZOTOWN", "locations": ["tsukuba"], "buffer": 1})).expect(201);
        s.post(
            "/v1/brands/iso-a/reservations",
            &a,
            &json!({"id": "R1", "channel": "zozotown", "ttl_seconds": 86400, "lines": [{"sku": "S1", "quantity": 2}]}),
        )
        .expect(201);
        s.post(
            "/v1/brands/iso-a/shipments",
            &a,
            &json!({"id": "SH1", "order_ref": "EC-1", "lines": [{"sku": "S2", "quantity": 1}],
                    "ship_to": {"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"}}),
        )
        .expect(201);
        s.post("/v1/brands/iso-a/shipments/SH1/status", &a, &json!({"status": "picking"})).expect(200);
        s.post("/v1/brands/iso-a/inbounds", &a, &json!({"id": "IN1", "location": "tsukuba", "lines": [{"sku": "S1", "quantity": 5}]}))
            .expect(201);
        let transfer = json!({"id": "T1", "origin": "tsukuba", "destination": "shibuya", "lines": [{"sku": "S2", "quantity": 2}]});
        s.post("/v1/brands/iso-a/transfers", &a, &transfer).expect(201);
        // A shipped shipment and a return of it.
        s.post(
            "/v1/brands/iso-a/shipments",
            &a,
            &json!({"id": "SH-R", "order_ref": "EC-R", "lines": [{"sku": "S2", "quantity": 2}],
                    "ship_to": {"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"}}),
        )
        .expect(201);
        for status in ["picking", "packed", "shipped"] {
            s.post("/v1/brands/iso-a/shipments/SH-R/status", &a, &json!({"status": status})).expect(200);
        }
        let ret = json!({"id": "RT1", "shipment_id": "SH-R", "reason": "size", "lines": [{"sku": "S2", "quantity": 1}]});
        s.post("/v1/brands/iso-a/returns", &a, &ret).expect(201);
        // More than tsukuba holds: shipping it is refused.
        let big = json!({"id": "BIG", "origin": "tsukuba", "destination": "shibuya", "lines": [{"sku": "S1", "quantity": 100000}]});
        s.post("/v1/brands/iso-a/transfers", &a, &big).expect(201);
        let hook = s
            .post("/v1/brands/iso-a/webhooks", &a, &json!({"url": "http://127.0.0.1:9/hook", "events": ["inbound.closed"]}))
            .expect(201)["id"]
            .as_str()
            .unwrap()
            .to_string();
        let job = s.raw(
            "POST",
            "/v1/brands/iso-a/imports?kind=stock",
            Some(&a),
            b"sku,location,delta\nS2,tsukuba,4\n".to_vec(),
            &[("content-type", "text/csv"), ("idempotency-key", "fixture-import")],
        );
        let job = job.expect(202)["id"].as_str().unwrap().to_string();
        let f = Fixture { a, b, viewer, revoked, spare_token_id, spare_token, hook, job };
        f.settle(s);
        f
    }

    /// Waits until nothing more happens on its own: the import job is done, the channel's
    /// availability stream has ended, and the search indexes cover the journal.
    pub fn settle(&self, s: &TestServer) {
        let limit = Duration::from_secs(60);
        wait_for(limit, "the import job", || {
            s.get(&format!("/v1/brands/iso-a/imports/{}", self.job), ADMIN).expect(200)["status"] == "done"
        });
        let job = s.get(&format!("/v1/brands/iso-a/imports/{}", self.job), ADMIN).expect(200);
        assert_eq!(job["rows_ok"], 1, "{job}");
        wait_for(limit, "the channel availability stream", || {
            let events = s.get("/v1/brands/iso-a/events?limit=1000", ADMIN).expect(200);
            events["events"].as_array().unwrap().iter().any(|e| e["type"] == "channel.availability_changed" && e["data"]["done"] == true)
        });
        s.wait_search_caught_up();
    }

    pub fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::OtherBrand => Some(&self.b),
            Who::Viewer => Some(&self.viewer),
            Who::Revoked => Some(&self.revoked),
            Who::Unknown => Some("zk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            Who::Nobody => None,
        }
    }

    /// A path template with its placeholders filled for brand A's objects.
    pub fn fill(&self, template: &str) -> String {
        let segs: Vec<&str> = template.split('/').collect();
        let mut out = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let v = match *seg {
                "{brand}" => "iso-a",
                "{sku}" => "S1",
                "{location}" => "tsukuba",
                "{channel}" => "zozotown",
                "{node}" => "n1",
                "{id}" => match segs[i - 1] {
                    "tokens" => self.spare_token_id.as_str(),
                    "reservations" => "R1",
                    "shipments" => "SH1",
                    "inbounds" => "IN1",
                    "transfers" => "T1",
                    "returns" => "RT1",
                    "webhooks" => self.hook.as_str(),
                    "imports" => self.job.as_str(),
                    other => panic!("no fixture object for {{id}} after {other:?} in {template}: add one to Fixture::fill"),
                },
                s if s.starts_with('{') => panic!("unknown placeholder {s} in {template}: add it to Fixture::fill"),
                s => s,
            };
            out.push(v);
        }
        out.join("/")
    }

    /// Calls a route of the table as `token`.
    pub fn call(&self, s: &TestServer, route: &Route, token: Option<&str>) -> Resp {
        let mut url = self.fill(route.path);
        if !route.query.is_empty() {
            url = format!("{url}?{}", route.query.replace("{brand}", "iso-a"));
        }
        let key = format!("iso-{}", rand_suffix());
        let mut headers = vec![("idempotency-key", key.as_str())];
        let body = match route.body {
            Body::None => Vec::new(),
            Body::Json(j) => {
                headers.push(("content-type", "application/json"));
                j.as_bytes().to_vec()
            }
            Body::Csv(c) => {
                headers.push(("content-type", "text/csv"));
                c.as_bytes().to_vec()
            }
        };
        s.raw(route.method, &url, token, body, &headers)
    }
}

/// A full read of the state, as the admin sees it: every object of both brands (and the
/// ones the walk's requests would create), the feeds, webhooks and their deliveries,
/// the import job, the snapshots, search, and the WAL position.
pub fn state_of(s: &TestServer, f: &Fixture) -> Value {
    let hook = &f.hook;
    let job = &f.job;
    let paths = [
        "/v1/brands".to_string(),
        "/v1/brands/iso-a".into(),
        "/v1/brands/iso-b".into(),
        "/v1/brands/iso-c".into(),
        "/v1/locations".into(),
        "/v1/brands/iso-a/skus/S1".into(),
        "/v1/brands/iso-a/skus/S2".into(),
        "/v1/brands/iso-a/skus/S1/stock".into(),
        "/v1/brands/iso-a/skus/S2/stock".into(),
        "/v1/brands/iso-a/reservations/R1".into(),
        "/v1/brands/iso-a/reservations/R2".into(),
        "/v1/brands/iso-a/shipments/SH1".into(),
        "/v1/brands/iso-a/shipments/SH2".into(),
        "/v1/brands/iso-a/channels".into(),
        "/v1/brands/iso-a/inbounds/IN1".into(),
        "/v1/brands/iso-a/inbounds/IN2".into(),
        "/v1/brands/iso-a/transfers/T1".into(),
        "/v1/brands/iso-a/transfers/T2".into(),
        "/v1/brands/iso-a/transfers/BIG".into(),
        "/v1/brands/iso-a/returns/RT1".into(),
        "/v1/brands/iso-a/low-stock/zozotown".into(),
        "/v1/brands/iso-a/returns/RT2".into(),
        "/v1/brands/iso-a/shipments/SH-R".into(),
        "/v1/brands/iso-a/skus/S2/stock".into(),
        "/v1/brands/iso-a/webhooks".into(),
        format!("/v1/brands/iso-a/webhooks/{hook}/deliveries?limit=1000"),
        format!("/v1/brands/iso-a/imports/{job}"),
        "/v1/brands/iso-a/events?limit=1000".into(),
        "/v1/brands/iso-b/skus/S1".into(),
        "/v1/brands/iso-b/channels".into(),
        "/v1/brands/iso-b/webhooks".into(),
        "/v1/brands/iso-b/events?limit=1000".into(),
        "/v1/admin/snapshots".into(),
        "/v1/search/skus?brand=iso-a&limit=100".into(),
        "/v1/search/shipments?limit=100".into(),
    ];
    let mut out = serde_json::Map::new();
    for p in paths {
        let r = s.get(&p, ADMIN);
        assert!(r.status == 200 || r.status == 404, "state read {p}: {r:?}");
        out.insert(p, json!({"status": r.status, "body": r.body}));
    }
    let (lsn, records) = s.journal();
    out.insert("wal".into(), json!({"durable_lsn": lsn, "records": records}));
    // The spare token of brand A still works (a revoke by the walk would show here too).
    out.insert("spare_token".into(), json!(s.get("/v1/brands/iso-a", &f.spare_token).status));
    Value::Object(out)
}

/// The paths of two state reads that differ, for a readable failure.
pub fn diff(before: &Value, after: &Value) -> Vec<String> {
    let (b, a) = (before.as_object().unwrap(), after.as_object().unwrap());
    b.iter().filter(|(k, v)| a.get(*k) != Some(*v)).map(|(k, v)| format!("{k}:\n  before {v}\n  after  {}", a[k])).collect()
}

/// Checks a refusal: status, a problem body with the matching code, no LSN.
pub fn check_refusal(r: &Resp, status: u16) -> Result<(), String> {
    let code = match status {
        401 => "unauthorized",
        403 => "forbidden",
        _ => return Err(format!("no refusal code for {status}")),
    };
    if r.content_type != "application/problem+json" {
        return Err(format!("content-type {:?}", r.content_type));
    }
    if r.body["code"] != code || r.body["status"] != status || r.body["type"] != format!("/problems/{code}") {
        return Err(format!("problem body {}", r.body));
    }
    if r.lsn.is_some() {
        return Err("a refusal carries X-Zaiko-Lsn".into());
    }
    Ok(())
}

#[test]
fn every_route_refuses_other_brands_viewers_revoked_and_missing_tokens_and_changes_nothing() {
    let s = server();
    let f = Fixture::new(&s);
    let before = state_of(&s, &f);
    let mut failures = Vec::new();
    let mut calls = 0;
    for route in ROUTES {
        for who in CALLERS {
            let want = expected_status(route.access, who);
            let r = f.call(&s, route, f.token(who));
            calls += 1;
            let what = format!("{} {}?{} as {who:?}", route.method, route.path, route.query);
            if r.status != want {
                failures.push(format!("{what}: status {} (want {want}); body {}", r.status, r.body));
            } else if want >= 400 {
                if let Err(e) = check_refusal(&r, want) {
                    failures.push(format!("{what}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {calls} calls answered wrong:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(calls, ROUTES.len() * CALLERS.len());
    let after = state_of(&s, &f);
    let changed = diff(&before, &after);
    assert!(changed.is_empty(), "refused calls changed the state:\n{}", changed.join("\n"));
    assert_eq!(s.request("GET", "/healthz", None, None, &[]).status, 200);
}

/// The control of the test above: the same table's requests, sent by a caller who may
/// make them, are accepted (not refused for auth or parsing) and do change the state —
/// so the walk's bodies are real requests and the state read sees what they would do.
#[test]
fn the_route_table_requests_are_accepted_from_the_right_caller_and_change_the_state() {
    let s = server();
    let f = Fixture::new(&s);
    let before = state_of(&s, &f);
    let mut failures = Vec::new();
    for route in ROUTES {
        let token = match route.access {
            Public(_) => None,
            Admin | GlobalRead => Some(ADMIN),
            BrandRead | BrandWrite | Search | AnyToken => Some(f.a.as_str()),
        };
        let r = f.call(&s, route, token);
        // 404 (e.g. a webhook deleted by an earlier row), 409 (deleting a SKU that holds
        // stock) and 422 (the clock hook on the system clock) are answers about the
        // state, not refusals of the caller or the request.
        let ok = r.status < 300 || [404, 409, 422].contains(&r.status);
        if !ok {
            failures.push(format!("{} {}: {} {}", route.method, route.path, r.status, r.body));
        }
    }
    assert!(failures.is_empty(), "refused from the right caller:\n{}", failures.join("\n"));
    let after = state_of(&s, &f);
    let changed = diff(&before, &after);
    for must in
        ["wal", "/v1/brands/iso-a/skus/S1", "/v1/brands/iso-a/reservations/R2", "/v1/brands/iso-a/shipments/SH2", "/v1/brands/iso-c"]
    {
        assert!(changed.iter().any(|c| c.starts_with(&format!("{must}:"))), "{must} did not change; changes:\n{}", changed.join("\n"));
    }
}

/// The routes registered in `src/http/routes/*.rs`: `(METHOD, path with {} for each
/// placeholder)`. Reads `.route("path", web::verb()` and actix's `#[verb("path")]`.
fn registered_routes() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/routes");
    let mut out = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("routes dir").map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let src = std::fs::read_to_string(file).unwrap();
        let mut rest = src.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let after = rest.trim_start();
            let Some(lit) = after.strip_prefix('"') else { continue };
            let path = &lit[..lit.find('"').expect("closing quote")];
            let verb_at = lit.find("web::").unwrap_or_else(|| panic!("{}: no web::<verb>() after .route(\"{path}\"", file.display()));
            let verb: String = lit[verb_at + 5..].chars().take_while(|c| c.is_ascii_alphabetic()).collect();
            out.insert((verb.to_ascii_uppercase(), normalise(path)));
        }
        for verb in ["get", "post", "put", "delete", "patch", "head"] {
            let attr = format!("#[{verb}(\"");
            let mut rest = src.as_str();
            while let Some(at) = rest.find(&attr) {
                rest = &rest[at + attr.len()..];
                out.insert((verb.to_ascii_uppercase(), normalise(&rest[..rest.find('"').unwrap()])));
            }
        }
    }
    out
}

/// `{brand}` → `{}`: placeholder names do not matter.
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn route_table_covers_every_registered_route() {
    let registered = registered_routes();
    assert!(registered.len() >= 40, "the scan found only {} routes; has the registration style changed? {registered:?}", registered.len());
    let table: BTreeSet<(String, String)> =
        ROUTES.iter().filter(|r| r.registered == Registered::Route).map(|r| (r.method.to_string(), normalise(r.path))).collect();
    let missing: Vec<_> = registered.difference(&table).collect();
    assert!(missing.is_empty(), "routes registered in src/http/routes without a row in isolation::ROUTES: {missing:?}");
    let stale: Vec<_> = table.difference(&registered).collect();
    assert!(stale.is_empty(), "rows of isolation::ROUTES that no longer name a registered route: {stale:?}");
    // The UI's assets are registered as resources; check they are really there.
    let ui = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/routes/ui.rs")).unwrap();
    for row in ROUTES.iter().filter(|r| r.registered == Registered::Resource) {
        assert!(ui.contains(&format!("path: \"{}\"", row.path)), "{} is not an asset of ui.rs", row.path);
    }
}

#[test]
fn expected_statuses_follow_the_contract() {
    // The matrix the walk checks, spelled out once so it can be read against the contract.
    assert_eq!(expected_status(Admin, Who::Viewer), 403);
    assert_eq!(expected_status(Admin, Who::OtherBrand), 403);
    assert_eq!(expected_status(GlobalRead, Who::Viewer), 200);
    assert_eq!(expected_status(GlobalRead, Who::OtherBrand), 403);
    assert_eq!(expected_status(BrandRead, Who::Viewer), 200);
    assert_eq!(expected_status(BrandWrite, Who::Viewer), 403);
    assert_eq!(expected_status(Search, Who::OtherBrand), 403);
    assert_eq!(expected_status(AnyToken, Who::OtherBrand), 200);
    assert_eq!(expected_status(AnyToken, Who::Viewer), 200);
    for access in [Admin, GlobalRead, BrandRead, BrandWrite, Search, AnyToken] {
        for who in [Who::Revoked, Who::Unknown, Who::Nobody] {
            assert_eq!(expected_status(access, who), 401);
        }
    }
}
