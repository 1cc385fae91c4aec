//! Cluster mode under the faults it exists for, on real processes: an owner killed -9
//! under load (rounds), an owner paused past its lease, the journal stream's leader
//! nats-server killed, the whole cluster killed and restarted, a reservation storm
//! across nodes, and one Idempotency-Key sent to two nodes and again after a takeover.
//!
//! Every check is against what clients were told: each acknowledged change is in the
//! state exactly once (the ledger), and nothing is sold twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nodes::{retry_until_ok, Cluster, Resp, LEASE_MS};

/// The cluster tests run one at a time: each holds up to 6 processes, and each picks
/// free ports without reserving them (two tests at once could pick the same).
static SERIAL: Mutex<()> = Mutex::new(());

pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kill rounds of the first test (`ZAIKO_CLUSTER_ROUNDS`, default 10).
fn rounds() -> usize {
    std::env::var("ZAIKO_CLUSTER_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10)
}

/// Writers that add 1 to SKUs through every node, each change under its own
/// Idempotency-Key, retried with that key until it is acknowledged — as a client
/// would. Keeps the count of acknowledged changes per SKU.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Written>>,
}

/// What one writer leaves: its acknowledged changes per SKU, and the change it was
/// still retrying when stopped.
type Written = (BTreeMap<String, u64>, Option<Pending>);

/// A change a writer was still retrying when it was stopped: it may or may not have
/// been applied. Sent again with its key, it is answered once and counted once.
struct Pending {
    sku: String,
    key: String,
    body: Value,
}

impl Load {
    /// Nodes keep their ports across restarts, so the writers hold their addresses and
    /// never wait for the test's own handling of the cluster.
    pub(crate) fn start(c: &Cluster, brand: &str, token: &str, skus: &[&str], writers: usize) -> Load {
        Load::start_with(c, brand, token, skus, writers, false)
    }

    /// With `strict`, every answer must come (no node is killed): a write that gets no
    /// answer at all fails the test, as any status but 2xx and 503 does.
    pub(crate) fn start_with(c: &Cluster, brand: &str, token: &str, skus: &[&str], writers: usize, strict: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let bases: Arc<Vec<String>> = Arc::new(c.nodes.iter().map(|n| n.base()).collect());
        // Keys of one load never repeat another's: a later load on the same brand would
        // otherwise get the earlier answers back instead of changing anything.
        let run: u32 = rand::random();
        let threads = (0..writers)
            .map(|w| {
                let (client, bases, stop, brand, token) =
                    (c.client.clone(), bases.clone(), stop.clone(), brand.to_string(), token.to_string());
                let skus: Vec<String> = skus.iter().map(|s| s.to_string()).collect();
                std::thread::spawn(move || {
                    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let sku = &skus[(i as usize + w) % skus.len()];
                        let key = format!("r{run:08x}-w{w}-{i}");
                        let body = json!({"changes":[{"sku": sku, "location": "tsukuba", "op": "adjust", "delta": 1}]});
                        let mut attempt = 0usize;
                        loop {
                            let r = send(&client, &bases[(w + attempt) % bases.len()], &brand, &token, &key, &body);
                            if (200..300).contains(&r.status) {
                                assert_eq!(r.body["results"][0]["status"], "applied", "{}", r.body);
                                *acked.entry(sku.clone()).or_default() += 1;
                                break;
                            }
                            assert!(r.status == 503 || (r.status == 0 && !strict), "a write got {}: {}", r.status, r.body);
                            if stop.load(Ordering::Relaxed) {
                                return (acked, Some(Pending { sku: sku.clone(), key, body }));
                            }
                            attempt += 1;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        i += 1;
                    }
                    (acked, None)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the writers; the changes still in doubt are sent again with their keys
    /// (through `c`, once it answers) and counted when answered.
    pub(crate) fn finish(self, c: &Cluster, brand: &str, token: &str) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = BTreeMap::new();
        let mut pending = Vec::new();
        for t in self.threads {
            let (acked, p) = t.join().expect("writer");
            for (sku, n) in acked {
                *total.entry(sku).or_default() += n;
            }
            pending.extend(p);
        }
        for p in pending {
            let path = format!("/v1/brands/{brand}/stock/changes");
            let r = retry_until_ok(|| c.request(0, "POST", &path, Some(token), Some(&p.body), &[("idempotency-key", &p.key)]));
            assert_eq!(r.body["results"][0]["status"], "applied", "{}", r.body);
            *total.entry(p.sku).or_default() += 1;
        }
        total
    }
}

fn send(client: &reqwest::blocking::Client, base: &str, brand: &str, token: &str, key: &str, body: &Value) -> Resp {
    let r = client
        .post(format!("{base}/v1/brands/{brand}/stock/changes"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send();
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.json().unwrap_or(Value::Null);
            Resp { status, body, node: None, partition: None, lsn: None }
        }
        Err(e) => Resp { status: 0, body: Value::String(format!("{e:?}")), node: None, partition: None, lsn: None },
    }
}

/// The on_hand of each SKU at tsukuba, read through any node.
pub(crate) fn on_hand(c: &Cluster, brand: &str, token: &str, skus: &[&str]) -> BTreeMap<String, u64> {
    skus.iter()
        .map(|sku| {
            let r = retry_until_ok(|| c.request(0, "GET", &format!("/v1/brands/{brand}/skus/{sku}/stock"), Some(token), None, &[]));
            (sku.to_string(), r.body["locations"]["tsukuba"]["on_hand"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// Waits until a read of the brand through node `via` succeeds; returns how long it took.
pub(crate) fn wait_served(c: &Cluster, via: usize, brand: &str, token: &str) -> Duration {
    let t0 = Instant::now();
    retry_until_ok(|| c.request(via, "GET", &format!("/v1/brands/{brand}"), Some(token), None, &[]));
    t0.elapsed()
}

pub(crate) fn assert_ledger(acked: &BTreeMap<String, u64>, stock: &BTreeMap<String, u64>) {
    assert!(acked.values().sum::<u64>() > 0, "the load acknowledged nothing");
    for (sku, n) in acked {
        assert_eq!(stock.get(sku).copied().unwrap_or(0), *n, "SKU {sku}: acknowledged {n} changes, the stock says otherwise");
    }
}

#[test]
fn killing_the_owner_under_load_loses_no_acknowledged_change() {
    let _serial = serial();
    let c = Cluster::start(3);
    let skus = ["K1", "K2", "K3", "K4"];
    let (token, partition) = c.brand("b-kill", &skus);
    let mut c = c;
    let load = Load::start(&c, "b-kill", &token, &skus, 3);
    let mut takeovers = Vec::new();
    for round in 0..rounds() {
        let owner = c.owner_of_partition(&partition).expect("the partition has an owner");
        let idx = c.index_of(&owner);
        let other = (idx + 1) % 3;
        // Let some load run against this owner first.
        std::thread::sleep(Duration::from_millis(300));
        c.nodes[idx].kill9();
        let took = wait_served(&c, other, "b-kill", &token);
        eprintln!("round {round}: killed {owner}; partition {partition} served again after {took:?}");
        takeovers.push(took);
        c.nodes[idx].start();
        let client = c.client.clone();
        c.nodes[idx].wait_ready(&client);
    }
    let acked = load.finish(&c, "b-kill", &token);
    let stock = on_hand(&c, "b-kill", &token, &skus);
    assert_ledger(&acked, &stock);
    takeovers.sort();
    eprintln!("takeover times over {} kills: median {:?}, max {:?}", takeovers.len(), takeovers[takeovers.len() / 2], takeovers.last());
}

#[test]
fn a_paused_owner_acknowledges_nothing_after_its_lease_and_steps_down() {
    let _serial = serial();
    let c = Cluster::start(3);
    let (token, partition) = c.brand("b-stop", &["P1"]);
    let owner = c.owner_of_partition(&partition).expect("owner");
    let idx = c.index_of(&owner);
    let others: Vec<usize> = (0..3).filter(|i| *i != idx).collect();
    retry_until_ok(|| {
        c.request(
            others[0],
            "POST",
            "/v1/brands/b-stop/stock/changes",
            Some(&token),
            Some(&json!({"changes":[{"sku":"P1","location":"tsukuba","op":"set","on_hand":100}]})),
            &[("idempotency-key", "set-100")],
        )
    });
    c.nodes[idx].signal("STOP");
    // A write sent to the paused owner itself: the kernel accepts the connection; the
    // process answers only once it runs again, after another node has taken over.
    let late = {
        let (client, base, token) = (c.client.clone(), c.nodes[idx].base(), token.clone());
        std::thread::spawn(move || {
            send(
                &client,
                &base,
                "b-stop",
                &token,
                "late-1",
                &json!({"changes":[{"sku":"P1","location":"tsukuba","op":"adjust","delta":-7}]}),
            )
        })
    };
    // Meanwhile the others take the partition over and write through it.
    let took = wait_served(&c, others[0], "b-stop", &token);
    eprintln!("paused owner {owner}: partition served again after {took:?}");
    for (i, via) in others.iter().enumerate() {
        retry_until_ok(|| {
            c.request(
                *via,
                "POST",
                "/v1/brands/b-stop/stock/changes",
                Some(&token),
                Some(&json!({"changes":[{"sku":"P1","location":"tsukuba","op":"adjust","delta":1}]})),
                &[("idempotency-key", &format!("after-{i}"))],
            )
        });
    }
    std::thread::sleep(Duration::from_millis(LEASE_MS));
    c.nodes[idx].signal("CONT");
    let late = late.join().expect("late writer");
    assert!(!(200..300).contains(&late.status), "the paused owner acknowledged a write after its lease: {} {}", late.status, late.body);
    // It steps down by itself: the view no longer names it, and its log says why.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.nodes[idx].log().contains("gave the partition up") {
        assert!(Instant::now() < deadline, "the paused owner did not step down; log:\n{}", c.nodes[idx].log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every node's view comes to name another owner (each learns of the new lease
    // through its own watch).
    while c.owner_of_partition(&partition).as_deref() == Some(owner.as_str()) {
        assert!(Instant::now() < deadline, "the view still names the paused owner {owner}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The state has the set and the two adjusts, and not the late write.
    let stock = on_hand(&c, "b-stop", &token, &["P1"]);
    assert_eq!(stock["P1"], 102, "the paused owner's late write was applied (or an acknowledged one lost)");
    // Through the old owner too, once it answers again (forwarded to the new owner).
    let r = retry_until_ok(|| c.request(idx, "GET", "/v1/brands/b-stop/skus/P1/stock", Some(&token), None, &[]));
    assert_eq!(r.body["locations"]["tsukuba"]["on_hand"], 102);
}

#[test]
fn killing_the_journal_streams_leader_server_loses_nothing() {
    let _serial = serial();
    let c = Cluster::start(3);
    let skus = ["L1", "L2"];
    let (token, _) = c.brand("b-leader", &skus);
    let mut c = c;
    let load = Load::start(&c, "b-leader", &token, &skus, 3);
    std::thread::sleep(Duration::from_millis(500));
    let leader = c.nats.stream_leader("ZAIKO_JOURNAL").expect("the journal stream has a leader");
    c.nats.servers[leader].kill9();
    eprintln!("killed nats server {leader}, the journal stream's leader");
    // The load goes on through the election.
    std::thread::sleep(Duration::from_millis(4 * LEASE_MS));
    let acked = load.finish(&c, "b-leader", &token);
    let stock = on_hand(&c, "b-leader", &token, &skus);
    assert_ledger(&acked, &stock);
    c.nats.restart(leader);
}

#[test]
fn a_whole_cluster_killed_and_started_again_has_every_acknowledged_change() {
    let _serial = serial();
    let c = Cluster::start(3);
    let skus = ["W1", "W2", "W3"];
    let (token, _) = c.brand("b-whole", &skus);
    let mut g = c;
    let load = Load::start(&g, "b-whole", &token, &skus, 3);
    std::thread::sleep(Duration::from_millis(1500));
    // Everything at once: the writers are stopped after the kill, so nothing they
    // count was acknowledged after the cluster went down.
    for n in &mut g.nodes {
        n.kill9();
    }
    for s in &mut g.nats.servers {
        s.kill9();
    }
    for i in 0..3 {
        g.nats.restart(i);
    }
    g.nats.wait_ready();
    for n in &mut g.nodes {
        n.start();
    }
    let client = g.client.clone();
    for n in &mut g.nodes {
        n.wait_ready(&client);
    }
    g.wait_all_owned(Duration::from_secs(120));
    let acked = load.finish(&g, "b-whole", &token);
    let stock = on_hand(&g, "b-whole", &token, &skus);
    assert_ledger(&acked, &stock);
}

#[test]
fn a_reservation_storm_across_nodes_sells_exactly_the_units() {
    let _serial = serial();
    let c = Cluster::start(3);
    let (token, _) = c.brand("b-storm", &["LAST"]);
    let units = 20;
    retry_until_ok(|| {
        c.request(
            0,
            "POST",
            "/v1/brands/b-storm/stock/changes",
            Some(&token),
            Some(&json!({"changes":[{"sku":"LAST","location":"tsukuba","op":"set","on_hand":units}]})),
            &[("idempotency-key", "stock")],
        )
    });
    let c = Arc::new(c);
    let clients = 60;
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (c, token) = (c.clone(), token.clone());
            std::thread::spawn(move || {
                let body = json!({"id": format!("R-{i}"), "channel": "ec", "ttl_seconds": 600, "lines": [{"sku": "LAST", "quantity": 1}]});
                loop {
                    let r = c.request(i % 3, "POST", "/v1/brands/b-storm/reservations", Some(&token), Some(&body), &[]);
                    match r.status {
                        201 => return true,
                        409 => return false,
                        503 | 0 => std::thread::sleep(Duration::from_millis(10)),
                        s => panic!("a reservation got {s}: {}", r.body),
                    }
                }
            })
        })
        .collect();
    let sold = threads.into_iter().map(|t| t.join().expect("client")).filter(|s| *s).count();
    assert_eq!(sold, units as usize, "{clients} clients on three nodes reserved {sold} of {units} units");
    let r = retry_until_ok(|| c.request(1, "GET", "/v1/brands/b-storm/skus/LAST/stock", Some(&token), None, &[]));
    assert_eq!(r.body["locations"]["tsukuba"]["reserved"], units);
    assert_eq!(r.body["locations"]["tsukuba"]["available"], 0);
}

#[test]
fn one_idempotency_key_through_two_nodes_and_after_a_takeover_applies_once() {
    let _serial = serial();
    let mut c = Cluster::start(3);
    let (token, partition) = c.brand("b-idem", &["I1"]);
    let body = json!({"changes":[{"sku":"I1","location":"tsukuba","op":"adjust","delta":5}]});
    // The same key and body at two nodes at once.
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let hs: Vec<_> = [0usize, 1]
            .iter()
            .map(|&n| {
                let (c, token, body) = (&c, &token, &body);
                s.spawn(move || {
                    loop {
                        let r = c.request(
                            n,
                            "POST",
                            "/v1/brands/b-idem/stock/changes",
                            Some(token),
                            Some(body),
                            &[("idempotency-key", "same-key")],
                        );
                        // 409 idempotency_in_progress: the other is still running; retry.
                        if r.status != 503 && r.status != 409 && r.status != 0 {
                            return r;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("client")).collect()
    });
    assert_eq!(answers[0].status, 200, "{}", answers[0].body);
    assert_eq!(answers[0].status, answers[1].status);
    assert_eq!(answers[0].body, answers[1].body, "two nodes answered one key differently");
    assert_eq!(answers[0].lsn, answers[1].lsn);
    // Again after the owner is killed and another node took over.
    let owner = c.owner_of_partition(&partition).expect("owner");
    let idx = c.index_of(&owner);
    c.nodes[idx].kill9();
    let via = (idx + 1) % 3;
    let again = retry_until_ok(|| {
        c.request(via, "POST", "/v1/brands/b-idem/stock/changes", Some(&token), Some(&body), &[("idempotency-key", "same-key")])
    });
    assert_eq!(again.body, answers[0].body, "the new owner answered the key differently");
    assert_eq!(again.lsn, answers[0].lsn);
    let stock = retry_until_ok(|| c.request(via, "GET", "/v1/brands/b-idem/skus/I1/stock", Some(&token), None, &[]));
    assert_eq!(stock.body["locations"]["tsukuba"]["on_hand"], 5, "the change was applied more than once");
}
