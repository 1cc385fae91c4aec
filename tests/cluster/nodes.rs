#![allow(dead_code)] // shared by every cluster test module; not each uses every helper
//! Real `zaiko serve --cluster` processes on loopback, over a [`NatsCluster`]: start,
//! kill -9, SIGSTOP/SIGCONT, restart; a blocking HTTP client; the cluster view.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nats::{free_port, NatsCluster};
use crate::process::Process;

pub const ADMIN: &str = "cluster-test-admin-token-0123";
/// The lease the test clusters run with: short, so that takeovers are quick.
pub const LEASE_MS: u64 = 1500;
/// Partitions of the test clusters.
pub const PARTITIONS: u32 = 8;
const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Node {
    pub id: String,
    pub port: u16,
    pub dir: PathBuf,
    urls: String,
    /// Flags added to `serve`.
    args: Vec<String>,
    process: Process,
}

impl Node {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    pub fn start(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("node dir");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_zaiko"))
            .arg("serve")
            .args(["--cluster", &self.urls, "--node-id", &self.id])
            .args(["--advertise", &self.base(), "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--admin-token", ADMIN, "--lease-ms", &LEASE_MS.to_string(), "--partitions", &PARTITIONS.to_string()])
            .args(["--brand-rps", "100000", "--brand-burst", "100000"])
            .args(&self.args)
            // The tests' webhook receivers listen on loopback.
            .arg("--webhook-allow-private")
            .env("ZAIKO_LOG", "info")
            .env("ZAIKO_SHARDS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn zaiko");
        self.process.started(child);
    }

    pub fn wait_ready(&mut self, client: &reqwest::blocking::Client) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if client.get(format!("{}/readyz", self.base())).send().is_ok_and(|r| r.status().as_u16() == 200) {
                return;
            }
            if let Some(status) = self.process.exited() {
                panic!("{} exited with {status}; log:\n{}", self.id, self.log());
            }
            assert!(Instant::now() < deadline, "{} not ready in time; log:\n{}", self.id, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    pub fn signal(&self, sig: &str) {
        self.process.signal(sig);
    }
}

/// A response: status, the headers the cluster tests look at, the body as JSON.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub node: Option<String>,
    pub partition: Option<String>,
    pub lsn: Option<u64>,
}

/// 3 nats-server and 3 zaiko nodes on loopback.
pub struct Cluster {
    pub nats: NatsCluster,
    pub nodes: Vec<Node>,
    pub client: reqwest::blocking::Client,
    _tmp: tempfile::TempDir,
}

/// Lines of each node's log shown when a test fails.
const LOG_TAIL_LINES: usize = 80;

impl Drop for Cluster {
    /// A failing test shows the end of every node's log: a cluster failure is rarely
    /// explained by the answer the test saw alone (CI keeps nothing else).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for n in &self.nodes {
            let log = n.log();
            // Without the per-request lines: under a retry loop they fill the tail.
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("request failed")).collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!("--- the last {} lines of {}'s log ---\n{}", tail.len(), n.id, tail.join("\n"));
        }
    }
}

impl Cluster {
    pub fn start(nodes: usize) -> Cluster {
        Cluster::start_with(nodes, &[])
    }

    /// A cluster whose nodes all run with `args` added to `serve`.
    pub fn start_with(nodes: usize, args: &[&str]) -> Cluster {
        let nats = NatsCluster::start(3);
        let tmp = tempfile::tempdir().expect("tempdir");
        let urls = nats.urls();
        let nodes: Vec<Node> = (1..=nodes)
            .map(|i| {
                let dir = tmp.path().join(format!("n{i}"));
                let args = args.iter().map(|a| a.to_string()).collect();
                Node {
                    id: format!("n{i}"),
                    port: free_port(),
                    process: Process::new(dir.join("server.log")),
                    dir,
                    urls: urls.clone(),
                    args,
                }
            })
            .collect();
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let mut c = Cluster { nats, nodes, client, _tmp: tmp };
        for n in &mut c.nodes {
            n.start();
        }
        for i in 0..c.nodes.len() {
            let client = c.client.clone();
            c.nodes[i].wait_ready(&client);
        }
        c.wait_all_owned(Duration::from_secs(120));
        c
    }

    pub fn request(
        &self,
        node: usize,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = format!("{}{path}", self.nodes[node].base());
        let mut req = self.client.request(method.parse().expect("method"), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        match req.send() {
            Ok(r) => {
                let status = r.status().as_u16();
                let h = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                let (node, partition, lsn) = (h("x-zaiko-node"), h("x-zaiko-partition"), h("x-zaiko-lsn").and_then(|v| v.parse().ok()));
                let text = r.text().unwrap_or_default();
                Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), node, partition, lsn }
            }
            // A node that is down: no answer at all.
            Err(_) => Resp { status: 0, body: Value::Null, node: None, partition: None, lsn: None },
        }
    }

    /// A request with a raw body of the given content type.
    pub fn request_raw(&self, node: usize, method: &str, path: &str, token: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let url = format!("{}{path}", self.nodes[node].base());
        let req =
            self.client.request(method.parse().expect("method"), url).bearer_auth(token).header("content-type", content_type).body(body);
        match req.send() {
            Ok(r) => {
                let status = r.status().as_u16();
                let node = r.headers().get("x-zaiko-node").and_then(|v| v.to_str().ok()).map(str::to_string);
                let text = r.text().unwrap_or_default();
                Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), node, partition: None, lsn: None }
            }
            Err(_) => Resp { status: 0, body: Value::Null, node: None, partition: None, lsn: None },
        }
    }

    pub fn admin(&self, node: usize, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.request(node, method, path, Some(ADMIN), body.as_ref(), &[])
    }

    /// The index of a running node.
    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_running())
    }

    /// The cluster view as a running node sees it.
    pub fn view(&self) -> Value {
        for i in self.running() {
            let r = self.admin(i, "GET", "/v1/admin/cluster", None);
            if r.status == 200 {
                return r.body;
            }
        }
        panic!("no running node answers /v1/admin/cluster");
    }

    /// Waits until every partition has an owner among the running nodes.
    pub fn wait_all_owned(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.view();
            let live: Vec<String> = self.running().map(|i| self.nodes[i].id.clone()).collect();
            let parts = view["partitions"].as_array().expect("partitions");
            if parts.iter().all(|p| p["owner"]["node"].as_str().is_some_and(|o| live.iter().any(|l| l == o))) {
                return;
            }
            assert!(Instant::now() < deadline, "not every partition got a live owner: {view}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node id that owns `partition` (as the view says).
    pub fn owner_of_partition(&self, partition: &str) -> Option<String> {
        let view = self.view();
        view["partitions"].as_array()?.iter().find(|p| p["id"] == partition)?["owner"]["node"].as_str().map(str::to_string)
    }

    pub fn index_of(&self, node_id: &str) -> usize {
        self.nodes.iter().position(|n| n.id == node_id).expect("node id")
    }

    /// Sets up a brand, a location and SKUs; returns the brand's token and its partition.
    pub fn brand(&self, brand: &str, skus: &[&str]) -> (String, String) {
        retry_until_ok(|| self.admin(0, "PUT", "/v1/locations/tsukuba", Some(json!({"name":"つくば","kind":"warehouse"}))));
        retry_until_ok(|| {
            let r = self.admin(0, "POST", "/v1/brands", Some(json!({"id": brand, "name": brand})));
            if r.status == 409 {
                Resp { status: 201, ..r }
            } else {
                r
            }
        });
        let token = retry_until_ok(|| self.admin(1, "POST", &format!("/v1/brands/{brand}/tokens"), None)).body["token"]
            .as_str()
            .expect("token")
            .to_string();
        let mut partition = String::new();
        for sku in skus {
            let r = retry_until_ok(|| {
                self.request(
                    2,
                    "PUT",
                    &format!("/v1/brands/{brand}/skus/{sku}"),
                    Some(&token),
                    Some(&json!({"name": sku, "price": 100})),
                    &[],
                )
            });
            partition = r.partition.expect("x-zaiko-partition");
        }
        (token, partition)
    }
}

/// Retries a request while it answers 503 or no node answers (a takeover, a node
/// restarting); returns the first other answer, which must be 2xx.
#[track_caller]
pub fn retry_until_ok(mut f: impl FnMut() -> Resp) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = f();
        if r.status != 503 && r.status != 0 {
            assert!((200..300).contains(&r.status), "unexpected answer {}: {}", r.status, r.body);
            return r;
        }
        assert!(Instant::now() < deadline, "still {} after 60 s: {}", r.status, r.body);
        std::thread::sleep(Duration::from_millis(20));
    }
}
