//! Offline commands (no server): `wal verify`, `index rebuild`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{self, DataDir};
use crate::index::{self, schema};
use crate::journal::{self, JournalConfig};

/// `zaiko wal verify`: prints every segment and where any damage is.
pub fn wal_verify(data_dir: &Path) -> ExitCode {
    let dir = DataDir::new(data_dir).wal();
    let report = match journal::verify(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zaiko: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{:<60} {:>12} {:>10} {:>12}  end", "segment", "first_lsn", "records", "bytes");
    for s in &report.segments {
        println!("{:<60} {:>12} {:>10} {:>12}  {}", s.path.display(), s.first_lsn, s.records, s.data_bytes, s.end);
    }
    println!("records: {}, last lsn: {}", report.records, report.last_lsn);
    if let Some((path, offset)) = &report.torn_tail {
        println!("torn tail: {} at byte {offset} (a crash during a write; the next start cuts it)", path.display());
    }
    match report.corruption {
        Some(e) => {
            println!("CORRUPT: {e}");
            ExitCode::from(1)
        }
        None => {
            println!("ok");
            ExitCode::SUCCESS
        }
    }
}

/// `zaiko index rebuild`: recovers the state from the journal, builds the SKU index
/// beside the old one with a progress bar, commits it at the journal's last LSN, then
/// puts it in place. A crash midway leaves either index or none; a server started on
/// a data dir without one rebuilds it itself.
pub fn index_rebuild(data_dir: &Path) -> ExitCode {
    match rebuild(data_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zaiko: index rebuild failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn rebuild(data_dir: &Path) -> anyhow::Result<()> {
    let dir = DataDir::new(data_dir);
    anyhow::ensure!(dir.wal().is_dir(), "{} holds no journal (no wal/ directory)", data_dir.display());
    let _lock = app::lock_data_dir(data_dir)?;
    let started = Instant::now();
    let recovered = app::recover_dir(data_dir, JournalConfig::default(), None)?;
    recovered.journal.shutdown();
    let lsn = recovered.report.last_lsn;
    let total: usize = recovered.brands.values().map(|b| b.skus.len()).sum();
    eprintln!("recovered {} brands, {total} SKUs at lsn {lsn} in {:.1?}", recovered.brands.len(), started.elapsed());

    let target = dir.sku_index();
    let building = target.with_extension("rebuild");
    let opened = index::recreate(&building)?;
    let fields = opened.fields;
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} SKUs  {per_sec}  eta {eta}").expect("valid template").progress_chars("=> "),
    );
    let docs = recovered.brands.values().flat_map(|b| b.skus.iter().map(move |(sku, s)| schema::sku_doc(&fields, &b.id, &b.name, sku, s)));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let n = index::bulk_build(&opened, threads, docs, lsn, |n| bar.set_position(n))?;
    bar.finish();
    drop(opened);
    if target.exists() {
        std::fs::remove_dir_all(&target).with_context(|| format!("cannot remove the old index {}", target.display()))?;
    }
    std::fs::rename(&building, &target).with_context(|| format!("cannot move the new index to {}", target.display()))?;
    println!("indexed {n} SKUs at lsn {lsn} into {} in {:.1?}", target.display(), started.elapsed());
    Ok(())
}
