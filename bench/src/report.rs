//! Turning runs into figures: latency summaries, server-side group-commit figures from
//! the `/metrics` deltas, ratios to the `/healthz` ceiling, medians over runs, the
//! printed table and the JSON result file.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::ledger::StockCheck;
use super::runner::{Edges, RunOutput};
use super::target::Samples;

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: h.len(),
        mean_us: h.mean(),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

/// What the server did during the window, from `/metrics` deltas.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerWindow {
    pub wal_records: f64,
    pub wal_batches: f64,
    pub wal_bytes: f64,
    /// Records per fdatasync: the group-commit batch size.
    pub mean_batch_records: Option<f64>,
    pub mean_fsync_ms: Option<f64>,
    pub fsyncs_per_s: f64,
    pub appends_refused: f64,
    /// CPU cores the server used on average (1.0 = one core busy).
    pub cpu_cores: Option<f64>,
    pub rss_bytes: Option<f64>,
}

impl ServerWindow {
    pub fn from_samples(before: &Samples, after: &Samples, window_s: f64) -> ServerWindow {
        let d = |name: &str| after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0);
        let (records, batches) = (d("zaiko_wal_records_total"), d("zaiko_wal_batches_total"));
        let per_batch = |v: f64| (batches > 0.0).then(|| v / batches);
        let has_cpu = after.contains_key("process_cpu_seconds_total");
        ServerWindow {
            wal_records: records,
            wal_batches: batches,
            wal_bytes: d("zaiko_wal_bytes_total"),
            mean_batch_records: per_batch(records),
            mean_fsync_ms: per_batch(d("zaiko_wal_fsync_seconds_total") * 1000.0),
            fsyncs_per_s: batches / window_s,
            appends_refused: d("zaiko_wal_appends_refused_total"),
            cpu_cores: has_cpu.then(|| d("process_cpu_seconds_total") / window_s),
            rss_bytes: after.get("process_resident_memory_bytes").copied(),
        }
    }
}

/// One scenario at one connection count in one run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub connections: usize,
    /// Connections open in the measured window: `connections` × the scenario's surge.
    pub window_connections: usize,
    pub run: usize,
    pub window_s: f64,
    pub requests_per_s: f64,
    /// Applied changes (writes) or successful reads per second.
    pub ops_per_s: f64,
    pub latency: LatencySummary,
    pub by_label: BTreeMap<String, LatencySummary>,
    pub statuses: BTreeMap<u16, u64>,
    pub rejected_changes: u64,
    pub io_errors: u64,
    pub server_errors: u64,
    pub settle_errors: u64,
    pub first_error: Option<String>,
    pub server: Option<ServerWindow>,
    pub client_cpu_cores: Option<f64>,
    /// Cores each `--cpu-pid` process used (a cluster's nodes and servers), by pid.
    pub watched_cpu_cores: BTreeMap<u32, f64>,
    /// Of which their search indexing threads, by pid.
    pub watched_index_cores: BTreeMap<u32, f64>,
    /// `/healthz` requests/s at the same connection count in the same run.
    pub ceiling_requests_per_s: Option<f64>,
    pub ratio_to_ceiling: Option<f64>,
    pub stock_check: Option<StockCheck>,
}

impl ScenarioResult {
    pub fn new(scenario: &str, connections: usize, run: usize, out: &RunOutput) -> ScenarioResult {
        let t = &out.tally;
        let all = t.all_latency_us();
        let Edges { server, client_cpu_s, watched_cpu_s } = &out.edges;
        ScenarioResult {
            scenario: scenario.to_string(),
            connections,
            window_connections: connections,
            run,
            window_s: out.window_s,
            requests_per_s: all.len() as f64 / out.window_s,
            ops_per_s: t.ops as f64 / out.window_s,
            latency: summarize(&all),
            by_label: t.labels.iter().map(|(l, lt)| (l.to_string(), summarize(&lt.latency_us))).collect(),
            statuses: t.statuses(),
            rejected_changes: t.rejected_changes,
            io_errors: t.io_errors,
            server_errors: t.server_errors,
            settle_errors: t.settle_errors,
            first_error: t.first_error.clone(),
            server: server.as_ref().map(|(a, b)| ServerWindow::from_samples(a, b, out.window_s)),
            client_cpu_cores: client_cpu_s.map(|(a, b)| (b - a) / out.window_s),
            watched_cpu_cores: watched_cpu_s.iter().map(|w| (w.pid, (w.cpu_s.1 - w.cpu_s.0) / out.window_s)).collect(),
            watched_index_cores: watched_cpu_s.iter().map(|w| (w.pid, (w.index_cpu_s.1 - w.index_cpu_s.0) / out.window_s)).collect(),
            ceiling_requests_per_s: None,
            ratio_to_ceiling: None,
            stock_check: None,
        }
    }

    pub fn set_ceiling(&mut self, ceiling_rps: f64) {
        self.ceiling_requests_per_s = Some(ceiling_rps);
        self.ratio_to_ceiling = (ceiling_rps > 0.0).then(|| self.requests_per_s / ceiling_rps);
    }

    /// Failures: anything but 2xx, 4xx the scenario may cause, 429 and 503.
    pub fn failed(&self) -> bool {
        self.io_errors > 0 || self.server_errors > 0 || self.settle_errors > 0 || self.stock_check.as_ref().is_some_and(|c| !c.ok())
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Medians over the runs of one (scenario, connections).
#[derive(Debug, Clone, Serialize)]
pub struct MedianRow {
    pub scenario: String,
    pub connections: usize,
    pub window_connections: usize,
    pub runs: usize,
    pub requests_per_s: f64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub ceiling_requests_per_s: Option<f64>,
    pub ratio_to_ceiling: Option<f64>,
    pub mean_batch_records: Option<f64>,
    pub mean_fsync_ms: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    pub client_cpu_cores: Option<f64>,
    /// Per watched pid, the median of its cores, and of its indexing threads' cores.
    pub watched_cpu_cores: BTreeMap<u32, f64>,
    pub watched_index_cores: BTreeMap<u32, f64>,
    /// Range of requests/s over the runs, to show the noise.
    pub requests_per_s_min: f64,
    pub requests_per_s_max: f64,
    /// Answers 429 and 503 per run (medians), and the most any run had.
    pub status_429: f64,
    pub status_503: f64,
    pub overload_answers_max: u64,
    /// Per label (e.g. `reserve` and `release`): medians of requests/s, p50, p99, p999.
    pub by_label: BTreeMap<String, LabelMedians>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LabelMedians {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

pub fn medians(results: &[ScenarioResult]) -> Vec<MedianRow> {
    let mut groups: BTreeMap<(usize, String), Vec<&ScenarioResult>> = BTreeMap::new();
    let mut order = Vec::new();
    for r in results {
        let key = (r.connections, r.scenario.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order.sort_by_key(|(c, _)| *c);
    order
        .into_iter()
        .map(|key| {
            let rs = &groups[&key];
            let m = |f: &dyn Fn(&ScenarioResult) -> Option<f64>| median(rs.iter().filter_map(|r| f(r)).collect());
            let rps: Vec<f64> = rs.iter().map(|r| r.requests_per_s).collect();
            MedianRow {
                scenario: key.1.clone(),
                connections: key.0,
                window_connections: rs[0].window_connections,
                runs: rs.len(),
                requests_per_s: m(&|r| Some(r.requests_per_s)).unwrap_or(0.0),
                ops_per_s: m(&|r| Some(r.ops_per_s)).unwrap_or(0.0),
                p50_ms: m(&|r| Some(r.latency.p50_us as f64 / 1000.0)).unwrap_or(0.0),
                p99_ms: m(&|r| Some(r.latency.p99_us as f64 / 1000.0)).unwrap_or(0.0),
                p999_ms: m(&|r| Some(r.latency.p999_us as f64 / 1000.0)).unwrap_or(0.0),
                ceiling_requests_per_s: m(&|r| r.ceiling_requests_per_s),
                ratio_to_ceiling: m(&|r| r.ratio_to_ceiling),
                mean_batch_records: m(&|r| r.server.as_ref().and_then(|s| s.mean_batch_records)),
                mean_fsync_ms: m(&|r| r.server.as_ref().and_then(|s| s.mean_fsync_ms)),
                server_cpu_cores: m(&|r| r.server.as_ref().and_then(|s| s.cpu_cores)),
                client_cpu_cores: m(&|r| r.client_cpu_cores),
                watched_cpu_cores: per_pid(rs, |r| &r.watched_cpu_cores),
                watched_index_cores: per_pid(rs, |r| &r.watched_index_cores),
                requests_per_s_min: rps.iter().copied().fold(f64::INFINITY, f64::min),
                requests_per_s_max: rps.iter().copied().fold(0.0, f64::max),
                status_429: m(&|r| Some(r.statuses.get(&429).copied().unwrap_or(0) as f64)).unwrap_or(0.0),
                status_503: m(&|r| Some(r.statuses.get(&503).copied().unwrap_or(0) as f64)).unwrap_or(0.0),
                overload_answers_max: rs
                    .iter()
                    .map(|r| r.statuses.get(&429).copied().unwrap_or(0) + r.statuses.get(&503).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0),
                by_label: label_medians(rs),
            }
        })
        .collect()
}

/// The median of each pid's figure over the runs that have it.
fn per_pid(rs: &[&ScenarioResult], f: impl Fn(&ScenarioResult) -> &BTreeMap<u32, f64>) -> BTreeMap<u32, f64> {
    let pids: std::collections::BTreeSet<u32> = rs.iter().flat_map(|r| f(r).keys().copied()).collect();
    pids.into_iter().filter_map(|pid| Some((pid, median(rs.iter().filter_map(|r| f(r).get(&pid).copied()).collect())?))).collect()
}

fn label_medians(rs: &[&ScenarioResult]) -> BTreeMap<String, LabelMedians> {
    let labels: std::collections::BTreeSet<&String> = rs.iter().flat_map(|r| r.by_label.keys()).collect();
    labels
        .into_iter()
        .map(|l| {
            let m = |f: &dyn Fn(&LatencySummary, f64) -> f64| {
                median(rs.iter().filter_map(|r| r.by_label.get(l).map(|s| f(s, r.window_s))).collect()).unwrap_or(0.0)
            };
            let lm = LabelMedians {
                requests_per_s: m(&|s, w| s.count as f64 / w),
                p50_ms: m(&|s, _| s.p50_us as f64 / 1000.0),
                p99_ms: m(&|s, _| s.p99_us as f64 / 1000.0),
                p999_ms: m(&|s, _| s.p999_us as f64 / 1000.0),
            };
            (l.clone(), lm)
        })
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

/// One line per run, as it finishes.
pub fn run_line(r: &ScenarioResult) -> String {
    let s = r.server.as_ref();
    format!(
        "run {} c={:<4}{} {:<14} {:>9.0} req/s {:>10.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p999 {:>7.2} ms  x{}  batch {}  fsync {} ms  cpu srv {} cli {}{}  statuses {:?}{}",
        r.run,
        r.connections,
        if r.window_connections == r.connections { String::new() } else { format!("→{}", r.window_connections) },
        r.scenario,
        r.requests_per_s,
        r.ops_per_s,
        r.latency.p50_us as f64 / 1000.0,
        r.latency.p99_us as f64 / 1000.0,
        r.latency.p999_us as f64 / 1000.0,
        opt(r.ratio_to_ceiling, 3),
        opt(s.and_then(|s| s.mean_batch_records), 1),
        opt(s.and_then(|s| s.mean_fsync_ms), 2),
        opt(s.and_then(|s| s.cpu_cores), 2),
        opt(r.client_cpu_cores, 2),
        if r.watched_cpu_cores.is_empty() { String::new() } else { format!(" watched {:.2}", r.watched_cpu_cores.values().sum::<f64>()) },
        r.statuses,
        match &r.stock_check {
            Some(c) if c.ok() => format!(
                "  stock ok ({} slots{})",
                c.slots,
                c.released_after.map_or(String::new(), |n| format!(", {n} reservations released after, reserved restored"))
            ),
            Some(c) => format!(
                "  STOCK MISMATCH on_hand {} reserved {} oversold {} not restored {:?} of {} slots, e.g. {:?}",
                c.mismatches,
                c.reserved_mismatches,
                c.oversold,
                c.reserved_not_restored,
                c.slots,
                c.examples.first()
            ),
            None => String::new(),
        }
    )
}

/// The medians as a Markdown table.
pub fn median_table(rows: &[MedianRow]) -> String {
    let mut out = String::from(
        "| scenario | conns | runs | req/s (min-max) | ops/s | p50 ms | p99 ms | p999 ms | /healthz req/s | ratio | records/fsync | fsync ms | server cores | client cores | 429 | 503 |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {}{} | {} | {:.0} ({:.0}-{:.0}) | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |\n",
            r.scenario,
            r.connections,
            if r.window_connections == r.connections { String::new() } else { format!("→{}", r.window_connections) },
            r.runs,
            r.requests_per_s,
            r.requests_per_s_min,
            r.requests_per_s_max,
            r.ops_per_s,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            opt(r.ceiling_requests_per_s, 0),
            opt(r.ratio_to_ceiling, 3),
            opt(r.mean_batch_records, 1),
            opt(r.mean_fsync_ms, 2),
            opt(r.server_cpu_cores, 2),
            opt(r.client_cpu_cores, 2),
            r.status_429,
            r.status_503,
        ));
        if r.by_label.len() > 1 {
            for (label, l) in &r.by_label {
                out.push_str(&format!(
                    "| ↳ {label} | | | {:.0} | | {:.2} | {:.2} | {:.2} | | | | | | | | |\n",
                    l.requests_per_s, l.p50_ms, l.p99_ms, l.p999_ms
                ));
            }
        }
    }
    out
}

/// Writes `value` as pretty JSON, creating the parent directory.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(value).expect("results serialise");
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_percentiles_in_microseconds() {
        let mut h = super::super::runner::new_histogram();
        for us in 1..=1000u64 {
            h.record(us).unwrap();
        }
        let s = summarize(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.p999_us, 999);
        assert_eq!(s.max_us, 1000);
        assert!((s.mean_us - 500.5).abs() < 1.0);
        assert_eq!(summarize(&super::super::runner::new_histogram()), LatencySummary::default());
    }

    #[test]
    fn server_window_derives_batch_size_and_fsync_latency() {
        let before: Samples =
            [("zaiko_wal_records_total", 100.0), ("zaiko_wal_batches_total", 10.0), ("zaiko_wal_fsync_seconds_total", 1.0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        let mut after = before.clone();
        after.insert("zaiko_wal_records_total".into(), 1100.0);
        after.insert("zaiko_wal_batches_total".into(), 60.0);
        after.insert("zaiko_wal_fsync_seconds_total".into(), 1.1);
        let w = ServerWindow::from_samples(&before, &after, 10.0);
        assert_eq!(w.mean_batch_records, Some(20.0));
        assert!((w.mean_fsync_ms.unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(w.fsyncs_per_s, 5.0);
        assert_eq!(w.cpu_cores, None, "no process metrics, no CPU figure");
        let idle = ServerWindow::from_samples(&before, &before, 10.0);
        assert_eq!(idle.mean_batch_records, None);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
    }
}
