//! Crash tests: SIGKILL at random moments under concurrent load, restart, retry what
//! was not answered with the same key, and check every change was applied exactly once.
//! `ZAIKO_CRASH_ROUNDS` sets the number of rounds (default 20).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::helpers::{TestServer, ADMIN};

const SKUS: usize = 12;
const CLIENTS: usize = 6;
const START: i64 = 100_000;

/// One request: its key and its changes `(sku index, delta)`.
#[derive(Clone, Debug)]
struct Req {
    key: String,
    changes: Vec<(usize, i64)>,
}

impl Req {
    fn body(&self) -> Value {
        let changes: Vec<_> =
            self.changes.iter().map(|(s, d)| json!({"sku": format!("S{s}"), "location": "tsukuba", "op": "adjust", "delta": d})).collect();
        json!({ "changes": changes })
    }
}

/// Sends `req` once. `Some(true)` = answered and applied, `None` = no answer (the
/// server died), and any answer that is not "every change applied" fails the test.
fn send(client: &reqwest::blocking::Client, base: &str, token: &str, req: &Req) -> Option<()> {
    let r = client
        .post(format!("{base}/v1/brands/crash/stock/changes"))
        .bearer_auth(token)
        .header("Idempotency-Key", &req.key)
        .json(&req.body())
        .send()
        .ok()?;
    let status = r.status().as_u16();
    let body: Value = r.json().ok()?;
    assert_eq!(status, 200, "request {} answered {status}: {body}", req.key);
    for (i, res) in body["results"].as_array().expect("results").iter().enumerate() {
        assert_eq!(res["status"], "applied", "request {} change {i}: {body}", req.key);
    }
    Some(())
}

#[test]
fn sigkill_under_load_loses_nothing_and_applies_nothing_twice() {
    let rounds: usize = std::env::var("ZAIKO_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("ZAIKO_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("crash test: {rounds} rounds, seed {seed} (ZAIKO_CRASH_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let mut server = TestServer::spawn();
    let skus: Vec<String> = (0..SKUS).map(|i| format!("S{i}")).collect();
    let sku_refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    let token = server.setup_brand("crash", &["tsukuba"], &sku_refs);
    for s in &skus {
        server.set_stock("crash", &token, s, "tsukuba", START);
    }
    let mut expected: HashMap<usize, i64> = (0..SKUS).map(|i| (i, START)).collect();
    let mut next_key = 0usize;
    let mut answered_total = 0usize;
    let mut retried_total = 0usize;

    for round in 0..rounds {
        // Each client gets its own list of requests of 1..=3 changes.
        let plans: Vec<Vec<Req>> = (0..CLIENTS)
            .map(|_| {
                (0..60)
                    .map(|_| {
                        next_key += 1;
                        let n = rng.random_range(1..=3);
                        Req {
                            key: format!("r{round}-{next_key}"),
                            changes: (0..n)
                                .map(|_| (rng.random_range(0..SKUS), rng.random_range(-5i64..=9)))
                                .filter(|c| c.1 != 0)
                                .collect(),
                        }
                    })
                    .filter(|r| !r.changes.is_empty())
                    .collect()
            })
            .collect();
        let kill_after = rng.random_range(1..CLIENTS * 40);
        let sent = Arc::new(AtomicUsize::new(0));
        let dead = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Mutex::new(Vec::<Req>::new()));
        let unanswered = Arc::new(Mutex::new(Vec::<Req>::new()));
        std::thread::scope(|scope| {
            for plan in &plans {
                let (sent, dead, answered, unanswered) = (sent.clone(), dead.clone(), answered.clone(), unanswered.clone());
                let (base, token) = (server.base.clone(), token.clone());
                scope.spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    for req in plan {
                        if dead.load(Ordering::Acquire) {
                            break;
                        }
                        sent.fetch_add(1, Ordering::AcqRel);
                        match send(&client, &base, &token, req) {
                            Some(()) => answered.lock().unwrap().push(req.clone()),
                            None => {
                                unanswered.lock().unwrap().push(req.clone());
                                break;
                            }
                        }
                    }
                });
            }
            // The killer: waits for the random point in the load, then SIGKILLs.
            while sent.load(Ordering::Acquire) < kill_after
                && answered.lock().unwrap().len() + unanswered.lock().unwrap().len() < plans.iter().map(Vec::len).sum::<usize>()
            {
                std::thread::yield_now();
            }
            server.kill9();
            dead.store(true, Ordering::Release);
        });
        server.start();
        // Retry every request that got no answer, with the same key, until answered.
        let pending = std::mem::take(&mut *unanswered.lock().unwrap());
        let client = reqwest::blocking::Client::new();
        for req in &pending {
            send(&client, &server.base, &token, req).unwrap_or_else(|| panic!("retry of {} got no answer from a running server", req.key));
        }
        retried_total += pending.len();
        let answered = std::mem::take(&mut *answered.lock().unwrap());
        answered_total += answered.len();
        for req in answered.iter().chain(&pending) {
            for (sku, delta) in &req.changes {
                *expected.get_mut(sku).unwrap() += delta;
            }
        }
        // Every acknowledged or retried change is there exactly once.
        for (i, want) in &expected {
            let st = server.stock("crash", &token, &format!("S{i}"));
            assert_eq!(st["locations"]["tsukuba"]["on_hand"], *want, "round {round} sku S{i} (seed {seed})");
        }
    }
    eprintln!("crash test: {answered_total} answered before kills, {retried_total} retried after restarts");
    assert!(answered_total > 0);
    // The journal is clean after all that (a torn tail, if any, was cut on start).
    server.kill9();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zaiko"))
        .args(["wal", "verify", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let _ = ADMIN;
}
