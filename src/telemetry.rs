//! Logging setup (human-readable by default, JSON lines with `--log-format json`) and
//! the process-wide metrics recorder behind `/metrics`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("ZAIKO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

static METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();

/// Latency buckets in seconds: 100 µs to 30 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Group-commit batch sizes, in records.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];

/// Installs the metrics recorder the `metrics::*!` macros write to (once per process;
/// `serve` calls it). Without it, the macros cost nothing and record nothing.
pub fn install_metrics() {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    if METRICS.get().is_some() {
        return;
    }
    let built = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("zaiko_wal_batch_records".into()), BATCH_BUCKETS))
        .and_then(|b| b.install_recorder());
    match built {
        Ok(handle) => {
            if METRICS.set(handle.clone()).is_ok() {
                spawn_upkeep(handle);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics recorder not installed; /metrics shows only the built-in gauges"),
    }
}

/// How often the recorder folds the histogram samples recorded since the last time.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder keeps every histogram sample (8 bytes each, per request and per WAL
/// batch) until an upkeep folds them into the buckets; a server nobody scrapes would
/// grow by the request rate forever, so a thread runs the upkeep every few seconds.
fn spawn_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
        std::thread::sleep(UPKEEP_EVERY);
        handle.run_upkeep();
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; histogram samples are folded only when /metrics is read");
    }
}

/// What the recorder holds, in the Prometheus text format (empty without a recorder).
pub fn render_metrics() -> String {
    METRICS
        .get()
        .map(|h| {
            h.run_upkeep();
            h.render()
        })
        .unwrap_or_default()
}

/// The allocator's own account of the heap, from jemalloc's `stats.*` (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Held by the program: the sum of its live allocations.
    pub allocated: u64,
    /// In pages the allocator has handed out: `allocated` plus the free room inside
    /// them (fragmentation).
    pub active: u64,
    /// Resident pages the allocator maps: `active`, its own metadata, and freed pages
    /// not yet given back to the kernel.
    pub resident: u64,
}

/// jemalloc's statistics, refreshed now; `None` where jemalloc is not linked.
pub fn heap_stats() -> Option<HeapStats> {
    #[cfg(not(target_env = "msvc"))]
    {
        use std::ffi::CStr;
        use std::ptr::null_mut;
        fn read(name: &CStr) -> Option<u64> {
            let mut value: usize = 0;
            let mut len = std::mem::size_of::<usize>();
            // SAFETY: a NUL-terminated name; `value` is a size_t and `len` says so.
            let rc = unsafe { tikv_jemalloc_sys::mallctl(name.as_ptr(), (&raw mut value).cast(), &mut len, null_mut(), 0) };
            (rc == 0).then_some(value as u64)
        }
        // The statistics are a snapshot taken when the epoch advances.
        let mut epoch: u64 = 1;
        let len = std::mem::size_of::<u64>();
        // SAFETY: writes one u64 to `epoch`, the documented way to refresh the statistics.
        let rc = unsafe { tikv_jemalloc_sys::mallctl(c"epoch".as_ptr(), null_mut(), null_mut(), (&raw mut epoch).cast(), len) };
        if rc != 0 {
            return None;
        }
        Some(HeapStats { allocated: read(c"stats.allocated")?, active: read(c"stats.active")?, resident: read(c"stats.resident")? })
    }
    #[cfg(target_env = "msvc")]
    None
}
