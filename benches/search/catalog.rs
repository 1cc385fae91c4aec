//! The peer's catalog (NDJSON) into the index, through the server's own `sku_doc`.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{json, Value};
use tantivy::{ReloadPolicy, TantivyDocument};
use zaiko::domain::brand::SkuState;
use zaiko::domain::catalog::Catalog;
use zaiko::domain::stock::{Level, Levels};
use zaiko::domain::{BrandId, Id, Timestamp};
use zaiko::index::indexer::Wake;
use zaiko::index::{self, schema, SkuIndex};

use crate::Args;

#[derive(Deserialize)]
struct Line {
    brand: String,
    brand_name: String,
    sku: String,
    product_id: String,
    name: String,
    color: String,
    size: String,
    category: String,
    price: i64,
    tags: Vec<String>,
    on_hand: i64,
    available: i64,
}

/// The SKU as the server would hold it: one location whose reservations make
/// `available` what the catalog says; `updated_at` is the line number.
fn to_doc(fields: &schema::Fields, line: &str, n: i64) -> TantivyDocument {
    let l: Line = serde_json::from_str(line).expect("a catalog line");
    let level = Level { on_hand: l.on_hand, reserved: l.on_hand - l.available, safety_stock: 0, incoming: 0, ..Level::default() };
    let state = SkuState {
        catalog: Catalog {
            product_id: Some(l.product_id.into()),
            name: l.name.into(),
            color: Some(l.color.into()),
            size: Some(l.size.into()),
            category: Some(l.category.into()),
            price: Some(l.price),
            tags: l.tags.into_iter().map(Into::into).collect(),
            attributes: Vec::new(),
        },
        version: 1,
        stock_version: 1,
        levels: Levels(Box::new([(Id::parse("wh").unwrap(), level)])),
        created_at: Timestamp(n),
        updated_at: Timestamp(n),
    };
    let brand = BrandId::parse(&l.brand).expect("brand id");
    schema::sku_doc(fields, &brand, &l.brand_name, &Id::parse(&l.sku).expect("sku id"), &state, &[])
}

/// Loads `data` into `--index-dir` (or reuses it with `--reuse`) and opens it.
pub fn load_or_reuse(args: &Args, data: &Path) -> (SkuIndex, Value) {
    let dir = &args.index_dir;
    let mut load = json!({ "reused": true });
    let opened = match index::open_or_create(dir).expect("open index") {
        o if args.reuse && o.committed_lsn.is_some() => {
            println!("reusing index in {}", dir.display());
            o
        }
        _ => {
            let opened = index::recreate(dir).expect("create index");
            load = load_into(&opened, dir, args.threads, data);
            opened
        }
    };
    let reader = opened.index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().expect("reader");
    let search = SkuIndex::new(reader, opened.fields, tokio::sync::watch::channel(0).1, Arc::new(Wake::default()));
    (search, load)
}

fn load_into(opened: &index::Opened, dir: &Path, threads: usize, data: &Path) -> Value {
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(data).expect("open --data"));
    let fields = opened.fields;
    let started = Instant::now();
    let docs = file.lines().enumerate().map(|(n, line)| to_doc(&fields, &line.expect("read --data"), n as i64));
    let n = index::bulk_build(opened, threads, docs, 1, |n| {
        if n % 200_000 == 0 {
            println!("  {n} docs, {:.1} s", started.elapsed().as_secs_f64());
        }
    })
    .expect("bulk build");
    let secs = started.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(dir).map_or(0, |d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum());
    let segments = opened.index.searchable_segment_ids().map_or(0, |s| s.len());
    println!(
        "loaded {n} docs in {secs:.1} s ({:.0} docs/s, {threads} indexing threads), index {:.1} MiB in {segments} segments",
        n as f64 / secs,
        bytes as f64 / (1 << 20) as f64
    );
    json!({ "docs": n, "seconds": secs, "docs_per_s": n as f64 / secs, "threads": threads, "index_bytes": bytes, "segments": segments })
}
