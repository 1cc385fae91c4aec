//! Background workers under real resource exhaustion: the search index on a tmpfs that
//! fills up, and a flood of idle keep-alive connections against a low open-file limit.
//! These tests need root (to mount a tmpfs); they fail, loudly, without it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{Options, Resp, TestServer};

/// A tmpfs mounted on a directory for the life of the value.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output().expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs to fill the index's disk and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir: dir.to_path_buf() }
    }

    /// Writes a file until the tmpfs has no space left; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 64 << 10];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // The last partial block may have fit; one more byte must not.
        let full = f.write(&[0]).and_then(|_| f.sync_all());
        assert!(full.is_err(), "the tmpfs is not full");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the server (killed just before) may still be closing its files.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// `GET /v1/search/skus` with `q` and `min_lsn`.
fn search(s: &TestServer, token: &str, q: &str, min_lsn: u64) -> Resp {
    let url = reqwest::Url::parse_with_params(&s.url("/v1/search/skus"), [("q", q), ("min_lsn", &min_lsn.to_string())]).expect("url");
    s.get(&format!("{}?{}", url.path(), url.query().unwrap_or("")), token)
}

fn hits(body: &Value) -> Vec<String> {
    body["hits"].as_array().expect("hits").iter().map(|h| h["sku"].as_str().unwrap_or("").to_string()).collect()
}

fn readyz(s: &TestServer) -> Resp {
    s.request("GET", "/readyz", None, None, &[])
}

fn metrics(s: &TestServer) -> String {
    s.client.get(s.url("/metrics")).send().expect("metrics").text().expect("metrics text")
}

/// The value of a metric sample line (`name{labels} value`), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// Polls `f` every 20 ms until it gives `Some`, for at most `limit`.
fn until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_indexer_retries_after_a_full_disk_and_catches_up_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let disk = Tmpfs::mount(&data.join("index"), "4m");
    let s = TestServer::spawn_with(Options { data_dir: Some(data.clone()), ..Options::default() });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let lsn = s.put("/v1/brands/b1/skus/S1", &t, &json!({"name": "ウール セーター"})).lsn.expect("lsn");
    assert_eq!(hits(&search(&s, &t, "セーター", lsn).expect(200)), ["S1"]);
    assert_eq!(readyz(&s).expect(200)["status"], "ready");

    let filler = disk.fill();
    // Acknowledged (the journal is on another disk); its document cannot be committed.
    let r = s.put("/v1/brands/b1/skus/S2", &t, &json!({"name": "カシミヤ マフラー"}));
    assert_eq!(r.status, 201, "{r:?}");
    let lsn = r.lsn.expect("lsn");
    let stale = search(&s, &t, "マフラー", lsn);
    assert_eq!((stale.status, stale.code()), (503, "not_ready"), "{stale:?}");
    let ready = until(Duration::from_secs(60), "/readyz to show the indexer retrying", || {
        let r = readyz(&s);
        (r.body["workers"]["indexer"]["state"] == "retrying").then_some(r)
    });
    assert_eq!(ready.status, 200, "a retrying indexer keeps the node in the load balancer: {:?}", ready.body);
    assert_eq!(ready.body["status"], "degraded");
    let indexer = &ready.body["workers"]["indexer"];
    assert!(indexer["attempts"].as_u64().unwrap() >= 1, "{indexer}");
    assert!(indexer["last_error"].as_str().unwrap().contains("No space left on device"), "the disk-full error is shown: {indexer}");
    assert_eq!(ready.body["workers"]["feed"]["state"], "ok", "{}", ready.body);
    let m = metrics(&s);
    assert_eq!(sample(&m, "zaiko_worker_healthy{worker=\"indexer\"}"), Some(0.0), "{m}");
    assert!(sample(&m, "zaiko_worker_errors_total{worker=\"indexer\"}").unwrap() >= 1.0, "{m}");
    assert!(sample(&m, "zaiko_worker_retry_attempts{worker=\"indexer\"}").unwrap() >= 1.0, "{m}");
    assert_eq!(sample(&m, "zaiko_worker_healthy{worker=\"feed\"}"), Some(1.0), "{m}");

    // Space comes back: the same search answers, with the document written while the
    // disk was full, with no restart (the backoff is at most 30 s).
    std::fs::remove_file(&filler).unwrap();
    let found = until(Duration::from_secs(90), "the min_lsn search to answer again", || {
        let r = search(&s, &t, "マフラー", lsn);
        (r.status == 200).then_some(r)
    });
    assert_eq!(hits(&found.body), ["S2"], "{}", found.body);
    let ready = readyz(&s).expect(200);
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["workers"]["indexer"], json!({"state": "ok"}));
    assert_eq!(sample(&metrics(&s), "zaiko_worker_healthy{worker=\"indexer\"}"), Some(1.0));
    // And it goes on indexing.
    let lsn = s.put("/v1/brands/b1/skus/S3", &t, &json!({"name": "コットン マフラー"})).lsn.expect("lsn");
    let mut found = hits(&search(&s, &t, "マフラー", lsn).expect(200));
    found.sort();
    assert_eq!(found, ["S2", "S3"]);
    drop(s);
    drop(disk);
}

#[test]
fn a_scheduled_snapshot_that_fails_for_lack_of_space_is_retried_and_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let disk = Tmpfs::mount(&data.join("snapshots"), "2m");
    let s = TestServer::spawn_with(Options {
        data_dir: Some(data.clone()),
        args: vec!["--snapshot-every-records".into(), "5".into()],
        ..Options::default()
    });
    let filler = disk.fill();
    s.setup_brand("b1", &["tsukuba"], &["S1", "S2", "S3", "S4", "S5"]);
    let ready = until(Duration::from_secs(60), "/readyz to show the snapshots retrying", || {
        let r = readyz(&s);
        (r.body["workers"]["snapshots"]["state"] == "retrying").then_some(r)
    });
    assert_eq!((ready.status, &ready.body["status"]), (200, &json!("degraded")), "{:?}", ready.body);
    assert_eq!(sample(&metrics(&s), "zaiko_worker_healthy{worker=\"snapshots\"}"), Some(0.0));

    std::fs::remove_file(&filler).unwrap();
    until(Duration::from_secs(60), "the snapshot to be retried and taken", || {
        let r = readyz(&s);
        (r.body["workers"]["snapshots"]["state"] == "ok").then_some(())
    });
    let taken = std::fs::read_dir(data.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("snap-") && n.ends_with(".sqlite"))
        .count();
    assert_eq!(taken, 1, "the retried snapshot is on disk");
    assert_eq!(readyz(&s).expect(200)["status"], "ready");
    drop(s);
    drop(disk);
}

/// One HTTP/1.1 connection kept open (keep-alive), for requests while new connections
/// cannot get in.
struct Conn {
    stream: TcpStream,
    host: String,
}

impl Conn {
    fn open(s: &TestServer) -> Conn {
        let host = s.base.trim_start_matches("http://").to_string();
        let stream = TcpStream::connect(&host).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Conn { stream, host }
    }

    /// Sends one request and reads its answer: status, headers (lowercase), body.
    fn send(&mut self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Vec<(String, String)>, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.stream.write_all(head.as_bytes()).and_then(|_| self.stream.write_all(body.as_bytes())).expect("send");
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte).expect("read answer head");
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).expect("utf-8 head");
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("status line");
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
        let len: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().expect("content-length"));
        assert!(!headers.iter().any(|(k, _)| k == "transfer-encoding"), "a chunked answer: {headers:?}");
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).expect("read answer body");
        (status, headers, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

/// Sockets the process holds (listeners, connections, its own).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fd dir").count()
}

/// The server's open-file limit, for these tests: low enough that a flood in a test
/// reaches it, high enough to leave room for connections after the reserve.
const OPEN_FILES: u64 = 1500;

#[test]
fn a_connection_flood_cannot_take_the_descriptors_the_server_needs() {
    let s = TestServer::spawn_with(Options {
        args: vec!["--http-workers".into(), "2".into()],
        open_files: Some((OPEN_FILES, OPEN_FILES)),
        ..Options::default()
    });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let cap = sample(&metrics(&s), "zaiko_http_connections_max").expect("the connection cap is in /metrics") as usize;
    assert!(cap as u64 + 1000 <= OPEN_FILES, "the cap ({cap}) leaves room for files under {OPEN_FILES}");
    let mut control = Conn::open(&s);
    assert_eq!(control.send("GET", "/healthz", None, None).0, 200);

    // More idle keep-alive connections than the process may open files, no token needed.
    let flood: Vec<TcpStream> = (0..OPEN_FILES as usize + 200)
        .map(|i| {
            let c = TcpStream::connect_timeout(&control.stream.peer_addr().unwrap(), Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("flood connection {i}: {e}"));
            (&c).write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("flood request");
            c
        })
        .collect();
    let pid = s.pid();
    // The server takes connections up to its cap and leaves the rest in the backlog.
    until(Duration::from_secs(60), "the flood to fill the connection cap", || (sockets(pid) >= cap).then_some(()));

    // While the flood holds every slot: a write, and a search that needs the indexer
    // to open new files (its commit), on the connection opened before.
    let (status, headers, body) = control.send("PUT", "/v1/brands/b1/skus/S2", Some(&t), Some(&json!({"name": "リネン シャツ"})));
    assert_eq!(status, 201, "{body}");
    let lsn = headers.iter().find(|(k, _)| k == "x-zaiko-lsn").map(|(_, v)| v.clone()).expect("X-Zaiko-Lsn");
    let (status, _, body) = control.send("GET", &format!("/v1/search/skus?q=%E3%82%B7%E3%83%A3%E3%83%84&min_lsn={lsn}"), Some(&t), None);
    assert_eq!(status, 200, "the index commits while the flood holds its connections: {body}");
    assert_eq!(hits(&body), ["S2"]);
    let (status, _, body) = control.send("GET", "/readyz", None, None);
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    let held = sockets(pid);
    assert!(held <= cap + 16, "{held} sockets held, over the cap of {cap} (plus the listeners and the server's own)");
    assert!(held >= cap, "the flood still holds its connections ({held} < {cap})");
    assert!((open_files(pid) as u64) < OPEN_FILES, "the server kept descriptors free");
    drop(flood);
    assert!(!s.log().contains("Too many open files"), "the server ran out of descriptors:\n{}", s.log());
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_one_and_bounds_max_connections() {
    let s = TestServer::spawn_with(Options {
        args: vec!["--http-workers".into(), "2".into(), "--max-connections".into(), "100000".into()],
        open_files: Some((OPEN_FILES, 4000)),
        ..Options::default()
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open files line");
    assert_eq!(line.split_whitespace().skip(3).take(2).collect::<Vec<_>>(), ["4000", "4000"], "{line}");
    let m = metrics(&s);
    assert_eq!(sample(&m, "process_max_fds"), Some(4000.0), "{m}");
    let cap = sample(&m, "zaiko_http_connections_max").expect("cap") as u64;
    assert!(cap > 2000 && cap + 1000 <= 4000, "--max-connections 100000 is lowered under the limit: {cap}");
    assert!(s.log().contains("--max-connections is more than the open-file limit allows; lowered"), "{}", s.log());
}

#[test]
fn a_limit_too_low_for_any_connection_stops_the_start_with_what_to_raise() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zaiko"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-token", crate::helpers::ADMIN, "--data-dir"]).arg(dir.path().join("data"));
    crate::helpers::limit_open_files(&mut cmd, (1000, 1000));
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("run zaiko");
    let deadline = Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started (or hung) with an open-file limit of 1000, too low for any connection");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!exited.success());
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    assert!(stderr.contains("the open-file limit (RLIMIT_NOFILE) is 1000") && stderr.contains("raise it to at least"), "{stderr}");
}
