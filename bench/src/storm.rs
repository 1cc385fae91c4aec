//! `zaiko-bench storm`: a sale start for the last units. `--clients` clients (10,000
//! by default) each reserve one unit of one SKU that has `--units` units (100) split
//! over two locations, all at the same instant: every client's connection is open
//! and idle first, then a barrier releases them together. Exactly `--units`
//! reservations must succeed (201) and every other one must be refused with 409
//! `insufficient_stock`; afterwards the SKU's `reserved` equals the units and its
//! `available` is 0. Reported per run: how long the storm took (first request to last
//! answer), when clients had their answer counted from the storm's start (p50, p99,
//! max), the service time of each request, and, in the same run, the same storm of
//! `GET /healthz` as the ceiling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context as _};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::args::StormArgs;
use super::client::{write_request, Conn};
use super::fixture::{self, call, Fixture, FixtureSpec};
use super::report::{self, summarize, LatencySummary};
use super::target::Target;

/// Latencies above this are recorded as this (µs).
const LATENCY_US_MAX: u64 = 600_000_000;

/// What one storm did.
#[derive(Debug, Clone, Serialize)]
pub struct StormOutcome {
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection errors).
    pub errors: u64,
    /// First request sent to last answer received.
    pub storm_s: f64,
    /// When each client had its answer, counted from the storm's start.
    pub answered_at: LatencySummary,
    /// Send to answer of each request.
    pub service: LatencySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormRun {
    pub run: usize,
    pub healthz: StormOutcome,
    pub reserve: StormOutcome,
    /// The SKU's totals after the storm: (on_hand, reserved, available).
    pub after: (i64, i64, i64),
    /// Whether exactly `units` succeeded, the rest were 409 and the stock adds up.
    pub ok: bool,
}

#[derive(Serialize)]
struct StormReport {
    machine: super::Machine,
    settings: String,
    runs: Vec<StormRun>,
}

pub async fn run(a: StormArgs) -> anyhow::Result<bool> {
    ensure!(a.clients > 0 && a.connections > 0 && a.runs > 0, "--clients, --connections and --runs must be positive");
    ensure!(a.units as usize <= a.clients, "--units must not exceed --clients");
    let connections = a.connections.min(a.clients);
    let target = Target::open(&a.target).await?;
    let addr = target.addr.clone();
    let out = a.out.clone().unwrap_or_else(|| super::default_out("storm"));
    let mut runs = Vec::new();
    for run in 1..=a.runs {
        let healthz = storm(&addr, connections, a.clients, |_| {
            let mut r = Vec::new();
            write_request(&mut r, "GET", "/healthz", &addr, &[], b"");
            r
        })
        .await?;
        let fx = storm_fixture(&target, a.units, run).await?;
        let brand = fx.brands[0].clone();
        let sku = Fixture::sku_id(0);
        let auth = format!("Bearer {}", brand.token);
        let path = format!("/v1/brands/{}/reservations", brand.id);
        let reserve = storm(&addr, connections, a.clients, |client| {
            let body =
                json!({"id": format!("storm-{client}"), "channel": "storm", "ttl_seconds": 600, "lines": [{"sku": sku, "quantity": 1}]});
            let mut r = Vec::new();
            write_request(&mut r, "POST", &path, &addr, &[("Authorization", &auth)], body.to_string().as_bytes());
            r
        })
        .await?;
        let (status, body) = call(&addr, "GET", &format!("/v1/brands/{}/skus/{sku}/stock", brand.id), &brand.token, None).await?;
        ensure!(status == 200, "reading the stock after the storm: {status}");
        let v: serde_json::Value = serde_json::from_slice(&body).context("stock view")?;
        let total = |k: &str| v["total"][k].as_i64().unwrap_or(-1);
        let after = (total("on_hand"), total("reserved"), total("available"));
        let refused = a.clients as u64 - a.units;
        let ok = reserve.statuses.get(&201).copied().unwrap_or(0) == a.units
            && reserve.statuses.get(&409).copied().unwrap_or(0) == refused
            && reserve.errors == 0
            && after == (a.units as i64, a.units as i64, 0);
        let r = StormRun { run, healthz, reserve, after, ok };
        eprintln!("{}", run_line(&r, a.units));
        runs.push(r);
        report::write_json(&out, &StormReport { machine: super::machine(), settings: format!("{a:?}"), runs: runs.clone() })?;
    }
    println!("{}", median_line(&runs, a.clients, connections, a.units));
    println!("results: {}", out.display());
    Ok(runs.iter().all(|r| r.ok))
}

/// A fresh brand with one SKU holding `units` at two locations (the odd unit at the
/// first), so that the storm's reservations are filled from both.
async fn storm_fixture(target: &Target, units: u64, run: usize) -> anyhow::Result<Arc<Fixture>> {
    let spec = FixtureSpec {
        brand_prefix: format!("storm-{run}-{:04x}", rand::random::<u16>()),
        brands: 1,
        skus_per_brand: 1,
        locations: super::location_ids(2),
        on_hand_initial: 0,
        concurrency: 1,
    };
    let fx = Arc::new(fixture::create_brands(&target.addr, &target.admin_token, &spec).await?);
    fixture::load_skus(&fx, 1).await?;
    let brand = &fx.brands[0];
    let half = (units / 2) as i64;
    let changes: Vec<_> = [(0, units as i64 - half), (1, half)]
        .iter()
        .map(|&(l, n)| json!({"sku": Fixture::sku_id(0), "location": fx.locations[l], "op": "set", "on_hand": n}))
        .collect();
    let mut conn = Conn::new(&target.addr);
    let mut req = Vec::new();
    let (auth, key) = (format!("Bearer {}", brand.token), format!("{}-stock", spec.brand_prefix));
    let body = json!({ "changes": changes }).to_string();
    let path = format!("/v1/brands/{}/stock/changes", brand.id);
    write_request(&mut req, "POST", &path, &target.addr, &[("Authorization", &auth), ("Idempotency-Key", &key)], body.as_bytes());
    let r = conn.send(&req).await?;
    ensure!(r.status == 200, "setting the storm's stock: {} {}", r.status, String::from_utf8_lossy(r.body));
    Ok(fx)
}

/// Per connection: (answered-at histogram, service histogram, statuses, errors).
type ConnOutcome = (Histogram<u64>, Histogram<u64>, BTreeMap<u16, u64>, u64);

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// Opens `connections` connections (each proves itself with a `/healthz`), then
/// releases them at once: connection `c` sends the requests of clients `c`,
/// `c + connections`, … one after another.
async fn storm(addr: &str, connections: usize, clients: usize, make: impl Fn(usize) -> Vec<u8>) -> anyhow::Result<StormOutcome> {
    let barrier = Arc::new(Barrier::new(connections + 1));
    let start: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let mut probe = Vec::new();
    write_request(&mut probe, "GET", "/healthz", addr, &[], b"");
    let probe: Arc<[u8]> = Arc::from(probe);
    let mut tasks: JoinSet<anyhow::Result<ConnOutcome>> = JoinSet::new();
    for c in 0..connections {
        let requests: Vec<Vec<u8>> = (c..clients).step_by(connections).map(&make).collect();
        let (barrier, start, probe, addr) = (barrier.clone(), start.clone(), probe.clone(), addr.to_string());
        tasks.spawn(async move {
            let mut conn = Conn::new(&addr);
            let ready = conn.send(&probe).await.map(|r| r.status);
            barrier.wait().await;
            ensure!(ready? == 200, "a storm connection could not be opened");
            // The first connection through the barrier starts the clock for all.
            let t0 = *start.get_or_init(Instant::now);
            let (mut at, mut service, mut statuses, mut errors) = (histogram(), histogram(), BTreeMap::new(), 0u64);
            for req in &requests {
                let sent = Instant::now();
                match conn.send(req).await {
                    Ok(r) => {
                        *statuses.entry(r.status).or_insert(0) += 1;
                        service.saturating_record(sent.elapsed().as_micros() as u64);
                        at.saturating_record(t0.elapsed().as_micros() as u64);
                    }
                    Err(_) => errors += 1,
                }
            }
            Ok((at, service, statuses, errors))
        });
    }
    // The connections are opened while this waits: the storm starts when all are.
    barrier.wait().await;
    let t0 = *start.get_or_init(Instant::now);
    let (mut at, mut service, mut statuses, mut errors) = (histogram(), histogram(), BTreeMap::new(), 0u64);
    while let Some(done) = tasks.join_next().await {
        let (a, s, st, e) = done.context("a storm connection panicked")??;
        at.add(&a).context("histogram")?;
        service.add(&s).context("histogram")?;
        for (k, v) in st {
            *statuses.entry(k).or_insert(0) += v;
        }
        errors += e;
    }
    Ok(StormOutcome { statuses, errors, storm_s: t0.elapsed().as_secs_f64(), answered_at: summarize(&at), service: summarize(&service) })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn run_line(r: &StormRun, units: u64) -> String {
    let s = &r.reserve;
    format!(
        "storm run {}: {} ({} × 201, {} × 409, {} other, {} errors); storm {:.3} s, answered by p50 {:.1} ms p99 {:.1} ms max {:.1} ms, service p99 {:.1} ms; /healthz storm {:.3} s p99 {:.1} ms; after: on_hand {} reserved {} available {} (want {units}, {units}, 0)",
        r.run,
        if r.ok { "ok" } else { "FAILED" },
        s.statuses.get(&201).unwrap_or(&0),
        s.statuses.get(&409).unwrap_or(&0),
        s.statuses.iter().filter(|(k, _)| **k != 201 && **k != 409).map(|(_, v)| v).sum::<u64>(),
        s.errors,
        s.storm_s,
        ms(s.answered_at.p50_us),
        ms(s.answered_at.p99_us),
        ms(s.answered_at.max_us),
        ms(s.service.p99_us),
        r.healthz.storm_s,
        ms(r.healthz.answered_at.p99_us),
        r.after.0,
        r.after.1,
        r.after.2,
    )
}

fn median_line(runs: &[StormRun], clients: usize, connections: usize, units: u64) -> String {
    let med = |f: &dyn Fn(&StormRun) -> f64| report::median(runs.iter().map(f).collect()).unwrap_or(f64::NAN);
    let storm = med(&|r| r.reserve.storm_s);
    let healthz = med(&|r| r.healthz.storm_s);
    format!(
        "storm medians of {} runs ({clients} clients on {connections} connections for {units} units): storm {:.3} s ({:.0} reservations/s), answered by p50 {:.1} ms p99 {:.1} ms; /healthz storm {:.3} s p99 {:.1} ms; storm / healthz time {:.2}×",
        runs.len(),
        storm,
        clients as f64 / storm,
        med(&|r| ms(r.reserve.answered_at.p50_us)),
        med(&|r| ms(r.reserve.answered_at.p99_us)),
        healthz,
        med(&|r| ms(r.healthz.answered_at.p99_us)),
        storm / healthz,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(s201: u64, s409: u64, storm_s: f64) -> StormOutcome {
        StormOutcome {
            statuses: [(201, s201), (409, s409)].into_iter().collect(),
            errors: 0,
            storm_s,
            answered_at: LatencySummary { p50_us: 1000, p99_us: 4000, max_us: 5000, ..Default::default() },
            service: LatencySummary::default(),
        }
    }

    #[test]
    fn the_lines_show_counts_and_the_ratio_to_the_healthz_storm() {
        let runs: Vec<StormRun> = [0.5, 0.4, 0.6]
            .iter()
            .enumerate()
            .map(|(i, &t)| StormRun {
                run: i + 1,
                healthz: outcome(0, 0, 0.1),
                reserve: outcome(100, 9900, t),
                after: (100, 100, 0),
                ok: true,
            })
            .collect();
        let line = run_line(&runs[0], 100);
        assert!(line.contains("ok (100 × 201, 9900 × 409, 0 other, 0 errors)"), "{line}");
        let m = median_line(&runs, 10_000, 10_000, 100);
        assert!(m.contains("storm 0.500 s (20000 reservations/s)"), "{m}");
        assert!(m.contains("storm / healthz time 5.00×"), "{m}");
    }
}
