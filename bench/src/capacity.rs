//! The capacity run: resident memory per SKU with many SKUs loaded, then the time
//! from a restart to `/readyz` 200 with that data plus millions of WAL records, the
//! WAL's size, and (offline) where replay time goes.
//!
//! Each RSS is read at rest: once the search index has caught up, and 2 s after.
//! Steps: RSS of the empty server → PUT every SKU → RSS → `set` stock at every
//! location in batches of 1,000 → RSS → single-change requests until the WAL holds
//! `--records` records → RSS → graceful stop → restart, timed: the whole WAL is
//! replayed (the server runs with scheduled snapshots off, unless a `--serve-arg`
//! sets their schedule: then from the newest scheduled snapshot and the journal after
//! it) → RSS → replay profile (offline) → an offline snapshot → restart, timed:
//! recovery from the snapshot. Each restart is reported by phase, as the server
//! measured it (`zaiko_recovery_phase_seconds`), with the time the search index and the
//! change feed took to cover the journal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::args::CapacityArgs;
use super::client::write_request;
use super::fixture::{self, bulk, Fixture, FixtureSpec};
use super::replay::{self, ReplayProfile};
use super::target::{scrape, wait_ready, Target};

/// How long the allocator is left to settle before RSS is read.
const SETTLE: Duration = Duration::from_secs(2);
/// Longest wait for the search index to catch up before RSS is read anyway.
const INDEX_CATCH_UP_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Serialize)]
pub struct CapacityReport {
    pub machine: Option<super::Machine>,
    pub skus: usize,
    pub brands: usize,
    pub locations: usize,
    pub rss_empty_bytes: u64,
    pub rss_catalog_bytes: u64,
    pub rss_stocked_bytes: u64,
    /// The file-backed part of `rss_stocked_bytes`: the binary's code and the search
    /// index's mapped segments.
    pub rss_stocked_file_bytes: u64,
    /// The server allocator's account at the stocked point (`zaiko_heap_*_bytes`):
    /// live allocations, pages in use, resident pages it maps.
    pub heap_stocked_allocated_bytes: Option<u64>,
    pub heap_stocked_active_bytes: Option<u64>,
    pub heap_stocked_resident_bytes: Option<u64>,
    pub rss_after_records_bytes: u64,
    /// The file-backed part of `rss_after_records_bytes`.
    pub rss_after_records_file_bytes: u64,
    /// The allocator's account after the records (`zaiko_heap_*_bytes`): the heap that
    /// 24 h of idempotency outcomes add shows apart from the allocator's free room.
    pub heap_after_records_allocated_bytes: Option<u64>,
    pub heap_after_records_resident_bytes: Option<u64>,
    pub rss_recovered_bytes: u64,
    /// The allocator's account after the first restart.
    pub heap_recovered_allocated_bytes: Option<u64>,
    /// (stocked - empty) / SKUs: the figure the target is about.
    pub bytes_per_sku: f64,
    pub catalog_bytes_per_sku: f64,
    pub recovered_bytes_per_sku: f64,
    pub sku_puts_per_s: f64,
    pub stock_set_s: f64,
    pub topup_requests: u64,
    pub topup_requests_per_s: f64,
    pub wal_records: u64,
    pub wal_bytes_written: u64,
    pub wal_file_bytes: u64,
    pub shutdown_s: f64,
    /// Process start to the listen line, and to `/readyz` 200.
    pub listening_s: f64,
    pub ready_s: f64,
    /// The server's own log line: time spent replaying.
    pub server_replay_ms: Option<u64>,
    /// The restart by phase, as the server reports it (`zaiko_recovery_phase_seconds`):
    /// seconds per phase; `*_cpu` phases add up the threads that ran side by side.
    pub restart_phases: Phases,
    /// `zaiko snapshot create` on the stopped data dir, and its file size.
    pub snapshot_create_s: Option<f64>,
    pub snapshot_bytes: Option<u64>,
    /// Process start to `/readyz` 200 when recovering from that snapshot.
    pub ready_from_snapshot_s: Option<f64>,
    pub rss_from_snapshot_bytes: Option<u64>,
    pub from_snapshot_phases: Phases,
    pub replay_warm: Option<ReplayProfile>,
    pub replay_cold: Option<ReplayProfile>,
}

/// A restart by phase: the server's own figures, and what followed `/readyz` 200.
#[derive(Debug, Default, Serialize)]
pub struct Phases {
    /// Seconds per phase of recovery, by the server's phase names.
    pub server: std::collections::BTreeMap<String, f64>,
    /// Process start to the search index covering the recovered journal, and to the
    /// change feed covering it (both catch up after `/readyz` 200).
    pub index_caught_up_s: Option<f64>,
    pub feed_caught_up_s: Option<f64>,
}

/// Longest wait for the index and feed to catch up after a restart.
const CATCH_UP_MAX: Duration = Duration::from_secs(600);

/// Reads the server's recovery phases, then waits for the index and the feed to cover
/// the journal, timing both from `started` (the process start).
async fn phases(addr: &str, started: std::time::Instant) -> anyhow::Result<Phases> {
    let m = scrape(addr).await?;
    let prefix = "zaiko_recovery_phase_seconds{phase=\"";
    let server = m.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.strip_suffix("\"}")?.to_string(), *v))).collect();
    let mut out = Phases { server, ..Phases::default() };
    let waiting = std::time::Instant::now();
    while (out.index_caught_up_s.is_none() || out.feed_caught_up_s.is_none()) && waiting.elapsed() < CATCH_UP_MAX {
        let m = scrape(addr).await?;
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        let durable = get("zaiko_wal_durable_lsn");
        if out.index_caught_up_s.is_none() && get("zaiko_index_skus_lag_records") == 0.0 && get("zaiko_index_shipments_lag_records") == 0.0
        {
            out.index_caught_up_s = Some(started.elapsed().as_secs_f64());
        }
        if out.feed_caught_up_s.is_none() && get("zaiko_feed_covered_lsn") >= durable {
            out.feed_caught_up_s = Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(out)
}

fn print_phases(what: &str, p: &Phases) {
    let list: Vec<String> = p.server.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
    println!(
        "  {what} by phase (s): {}; index caught up at {:?} s, feed at {:?} s",
        list.join(", "),
        p.index_caught_up_s.map(|s| (s * 100.0).round() / 100.0),
        p.feed_caught_up_s.map(|s| (s * 100.0).round() / 100.0)
    );
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// RSS of the server at rest: once the search index has caught up with the journal
/// (a bulk step leaves a backlog of documents to index, held in memory until then),
/// and [`SETTLE`] after that.
async fn settled_rss(t: &Target) -> anyhow::Result<u64> {
    let started = std::time::Instant::now();
    loop {
        let lag = scrape(&t.addr).await?.get("zaiko_index_skus_lag_records").copied().unwrap_or(0.0);
        if lag == 0.0 {
            break;
        }
        if started.elapsed() > INDEX_CATCH_UP_MAX {
            eprintln!("capacity: the index is still {lag} records behind after {INDEX_CATCH_UP_MAX:?}; reading RSS anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(SETTLE).await;
    t.rss_bytes().context("no RSS for the server (needs --spawn or --server-pid)")
}

/// `zaiko-bench capacity`.
pub async fn run(mut a: CapacityArgs) -> anyhow::Result<bool> {
    if a.quick {
        (a.skus, a.records) = (100_000, 500_000);
    }
    anyhow::ensure!(a.target.spawn, "capacity needs --spawn: it restarts the server to time recovery");
    anyhow::ensure!(a.brands > 0 && a.skus >= a.brands, "--skus must be at least --brands");
    if !a.target.serve_args.iter().any(|s| s.contains("snapshot-every")) {
        // Recovery must replay the whole WAL; a snapshot is measured separately at the end.
        a.target.serve_args.extend(["--snapshot-every-records=0".to_string(), "--snapshot-every-minutes=0".to_string()]);
    }
    let mut target = Target::open(&a.target).await?;
    let mut rep = CapacityReport { machine: Some(super::machine()), brands: a.brands, locations: a.locations, ..Default::default() };
    rep.rss_empty_bytes = settled_rss(&target).await?;
    let fx = load(&a, &target, &mut rep).await?;
    topup(&a, &fx, &mut rep).await?;
    rep.rss_after_records_bytes = settled_rss(&target).await?;
    rep.rss_after_records_file_bytes = target.rss_file_bytes().unwrap_or(0);
    let m = scrape(&target.addr).await?;
    rep.heap_after_records_allocated_bytes = m.get("zaiko_heap_allocated_bytes").map(|v| *v as u64);
    rep.heap_after_records_resident_bytes = m.get("zaiko_heap_resident_bytes").map(|v| *v as u64);
    rep.wal_records = m.get("zaiko_wal_durable_lsn").copied().unwrap_or(0.0) as u64;
    rep.wal_bytes_written = m.get("zaiko_wal_bytes_total").copied().unwrap_or(0.0) as u64;
    restart(&mut target, &mut rep).await?;
    print(&rep);
    let dir = target.spawned_mut()?.data_dir.clone();
    target.spawned_mut()?.stop()?;
    if a.replay_profile {
        let warm = replay::profile(&dir, false)?;
        replay::print(&warm);
        let cold = replay::profile(&dir, true)?;
        replay::print(&cold);
        (rep.replay_warm, rep.replay_cold) = (Some(warm), Some(cold));
    }
    from_snapshot(&mut target, &mut rep).await?;
    let out = a.out.clone().unwrap_or_else(|| super::default_out("capacity"));
    super::report::write_json(&out, &rep)?;
    println!("results: {}", out.display());
    Ok(true)
}

/// Creates the brands, SKUs and stock, reading RSS after each step.
async fn load(a: &CapacityArgs, target: &Target, rep: &mut CapacityReport) -> anyhow::Result<Arc<Fixture>> {
    let spec = FixtureSpec {
        brand_prefix: format!("cap-{:04x}", rand::random::<u16>()),
        brands: a.brands,
        skus_per_brand: a.skus / a.brands,
        locations: super::location_ids(a.locations),
        on_hand_initial: 100,
        concurrency: a.connections,
    };
    let fx = Arc::new(fixture::create_brands(&target.addr, &target.admin_token, &spec).await?);
    rep.skus = fx.total_skus();
    let took = fixture::load_skus(&fx, a.connections).await?;
    rep.sku_puts_per_s = rep.skus as f64 / took.as_secs_f64();
    eprintln!("capacity: {} SKUs in {:.1} s ({:.0}/s)", rep.skus, took.as_secs_f64(), rep.sku_puts_per_s);
    rep.rss_catalog_bytes = settled_rss(target).await?;
    let took = fixture::set_stock(&fx, spec.on_hand_initial, a.connections, &spec.brand_prefix).await?;
    rep.stock_set_s = took.as_secs_f64();
    eprintln!("capacity: stock at {} locations set in {:.1} s", a.locations, rep.stock_set_s);
    rep.rss_stocked_bytes = settled_rss(target).await?;
    rep.rss_stocked_file_bytes = target.rss_file_bytes().unwrap_or(0);
    let m = scrape(&target.addr).await?;
    let heap = |name: &str| m.get(name).map(|v| *v as u64);
    rep.heap_stocked_allocated_bytes = heap("zaiko_heap_allocated_bytes");
    rep.heap_stocked_active_bytes = heap("zaiko_heap_active_bytes");
    rep.heap_stocked_resident_bytes = heap("zaiko_heap_resident_bytes");
    let per_sku = |rss: u64| (rss as f64 - rep.rss_empty_bytes as f64) / rep.skus as f64;
    (rep.bytes_per_sku, rep.catalog_bytes_per_sku) = (per_sku(rep.rss_stocked_bytes), per_sku(rep.rss_catalog_bytes));
    Ok(fx)
}

/// Single-change requests (each with its Idempotency-Key, as clients send them) until
/// the WAL holds `a.records` records.
async fn topup(a: &CapacityArgs, fx: &Arc<Fixture>, rep: &mut CapacityReport) -> anyhow::Result<()> {
    let lsn = scrape(&fx.addr).await?.get("zaiko_wal_durable_lsn").copied().unwrap_or(0.0) as u64;
    let count = a.records.saturating_sub(lsn) as usize;
    let make_fx = fx.clone();
    let tag = format!("cap{:08x}", rand::random::<u32>());
    let make = move |i: usize, out: &mut Vec<u8>| {
        let total = make_fx.total_skus();
        // Walk SKUs with a stride coprime to nothing in particular: spread, repeatable.
        let g = (i.wrapping_mul(7919)) % total;
        let (b, s) = (g / make_fx.skus_per_brand, g % make_fx.skus_per_brand);
        let loc = &make_fx.locations[i % make_fx.locations.len()];
        let brand = &make_fx.brands[b];
        let body =
            format!(r#"{{"changes":[{{"sku":"{}","location":"{loc}","op":"adjust","delta":1,"reason":"入荷"}}]}}"#, Fixture::sku_id(s));
        let (auth, key) = (format!("Bearer {}", brand.token), format!("{tag}-{i}"));
        let headers = [("Authorization", auth.as_str()), ("Idempotency-Key", key.as_str())];
        write_request(out, "POST", &format!("/v1/brands/{}/stock/changes", brand.id), &make_fx.addr, &headers, body.as_bytes());
    };
    let check = |_: usize, status: u16, body: &[u8]| {
        anyhow::ensure!(status == 200, "single change: status {status} ({})", String::from_utf8_lossy(body));
        Ok(())
    };
    let took = bulk(&fx.addr, a.connections, count, "records", make, check).await?;
    rep.topup_requests = count as u64;
    rep.topup_requests_per_s = count as f64 / took.as_secs_f64().max(1e-9);
    eprintln!("capacity: {count} single changes in {:.1} s ({:.0}/s)", took.as_secs_f64(), rep.topup_requests_per_s);
    Ok(())
}

/// Builds a snapshot of the stopped data dir offline, then times a restart from it.
async fn from_snapshot(target: &mut Target, rep: &mut CapacityReport) -> anyhow::Result<()> {
    let (dir, server_bin) = {
        let spawned = target.spawned_mut()?;
        (spawned.data_dir.clone(), spawned.server_bin().to_path_buf())
    };
    let started = std::time::Instant::now();
    // The server binary's own offline command, as an operator would run it.
    let mut create = std::process::Command::new(&server_bin);
    create.args(["snapshot", "create", "--data-dir"]).arg(&dir).stdin(std::process::Stdio::null());
    let status = tokio::task::spawn_blocking(move || create.status())
        .await?
        .with_context(|| format!("cannot run {} snapshot create", server_bin.display()))?;
    anyhow::ensure!(status.success(), "zaiko snapshot create failed ({status})");
    rep.snapshot_create_s = Some(started.elapsed().as_secs_f64());
    rep.snapshot_bytes = zaiko::snapshot::list(&dir).ok().and_then(|l| l.last().map(|i| i.bytes));
    let spawned = target.spawned_mut()?;
    spawned.restart()?;
    let (addr, started) = (spawned.addr.clone(), spawned.started);
    wait_ready(&addr, Duration::from_secs(1800)).await?;
    rep.ready_from_snapshot_s = Some(started.elapsed().as_secs_f64());
    rep.from_snapshot_phases = phases(&addr, started).await?;
    target.follow_restart();
    rep.rss_from_snapshot_bytes = Some(settled_rss(target).await?);
    target.spawned_mut()?.stop()?;
    println!(
        "  snapshot: built offline in {:.1} s, {:.0} MiB; restart from it ready after {:.2} s, RSS {:.0} MiB",
        rep.snapshot_create_s.unwrap_or(0.0),
        mib(rep.snapshot_bytes.unwrap_or(0)),
        rep.ready_from_snapshot_s.unwrap_or(0.0),
        mib(rep.rss_from_snapshot_bytes.unwrap_or(0))
    );
    print_phases("restart from the offline snapshot", &rep.from_snapshot_phases);
    Ok(())
}

/// Graceful stop, then a timed restart on the same data dir.
async fn restart(target: &mut Target, rep: &mut CapacityReport) -> anyhow::Result<()> {
    let spawned = target.spawned_mut()?;
    rep.shutdown_s = spawned.stop()?.as_secs_f64();
    rep.wal_file_bytes = std::fs::read_dir(spawned.data_dir.join("wal"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    spawned.restart()?;
    rep.listening_s = spawned.started.elapsed().as_secs_f64();
    let (addr, started) = (spawned.addr.clone(), spawned.started);
    wait_ready(&addr, Duration::from_secs(1800)).await?;
    rep.ready_s = started.elapsed().as_secs_f64();
    rep.restart_phases = phases(&addr, started).await?;
    target.follow_restart();
    rep.rss_recovered_bytes = settled_rss(target).await?;
    rep.heap_recovered_allocated_bytes = scrape(&target.addr).await?.get("zaiko_heap_allocated_bytes").map(|v| *v as u64);
    rep.recovered_bytes_per_sku = (rep.rss_recovered_bytes as f64 - rep.rss_empty_bytes as f64) / rep.skus as f64;
    let log = std::fs::read_to_string(target.spawned_mut()?.data_dir.join("server.log")).unwrap_or_default();
    rep.server_replay_ms = replay_ms_from_log(&log);
    Ok(())
}

/// Removes ANSI escape sequences (`ESC [ ... letter`): the server colours its log.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `elapsed_ms` of the last "recovered state from the journal" log line.
fn replay_ms_from_log(log: &str) -> Option<u64> {
    let line = strip_ansi(log.lines().rev().find(|l| l.contains("recovered state from the journal"))?);
    let at = line.find("elapsed_ms=")? + "elapsed_ms=".len();
    let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn print(r: &CapacityReport) {
    println!("capacity: {} SKUs over {} brands, {} locations each", r.skus, r.brands, r.locations);
    println!(
        "  RSS empty {:.1} MiB, +catalog {:.1} MiB, +stock {:.1} MiB, +records {:.1} MiB, after restart {:.1} MiB",
        mib(r.rss_empty_bytes),
        mib(r.rss_catalog_bytes),
        mib(r.rss_stocked_bytes),
        mib(r.rss_after_records_bytes),
        mib(r.rss_recovered_bytes)
    );
    println!(
        "  bytes per SKU: {:.0} (catalog only {:.0}; after restart, records included, {:.0}); of the stocked RSS, {:.1} MiB are file-backed (the binary's code, the mapped index segments)",
        r.bytes_per_sku,
        r.catalog_bytes_per_sku,
        r.recovered_bytes_per_sku,
        mib(r.rss_stocked_file_bytes)
    );
    if let (Some(a), Some(c), Some(res)) = (r.heap_stocked_allocated_bytes, r.heap_stocked_active_bytes, r.heap_stocked_resident_bytes) {
        println!(
            "  heap at the stocked point (the allocator's account): {:.1} MiB allocated, {:.1} MiB in pages in use, {:.1} MiB resident",
            mib(a),
            mib(c),
            mib(res)
        );
    }
    if let (Some(a), Some(res)) = (r.heap_after_records_allocated_bytes, r.heap_after_records_resident_bytes) {
        println!(
            "  after the records: {:.1} MiB of the RSS file-backed; heap {:.1} MiB allocated, {:.1} MiB resident; after the restart {:.1} MiB allocated",
            mib(r.rss_after_records_file_bytes),
            mib(a),
            mib(res),
            mib(r.heap_recovered_allocated_bytes.unwrap_or(0))
        );
    }
    println!("  SKU PUTs {:.0}/s; top-up single changes {:.0}/s ({} requests)", r.sku_puts_per_s, r.topup_requests_per_s, r.topup_requests);
    println!(
        "  WAL: {} records, {:.0} MiB written, {:.0} MiB of segment files",
        r.wal_records,
        mib(r.wal_bytes_written),
        mib(r.wal_file_bytes)
    );
    println!(
        "  shutdown {:.2} s; restart: listening after {:.2} s, ready after {:.2} s (server says replay took {:?} ms)",
        r.shutdown_s, r.listening_s, r.ready_s, r.server_replay_ms
    );
    print_phases("first restart (newest scheduled snapshot, if any, + the journal after it)", &r.restart_phases);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_time_is_read_from_the_log() {
        let log =
            "2026 INFO zaiko::app: recovered state from the journal records=12 last_lsn=12 brands=1 elapsed_ms=4321\n2026 INFO ready\n";
        assert_eq!(replay_ms_from_log(log), Some(4321));
        let coloured = "\u{1b}[32m INFO\u{1b}[0m recovered state from the journal \u{1b}[3melapsed_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m5600\n";
        assert_eq!(replay_ms_from_log(coloured), Some(5600));
        assert_eq!(replay_ms_from_log("nothing"), None);
    }
}
