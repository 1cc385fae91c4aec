//! Snapshots in cluster mode: one call snapshots every partition into the object store;
//! `zaiko snapshot restore --cluster` installs them into a single-node data dir whose
//! server has the same state; a cluster restarted from cold starts from the snapshots
//! and replays only the journal after them.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::failover::{assert_ledger, serial, Load};
use crate::nats::free_port;
use crate::nodes::{retry_until_ok, Cluster, ADMIN, PARTITIONS};
use crate::process::Process;

const SKUS: [&str; 3] = ["S1", "S2", "S3"];

fn stock(c: &Cluster, via: usize, token: &str) -> BTreeMap<String, u64> {
    SKUS.iter()
        .map(|sku| {
            let r = retry_until_ok(|| c.request(via, "GET", &format!("/v1/brands/b-snap/skus/{sku}/stock"), Some(token), None, &[]));
            (sku.to_string(), r.body["locations"]["tsukuba"]["on_hand"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// Runs writers through every node for a while; returns the acknowledged changes.
fn write_for(c: &Cluster, token: &str, how_long: Duration) -> BTreeMap<String, u64> {
    let load = Load::start(c, "b-snap", token, &SKUS, 2);
    std::thread::sleep(how_long);
    load.finish(c, "b-snap", token)
}

#[test]
fn a_cluster_snapshot_restores_into_one_node_and_a_cold_cluster_starts_from_it() {
    let _serial = serial();
    let mut c = Cluster::start(3);
    let (token, _) = c.brand("b-snap", &SKUS);
    let mut acked = write_for(&c, &token, Duration::from_millis(800));
    let before = stock(&c, 0, &token);
    assert_ledger(&acked, &before);

    // One call snapshots every partition and the registry, whichever node is asked.
    let taken = retry_until_ok(|| c.admin(1, "POST", "/v1/admin/snapshots", None)).body;
    let taken = taken["snapshots"].as_array().expect("snapshots").clone();
    assert_eq!(taken.len(), PARTITIONS as usize + 1, "{taken:?}");
    assert!(taken.iter().any(|s| s["partition"] == "registry" && s["seq"].as_u64() > Some(0)), "{taken:?}");
    let listed = retry_until_ok(|| c.admin(2, "GET", "/v1/admin/snapshots", None)).body;
    assert_eq!(listed["snapshots"].as_array().expect("list").len(), taken.len(), "{listed}");

    // Restored into a single node: the same brand, token and stock.
    let dir = c.nodes[0].dir.parent().expect("cluster dir").join("restored");
    let out = Command::new(env!("CARGO_BIN_EXE_zaiko"))
        .args(["snapshot", "restore", "--cluster", &c.nats.urls(), "--data-dir"])
        .arg(&dir)
        .output()
        .expect("run restore");
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let mut single = Process::new(dir.join("server.log"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_zaiko"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--admin-token", ADMIN, "--data-dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn the single node");
    single.started(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.client.get(format!("{base}/readyz")).send().is_ok_and(|r| r.status().as_u16() == 200) {
        assert!(single.exited().is_none(), "the restored node exited: {}", single.log());
        assert!(Instant::now() < deadline, "the restored node is not ready: {}", single.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    for (sku, want) in &before {
        let r = c.client.get(format!("{base}/v1/brands/b-snap/skus/{sku}/stock")).bearer_auth(&token).send().expect("get");
        assert_eq!(r.status().as_u16(), 200);
        let body: serde_json::Value = r.json().expect("json");
        assert_eq!(body["locations"]["tsukuba"]["on_hand"].as_u64(), Some(*want), "{sku} in the restored node");
    }
    single.kill9();

    // More writes, then every node killed and started again: each partition starts from
    // its snapshot and the journal after it, and nothing acknowledged is lost.
    for (sku, n) in write_for(&c, &token, Duration::from_millis(800)) {
        *acked.entry(sku).or_default() += n;
    }
    for i in 0..3 {
        c.nodes[i].kill9();
    }
    for i in 0..3 {
        c.nodes[i].start();
    }
    for i in 0..3 {
        let client = c.client.clone();
        c.nodes[i].wait_ready(&client);
    }
    c.wait_all_owned(Duration::from_secs(120));
    let logs: String = c.nodes.iter().map(|n| n.log()).collect();
    let after = stock(&c, 2, &token);
    if after.iter().any(|(sku, n)| acked.get(sku) != Some(n)) {
        eprintln!("before {before:?} acked {acked:?} after {after:?}");
        for l in logs.lines().filter(|l| l.contains("snapshot") || l.contains("partition") && l.contains("WARN")) {
            eprintln!("{l}");
        }
    }
    assert_ledger(&acked, &after);
    assert!(logs.contains("starting from the partition's snapshot"), "no partition started from its snapshot");
}
