//! Offline commands (no server): `wal verify|repair`, `snapshot create|list|restore`,
//! `index rebuild`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use tantivy::TantivyDocument;

use crate::app::{self, DataDir};
use crate::domain::view::ShipmentSummary;
use crate::index::shipments::schema::shipment_doc;
use crate::index::{self, schema};
use crate::journal::history::{self, History};
use crate::journal::{self, JournalConfig};

/// Refuses a `--data-dir` that is missing or holds no zaiko data (neither a journal
/// nor, for the snapshot commands, snapshots): a mistyped path must not look like an
/// empty, healthy journal.
fn require_data_dir(data_dir: &Path, snapshots_suffice: bool) -> Result<(), String> {
    if !data_dir.is_dir() {
        return Err(format!("{} does not exist; pass the server's --data-dir", data_dir.display()));
    }
    let found = DataDir::new(data_dir).wal().is_dir() || (snapshots_suffice && crate::snapshot::dir(data_dir).is_dir());
    if !found {
        let what = if snapshots_suffice { "no wal/ or snapshots/" } else { "no wal/" };
        return Err(format!("{} is not a zaiko data dir ({what} in it); pass the server's --data-dir", data_dir.display()));
    }
    Ok(())
}

/// `zaiko wal verify`: prints every segment and where any damage is.
pub fn wal_verify(data_dir: &Path) -> ExitCode {
    if let Err(e) = require_data_dir(data_dir, false) {
        eprintln!("zaiko: {e}");
        return ExitCode::from(2);
    }
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
    // An unreadable history stops the start as damage does.
    let history_ok = match history::load(&dir) {
        Ok(Some(h)) => {
            println!("history: {} ({}, records after lsn {})", h.id, h.cause.as_str(), h.after_lsn);
            true
        }
        Ok(None) => {
            println!("history: none yet (the next start begins one)");
            true
        }
        Err(e) => {
            println!("history: {e}");
            false
        }
    };
    if let Some((path, offset)) = &report.torn_tail {
        println!("torn tail: {} at byte {offset} (a crash during a write; the next start cuts it)", path.display());
    }
    match report.corruption {
        Some(e) => {
            println!("CORRUPT: {e}");
            ExitCode::from(1)
        }
        None if history_ok => {
            println!("ok");
            ExitCode::SUCCESS
        }
        None => ExitCode::from(1),
    }
}

/// `zaiko wal repair`: cuts the journal at the first damage, keeping copies of what is cut.
pub fn wal_repair(data_dir: &Path, accept_data_loss: bool) -> ExitCode {
    if let Err(e) = require_data_dir(data_dir, false) {
        return fail(e);
    }
    let _lock = match crate::app::lock_data_dir(data_dir) {
        Ok(l) => l,
        Err(e) => return fail(format!("{e:#}; stop the server first")),
    };
    let wal = DataDir::new(data_dir).wal();
    let report = match journal::verify(&wal) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let Some(journal::JournalError::Corrupt { path, offset, detail }) = report.corruption else {
        println!("the journal has no damage; nothing to repair");
        return ExitCode::SUCCESS;
    };
    let kept_through = report.last_lsn;
    println!("damage: {} at byte {offset}: {detail}", path.display());
    println!("records through lsn {kept_through} are intact; everything from the damage on would be cut");
    if !accept_data_loss {
        return fail("not changing anything: run again with --accept-data-loss to cut the journal there");
    }
    // The new history is written before the cut: LSNs after the cut will hold other
    // records, and a cut journal must never be followed under the old history. A crash
    // between the two leaves the damage in place, and a second repair forks again.
    let parent = match history::load(&wal) {
        Ok(h) => h.map(|h| h.id),
        Err(e) => return fail(e),
    };
    let forked = History::fork(kept_through, parent, history::Cause::Repair);
    if let Err(e) = history::save(&wal, &forked) {
        return fail(format!("cannot write the new history: {e}; nothing was cut"));
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let quarantine = wal.join(format!("quarantine-{stamp}"));
    let result = (|| -> std::io::Result<usize> {
        std::fs::create_dir_all(&quarantine)?;
        std::fs::copy(&path, quarantine.join(path.file_name().expect("segment name")))?;
        let mut moved = 0;
        for entry in std::fs::read_dir(&wal)? {
            let p = entry?.path();
            let later = p.extension().is_some_and(|x| x == "wal") && p.file_name() > path.file_name();
            if later {
                std::fs::rename(&p, quarantine.join(p.file_name().expect("segment name")))?;
                moved += 1;
            }
        }
        // A damaged header makes the whole segment unusable.
        if offset < crate::journal::format::SEGMENT_HEADER_BYTES as u64 {
            std::fs::remove_file(&path)?;
        } else {
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(offset)?;
            f.sync_all()?;
        }
        std::fs::File::open(&wal)?.sync_all()?;
        Ok(moved)
    })();
    match result {
        Ok(moved) => {
            println!(
                "cut {} at byte {offset}; moved {moved} later segment(s) and a copy of the damaged one to {}",
                path.display(),
                quarantine.display()
            );
            println!("the server will start with the state through lsn {kept_through}");
            println!(
                "new history {}: feed cursors and event ids from before the repair are not valid any more \
                 (consumers get 410 cursor_history_changed and resync)",
                forked.id
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("repair failed: {e}; the copies in {} are untouched", quarantine.display())),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("zaiko: {e}");
    ExitCode::FAILURE
}

/// `zaiko snapshot create`: a snapshot of a stopped data dir at its last record.
pub fn snapshot_create(data_dir: &Path) -> ExitCode {
    if let Err(e) = require_data_dir(data_dir, false) {
        return fail(e);
    }
    let _lock = match crate::app::lock_data_dir(data_dir) {
        Ok(l) => l,
        Err(e) => return fail(format!("{e:#}; on a running server use POST /v1/admin/snapshots")),
    };
    let report = match journal::verify(&DataDir::new(data_dir).wal()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Some(e) = report.corruption {
        return fail(format!("the journal is damaged, so no snapshot can be built from it: {e}"));
    }
    let bar = ProgressBar::new_spinner().with_message(format!("building a snapshot at lsn {}", report.last_lsn));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let result = crate::snapshot::build(data_dir, report.last_lsn, crate::clock::Clock::now(&crate::clock::SystemClock));
    bar.finish_and_clear();
    match result {
        Ok(info) => {
            println!("{}  lsn {}  {} bytes  {}", info.id, info.lsn, info.bytes, info.path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `zaiko snapshot list`.
pub fn snapshot_list(data_dir: &Path) -> ExitCode {
    if let Err(e) = require_data_dir(data_dir, true) {
        return fail(e);
    }
    match crate::snapshot::list(data_dir) {
        Ok(list) => {
            println!("{:<26} {:>12} {:>14}  {:<24}  file", "id", "lsn", "bytes", "created_at");
            for i in list {
                println!("{:<26} {:>12} {:>14}  {:<24}  {}", i.id, i.lsn, i.bytes, i.created_at.to_rfc3339(), i.path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `zaiko snapshot restore`: checks the file, then copies it into an empty data dir.
pub fn snapshot_restore(from: &Path, data_dir: &Path) -> ExitCode {
    let not_empty = std::fs::read_dir(data_dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if not_empty {
        return fail(format!("{} is not empty; restore into a new, empty data dir", data_dir.display()));
    }
    let bar = ProgressBar::new_spinner().with_message(format!("checking {}", from.display()));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let checked = crate::snapshot::load(from);
    bar.finish_and_clear();
    let (state, info) = match checked {
        Ok(found) => found,
        Err(e) => return fail(e),
    };
    drop(state);
    let dir = crate::snapshot::dir(data_dir);
    let target = dir.join(from.file_name().map_or_else(|| format!("{}.sqlite", info.id).into(), |n| n.to_owned()));
    if let Err(e) = copy_with_progress(from, &target, info.bytes) {
        return fail(format!("cannot copy the snapshot: {e}"));
    }
    if let Err(e) = begin_new_history(data_dir, info.lsn) {
        let _ = std::fs::remove_file(&target);
        return fail(e);
    }
    println!("restored {} (lsn {}) into {}", info.id, info.lsn, data_dir.display());
    restored_notes(data_dir);
    ExitCode::SUCCESS
}

/// The journal will go on from the snapshot's LSN with records the old server never
/// had: a new history, so no cursor or event id of the old one is taken for them.
fn begin_new_history(data_dir: &Path, lsn: crate::journal::Lsn) -> Result<History, String> {
    let wal = DataDir::new(data_dir).wal();
    let forked = History::fork(lsn, None, history::Cause::Restore);
    history::save(&wal, &forked)
        .map_err(|e| format!("cannot write the new history: {e}; empty {} and restore again", data_dir.display()))?;
    Ok(forked)
}

fn restored_notes(data_dir: &Path) {
    println!(
        "a new history begins: feed cursors, event ids and webhook ids of the old server are not valid here \
         (consumers get 410 cursor_history_changed and resync)"
    );
    println!(
        "start it with: zaiko serve --data-dir {} --admin-token <the old server's>: a configured admin token is not in the snapshot",
        data_dir.display()
    );
}

/// Connects to a cluster's JetStream for the snapshot commands (nothing is created).
fn cluster_snapshots(urls: &str) -> Result<(tokio::runtime::Runtime, crate::cluster::snapshots::Snapshots), String> {
    use crate::cluster::engine::{JOURNAL_STREAM, SNAPSHOTS_BUCKET};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let scratch = std::env::temp_dir().join(format!("zaiko-restore-{}", std::process::id()));
    let snapshots = rt.block_on(async {
        let addrs = urls
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--cluster: {e}"))?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(std::time::Duration::from_secs(5))
            .connect(addrs.as_slice())
            .await
            .map_err(|e| format!("cannot connect to NATS at {urls}: {e}"))?;
        let js = async_nats::jetstream::new(client);
        let store = js.get_object_store(SNAPSHOTS_BUCKET).await.map_err(|e| format!("the cluster has no snapshot bucket ({e})"))?;
        let journal = js.get_stream(JOURNAL_STREAM).await.map_err(|e| format!("the cluster has no journal stream ({e})"))?;
        Ok::<_, String>(crate::cluster::snapshots::Snapshots::new(store, journal, scratch))
    })?;
    Ok((rt, snapshots))
}

/// `zaiko snapshot list --cluster`.
pub fn cluster_snapshot_list(urls: &str) -> ExitCode {
    let listed = cluster_snapshots(urls).and_then(|(rt, s)| rt.block_on(s.list()));
    match listed {
        Ok(list) => {
            println!("{:<10} {:>12} {:>12} {:>14}  {:<26}  id", "partition", "seq", "lsn", "bytes", "created_at");
            for s in list {
                println!(
                    "{:<10} {:>12} {:>12} {:>14}  {:<26}  {}",
                    s.partition,
                    s.seq,
                    s.lsn,
                    s.bytes,
                    s.created_at.as_deref().unwrap_or("-"),
                    s.id
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `zaiko snapshot restore --cluster`: every partition's newest snapshot, each checked
/// against its digest, merged into one snapshot of an empty single-node data dir.
pub fn cluster_snapshot_restore(urls: &str, data_dir: &Path) -> ExitCode {
    let not_empty = std::fs::read_dir(data_dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if not_empty {
        return fail(format!("{} is not empty; restore into a new, empty data dir", data_dir.display()));
    }
    let merged = cluster_snapshots(urls).and_then(|(rt, s)| rt.block_on(s.merged()));
    let (state, parts) = match merged {
        Ok(found) if !found.1.is_empty() => found,
        Ok(_) => return fail("the cluster has no snapshots; take one with POST /v1/admin/snapshots"),
        Err(e) => return fail(e),
    };
    let info = match crate::snapshot::write(data_dir, &state, crate::clock::Clock::now(&crate::clock::SystemClock)) {
        Ok(info) => info,
        Err(e) => return fail(format!("cannot write the snapshot: {e}")),
    };
    if let Err(e) = begin_new_history(data_dir, info.lsn) {
        let _ = std::fs::remove_file(&info.path);
        return fail(e);
    }
    for p in &parts {
        println!("partition {:<9} seq {:>10} lsn {:>10}  {}", p.partition, p.seq, p.lsn, p.id);
    }
    println!("restored {} partition snapshots ({} brands) into {} as {}", parts.len(), state.brands.len(), data_dir.display(), info.id);
    restored_notes(data_dir);
    ExitCode::SUCCESS
}

fn copy_with_progress(from: &Path, to: &Path, bytes: u64) -> std::io::Result<()> {
    use std::io::{Read, Write};
    std::fs::create_dir_all(to.parent().expect("a directory"))?;
    let tmp = to.with_extension("tmp");
    let bar = ProgressBar::new(bytes);
    bar.set_style(ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}").expect("template"));
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::File::create(&tmp)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
        bar.inc(n as u64);
    }
    dst.sync_all()?;
    std::fs::rename(&tmp, to)?;
    std::fs::File::open(to.parent().expect("a directory"))?.sync_all()?;
    bar.finish_and_clear();
    Ok(())
}

/// `zaiko index rebuild`: recovers the state from the journal, builds the SKU and the
/// shipment index beside the old ones with a progress bar, commits each at the
/// journal's last LSN, then puts it in place. A crash midway leaves, per kind, either
/// index or none; a server started on a data dir without one rebuilds it itself.
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
    let brands = &recovered.state.brands;
    let skus: usize = brands.values().map(|b| b.skus.len()).sum();
    let shipments: usize = brands.values().map(|b| b.shipments.len()).sum();
    eprintln!("recovered {} brands, {skus} SKUs, {shipments} shipments at lsn {lsn} in {:.1?}", brands.len(), started.elapsed());

    let n = build_beside(&dir.sku_index(), index::SKUS, skus, lsn, |fields| {
        brands.values().flat_map(move |b| {
            b.skus.iter().map(move |(sku, s)| schema::sku_doc(&fields, &b.id, &b.name, sku, s, &b.channel_view(&s.levels)))
        })
    })?;
    println!("indexed {n} SKUs at lsn {lsn} into {} in {:.1?}", dir.sku_index().display(), started.elapsed());
    let n = build_beside(&dir.shipment_index(), index::SHIPMENTS, shipments, lsn, |fields| {
        brands.values().flat_map(move |b| b.shipments.values().map(move |s| shipment_doc(&fields, &b.id, &ShipmentSummary::from(s))))
    })?;
    println!("indexed {n} shipments at lsn {lsn} into {} in {:.1?}", dir.shipment_index().display(), started.elapsed());
    Ok(())
}

/// Builds an index of `kind` from `docs` in a directory beside `target`, then moves
/// it in place of `target`. Returns the number of documents.
fn build_beside<F: Copy, I: Iterator<Item = TantivyDocument>>(
    target: &Path,
    kind: index::Kind<F>,
    total: usize,
    lsn: journal::Lsn,
    docs: impl FnOnce(F) -> I,
) -> anyhow::Result<u64> {
    let building = target.with_extension("rebuild");
    let opened = index::recreate_kind(&building, kind)?;
    let fields = opened.fields;
    let bar = ProgressBar::new(total as u64);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {}  {{per_sec}}  eta {{eta}}", kind.name);
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let n = index::bulk_build(&opened, threads, docs(fields), lsn, |n| bar.set_position(n))?;
    bar.finish();
    drop(opened);
    if target.exists() {
        std::fs::remove_dir_all(target).with_context(|| format!("cannot remove the old index {}", target.display()))?;
    }
    std::fs::rename(&building, target).with_context(|| format!("cannot move the new index to {}", target.display()))?;
    Ok(n)
}
