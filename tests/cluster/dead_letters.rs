//! Dead webhook deliveries in cluster mode: the owner of a brand's partition hands its
//! dead deliveries over with the delivered watermark, so that after it is killed the
//! next owner lists them and redrives them.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::failover::{serial, wait_served};
use crate::nodes::{retry_until_ok, Cluster};
use crate::receiver::{wait_until, Answer, Receiver};

const BRAND: &str = "b-dead";

/// The seqs of the subscription's dead deliveries, as node `via` lists them.
fn dead(c: &Cluster, via: usize, token: &str, hook: &str) -> Vec<u64> {
    let path = format!("/v1/brands/{BRAND}/webhooks/{hook}/deliveries?status=dead&limit=100");
    let r = retry_until_ok(|| c.request(via, "GET", &path, Some(token), None, &[]));
    r.body["deliveries"].as_array().expect("deliveries").iter().map(|d| d["seq"].as_u64().expect("seq")).collect()
}

/// The dead deliveries the owner handed over, as the cluster's KV bucket holds them.
fn handed_over(c: &Cluster, hook: &str) -> usize {
    let key: String = std::iter::once("dl.".to_string()).chain(hook.bytes().map(|b| format!("{b:02x}"))).collect();
    let urls = c.nats.urls();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let addrs: Vec<async_nats::ServerAddr> = urls.split(',').map(|u| u.parse().expect("a nats url")).collect();
        let client = match async_nats::connect(addrs.as_slice()).await {
            Ok(c) => c,
            Err(e) => panic!("connect: {e}"),
        };
        let js = async_nats::jetstream::new(client);
        let kv = js.get_key_value("ZAIKO_WEBHOOKS").await.expect("the webhooks bucket");
        match kv.get(&key).await {
            Ok(Some(v)) => serde_json::from_slice::<Vec<Value>>(&v).expect("dead deliveries").len(),
            Ok(None) => 0,
            Err(e) => panic!("get {key}: {e}"),
        }
    })
}

#[test]
fn dead_deliveries_survive_their_owner_and_the_next_one_redrives_them() {
    let _serial = serial();
    // One retry, 50 ms after the first attempt: a refused event is dead at once.
    let mut c = Cluster::start_with(3, &["--webhook-retry-schedule", "50ms"]);
    let (token, partition) = c.brand(BRAND, &["D1"]);
    let receiver = Receiver::start();
    receiver.set_policy(|_| Answer::status(500));
    let hook = json!({"url": receiver.url, "events": ["stock.changed"]});
    let created = retry_until_ok(|| c.request(0, "POST", &format!("/v1/brands/{BRAND}/webhooks"), Some(&token), Some(&hook), &[]));
    let id = created.body["id"].as_str().expect("id").to_string();
    for n in 0..3 {
        let change = json!({"changes": [{"sku": "D1", "location": "tsukuba", "op": "adjust", "delta": 1}]});
        let key = format!("dead-{n}");
        retry_until_ok(|| {
            c.request(0, "POST", &format!("/v1/brands/{BRAND}/stock/changes"), Some(&token), Some(&change), &[("idempotency-key", &key)])
        });
    }
    let owner = c.index_of(&c.owner_of_partition(&partition).expect("an owner"));
    assert!(wait_until(Duration::from_secs(60), || dead(&c, owner, &token, &id).len() == 3), "three deliveries die on the owner");
    let before = dead(&c, owner, &token, &id);
    assert!(wait_until(Duration::from_secs(60), || handed_over(&c, &id) == 3), "the owner hands its dead deliveries over");

    c.nodes[owner].kill9();
    let via = (owner + 1) % 3;
    wait_served(&c, via, BRAND, &token);
    let next = c.owner_of_partition(&partition).expect("a new owner");
    assert_ne!(c.index_of(&next), owner);
    assert!(wait_until(Duration::from_secs(60), || dead(&c, via, &token, &id) == before), "the new owner lists the same dead deliveries");
    let listed = retry_until_ok(|| {
        c.request(via, "GET", &format!("/v1/brands/{BRAND}/webhooks/{id}/deliveries?status=dead"), Some(&token), None, &[])
    });
    for d in listed.body["deliveries"].as_array().expect("deliveries") {
        assert_eq!((d["attempts"].as_u64(), d["last_status"].as_u64()), (Some(2), Some(500)), "{d}");
    }

    // Redriven on the new owner, once the receiver takes them: each event arrives.
    receiver.set_policy(|_| Answer::status(200));
    let redriven = retry_until_ok(|| c.request(via, "POST", &format!("/v1/brands/{BRAND}/webhooks/{id}/redrive"), Some(&token), None, &[]));
    assert_eq!(redriven.body["requeued"].as_u64(), Some(3), "{}", redriven.body);
    let refused: BTreeSet<String> = receiver.got().into_iter().filter(|r| r.answered == 500).map(|r| r.id).collect();
    assert_eq!(refused.len(), 3, "three events were refused");
    let all_in = wait_until(Duration::from_secs(60), || {
        let accepted: BTreeSet<String> = receiver.accepted().into_iter().map(|r| r.id).collect();
        refused.is_subset(&accepted)
    });
    assert!(all_in, "every redriven event reaches the receiver");
    assert!(wait_until(Duration::from_secs(60), || dead(&c, via, &token, &id).is_empty()), "nothing is dead after the redrive");
}
