//! The SKU search benchmark: loads the peer's synthetic catalog into the index
//! (documents built by the server's own `sku_doc`), runs the peer's query mix with the
//! same semantics, compares hit counts and top hits with the SQLite FTS5 peer's JSON,
//! and measures freshness (write ack → visible in search) on a real server under
//! write load.
//!
//! ```sh
//! python3 bench/peers/search/gen_catalog.py --n 1000000 --seed 42 --out /tmp/cat_1m.ndjson
//! cargo bench --bench search -- --data /tmp/cat_1m.ndjson \
//!     --queries bench/peers/search/queries.txt --reps 5 \
//!     --peer-json /tmp/fts5_1m.json --json-out /tmp/tantivy_1m.json --freshness
//! ```

mod catalog;
mod freshness;
mod queries;

use std::path::PathBuf;

/// Command-line options (`--name value`).
pub struct Args {
    pub data: Option<PathBuf>,
    pub queries: Option<PathBuf>,
    pub index_dir: PathBuf,
    pub reuse: bool,
    pub reps: usize,
    pub threads: usize,
    pub json_out: Option<PathBuf>,
    pub peer_json: Option<PathBuf>,
    pub freshness: bool,
    pub probes: usize,
    /// Writer threads of the freshness load, and stock changes per request.
    pub writers: usize,
    pub changes_per_request: usize,
    /// Where the freshness server's log goes (set `ZAIKO_LOG` for its level).
    pub server_log: Option<PathBuf>,
}

const USAGE: &str = "usage: cargo bench --bench search -- [--data CATALOG.ndjson] [--queries queries.txt] \
[--index-dir DIR] [--reuse] [--reps N] [--threads N] [--json-out FILE] [--peer-json FTS5.json] [--freshness] [--probes N] [--writers N] [--changes-per-request N] [--server-log FILE]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        data: None,
        queries: None,
        index_dir: PathBuf::from("/tmp/zaiko_bench_skus"),
        reuse: false,
        reps: 5,
        threads: 2,
        json_out: None,
        peer_json: None,
        freshness: false,
        probes: 200,
        writers: 2,
        changes_per_request: 50,
        server_log: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => a.data = Some(value()?.into()),
            "--queries" => a.queries = Some(value()?.into()),
            "--index-dir" => a.index_dir = value()?.into(),
            "--reuse" => a.reuse = true,
            "--reps" => a.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--json-out" => a.json_out = Some(value()?.into()),
            "--peer-json" => a.peer_json = Some(value()?.into()),
            "--freshness" => a.freshness = true,
            "--probes" => a.probes = value()?.parse().map_err(|e| format!("--probes: {e}"))?,
            "--writers" => a.writers = value()?.parse().map_err(|e| format!("--writers: {e}"))?,
            "--changes-per-request" => a.changes_per_request = value()?.parse().map_err(|e| format!("--changes-per-request: {e}"))?,
            "--server-log" => a.server_log = Some(value()?.into()),
            "--bench" => {} // added by `cargo bench`
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

/// Percentile with linear interpolation, as the peer's `pct`.
pub fn pct(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let k = (v.len() - 1) as f64 * p / 100.0;
    let lo = k.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (v[hi] - v[lo]) * (k - lo as f64)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut report = serde_json::json!({
        "machine": machine(),
        "date": chrono::Utc::now().to_rfc3339(),
    });
    if let Some(data) = &args.data {
        let (index, load) = catalog::load_or_reuse(&args, data);
        report["load"] = load;
        if let Some(q) = &args.queries {
            report["queries"] = queries::run(&args, &index, q);
        }
    }
    if args.freshness {
        report["freshness"] = freshness::run(&args);
    }
    if let Some(out) = &args.json_out {
        std::fs::write(out, serde_json::to_vec_pretty(&report).expect("json")).expect("write --json-out");
        println!("wrote {}", out.display());
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} vCPU")
}
