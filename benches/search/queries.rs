//! The peer's query mix: one request = top 20 + total + facets, timed end to end
//! (query building, collection, stored fields of the hits), single thread, warm.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};
use zaiko::domain::BrandId;
use zaiko::index::query::terms;
use zaiko::index::{SearchRequest, SearchResult, SkuIndex, Sort};

use crate::{pct, Args};

/// One line of `queries.txt`: `q<TAB>filters`.
struct Case {
    q: String,
    filters: String,
    request: SearchRequest,
    /// The peer's kind: `fts` (every term ≥ 3 chars), `like` (every term < 3),
    /// `mixed`, `filter` (no q).
    kind: &'static str,
}

fn parse_case(line: &str) -> Case {
    let (q, filters) = line.split_once('\t').unwrap_or((line, ""));
    let mut r = SearchRequest { q: q.to_string(), limit: 20, ..SearchRequest::default() };
    for pair in filters.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').expect("k=v");
        match k {
            "brand" => r.brand = Some(BrandId::parse(v).expect("brand")),
            "category" => r.category = Some(v.into()),
            "color" => r.color = Some(v.into()),
            "size" => r.size = Some(v.into()),
            "in_stock" => r.in_stock = v == "true",
            "price_min" => r.price_min = Some(v.parse().expect("price_min")),
            "price_max" => r.price_max = Some(v.parse().expect("price_max")),
            "sort" => r.sort = Sort::parse(v).expect("sort"),
            _ => panic!("unknown filter {k}"),
        }
    }
    let t = terms(q);
    let short = t.iter().filter(|t| t.chars().count() < 3).count();
    let kind = match (t.len(), short) {
        (0, _) => "filter",
        (_, 0) => "fts",
        (n, s) if n == s => "like",
        _ => "mixed",
    };
    Case { q: q.to_string(), filters: filters.to_string(), request: r, kind }
}

fn load_cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).expect("read --queries");
    text.lines().filter(|l| !l.trim().is_empty()).map(parse_case).collect()
}

/// Runs every case `1 + reps` times (the first is a warm-up) and reports.
pub fn run(args: &Args, index: &SkuIndex, path: &Path) -> Value {
    let cases = load_cases(path);
    let peer =
        args.peer_json.as_ref().map(|p| serde_json::from_slice::<Value>(&std::fs::read(p).expect("read --peer-json")).expect("peer json"));
    let mut pooled: Vec<(&str, f64)> = Vec::new();
    let mut per_query = Vec::new();
    println!("\n{:>3} {:<6} {:>8} {:>8} {:>9} {:>9} {:>7}  query [filters]", "#", "kind", "hits", "peer", "p50 ms", "p99 ms", "top20∩");
    for (i, c) in cases.iter().enumerate() {
        let mut times = Vec::new();
        let mut last: Option<SearchResult> = None;
        for rep in 0..=args.reps {
            let t0 = Instant::now();
            let r = index.search(&c.request).expect("search");
            if rep > 0 {
                times.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            last = Some(r);
        }
        let r = last.expect("ran");
        pooled.extend(times.iter().map(|&t| (c.kind, t)));
        let cmp = peer.as_ref().map(|p| compare(&p["queries"][i], &r));
        let (peer_hits, overlap) = cmp.as_ref().map_or((String::new(), String::new()), |c| (c.0.to_string(), format!("{}/{}", c.1, c.2)));
        println!(
            "{:>3} {:<6} {:>8} {:>8} {:>9.2} {:>9.2} {:>7}  {} [{}]",
            i + 1,
            c.kind,
            r.total,
            peer_hits,
            pct(&times, 50.0),
            pct(&times, 99.0),
            overlap,
            if c.q.is_empty() { "<empty>" } else { &c.q },
            c.filters
        );
        per_query.push(json!({
            "i": i + 1, "q": c.q, "filters": c.filters, "kind": c.kind, "hits": r.total,
            "p50_ms": pct(&times, 50.0), "p99_ms": pct(&times, 99.0),
            "top20_skus": r.hits.iter().map(|h| h.sku.clone()).collect::<Vec<_>>(),
            "peer_hits": cmp.as_ref().map(|c| c.0), "top20_overlap": cmp.as_ref().map(|c| c.1),
        }));
    }
    json!({ "summary": summary(&pooled, args.reps), "queries": per_query })
}

/// The peer's hit count, and how many of the peer's top 20 (or fewer) are in ours.
fn compare(peer: &Value, ours: &SearchResult) -> (u64, usize, usize) {
    let peer_hits = peer["hits"].as_u64().unwrap_or(0);
    let peer_top: HashSet<&str> = peer["top20_skus"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let ours_top: HashSet<&str> = ours.hits.iter().map(|h| h.sku.as_str()).collect();
    (peer_hits, peer_top.intersection(&ours_top).count(), peer_top.len())
}

fn summary(pooled: &[(&str, f64)], reps: usize) -> Value {
    let groups: [(&str, &[&str]); 4] = [
        ("ALL", &["fts", "like", "mixed", "filter"]),
        ("trigram (fts)", &["fts"]),
        ("fallback (like+mixed)", &["like", "mixed"]),
        ("filter-only", &["filter"]),
    ];
    println!("\nsummary (ms per request = top20 + total + 4 facets; pooled over queries x {reps} reps)");
    let mut out = serde_json::Map::new();
    for (name, kinds) in groups {
        let xs: Vec<f64> = pooled.iter().filter(|(k, _)| kinds.contains(k)).map(|(_, t)| *t).collect();
        if xs.is_empty() {
            continue;
        }
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let (p50, p99) = (pct(&xs, 50.0), pct(&xs, 99.0));
        println!("  {name:<22} n={:>3}  p50 {p50:>9.2}  p99 {p99:>9.2}  mean {mean:>9.2}", xs.len() / reps.max(1));
        out.insert(name.into(), json!({ "queries": xs.len() / reps.max(1), "p50_ms": p50, "p99_ms": p99, "mean_ms": mean }));
    }
    Value::Object(out)
}
