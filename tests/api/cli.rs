//! Issue 19, around the contract: the command line and the log as an operator meets
//! them — every flag has its `ZAIKO_*` variable, the admin token can come from a
//! file, `/metrics` can live on an address of its own, offline commands refuse a
//! data dir that is not one, logs to a file carry no colour codes, and the probes'
//! expected 503s during start are not logged as failures.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Options, TestServer};

fn zaiko() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zaiko"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ZAIKO_") {
            c.env_remove(k);
        }
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn every_serve_flag_has_an_environment_variable() {
    let out = zaiko().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    // Each option's entry runs from its `--flag` line (indented at most 6 spaces) to the
    // next one; its description lines are indented further.
    let mut entries: Vec<String> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with('-') && (2..=6).contains(&indent) {
            entries.push(String::new());
        }
        if let Some(e) = entries.last_mut() {
            e.push_str(line);
            e.push('\n');
        }
    }
    let mut flags = 0;
    for entry in &entries {
        let flag = entry.split_whitespace().find(|w| w.starts_with("--")).unwrap_or("");
        if flag == "--help" {
            continue;
        }
        flags += 1;
        assert!(entry.contains("[env: ZAIKO_"), "{flag} has no ZAIKO_* variable:\n{entry}");
    }
    assert!(flags > 20, "found {flags} flags in:\n{help}");
}

/// `ZAIKO_WEBHOOK_ALLOW_PRIVATE` does what `--webhook-allow-private` does.
#[test]
fn the_environment_can_allow_private_webhooks() {
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": ["stock.changed"]});
    let s = TestServer::spawn();
    let t = s.setup_brand("b-env", &[], &[]);
    assert_eq!(s.post("/v1/brands/b-env/webhooks", &t, &hook).status, 400, "loopback is refused by default");
    drop(s);
    let s = TestServer::spawn_with(Options { envs: vec![("ZAIKO_WEBHOOK_ALLOW_PRIVATE".into(), "true".into())], ..Options::default() });
    let t = s.setup_brand("b-env", &[], &[]);
    s.post("/v1/brands/b-env/webhooks", &t, &hook).expect(201);
}

#[test]
fn the_admin_token_can_come_from_a_file_and_not_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    let token = "file-admin-token-0123456789";
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut child = zaiko()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&data)
        .arg("--admin-token-file")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.get(format!("http://127.0.0.1:{port}/readyz")).send().is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "the server was not ready in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = client.get(format!("http://127.0.0.1:{port}/v1/brands")).bearer_auth(token).send().unwrap().status().as_u16();
    // The token is the file's first line, without its line end; it is nowhere in argv.
    assert_eq!(status, 200);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(!cmdline.windows(token.len()).any(|w| w == token.as_bytes()));
    child.kill().unwrap();
    child.wait().unwrap();

    // Both ways at once is a mistake, and an empty file is refused.
    let both = zaiko().args(["serve", "--admin-token", token, "--admin-token-file"]).arg(&file).output().unwrap();
    assert!(!both.status.success());
    std::fs::write(&file, "\n").unwrap();
    let empty = zaiko().args(["serve", "--data-dir"]).arg(&data).arg("--admin-token-file").arg(&file).output().unwrap();
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("is empty"));
}

#[test]
fn metrics_can_be_served_on_an_address_of_their_own() {
    let port = free_port();
    let s = TestServer::spawn_with(Options { args: vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")], ..Options::default() });
    let apart = s.client.get(format!("http://127.0.0.1:{port}/metrics")).send().unwrap();
    assert_eq!(apart.status(), 200);
    assert!(apart.text().unwrap().contains("zaiko_ready 1"));
    assert_eq!(s.request("GET", "/metrics", None, None, &[]).status, 404, "not on the API's address any more");
    assert_eq!(s.request("GET", "/healthz", None, None, &[]).status, 200);
}

#[test]
fn offline_commands_refuse_a_data_dir_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("DOES-NOT-EXIST");
    let stranger = dir.path().join("photos");
    std::fs::create_dir(&stranger).unwrap();
    std::fs::write(stranger.join("cat.jpg"), b"not a journal").unwrap();
    for args in [&["wal", "verify"][..], &["snapshot", "list"], &["snapshot", "create"], &["wal", "repair"]] {
        for d in [&missing, &stranger] {
            let out = zaiko().args(args).arg("--data-dir").arg(d).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} {}: {}", d.display(), String::from_utf8_lossy(&out.stdout));
            assert!(stderr.contains("does not exist") || stderr.contains("is not a zaiko data dir"), "{args:?}: {stderr}");
        }
    }
    assert!(!missing.exists(), "nothing was created");
    // A real data dir still verifies.
    let mut s = TestServer::spawn();
    s.setup_brand("b-cli", &[], &[]);
    s.kill9();
    let out = zaiko().args(["wal", "verify", "--data-dir"]).arg(&s.data_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = zaiko().args(["snapshot", "list", "--data-dir"]).arg(&s.data_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The test server's stderr is a file: no colour codes in it, and the `/readyz` 503s
/// seen while the server starts (a slow disk makes start take a while) are not warnings.
#[test]
fn a_log_file_has_no_colour_codes_and_start_up_probes_are_not_failures() {
    let mut s = TestServer::spawn_with(Options { args: vec!["--fault-fsync-delay-ms".into(), "300".into()], ..Options::default() });
    // Again from scratch, probing from the first moment: the first start writes the
    // admin token's record, which the slow disk holds back.
    s.kill9();
    std::fs::remove_dir_all(&s.data_dir).unwrap();
    s.start_unready();
    let mut unready = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match s.request("GET", "/readyz", None, None, &[]).status {
            200 => break,
            503 => unready += 1,
            other => panic!("readyz answered {other}"),
        }
        assert!(Instant::now() < deadline, "not ready in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(unready > 0, "the probe never saw the server starting");
    let log = s.log();
    assert!(!log.contains('\u{1b}'), "colour codes in a log file:\n{log}");
    assert!(log.contains("ready"), "{log}");
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("WARN") && l.contains("/readyz")).collect();
    assert!(warned.is_empty(), "{warned:?}");
}

/// `serve --demo` prints a brand token to try the API with, and a curl line using it.
#[test]
fn the_demo_prints_a_brand_token_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = zaiko()
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !lines.iter().any(|l: &String| l.contains("try: curl")) {
        let left = deadline.saturating_duration_since(Instant::now());
        lines.push(rx.recv_timeout(left).unwrap_or_else(|_| panic!("no curl line; stdout: {lines:?}")));
    }
    let base = lines[0].strip_prefix("zaiko listening on ").unwrap().to_string();
    let token_line = lines.iter().find(|l| l.contains("brand token of komorebi")).expect("a brand token line");
    let token = token_line.rsplit(' ').next().unwrap();
    let curl = lines.iter().find(|l| l.contains("try: curl")).unwrap();
    assert!(curl.contains(token) && curl.contains(&base), "{curl}");
    let client = reqwest::blocking::Client::new();
    let r = client.get(format!("{base}/v1/search/skus")).query(&[("q", "シャツ")]).bearer_auth(token).send().unwrap();
    assert_eq!(r.status(), 200);
    let hits: serde_json::Value = r.json().unwrap();
    assert!(hits["total"].as_u64().unwrap() > 0);
    assert!(hits["hits"].as_array().unwrap().iter().all(|h| h["brand"] == "komorebi"), "a brand token sees its own brand");
    let other = client.get(format!("{base}/v1/brands/urban-label")).bearer_auth(token).send().unwrap();
    assert_eq!(other.status(), 403);
    child.kill().unwrap();
    child.wait().unwrap();
}
