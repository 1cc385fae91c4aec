//! Issue 4, "what must be shown": bad input to every route family — malformed JSON,
//! wrong types, out-of-range numbers, too many items, bad ids in the path, oversized
//! bodies (413 without the server reading them), a missing `Idempotency-Key` where the
//! contract requires one, unknown fields. Each is a 4xx `application/problem+json` with
//! the contract's `code` (and, where the contract says so, the offending field named);
//! the state is the same before and after (the full read of `isolation::state_of`); the
//! server stays healthy and a valid write still works.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{rand_suffix, Resp, TestServer, ADMIN};
use crate::isolation::{diff, server, state_of, Fixture};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// Brand A's token.
    Owner,
    Admin,
}

/// One bad request and the problem it must get.
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    path: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    token: Tok,
    /// Send only the head with this `Content-Length` (and a few bytes): the answer must
    /// come without the server waiting for the rest.
    declared: Option<u64>,
    status: u16,
    code: &'static str,
    /// A field the `errors` must name (exactly); empty: not checked.
    field: String,
}

/// A case with a body sent as JSON, brand A's token and a fresh `Idempotency-Key`.
fn c(method: &'static str, path: impl Into<String>, body: impl Into<Vec<u8>>, status: u16, code: &'static str, field: &str) -> Case {
    let body = body.into();
    let mut headers = vec![("idempotency-key".to_string(), format!("bad-{}", rand_suffix()))];
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    Case { method, path: path.into(), body, headers, token: Tok::Owner, declared: None, status, code, field: field.into() }
}

/// A 400 `invalid_request` naming `field`.
fn bad(method: &'static str, path: impl Into<String>, body: impl Into<Vec<u8>>, field: &str) -> Case {
    c(method, path, body, 400, "invalid_request", field)
}

impl Case {
    fn admin(mut self) -> Case {
        self.token = Tok::Admin;
        self
    }

    fn header(mut self, k: &str, v: &str) -> Case {
        self.headers.retain(|(name, _)| name != k);
        self.headers.push((k.into(), v.into()));
        self
    }

    fn no_key(mut self) -> Case {
        self.headers.retain(|(name, _)| name != "idempotency-key");
        self
    }

    fn declared(mut self, len: u64) -> Case {
        self.declared = Some(len);
        self
    }
}

/// Sends the head of a request declaring `len` body bytes and only 16 of them, and reads
/// the answer. A server that waited for the body would time out here.
fn send_head_only(s: &TestServer, case: &Case, token: &str, len: u64) -> Resp {
    let addr = s.base.strip_prefix("http://").expect("http base");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head =
        format!("{} {} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {len}\r\n", case.method, case.path);
    for (k, v) in &case.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&[b' '; 16]).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_end, body_len) = loop {
        let n = conn.read(&mut buf).unwrap_or_else(|e| panic!("{} {}: no answer before the body was sent ({e})", case.method, case.path));
        assert!(n > 0, "{} {}: connection closed without an answer", case.method, case.path);
        got.extend_from_slice(&buf[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..at]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse::<usize>().unwrap());
            break (at + 4, len);
        }
    };
    while got.len() < head_end + body_len {
        let n = conn.read(&mut buf).expect("read body");
        assert!(n > 0, "short body");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    };
    Resp {
        status,
        body: serde_json::from_slice(&got[head_end..head_end + body_len]).unwrap_or(Value::Null),
        lsn: header("x-zaiko-lsn").and_then(|v| v.parse().ok()),
        content_type: header("content-type").unwrap_or_default(),
        retry_after: header("retry-after"),
    }
}

fn check(s: &TestServer, f: &Fixture, case: &Case) -> Result<(), String> {
    let token = match case.token {
        Tok::Owner => f.a.as_str(),
        Tok::Admin => ADMIN,
    };
    let r = match case.declared {
        Some(len) => send_head_only(s, case, token, len),
        None => {
            let headers: Vec<(&str, &str)> = case.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            s.raw(case.method, &case.path, Some(token), case.body.clone(), &headers)
        }
    };
    let b = &r.body;
    if r.status != case.status || b["code"] != case.code {
        return Err(format!("status {} code {} (want {} {}); body {b}", r.status, b["code"], case.status, case.code));
    }
    if r.content_type != "application/problem+json" || b["status"] != case.status || b["type"] != format!("/problems/{}", case.code) {
        return Err(format!("not a problem: content-type {:?}, body {b}", r.content_type));
    }
    if r.lsn.is_some() {
        return Err("a refusal carries X-Zaiko-Lsn".into());
    }
    if !case.field.is_empty() {
        let fields: Vec<&str> = b["errors"].as_array().map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect()).unwrap_or_default();
        if !fields.contains(&case.field.as_str()) {
            return Err(format!("errors name {fields:?}, not {:?}; body {b}", case.field));
        }
    }
    Ok(())
}

/// Runs a family's cases against a fresh fixture: each must be its problem, nothing may
/// change, and afterwards the server is healthy and takes a valid write.
fn run(cases: impl FnOnce(&Fixture) -> Vec<Case>) {
    let s = server();
    let f = Fixture::new(&s);
    let before = state_of(&s, &f);
    let cases = cases(&f);
    assert!(!cases.is_empty());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check(&s, &f, case).err().map(|e| format!("{} {} {}: {e}", case.method, short(&case.path), short_body(&case.body)))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} bad requests answered wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
    let after = state_of(&s, &f);
    let changed = diff(&before, &after);
    assert!(changed.is_empty(), "bad requests changed the state:\n{}", changed.join("\n"));
    // Still healthy, and a valid write still works.
    assert_eq!(s.request("GET", "/healthz", None, None, &[]).status, 200);
    let r = s.post_key(
        "/v1/brands/iso-a/stock/changes",
        &f.a,
        &format!("after-{}", rand_suffix()),
        &json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}]}),
    );
    assert_eq!(r.body["results"][0]["status"], "applied", "{r:?}");
    assert!(r.lsn.is_some(), "{r:?}");
    assert!(s.journal().0 > after["wal"]["durable_lsn"].as_u64().unwrap(), "the valid write moved the journal on");
}

fn short(s: &str) -> String {
    if s.len() > 120 {
        format!("{}…({} bytes)", s.chars().take(100).collect::<String>(), s.len())
    } else {
        s.to_string()
    }
}

fn short_body(b: &[u8]) -> String {
    short(&String::from_utf8_lossy(b))
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

const SKU: &str = "/v1/brands/iso-a/skus/S1";

#[test]
fn catalog() {
    run(|_| {
        let deep = format!(r#"{{"name":"x","attributes":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        vec![
            bad("PUT", SKU, "{not json", "body"),
            bad("PUT", SKU, "", "body"),
            bad("PUT", SKU, r#"{"name":"x"} trailing"#, "body"),
            bad("PUT", SKU, b"{\"name\":\"\xff\xfe\"}".to_vec(), ""),
            bad("PUT", SKU, "[]", "body"),
            bad("PUT", SKU, r#"{"name":5}"#, "name"),
            bad("PUT", SKU, r#"{"name":null}"#, "name"),
            bad("PUT", SKU, r#"{}"#, "name"),
            bad("PUT", SKU, r#"{"name":""}"#, "name"),
            bad("PUT", SKU, format!(r#"{{"name":"{}"}}"#, long(501)), "name"),
            bad("PUT", SKU, r#"{"name":"x","price":-1}"#, "price"),
            bad("PUT", SKU, r#"{"name":"x","price":1.5}"#, "price"),
            bad("PUT", SKU, r#"{"name":"x","price":99999999999999999999}"#, "price"),
            bad("PUT", SKU, r#"{"name":"x","price":1000000000001}"#, "price"),
            bad("PUT", SKU, r#"{"name":"x","price":"3990"}"#, "price"),
            bad("PUT", SKU, r#"{"name":"x","tags":"cotton"}"#, "tags"),
            bad("PUT", SKU, format!(r#"{{"name":"x","tags":[{}]}}"#, vec![r#""t""#; 51].join(",")), "tags"),
            bad("PUT", SKU, r#"{"name":"x","attributes":{"a":{"b":1}}}"#, "attributes.a"),
            bad("PUT", SKU, deep, ""),
            bad("PUT", SKU, r#"{"name":"x","colour":"red"}"#, "colour"),
            // ids in the path
            bad("PUT", format!("/v1/brands/iso-a/skus/{}", long(129)), r#"{"name":"x"}"#, "path.sku"),
            bad("PUT", "/v1/brands/iso-a/skus/-S1", r#"{"name":"x"}"#, "path.sku"),
            bad("PUT", "/v1/brands/iso-a/skus/S%201", r#"{"name":"x"}"#, "path.sku"),
            bad("PUT", "/v1/brands/iso-a/skus/S1%2F2", r#"{"name":"x"}"#, "path.sku"),
            bad("GET", "/v1/brands/iso-a/skus/%E3%81%82", "", "path.sku"),
            bad("GET", "/v1/brands/iso-a/skus/%FF", "", ""),
            bad("DELETE", "/v1/brands/iso-a/skus/S1%00", "", "path.sku"),
            bad("PUT", "/v1/brands/ISO-A/skus/S1", r#"{"name":"x"}"#, "path.brand").admin(),
            bad("PUT", format!("/v1/brands/{}/skus/S1", "a".repeat(65)), r#"{"name":"x"}"#, "path.brand").admin(),
            c("GET", "/v1/brands/iso-a/skus/NOPE", "", 404, "not_found", ""),
            c("DELETE", "/v1/brands/iso-a/skus/NOPE", "", 404, "not_found", ""),
            c("DELETE", SKU, "", 409, "invalid_transition", ""),
            // oversized: sent whole, and only declared
            c("PUT", SKU, vec![b' '; 2 << 20], 413, "payload_too_large", ""),
            c("PUT", SKU, "", 413, "payload_too_large", "").declared(1 << 30),
            // a malformed Idempotency-Key is refused even where the key is optional
            bad("PUT", SKU, r#"{"name":"x"}"#, "header.idempotency-key").header("idempotency-key", &long(256)),
        ]
    });
}

const CHANGES: &str = "/v1/brands/iso-a/stock/changes";

fn change(fields: &str) -> String {
    format!(r#"{{"changes":[{{"sku":"S1","location":"tsukuba",{fields}}}]}}"#)
}

#[test]
fn stock() {
    run(|_| {
        let many = format!(r#"{{"changes":[{}]}}"#, vec![r#"{"sku":"S1","location":"tsukuba","op":"adjust","delta":1}"#; 1001].join(","));
        vec![
            bad("POST", CHANGES, change(r#""op":"adjust","delta":1"#), "header.idempotency-key").no_key(),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":1"#), "header.idempotency-key").header("idempotency-key", &long(256)),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":1"#), "header.idempotency-key").header("idempotency-key", "a b"),
            bad("POST", CHANGES, "{not json", "body"),
            bad("POST", CHANGES, r#"{"changes":{}}"#, "changes"),
            bad("POST", CHANGES, r#"{"changes":[]}"#, "changes"),
            bad("POST", CHANGES, many, "changes"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":0"#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":1.5"#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":"1""#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":1000000000001"#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":-1000000000001"#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":9223372036854775807"#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":-9223372036854775808"#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":9223372036854775808"#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"set","on_hand":-1"#), "changes[0].on_hand"),
            bad("POST", CHANGES, change(r#""op":"set_safety_stock","quantity":-1"#), "changes[0].quantity"),
            bad("POST", CHANGES, change(r#""op":"set_safety_stock","quantity":1000000000001"#), "changes[0].quantity"),
            bad("POST", CHANGES, change(r#""op":"set","on_hand":1,"expected_version":-1"#), "changes[0].expected_version"),
            bad("POST", CHANGES, change(r#""op":"mark_unsellable","quantity":0"#), "changes[0].quantity"),
            bad("POST", CHANGES, change(r#""op":"release_unsellable","quantity":-1"#), "changes[0].quantity"),
            bad("POST", CHANGES, change(r#""op":"dispose","quantity":1000000000001"#), "changes[0].quantity"),
            bad("POST", CHANGES, change(r#""op":"dispose","delta":1"#), "changes[0].quantity"),
            bad("POST", CHANGES, change(r#""op":"mark_unsellable","quantity":1,"delta":1"#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"adjust""#), "changes[0].delta"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":1,"on_hand":1"#), "changes[0].on_hand"),
            bad("POST", CHANGES, change(r#""op":"teleport","delta":1"#), "changes[0].op"),
            bad("POST", CHANGES, change(&format!(r#""op":"adjust","delta":1,"reason":"{}""#, long(201))), "changes[0].reason"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":1,"reason":"a\u0000b""#), "changes[0].reason"),
            bad("POST", CHANGES, change(r#""op":"adjust","delta":1,"colour":1"#), "changes[0].colour"),
            bad("POST", CHANGES, r#"{"changes":[{"sku":"bad sku","location":"tsukuba","op":"adjust","delta":1}]}"#, "changes[0].sku"),
            bad(
                "POST",
                CHANGES,
                format!(r#"{{"changes":[{{"sku":"S1","location":"{}","op":"adjust","delta":1}}]}}"#, long(129)),
                "changes[0].location",
            ),
            bad("POST", CHANGES, r#"{"changes":[],"extra":1}"#, "extra"),
            c("POST", CHANGES, vec![b' '; 2 << 20], 413, "payload_too_large", ""),
            c("POST", CHANGES, "", 413, "payload_too_large", "").declared(u64::MAX / 2),
            bad("GET", "/v1/brands/iso-a/skus/bad%20id/stock", "", "path.sku"),
            bad("POST", "/v1/brands/iso_a!/stock/changes", change(r#""op":"adjust","delta":1"#), "path.brand").admin(),
            c("GET", "/v1/brands/iso-a/skus/NOPE/stock", "", 404, "not_found", ""),
        ]
    });
}

const RESERVE: &str = "/v1/brands/iso-a/reservations";

fn reservation(fields: &str) -> String {
    format!(r#"{{"id":"R9","channel":"zozotown",{fields}}}"#)
}

#[test]
fn reservations() {
    run(|_| {
        let lines = |n: usize| (0..n).map(|i| format!(r#"{{"sku":"S{i}","quantity":1}}"#)).collect::<Vec<_>>().join(",");
        vec![
            bad("POST", RESERVE, "{not json", "body"),
            bad("POST", RESERVE, reservation(r#""ttl_seconds":0,"lines":[{"sku":"S1","quantity":1}]"#), "ttl_seconds"),
            bad("POST", RESERVE, reservation(r#""ttl_seconds":86401,"lines":[{"sku":"S1","quantity":1}]"#), "ttl_seconds"),
            bad("POST", RESERVE, reservation(r#""ttl_seconds":-5,"lines":[{"sku":"S1","quantity":1}]"#), "ttl_seconds"),
            bad("POST", RESERVE, reservation(r#""ttl_seconds":"600","lines":[{"sku":"S1","quantity":1}]"#), "ttl_seconds"),
            bad("POST", RESERVE, reservation(r#""ttl_seconds":99999999999999999999,"lines":[{"sku":"S1","quantity":1}]"#), "ttl_seconds"),
            bad("POST", RESERVE, reservation(r#""lines":[]"#), "lines"),
            bad("POST", RESERVE, reservation(&format!(r#""lines":[{}]"#, lines(101))), "lines"),
            bad("POST", RESERVE, reservation(r#""lines":[{"sku":"S1","quantity":0}]"#), "lines[0].quantity"),
            bad("POST", RESERVE, reservation(r#""lines":[{"sku":"S1","quantity":-2}]"#), "lines[0].quantity"),
            bad("POST", RESERVE, reservation(r#""lines":[{"sku":"S1","quantity":1000000000001}]"#), "lines[0].quantity"),
            bad("POST", RESERVE, reservation(r#""lines":[{"sku":"S1","quantity":1},{"sku":"S1","quantity":1}]"#), "lines[1].sku"),
            bad("POST", RESERVE, reservation(r#""lines":[{"sku":"S1","quantity":1,"price":5}]"#), "lines[0].price"),
            bad("POST", RESERVE, reservation(r#""lines":[{"sku":"S1","location":"bad loc","quantity":1}]"#), "lines[0].location"),
            bad("POST", RESERVE, reservation(r#""lines":[{"sku":"S1","quantity":1}],"note":"x""#), "note"),
            bad("POST", RESERVE, r#"{"id":"bad id","channel":"zozotown","lines":[{"sku":"S1","quantity":1}]}"#, "id"),
            bad("POST", RESERVE, format!(r#"{{"id":"{}","channel":"zozotown","lines":[{{"sku":"S1","quantity":1}}]}}"#, long(129)), "id"),
            bad("POST", RESERVE, r#"{"id":"R9","lines":[{"sku":"S1","quantity":1}]}"#, "channel"),
            c("POST", RESERVE, vec![b' '; 2 << 20], 413, "payload_too_large", ""),
            c("POST", RESERVE, "", 413, "payload_too_large", "").declared(1 << 40),
            // a reservation that cannot be held changes nothing
            c("POST", RESERVE, reservation(r#""lines":[{"sku":"S1","quantity":1000000}]"#), 409, "insufficient_stock", ""),
            c("POST", RESERVE, reservation(r#""lines":[{"sku":"NOPE","quantity":1}]"#), 404, "not_found", ""),
            bad("POST", "/v1/brands/iso-a/reservations/bad%20id/release", "", "path.id"),
            bad("POST", format!("/v1/brands/iso-a/reservations/{}/release", long(129)), "", "path.id"),
            c("POST", "/v1/brands/iso-a/reservations/R9/release", "", 404, "not_found", ""),
            bad("GET", "/v1/brands/iso-a/reservations/.R1", "", "path.id"),
            c("GET", "/v1/brands/iso-a/reservations/R9", "", 404, "not_found", ""),
        ]
    });
}

const SHIP: &str = "/v1/brands/iso-a/shipments";
const SHIP_TO: &str = r#""ship_to":{"name":"山田 太郎","postal_code":"100-0001","prefecture":"東京都","address":"千代田区1-1"}"#;

fn shipment(fields: &str) -> String {
    format!(r#"{{"id":"SH9",{fields}}}"#)
}

#[test]
fn shipments() {
    run(|_| {
        let lines = r#""lines":[{"sku":"S2","quantity":1}]"#;
        vec![
            bad("POST", SHIP, "{not json", "body"),
            bad("POST", SHIP, shipment(&format!(r#""reservation_id":"R1",{lines},{SHIP_TO}"#)), "reservation_id"),
            bad("POST", SHIP, shipment(SHIP_TO), "reservation_id"),
            bad("POST", SHIP, shipment(lines), "ship_to"),
            bad(
                "POST",
                SHIP,
                shipment(&format!(r#"{lines},"ship_to":{{"name":"","postal_code":"1","prefecture":"p","address":"a"}}"#)),
                "ship_to.name",
            ),
            bad(
                "POST",
                SHIP,
                shipment(&format!(r#"{lines},"ship_to":{{"postal_code":"1","prefecture":"p","address":"a"}}"#)),
                "ship_to.name",
            ),
            bad(
                "POST",
                SHIP,
                shipment(&format!(r#"{lines},"ship_to":{{"name":"n","postal_code":"1","prefecture":"p","address":"a","email":"e"}}"#)),
                "ship_to.email",
            ),
            bad("POST", SHIP, shipment(&format!(r#"{lines},"order_ref":"{}",{SHIP_TO}"#, long(201))), "order_ref"),
            bad("POST", SHIP, shipment(&format!(r#""lines":[{{"sku":"S2","quantity":0}}],{SHIP_TO}"#)), "lines[0].quantity"),
            bad("POST", SHIP, shipment(&format!(r#""lines":[],{SHIP_TO}"#)), "lines"),
            bad("POST", SHIP, shipment(&format!(r#""reservation_id":"bad id",{SHIP_TO}"#)), "reservation_id"),
            bad("POST", SHIP, format!(r#"{{"id":"x y",{lines},{SHIP_TO}}}"#), "id"),
            c("POST", SHIP, shipment(&format!(r#""reservation_id":"R9",{SHIP_TO}"#)), 404, "not_found", ""),
            c("POST", SHIP, shipment(&format!(r#""lines":[{{"sku":"S2","quantity":100000}}],{SHIP_TO}"#)), 409, "insufficient_stock", ""),
            c("POST", SHIP, "", 413, "payload_too_large", "").declared(1 << 30),
            // status
            bad("POST", "/v1/brands/iso-a/shipments/SH1/status", r#"{"status":"accepted"}"#, "status"),
            bad("POST", "/v1/brands/iso-a/shipments/SH1/status", r#"{"status":"lost"}"#, "status"),
            bad("POST", "/v1/brands/iso-a/shipments/SH1/status", r#"{"status":1}"#, "status"),
            bad("POST", "/v1/brands/iso-a/shipments/SH1/status", r#"{}"#, "status"),
            bad(
                "POST",
                "/v1/brands/iso-a/shipments/SH1/status",
                format!(r#"{{"status":"packed","tracking_number":"{}"}}"#, long(201)),
                "tracking_number",
            ),
            bad("POST", "/v1/brands/iso-a/shipments/SH1/status", r#"{"status":"packed","carrier":""}"#, "carrier"),
            bad("POST", "/v1/brands/iso-a/shipments/SH1/status", r#"{"status":"packed","weight":1}"#, "weight"),
            c("POST", "/v1/brands/iso-a/shipments/SH1/status", r#"{"status":"delivered"}"#, 409, "invalid_transition", ""),
            c("POST", "/v1/brands/iso-a/shipments/SH9/status", r#"{"status":"packed"}"#, 404, "not_found", ""),
            bad("POST", "/v1/brands/iso-a/shipments/SH%3F1/status", r#"{"status":"packed"}"#, "path.id"),
            bad("GET", format!("/v1/brands/iso-a/shipments/{}", long(200)), "", "path.id"),
        ]
    });
}

#[test]
fn channels_and_inbounds() {
    run(|_| {
        let ch = "/v1/brands/iso-a/channels/zozotown";
        let inb = "/v1/brands/iso-a/inbounds";
        vec![
            bad("PUT", ch, "{not json", "body"),
            bad("PUT", ch, r#"{"name":"Z","buffer":-1}"#, "buffer"),
            bad("PUT", ch, r#"{"name":"Z","buffer":1000000000001}"#, "buffer"),
            bad("PUT", ch, r#"{"name":"Z","buffer":"2"}"#, "buffer"),
            bad("PUT", ch, r#"{"name":""}"#, "name"),
            bad("PUT", ch, r#"{"name":"Z","locations":["bad loc"]}"#, "locations[0]"),
            bad("PUT", ch, r#"{"name":"Z","locations":"tsukuba"}"#, "locations"),
            bad("PUT", ch, r#"{"name":"Z","locations":["nowhere"]}"#, ""),
            bad("PUT", ch, r#"{"name":"Z","colour":"red"}"#, "colour"),
            bad("PUT", "/v1/brands/iso-a/channels/zozo%20town", r#"{"name":"Z"}"#, "path.channel"),
            c("PUT", ch, "", 413, "payload_too_large", "").declared(1 << 30),
            bad(
                "POST",
                inb,
                r#"{"id":"IN9","location":"tsukuba","expected_at":"tomorrow","lines":[{"sku":"S1","quantity":1}]}"#,
                "expected_at",
            ),
            bad("POST", inb, r#"{"id":"IN9","location":"tsukuba","lines":[{"sku":"S1","quantity":0}]}"#, "lines[0].quantity"),
            bad("POST", inb, r#"{"id":"IN9","location":"tsukuba","lines":[]}"#, "lines"),
            bad("POST", inb, r#"{"id":"IN9","location":"bad loc","lines":[{"sku":"S1","quantity":1}]}"#, "location"),
            bad("POST", inb, r#"{"id":"IN9","location":"tsukuba","lines":[{"sku":"S1","quantity":1,"unit":"pcs"}]}"#, "lines[0].unit"),
            bad("POST", inb, r#"{"location":"tsukuba","lines":[{"sku":"S1","quantity":1}]}"#, "id"),
            bad("POST", "/v1/brands/iso-a/inbounds/IN1/receipts", r#"{"lines":[{"sku":"S1","quantity":-3}]}"#, "lines[0].quantity"),
            bad(
                "POST",
                "/v1/brands/iso-a/inbounds/IN1/receipts",
                format!(r#"{{"lines":[{}]}}"#, (0..101).map(|i| format!(r#"{{"sku":"S{i}","quantity":1}}"#)).collect::<Vec<_>>().join(",")),
                "lines",
            ),
            bad("POST", "/v1/brands/iso-a/inbounds/IN1/receipts", r#"{"lines":[{"sku":"S1","quantity":1}],"note":1}"#, "note"),
            c("POST", "/v1/brands/iso-a/inbounds/IN9/receipts", r#"{"lines":[{"sku":"S1","quantity":1}]}"#, 404, "not_found", ""),
            c("POST", "/v1/brands/iso-a/inbounds/IN9/close", "", 404, "not_found", ""),
            bad("POST", "/v1/brands/iso-a/inbounds/IN%251/close", "", "path.id"),
            bad("GET", "/v1/brands/iso-a/inbounds/IN1%20", "", "path.id"),
        ]
    });
}

#[test]
fn transfers() {
    run(|_| {
        let tr = "/v1/brands/iso-a/transfers";
        let body = |fields: &str| format!(r#"{{"id":"T9","origin":"tsukuba","destination":"shibuya",{fields}}}"#);
        let many = (0..101).map(|i| format!(r#"{{"sku":"S{i}","quantity":1}}"#)).collect::<Vec<_>>().join(",");
        vec![
            bad("POST", tr, "{not json", "body"),
            bad("POST", tr, body(r#""lines":[]"#), "lines"),
            bad("POST", tr, body(&format!(r#""lines":[{many}]"#)), "lines"),
            bad("POST", tr, body(r#""lines":[{"sku":"S1","quantity":0}]"#), "lines[0].quantity"),
            bad("POST", tr, body(r#""lines":[{"sku":"S1","quantity":1000000000001}]"#), "lines[0].quantity"),
            bad("POST", tr, body(r#""lines":[{"sku":"S1","quantity":1},{"sku":"S1","quantity":1}]"#), "lines[1].sku"),
            bad("POST", tr, body(r#""lines":[{"sku":"S1","quantity":1,"unit":"pcs"}]"#), "lines[0].unit"),
            bad("POST", tr, body(r#""lines":[{"sku":"S1","quantity":1}],"note":1"#), "note"),
            bad("POST", tr, r#"{"id":"T9","origin":"tsukuba","destination":"tsukuba","lines":[{"sku":"S1","quantity":1}]}"#, "destination"),
            bad("POST", tr, r#"{"id":"T9","origin":"bad loc","destination":"shibuya","lines":[{"sku":"S1","quantity":1}]}"#, "origin"),
            bad("POST", tr, r#"{"id":"bad id","origin":"tsukuba","destination":"shibuya","lines":[{"sku":"S1","quantity":1}]}"#, "id"),
            bad("POST", tr, r#"{"origin":"tsukuba","destination":"shibuya","lines":[{"sku":"S1","quantity":1}]}"#, "id"),
            c("POST", tr, body(r#""lines":[{"sku":"NOPE","quantity":1}]"#), 404, "not_found", ""),
            c(
                "POST",
                tr,
                r#"{"id":"T9","origin":"tsukuba","destination":"mars","lines":[{"sku":"S1","quantity":1}]}"#,
                404,
                "not_found",
                "",
            ),
            // the fixture's T1 again with another body
            c(
                "POST",
                tr,
                r#"{"id":"T1","origin":"tsukuba","destination":"shibuya","lines":[{"sku":"S2","quantity":9}]}"#,
                409,
                "already_exists",
                "",
            ),
            c("POST", tr, vec![b' '; 2 << 20], 413, "payload_too_large", ""),
            // T1 is a draft: nothing to receive or close; shipping more than is there is refused whole
            c("POST", "/v1/brands/iso-a/transfers/T1/receipts", r#"{"lines":[{"sku":"S2","quantity":1}]}"#, 409, "invalid_transition", ""),
            c("POST", "/v1/brands/iso-a/transfers/T1/close", "", 409, "invalid_transition", ""),
            c("POST", "/v1/brands/iso-a/transfers/BIG/ship", "", 409, "insufficient_stock", ""),
            bad("POST", "/v1/brands/iso-a/transfers/T1/receipts", r#"{"lines":[{"sku":"S2","quantity":-1}]}"#, "lines[0].quantity"),
            bad("POST", "/v1/brands/iso-a/transfers/T1/receipts", r#"{"lines":[{"sku":"S2","quantity":1}],"x":1}"#, "x"),
            c("POST", "/v1/brands/iso-a/transfers/T9/ship", "", 404, "not_found", ""),
            c("POST", "/v1/brands/iso-a/transfers/T9/cancel", "", 404, "not_found", ""),
            c("GET", "/v1/brands/iso-a/transfers/T9", "", 404, "not_found", ""),
            bad("GET", "/v1/brands/iso-a/transfers/T1%20", "", "path.id"),
            bad("POST", "/v1/brands/iso-a/transfers/T%251/ship", "", "path.id"),
        ]
    });
}

#[test]
fn returns() {
    run(|_| {
        let rt = "/v1/brands/iso-a/returns";
        let body = |fields: &str| format!(r#"{{"id":"RT9","shipment_id":"SH-R",{fields}}}"#);
        let rcv = "/v1/brands/iso-a/returns/RT1/receipts";
        vec![
            bad("POST", rt, "{not json", "body"),
            bad("POST", rt, body(r#""reason":"size","lines":[]"#), "lines"),
            bad("POST", rt, body(r#""reason":"","lines":[{"sku":"S2","quantity":1}]"#), "reason"),
            bad("POST", rt, body(&format!(r#""reason":"{}","lines":[{{"sku":"S2","quantity":1}}]"#, long(201))), "reason"),
            bad("POST", rt, body(r#""lines":[{"sku":"S2","quantity":1}]"#), "reason"),
            bad("POST", rt, body(r#""reason":"size","lines":[{"sku":"S2","quantity":0}]"#), "lines[0].quantity"),
            bad("POST", rt, body(r#""reason":"size","lines":[{"sku":"S2","quantity":1},{"sku":"S2","quantity":1}]"#), "lines[1].sku"),
            bad("POST", rt, body(r#""reason":"size","lines":[{"sku":"S2","quantity":1}],"x":1"#), "x"),
            // more than shipped less what RT1 already asks for, and a SKU it did not ship
            bad("POST", rt, body(r#""reason":"size","lines":[{"sku":"S2","quantity":2}]"#), "lines[0].quantity"),
            bad("POST", rt, body(r#""reason":"size","lines":[{"sku":"S1","quantity":1}]"#), "lines[0].sku"),
            c("POST", rt, r#"{"id":"RT9","shipment_id":"NOPE","reason":"size","lines":[{"sku":"S2","quantity":1}]}"#, 404, "not_found", ""),
            c(
                "POST",
                rt,
                r#"{"id":"RT9","shipment_id":"SH1","reason":"size","lines":[{"sku":"S2","quantity":1}]}"#,
                409,
                "invalid_transition",
                "",
            ),
            c(
                "POST",
                rt,
                r#"{"id":"RT1","shipment_id":"SH-R","reason":"other","lines":[{"sku":"S2","quantity":1}]}"#,
                409,
                "already_exists",
                "",
            ),
            c("POST", rt, vec![b' '; 2 << 20], 413, "payload_too_large", ""),
            bad("POST", rcv, r#"{"lines":[{"sku":"S2","quantity":1,"disposition":"restock"}]}"#, "lines[0].location"),
            bad("POST", rcv, r#"{"lines":[{"sku":"S2","quantity":1,"disposition":"missing","location":"tsukuba"}]}"#, "lines[0].location"),
            bad(
                "POST",
                rcv,
                r#"{"lines":[{"sku":"S2","quantity":1,"disposition":"resell","location":"tsukuba"}]}"#,
                "lines[0].disposition",
            ),
            bad("POST", rcv, r#"{"lines":[{"sku":"S2","quantity":2,"disposition":"missing"}]}"#, "lines[0].quantity"),
            bad("POST", rcv, r#"{"lines":[{"sku":"S2","quantity":1,"disposition":"restock","location":"mars"}]}"#, "lines[0].location"),
            bad("POST", rcv, r#"{"lines":[]}"#, "lines"),
            bad(
                "POST",
                rcv,
                r#"{"lines":[{"sku":"S2","quantity":1,"disposition":"missing"},{"sku":"S2","quantity":1,"disposition":"missing"}]}"#,
                "lines[1].sku",
            ),
            c("POST", "/v1/brands/iso-a/returns/RT9/in_transit", "", 404, "not_found", ""),
            c("POST", "/v1/brands/iso-a/returns/RT9/close", "", 404, "not_found", ""),
            c("GET", "/v1/brands/iso-a/returns/RT9", "", 404, "not_found", ""),
            bad("GET", "/v1/brands/iso-a/returns/RT1%20", "", "path.id"),
        ]
    });
}

#[test]
fn low_stock() {
    run(|_| {
        let ls = "/v1/brands/iso-a/low-stock/zozotown";
        let many = (0..1001).map(|i| format!(r#"{{"sku":"S{i}","threshold":1}}"#)).collect::<Vec<_>>().join(",");
        vec![
            bad("PUT", ls, "{not json", "body"),
            bad("PUT", ls, r#"{"default":0}"#, "default"),
            bad("PUT", ls, r#"{"default":-1}"#, "default"),
            bad("PUT", ls, r#"{"default":"5"}"#, "default"),
            bad("PUT", ls, r#"{"default":1000000000001}"#, "default"),
            bad("PUT", ls, r#"{"skus":[{"sku":"S1","threshold":0}]}"#, "skus[0].threshold"),
            bad("PUT", ls, r#"{"skus":[{"sku":"S1","threshold":1},{"sku":"S1","threshold":2}]}"#, "skus[1].sku"),
            bad("PUT", ls, r#"{"skus":[{"sku":"bad sku","threshold":1}]}"#, "skus[0].sku"),
            bad("PUT", ls, format!(r#"{{"skus":[{many}]}}"#), "skus"),
            bad("PUT", ls, r#"{"default":5,"colour":1}"#, "colour"),
            bad("PUT", "/v1/brands/iso-a/low-stock/zozo%20town", r#"{"default":5}"#, "path.channel"),
            c("PUT", "/v1/brands/iso-a/low-stock/nowhere", r#"{"default":5}"#, 422, "unknown_channel", ""),
            c("GET", "/v1/brands/iso-a/low-stock/nowhere", "", 422, "unknown_channel", ""),
            c("PUT", ls, "", 413, "payload_too_large", "").declared(1 << 30),
        ]
    });
}

#[test]
fn webhooks() {
    run(|f| {
        let hooks = "/v1/brands/iso-a/webhooks";
        let hook = format!("/v1/brands/iso-a/webhooks/{}", f.hook);
        let ev = r#""events":["stock.changed"]"#;
        vec![
            bad("POST", hooks, "{not json", "body"),
            bad("POST", hooks, format!(r#"{{"url":"ftp://example.com/x",{ev}}}"#), "url"),
            bad("POST", hooks, format!(r#"{{"url":"http://user:pw@example.com/x",{ev}}}"#), "url"),
            bad("POST", hooks, format!(r#"{{"url":"not a url",{ev}}}"#), "url"),
            bad("POST", hooks, format!(r#"{{"url":"http://example.com/{}",{ev}}}"#, long(2100)), "url"),
            bad("POST", hooks, r#"{"url":"http://example.com/x","events":[]}"#, "events"),
            bad("POST", hooks, r#"{"url":"http://example.com/x","events":["stock.exploded"]}"#, "events[0]"),
            bad("POST", hooks, r#"{"url":"http://example.com/x","events":["stock.changed","stock.changed"]}"#, "events[1]"),
            bad("POST", hooks, r#"{"url":"http://example.com/x","events":"stock.changed"}"#, "events"),
            bad("POST", hooks, format!(r#"{{"url":"http://example.com/x",{ev},"secret":"mine"}}"#), "secret"),
            c("POST", hooks, "", 413, "payload_too_large", "").declared(1 << 30),
            bad("GET", format!("{hook}/deliveries?status=lost"), "", "status"),
            bad("GET", format!("{hook}/deliveries?limit=0"), "", "limit"),
            bad("GET", format!("{hook}/deliveries?limit=1001"), "", "limit"),
            bad("GET", format!("{hook}/deliveries?after=-1"), "", "after"),
            bad("GET", format!("{hook}/deliveries?colour=red"), "", "query"),
            c("GET", "/v1/brands/iso-a/webhooks/wh_0000000000000000/deliveries", "", 404, "not_found", ""),
            bad("POST", format!("{hook}/replay"), r#"{"after_seq":-1}"#, "after_seq"),
            bad("POST", format!("{hook}/replay"), r#"{}"#, "after_seq"),
            bad("POST", format!("{hook}/replay"), r#"{"after_seq":"1"}"#, "after_seq"),
            bad("POST", format!("{hook}/replay"), r#"{"after_seq":0,"fast":true}"#, "fast"),
            c("POST", "/v1/brands/iso-a/webhooks/wh_0000000000000000/replay", r#"{"after_seq":0}"#, 404, "not_found", ""),
            c("POST", "/v1/brands/iso-a/webhooks/wh_0000000000000000/redrive", "", 404, "not_found", ""),
            bad("POST", "/v1/brands/iso-a/webhooks/wh%20x/redrive", "", "path.id"),
            bad("DELETE", "/v1/brands/iso-a/webhooks/wh%20x", "", "path.id"),
            c("DELETE", "/v1/brands/iso-a/webhooks/wh_0000000000000000", "", 404, "not_found", ""),
        ]
    });
}

#[test]
fn imports() {
    run(|_| {
        let up = "/v1/brands/iso-a/imports";
        let csv = |q: &str, body: &str, status: u16, code: &'static str, field: &str| {
            c("POST", format!("{up}{q}"), body.to_string(), status, code, field).header("content-type", "text/csv")
        };
        vec![
            csv("", "sku,location,delta\nS1,tsukuba,1\n", 400, "invalid_request", "query.kind"),
            csv("?kind=everything", "sku,location,delta\nS1,tsukuba,1\n", 400, "invalid_request", "query.kind"),
            csv("?kind=stock&colour=red", "sku,location,delta\nS1,tsukuba,1\n", 400, "invalid_request", ""),
            csv("?kind=shipment_status", "shipment_id,carrier\nSH1,yamato\n", 422, "unprocessable", ""),
            csv("?kind=stock", "sku,location,colour\nS1,tsukuba,red\n", 422, "unprocessable", ""),
            csv("?kind=stock", "sku,location,delta,delta\nS1,tsukuba,1,1\n", 422, "unprocessable", ""),
            csv("?kind=catalog", "sku,location,delta\nS1,tsukuba,1\n", 422, "unprocessable", ""),
            csv("?kind=stock", "sku,location,op\nS1,tsukuba,dispose\n", 422, "unprocessable", ""),
            csv("?kind=stock", "sku,location,op,quantity,delta\nS1,tsukuba,dispose,1,1\n", 422, "unprocessable", ""),
            csv("?kind=transfers", "id,origin,sku,quantity\nT1,tsukuba,S1,1\n", 422, "unprocessable", ""),
            csv("?kind=returns", "id,shipment_id,reason,sku,quantity,note\nR1,SH1,x,S1,1,n\n", 422, "unprocessable", ""),
            c("POST", format!("{up}?kind=stock"), r#"{"sku":"S1"}"#, 400, "invalid_request", "header.content-type"),
            c("POST", format!("{up}?kind=stock"), "sku,location,delta\n", 400, "invalid_request", "header.content-type")
                .header("content-type", "text/plain"),
            csv("?kind=stock", "", 413, "payload_too_large", "").declared((512 << 20) + 1),
            csv("?kind=stock", "sku,location,delta\nS1,tsukuba,1\n", 400, "invalid_request", "header.idempotency-key")
                .header("idempotency-key", &long(300)),
            bad("GET", "/v1/brands/iso-a/imports/imp%20x", "", "path.id"),
            c("GET", "/v1/brands/iso-a/imports/imp_0000000000000000", "", 404, "not_found", ""),
        ]
    });
}

#[test]
fn search() {
    run(|_| {
        let skus = "/v1/search/skus";
        let ships = "/v1/search/shipments";
        vec![
            bad("GET", format!("{skus}?limit=0"), "", "query.limit"),
            bad("GET", format!("{skus}?limit=101"), "", "query.limit"),
            bad("GET", format!("{skus}?limit=ten"), "", "query.limit"),
            bad("GET", format!("{skus}?limit=99999999999999999999999"), "", "query.limit"),
            bad("GET", format!("{skus}?colour=red"), "", "query.colour"),
            bad("GET", format!("{skus}?q=a&q=b"), "", "query.q"),
            bad("GET", format!("{skus}?sort=cheapest"), "", "query.sort"),
            bad("GET", format!("{skus}?in_stock=maybe"), "", "query.in_stock"),
            bad("GET", format!("{skus}?min_lsn=-1"), "", "query.min_lsn"),
            bad("GET", format!("{skus}?cursor=garbage"), "", "query.cursor"),
            bad("GET", format!("{skus}?q={}", long(5000)), "", "query.q"),
            bad("GET", format!("{skus}?brand=ISO_A!"), "", "query.brand"),
            bad("GET", format!("{skus}?location=bad%20loc"), "", "query.location"),
            bad("GET", format!("{skus}?price_min=10&price_max=5"), "", "query.price_min"),
            bad("GET", format!("{skus}?price_min=-1"), "", "query.price_min"),
            bad("GET", format!("{skus}?color=%00"), "", "query.color"),
            c("GET", format!("{skus}?brand=iso-b"), "", 403, "forbidden", ""),
            bad("GET", format!("{ships}?status=lost"), "", "query.status"),
            bad("GET", format!("{ships}?created_from=yesterday"), "", "query.created_from"),
            bad("GET", format!("{ships}?created_from=2026-12-02T00:00:00Z&created_to=2026-12-01T00:00:00Z"), "", "query.created_from"),
            bad("GET", format!("{ships}?sort=price_asc"), "", "query.sort"),
            bad("GET", format!("{ships}?limit=0"), "", "query.limit"),
            bad("GET", format!("{ships}?cursor=%FF%FE"), "", "query.cursor"),
            bad("GET", format!("{ships}?in_stock=true"), "", "query.in_stock"),
        ]
    });
}

#[test]
fn admin_and_feed() {
    run(|_| {
        let ev = "/v1/brands/iso-a/events";
        let hist = "/v1/brands/iso-a/skus/S1/history";
        vec![
            bad("POST", "/v1/brands", "{not json", "body").admin(),
            bad("POST", "/v1/brands", r#"{"id":"Bad","name":"x"}"#, "id").admin(),
            bad("POST", "/v1/brands", format!(r#"{{"id":"{}","name":"x"}}"#, "a".repeat(65)), "id").admin(),
            bad("POST", "/v1/brands", r#"{"id":"ok1","name":""}"#, "name").admin(),
            bad("POST", "/v1/brands", r#"{"id":"ok1"}"#, "name").admin(),
            bad("POST", "/v1/brands", r#"{"id":"ok1","name":"x","plan":"gold"}"#, "plan").admin(),
            c("POST", "/v1/brands", r#"{"id":"iso-a","name":"again"}"#, 409, "already_exists", "").admin(),
            c("POST", "/v1/brands", "", 413, "payload_too_large", "").admin().declared(1 << 30),
            bad("PUT", "/v1/locations/tsukuba", r#"{"name":"x","kind":"moon"}"#, "kind").admin(),
            bad("PUT", "/v1/locations/tsukuba", r#"{"name":"x"}"#, "kind").admin(),
            bad("PUT", "/v1/locations/tsukuba", format!(r#"{{"name":"{}","kind":"store"}}"#, long(201)), "name").admin(),
            bad("PUT", "/v1/locations/bad%20loc", r#"{"name":"x","kind":"store"}"#, "path.location").admin(),
            bad("POST", "/v1/admin/clock", r#"{"advance_seconds":-1}"#, "advance_seconds").admin(),
            bad("POST", "/v1/admin/clock", r#"{"advance_seconds":1e3}"#, "advance_seconds").admin(),
            c("POST", "/v1/admin/clock", r#"{"advance_seconds":1}"#, 422, "unprocessable", "").admin(),
            bad("POST", "/v1/tokens", r#"{"role":"admin"}"#, "role").admin(),
            bad("POST", "/v1/tokens", r#"{"role":"brand"}"#, "role").admin(),
            bad("POST", "/v1/tokens", r#"{}"#, "role").admin(),
            bad("DELETE", "/v1/tokens/bad!id", "", "path.id").admin(),
            c("DELETE", "/v1/tokens/0000000000000000", "", 404, "not_found", "").admin(),
            bad("POST", "/v1/brands/iso-a/tokens", r#"{"role":"brand"}"#, "role").admin(),
            bad("POST", "/v1/brands/iso-a/tokens", "nope", "body").admin(),
            c("POST", "/v1/brands/iso-a/tokens", vec![b' '; 8192], 413, "payload_too_large", "").admin(),
            c("POST", "/v1/brands/iso-zz/tokens", "{}", 404, "not_found", "").admin(),
            bad("GET", "/v1/brands/ISO-A", "", "path.brand").admin(),
            c("GET", "/v1/brands/iso-zz", "", 404, "not_found", "").admin(),
            // the change feed
            bad("GET", format!("{ev}?limit=0"), "", "limit"),
            bad("GET", format!("{ev}?limit=1001"), "", "limit"),
            bad("GET", format!("{ev}?wait=31"), "", "wait"),
            bad("GET", format!("{ev}?after=abc"), "", "after"),
            bad("GET", format!("{ev}?after=-1"), "", "after"),
            bad("GET", format!("{ev}?after=999999"), "", "after"),
            bad("GET", format!("{ev}?cursor=1"), "", "query"),
            // a SKU's history
            bad("GET", format!("{hist}?limit=0"), "", "limit"),
            bad("GET", format!("{hist}?limit=1001"), "", "limit"),
            bad("GET", format!("{hist}?after=abc"), "", "after"),
            bad("GET", format!("{hist}?after=999999"), "", "after"),
            bad("GET", format!("{hist}?order=sideways"), "", "order"),
            bad("GET", format!("{hist}?wait=1"), "", "query"),
            bad("GET", "/v1/brands/iso-a/skus/bad%20sku/history", "", "path.sku"),
            c("GET", "/v1/brands/iso-a/skus/NOPE/history", "", 404, "not_found", ""),
        ]
    });
}

/// Out-of-range numbers in an import's rows are row errors (`invalid_request`), not
/// stock refusals, and never wrap: `-9223372036854775808` is out of ±10^12 too.
#[test]
fn import_rows_with_out_of_range_numbers_are_invalid_rows() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 10);
    let csv = "sku,location,delta\nS1,tsukuba,-9223372036854775808\nS1,tsukuba,9223372036854775807\nS1,tsukuba,99999999999999999999\nS1,tsukuba,0\nS1,tsukuba,1\n";
    let job =
        s.raw("POST", "/v1/brands/b1/imports?kind=stock", Some(&t), csv.as_bytes().to_vec(), &[("content-type", "text/csv")]).expect(202);
    let path = format!("/v1/brands/b1/imports/{}", job["id"].as_str().unwrap());
    crate::isolation::wait_for(Duration::from_secs(60), "the import job", || {
        let st = s.get(&path, &t).expect(200)["status"].clone();
        st == "done" || st == "failed"
    });
    let job = s.get(&path, &t).expect(200);
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!((job["rows_ok"].as_u64(), job["rows_failed"].as_u64()), (Some(1), Some(4)), "{job}");
    let errors = job["errors"].as_array().unwrap();
    let rows: Vec<(u64, &str)> = errors.iter().map(|e| (e["row"].as_u64().unwrap(), e["code"].as_str().unwrap())).collect();
    assert_eq!(rows, [(2, "invalid_request"), (3, "invalid_request"), (4, "invalid_request"), (5, "invalid_request")], "{job}");
    assert_eq!(s.stock("b1", &t, "S1")["locations"]["tsukuba"]["on_hand"], 11);
}

/// Sends `request` as raw bytes (on a thread of its own, so that a server that stops
/// reading cannot block it) and reads the whole answer until the server closes.
/// Returns the status, the head (lower case) and the body.
fn raw_exchange(s: &TestServer, request: Vec<u8>) -> (u16, String, Vec<u8>) {
    let addr = s.base.strip_prefix("http://").expect("http base").to_string();
    let conn = std::net::TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        // The server may refuse and close before reading it all: not this test's concern.
        let _ = writer.write_all(&request);
    });
    let mut got = Vec::new();
    let mut reader = conn;
    let _ = reader.read_to_end(&mut got);
    sending.join().unwrap();
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no answer head: {:?}", String::from_utf8_lossy(&got)));
    let head = String::from_utf8_lossy(&got[..at]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a status");
    (status, head, got[at + 4..].to_vec())
}

#[test]
fn refusals_before_the_app_are_problems_too() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let host = s.base.strip_prefix("http://").unwrap().to_string();
    let get = |target: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {t}\r\n{extra}\r\n").into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("a 100 KB URI", get(&format!("/v1/brands/b1/skus/{}", "a".repeat(100 << 10)), ""), 414, "uri_too_long"),
        ("a 1 MB query string", get(&format!("/v1/search/skus?q={}", "x".repeat(1 << 20)), ""), 414, "uri_too_long"),
        ("a 9 KB URI", get(&format!("/v1/search/skus?q={}", "x".repeat(9 << 10)), ""), 414, "uri_too_long"),
        (
            "a Content-Length past u64",
            format!("POST /v1/brands/b1/stock/changes HTTP/1.1\r\nHost: {host}\r\nContent-Length: 99999999999999999999999\r\n\r\n{{}}")
                .into_bytes(),
            400,
            "invalid_request",
        ),
        ("two Content-Lengths", get("/healthz", "Content-Length: 1\r\nContent-Length: 2\r\n"), 400, "invalid_request"),
        ("a malformed request line", format!("GET /healthz HTTP/9.9\r\nHost: {host}\r\n\r\n").into_bytes(), 400, "invalid_request"),
        ("a header that is not a header", get("/healthz", "no colon here\r\n"), 400, "invalid_request"),
        ("200 headers", get("/healthz", &"X-Pad: 1\r\n".repeat(200)), 431, "headers_too_large"),
        ("a 200 KB header", get("/healthz", &format!("X-Pad: {}\r\n", "p".repeat(200 << 10))), 431, "headers_too_large"),
        ("HTTP/1.1 without Host", b"GET /healthz HTTP/1.1\r\n\r\n".to_vec(), 400, "invalid_request"),
        // (The app answers these: `Connection: close` ends the exchange.)
        ("TRACE", format!("TRACE /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes(), 405, "method_not_allowed"),
        (
            "DELETE on a GET route",
            format!(
                "DELETE /v1/brands/b1/skus/S1/stock HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
            405,
            "method_not_allowed",
        ),
    ];
    for (name, request, status, code) in cases {
        let (got, head, body) = raw_exchange(&s, request);
        assert_eq!(got, status, "{name}: {head}");
        assert!(head.contains("content-type: application/problem+json"), "{name}: {head}");
        let problem: Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {:?}", String::from_utf8_lossy(&body)));
        assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(status as u64), Some(code)), "{name}: {problem}");
        assert!(body.len() < 2048, "{name}: a {}-byte problem", body.len());
        if status == 405 {
            assert!(head.lines().any(|l| l.starts_with("allow:")), "{name}: no Allow header: {head}");
        }
    }
    // A request before a refused one on the same connection is answered as usual.
    let mut two = get("/healthz", "");
    two.extend(get(&format!("/{}", "u".repeat(20 << 10)), ""));
    let (status, head, body) = raw_exchange(&s, two);
    assert_eq!(status, 200, "{head}");
    let rest = String::from_utf8_lossy(&body).to_string();
    assert!(rest.contains("HTTP/1.1 414") && rest.contains("uri_too_long"), "{rest}");
    // And the server still serves.
    assert_eq!(s.stock("b1", &t, "S1")["sku"], "S1");
}
