//! Purging the cluster journal: a partition's entries go once they are both in its
//! oldest kept snapshot and older than the change feed's retention, and what is left —
//! snapshots, the journal after them, the feed checkpoints — gives a node that starts
//! with an empty data dir the same state and the same feed, seq for seq, as the nodes
//! that read the purged entries.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::failover::{assert_ledger, serial, wait_served, Load};
use crate::nodes::{retry_until_ok, Cluster};
use crate::receiver::wait_until;

const SKUS: [&str; 2] = ["P1", "P2"];
const BRAND: &str = "b-purge";

/// The brand's feed as node `via` serves it, from the oldest event it keeps.
fn feed(c: &Cluster, via: usize, token: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = format!("/v1/brands/{BRAND}/events?limit=1000");
    loop {
        let r = retry_until_ok(|| c.request(via, "GET", &path, Some(token), None, &[]));
        let page = r.body["events"].as_array().expect("events").clone();
        if page.is_empty() {
            return events;
        }
        path = format!("/v1/brands/{BRAND}/events?after={}&limit=1000", r.body["next"].as_str().expect("next"));
        events.extend(page);
    }
}

fn write_for(c: &Cluster, token: &str, how_long: Duration) -> BTreeMap<String, u64> {
    let load = Load::start(c, BRAND, token, &SKUS, 2);
    std::thread::sleep(how_long);
    load.finish(c, BRAND, token)
}

fn advance_clocks(c: &Cluster, nodes: &[usize], seconds: i64) {
    for &i in nodes {
        retry_until_ok(|| c.admin(i, "POST", "/v1/admin/clock", Some(json!({ "advance_seconds": seconds }))));
    }
}

#[test]
fn the_journal_is_purged_below_snapshots_and_retention_and_a_new_node_starts_the_same() {
    let _serial = serial();
    let mut c = Cluster::start_with(3, &["--manual-clock", "2026-01-01T00:00:00Z", "--feed-retention-hours", "1"]);
    let (token, partition) = c.brand(BRAND, &SKUS);
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": ["stock.changed"]});
    retry_until_ok(|| c.request(1, "POST", &format!("/v1/brands/{BRAND}/webhooks"), Some(&token), Some(&hook), &[]));
    let mut acked = write_for(&c, &token, Duration::from_millis(800));

    // Two hours later (past the hour of retention and the purge margin), more changes,
    // then snapshots: the first writes are purgeable, the later ones are not.
    advance_clocks(&c, &[0, 1, 2], 2 * 3600);
    for (sku, n) in write_for(&c, &token, Duration::from_millis(400)) {
        *acked.entry(sku).or_default() += n;
    }
    let stream = |c: &Cluster| c.nats.servers.iter().find_map(|s| s.stream_state("ZAIKO_JOURNAL")).expect("the journal stream");
    let (last_before, kept_before) = stream(&c);
    retry_until_ok(|| c.admin(0, "POST", "/v1/admin/snapshots", None));
    let purged = wait_until(Duration::from_secs(60), || stream(&c).1 < kept_before);
    let (last_after, kept_after) = stream(&c);
    assert!(purged, "nothing was purged: {kept_after} of {last_after} entries kept");
    assert_eq!(last_after, last_before, "a purge adds nothing");
    eprintln!("journal: {kept_before} entries kept before the purge, {kept_after} after");
    let before: Vec<Value> = feed(&c, 0, &token);
    assert_eq!(before.first().and_then(|e| e["seq"].as_u64()), Some(1), "node 0 has read every event: {:?}", before.first());

    // A node with an empty data dir: its feed starts at the partition's checkpoint, with
    // the seqs every other node gives, and holds every event after it.
    c.nodes[2].kill9();
    std::fs::remove_dir_all(c.nodes[2].dir.join("data")).expect("empty the data dir");
    c.nodes[2].start();
    let client = c.client.clone();
    c.nodes[2].wait_ready(&client);
    let fresh = feed(&c, 2, &token);
    let first = fresh.first().and_then(|e| e["seq"].as_u64()).expect("the new node's feed has events");
    assert!(first > 1, "the new node's feed starts after the purged entries' events, at seq {first}");
    let same: Vec<&Value> = before.iter().filter(|e| e["seq"].as_u64() >= Some(first)).collect();
    assert_eq!(fresh.len(), same.len(), "the new node's feed has another number of events after seq {first}");
    for (got, want) in fresh.iter().zip(&same) {
        assert_eq!(&got, want, "the new node's event against node 0's");
    }

    // Its state comes from the snapshots and the journal after them: with the other two
    // nodes gone it takes every partition over and has every acknowledged change.
    c.nodes[0].kill9();
    c.nodes[1].kill9();
    wait_served(&c, 2, BRAND, &token);
    let stock: BTreeMap<String, u64> = SKUS
        .iter()
        .map(|sku| {
            let r = retry_until_ok(|| c.request(2, "GET", &format!("/v1/brands/{BRAND}/skus/{sku}/stock"), Some(&token), None, &[]));
            assert_eq!(r.node.as_deref(), Some("n3"), "served by the last node: {:?}", r.node);
            (sku.to_string(), r.body["locations"]["tsukuba"]["on_hand"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_ledger(&acked, &stock);
    eprintln!("partition {partition}: {} events before the checkpoint, {} after", first - 1, fresh.len());

    // And its feed goes on densely from there.
    let change = json!({"changes": [{"sku": "P1", "location": "tsukuba", "op": "adjust", "delta": 1}]});
    retry_until_ok(|| {
        c.request(
            2,
            "POST",
            &format!("/v1/brands/{BRAND}/stock/changes"),
            Some(&token),
            Some(&change),
            &[("idempotency-key", "after-purge")],
        )
    });
    let after = feed(&c, 2, &token);
    let last = fresh.last().and_then(|e| e["seq"].as_u64()).expect("seq");
    assert_eq!(after.last().and_then(|e| e["seq"].as_u64()), Some(last + 1), "the next event is the next seq");
}
