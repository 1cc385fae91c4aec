//! Planned handovers on real processes: a node drained under load hands every partition
//! it owns over and keeps answering (forwarding), and undrained it takes its share back
//! — the same handover a node that joins or comes back goes through. Writers see
//! nothing but 2xx and brief 503s, and every acknowledged change is in the stock once.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::failover::{assert_ledger, on_hand, serial, Load};
use crate::nodes::{Cluster, ADMIN};

/// Waits until every partition is owned where it belongs (`preferred`: the best-ranked
/// live node that is not draining). Nodes started one after the other first take what
/// nobody owned, then hand each partition to its node.
fn wait_balanced(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let view = c.view();
        let misplaced: Vec<String> = view["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .filter(|p| p["owner"]["node"] != p["preferred"])
            .map(|p| format!("{} on {} (belongs on {})", p["id"], p["owner"]["node"], p["preferred"]))
            .collect();
        if misplaced.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for n in &c.nodes {
                let log = n.log();
                let lines: Vec<&str> = log.lines().filter(|l| l.contains("cluster::node")).collect();
                eprintln!("--- {} ---\n{}", n.id, lines[lines.len().saturating_sub(40)..].join("\n"));
            }
            panic!("partitions still misplaced after 90 s: {misplaced:?}\n{view}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Partitions each node owns, as the cluster view says.
fn owned_by(c: &Cluster, node: &str) -> usize {
    c.view()["partitions"].as_array().expect("partitions").iter().filter(|p| p["owner"]["node"] == node).count()
}

fn drain(c: &Cluster, node: &str, undo: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zaiko"));
    cmd.args(["cluster", "drain", "--url", &c.nodes[0].base(), "--admin-token", ADMIN, "--node", node, "--wait-s", "90"]);
    if undo {
        cmd.arg("--undo");
    }
    cmd.output().expect("run zaiko cluster drain")
}

#[test]
fn a_drained_node_hands_its_partitions_over_under_load_and_takes_them_back() {
    let _serial = serial();
    let skus = ["D1", "D2", "D3", "D4"];
    let c = Cluster::start(3);
    let (token, partition) = c.brand("b-drain", &skus);
    wait_balanced(&c);
    let owner = c.owner_of_partition(&partition).expect("an owner");
    let share = owned_by(&c, &owner);
    assert!(share > 0);
    let load = Load::start_with(&c, "b-drain", &token, &skus, 3, true);
    std::thread::sleep(Duration::from_millis(300));

    let out = drain(&c, &owner, false);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "drain failed: {said} {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("is drained"), "{said}");
    assert_eq!(owned_by(&c, &owner), 0, "the drained node owns nothing");
    let view = c.view();
    let me = view["nodes"].as_array().unwrap().iter().find(|n| n["id"] == owner.as_str()).cloned().expect("the node");
    assert_eq!((me["alive"].as_bool(), me["draining"].as_bool()), (Some(true), Some(true)), "{me}");
    let new_owner = c.owner_of_partition(&partition).expect("the brand's partition has an owner");
    assert_ne!(new_owner, owner);
    c.wait_all_owned(Duration::from_secs(30));
    // Writes go on through the drained node too (it forwards).
    std::thread::sleep(Duration::from_millis(500));

    let out = drain(&c, &owner, true);
    assert!(out.status.success(), "undrain failed: {}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.view()["nodes"].as_array().unwrap().iter().any(|n| n["id"] == owner.as_str() && n["draining"] == true) {
        assert!(Instant::now() < deadline, "the node still shows as draining");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_balanced(&c);
    assert_eq!(owned_by(&c, &owner), share, "the undrained node has its share back");
    std::thread::sleep(Duration::from_millis(300));
    let acked = load.finish(&c, "b-drain", &token);
    let stock = on_hand(&c, "b-drain", &token, &skus);
    assert_ledger(&acked, &stock);
    let handovers: u64 = c
        .running()
        .map(|i| {
            let url = format!("{}/metrics", c.nodes[i].base());
            let text = c.client.get(url).bearer_auth(ADMIN).send().and_then(|r| r.text()).unwrap_or_default();
            text.lines()
                .find(|l| l.starts_with("zaiko_cluster_handovers_total"))
                .and_then(|l| l.split(' ').nth(1)?.parse().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(handovers >= 2 * share as u64, "{share} partitions drained and taken back, but {handovers} planned handovers counted");
}
