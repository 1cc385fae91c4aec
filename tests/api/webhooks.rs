//! Webhooks against a real receiver started in the test: Standard Webhooks signatures,
//! retries then dead then redrive, order per SKU under failures, replay, the queue
//! bound, a dead endpoint beside a live one, and SIGKILL during delivery.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{Options, TestServer};
use crate::receiver::{assert_in_order_per_sku, first_arrivals, signature_ok, wait_until, Answer, Receiver};

/// Long enough for every condition of these tests on a slow, shared machine.
const WAIT: Duration = Duration::from_secs(60);

fn server(schedule: &str, extra: &[&str]) -> TestServer {
    let mut args = vec!["--webhook-allow-private".to_string(), "--webhook-retry-schedule".into(), schedule.into()];
    args.extend(extra.iter().map(|a| a.to_string()));
    TestServer::spawn_with(Options { args, ..Options::default() })
}

fn subscribe(s: &TestServer, t: &str, url: &str, events: &[&str]) -> (String, String) {
    let w = s.post("/v1/brands/b1/webhooks", t, &json!({"url": url, "events": events})).expect(201);
    (w["id"].as_str().unwrap().to_string(), w["secret"].as_str().unwrap().to_string())
}

fn adjust(s: &TestServer, t: &str, key: &str, sku: &str, delta: i64) {
    let body = json!({"changes": [{"sku": sku, "location": "tsukuba", "op": "adjust", "delta": delta}]});
    let r = s.post_key("/v1/brands/b1/stock/changes", t, key, &body);
    assert_eq!(r.body["results"][0]["status"], "applied", "{:?}", r.body);
}

fn deliveries(s: &TestServer, t: &str, hook: &str, status: &str) -> Vec<Value> {
    let q = if status.is_empty() { String::new() } else { format!("?status={status}&limit=1000") };
    s.get(&format!("/v1/brands/b1/webhooks/{hook}/deliveries{q}"), t).expect(200)["deliveries"].as_array().unwrap().clone()
}

#[test]
fn deliveries_are_signed_per_the_spec_and_carry_the_feed_event() {
    let s = server("100ms", &[]);
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let rx = Receiver::start();
    // Before the subscription: not delivered.
    adjust(&s, &t, "before", "S1", 1);
    let (hook, secret) = subscribe(&s, &t, &rx.url, &["stock.changed"]);
    assert!(secret.starts_with("whsec_"));
    adjust(&s, &t, "k1", "S1", 2);
    s.put("/v1/brands/b1/skus/S1", &t, &json!({"name": "renamed"})).expect(200);
    adjust(&s, &t, "k2", "S1", 3);
    assert!(wait_until(WAIT, || rx.accepted().len() >= 2));
    let got = rx.accepted();
    assert_eq!(got.len(), 2, "only stock.changed, only after the subscription");
    for r in &got {
        assert!(signature_ok(&secret, r), "signature of {}", r.id);
        assert!(r.timestamp.parse::<i64>().unwrap() > 1_600_000_000);
        assert_eq!(r.json["id"], r.id.as_str(), "webhook-id is the event id");
        assert_eq!(r.json["type"], "stock.changed");
    }
    assert_eq!(got[0].json["data"]["locations"]["tsukuba"]["on_hand"], 3);
    assert_eq!(got[1].json["data"]["locations"]["tsukuba"]["on_hand"], 6);
    // The feed shows the same events.
    let feed = s.get(&format!("/v1/brands/b1/events?after={}", got[0].json["seq"].as_u64().unwrap() - 1), &t).expect(200);
    assert_eq!(feed["events"][0], got[0].json);
    assert!(wait_until(WAIT, || deliveries(&s, &t, &hook, "delivered").len() == 2));
    let listed = s.get("/v1/brands/b1/webhooks", &t).expect(200);
    assert_eq!(listed["webhooks"][0]["id"], hook.as_str());
    assert!(listed["webhooks"][0].get("secret").is_none(), "the secret is shown once");
}

#[test]
fn subscriptions_are_checked_and_private_targets_refused_by_default() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &[]);
    let cases = [
        (json!({"url": "ftp://example.com/x", "events": ["stock.changed"]}), "url"),
        (json!({"url": "http://127.0.0.1:9/hook", "events": ["stock.changed"]}), "url"),
        (json!({"url": "http://localhost/hook", "events": ["stock.changed"]}), "url"),
        // IPv4 inside IPv6 (NAT64, compatible, 6to4, mapped), Teredo, benchmarking.
        (json!({"url": "http://[64:ff9b::a9fe:a9fe]/latest/meta-data", "events": ["stock.changed"]}), "url"),
        (json!({"url": "http://[::127.0.0.1]:9/hook", "events": ["stock.changed"]}), "url"),
        (json!({"url": "http://[2002:7f00:1::]:9/hook", "events": ["stock.changed"]}), "url"),
        (json!({"url": "http://[::ffff:10.0.0.1]/hook", "events": ["stock.changed"]}), "url"),
        (json!({"url": "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook", "events": ["stock.changed"]}), "url"),
        (json!({"url": "http://198.18.0.1/hook", "events": ["stock.changed"]}), "url"),
        (json!({"url": "https://example.com/x", "events": ["stock.exploded"]}), "events[0]"),
        (json!({"url": "https://example.com/x", "events": []}), "events"),
        (json!({"url": "https://example.com/x", "events": ["stock.changed"], "extra": 1}), "extra"),
    ];
    for (body, field) in cases {
        let r = s.post("/v1/brands/b1/webhooks", &t, &body);
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(r.body["errors"][0]["field"].as_str().unwrap().starts_with(field), "{body}: {:?}", r.body);
    }
    let w =
        s.post("/v1/brands/b1/webhooks", &t, &json!({"url": "https://hooks.example.com/zaiko", "events": ["stock.changed"]})).expect(201);
    let id = w["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/v1/brands/b1/webhooks/{id}"), &t).status, 204);
    assert_eq!(s.get("/v1/brands/b1/webhooks", &t).expect(200)["webhooks"], json!([]));
    assert_eq!(s.get(&format!("/v1/brands/b1/webhooks/{id}/deliveries"), &t).status, 404);
    let other = s.setup_brand("b2", &[], &[]);
    assert_eq!(s.get("/v1/brands/b1/webhooks", &other).status, 403);
}

#[test]
fn failures_are_retried_then_dead_and_redriven_while_other_skus_go_on() {
    let s = server("50ms,50ms,50ms", &[]);
    let t = s.setup_brand("b1", &["tsukuba"], &["BAD", "OK"]);
    let rx = Receiver::start();
    rx.set_policy(|r| Answer::status(if r.json["data"]["sku"] == "BAD" { 500 } else { 200 }));
    let (hook, secret) = subscribe(&s, &t, &rx.url, &["stock.changed"]);
    adjust(&s, &t, "b1", "BAD", 1);
    adjust(&s, &t, "o1", "OK", 1);
    adjust(&s, &t, "o2", "OK", 1);
    // The failing SKU does not hold the other back; it is tried 1 + 3 times, then dead.
    assert!(wait_until(WAIT, || deliveries(&s, &t, &hook, "dead").len() == 1));
    let dead = &deliveries(&s, &t, &hook, "dead")[0];
    assert_eq!((dead["attempts"].as_u64(), dead["last_status"].as_u64()), (Some(4), Some(500)));
    assert!(wait_until(WAIT, || rx.accepted().len() == 2));
    assert_eq!(rx.got().iter().filter(|r| r.json["data"]["sku"] == "BAD").count(), 4);
    // The endpoint is fixed; redrive sends the dead delivery again.
    rx.set_policy(|_| Answer::status(204));
    let r = s.post(&format!("/v1/brands/b1/webhooks/{hook}/redrive"), &t, &json!({})).expect(200);
    assert_eq!(r["requeued"], 1);
    assert!(wait_until(WAIT, || rx.accepted().iter().any(|r| r.json["data"]["sku"] == "BAD")));
    assert!(wait_until(WAIT, || deliveries(&s, &t, &hook, "delivered").len() == 3));
    assert!(deliveries(&s, &t, &hook, "dead").is_empty());
    assert!(rx.got().iter().all(|r| signature_ok(&secret, r)));
}

#[test]
fn order_per_sku_holds_under_random_failures() {
    let s = server(&["30ms"; 30].join(","), &[]);
    let t = s.setup_brand("b1", &["tsukuba"], &["A", "B", "C", "D"]);
    let rx = Receiver::start();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    // Every third request fails, whatever it is.
    rx.set_policy(move |_| Answer::status(if n2.fetch_add(1, Ordering::Relaxed).is_multiple_of(3) { 503 } else { 200 }));
    subscribe(&s, &t, &rx.url, &["stock.changed"]);
    let skus = ["A", "B", "C", "D"];
    for i in 0..60 {
        adjust(&s, &t, &format!("k{i}"), skus[i % 4], 1);
    }
    assert!(wait_until(WAIT, || first_arrivals(&rx.accepted()).len() == 60), "got {}", first_arrivals(&rx.accepted()).len());
    let accepted = rx.accepted();
    assert_in_order_per_sku(&accepted);
    // Each SKU's versions arrive 1, 2, 3, ... (first arrivals).
    for sku in skus {
        let versions: Vec<u64> = first_arrivals(&accepted)
            .iter()
            .filter(|r| r.json["data"]["sku"] == sku)
            .map(|r| r.json["data"]["version"].as_u64().unwrap())
            .collect();
        assert_eq!(versions, (1..=15).collect::<Vec<_>>(), "{sku}");
    }
    assert!(rx.got().len() > 60, "some requests failed and were retried");
}

#[test]
fn replay_sends_the_events_after_a_seq_again() {
    let s = server("100ms", &[]);
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let rx = Receiver::start();
    let (hook, _) = subscribe(&s, &t, &rx.url, &["stock.changed"]);
    for i in 0..4 {
        adjust(&s, &t, &format!("k{i}"), "S1", 1);
    }
    assert!(wait_until(WAIT, || rx.accepted().len() == 4));
    let seqs: Vec<u64> = rx.accepted().iter().map(|r| r.json["seq"].as_u64().unwrap()).collect();
    let r = s.post(&format!("/v1/brands/b1/webhooks/{hook}/replay"), &t, &json!({"after_seq": seqs[1]}));
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert!(wait_until(WAIT, || rx.accepted().len() == 6));
    let again: Vec<u64> = rx.accepted()[4..].iter().map(|r| r.json["seq"].as_u64().unwrap()).collect();
    assert_eq!(again, seqs[2..].to_vec(), "the events after the seq, in order, with their ids");
    assert_eq!(rx.accepted()[4].id, rx.accepted()[2].id);
    assert_eq!(s.post(&format!("/v1/brands/b1/webhooks/{hook}/replay"), &t, &json!({"after_seq": -1})).status, 400);
}

#[test]
fn a_subscription_holds_at_most_its_queue_bound_and_catches_up_from_the_feed() {
    // Quick first retries, then slow ones: nothing may go dead while the test looks,
    // however slow the machine (30 retries take over 50 s).
    let schedule = [vec!["200ms"; 5], vec!["2s"; 25]].concat().join(",");
    let s = server(&schedule, &["--webhook-queue-max", "5"]);
    let t = s.setup_brand("b1", &["tsukuba"], &["S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7"]);
    let rx = Receiver::start();
    rx.set_policy(|_| Answer::status(500));
    let (hook, _) = subscribe(&s, &t, &rx.url, &["stock.changed"]);
    for i in 0..24 {
        adjust(&s, &t, &format!("k{i}"), &format!("S{}", i % 8), 1);
    }
    // At the bound the worker stops taking events from the feed: at most 5 are held
    // (each tried and failing; it takes more from the feed only once fewer than half
    // the bound are held), the other events wait in the feed.
    assert!(wait_until(WAIT, || !deliveries(&s, &t, &hook, "failed").is_empty()), "{:?}", deliveries(&s, &t, &hook, ""));
    for _ in 0..3 {
        let all = deliveries(&s, &t, &hook, "");
        assert!(!all.is_empty() && all.len() <= 5, "{all:?}");
        assert!(all.iter().all(|d| d["status"] == "failed" || d["status"] == "pending"), "{all:?}");
    }
    assert_eq!(s.get("/v1/brands/b1/events?after=0&limit=1000", &t).expect(200)["events"].as_array().unwrap().len(), 24 + 9);
    rx.set_policy(|_| Answer::status(200));
    assert!(wait_until(WAIT, || first_arrivals(&rx.accepted()).len() == 24));
    assert_in_order_per_sku(&rx.accepted());
}

#[test]
fn a_hanging_endpoint_slows_neither_writes_nor_another_subscriber() {
    let s = server(&["1s"; 5].join(","), &[]);
    let t = s.setup_brand("b1", &["tsukuba"], &["S1", "S2"]);
    let slow = Receiver::start();
    // Longer than the 5 s attempt timeout: every attempt fails.
    slow.set_policy(|_| Answer { status: 200, delay: Duration::from_secs(8) });
    let fast = Receiver::start();
    subscribe(&s, &t, &slow.url, &["stock.changed"]);
    subscribe(&s, &t, &fast.url, &["stock.changed"]);
    for i in 0..40 {
        adjust(&s, &t, &format!("k{i}"), if i % 2 == 0 { "S1" } else { "S2" }, 1);
    }
    assert!(wait_until(WAIT, || fast.accepted().len() == 40), "fast got {}", fast.accepted().len());
    assert_in_order_per_sku(&fast.accepted());
    // The hanging endpoint is tried one lane at a time after its first failure.
    assert!(slow.got().len() <= 16, "{}", slow.got().len());
}

#[test]
fn sigkill_during_delivery_loses_nothing_and_keeps_order() {
    let mut s = server("100ms,100ms,100ms,100ms,100ms", &[]);
    let t = s.setup_brand("b1", &["tsukuba"], &["A", "B", "C"]);
    let rx = Receiver::start();
    // A slow receiver, so that the kill lands in the middle of the deliveries.
    rx.set_policy(|_| Answer { status: 200, delay: Duration::from_millis(20) });
    let (_, secret) = subscribe(&s, &t, &rx.url, &["stock.changed"]);
    let total = 150;
    for i in 0..total {
        adjust(&s, &t, &format!("k{i}"), ["A", "B", "C"][i % 3], 1);
    }
    assert!(wait_until(WAIT, || rx.accepted().len() >= 30));
    s.kill9();
    let at_kill = first_arrivals(&rx.accepted()).len();
    assert!(at_kill < total, "the kill came after every delivery; nothing was tested");
    s.start();
    assert!(wait_until(WAIT, || first_arrivals(&rx.accepted()).len() == total), "got {}", first_arrivals(&rx.accepted()).len());
    let accepted = rx.accepted();
    assert_in_order_per_sku(&accepted);
    // Duplicates are the same message: same id, same body, valid signature.
    let mut bodies: HashMap<&str, &str> = HashMap::new();
    for r in &accepted {
        assert!(signature_ok(&secret, r));
        let first = bodies.entry(r.id.as_str()).or_insert(r.body.as_str());
        assert_eq!(*first, r.body.as_str(), "a duplicate of {} differs", r.id);
    }
    let feed_ids: HashSet<String> = s.get("/v1/brands/b1/events?limit=1000", &t).expect(200)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "stock.changed")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies.keys().map(|k| k.to_string()).collect::<HashSet<_>>(), feed_ids, "every event delivered, nothing else");
}
