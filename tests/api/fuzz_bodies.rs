//! Fuzzing the JSON request bodies against the real server: a valid body of each JSON
//! route, mutated — a value anywhere in it replaced by arbitrary JSON (huge and
//! negative numbers, floats, long and odd strings, deep arrays and objects), a field
//! removed, an unknown field added, the whole body wrapped, or the bytes cut or
//! flipped. Whatever comes in, the answer is a 2xx (the mutation was still valid) or a
//! 4xx `application/problem+json` with a `code` — never a 5xx, a dropped connection
//! or a dead process. `ZAIKO_FUZZ_CASES` scales the number of cases (default 1000).
//!
//! (The contract test, `tests/contract/run.sh`, fuzzes the same routes from the
//! OpenAPI schema with schemathesis; this one starts from valid bodies, so it reaches
//! the checks behind the parser.)

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

use crate::helpers::{rand_suffix, TestServer, ADMIN};

/// A route with a JSON body: method, path, whether the admin token is needed, and a
/// valid body.
struct Route {
    method: &'static str,
    path: &'static str,
    admin: bool,
    body: Value,
}

fn routes() -> Vec<Route> {
    let ship_to = json!({"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"});
    let r = |method, path, admin, body| Route { method, path, admin, body };
    vec![
        r(
            "POST",
            "/v1/brands/b1/stock/changes",
            false,
            json!({"changes": [
                {"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1, "reason": "fuzz"},
                {"sku": "S2", "location": "osaka", "op": "set", "on_hand": 50, "expected_version": 1}
            ]}),
        ),
        r(
            "PUT",
            "/v1/brands/b1/skus/S9",
            false,
            json!({
                "name": "レザースニーカー", "product_id": "P1", "color": "navy", "size": "M", "category": "shoes",
                "price": 12900, "tags": ["leather"], "attributes": {"fit": "regular"}
            }),
        ),
        r(
            "POST",
            "/v1/brands/b1/reservations",
            false,
            json!({
                "id": "RF", "channel": "zozotown", "ttl_seconds": 600,
                "lines": [{"sku": "S1", "quantity": 1}, {"sku": "S2", "location": "osaka", "quantity": 2}]
            }),
        ),
        r(
            "POST",
            "/v1/brands/b1/shipments",
            false,
            json!({
                "id": "SHF", "order_ref": "EC-1", "channel": "brand_ec", "lines": [{"sku": "S1", "quantity": 1}], "ship_to": ship_to
            }),
        ),
        r("POST", "/v1/brands/b1/shipments/SH1/status", false, json!({"status": "picking", "tracking_number": "TN1", "carrier": "yamato"})),
        r("PUT", "/v1/brands/b1/channels/zozotown", false, json!({"name": "ZOZOTOWN", "locations": ["tsukuba"], "buffer": 2})),
        r(
            "POST",
            "/v1/brands/b1/inbounds",
            false,
            json!({
                "id": "INF", "location": "tsukuba", "expected_at": "2026-12-01T00:00:00Z", "lines": [{"sku": "S1", "quantity": 50}]
            }),
        ),
        r("POST", "/v1/brands/b1/inbounds/IN1/receipts", false, json!({"lines": [{"sku": "S1", "quantity": 20}]})),
        r("POST", "/v1/brands", true, json!({"id": "bf", "name": "ブランド"})),
        r("PUT", "/v1/locations/lf", true, json!({"name": "倉庫", "kind": "warehouse"})),
        r("POST", "/v1/brands/b1/tokens", true, json!({})),
    ]
}

/// Arbitrary JSON, leaves chosen to trouble parsers and range checks.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![Just(0i64), Just(-1), Just(1), Just(i64::MAX), Just(i64::MIN), Just(1_000_000_000_001)].prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![Just("x".repeat(70_000)), Just("\u{0}".to_string()), Just("../../etc".to_string()), Just("ｔシャツ".to_string())]
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,12}", inner), 0..8).prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// How a valid body is damaged.
#[derive(Debug, Clone)]
enum Mutation {
    /// The value at the n-th node (pre-order) replaced.
    Replace(prop::sample::Index, Value),
    /// A field of the n-th object removed.
    Remove(prop::sample::Index, prop::sample::Index),
    /// A field no route knows, added to the n-th object.
    Unknown(prop::sample::Index, Value),
    /// The body wrapped in an array.
    Wrap,
    /// The JSON text cut at a point.
    Cut(prop::sample::Index),
    /// A byte of the JSON text flipped.
    Flip(prop::sample::Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => (any::<prop::sample::Index>(), any::<prop::sample::Index>()).prop_map(|(i, k)| Mutation::Remove(i, k)),
        1 => (any::<prop::sample::Index>(), any_json()).prop_map(|(i, v)| Mutation::Unknown(i, v)),
        1 => Just(Mutation::Wrap),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Cut),
        1 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
    ]
}

/// The n-th node of a JSON tree, pre-order.
fn nth_node<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
    if *n == 0 {
        return Some(v);
    }
    *n -= 1;
    match v {
        Value::Array(items) => items.iter_mut().find_map(|x| nth_node(x, n)),
        Value::Object(map) => map.values_mut().find_map(|x| nth_node(x, n)),
        _ => None,
    }
}

/// The n-th object of a JSON tree, pre-order.
fn nth_object<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Map<String, Value>> {
    match v {
        Value::Object(map) => {
            if *n == 0 {
                return Some(map);
            }
            *n -= 1;
            map.values_mut().find_map(|x| nth_object(x, n))
        }
        Value::Array(items) => items.iter_mut().find_map(|x| nth_object(x, n)),
        _ => None,
    }
}

fn count(v: &Value, object: bool) -> usize {
    usize::from(!object || v.is_object())
        + match v {
            Value::Array(items) => items.iter().map(|x| count(x, object)).sum(),
            Value::Object(map) => map.values().map(|x| count(x, object)).sum(),
            _ => 0,
        }
}

fn apply(body: &Value, m: &Mutation) -> Vec<u8> {
    let mut v = body.clone();
    match m {
        Mutation::Replace(at, new) => {
            let mut n = at.index(count(&v, false));
            *nth_node(&mut v, &mut n).expect("in range") = new.clone();
        }
        Mutation::Remove(at, key) => {
            let mut n = at.index(count(&v, true).max(1));
            if let Some(map) = nth_object(&mut v, &mut n).filter(|m| !m.is_empty()) {
                let k = map.keys().nth(key.index(map.len())).cloned().expect("in range");
                map.remove(&k);
            }
        }
        Mutation::Unknown(at, new) => {
            let mut n = at.index(count(&v, true).max(1));
            if let Some(map) = nth_object(&mut v, &mut n) {
                map.insert("zz_not_a_field".into(), new.clone());
            }
        }
        Mutation::Wrap => v = Value::Array(vec![v]),
        Mutation::Cut(at) => {
            let mut bytes = serde_json::to_vec(&v).expect("json");
            bytes.truncate(at.index(bytes.len()));
            return bytes;
        }
        Mutation::Flip(at, x) => {
            let mut bytes = serde_json::to_vec(&v).expect("json");
            let i = at.index(bytes.len());
            bytes[i] ^= x;
            return bytes;
        }
    }
    serde_json::to_vec(&v).expect("json")
}

#[test]
fn mutated_json_bodies_get_a_2xx_or_a_4xx_problem_never_a_5xx() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba", "osaka"], &["S1", "S2"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 1_000);
    s.set_stock("b1", &t, "S2", "osaka", 1_000);
    let sh = json!({"id": "SH1", "lines": [{"sku": "S1", "quantity": 1}],
        "ship_to": {"name": "n", "postal_code": "100-0001", "prefecture": "東京都", "address": "a"}});
    s.post("/v1/brands/b1/shipments", &t, &sh).expect(201);
    let inbound =
        json!({"id": "IN1", "location": "tsukuba", "expected_at": "2026-12-01T00:00:00Z", "lines": [{"sku": "S1", "quantity": 50}]});
    s.post("/v1/brands/b1/inbounds", &t, &inbound).expect(201);
    let routes = routes();
    // Each valid body is valid: the mutations start from bodies the server accepts.
    for r in &routes {
        let token = if r.admin { ADMIN } else { &t };
        let key = format!("valid-{}", rand_suffix());
        let resp = s.request(r.method, r.path, Some(token), Some(&r.body), &[("Idempotency-Key", &key)]);
        assert!((200..300).contains(&resp.status), "{} {}: {} {}", r.method, r.path, resp.status, resp.body);
    }
    let cases = std::env::var("ZAIKO_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = (0..routes.len(), mutation());
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u64>::new());
    let result = runner.run(&strategy, |(i, m)| {
        let r = &routes[i];
        let body = apply(&r.body, &m);
        let token = if r.admin { ADMIN } else { &t };
        let key = format!("fuzz-{}", rand_suffix());
        let sent = s
            .client
            .request(reqwest::Method::from_bytes(r.method.as_bytes()).unwrap(), s.url(r.path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .map_err(|e| TestCaseError::fail(format!("{} {}: no answer ({e}) to {}", r.method, r.path, String::from_utf8_lossy(&body))))?;
        let status = sent.status().as_u16();
        *statuses.borrow_mut().entry(status).or_default() += 1;
        let content_type = sent.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let answer: Value = sent.json().unwrap_or(Value::Null);
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
        prop_assert!(status < 500, "{} {} answered {status} {answer} to {shown}", r.method, r.path);
        if status >= 400 {
            prop_assert!(content_type.starts_with("application/problem+json"), "{status} as {content_type:?} to {shown}");
            prop_assert!(answer["code"].is_string(), "a problem without a code: {answer}");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nserver log:\n{}", s.log());
    }
    let statuses = statuses.into_inner();
    eprintln!("fuzzed bodies, answers by status: {statuses:?}");
    assert!(statuses.keys().any(|s| *s >= 400), "no mutation was refused: the mutations do not reach the checks");
    // Still up and still writing.
    assert_eq!(s.client.get(s.url("/healthz")).send().unwrap().status().as_u16(), 200);
    let r = s.post_key(
        "/v1/brands/b1/stock/changes",
        &t,
        "after-fuzz",
        &json!({"changes": [
            {"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}
        ]}),
    );
    assert_eq!(r.body["results"][0]["status"], "applied", "{r:?}");
}
