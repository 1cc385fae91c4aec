//! `zaiko-bench integrations`: bulk imports, the change feed and webhooks
//! (BENCHMARKS.md, section "Imports, feed and webhooks"). Starts the server binary on
//! a fresh data dir and measures, in one run:
//!
//! 1. live API latency alone: closed-loop clients sending single stock changes;
//! 2. a stock import of `--rows` rows alone (rows/s from the 202 to `done`);
//! 3. the same import while the live clients run, and their latency meanwhile;
//! 4. how long the change feed needs after the import to hold every event;
//! 5. webhook deliveries/s of `--webhook-rows` events to a local receiver.
//!
//! `cargo build --release && target/release/zaiko-bench integrations --rows 1000000`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use zaiko::procfs;

use super::args::IntegrationsArgs;
use super::target::{server_binary, Spawned};

const ADMIN: &str = "bench-admin-token-0123456789";
const LIVE_SKUS: usize = 100;

/// The spawned server; dropping it stops the server, then removes its data dir.
struct Server {
    spawned: Spawned,
    base: String,
    _dir: tempfile::TempDir,
}

/// CPU seconds each of the server's threads has used so far: `(name, tid) -> seconds`.
type CpuReading = std::collections::BTreeMap<(String, String), f64>;

fn cpu(s: &Server) -> CpuReading {
    let mut out = CpuReading::new();
    let tasks = s.spawned.pid().and_then(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).ok());
    for t in tasks.into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let seconds = procfs::stat_cpu_seconds(&stat).unwrap_or(0.0);
        out.insert((comm, t.file_name().to_string_lossy().into_owned()), seconds);
    }
    out
}

/// The CPU seconds used between two readings: in all, by kind of thread, and by the
/// busiest actix thread (during an import, the shard of the importing brand). Threads
/// that ended between the readings are not counted.
fn cpu_used(before: &CpuReading, after: &CpuReading) -> String {
    let used = |k: &(String, String), v: &f64| v - before.get(k).unwrap_or(&0.0);
    let sum = |pred: &dyn Fn(&str) -> bool| after.iter().filter(|(k, _)| pred(&k.0)).map(|(k, v)| used(k, v)).sum::<f64>();
    let total = sum(&|_| true);
    let busiest = after.iter().filter(|(k, _)| k.0 == "actix-rt|system").map(|(k, v)| used(k, v)).fold(0.0, f64::max);
    let index = sum(&|n| n == "zaiko-indexer" || n.starts_with("thrd-tantivy") || n == "segment_updater" || n.starts_with("merge_thread"));
    format!(
        "server CPU {total:.1} s (actix threads {:.1} s, busiest {busiest:.1} s; feed {:.1} s, index {index:.1} s, import runner {:.1} s, wal writer {:.1} s)",
        sum(&|n| n == "actix-rt|system"),
        sum(&|n| n == "zaiko-feed"),
        sum(&|n| n == "zaiko-imports"),
        sum(&|n| n == "zaiko-wal-write")
    )
}

fn spawn(exe: &Path, data_root: &Path) -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("zaiko-bench-").tempdir_in(data_root).context("cannot create the data dir")?;
    // The live clients measure latency, not the per-brand rate limit (5,000/s by
    // default), which they can pass once the import is not competing.
    let args = ["--webhook-allow-private", "--brand-rps", "1000000", "--brand-burst", "1000000"].map(String::from);
    let envs = [("ZAIKO_LOG".to_string(), "warn".to_string())];
    let spawned = Spawned::start(exe, &dir.path().join("data"), ADMIN, &args, &envs)?;
    let base = format!("http://{}", spawned.addr);
    let s = Server { spawned, base, _dir: dir };
    let c = client();
    while c.get(format!("{}/readyz", s.base)).send().map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(s)
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap()
}

fn call(c: &reqwest::blocking::Client, method: &str, url: String, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = c.request(method.parse().unwrap(), url).bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Uploads a file and waits for the job; returns (upload seconds, apply seconds).
fn import(s: &Server, token: &str, kind: &str, csv: Vec<u8>) -> (f64, f64, Value) {
    let c = client();
    let t0 = Instant::now();
    let r = c
        .post(format!("{}/v1/brands/bench/imports?kind={kind}", s.base))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let uploaded = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    loop {
        let (_, job) = call(&c, "GET", format!("{}/v1/brands/bench/imports/{id}", s.base), token, None);
        if job["status"] == "done" || job["status"] == "failed" {
            assert_eq!(job["status"], "done", "{job}");
            return (uploaded, t1.elapsed().as_secs_f64(), job);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stock_csv(rows: usize, skus: usize, salt: usize) -> Vec<u8> {
    let mut out = String::with_capacity(rows * 32);
    out.push_str("sku,location,on_hand\n");
    for i in 0..rows {
        let loc = if (i / skus).is_multiple_of(2) { "tsukuba" } else { "osaka" };
        out.push_str(&format!("S{:06},{loc},{}\n", i % skus, (i * 7 + salt) % 1000));
    }
    out.into_bytes()
}

/// Closed-loop clients sending one stock change per request until `stop`.
fn live(s: &Server, token: &str, clients: usize, stop: Arc<AtomicBool>) -> (Histogram<u64>, u64, f64) {
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let count = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..clients {
            let (hist, count, stop) = (hist.clone(), count.clone(), stop.clone());
            let (base, token) = (s.base.clone(), token.to_string());
            scope.spawn(move || {
                let http = client();
                let mut local = Histogram::<u64>::new(3).unwrap();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = json!({"changes": [{"sku": format!("L{}", (c * 31 + i) % LIVE_SKUS), "location": "tsukuba", "op": "adjust", "delta": 1}]});
                    let t = Instant::now();
                    let r = http
                        .post(format!("{base}/v1/brands/bench/stock/changes"))
                        .bearer_auth(&token)
                        .header("idempotency-key", format!("live-{c}-{i}-{}", t0.elapsed().as_nanos()))
                        .json(&body)
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    let _ = r.bytes();
                    local.record(t.elapsed().as_micros() as u64).unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
                hist.lock().unwrap().add(&local).unwrap();
            });
        }
    });
    let h = hist.lock().unwrap().clone();
    (h, count.load(Ordering::Relaxed), t0.elapsed().as_secs_f64())
}

fn report(name: &str, h: &Histogram<u64>, n: u64, secs: f64) {
    println!(
        "{name}: {n} requests in {secs:.1} s = {:.0} req/s; p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        n as f64 / secs,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
}

/// A receiver that answers 204 at once and counts distinct webhook-ids.
/// First arrival, arrival of the last distinct id, and the distinct ids.
type RecvState = Mutex<(Option<Instant>, Option<Instant>, std::collections::HashSet<String>)>;

fn receiver(expect: usize) -> (String, Arc<RecvState>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new((None, None, std::collections::HashSet::new())));
    let st = state.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let st = st.clone();
            std::thread::spawn(move || serve(conn, &st, expect));
        }
    });
    (url, state)
}

fn serve(conn: TcpStream, st: &RecvState, expect: usize) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let (mut len, mut id) = (0usize, String::new());
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            } else if lower.starts_with("webhook-id:") {
                id = l[11..].trim().to_string();
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        {
            let mut s = st.lock().unwrap();
            let now = Instant::now();
            s.0.get_or_insert(now);
            s.2.insert(id);
            if s.2.len() == expect {
                s.1 = Some(now);
            }
        }
        if w.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_err() {
            return;
        }
    }
}

/// Runs the whole measurement; failures of the server under test panic with what
/// was expected.
pub fn run(o: &IntegrationsArgs) -> anyhow::Result<bool> {
    let s = spawn(&server_binary(o.server_bin.as_deref())?, &o.data_root)?;
    let c = client();
    call(&c, "POST", format!("{}/v1/brands", s.base), ADMIN, Some(json!({"id": "bench", "name": "Bench"})));
    for loc in ["tsukuba", "osaka"] {
        call(&c, "PUT", format!("{}/v1/locations/{loc}", s.base), ADMIN, Some(json!({"name": loc, "kind": "warehouse"})));
    }
    let (_, t) = call(&c, "POST", format!("{}/v1/brands/bench/tokens", s.base), ADMIN, Some(json!({})));
    let token = t["token"].as_str().unwrap().to_string();
    let mut catalog = String::from("sku,name,price\n");
    for i in 0..o.skus {
        catalog.push_str(&format!("S{i:06},商品 {i},{}\n", 1000 + i % 5000));
    }
    for i in 0..LIVE_SKUS {
        catalog.push_str(&format!("L{i},live {i},100\n"));
    }
    let (_, secs, _) = import(&s, &token, "catalog", catalog.into_bytes());
    println!("catalog import: {} rows in {secs:.2} s = {:.0} rows/s", o.skus + LIVE_SKUS, (o.skus + LIVE_SKUS) as f64 / secs);

    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let secs = o.live_seconds;
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        stop2.store(true, Ordering::Relaxed);
    });
    let (h, n, el) = live(&s, &token, o.clients, stop);
    timer.join().unwrap();
    report("live alone", &h, n, el);

    let csv = stock_csv(o.rows, o.skus, 1);
    let before = cpu(&s);
    let (up, secs, job) = import(&s, &token, "stock", csv);
    println!(
        "stock import alone: {} rows in {secs:.2} s = {:.0} rows/s (upload {up:.2} s); {}",
        job["rows_ok"],
        o.rows as f64 / secs,
        cpu_used(&before, &cpu(&s))
    );

    let stop = Arc::new(AtomicBool::new(false));
    let csv = stock_csv(o.rows, o.skus, 2);
    let before = cpu(&s);
    let (import_result, (h, n, el)) = std::thread::scope(|scope| {
        let stop2 = stop.clone();
        let (s, token) = (&s, &token);
        let imp = scope.spawn(move || {
            let r = import(s, token, "stock", csv);
            stop2.store(true, Ordering::Relaxed);
            r
        });
        let live_result = live(s, token, o.clients, stop);
        (imp.join().unwrap(), live_result)
    });
    let (up, secs, _) = import_result;
    println!(
        "stock import under live load: {} rows in {secs:.2} s = {:.0} rows/s (upload {up:.2} s); {}",
        o.rows,
        o.rows as f64 / secs,
        cpu_used(&before, &cpu(&s))
    );
    report("live during the import (includes the upload)", &h, n, el);
    let (t0, before) = (Instant::now(), cpu(&s));
    while c.get(format!("{}/v1/brands/bench/events?limit=1", s.base)).bearer_auth(&token).send().unwrap().status().as_u16() != 200 {}
    println!("feed: holds every event {:.2} s after the import ended; {}", t0.elapsed().as_secs_f64(), cpu_used(&before, &cpu(&s)));

    let (url, state) = receiver(o.webhook_rows);
    call(&c, "POST", format!("{}/v1/brands/bench/webhooks", s.base), &token, Some(json!({"url": url, "events": ["stock.changed"]})));
    let (t0, before) = (Instant::now(), cpu(&s));
    import(&s, &token, "stock", stock_csv(o.webhook_rows, o.skus, 3));
    loop {
        let st = state.lock().unwrap();
        if let (Some(first), Some(last)) = (st.0, st.1) {
            let d = last.duration_since(first).as_secs_f64();
            println!(
                "webhooks: {} deliveries in {d:.2} s = {:.0} deliveries/s (first delivery to last); {:.2} s from upload to last",
                o.webhook_rows,
                o.webhook_rows as f64 / d,
                last.duration_since(t0).as_secs_f64()
            );
            println!("  {}", cpu_used(&before, &cpu(&s)));
            break;
        }
        drop(st);
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(true)
}
