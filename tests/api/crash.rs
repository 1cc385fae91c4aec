//! Crash tests: SIGKILL at random moments under concurrent load, restart, retry what
//! was not answered with the same key, and check every change was applied exactly once.
//! `ZAIKO_CRASH_ROUNDS` sets the number of rounds (default 20).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::helpers::TestServer;

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

/// What one worker got done before the kill: the steps answered, with their answers,
/// and the step that got no answer (the server died under it), if any.
pub struct Outcome<T, A> {
    pub answered: Vec<(T, A)>,
    pub unanswered: Option<T>,
}

/// Counts a worker as finished however it ends (a failed assertion included), so that
/// the killer never waits for a dead worker.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs one thread per plan, each sending its steps in order with `send` (which
/// returns `None` when no answer came) until one gets no answer or the server is
/// killed; SIGKILLs the server once `kill_after` steps have been sent in all, or when
/// every worker is done. Returns what each worker got done, in the order of `plans`.
pub fn run_until_kill<T: Clone + Send + Sync, A: Send>(
    server: &mut TestServer,
    plans: &[Vec<T>],
    kill_after: usize,
    send: impl Fn(&reqwest::blocking::Client, &str, &T) -> Option<A> + Sync,
) -> Vec<Outcome<T, A>> {
    let (sent, finished, dead) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicBool::new(false));
    let base = server.base.clone();
    std::thread::scope(|scope| {
        let workers: Vec<_> = plans
            .iter()
            .map(|plan| {
                let (sent, finished, dead, base, send) = (&sent, &finished, &dead, &base, &send);
                scope.spawn(move || {
                    let _finished = Finished(finished);
                    let client = reqwest::blocking::Client::new();
                    let mut outcome = Outcome { answered: Vec::new(), unanswered: None };
                    for step in plan {
                        if dead.load(Ordering::Acquire) {
                            break;
                        }
                        sent.fetch_add(1, Ordering::AcqRel);
                        match send(&client, base, step) {
                            Some(answer) => outcome.answered.push((step.clone(), answer)),
                            None => {
                                outcome.unanswered = Some(step.clone());
                                break;
                            }
                        }
                    }
                    outcome
                })
            })
            .collect();
        // The killer: waits for the random point in the load, then SIGKILLs.
        while sent.load(Ordering::Acquire) < kill_after && finished.load(Ordering::Acquire) < plans.len() {
            std::thread::yield_now();
        }
        server.kill9();
        dead.store(true, Ordering::Release);
        workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// `zaiko wal verify` on a stopped server's data dir: every record readable.
pub fn assert_wal_verifies(server: &TestServer) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zaiko"))
        .args(["wal", "verify", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
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
        let outcomes = run_until_kill(&mut server, &plans, kill_after, |client, base, req| send(client, base, &token, req));
        server.start();
        // Retry every request that got no answer, with the same key, until answered.
        let client = reqwest::blocking::Client::new();
        for Outcome { answered, unanswered } in outcomes {
            answered_total += answered.len();
            if let Some(req) = &unanswered {
                send(&client, &server.base, &token, req)
                    .unwrap_or_else(|| panic!("retry of {} got no answer from a running server", req.key));
                retried_total += 1;
            }
            for req in answered.iter().map(|(r, ())| r).chain(&unanswered) {
                for (sku, delta) in &req.changes {
                    *expected.get_mut(sku).unwrap() += delta;
                }
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
    assert_wal_verifies(&server);
}
