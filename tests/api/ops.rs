//! Operations: configuration precedence and start-up validation.

use serde_json::json;

use crate::helpers::{Options, TestServer, ADMIN};

/// Sends a brand creation whose body is `n` bytes long; returns the status.
fn body_of(s: &TestServer, n: usize) -> u16 {
    let frame = r#"{"id":"b","name":"n","zz":""}"#.len();
    let body = format!(r#"{{"id":"b","name":"n","zz":"{}"}}"#, "x".repeat(n - frame));
    assert_eq!(body.len(), n);
    s.raw("POST", "/v1/brands", Some(ADMIN), body.into_bytes(), &[("Content-Type", "application/json")]).status
}

#[test]
fn flags_override_environment_override_the_config_file_override_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zaiko.toml");
    std::fs::write(&file, "body_bytes_max = 2048\nsnapshots_keep = 2\n").unwrap();
    let cfg = || vec!["--config".to_string(), file.to_str().unwrap().to_string()];
    // File only: 2 KiB.
    let s = TestServer::spawn_with(Options { args: cfg(), ..Options::default() });
    assert_eq!(body_of(&s, 3000), 413);
    assert_eq!(body_of(&s, 1500), 400, "under the limit it is parsed (and refused for its unknown field)");
    drop(s);
    // Environment beats the file: 4 KiB.
    let s =
        TestServer::spawn_with(Options { args: cfg(), envs: vec![("ZAIKO_BODY_BYTES_MAX".into(), "4096".into())], ..Options::default() });
    assert_eq!(body_of(&s, 3000), 400);
    assert_eq!(body_of(&s, 5000), 413);
    drop(s);
    // A flag beats both: 8 KiB.
    let mut args = cfg();
    args.extend(["--body-bytes-max".to_string(), "8192".to_string()]);
    let s = TestServer::spawn_with(Options { args, envs: vec![("ZAIKO_BODY_BYTES_MAX".into(), "4096".into())], ..Options::default() });
    assert_eq!(body_of(&s, 5000), 400);
    assert_eq!(body_of(&s, 9000), 413);
    assert_eq!(s.get("/v1/brands", ADMIN).status, 200);
    let _ = json!({});
}

#[test]
fn bad_configuration_is_refused_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = |toml: &str, extra: &[&str]| {
        let file = dir.path().join("c.toml");
        std::fs::write(&file, toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zaiko"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("d"))
            .arg("--config")
            .arg(&file)
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, err) = run("bogus_knob = 1\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown setting \"bogus_knob\""), "{err}");
    let (code, err) = run("body_bytes_max = \"lots\"\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("body-bytes-max"), "{err}");
    let (code, err) = run("snapshots_keep = 0\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--snapshots-keep must be"), "{err}");
    let (code, err) = run("", &["--shards", "0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--shards must be"), "{err}");
}

#[test]
fn request_ids_come_back_and_ship_to_never_reaches_the_log() {
    let s = TestServer::spawn_with(Options { envs: vec![("ZAIKO_LOG".into(), "debug".into())], ..Options::default() });
    let r = s.client.get(s.url("/healthz")).header("X-Request-Id", "trace-me-123").send().unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    let r = s.client.get(s.url("/healthz")).send().unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 16, "a generated id");
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 5);
    let ship_to = json!({"name": "秘密 花子", "postal_code": "999-9999", "prefecture": "東京都", "address": "秘密の住所 1-2-3", "phone": "090-9999-9999"});
    s.post("/v1/brands/b1/shipments", &t, &json!({"id": "SH1", "lines": [{"sku": "S1", "quantity": 1}], "ship_to": ship_to})).expect(201);
    s.post("/v1/brands/b1/shipments", &t, &json!({"id": "SH1", "lines": [{"sku": "S1", "quantity": 2}], "ship_to": ship_to})).expect(409);
    let log = s.log();
    assert!(log.contains("request_id"), "requests are logged at debug with their id");
    for secret in ["秘密", "999-9999", "090-9999-9999"] {
        assert!(!log.contains(secret), "personal data {secret:?} in the log");
    }
}

#[test]
fn a_brand_over_its_rate_gets_429_with_retry_after_and_others_are_not_slowed() {
    let s = TestServer::spawn_with(Options {
        args: vec!["--brand-rps".into(), "1".into(), "--brand-burst".into(), "1".into()],
        ..Options::default()
    });
    let hot = s.setup_brand_raw("hot");
    let calm = s.setup_brand_raw("calm");
    let statuses: Vec<_> = (0..40).map(|_| s.get("/v1/brands/hot", &hot)).collect();
    let limited: Vec<_> = statuses.iter().filter(|r| r.status == 429).collect();
    assert!(!limited.is_empty(), "40 requests at 1 rps must be limited");
    assert!(limited
        .iter()
        .all(|r| r.code() == "rate_limited" && r.retry_after.as_deref().is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1))));
    assert!(statuses.iter().all(|r| r.status == 200 || r.status == 429));
    assert_eq!(s.get("/v1/brands/calm", &calm).status, 200, "another brand has its own bucket");
    assert_eq!(s.request("GET", "/healthz", None, None, &[]).status, 200);
}
