//! `zaiko-bench failover`: the change feed's lag behind acknowledged writes before and
//! after the owner of a brand's partition is killed (SIGKILL) under a write load, on a
//! running cluster (BENCHMARKS.md, Cluster mode; `bench/cluster-failover.sh`).
//!
//! * Writers send single stock changes of one brand, each with its own
//!   `Idempotency-Key`, to the partition's owner. A change that gets no answer or a 503
//!   is sent again with the same key to the next node (which forwards it to whoever
//!   owns the partition then), so every change is acknowledged once, with its LSN
//!   (`X-Zaiko-Lsn`).
//! * A reader long-polls the brand's feed on a node that is not the owner and notes
//!   when each event arrived; an event's id names the LSN of its record
//!   (`evt_…_<lsn>_<n>`).
//! * The lag of a change is from its acknowledgement to the reader holding its event.
//!   After the run every acknowledged LSN must have its event, the seqs must be dense
//!   and no event may come twice; the run fails otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

use super::args::FailoverArgs;

/// SKUs of the brand the writers spread over.
const SKUS: usize = 50;
/// How long the reader may take, after the writers stop, to hold every acknowledged
/// change's event.
const CATCH_UP_MAX: Duration = Duration::from_secs(60);

struct Cluster {
    /// Base URL and pid of each node.
    nodes: Vec<(String, u32)>,
    admin: String,
    client: reqwest::blocking::Client,
}

/// An answer: status (0 when none came), the `X-Zaiko-Lsn` header, the JSON body.
struct Answer {
    status: u16,
    lsn: Option<u64>,
    body: Value,
}

impl Cluster {
    fn call(&self, base: &str, method: &str, path: &str, token: &str, body: Option<&Value>, key: Option<&str>) -> Answer {
        let mut rb = self.client.request(method.parse().expect("method"), format!("{base}{path}")).bearer_auth(token);
        if let Some(k) = key {
            rb = rb.header("idempotency-key", k);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        match rb.send() {
            Ok(r) => {
                let status = r.status().as_u16();
                let lsn = r.headers().get("x-zaiko-lsn").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                Answer { status, lsn, body: r.json().unwrap_or(Value::Null) }
            }
            Err(e) => Answer { status: 0, lsn: None, body: Value::String(e.to_string()) },
        }
    }

    /// Sends until an answer other than 503 (or none) comes, moving through the nodes,
    /// at most for a minute (setup, before anything is killed).
    fn settle(&self, method: &str, path: &str, token: &str, body: Option<&Value>, key: Option<&str>) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut i = 0;
        loop {
            let a = self.call(&self.nodes[i % self.nodes.len()].0, method, path, token, body, key);
            if (a.status != 503 && a.status != 0) || Instant::now() > deadline {
                return a;
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What one acknowledged change was.
#[derive(Clone, Copy)]
struct Ack {
    lsn: u64,
    at: Instant,
    /// First sent after the kill: made by the new owner.
    sent_after_kill: bool,
}

#[derive(Default)]
struct Feed {
    /// LSN → when the reader first held an event of it.
    seen: BTreeMap<u64, Instant>,
    duplicates: u64,
    seq_gaps: u64,
    last_seq: u64,
    /// Answers the reader did not expect (anything but 200, 503 or none).
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Lag {
    changes: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn lag(acks: &[Ack], seen: &BTreeMap<u64, Instant>) -> Lag {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
    for a in acks {
        if let Some(at) = seen.get(&a.lsn) {
            h.saturating_record((at.saturating_duration_since(a.at).as_micros() as u64).max(1));
        }
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Lag { changes: h.len(), p50_ms: ms(h.value_at_quantile(0.5)), p99_ms: ms(h.value_at_quantile(0.99)), max_ms: ms(h.max()) }
}

#[derive(Debug, Serialize)]
struct Report {
    machine: super::Machine,
    settings: String,
    owner: String,
    reader: String,
    writers: usize,
    changes_per_s_before: f64,
    changes_per_s_after: f64,
    /// From the kill to the first change acknowledged after it.
    writes_unavailable_ms: f64,
    /// From the kill to the reader holding the first event of a change first sent
    /// after it (one the new owner made).
    feed_resumed_ms: Option<f64>,
    lag_before: Lag,
    lag_after: Lag,
    acknowledged: u64,
    missing_events: u64,
    duplicate_events: u64,
    seq_gaps: u64,
}

pub fn run(a: FailoverArgs) -> anyhow::Result<bool> {
    let mut nodes = Vec::new();
    for n in &a.nodes {
        let (url, pid) = n.rsplit_once('=').with_context(|| format!("--node {n:?}: expected URL=PID"))?;
        nodes.push((url.trim_end_matches('/').to_string(), pid.parse::<u32>().with_context(|| format!("--node {n:?}: bad pid"))?));
    }
    ensure!(nodes.len() >= 2, "give at least two --node: one is killed, the feed is read from another");
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().context("http client")?;
    let c = Arc::new(Cluster { nodes, admin: a.admin_token.clone(), client });
    let brand = format!("fo-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let token = setup(&c, &brand)?;
    let owner = owner_of(&c, &brand)?;
    let reader = (0..c.nodes.len()).find(|i| *i != owner).expect("two nodes at least");
    eprintln!("bench: brand {brand}: owner {} (pid {}), feed read from {}", c.nodes[owner].0, c.nodes[owner].1, c.nodes[reader].0);

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let read_stop = Arc::new(AtomicBool::new(false));
    let feed = Arc::new(Mutex::new(Feed::default()));
    let reading = {
        let (c, feed, read_stop, brand, token) = (c.clone(), feed.clone(), read_stop.clone(), brand.clone(), token.clone());
        std::thread::spawn(move || read_feed(&c, reader, &brand, &token, &feed, &read_stop))
    };
    let writers: Vec<_> = (0..a.writers)
        .map(|w| {
            let (c, stop, killed, brand, token) = (c.clone(), stop.clone(), killed.clone(), brand.clone(), token.clone());
            std::thread::spawn(move || write(&c, w, owner, &brand, &token, &stop, &killed))
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(a.before_s));
    let pid = rustix::process::Pid::from_raw(c.nodes[owner].1 as i32).context("bad pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).with_context(|| format!("kill -9 {}", c.nodes[owner].1))?;
    let kill_at = Instant::now();
    killed.store(true, Ordering::Relaxed);
    eprintln!("bench: killed the owner (pid {}) after {:.1} s", c.nodes[owner].1, (kill_at - started).as_secs_f64());
    std::thread::sleep(Duration::from_secs(a.after_s));
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    for w in writers {
        acks.extend(w.join().map_err(|_| anyhow::anyhow!("a writer panicked"))??);
    }
    let ended = Instant::now();
    // The reader goes on until it holds every acknowledged change's event.
    let wanted: BTreeSet<u64> = acks.iter().map(|a| a.lsn).collect();
    let deadline = Instant::now() + CATCH_UP_MAX;
    while Instant::now() < deadline {
        let f = feed.lock().expect("feed lock");
        if wanted.iter().all(|l| f.seen.contains_key(l)) {
            break;
        }
        drop(f);
        std::thread::sleep(Duration::from_millis(50));
    }
    read_stop.store(true, Ordering::Relaxed);
    let _ = reading.join();
    let f = feed.lock().expect("feed lock");
    let (before, after): (Vec<Ack>, Vec<Ack>) = acks.iter().partition(|x| x.at < kill_at);
    let first_after = after.iter().map(|x| x.at).min();
    let feed_resumed = after
        .iter()
        .filter(|x| x.sent_after_kill)
        .filter_map(|x| f.seen.get(&x.lsn))
        .min()
        .map(|at| ms(at.saturating_duration_since(kill_at)));
    let missing = wanted.iter().filter(|l| !f.seen.contains_key(l)).count() as u64;
    let report = Report {
        machine: super::machine(),
        settings: format!("{a:?}"),
        owner: c.nodes[owner].0.clone(),
        reader: c.nodes[reader].0.clone(),
        writers: a.writers,
        changes_per_s_before: before.len() as f64 / (kill_at - started).as_secs_f64(),
        changes_per_s_after: after.len() as f64 / (ended - kill_at).as_secs_f64(),
        writes_unavailable_ms: first_after.map_or(f64::NAN, |at| ms(at - kill_at)),
        feed_resumed_ms: feed_resumed,
        lag_before: lag(&before, &f.seen),
        lag_after: lag(&after, &f.seen),
        acknowledged: acks.len() as u64,
        missing_events: missing,
        duplicate_events: f.duplicates,
        seq_gaps: f.seq_gaps,
    };
    for e in &f.errors {
        eprintln!("bench: feed: {e}");
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    let out = a.out.clone().unwrap_or_else(|| super::default_out("failover"));
    super::report::write_json(&out, &report)?;
    println!("results: {}", out.display());
    let ok = missing == 0 && f.duplicates == 0 && f.seq_gaps == 0 && first_after.is_some();
    if !ok {
        eprintln!(
            "bench: FAILED: {missing} acknowledged changes without an event, {} duplicate events, {} seq gaps",
            f.duplicates, f.seq_gaps
        );
    }
    Ok(ok)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Creates the brand, its SKUs and their stock; returns a write token.
fn setup(c: &Cluster, brand: &str) -> anyhow::Result<String> {
    let r = c.settle("PUT", "/v1/locations/tsukuba", &c.admin, Some(&json!({"name": "倉庫 tsukuba", "kind": "warehouse"})), None);
    ensure!(matches!(r.status, 200 | 201), "create location tsukuba: {} {}", r.status, r.body);
    let r = c.settle("POST", "/v1/brands", &c.admin, Some(&json!({"id": brand, "name": "フェイルオーバー"})), None);
    ensure!(r.status == 201, "create brand {brand}: {} {}", r.status, r.body);
    let r = c.settle("POST", &format!("/v1/brands/{brand}/tokens"), &c.admin, Some(&json!({})), None);
    ensure!(r.status == 201, "token for {brand}: {} {}", r.status, r.body);
    let token = r.body["token"].as_str().context("token response has no token")?.to_string();
    // Every node follows the registry, where tokens live, a moment behind its owner.
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..c.nodes.len() {
        while c.call(&c.nodes[i].0, "GET", &format!("/v1/brands/{brand}"), &token, None, None).status != 200 {
            ensure!(Instant::now() < deadline, "the new token of {brand} is not accepted by {} after 30 s", c.nodes[i].0);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for i in 0..SKUS {
        let path = format!("/v1/brands/{brand}/skus/{}", sku(i));
        let r = c.settle("PUT", &path, &token, Some(&super::fixture::catalog_json(i)), None);
        ensure!((200..300).contains(&r.status), "PUT {path}: {} {}", r.status, r.body);
    }
    let changes: Vec<Value> = (0..SKUS).map(|i| json!({"sku": sku(i), "location": "tsukuba", "op": "set", "on_hand": 1_000_000})).collect();
    let r = c.settle("POST", &format!("/v1/brands/{brand}/stock/changes"), &token, Some(&json!({"changes": changes})), Some("fo-stock"));
    let applied = r.body["results"].as_array().is_some_and(|rs| rs.iter().all(|x| x["status"] == "applied"));
    ensure!(r.status == 200 && applied, "initial stock: {} {}", r.status, r.body);
    Ok(token)
}

fn sku(i: usize) -> String {
    format!("FO{i:04}")
}

/// The node that owns the brand's partition, by the cluster view.
fn owner_of(c: &Cluster, brand: &str) -> anyhow::Result<usize> {
    let view = c.call(&c.nodes[0].0, "GET", "/v1/admin/cluster", &c.admin, None, None);
    ensure!(view.status == 200, "GET /v1/admin/cluster: {} {}", view.status, view.body);
    let advertise = super::fixture::owner_in_view(&view.body, brand)?;
    match c.nodes.iter().position(|(url, _)| url == advertise) {
        Some(i) => Ok(i),
        None => bail!("brand {brand} is owned by {advertise}, which is not among --node"),
    }
}

/// One writer: a change at a time until `stop`; returns what was acknowledged.
fn write(
    c: &Cluster,
    w: usize,
    owner: usize,
    brand: &str,
    token: &str,
    stop: &AtomicBool,
    killed: &AtomicBool,
) -> anyhow::Result<Vec<Ack>> {
    let path = format!("/v1/brands/{brand}/stock/changes");
    let mut acks = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("fo-{w}-{i}");
        let body = json!({"changes": [{"sku": sku((w + i as usize) % SKUS), "location": "tsukuba", "op": "adjust", "delta": 1}]});
        let mut attempt = 0usize;
        let sent_after_kill = killed.load(Ordering::Relaxed);
        loop {
            let dead = if killed.load(Ordering::Relaxed) { vec![owner] } else { vec![] };
            let node = (owner + attempt) % c.nodes.len();
            if dead.contains(&node) {
                attempt += 1;
                continue;
            }
            let r = c.call(&c.nodes[node].0, "POST", &path, token, Some(&body), Some(&key));
            match r.status {
                200 => {
                    ensure!(r.body["results"][0]["status"] == "applied", "a change was not applied: {}", r.body);
                    acks.push(Ack { lsn: r.lsn.context("a write's answer has no X-Zaiko-Lsn")?, at: Instant::now(), sent_after_kill });
                    break;
                }
                // No answer, a partition moving, or the same key still running where
                // an earlier attempt went: the same change again.
                409 if r.body["code"] == "idempotency_in_progress" => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                0 | 503 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                s => bail!("a change got {s}: {}", r.body),
            }
        }
        i += 1;
    }
    Ok(acks)
}

/// The LSN an event id names (`evt_[<history>_]<lsn>_<n>`).
fn event_lsn(id: &str) -> Option<u64> {
    let mut parts = id.rsplit('_');
    parts.next()?;
    parts.next()?.parse().ok()
}

fn read_feed(c: &Cluster, reader: usize, brand: &str, token: &str, feed: &Mutex<Feed>, stop: &AtomicBool) {
    let mut after = String::new();
    let mut ids = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let path = format!(
            "/v1/brands/{brand}/events?limit=1000&wait=1{}",
            if after.is_empty() { String::new() } else { format!("&after={after}") }
        );
        let r = c.call(&c.nodes[reader].0, "GET", &path, token, None, None);
        let now = Instant::now();
        let mut f = feed.lock().expect("feed lock");
        if r.status != 200 {
            if r.status != 503 && r.status != 0 {
                f.errors.push(format!("GET events: {} {}", r.status, r.body));
            }
            drop(f);
            std::thread::sleep(Duration::from_millis(20));
        } else {
            for e in r.body["events"].as_array().into_iter().flatten() {
                let id = e["id"].as_str().unwrap_or_default().to_string();
                let seq = e["seq"].as_u64().unwrap_or(0);
                if !ids.insert(id.clone()) {
                    f.duplicates += 1;
                    continue;
                }
                if f.last_seq != 0 && seq != f.last_seq + 1 {
                    f.seq_gaps += 1;
                }
                f.last_seq = seq;
                if let Some(lsn) = event_lsn(&id) {
                    f.seen.entry(lsn).or_insert(now);
                }
            }
            if let Some(next) = r.body["next"].as_str() {
                after = next.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_names_its_records_lsn() {
        assert_eq!(event_lsn("evt_812_0"), Some(812));
        assert_eq!(event_lsn("evt_3_812_1"), Some(812));
        assert_eq!(event_lsn("evt"), None);
        assert_eq!(event_lsn("evt_x_1"), None);
    }
}
