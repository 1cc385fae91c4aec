//! The change feed and webhooks in cluster mode: every node builds every partition's
//! feed from the replicated journal, so the feed read from any node is the same — the
//! same events with the same seqs, ids and cursors — and a failover renumbers, skips or
//! repeats nothing; the owner of a brand's partition delivers its webhooks, and a new
//! owner goes on from the position the old one handed over. Checked against what the
//! writers were told.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::failover::{assert_ledger, on_hand, serial, wait_served, Load};
use crate::nodes::{retry_until_ok, Cluster};
use crate::receiver::{first_arrivals, signature_ok, wait_until, Receiver};

/// The whole feed of `brand` as node `via` serves it, page by page.
fn read_feed(c: &Cluster, via: usize, brand: &str, token: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = "0".to_string();
    loop {
        let path = format!("/v1/brands/{brand}/events?after={after}&limit=1000");
        let r = retry_until_ok(|| c.request(via, "GET", &path, Some(token), None, &[]));
        assert_eq!(r.node, None, "a feed page is served by the node asked, never forwarded");
        let page = r.body["events"].as_array().expect("events").clone();
        if page.is_empty() {
            return events;
        }
        after = r.body["next"].as_str().expect("next").to_string();
        events.extend(page);
    }
}

#[test]
fn the_feed_is_the_same_on_every_node_through_owner_kills() {
    let _serial = serial();
    let skus = ["F1", "F2", "F3"];
    let mut c = Cluster::start(3);
    let (token, partition) = c.brand("b-feed", &skus);
    let receiver = Receiver::start();
    let hook = json!({"url": receiver.url, "events": ["stock.changed"]});
    let created = retry_until_ok(|| c.request(1, "POST", "/v1/brands/b-feed/webhooks", Some(&token), Some(&hook), &[]));
    let (hook_id, secret) = (created.body["id"].as_str().unwrap().to_string(), created.body["secret"].as_str().unwrap().to_string());
    let load = Load::start(&c, "b-feed", &token, &skus, 3);
    for round in 0..2 {
        let owner = c.owner_of_partition(&partition).expect("the partition has an owner");
        let idx = c.index_of(&owner);
        std::thread::sleep(Duration::from_millis(400));
        c.nodes[idx].kill9();
        let took = wait_served(&c, (idx + 1) % 3, "b-feed", &token);
        eprintln!("round {round}: killed {owner}; served again after {took:?}");
        c.nodes[idx].start();
        let client = c.client.clone();
        c.nodes[idx].wait_ready(&client);
    }
    std::thread::sleep(Duration::from_millis(300));
    let acked = load.finish(&c, "b-feed", &token);
    let stock = on_hand(&c, "b-feed", &token, &skus);
    assert_ledger(&acked, &stock);

    let feeds: Vec<Vec<Value>> = (0..3).map(|i| read_feed(&c, i, "b-feed", &token)).collect();
    for (i, f) in feeds.iter().enumerate().skip(1) {
        assert_eq!(f.len(), feeds[0].len(), "node {i} has another number of events than node 0");
        assert!(f == &feeds[0], "node {i}'s feed differs from node 0's");
    }
    let feed = &feeds[0];
    // Dense seqs from 1, ids unique.
    for (n, e) in feed.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(n as u64 + 1), "seqs are dense: {e}");
    }
    let ids: std::collections::BTreeSet<&str> = feed.iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), feed.len(), "an event id repeats");
    assert_eq!(feed[0]["type"], "brand.created");
    // Every acknowledged change is one stock.changed event; the last carries the stock.
    let mut changes: BTreeMap<String, u64> = BTreeMap::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for e in feed.iter().filter(|e| e["type"] == "stock.changed") {
        let sku = e["data"]["sku"].as_str().expect("sku").to_string();
        *changes.entry(sku.clone()).or_default() += 1;
        last.insert(sku, e["data"]["locations"]["tsukuba"]["on_hand"].as_u64().expect("on_hand"));
    }
    assert_eq!(changes, acked, "stock.changed events per SKU against the acknowledged changes");
    assert_eq!(last, stock, "the last event of each SKU against its stock");
    // A SKU's history (served by the owner, from its build of the feed) through any node.
    for via in 0..3 {
        let h = retry_until_ok(|| c.request(via, "GET", "/v1/brands/b-feed/skus/F1/history?limit=1000", Some(&token), None, &[]));
        let n = h.body["changes"].as_array().map_or(0, Vec::len) as u64;
        assert_eq!(n, acked["F1"], "F1's history through node {via}: {}", h.body);
    }

    // Every stock.changed event reached the receiver at least once, signed, with the
    // event's own id; a re-delivery carries the same body.
    let wanted: BTreeMap<String, &Value> =
        feed.iter().filter(|e| e["type"] == "stock.changed").map(|e| (e["id"].as_str().unwrap().to_string(), e)).collect();
    let all_in = wait_until(Duration::from_secs(60), || {
        let got: std::collections::BTreeSet<String> = receiver.accepted().into_iter().map(|r| r.id).collect();
        wanted.keys().all(|id| got.contains(id))
    });
    let got = receiver.accepted();
    let firsts = first_arrivals(&got);
    let missing: Vec<&String> = wanted.keys().filter(|id| !firsts.iter().any(|r| &r.id == *id)).collect();
    assert!(all_in, "{} of {} events never reached the receiver, e.g. {:?}", missing.len(), wanted.len(), missing.first());
    for r in &got {
        assert!(signature_ok(&secret, r), "a delivery's signature is wrong");
        let event = wanted.get(&r.id).unwrap_or_else(|| panic!("a delivery of an event the feed does not have: {}", r.id));
        assert_eq!(&&r.json, event, "a delivery's body against the feed's event");
    }
    let again = got.len() - firsts.len();
    eprintln!("{} events delivered, {again} of them again after a failover", firsts.len());
    let deliveries = retry_until_ok(|| {
        c.request(2, "GET", &format!("/v1/brands/b-feed/webhooks/{hook_id}/deliveries?status=dead"), Some(&token), None, &[])
    });
    assert_eq!(deliveries.body["deliveries"].as_array().map(Vec::len), Some(0), "nothing is dead: {}", deliveries.body);
}
