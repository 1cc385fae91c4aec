//! Freshness under write load, on the real server (this build's `zaiko` binary, a
//! fresh data dir, default settings): writer threads post stock changes as fast as
//! they are answered while a probe upserts a SKU with a unique word and measures
//!
//! * lag: from the upsert's 2xx to the first search *without* `min_lsn` that finds it
//!   (polled every millisecond), i.e. what a client that does not ask for
//!   read-your-writes sees;
//! * read-your-writes: the latency of a search with `min_lsn` = the upsert's LSN.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::{pct, Args};

const ADMIN: &str = "bench-admin-token-0123456789";
const SKUS: usize = 1000;

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &Args) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = match &args.server_log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("--server-log")),
        None => Stdio::null(),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_zaiko"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("ZAIKO_LOG", std::env::var("ZAIKO_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn zaiko");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listen line");
    let base = line.trim().strip_prefix("zaiko listening on ").expect("listen line").to_string();
    let client = Client::new();
    while client.get(format!("{base}/readyz")).send().map_or(true, |r| r.status() != 200) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, base, _dir: dir }
}

fn call(c: &Client, method: reqwest::Method, url: &str, token: &str, body: Option<&Value>, key: Option<&str>) -> (u16, Value, Option<u64>) {
    let mut rb = c.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(b);
    }
    if let Some(k) = key {
        rb = rb.header("Idempotency-Key", k);
    }
    let r = rb.send().expect("request");
    let status = r.status().as_u16();
    let lsn = r.headers().get("x-zaiko-lsn").and_then(|v| v.to_str().ok()?.parse().ok());
    (status, r.json().unwrap_or(Value::Null), lsn)
}

fn setup(c: &Client, base: &str) -> String {
    use reqwest::Method;
    call(c, Method::POST, &format!("{base}/v1/brands"), ADMIN, Some(&json!({"id": "fresh", "name": "フレッシュ"})), None);
    call(c, Method::PUT, &format!("{base}/v1/locations/tsukuba"), ADMIN, Some(&json!({"name": "t", "kind": "warehouse"})), None);
    let (_, t, _) = call(c, Method::POST, &format!("{base}/v1/brands/fresh/tokens"), ADMIN, Some(&json!({})), None);
    let token = t["token"].as_str().expect("token").to_string();
    for i in 0..SKUS {
        let body = json!({"name": format!("ウール ニット {i}"), "price": 1000 + i});
        call(c, Method::PUT, &format!("{base}/v1/brands/fresh/skus/S{i}"), &token, Some(&body), None);
    }
    token
}

/// Posts batches of stock changes until `stop`; counts changes applied.
fn writer(base: String, token: String, seed: usize, per_request: usize, stop: Arc<AtomicBool>, applied: Arc<AtomicU64>) {
    let c = Client::new();
    let mut n = seed * 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let changes: Vec<Value> = (0..per_request)
            .map(|k| json!({"sku": format!("S{}", (n * 7 + k * 13) % SKUS), "location": "tsukuba", "op": "adjust", "delta": 1}))
            .collect();
        let key = format!("w{n}");
        let (status, _, _) = call(
            &c,
            reqwest::Method::POST,
            &format!("{base}/v1/brands/fresh/stock/changes"),
            &token,
            Some(&json!({"changes": changes})),
            Some(&key),
        );
        if status == 200 {
            applied.fetch_add(per_request as u64, Ordering::Relaxed);
        }
    }
}

/// Whether the search finds the probe; `Err` with the answer when it failed.
fn found(c: &Client, base: &str, token: &str, word: &str, min_lsn: Option<u64>) -> Result<bool, String> {
    let mut url = reqwest::Url::parse(&format!("{base}/v1/search/skus")).expect("url");
    url.query_pairs_mut().append_pair("q", word);
    if let Some(l) = min_lsn {
        url.query_pairs_mut().append_pair("min_lsn", &l.to_string());
    }
    let (status, body, _) = call(c, reqwest::Method::GET, url.as_str(), token, None, None);
    if status != 200 {
        return Err(format!("{status} {body}"));
    }
    Ok(body["total"].as_u64() == Some(1))
}

/// One probe: upsert, then either poll without `min_lsn` or ask once with it.
fn probe(c: &Client, base: &str, token: &str, i: usize, with_min_lsn: bool) -> f64 {
    let word = format!("probe{i}q");
    let body = json!({"name": format!("プローブ {word}")});
    let (status, _, lsn) = call(c, reqwest::Method::PUT, &format!("{base}/v1/brands/fresh/skus/P{i}"), token, Some(&body), None);
    assert_eq!(status, 201, "probe upsert");
    let acked = Instant::now();
    if with_min_lsn {
        let r = found(c, base, token, &word, lsn);
        assert_eq!(r, Ok(true), "a search with min_lsn must find probe {i} (lsn {lsn:?})");
        return acked.elapsed().as_secs_f64() * 1000.0;
    }
    while !found(c, base, token, &word, None).expect("search") {
        assert!(acked.elapsed() < Duration::from_secs(10), "probe {i} not visible after 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    acked.elapsed().as_secs_f64() * 1000.0
}

pub fn run(args: &Args) -> Value {
    let server = start(args);
    let client = Client::new();
    let token = setup(&client, &server.base);
    let stop = Arc::new(AtomicBool::new(false));
    let applied = Arc::new(AtomicU64::new(0));
    let per_request = args.changes_per_request;
    let writers: Vec<_> = (0..args.writers)
        .map(|w| {
            let (base, token, stop, applied) = (server.base.clone(), token.clone(), stop.clone(), applied.clone());
            std::thread::spawn(move || writer(base, token, w, per_request, stop, applied))
        })
        .collect();
    let started = Instant::now();
    let (mut lag, mut ryw) = (Vec::new(), Vec::new());
    for i in 0..args.probes {
        let with_min_lsn = i % 2 == 1;
        let ms = probe(&client, &server.base, &token, i, with_min_lsn);
        if with_min_lsn {
            ryw.push(ms)
        } else {
            lag.push(ms)
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().expect("writer"));
    let rate = applied.load(Ordering::Relaxed) as f64 / secs;
    println!("\nfreshness under load ({} writers x {per_request} changes/request, {rate:.0} changes/s over {secs:.1} s):", args.writers);
    println!(
        "  ack -> visible without min_lsn  n={:>3}  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        lag.len(),
        pct(&lag, 50.0),
        pct(&lag, 99.0),
        pct(&lag, 100.0)
    );
    println!(
        "  search with min_lsn             n={:>3}  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        ryw.len(),
        pct(&ryw, 50.0),
        pct(&ryw, 99.0),
        pct(&ryw, 100.0)
    );
    json!({
        "writers": args.writers, "changes_per_request": per_request, "changes_per_s": rate,
        "lag_ms": {"n": lag.len(), "p50": pct(&lag, 50.0), "p99": pct(&lag, 99.0), "max": pct(&lag, 100.0)},
        "min_lsn_search_ms": {"n": ryw.len(), "p50": pct(&ryw, 50.0), "p99": pct(&ryw, 99.0), "max": pct(&ryw, 100.0)},
    })
}
