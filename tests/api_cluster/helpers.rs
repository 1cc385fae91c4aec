#![allow(dead_code)] // the api tests' helper surface; not each module uses every helper
//! The api tests' `TestServer`, as a cluster: one `nats-server` (2.15.1) and three
//! `zaiko serve --cluster` nodes on loopback. Every request to a brand's routes goes
//! through a node that does not own the brand's partition (the cluster view, refreshed
//! as partitions move), every other request through node 1 of 3. A restart kills every
//! node with SIGKILL and starts them all again on the same JetStream.
//!
//! The api modules are compiled here unchanged (`main.rs`): the same assertions, so
//! the same results as on one node.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nats::{free_port, NatsCluster};
use crate::process::Process;

#[macro_use]
#[path = "../support/api_client.rs"]
mod api_client;
use api_client::to_resp;
pub use api_client::{rand_suffix, Resp};

pub const ADMIN: &str = "test-admin-token-0123456789";
const NODES: usize = 3;
const PARTITIONS: u32 = 8;
const LEASE_MS: u64 = 1500;
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a request is retried while its partition has no owner or is being indexed
/// on a new one (503 with `Retry-After`, what a client retries).
const RETRY_FOR: Duration = Duration::from_secs(30);

struct ClusterNode {
    id: String,
    port: u16,
    dir: PathBuf,
    process: Process,
}

impl ClusterNode {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

pub struct TestServer {
    nats: NatsCluster,
    nodes: Vec<ClusterNode>,
    /// Node 0's URL (the node that answers what is not a brand's).
    pub base: String,
    pub data_dir: PathBuf,
    _tmp: tempfile::TempDir,
    pub client: reqwest::blocking::Client,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// The owner of each partition, as last read, and when.
    owners: Mutex<(Vec<Option<String>>, Option<Instant>)>,
}

#[derive(Default)]
pub struct Options {
    pub data_dir: Option<PathBuf>,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub open_files: Option<(u64, u64)>,
}

impl TestServer {
    pub fn spawn() -> TestServer {
        TestServer::spawn_with(Options::default())
    }

    pub fn spawn_with(opts: Options) -> TestServer {
        assert!(opts.data_dir.is_none() && opts.open_files.is_none(), "not in cluster mode");
        let nats = NatsCluster::start(1);
        let tmp = tempfile::tempdir().expect("tempdir");
        let nodes = (1..=NODES)
            .map(|i| {
                let dir = tmp.path().join(format!("n{i}"));
                ClusterNode { id: format!("n{i}"), port: free_port(), process: Process::new(dir.join("server.log")), dir }
            })
            .collect::<Vec<_>>();
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let mut s = TestServer {
            base: nodes[0].base(),
            data_dir: nodes[0].dir.join("data"),
            nats,
            nodes,
            _tmp: tmp,
            client,
            args: opts.args,
            envs: opts.envs,
            owners: Mutex::new((Vec::new(), None)),
        };
        s.start();
        s
    }

    /// Starts every node and waits until each is ready and every partition is owned.
    pub fn start(&mut self) {
        let urls = self.nats.urls();
        for n in &mut self.nodes {
            std::fs::create_dir_all(&n.dir).expect("node dir");
            let log = std::fs::OpenOptions::new().create(true).append(true).open(n.dir.join("server.log")).expect("log file");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_zaiko"));
            cmd.arg("serve")
                .args(["--cluster", &urls, "--node-id", &n.id, "--cluster-replicas", "1"])
                .args(["--advertise", &n.base(), "--listen", &format!("127.0.0.1:{}", n.port)])
                .arg("--data-dir")
                .arg(n.dir.join("data"))
                .args(["--admin-token", ADMIN, "--lease-ms", &LEASE_MS.to_string(), "--partitions", &PARTITIONS.to_string()])
                .args(&self.args)
                .env("ZAIKO_LOG", "info")
                .env("ZAIKO_SHARDS", "3")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log));
            for (k, v) in &self.envs {
                cmd.env(k, v);
            }
            n.process.started(cmd.spawn().expect("spawn zaiko"));
        }
        self.wait_ready();
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        for i in 0..self.nodes.len() {
            while !self.client.get(format!("{}/readyz", self.nodes[i].base())).send().is_ok_and(|r| r.status().as_u16() == 200) {
                if let Some(status) = self.nodes[i].process.exited() {
                    panic!("{} exited with {status}; log:\n{}", self.nodes[i].id, self.nodes[i].process.log());
                }
                assert!(Instant::now() < deadline, "{} not ready in time; log:\n{}", self.nodes[i].id, self.nodes[i].process.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        loop {
            let owners = self.read_owners();
            if owners.len() == PARTITIONS as usize && owners.iter().all(Option::is_some) {
                *self.owners.lock().unwrap() = (owners, Some(Instant::now()));
                return;
            }
            assert!(Instant::now() < deadline, "not every partition got an owner: {owners:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn read_owners(&self) -> Vec<Option<String>> {
        let Ok(r) = self.client.get(format!("{}/v1/admin/cluster", self.base)).bearer_auth(ADMIN).send() else { return Vec::new() };
        let view: Value = r.json().unwrap_or(Value::Null);
        (0..PARTITIONS)
            .map(|p| {
                let part = view["partitions"].as_array()?.iter().find(|v| v["id"] == p.to_string())?;
                part["owner"]["node"].as_str().map(str::to_string)
            })
            .collect()
    }

    /// The node a request to `path` goes through: for a brand's routes, one that does
    /// not own the brand's partition.
    fn node_for(&self, path: &str) -> usize {
        let mut segments = path.split('?').next().unwrap_or("").split('/').skip(1);
        let brand = match (segments.next(), segments.next(), segments.next()) {
            (Some("v1"), Some("brands"), Some(b)) if !b.is_empty() => b,
            _ => return 0,
        };
        let partition = zaiko::cluster::engine::partition_of(brand, PARTITIONS) as usize;
        let mut owners = self.owners.lock().unwrap();
        if owners.1.is_none_or(|at| at.elapsed() > Duration::from_millis(500)) {
            let fresh = self.read_owners();
            if fresh.len() == PARTITIONS as usize {
                *owners = (fresh, Some(Instant::now()));
            }
        }
        let owner = owners.0.get(partition).cloned().flatten();
        (0..self.nodes.len()).find(|i| Some(&self.nodes[*i].id) != owner.as_ref()).expect("a non-owner")
    }

    pub fn log(&self) -> String {
        self.nodes.iter().map(|n| format!("--- {}\n{}", n.id, n.process.log())).collect()
    }

    pub fn pid(&self) -> u32 {
        self.nodes[0].process.pid()
    }

    /// SIGKILL every node, and reap.
    pub fn kill9(&mut self) {
        for n in &mut self.nodes {
            n.process.kill9();
        }
    }

    pub fn sigterm(&self) {
        for n in &self.nodes {
            n.process.signal("TERM");
        }
    }

    /// Waits for every node to exit on its own; the first node's exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let mut first = None;
        for n in &mut self.nodes {
            loop {
                if let Some(s) = n.process.exited() {
                    first.get_or_insert(s);
                    break;
                }
                assert!(Instant::now() < deadline, "{} did not exit in time", n.id);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        first.expect("three nodes")
    }

    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
    }

    pub fn clear_env(&mut self) {
        self.envs.clear();
    }

    /// Every node killed -9 and started again: the state is the journal's.
    pub fn restart(&mut self) {
        self.kill9();
        self.start();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.nodes[self.node_for(path)].base(), path)
    }

    /// Sends the request, again while the answer is a 503 a client retries after
    /// `Retry-After` because of the cluster (a partition without an owner, or being
    /// indexed on a new one) — never one the api tests provoke.
    fn send(&self, build: impl Fn(&str) -> reqwest::blocking::RequestBuilder, path: &str) -> Resp {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let r = to_resp(build(&self.url(path)).send().expect("request"));
            let moving = r.code() == "partition_unavailable"
                || (r.code() == "not_ready"
                    && r.body["detail"].as_str().is_some_and(|d| d.contains("being indexed") || d.contains("being built")));
            if r.status != 503 || !moving || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>, headers: &[(&str, &str)]) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        self.send(
            |url| {
                let mut rb = self.client.request(method.clone(), url);
                if let Some(t) = token {
                    rb = rb.bearer_auth(t);
                }
                for (k, v) in headers {
                    rb = rb.header(*k, *v);
                }
                if let Some(b) = body {
                    rb = rb.json(b);
                }
                rb
            },
            path,
        )
    }

    pub fn try_post_key(&self, path: &str, token: &str, key: &str, body: &Value) -> Option<Resp> {
        let r = self.client.post(self.url(path)).bearer_auth(token).header("Idempotency-Key", key).json(body).send().ok()?;
        Some(to_resp(r))
    }

    pub fn raw(&self, method: &str, path: &str, token: Option<&str>, body: Vec<u8>, headers: &[(&str, &str)]) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        self.send(
            |url| {
                let mut rb = self.client.request(method.clone(), url).body(body.clone());
                if let Some(t) = token {
                    rb = rb.bearer_auth(t);
                }
                for (k, v) in headers {
                    rb = rb.header(*k, *v);
                }
                rb
            },
            path,
        )
    }

    /// Where the journal stands, cluster-wide: the `ZAIKO_JOURNAL` stream's last
    /// sequence and message count. Every durable change of any partition is an entry
    /// of it, so "nothing changed" is these two numbers unchanged.
    pub fn journal(&self) -> (u64, u64) {
        self.nats.servers[0].stream_state("ZAIKO_JOURNAL").expect("the journal stream's state")
    }

    /// Waits until every brand's searches (SKUs and shipments) cover its partition's
    /// journal as it stands now: `min_lsn` is a partition's, so each brand is asked
    /// with its partition's durable LSN from the owner's cluster view.
    pub fn wait_search_caught_up(&self) {
        let mut durable = vec![0u64; PARTITIONS as usize];
        for n in &self.nodes {
            let view: Value = self
                .client
                .get(format!("{}/v1/admin/cluster", n.base()))
                .bearer_auth(ADMIN)
                .send()
                .expect("view")
                .json()
                .expect("view json");
            for p in view["partitions"].as_array().into_iter().flatten() {
                let owned_here = p["owner"]["node"].as_str() == Some(n.id.as_str());
                if let (true, Some(i), Some(lsn)) = (owned_here, p["id"].as_str().and_then(|i| i.parse::<usize>().ok()), p["lsn"].as_u64())
                {
                    durable[i] = durable[i].max(lsn);
                }
            }
        }
        let brands = self.get("/v1/brands?limit=1000", ADMIN);
        for b in brands.body["brands"].as_array().into_iter().flatten() {
            let id = b["id"].as_str().expect("brand id");
            let lsn = durable[zaiko::cluster::engine::partition_of(id, PARTITIONS) as usize];
            for path in ["/v1/search/skus", "/v1/search/shipments"] {
                let r = self.get(&format!("{path}?brand={id}&min_lsn={lsn}"), ADMIN);
                assert_eq!(r.status, 200, "{path} of {id} at {lsn}: {r:?}");
            }
        }
    }

    api_requests!();
}

/// Every event of brand b1's feed, in order.
pub fn whole_feed(s: &TestServer, t: &str) -> Vec<Value> {
    s.whole_feed(t)
}
