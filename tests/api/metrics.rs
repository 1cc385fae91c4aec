//! `GET /metrics`: Prometheus text without auth, with the journal's group-commit counters.

use crate::helpers::TestServer;

/// The value of an unlabelled sample in a Prometheus text document.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_wal_records_and_fsyncs_without_auth() {
    let s = TestServer::spawn();
    let before = s.client.get(s.url("/metrics")).send().expect("request").text().expect("body");
    s.setup_brand("b-001", &["tsukuba"], &["S1"]);
    let r = s.client.get(s.url("/metrics")).send().expect("request");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let after = r.text().expect("body");
    let delta = |name: &str| sample(&after, name).expect(name) - sample(&before, name).expect(name);
    // Brand, location, token and SKU: four records, each durable before its reply.
    assert_eq!(delta("zaiko_wal_records_total"), 4.0);
    assert!(delta("zaiko_wal_batches_total") >= 1.0 && delta("zaiko_wal_batches_total") <= 4.0);
    assert!(delta("zaiko_wal_bytes_total") > 0.0);
    assert!(sample(&after, "zaiko_wal_durable_lsn").expect("durable lsn") >= 4.0);
    assert_eq!(sample(&after, "zaiko_ready"), Some(1.0));
    assert!(sample(&after, "process_resident_memory_bytes").expect("rss") > 1e6);
}
