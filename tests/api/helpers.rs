#![allow(dead_code)] // shared by every test module; not each uses every helper
//! Test helpers: start the real `zaiko` binary on port 0 with a fresh data dir, talk
//! to it over HTTP, kill it with SIGKILL, start it again on the same data dir.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::process::Process;

#[macro_use]
#[path = "../support/api_client.rs"]
mod api_client;
use api_client::to_resp;
pub use api_client::{rand_suffix, Resp};

pub const ADMIN: &str = "test-admin-token-0123456789";

/// How long a server may take to become ready. Generous: CI machines are slow and
/// recovery of a large journal takes a while; the wait ends as soon as it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

pub struct TestServer {
    process: Process,
    pub base: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub client: reqwest::blocking::Client,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    open_files: Option<(u64, u64)>,
}

#[derive(Default)]
pub struct Options {
    pub data_dir: Option<PathBuf>,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    /// The server's `RLIMIT_NOFILE` (soft, hard), set in the child before it runs.
    pub open_files: Option<(u64, u64)>,
}

impl TestServer {
    pub fn spawn() -> TestServer {
        TestServer::spawn_with(Options::default())
    }

    pub fn spawn_with(opts: Options) -> TestServer {
        let (tmp, data_dir) = match opts.data_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let mut s = TestServer {
            process: Process::new(data_dir.join("server.log")),
            base: String::new(),
            data_dir,
            _tmp: tmp,
            client,
            args: opts.args,
            envs: opts.envs,
            open_files: opts.open_files,
        };
        s.start();
        s
    }

    /// Starts the process and waits until it listens (not until it is ready).
    pub fn start_unready(&mut self) {
        assert!(!self.process.is_running(), "already running");
        std::fs::create_dir_all(&self.data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.join("server.log")).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zaiko"));
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--admin-token")
            .arg(ADMIN)
            .args(&self.args)
            .env_remove("ZAIKO_LISTEN")
            .env("ZAIKO_LOG", "info")
            // More shards than the default (one per two cores), so the paths across
            // shards (brand lists, index drains, snapshots, sweeps) are always run.
            .env("ZAIKO_SHARDS", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(limits) = self.open_files {
            limit_open_files(&mut cmd, limits);
        }
        let mut child = cmd.spawn().expect("spawn zaiko");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read listen line");
        let url = line.trim().strip_prefix("zaiko listening on ").unwrap_or_else(|| {
            panic!("server did not start: {line:?}; log: {}", self.log());
        });
        self.base = url.to_string();
        self.process.started(child);
    }

    pub fn start(&mut self) {
        self.start_unready();
        self.wait_ready();
    }

    /// Polls `/readyz` until it answers 200 (recovery done).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(r) = self.client.get(format!("{}/readyz", self.base)).send() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            if let Some(status) = self.process.exited() {
                panic!("server exited with {status} before it was ready; log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "server not ready in time; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Waits for the process to exit on its own and returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.process.exited() {
                return s;
            }
            assert!(self.process.is_running(), "server is not running");
            assert!(Instant::now() < deadline, "server did not exit in time");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        self.process.signal("TERM");
    }

    /// Replaces the extra command-line arguments for the next start.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Drops the extra environment (e.g. a fault hook) for the next start.
    pub fn clear_env(&mut self) {
        self.envs.clear();
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.start();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>, headers: &[(&str, &str)]) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.client.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        to_resp(rb.send().expect("request"))
    }

    /// Like [`TestServer::post_key`], but `None` when no answer came (the server died).
    pub fn try_post_key(&self, path: &str, token: &str, key: &str, body: &Value) -> Option<Resp> {
        let r = self.client.post(self.url(path)).bearer_auth(token).header("Idempotency-Key", key).json(body).send().ok()?;
        Some(to_resp(r))
    }

    pub fn raw(&self, method: &str, path: &str, token: Option<&str>, body: Vec<u8>, headers: &[(&str, &str)]) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.client.request(method, self.url(path)).body(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        to_resp(rb.send().expect("request"))
    }

    /// Where the journal stands: the WAL's durable LSN and its record count, from
    /// `/metrics` (`zaiko_wal_durable_lsn`, `zaiko_wal_records_total`). "Nothing
    /// changed" is these two numbers unchanged. (The cluster run's `TestServer` reads
    /// its journal stream instead.)
    pub fn journal(&self) -> (u64, u64) {
        let text = self.client.get(self.url("/metrics")).send().expect("metrics").text().expect("metrics text");
        let value = |name: &str| -> u64 {
            let line =
                text.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
            line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() as u64
        };
        (value("zaiko_wal_durable_lsn"), value("zaiko_wal_records_total"))
    }

    /// Waits until both search indexes cover every change acknowledged so far.
    pub fn wait_search_caught_up(&self) {
        let lsn = self.journal().0;
        for path in ["/v1/search/skus", "/v1/search/shipments"] {
            let r = self.get(&format!("{path}?min_lsn={lsn}"), ADMIN);
            assert_eq!(r.status, 200, "{path} at {lsn}: {r:?}");
        }
    }

    api_requests!();
}

/// Sets the child's `RLIMIT_NOFILE` to `(soft, hard)` between fork and exec.
pub fn limit_open_files(cmd: &mut Command, (soft, hard): (u64, u64)) {
    use std::os::unix::process::CommandExt;
    let limit = rustix::process::Rlimit { current: Some(soft), maximum: Some(hard) };
    // SAFETY: between fork and exec only `setrlimit` runs: one system call, no
    // allocation, no lock.
    unsafe {
        cmd.pre_exec(move || rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).map_err(std::io::Error::from));
    }
}

/// Path of the newest WAL segment of a data dir.
pub fn last_segment(data_dir: &Path) -> PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(data_dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

/// Flips a bit in the middle of the payload of the third record from the end of the
/// newest WAL segment (a repair then cuts it and the two after it). Returns the
/// segment, the damaged record's frame and the segment's bytes as written.
pub fn corrupt_third_last_record(data_dir: &Path) -> (PathBuf, zaiko::journal::format::FrameRef, Vec<u8>) {
    let seg = last_segment(data_dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    let frames = zaiko::journal::format::scan(&bytes, true).unwrap().frames;
    let victim = frames[frames.len() - 3];
    bytes[victim.payload_start + victim.payload_len / 2] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    (seg, victim, bytes)
}

/// Every event of brand b1's feed, in order.
pub fn whole_feed(s: &TestServer, t: &str) -> Vec<Value> {
    s.whole_feed(t)
}
