//! Imports in cluster mode: an upload sent to a node that does not own the brand is
//! stored in the cluster and run by the owner; killed -9 in the middle of the job, the
//! owner's job goes on on the partition's new owner from its last recorded chunk, and
//! every row is applied exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::failover::serial;
use crate::nodes::{retry_until_ok, Cluster};

const ROWS: usize = 100_000;

/// The job as a running node answers it (forwarded to the owner).
fn job(c: &Cluster, via: usize, token: &str, id: &str) -> Value {
    retry_until_ok(|| c.request(via, "GET", &format!("/v1/brands/b-imp/imports/{id}"), Some(token), None, &[])).body
}

#[test]
fn killing_the_owner_in_the_middle_of_an_import_applies_every_row_once() {
    let _serial = serial();
    let seed: u64 = std::env::var("ZAIKO_IMPORT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("cluster import test seed {seed} (ZAIKO_IMPORT_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Paced so that the kill lands while the job runs; small chunks cross many boundaries.
    let mut c = Cluster::start_with(3, &["--import-rows-per-second", "8000", "--import-chunk-rows", "250"]);
    let skus: Vec<String> = (0..50).map(|i| format!("M{i}")).collect();
    let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    let (token, partition) = c.brand("b-imp", &refs);
    let owner = c.owner_of_partition(&partition).expect("an owner");
    let owner_idx = c.index_of(&owner);
    let via = (owner_idx + 1) % 3;
    let survivor = (owner_idx + 2) % 3;

    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut csv = String::from("sku,location,delta\n");
    for _ in 0..ROWS {
        let sku = &skus[rng.random_range(0..skus.len())];
        let delta = rng.random_range(1..=9);
        *expected.entry(sku.clone()).or_default() += delta;
        csv.push_str(&format!("{sku},tsukuba,{delta}\n"));
    }
    // Uploaded to a node that does not own the brand: the body never crosses nodes,
    // the file does, through the object store.
    let up = c.request_raw(via, "POST", "/v1/brands/b-imp/imports?kind=stock", &token, "text/csv", csv.into_bytes());
    assert_eq!(up.status, 202, "{}", up.body);
    let id = up.body["id"].as_str().expect("job id").to_string();

    let kill_at = rng.random_range(10_000..60_000u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = job(&c, via, &token, &id);
        assert_ne!(j["status"], "done", "the job ended before the kill: {j}");
        if j["rows_ok"].as_u64().unwrap_or(0) >= kill_at {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not get to {kill_at} rows: {j}");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.nodes[owner_idx].kill9();
    eprintln!("killed the owner {owner} at about {kill_at} rows");

    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        let j = job(&c, survivor, &token, &id);
        if j["status"] != "queued" && j["status"] != "running" {
            break j;
        }
        assert!(Instant::now() < deadline, "the job did not finish on the new owner: {j}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!((done["rows_ok"].as_u64(), done["rows_failed"].as_u64()), (Some(ROWS as u64), Some(0)), "{done}");
    let new_owner = c.owner_of_partition(&partition).expect("an owner");
    assert_ne!(new_owner, owner, "the partition moved");

    // The stock is what the file says: no row lost, none applied twice.
    for (sku, want) in &expected {
        let r = retry_until_ok(|| c.request(survivor, "GET", &format!("/v1/brands/b-imp/skus/{sku}/stock"), Some(&token), None, &[]));
        assert_eq!(r.body["locations"]["tsukuba"]["on_hand"].as_i64(), Some(*want), "{sku} (seed {seed})");
    }
    // The feed (built on every node from the journal) has each row's change once.
    let mut changes = 0;
    let mut after = "0".to_string();
    loop {
        let path = format!("/v1/brands/b-imp/events?after={after}&limit=1000");
        let page = retry_until_ok(|| c.request(via, "GET", &path, Some(&token), None, &[])).body;
        let events = page["events"].as_array().expect("events");
        if events.is_empty() {
            break;
        }
        changes += events.iter().filter(|e| e["type"] == "stock.changed").count();
        after = page["next"].as_str().expect("next").to_string();
    }
    assert_eq!(changes, ROWS, "one stock.changed per row");

    // The killed node comes back and runs nothing again.
    c.nodes[owner_idx].start();
    let client = c.client.clone();
    c.nodes[owner_idx].wait_ready(&client);
    let again = job(&c, owner_idx, &token, &id);
    assert_eq!((again["status"].as_str(), again["rows_ok"].as_u64()), (Some("done"), Some(ROWS as u64)), "{again}");
}

#[test]
fn an_upload_through_any_node_is_the_same_job_for_the_same_key() {
    let _serial = serial();
    let c = Cluster::start(3);
    let (token, partition) = c.brand("b-imp", &["K1", "K2"]);
    let owner = c.index_of(&c.owner_of_partition(&partition).expect("an owner"));
    let csv = b"sku,location,delta\nK1,tsukuba,5\nK2,tsukuba,7\nK9,tsukuba,1\n".to_vec();
    // A 503 (a partition handed over while the cluster settles after its start) is
    // retried with the same key, as the contract tells a client to.
    let upload = |via: usize, key: &str| {
        let url = format!("{}/v1/brands/b-imp/imports?kind=stock", c.nodes[via].base());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = c
                .client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "text/csv")
                .header("idempotency-key", key)
                .body(csv.clone())
                .send()
                .expect("upload");
            let status = r.status().as_u16();
            let body = r.json::<Value>().unwrap_or(Value::Null);
            if status != 503 || Instant::now() > deadline {
                return (status, body);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The same key through two other nodes and the owner: one job.
    let (s1, first) = upload((owner + 1) % 3, "imp-key-1");
    assert_eq!(s1, 202, "{first}");
    let id = first["id"].as_str().expect("id").to_string();
    for via in [(owner + 2) % 3, owner] {
        let (s, again) = upload(via, "imp-key-1");
        assert_eq!((s, again["id"].as_str()), (202, Some(id.as_str())), "{again}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let j = job(&c, owner, &token, &id);
        if j["status"] == "done" {
            break j;
        }
        assert!(Instant::now() < deadline, "{j}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((done["rows_ok"].as_u64(), done["rows_failed"].as_u64()), (Some(2), Some(1)), "{done}");
    for (sku, want) in [("K1", 5), ("K2", 7)] {
        let r = retry_until_ok(|| c.request(0, "GET", &format!("/v1/brands/b-imp/skus/{sku}/stock"), Some(&token), None, &[]));
        assert_eq!(r.body["locations"]["tsukuba"]["on_hand"].as_i64(), Some(want), "{sku}");
    }
    // A header naming a stored upload is honoured only from another node, for the
    // caller's own brand: sent by a client it is an ordinary upload.
    let forged = c
        .client
        .post(format!("{}/v1/brands/b-imp/imports?kind=stock", c.nodes[owner].base()))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .header("x-zaiko-stored-upload", id.as_str())
        .body(b"sku,location,delta\nK1,tsukuba,1\n".to_vec())
        .send()
        .expect("upload");
    assert_eq!(forged.status().as_u16(), 202);
    let forged: Value = forged.json().expect("json");
    assert_ne!(forged["id"].as_str(), Some(id.as_str()), "a client cannot name a stored upload");
}
