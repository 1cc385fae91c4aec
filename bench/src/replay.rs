//! Where recovery time goes, measured offline on a stopped data dir with the same
//! steps as the server's `journal::open` + `app::recover`, each timed on its own:
//! reading the segment files, scanning them (framing + CRC), decoding the payloads
//! (bincode) and applying the records to fresh state.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use zaiko::domain::event::{self, Event, WalRecord};
use zaiko::journal::format;
use zaiko::procfs::{self, Process};
use zaiko::state::State;

/// CPU time of the calling thread in nanoseconds (`/proc/thread-self/schedstat`):
/// unlike wall time, it does not count the time other processes held the CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// A step's wall and CPU time, accumulated.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StepTime {
    pub wall_s: f64,
    pub cpu_s: f64,
}

struct Timer(Instant, u64);

impl Timer {
    fn start() -> Timer {
        Timer(Instant::now(), thread_cpu_ns())
    }

    fn add_to(self, step: &mut StepTime) {
        step.wall_s += self.0.elapsed().as_secs_f64();
        step.cpu_s += thread_cpu_ns().saturating_sub(self.1) as f64 / 1e9;
    }
}

/// The time of each step, and what was replayed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayProfile {
    pub cold: bool,
    pub segments: usize,
    pub records: u64,
    /// Bytes of the segment files (preallocated, so mostly their full size).
    pub file_bytes: u64,
    pub payload_bytes: u64,
    /// Bytes of stored idempotency responses inside the payloads.
    pub idempotency_body_bytes: u64,
    pub records_by_kind: std::collections::BTreeMap<String, u64>,
    pub read: StepTime,
    pub scan: StepTime,
    pub decode: StepTime,
    pub apply: StepTime,
    /// Dropping the decoded records (the server drops each after applying it).
    pub drop: StepTime,
    pub total: StepTime,
    pub skus: u64,
    /// Idempotency outcomes held in memory after replay, and the bytes their bodies take
    /// there (packed, `domain::idempotency::Body`).
    pub idempotency_entries: u64,
    pub idempotency_live_body_bytes: u64,
    /// Growth of this process's RSS over the replay once the buffers are freed and
    /// returned (`malloc_trim`): the state without a server around it.
    pub state_rss_bytes: u64,
    /// The part of it that the idempotency stores hold (RSS drop once they are cleared).
    pub idempotency_rss_bytes: u64,
    /// What the idempotency stores hold by their own count (slots, keys and answers,
    /// hash table), independent of the allocator.
    pub idempotency_heap_bytes: u64,
}

/// Returns freed heap memory to the OS so that RSS shows what is still allocated:
/// jemalloc's (the server's allocator) and glibc's (where a test runs this).
fn trim_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim takes no pointers and only releases free memory.
    unsafe {
        malloc_trim(0);
    }
    // `arena.<MALLCTL_ARENAS_ALL>.purge`: jemalloc gives back every arena's unused
    // dirty pages now, instead of over its decay time (10 s).
    #[cfg(not(target_env = "msvc"))]
    // SAFETY: a NUL-terminated name, and no old or new value to read or write.
    unsafe {
        tikv_jemalloc_sys::mallctl(c"arena.4096.purge".as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), 0);
    }
}

fn own_rss_bytes() -> u64 {
    procfs::rss_bytes(Process::Current).unwrap_or(0)
}

fn segments(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    out.sort();
    Ok(out)
}

/// Drops a file's clean pages from the page cache, so the next read comes from disk.
fn evict(path: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(path)?;
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).context("posix_fadvise")?;
    Ok(())
}

fn kind(record: &WalRecord) -> &'static str {
    match record {
        WalRecord::Registry(_) => "registry",
        WalRecord::Brand(b) => match (b.events.first(), b.events.len()) {
            (Some(Event::StockChanged { .. }), 1) => "stock-change-1",
            (Some(Event::StockChanged { .. }), _) => "stock-change-batch",
            (Some(Event::SkuUpserted { .. }), _) => "sku-upsert",
            (Some(e), _) => e.type_name(),
            (None, _) => "brand-empty",
        },
    }
}

/// Replays the journal of `data_dir` into fresh state, timing each step.
pub fn profile(data_dir: &Path, cold: bool) -> anyhow::Result<ReplayProfile> {
    let started = Timer::start();
    let rss_before = own_rss_bytes();
    let paths = segments(&data_dir.join("wal"))?;
    if let Some(first) = paths.first() {
        let name = first.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
        anyhow::ensure!(
            name.parse::<u64>() == Ok(1),
            "the journal of {} starts at lsn {name}: earlier segments were removed after a snapshot, so it cannot be replayed from empty",
            data_dir.display()
        );
    }
    let mut p = ReplayProfile { cold, segments: paths.len(), ..Default::default() };
    let mut state = State::default();
    for (i, path) in paths.iter().enumerate() {
        if cold {
            evict(path)?;
        }
        let t = Timer::start();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        t.add_to(&mut p.read);
        p.file_bytes += bytes.len() as u64;
        let t = Timer::start();
        let scan = format::scan(&bytes, i + 1 == paths.len()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        t.add_to(&mut p.scan);
        let t = Timer::start();
        let mut decoded = Vec::with_capacity(scan.frames.len());
        for f in &scan.frames {
            let payload = &bytes[f.payload_start..f.payload_start + f.payload_len];
            p.payload_bytes += payload.len() as u64;
            decoded.push((f.lsn, event::decode(payload).map_err(|e| anyhow::anyhow!("lsn {}: {e}", f.lsn))?));
        }
        t.add_to(&mut p.decode);
        for (_, r) in &decoded {
            *p.records_by_kind.entry(kind(r).to_string()).or_default() += 1;
            let idem = match r {
                WalRecord::Brand(b) => b.idempotency.as_ref(),
                WalRecord::Registry(r) => r.idempotency.as_ref(),
            };
            p.idempotency_body_bytes += idem.map_or(0, |w| w.body.len() as u64);
        }
        let t = Timer::start();
        for (lsn, r) in &decoded {
            state.apply_record(*lsn, r).map_err(|e| anyhow::anyhow!("lsn {lsn}: {e}"))?;
        }
        t.add_to(&mut p.apply);
        p.records += decoded.len() as u64;
        let t = Timer::start();
        drop(decoded);
        t.add_to(&mut p.drop);
    }
    started.add_to(&mut p.total);
    trim_heap();
    p.state_rss_bytes = own_rss_bytes().saturating_sub(rss_before);
    p.skus = state.brands.values().map(|b| b.skus.len() as u64).sum();
    for b in state.brands.values_mut() {
        p.idempotency_entries += b.idempotency.len() as u64;
        p.idempotency_live_body_bytes += b.idempotency.iter().map(|(_, e)| e.body.stored_len() as u64).sum::<u64>();
        p.idempotency_heap_bytes += b.idempotency.heap_bytes() as u64;
        b.idempotency = Default::default();
    }
    trim_heap();
    p.idempotency_rss_bytes = (rss_before + p.state_rss_bytes).saturating_sub(own_rss_bytes());
    Ok(p)
}

pub fn print(p: &ReplayProfile) {
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "replay ({}): {} segments, {} records, {} SKUs; files {:.0} MiB, payloads {:.0} MiB (idempotency bodies {:.0} MiB)",
        if p.cold { "cold cache" } else { "warm cache" },
        p.segments,
        p.records,
        p.skus,
        mb(p.file_bytes),
        mb(p.payload_bytes),
        mb(p.idempotency_body_bytes)
    );
    println!("  records by kind: {:?}", p.records_by_kind);
    let pct = |s: f64| 100.0 * s / p.total.wall_s.max(1e-9);
    println!("  step        wall s  share   cpu s");
    for (step, s) in [("read", p.read), ("scan+crc", p.scan), ("decode", p.decode), ("apply", p.apply), ("drop", p.drop)] {
        println!("  {step:<9} {:>8.2} {:>5.1} % {:>7.2}", s.wall_s, pct(s.wall_s), s.cpu_s);
    }
    println!("  total     {:>8.2}         {:>7.2}", p.total.wall_s, p.total.cpu_s);
    println!(
        "  state: RSS +{:.0} MiB, of which idempotency {:.0} MiB ({} outcomes in {:.0} MiB by their own count, holding {:.0} MiB of packed bodies); the rest {:.0} B per SKU",
        mb(p.state_rss_bytes),
        mb(p.idempotency_rss_bytes),
        p.idempotency_entries,
        mb(p.idempotency_heap_bytes),
        mb(p.idempotency_live_body_bytes),
        p.state_rss_bytes.saturating_sub(p.idempotency_rss_bytes) as f64 / p.skus.max(1) as f64
    );
}

/// `zaiko-bench replay-profile`.
pub fn main(a: &super::args::ReplayProfileArgs) -> anyhow::Result<bool> {
    let p = profile(&a.data_dir, a.cold)?;
    print(&p);
    Ok(true)
}
