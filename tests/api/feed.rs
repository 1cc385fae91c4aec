//! The change feed against the real server: every change once in commit order, no
//! personal data, cursor resume (also across SIGKILL), long-poll wake-up, retention.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::helpers::{Options, Resp, TestServer, ADMIN};

fn events(s: &TestServer, brand: &str, token: &str, query: &str) -> Resp {
    s.get(&format!("/v1/brands/{brand}/events{query}"), token)
}

/// Reads the whole feed in pages of `limit`, following `next`.
fn read_all(s: &TestServer, brand: &str, token: &str, after: Option<&str>, limit: usize) -> (Vec<Value>, String) {
    let mut out = Vec::new();
    let mut cursor = after.map(str::to_string);
    loop {
        let q = match &cursor {
            Some(c) => format!("?after={c}&limit={limit}"),
            None => format!("?limit={limit}"),
        };
        let page = events(s, brand, token, &q).expect(200);
        let got = page["events"].as_array().unwrap().clone();
        let next = page["next"].as_str().unwrap().to_string();
        if got.is_empty() {
            return (out, next);
        }
        assert!(got.len() <= limit);
        out.extend(got);
        cursor = Some(next);
    }
}

fn types(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn change(s: &TestServer, token: &str, key: &str, changes: Value) -> Resp {
    s.post_key("/v1/brands/b1/stock/changes", token, key, &json!({ "changes": changes }))
}

#[test]
fn every_change_appears_once_in_commit_order_without_personal_data() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1", "S2"]);
    change(&s, &t, "k1", json!([{"sku": "S1", "location": "tsukuba", "op": "set", "on_hand": 10, "reason": "count"}])).expect(200);
    // A rejected change is not a change: it is not in the feed.
    change(&s, &t, "k2", json!([{"sku": "S2", "location": "tsukuba", "op": "adjust", "delta": -1}, {"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": -2}]))
        .expect(200);
    // An idempotent replay is not a change either.
    change(&s, &t, "k1", json!([{"sku": "S1", "location": "tsukuba", "op": "set", "on_hand": 10, "reason": "count"}])).expect(200);
    let r = json!({"id": "R1", "channel": "zozotown", "lines": [{"sku": "S1", "quantity": 3}]});
    s.post("/v1/brands/b1/reservations", &t, &r).expect(201);
    let ship = json!({"id": "SH1", "reservation_id": "R1", "ship_to": {"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"}});
    s.post("/v1/brands/b1/shipments", &t, &ship).expect(201);
    s.post("/v1/brands/b1/shipments/SH1/status", &t, &json!({"status": "picking"})).expect(200);
    s.delete("/v1/brands/b1/skus/S2", &t);

    let (evs, next) = read_all(&s, "b1", &t, None, 3);
    assert_eq!(
        types(&evs),
        vec![
            "brand.created",
            "sku.upserted",
            "sku.upserted",
            "stock.changed",
            "stock.changed",
            "reservation.created",
            "stock.changed",
            "shipment.created",
            "shipment.status_changed",
            "sku.deleted"
        ]
    );
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "dense per-brand seqs in commit order");
    assert_eq!(next, "10");
    let ids: HashSet<&str> = evs.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10);
    let first_change = &evs[3]["data"];
    assert_eq!(first_change["sku"], "S1");
    assert_eq!(first_change["version"], 1);
    assert_eq!(first_change["locations"]["tsukuba"]["on_hand"], 10);
    assert_eq!(first_change["total"]["available"], 10);
    assert_eq!(first_change["cause"], json!({"kind": "set", "on_hand": 10, "reason": "count"}));
    assert_eq!(evs[6]["data"]["cause"], json!({"kind": "reserved", "id": "R1"}));
    assert_eq!(evs[6]["data"]["locations"]["tsukuba"]["reserved"], 3);
    assert_eq!(evs[7]["data"]["reservation_id"], "R1");
    let raw = serde_json::to_string(&evs).unwrap();
    for personal in ["山田", "100-0001", "千代田", "ship_to"] {
        assert!(!raw.contains(personal), "{personal} leaked into the feed");
    }
    // Every event has an RFC 3339 time.
    assert!(evs.iter().all(|e| e["at"].as_str().is_some_and(|a| a.ends_with('Z'))));
}

#[test]
fn concurrent_writes_each_appear_once_with_versions_in_feed_order() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S0", "S1", "S2"]);
    let applied = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for c in 0..6 {
            let (s, t, applied) = (&s, &t, &applied);
            scope.spawn(move || {
                for i in 0..25 {
                    let sku = format!("S{}", (c + i) % 3);
                    let r = change(s, t, &format!("c{c}-{i}"), json!([{"sku": sku, "location": "tsukuba", "op": "adjust", "delta": 1}]));
                    assert_eq!(r.body["results"][0]["status"], "applied", "{:?}", r.body);
                    applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let (evs, _) = read_all(&s, "b1", &t, None, 1000);
    let stock: Vec<&Value> = evs.iter().filter(|e| e["type"] == "stock.changed").collect();
    assert_eq!(stock.len(), applied.into_inner(), "every applied change once");
    let mut last: HashMap<String, u64> = HashMap::new();
    for e in stock {
        let sku = e["data"]["sku"].as_str().unwrap().to_string();
        let v = e["data"]["version"].as_u64().unwrap();
        let prev = last.insert(sku.clone(), v).unwrap_or(0);
        assert_eq!(v, prev + 1, "{sku}: versions follow each other in feed order");
        assert_eq!(e["data"]["locations"]["tsukuba"]["on_hand"], v, "each event carries the level after its change");
    }
}

#[test]
fn a_cursor_resumes_exactly_after_sigkill_and_restart() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    for i in 0..5 {
        change(&s, &t, &format!("a{i}"), json!([{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}])).expect(200);
    }
    let (before, cursor) = read_all(&s, "b1", &t, None, 100);
    s.kill9();
    s.start();
    for i in 0..3 {
        change(&s, &t, &format!("b{i}"), json!([{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}])).expect(200);
    }
    let (after, _) = read_all(&s, "b1", &t, Some(&cursor), 100);
    assert_eq!(after.len(), 3, "only what came after the cursor");
    assert_eq!(after[0]["seq"].as_u64().unwrap(), before.len() as u64 + 1);
    assert_eq!(after.iter().map(|e| e["data"]["version"].as_u64().unwrap()).collect::<Vec<_>>(), vec![6, 7, 8]);
    // The whole feed is still exactly once after the restart.
    let (all, _) = read_all(&s, "b1", &t, None, 100);
    assert_eq!(all.len(), before.len() + 3);
    assert_eq!(all[..before.len()], before[..]);
}

#[test]
fn a_long_poll_wakes_up_with_the_next_event() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let (_, cursor) = read_all(&s, "b1", &t, None, 100);
    // The poll asks to wait 30 s but its client gives up after 20 s: it passes only if
    // the write wakes it (whether the write lands before or during the poll).
    let client = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(20)).build().unwrap();
    std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            let url = s.url(&format!("/v1/brands/b1/events?after={cursor}&wait=30"));
            client.get(url).bearer_auth(&t).send().expect("answered before the client's 20 s timeout").json::<Value>().unwrap()
        });
        change(&s, &t, "w1", json!([{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 4}])).expect(200);
        let page = poll.join().unwrap();
        assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
        assert_eq!(page["events"][0]["data"]["locations"]["tsukuba"]["on_hand"], 4);
    });
    // With nothing new, a short wait ends with no events and the same cursor.
    let next = (cursor.parse::<u64>().unwrap() + 1).to_string();
    let idle = events(&s, "b1", &t, &format!("?after={next}&wait=1")).expect(200);
    assert_eq!(idle, json!({"events": [], "next": next}));
}

#[test]
fn cursors_past_the_retention_are_gone_and_bad_queries_are_problems() {
    let s = TestServer::spawn_with(Options { args: vec!["--feed-retention-events".into(), "5".into()], ..Options::default() });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    for i in 0..8 {
        change(&s, &t, &format!("k{i}"), json!([{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}])).expect(200);
    }
    // 10 events, the newest 5 kept.
    let gone = events(&s, "b1", &t, "?after=2");
    assert_eq!((gone.status, gone.code()), (410, "cursor_expired"), "{:?}", gone.body);
    assert_eq!(gone.content_type, "application/problem+json");
    let (kept, _) = read_all(&s, "b1", &t, Some("5"), 100);
    assert_eq!(kept.first().unwrap()["seq"], 6);
    let (from_oldest, _) = read_all(&s, "b1", &t, None, 100);
    assert_eq!(from_oldest.len(), 5);
    for (q, field) in [
        ("?after=x", "after"),
        ("?after=99", "after"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?wait=31", "wait"),
        ("?foo=1", "query"),
    ] {
        let r = events(&s, "b1", &t, q);
        assert_eq!(r.status, 400, "{q}: {:?}", r.body);
        assert_eq!(r.body["errors"][0]["field"], field, "{q}");
    }
    // Another brand's token sees nothing of this feed; an unknown brand is 404.
    let other = s.setup_brand("b2", &[], &[]);
    assert_eq!(events(&s, "b1", &other, "").status, 403);
    assert_eq!(events(&s, "nope", ADMIN, "").status, 404);
}

/// Long polls one brand may have waiting (`feed::LONG_POLLS_PER_BRAND_MAX`).
const LONG_POLLS_PER_BRAND_MAX: usize = 64;

#[test]
fn one_brand_cannot_take_every_long_poll_slot() {
    use std::io::Write;
    let s = TestServer::spawn();
    let ta = s.setup_brand("ba", &["tsukuba"], &["S1"]);
    let tb = s.setup_brand("bb", &["tsukuba"], &["S1"]);
    let (_, cursor_a) = read_all(&s, "ba", &ta, None, 100);
    let (_, cursor_b) = read_all(&s, "bb", &tb, None, 100);
    // Brand A's share of long polls, each held open on its own connection.
    let addr = s.base.trim_start_matches("http://").to_string();
    let request =
        format!("GET /v1/brands/ba/events?after={cursor_a}&wait=30 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ta}\r\n\r\n");
    let _held: Vec<std::net::TcpStream> = (0..LONG_POLLS_PER_BRAND_MAX)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).expect("connect");
            c.write_all(request.as_bytes()).expect("send");
            c
        })
        .collect();
    // Once they all wait, A's next long poll is refused at once.
    let waiting = || {
        let text = s.client.get(s.url("/metrics")).send().expect("metrics").text().expect("text");
        text.lines().find_map(|l| l.strip_prefix("zaiko_feed_long_polls_waiting ")).and_then(|v| v.trim().parse::<f64>().ok())
    };
    let all_waiting =
        crate::receiver::wait_until(std::time::Duration::from_secs(60), || waiting() == Some(LONG_POLLS_PER_BRAND_MAX as f64));
    assert!(all_waiting, "brand A's long polls are not all waiting: {:?}", waiting());
    let more_a = || events(&s, "ba", &ta, &format!("?after={cursor_a}&wait=30"));
    let r = more_a();
    assert_eq!((r.status, r.code(), r.retry_after.as_deref()), (429, "rate_limited", Some("1")), "{:?}", r.body);
    // A client that keeps asking (1,100 polls in all, as in the report) is refused each time.
    for _ in LONG_POLLS_PER_BRAND_MAX..1100 {
        assert_eq!(events(&s, "ba", &ta, &format!("?after={cursor_a}&wait=30")).status, 429);
    }
    // Brand B's long poll still gets a slot and waits, and wakes with B's next event.
    std::thread::scope(|scope| {
        let poll = scope.spawn(|| events(&s, "bb", &tb, &format!("?after={cursor_b}&wait=30")));
        let b_waits =
            crate::receiver::wait_until(std::time::Duration::from_secs(60), || waiting() == Some(LONG_POLLS_PER_BRAND_MAX as f64 + 1.0));
        assert!(b_waits, "brand B's long poll is not waiting: {:?}", waiting());
        s.post_key(
            "/v1/brands/bb/stock/changes",
            &tb,
            "b-1",
            &json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 2}]}),
        )
        .expect(200);
        let page = poll.join().unwrap().expect(200);
        assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    });
}
