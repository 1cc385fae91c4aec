//! `zaiko cluster status --url URL`: the cluster as one node sees it
//! (`GET /v1/admin/cluster`), for an operator at a terminal. Exit code 0 when every
//! partition has an owner and every node that owns one is alive, 1 when not (a takeover
//! is under way or a node is gone), 2 when the node could not be asked.
//!
//! `zaiko cluster drain --node ID`: marks the node draining and waits until it owns no
//! partition (exit 0), or the wait runs out (exit 1); 2 when the cluster could not be
//! asked. `--undo` ends the drain.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Any node of the cluster, e.g. http://10.0.0.1:8080.
    #[arg(long, env = "ZAIKO_URL")]
    pub url: String,
    /// The admin token (the same on every node).
    #[arg(long, env = "ZAIKO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Also print one line per partition.
    #[arg(long)]
    pub partitions: bool,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Any node of the cluster, e.g. http://10.0.0.1:8080.
    #[arg(long, env = "ZAIKO_URL")]
    pub url: String,
    /// The admin token (the same on every node).
    #[arg(long, env = "ZAIKO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// The node to drain (its --node-id).
    #[arg(long)]
    pub node: String,
    /// End the drain: the node takes its share of partitions again.
    #[arg(long)]
    pub undo: bool,
    /// How long to wait for the node to own nothing, in seconds (0: do not wait).
    #[arg(long, default_value_t = 300)]
    pub wait_s: u64,
}

/// How long the node may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
struct View {
    node: String,
    partitions: Vec<Partition>,
    nodes: Vec<NodeLine>,
}

#[derive(Debug, Deserialize)]
struct Partition {
    id: String,
    owner: Option<Owner>,
    standbys: Vec<String>,
    lsn: u64,
    #[serde(default)]
    standby_lag_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Owner {
    node: String,
    epoch: u64,
}

#[derive(Debug, Deserialize)]
struct NodeLine {
    id: String,
    advertise: String,
    partitions_owned: usize,
    alive: bool,
    #[serde(default)]
    draining: bool,
}

pub fn run(args: &StatusArgs) -> ExitCode {
    match actix_rt::System::new().block_on(fetch(args)) {
        Ok(view) => {
            print!("{}", render(&view, args.partitions));
            if healthy(&view) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("zaiko cluster status: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn drain(args: &DrainArgs) -> ExitCode {
    actix_rt::System::new().block_on(async {
        let base = args.url.trim_end_matches('/');
        let url = format!("{base}/v1/admin/cluster/nodes/{}/drain", args.node);
        let client = awc::Client::builder().timeout(TIMEOUT).finish();
        let req = if args.undo { client.delete(&url) } else { client.put(&url) };
        let answered = match req.bearer_auth(&args.admin_token).send().await {
            Ok(mut res) => {
                let body = res.body().limit(1 << 20).await.unwrap_or_default();
                res.status()
                    .is_success()
                    .then_some(())
                    .ok_or_else(|| format!("{url} answered {}: {}", res.status(), String::from_utf8_lossy(&body)))
            }
            Err(e) => Err(format!("{url}: {e}")),
        };
        if let Err(e) = answered {
            eprintln!("zaiko cluster drain: {e}");
            return ExitCode::from(2);
        }
        if args.undo {
            println!("node {} is no longer draining; it takes its share of partitions as it catches up", args.node);
            return ExitCode::SUCCESS;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(args.wait_s);
        let mut last = None;
        loop {
            match fetch_view(base, &args.admin_token).await {
                Ok(view) => {
                    let owned = view.partitions.iter().filter(|p| p.owner.as_ref().is_some_and(|o| o.node == args.node)).count();
                    if last != Some(owned) {
                        println!("node {}: {owned} partitions still owned", args.node);
                        last = Some(owned);
                    }
                    if owned == 0 {
                        println!("node {} is drained: it owns no partition and can be stopped", args.node);
                        return ExitCode::SUCCESS;
                    }
                }
                Err(e) => eprintln!("zaiko cluster drain: {e} (asking again)"),
            }
            if std::time::Instant::now() >= deadline {
                eprintln!(
                    "zaiko cluster drain: node {} still owns partitions after {} s; see zaiko cluster status --partitions",
                    args.node, args.wait_s
                );
                return ExitCode::from(1);
            }
            actix_rt::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

async fn fetch(args: &StatusArgs) -> Result<View, String> {
    fetch_view(&args.url, &args.admin_token).await
}

async fn fetch_view(base: &str, admin_token: &str) -> Result<View, String> {
    let url = format!("{}/v1/admin/cluster", base.trim_end_matches('/'));
    let client = awc::Client::builder().timeout(TIMEOUT).finish();
    let mut res = client.get(&url).bearer_auth(admin_token).send().await.map_err(|e| format!("{url}: {e}"))?;
    let body = res.body().limit(16 << 20).await.map_err(|e| format!("{url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("{url} answered {}: {}", res.status(), String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} did not answer a cluster view: {e}"))
}

/// Every partition owned, by a node that is alive.
fn healthy(v: &View) -> bool {
    let alive: Vec<&str> = v.nodes.iter().filter(|n| n.alive).map(|n| n.id.as_str()).collect();
    v.partitions.iter().all(|p| p.owner.as_ref().is_some_and(|o| alive.contains(&o.node.as_str())))
}

fn render(v: &View, partitions: bool) -> String {
    let mut out = format!("as seen by node {}\n\nnodes:\n", v.node);
    let mut nodes: Vec<&NodeLine> = v.nodes.iter().collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    for n in nodes {
        let state = match (n.alive, n.draining) {
            (false, _) => "GONE",
            (true, true) => "drain",
            (true, false) => "alive",
        };
        out += &format!("  {:<16} {:<5} {:>4} partitions owned  {}\n", n.id, state, n.partitions_owned, n.advertise);
    }
    let unowned: Vec<&str> = v.partitions.iter().filter(|p| p.owner.is_none()).map(|p| p.id.as_str()).collect();
    let mut by_owner: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &v.partitions {
        if let Some(o) = &p.owner {
            *by_owner.entry(o.node.as_str()).or_default() += 1;
        }
    }
    out += &format!("\npartitions: {} ({} owned", v.partitions.len(), v.partitions.len() - unowned.len());
    if unowned.is_empty() {
        out += ")\n";
    } else {
        out += &format!("; WITHOUT AN OWNER: {})\n", unowned.join(", "));
    }
    if partitions {
        out += "\n  partition  owner            epoch  lsn (this node)  standbys\n";
        for p in &v.partitions {
            let (owner, epoch) = p.owner.as_ref().map_or(("-", 0), |o| (o.node.as_str(), o.epoch));
            let lag = p.standby_lag_entries.map_or(String::new(), |l| format!("  (this node follows, {l} entries behind)"));
            out += &format!("  {:<10} {:<16} {:>5}  {:>15}  {}{lag}\n", p.id, owner, epoch, p.lsn, p.standbys.join(","));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(owner_of_1: Option<&str>, b_alive: bool) -> View {
        let json = serde_json::json!({
            "node": "a",
            "partitions": [
                {"id": "0", "owner": {"node": "a", "advertise": "http://a", "epoch": 3}, "standbys": ["b"], "lsn": 10},
                {"id": "1", "owner": owner_of_1.map(|n| serde_json::json!({"node": n, "advertise": "http://x", "epoch": 1})), "standbys": [], "lsn": 0, "standby_lag_entries": 2},
            ],
            "nodes": [
                {"id": "a", "advertise": "http://a", "partitions_owned": 1, "alive": true},
                {"id": "b", "advertise": "http://b", "partitions_owned": 1, "alive": b_alive},
            ],
        });
        serde_json::from_value(json).expect("a view")
    }

    #[test]
    fn a_partition_without_an_owner_or_with_a_gone_owner_is_unhealthy() {
        assert!(healthy(&view(Some("b"), true)));
        assert!(!healthy(&view(None, true)));
        assert!(!healthy(&view(Some("b"), false)));
    }

    #[test]
    fn the_summary_names_partitions_without_an_owner_and_gone_nodes() {
        let text = render(&view(None, false), true);
        assert!(text.contains("WITHOUT AN OWNER: 1"), "{text}");
        assert!(text.contains("b                GONE"), "{text}");
        assert!(text.contains("2 entries behind"), "{text}");
    }
}
