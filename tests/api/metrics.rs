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
    // The allocator's own account: what is held, in pages in use, resident.
    let heap = |name: &str| sample(&after, name).expect(name);
    let (allocated, active, resident) =
        (heap("zaiko_heap_allocated_bytes"), heap("zaiko_heap_active_bytes"), heap("zaiko_heap_resident_bytes"));
    assert!(allocated > 1e5 && allocated <= active && active <= resident, "heap {allocated} / {active} / {resident}");
}

/// The value of a labelled sample whose line starts with `prefix` (name and labels).
fn labelled(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(prefix)?.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_break_requests_down_by_route_and_status_with_latency_histograms() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b-001", &["tsukuba"], &["S1"]);
    for i in 0..3 {
        let r = s.post_key(
            "/v1/brands/b-001/stock/changes",
            &t,
            &format!("m{i}"),
            &serde_json::json!({"changes": [
                {"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}
            ]}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // A brand token reading another brand: 403, counted under its route pattern.
    assert_eq!(s.get("/v1/brands/other/skus/S1", &t).status, 403);
    let text = s.client.get(s.url("/metrics")).send().expect("request").text().expect("body");
    let route = r#"route="/v1/brands/{brand}/stock/changes""#;
    let count = text
        .lines()
        .find(|l| l.starts_with("zaiko_http_requests_total{") && l.contains(route) && l.contains(r#"status="200""#))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(count, Some(3.0), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("zaiko_http_requests_total{")
            && l.contains(r#"route="/v1/brands/{brand}/skus/{sku}""#)
            && l.contains(r#"status="403""#)),
        "403 not counted by route"
    );
    assert!(
        text.lines().any(|l| l.starts_with("zaiko_http_request_duration_seconds_bucket{") && l.contains(route)),
        "no latency histogram for the route"
    );
    // Group commit: fsync latency and batch sizes as histograms, one sample per batch.
    let batches = sample(&text, "zaiko_wal_batches_total").expect("batches");
    assert_eq!(labelled(&text, "zaiko_wal_fsync_seconds_count"), Some(batches));
    assert_eq!(labelled(&text, "zaiko_wal_batch_records_count"), Some(batches));
    assert_eq!(labelled(&text, "zaiko_wal_batch_records_sum"), sample(&text, "zaiko_wal_records_total"));
    assert!(sample(&text, "zaiko_index_skus_lag_records").is_some(), "index lag gauge missing");
}

#[test]
fn metrics_show_shard_queue_depths_and_import_rows() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b-001", &["tsukuba"], &["S1"]);
    let csv = "sku,location,delta\nS1,tsukuba,1\nS1,tsukuba,2\nNOPE,tsukuba,1\n";
    let r = s.raw("POST", "/v1/brands/b-001/imports?kind=stock", Some(&t), csv.as_bytes().to_vec(), &[("content-type", "text/csv")]);
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let done = crate::receiver::wait_until(std::time::Duration::from_secs(60), || {
        s.get(&format!("/v1/brands/b-001/imports/{id}"), &t).expect(200)["status"] == "done"
    });
    assert!(done, "the import did not finish");
    let text = s.client.get(s.url("/metrics")).send().expect("request").text().expect("body");
    assert_eq!(labelled(&text, r#"zaiko_import_rows_total{result="ok"}"#), Some(2.0), "{text}");
    assert_eq!(labelled(&text, r#"zaiko_import_rows_total{result="failed"}"#), Some(1.0), "{text}");
    // One gauge per shard (two by default); nothing is queued once every answer is in.
    assert!(text.contains("# TYPE zaiko_shard_queue_depth gauge"), "{text}");
    assert_eq!(labelled(&text, r#"zaiko_shard_queue_depth{shard="0"}"#), Some(0.0));
    assert_eq!(labelled(&text, r#"zaiko_shard_queue_depth{shard="1"}"#), Some(0.0));
}
