//! `GET /metrics`: Prometheus text exposition (format 0.0.4), no auth.
//!
//! Each source of numbers renders itself into one [`Exposition`] section by section:
//! the journal (from [`Journal::stats`]) and the process (RSS, CPU from `/proc/self`).
//! A fuller setup (the `metrics` crate with per-route histograms, rendered by a
//! `metrics-exporter-prometheus` handle) extends this by appending its own rendered
//! text as one more section in [`metrics`]; the names here stay as they are.

use std::fmt::Write as _;

use actix_web::{web, HttpResponse};

use crate::http::AppState;
use crate::journal::StatsSnapshot;
use crate::procfs::{self, Process};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(get, path = "/metrics", operation_id = "get_metrics", tag = "health", responses((status = 200, description = "Prometheus text format. With `--metrics-listen` it is served on that address instead, and this one is 404.", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")))]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut out = Exposition::default();
    let services = state.services.get();
    out.gauge("zaiko_ready", "1 once recovery is done and the server serves requests", u64::from(services.is_some()) as f64);
    if let Some(svc) = services {
        if let Some(local) = &svc.local {
            render_local(&mut out, local, &svc.clock);
        }
        let depths = svc.router.queue_depths().into_iter().enumerate().map(|(i, d)| (i.to_string(), d as f64));
        out.labeled(
            "zaiko_shard_queue_depth",
            "gauge",
            "brand commands waiting in each shard's mailbox (a full mailbox answers 503 overloaded)",
            "shard",
            depths,
        );
    }
    render_workers(&mut out, &crate::health::global().reports());
    render_process(&mut out);
    out.text.push_str(&crate::telemetry::render_metrics());
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(out.text)
}

/// The single node's journal, index lag and snapshot age.
fn render_local(out: &mut Exposition, local: &crate::http::Local, clock: &crate::clock::SharedClock) {
    let stats = local.journal.stats();
    render_journal(out, &stats);
    let lag = |covered: u64| stats.durable_lsn.saturating_sub(covered) as f64;
    out.gauge(
        "zaiko_index_skus_lag_records",
        "journal records the SKU index is behind the durable LSN",
        lag(local.skus.coverage().covered_lsn()),
    );
    out.gauge(
        "zaiko_index_shipments_lag_records",
        "journal records the shipment index is behind the durable LSN",
        lag(local.shipments.coverage().covered_lsn()),
    );
    let last = local.snapshots.last.lock().map(|l| l.clone()).unwrap_or(None);
    if let Some(last) = last {
        let age_s = (clock.now().0 - last.created_at.0).max(0) as f64 / 1000.0;
        out.gauge("zaiko_snapshot_age_seconds", "time since the newest snapshot this process built or found", age_s);
        out.gauge("zaiko_snapshot_lsn", "LSN of that snapshot", last.lsn as f64);
    }
}

/// A Prometheus text document being written: one `# HELP`/`# TYPE` pair per metric.
#[derive(Default)]
pub struct Exposition {
    pub text: String,
}

impl Exposition {
    pub fn counter(&mut self, name: &str, help: &str, value: f64) {
        self.metric(name, "counter", help, value);
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.metric(name, "gauge", help, value);
    }

    /// One metric with one label, a sample per label value.
    pub fn labeled(&mut self, name: &str, kind: &str, help: &str, label: &str, samples: impl IntoIterator<Item = (String, f64)>) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (value_of_label, value) in samples {
            let _ = writeln!(self.text, "{name}{{{label}=\"{value_of_label}\"}} {value}");
        }
    }

    fn metric(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        // Writing into a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}

/// The group-commit counters: `records / batches` is the mean batch size and
/// `fsync_seconds / batches` the mean fdatasync latency.
pub fn render_journal(out: &mut Exposition, s: &StatsSnapshot) {
    out.counter("zaiko_wal_records_total", "WAL records written and fdatasynced", s.records as f64);
    out.counter("zaiko_wal_batches_total", "group commits: one write and one fdatasync each", s.batches as f64);
    out.counter("zaiko_wal_bytes_total", "WAL bytes written (frames included)", s.bytes as f64);
    out.counter("zaiko_wal_fsync_seconds_total", "time spent in fdatasync", s.fsync_nanos as f64 / 1e9);
    out.counter("zaiko_wal_appends_refused_total", "appends refused (queue full, disk full or stopping)", s.appends_refused as f64);
    out.gauge("zaiko_wal_durable_lsn", "highest LSN known to be on disk", s.durable_lsn as f64);
    out.gauge("zaiko_wal_queued_bytes", "payload bytes queued for the WAL writer", s.queued_bytes as f64);
    out.gauge("zaiko_wal_disk_full", "1 while appends are refused for lack of disk space", u64::from(s.disk_full) as f64);
}

/// The background workers' health (`crate::health`), a sample per worker.
pub fn render_workers(out: &mut Exposition, reports: &[crate::health::Report]) {
    let per_worker = |f: &dyn Fn(&crate::health::Report) -> f64| -> Vec<(String, f64)> {
        reports.iter().map(|r| (r.worker.name().to_string(), f(r))).collect()
    };
    out.labeled(
        "zaiko_worker_healthy",
        "gauge",
        "1 while the background worker's last attempt succeeded; 0 while it retries after an error or has stopped",
        "worker",
        per_worker(&|r| u64::from(r.healthy()) as f64),
    );
    out.labeled(
        "zaiko_worker_errors_total",
        "counter",
        "failed attempts of the background worker (each is retried after a backoff)",
        "worker",
        per_worker(&|r| r.errors_total as f64),
    );
    out.labeled(
        "zaiko_worker_retry_attempts",
        "gauge",
        "failed attempts in a row of the background worker now (0 when healthy)",
        "worker",
        per_worker(&|r| r.attempts() as f64),
    );
}

/// The standard process metrics, read from `/proc/self` (Linux); absent elsewhere.
fn render_process(out: &mut Exposition) {
    if let Some(fds) = procfs::open_fds(Process::Current) {
        out.gauge("process_open_fds", "open file descriptors", fds as f64);
    }
    if let Some(max) = procfs::max_open_files(Process::Current) {
        out.gauge("process_max_fds", "the limit on open file descriptors (soft RLIMIT_NOFILE)", max as f64);
    }
    if let Some(rss_bytes) = procfs::rss_bytes(Process::Current) {
        out.gauge("process_resident_memory_bytes", "resident set size in bytes", rss_bytes as f64);
    }
    if let Some(cpu_s) = procfs::cpu_seconds(Process::Current) {
        out.counter("process_cpu_seconds_total", "user and system CPU time in seconds", cpu_s);
    }
    if let Some(h) = crate::telemetry::heap_stats() {
        out.gauge(
            "zaiko_heap_allocated_bytes",
            "bytes the server holds in live allocations (jemalloc stats.allocated)",
            h.allocated as f64,
        );
        out.gauge(
            "zaiko_heap_active_bytes",
            "bytes in the allocator's pages in use: allocated plus the free room inside them (jemalloc stats.active)",
            h.active as f64,
        );
        out.gauge(
            "zaiko_heap_resident_bytes",
            "resident bytes the allocator maps, freed pages not yet returned included (jemalloc stats.resident)",
            h.resident as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labeled_metrics_have_one_sample_per_label_value() {
        let mut out = Exposition::default();
        out.labeled("zaiko_q", "gauge", "queued", "shard", [("0".to_string(), 3.0), ("1".to_string(), 0.0)]);
        assert_eq!(out.text, "# HELP zaiko_q queued\n# TYPE zaiko_q gauge\nzaiko_q{shard=\"0\"} 3\nzaiko_q{shard=\"1\"} 0\n");
    }

    #[test]
    fn journal_section_names_every_counter() {
        let mut out = Exposition::default();
        let s = StatsSnapshot { batches: 4, records: 10, bytes: 900, fsync_nanos: 2_500_000, durable_lsn: 10, ..Default::default() };
        render_journal(&mut out, &s);
        assert!(out.text.contains("# TYPE zaiko_wal_records_total counter\nzaiko_wal_records_total 10\n"));
        assert!(out.text.contains("zaiko_wal_fsync_seconds_total 0.0025\n"));
        for name in ["zaiko_wal_batches_total 4", "zaiko_wal_bytes_total 900", "zaiko_wal_durable_lsn 10", "zaiko_wal_queued_bytes 0"] {
            assert!(out.text.contains(name), "{name} missing");
        }
    }

    #[test]
    fn worker_section_has_a_sample_per_worker() {
        let health = crate::health::Health::new();
        health.worker(crate::health::Worker::Indexer).failed("no space left on device");
        let mut out = Exposition::default();
        render_workers(&mut out, &health.reports());
        for line in [
            "zaiko_worker_healthy{worker=\"indexer\"} 0\n",
            "zaiko_worker_healthy{worker=\"feed\"} 1\n",
            "zaiko_worker_errors_total{worker=\"indexer\"} 1\n",
            "zaiko_worker_retry_attempts{worker=\"indexer\"} 1\n",
            "zaiko_worker_retry_attempts{worker=\"imports\"} 0\n",
        ] {
            assert!(out.text.contains(line), "{line} missing from\n{}", out.text);
        }
    }
}
