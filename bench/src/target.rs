//! The server under test: one given by `--url`, or a `zaiko serve` child started from
//! the server binary (`--spawn`, by default the `zaiko` beside this binary) on a fresh
//! data dir, whose pid gives RSS and CPU from `/proc`. Also the scrape of `/metrics`
//! into name → value.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use zaiko::procfs::{self, Process};

use super::args::TargetArgs;
use super::fixture::call;

/// Longest a spawned server may take to become ready (recovery of a large journal).
const READY_TIMEOUT: Duration = Duration::from_secs(1800);

/// The `zaiko` binary to run: `given` (`--server-bin`), or the one beside this binary,
/// where `cargo build --release` puts both.
pub fn server_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot find the path of this binary; pass --server-bin")?
            .with_file_name(format!("zaiko{}", std::env::consts::EXE_SUFFIX)),
    };
    anyhow::ensure!(path.is_file(), "no server binary at {}: build it with `cargo build --release` or pass --server-bin", path.display());
    Ok(path)
}

/// A `zaiko serve` child process.
pub struct Spawned {
    child: Option<Child>,
    server_bin: PathBuf,
    pub data_dir: PathBuf,
    pub addr: String,
    extra_args: Vec<String>,
    envs: Vec<(String, String)>,
    admin_token: String,
    /// When the process was started, for the time to ready.
    pub started: Instant,
}

impl Spawned {
    /// Starts `server_bin serve` on `data_dir` (port 0) and waits for its listen line.
    pub fn start(
        server_bin: &Path,
        data_dir: &Path,
        admin_token: &str,
        extra_args: &[String],
        envs: &[(String, String)],
    ) -> anyhow::Result<Spawned> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("server.log")).context("server log")?;
        let started = Instant::now();
        let mut child = Command::new(server_bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", admin_token, "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .env_remove("ZAIKO_LISTEN")
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {} serve", server_bin.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line).context("reading the listen line")?;
        let Some(url) = line.trim().strip_prefix("zaiko listening on ") else {
            let _ = child.kill();
            bail!("the server did not start ({line:?}); see {}", data_dir.join("server.log").display());
        };
        let addr = url.strip_prefix("http://").unwrap_or(url).to_string();
        Ok(Spawned {
            child: Some(child),
            server_bin: server_bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            addr,
            extra_args: extra_args.to_vec(),
            envs: envs.to_vec(),
            admin_token: admin_token.to_string(),
            started,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The binary this server was started from.
    pub fn server_bin(&self) -> &Path {
        &self.server_bin
    }

    /// SIGTERM, then waits for the graceful shutdown to finish.
    pub fn stop(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if let Some(mut child) = self.child.take() {
            let pid = rustix::process::Pid::from_raw(child.id() as i32).context("bad pid")?;
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).context("SIGTERM")?;
            let status = child.wait().context("waiting for the server")?;
            if !status.success() {
                bail!("the server exited with {status}");
            }
        }
        Ok(started.elapsed())
    }

    /// Starts the same server again on the same data dir.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "stop the server first");
        let next = Spawned::start(&self.server_bin, &self.data_dir, &self.admin_token, &self.extra_args, &self.envs)?;
        *self = next;
        Ok(())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The server a benchmark talks to.
pub struct Target {
    pub addr: String,
    pub admin_token: String,
    pub spawned: Option<Spawned>,
    /// A data dir this run created and removes at the end (unless `--keep-data`).
    owned_dir: Option<PathBuf>,
    pid: Option<u32>,
}

impl Target {
    pub async fn open(args: &TargetArgs) -> anyhow::Result<Target> {
        if let Some(url) = &args.url {
            let admin = args.admin_token.clone().context("--url needs --admin-token (or ZAIKO_ADMIN_TOKEN)")?;
            let addr = url.trim_end_matches('/').strip_prefix("http://").context("--url must be http://host:port")?.to_string();
            let t = Target { addr, admin_token: admin, spawned: None, owned_dir: None, pid: args.server_pid };
            wait_ready(&t.addr, Duration::from_secs(10)).await?;
            return Ok(t);
        }
        let admin = args.admin_token.clone().unwrap_or_else(|| format!("bench-admin-{:016x}", rand::random::<u64>()));
        let dir = args.data_root.join(format!("zaiko-bench-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        let server_bin = server_binary(args.server_bin.as_deref())?;
        let spawned = Spawned::start(&server_bin, &dir, &admin, &args.serve_args, &args.serve_env)?;
        wait_ready(&spawned.addr, READY_TIMEOUT).await?;
        eprintln!("bench: spawned zaiko serve pid {} on {} (data dir {})", spawned.pid().unwrap_or(0), spawned.addr, dir.display());
        let owned_dir = (!args.keep_data).then(|| dir.clone());
        Ok(Target { addr: spawned.addr.clone(), admin_token: admin, pid: spawned.pid(), spawned: Some(spawned), owned_dir })
    }

    /// The server's pid when known (spawned, or `--server-pid`).
    pub fn pid(&self) -> Option<u32> {
        self.spawned.as_ref().and_then(Spawned::pid).or(self.pid)
    }

    /// The server's resident set, from `/proc/<pid>/status`.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.status_bytes("VmRSS:")
    }

    /// The file-backed part of it: pages of mapped files (the binary's code, the search
    /// index's segments), which the kernel can drop and read again.
    pub fn rss_file_bytes(&self) -> Option<u64> {
        self.status_bytes("RssFile:")
    }

    fn status_bytes(&self, field: &str) -> Option<u64> {
        procfs::status_bytes(Process::Pid(self.pid()?), field)
    }

    pub fn spawned_mut(&mut self) -> anyhow::Result<&mut Spawned> {
        self.spawned.as_mut().context("this needs --spawn")
    }

    /// Refreshes the address and pid after the spawned server was restarted.
    pub fn follow_restart(&mut self) {
        if let Some(s) = &self.spawned {
            self.addr = s.addr.clone();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        drop(self.spawned.take());
        if let Some(dir) = &self.owned_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Polls `/readyz` every 5 ms until it answers 200.
pub async fn wait_ready(addr: &str, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok((200, _)) = call(addr, "GET", "/readyz", "", None).await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("the server at {addr} was not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The samples of a Prometheus text document, by name (labels included verbatim).
pub type Samples = BTreeMap<String, f64>;

pub fn parse_prometheus(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

pub async fn scrape(addr: &str) -> anyhow::Result<Samples> {
    let (status, body) = call(addr, "GET", "/metrics", "", None).await?;
    anyhow::ensure!(status == 200, "GET /metrics: status {status}");
    Ok(parse_prometheus(&String::from_utf8_lossy(&body)))
}

/// CPU seconds (user + system) this bench process has used so far.
pub fn own_cpu_seconds() -> Option<f64> {
    procfs::cpu_seconds(Process::Current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_binary_is_looked_for_beside_this_one_and_must_exist() {
        let missing = std::env::temp_dir().join("no-such-zaiko-binary");
        let e = server_binary(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains(&missing.display().to_string()) && e.contains("cargo build --release"), "{e}");
        // Test binaries live in target/<profile>/deps/, where no `zaiko` is built.
        let beside = std::env::current_exe().unwrap().with_file_name(format!("zaiko{}", std::env::consts::EXE_SUFFIX));
        match server_binary(None) {
            Ok(found) => assert_eq!(found, beside),
            Err(e) => assert!(e.to_string().contains(&beside.display().to_string()), "{e}"),
        }
        let this = std::env::current_exe().unwrap();
        assert_eq!(server_binary(Some(&this)).unwrap(), this);
    }

    #[test]
    fn prometheus_text_parses_to_samples() {
        let text = "# HELP a x\n# TYPE a counter\na 12\nb{route=\"/x y\"} 0.5\n\nbroken\nc NaN\n";
        let s = parse_prometheus(text);
        assert_eq!(s.get("a"), Some(&12.0));
        assert_eq!(s.get("b{route=\"/x y\"}"), Some(&0.5));
        assert!(s.get("c").is_some_and(|v| v.is_nan()));
        assert_eq!(s.len(), 3);
    }
}
