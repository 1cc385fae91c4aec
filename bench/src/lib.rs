//! `zaiko-bench`: the load harness. It drives a running server (`--url`) or one it
//! starts from the server binary (`--spawn`) and reports what the server sustains
//! beside the server's own `/healthz` ceiling measured in the same run. It talks to the
//! server over HTTP only; from the `zaiko` library it takes the `/proc` readers, the
//! snapshot listing and, for `replay-profile` alone, the journal format and the state
//! fold.
//!
//! * [`args`] — the command line.
//! * [`client`] — a lean HTTP/1.1 keep-alive client (hand-written requests and parsing).
//! * [`target`] — the server under test: spawn, readiness, RSS/CPU, `/metrics` scrape.
//! * [`fixture`] — brands, SKUs with Japanese catalog data, initial stock; bulk loading.
//! * [`scenarios`] — the workloads, one file each.
//! * [`runner`] — the closed loop with warm-up, HDR histograms, window-edge scrapes.
//! * [`ledger`] — stock accounting: final = initial + acknowledged deltas.
//! * [`report`] — summaries, ratios, medians, the table and the JSON file.
//! * [`capacity`] — memory per SKU and recovery time with a large data set.
//! * [`replay`] — where replay time goes (read, scan, decode, apply), offline.
//! * [`storm`] — a sale start: thousands of clients at once for the last units.
//! * [`integrations`] — bulk imports, the change feed and webhook deliveries.
//! * [`failover`] — on a cluster: the feed's lag behind writes across a kill -9 of an owner.

pub mod args;
pub mod capacity;
pub mod client;
pub mod failover;
pub mod fixture;
pub mod integrations;
pub mod ledger;
pub mod replay;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod storm;
pub mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;

use args::{BenchCommand, LoadArgs};
use fixture::{Fixture, FixtureSpec};
use ledger::Ledger;
use report::ScenarioResult;
use runner::LoadPlan;
use scenarios::Scenario;
use target::Target;

/// Location ids of the fixture, in order; more than these are numbered.
const LOCATIONS: [&str; 3] = ["tsukuba", "osaka", "store-shibuya"];

pub fn location_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| LOCATIONS.get(i).map_or_else(|| format!("loc-{i}"), |l| l.to_string())).collect()
}

/// Runs a bench command; the exit status is 1 when a check failed.
pub fn run(cmd: BenchCommand) -> ExitCode {
    let threads = match &cmd {
        BenchCommand::Load(a) => a.client_threads,
        BenchCommand::Capacity(a) => a.client_threads,
        BenchCommand::Storm(a) => a.client_threads,
        BenchCommand::ReplayProfile(_) | BenchCommand::Integrations(_) | BenchCommand::Failover(_) => 1,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zaiko-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        BenchCommand::Load(a) => rt.block_on(load(a)),
        BenchCommand::Capacity(a) => rt.block_on(capacity::run(a)),
        BenchCommand::ReplayProfile(a) => replay::main(&a),
        BenchCommand::Storm(a) => rt.block_on(storm::run(a)),
        BenchCommand::Integrations(a) => integrations::run(&a),
        BenchCommand::Failover(a) => failover::run(a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("zaiko-bench: FAILED (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("zaiko-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

pub fn default_out(kind: &str) -> PathBuf {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    PathBuf::from(format!("target/zaiko-bench/{kind}-{now}.json"))
}

/// The machine, for the record.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub mem_total_kib: Option<u64>,
    pub kernel: String,
    pub unix_time_s: u64,
}

pub fn machine() -> Machine {
    Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_total_kib: zaiko::procfs::mem_total_kib(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        unix_time_s: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    }
}

#[derive(Serialize)]
struct LoadReport<'a> {
    machine: Machine,
    settings: String,
    results: &'a [ScenarioResult],
    medians: Vec<report::MedianRow>,
}

fn apply_quick(a: &mut LoadArgs) {
    if a.quick {
        (a.runs, a.duration_s, a.warmup_s, a.connections, a.brands, a.skus_per_brand) = (1, 5, 1, vec![64], 2, 1000);
    }
}

fn resolve_scenarios(names: &[String]) -> anyhow::Result<Vec<Arc<dyn Scenario>>> {
    names
        .iter()
        .filter(|n| n.as_str() != "healthz")
        .map(|n| scenarios::by_name(n).with_context(|| format!("unknown scenario {n:?}; known: {}", scenarios::NAMES.join(", "))))
        .collect()
}

/// `zaiko-bench load`.
async fn load(mut a: LoadArgs) -> anyhow::Result<bool> {
    apply_quick(&mut a);
    let scenarios = resolve_scenarios(&a.scenarios)?;
    if a.connections.is_empty() || a.connections.contains(&0) || a.runs == 0 {
        bail!("--connections must be positive and --runs at least 1");
    }
    let target = Target::open(&a.target).await?;
    let spec = FixtureSpec {
        brand_prefix: format!("bench-{:04x}", rand::random::<u16>()),
        brands: a.brands,
        skus_per_brand: a.skus_per_brand,
        locations: location_ids(a.locations),
        on_hand_initial: 1_000_000,
        concurrency: 64,
    };
    let mut fx = fixture::create_brands(&target.addr, &target.admin_token, &spec).await?;
    if !a.route_urls.is_empty() {
        fixture::route_to_owners(&mut fx, &a.route_urls).await?;
        let mut per_node: std::collections::BTreeMap<&str, usize> = fx.routes.nodes.iter().map(|n| (n.as_str(), 0)).collect();
        for owner in fx.routes.owners.values() {
            *per_node.entry(owner).or_default() += 1;
        }
        eprintln!("bench: brands per owner node: {per_node:?}");
    }
    let fx = Arc::new(fx);
    let took = fixture::load_skus(&fx, spec.concurrency).await?;
    eprintln!("bench: created {} SKUs in {:.1} s", fx.total_skus(), took.as_secs_f64());
    fixture::set_stock(&fx, spec.on_hand_initial, spec.concurrency, &spec.brand_prefix).await?;
    let healthz = scenarios::by_name("healthz").expect("healthz exists");
    // Without --cpu-pid, the server's own process when its pid is known.
    let cpu_pids: Arc<[u32]> = if a.cpu_pids.is_empty() { target.pid().into_iter().collect() } else { a.cpu_pids.clone().into() };
    let plan = |connections| LoadPlan {
        connections,
        warmup: Duration::from_secs(a.warmup_s),
        measure: Duration::from_secs(a.duration_s),
        cpu_pids: cpu_pids.clone(),
    };
    let mut results: Vec<ScenarioResult> = Vec::new();
    let out = a.out.clone().unwrap_or_else(|| default_out("load"));
    let settings = format!("{:?}", a);
    let mut ok = true;
    for run in 1..=a.runs {
        for &c in &a.connections {
            let ceiling = measure(&fx, &healthz, plan(c), run).await?;
            eprintln!("{}", report::run_line(&ceiling));
            let ceiling_rps = ceiling.requests_per_s;
            results.push(ceiling);
            for s in &scenarios {
                let mut r = measure(&fx, s, plan(c), run).await?;
                r.set_ceiling(ceiling_rps);
                eprintln!("{}", report::run_line(&r));
                ok &= !r.failed();
                results.push(r);
                report::write_json(
                    &out,
                    &LoadReport { machine: machine(), settings: settings.clone(), results: &results, medians: vec![] },
                )?;
            }
        }
    }
    let medians = report::medians(&results);
    println!("{}", report::median_table(&medians));
    if let Some(rss) = target.rss_bytes() {
        println!("server RSS at the end: {:.1} MiB", rss as f64 / (1 << 20) as f64);
    }
    report::write_json(&out, &LoadReport { machine: machine(), settings, results: &results, medians })?;
    println!("results: {}", out.display());
    Ok(ok)
}

/// One closed-loop run of `scenario`, with the stock read before and checked after
/// when it writes.
async fn measure(fx: &Arc<Fixture>, scenario: &Arc<dyn Scenario>, plan: LoadPlan, run: usize) -> anyhow::Result<ScenarioResult> {
    scenario.prepare(fx).await?;
    let ledger = Ledger::new(fx.slots());
    let initial = if scenario.writes() { Some(ledger::read_stock(fx, 64).await?) } else { None };
    let run_tag: Arc<str> = Arc::from(format!("b{:08x}", rand::random::<u32>()));
    let connections = plan.connections;
    let out = runner::closed_loop(fx.clone(), scenario.clone(), ledger.clone(), plan, run_tag).await?;
    let mut result = ScenarioResult::new(scenario.name(), connections, run, &out);
    result.window_connections = connections * scenario.surge();
    if let Some(initial) = initial {
        let last = ledger::read_stock(fx, 64).await?;
        let mut check = ledger.check(&initial, &last);
        if !ledger.outstanding().is_empty() || last.reserved != initial.reserved {
            // Reservations still held at the end: release them, after which every
            // slot's reserved must be back where it started.
            let released = ledger::release_outstanding(fx, &ledger, 64).await?;
            check.check_restored(released, &initial, &ledger::read_stock(fx, 64).await?);
        }
        result.stock_check = Some(check);
    }
    Ok(result)
}
