//! Where recovery time goes, measured offline on a stopped data dir with the same
//! steps as `journal::open` + `app::recover`, each timed on its own: reading the
//! segment files, scanning them (framing + CRC), decoding the payloads (bincode) and
//! applying the records to fresh state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use crate::actors::shard::apply_brand_record;
use crate::domain::event::{self, Event, WalRecord};
use crate::domain::registry::Registry;
use crate::journal::format;

/// The time of each step, in seconds, and what was replayed.
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
    pub read_s: f64,
    pub scan_s: f64,
    pub decode_s: f64,
    pub apply_s: f64,
    pub total_s: f64,
    pub skus: u64,
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
    let started = Instant::now();
    let paths = segments(&data_dir.join("wal"))?;
    let mut p = ReplayProfile { cold, segments: paths.len(), ..Default::default() };
    let mut registry = Registry::default();
    let mut brands = HashMap::new();
    for (i, path) in paths.iter().enumerate() {
        if cold {
            evict(path)?;
        }
        let t = Instant::now();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        p.read_s += t.elapsed().as_secs_f64();
        p.file_bytes += bytes.len() as u64;
        let t = Instant::now();
        let scan = format::scan(&bytes, i + 1 == paths.len()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        p.scan_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut decoded = Vec::with_capacity(scan.frames.len());
        for f in &scan.frames {
            let payload = &bytes[f.payload_start..f.payload_start + f.payload_len];
            p.payload_bytes += payload.len() as u64;
            decoded.push((f.lsn, event::decode(payload).map_err(|e| anyhow::anyhow!("lsn {}: {e}", f.lsn))?));
        }
        p.decode_s += t.elapsed().as_secs_f64();
        for (_, r) in &decoded {
            *p.records_by_kind.entry(kind(r).to_string()).or_default() += 1;
            let idem = match r {
                WalRecord::Brand(b) => b.idempotency.as_ref(),
                WalRecord::Registry(r) => r.idempotency.as_ref(),
            };
            p.idempotency_body_bytes += idem.map_or(0, |w| w.body.len() as u64);
        }
        let t = Instant::now();
        for (lsn, r) in &decoded {
            match r {
                WalRecord::Registry(r) => registry.apply(*lsn, r),
                WalRecord::Brand(b) => apply_brand_record(&mut brands, *lsn, b),
            }
            .map_err(|e| anyhow::anyhow!("lsn {lsn}: {e}"))?;
        }
        p.apply_s += t.elapsed().as_secs_f64();
        p.records += decoded.len() as u64;
    }
    p.skus = brands.values().map(|b| b.skus.len() as u64).sum();
    p.total_s = started.elapsed().as_secs_f64();
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
    let pct = |s: f64| 100.0 * s / p.total_s.max(1e-9);
    for (step, s) in [("read", p.read_s), ("scan+crc", p.scan_s), ("decode", p.decode_s), ("apply", p.apply_s)] {
        println!("  {step:<9} {s:>8.2} s  {:>5.1} %", pct(s));
    }
    println!("  total     {:>8.2} s", p.total_s);
}

/// `zaiko bench replay-profile`.
pub fn main(a: &super::args::ReplayProfileArgs) -> anyhow::Result<bool> {
    let p = profile(&a.data_dir, a.cold)?;
    print(&p);
    Ok(true)
}
