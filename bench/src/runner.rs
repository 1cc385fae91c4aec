//! The closed loop: N connections, each with one request in flight, for a warm-up and
//! then a measured window. Latencies (µs) go into HDR histograms per label; answers
//! are settled in the [`Ledger`]; `/metrics` and CPU counters are read at the edges of
//! the window so that server-side figures cover exactly the measured requests.
//!
//! Latency is the time from writing a request to having read its whole answer. In a
//! closed loop a slow answer delays the next request of its connection, so these are
//! service times, not the latencies an open-loop arrival process would see.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use rand::SeedableRng;

use super::client::Conn;
use super::fixture::Fixture;
use super::ledger::{Effect, Ledger};
use super::scenarios::{Scenario, Worker};
use super::target::{own_cpu_seconds, scrape, Samples};

/// Shape of one measured run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Processes whose CPU over the window is reported together (a cluster's zaiko
    /// nodes and nats-servers), beside the server's own figure.
    pub cpu_pids: Arc<[u32]>,
}

/// Connection errors in a row after which a connection gives up (the server is gone).
const CONSECUTIVE_ERRORS_MAX: u32 = 50;

/// Largest latency recorded; anything slower is clamped to it.
const LATENCY_US_MAX: u64 = 60_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// What the answers of one label looked like inside the window.
#[derive(Debug, Clone)]
pub struct LabelTally {
    pub latency_us: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
}

/// Everything one connection (or, merged, the whole run) counted.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub labels: BTreeMap<&'static str, LabelTally>,
    /// Units of work done in the window: applied stock changes, or successful reads.
    pub ops: u64,
    /// Changes rejected one by one inside 2xx answers, in the window.
    pub rejected_changes: u64,
    /// Over the whole run, warm-up included: no answer, 5xx other than 503, answers
    /// that could not be settled.
    pub io_errors: u64,
    pub server_errors: u64,
    pub settle_errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, label: &'static str, status: u16, latency: Duration) {
        let t = self.labels.entry(label).or_insert_with(|| LabelTally { latency_us: new_histogram(), statuses: BTreeMap::new() });
        t.latency_us.saturating_record((latency.as_micros() as u64).clamp(1, LATENCY_US_MAX));
        *t.statuses.entry(status).or_default() += 1;
    }

    fn note_error(&mut self, e: String) {
        self.first_error.get_or_insert(e);
    }

    pub fn merge(&mut self, other: Tally) {
        for (label, t) in other.labels {
            match self.labels.get_mut(label) {
                Some(mine) => {
                    mine.latency_us.add(&t.latency_us).expect("histograms share bounds");
                    for (s, n) in t.statuses {
                        *mine.statuses.entry(s).or_default() += n;
                    }
                }
                None => {
                    self.labels.insert(label, t);
                }
            }
        }
        self.ops += other.ops;
        self.rejected_changes += other.rejected_changes;
        self.io_errors += other.io_errors;
        self.server_errors += other.server_errors;
        self.settle_errors += other.settle_errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// All labels together.
    pub fn all_latency_us(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for t in self.labels.values() {
            h.add(&t.latency_us).expect("histograms share bounds");
        }
        h
    }

    pub fn statuses(&self) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for t in self.labels.values() {
            for (s, n) in &t.statuses {
                *out.entry(*s).or_default() += n;
            }
        }
        out
    }
}

/// Counters read at the start and the end of the window.
#[derive(Debug, Clone, Default)]
pub struct Edges {
    pub server: Option<(Samples, Samples)>,
    pub client_cpu_s: Option<(f64, f64)>,
    /// CPU seconds of each watched process (`LoadPlan::cpu_pids`) at both edges.
    pub watched_cpu_s: Vec<Watched>,
}

/// One watched process's CPU seconds at the start and the end of the window.
#[derive(Debug, Clone)]
pub struct Watched {
    pub pid: u32,
    pub cpu_s: (f64, f64),
    /// Of which its search indexing threads (see [`index_cpu_seconds`]).
    pub index_cpu_s: (f64, f64),
}

/// The result of one closed-loop run.
pub struct RunOutput {
    pub tally: Tally,
    pub window_s: f64,
    pub edges: Edges,
}

/// Runs `scenario` with the plan's connections and returns what was measured.
pub async fn closed_loop(
    fx: Arc<Fixture>,
    scenario: Arc<dyn Scenario>,
    ledger: Arc<Ledger>,
    plan: LoadPlan,
    run_tag: Arc<str>,
) -> anyhow::Result<RunOutput> {
    let start = Instant::now();
    let warm_end = start + plan.warmup;
    let end = warm_end + plan.measure;
    let edges = tokio::spawn(read_edges(fx.addr.clone(), plan.cpu_pids.clone(), warm_end, end));
    // A surging scenario runs `connections` through the warm-up (its base load) and
    // `surge` times as many in the measured window.
    let total = plan.connections * scenario.surge().max(1);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let (fx, scenario, ledger, run_tag) = (fx.clone(), scenario.clone(), ledger.clone(), run_tag.clone());
        let surged = i >= plan.connections;
        let rng = rand::rngs::SmallRng::seed_from_u64(rand::random::<u64>() ^ i as u64);
        let worker = Worker { rng, conn: i, seq: 0, run_tag, surged };
        let begin = if surged { warm_end } else { start };
        tasks.push(tokio::spawn(connection(fx, scenario, ledger, worker, begin, warm_end, end)));
    }
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await.context("connection task panicked")?);
    }
    let edges = edges.await.context("metrics task panicked")?;
    Ok(RunOutput { tally, window_s: plan.measure.as_secs_f64(), edges })
}

async fn connection(
    fx: Arc<Fixture>,
    scenario: Arc<dyn Scenario>,
    ledger: Arc<Ledger>,
    mut w: Worker,
    begin: Instant,
    warm_end: Instant,
    end: Instant,
) -> Tally {
    tokio::time::sleep_until(begin.into()).await;
    let mut conn = Conn::new(&fx.addr);
    // Routed over a cluster's nodes: one connection per node, opened when first used.
    let mut routed: std::collections::HashMap<String, Conn> = std::collections::HashMap::new();
    let mut req = Vec::with_capacity(16 << 10);
    let mut tally = Tally::default();
    let mut errors_in_row = 0;
    while Instant::now() < end {
        req.clear();
        let planned = scenario.next(&fx, &mut w, &mut req);
        w.seq += 1;
        let conn = match fx.routes.pick(&req, w.conn) {
            Some(addr) => {
                if !routed.contains_key(addr) {
                    routed.insert(addr.to_string(), Conn::new(addr));
                }
                routed.get_mut(addr).expect("inserted above")
            }
            None => &mut conn,
        };
        let sent = Instant::now();
        let answer = conn.send(&req).await;
        let done = Instant::now();
        let in_window = done >= warm_end && done < end;
        match answer {
            Ok(r) => {
                errors_in_row = 0;
                let status = r.status;
                if status >= 500 && status != 503 {
                    tally.server_errors += 1;
                    tally.note_error(format!("status {status}: {}", String::from_utf8_lossy(r.body)));
                } else if (status == 429 || status == 503) && !r.retry_after {
                    // The contract: every 429/503 says when to come back.
                    tally.server_errors += 1;
                    tally.note_error(format!("status {status} without Retry-After: {}", String::from_utf8_lossy(r.body)));
                }
                match ledger.settle(&planned.effect, Some((status, r.body))) {
                    Ok(s) if in_window => {
                        let read_ok = matches!(planned.effect, Effect::None) && (200..300).contains(&status);
                        tally.ops += s.applied + u64::from(read_ok);
                        tally.rejected_changes += s.rejected;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tally.settle_errors += 1;
                        tally.note_error(format!("{e:#}"));
                    }
                }
                if in_window {
                    tally.record(planned.label, status, done - sent);
                }
            }
            Err(e) => {
                // The outcome is unknown: the request may or may not have been applied.
                let _ = ledger.settle(&planned.effect, None);
                tally.io_errors += 1;
                tally.note_error(e.to_string());
                errors_in_row += 1;
                if errors_in_row >= CONSECUTIVE_ERRORS_MAX {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

async fn read_edges(addr: String, cpu_pids: Arc<[u32]>, warm_end: Instant, end: Instant) -> Edges {
    let watched = || -> Vec<(u32, Option<f64>, f64)> {
        cpu_pids.iter().map(|pid| (*pid, zaiko::procfs::cpu_seconds(zaiko::procfs::Process::Pid(*pid)), index_cpu_seconds(*pid))).collect()
    };
    tokio::time::sleep_until(warm_end.into()).await;
    let (s0, c0, w0) = (scrape(&addr).await.ok(), own_cpu_seconds(), watched());
    tokio::time::sleep_until(end.into()).await;
    let (s1, c1, w1) = (scrape(&addr).await.ok(), own_cpu_seconds(), watched());
    // A process that is gone (or unreadable) at either edge has no figure.
    let watched_cpu_s = w0
        .into_iter()
        .zip(w1)
        .filter_map(|((pid, a, ia), (_, b, ib))| Some(Watched { pid, cpu_s: (a?, b?), index_cpu_s: (ia, ib) }))
        .collect();
    Edges { server: s0.zip(s1), client_cpu_s: c0.zip(c1), watched_cpu_s }
}

/// Whether a thread (by its `comm`) does a zaiko server's search indexing.
fn is_index_thread(comm: &str) -> bool {
    comm == "zaiko-indexer" || comm.starts_with("thrd-tantivy") || comm == "segment_updater" || comm.starts_with("merge_thread")
}

/// CPU seconds used so far by the indexing threads of `pid` (0 for a process without
/// any, e.g. a nats-server). Threads that end within a window (tantivy's merge threads
/// come and go) are not counted, so this is a floor.
fn index_cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    tasks
        .flatten()
        .filter(|t| is_index_thread(std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim()))
        .filter_map(|t| zaiko::procfs::stat_cpu_seconds(&std::fs::read_to_string(t.path().join("stat")).ok()?))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge_histograms_and_statuses() {
        let mut a = Tally::default();
        a.record("change", 200, Duration::from_micros(100));
        a.record("change", 503, Duration::from_micros(300));
        a.ops = 1;
        let mut b = Tally::default();
        b.record("change", 200, Duration::from_micros(200));
        b.record("get-stock", 200, Duration::from_nanos(10));
        b.io_errors = 2;
        b.note_error("boom".into());
        a.merge(b);
        assert_eq!(a.labels["change"].latency_us.len(), 3);
        assert_eq!(a.labels["get-stock"].latency_us.min(), 1, "sub-µs latencies clamp to 1 µs");
        assert_eq!(a.statuses(), BTreeMap::from([(200, 3), (503, 1)]));
        assert_eq!(a.all_latency_us().len(), 4);
        assert_eq!((a.ops, a.io_errors, a.first_error.as_deref()), (1, 2, Some("boom")));
    }
}
