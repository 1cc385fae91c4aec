//! Search in cluster mode: every node answers a search the same (hits, totals, facets,
//! order), a cursor from one node continues on another, a brand's search through a
//! node that does not own it reads its own writes (`min_lsn`), and after an owner is
//! killed -9 its partitions are indexed again on their new owners: nothing missing,
//! nothing twice.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::failover::serial;
use crate::nodes::{retry_until_ok, Cluster, Resp, ADMIN};

const BRANDS: usize = 6;
const SKUS_PER_BRAND: usize = 7;

fn brand(i: usize) -> String {
    format!("b-find{i}")
}

/// Sets up the brands, each with SKUs named so that a search matches some of every
/// brand, and one shipment per brand; returns the brands' tokens.
fn catalog(c: &Cluster) -> Vec<String> {
    let ship_to = json!({"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"});
    (0..BRANDS)
        .map(|b| {
            let (token, _) = c.brand(&brand(b), &[]);
            for s in 0..SKUS_PER_BRAND {
                let name = if s % 2 == 0 { format!("ウール ニット {b}-{s}") } else { format!("リネン シャツ {b}-{s}") };
                let color = ["navy", "black", "white"][s % 3];
                let body = json!({"name": name, "price": 1000 + s * 100, "color": color});
                retry_until_ok(|| c.request(s % 3, "PUT", &format!("/v1/brands/{}/skus/S{s}", brand(b)), Some(&token), Some(&body), &[]));
            }
            let stock = json!({"changes": [{"sku": "S0", "location": "tsukuba", "op": "adjust", "delta": 5}]});
            let key = format!("find-stock-{b}");
            let headers = [("idempotency-key", key.as_str())];
            retry_until_ok(|| {
                c.request(b % 3, "POST", &format!("/v1/brands/{}/stock/changes", brand(b)), Some(&token), Some(&stock), &headers)
            });
            let ship = json!({"id": format!("SH-{b}"), "lines": [{"sku": "S0", "quantity": 1}], "ship_to": ship_to});
            retry_until_ok(|| c.request(b % 3, "POST", &format!("/v1/brands/{}/shipments", brand(b)), Some(&token), Some(&ship), &[]));
            token
        })
        .collect()
}

/// A search through `node` with the admin token, retried while a partition is being
/// indexed on its owner (503), until its total is `want`.
fn search_until(c: &Cluster, node: usize, path: &str, want: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.request(node, "GET", path, Some(ADMIN), None, &[]);
        if r.status == 200 && r.body["total"].as_u64() == Some(want) {
            return r.body;
        }
        assert!(r.status == 200 || r.status == 503 || r.status == 0, "{path} through node {node}: {} {}", r.status, r.body);
        if Instant::now() > deadline {
            let mut logs = String::new();
            for n in &c.nodes {
                logs.push_str(&format!("--- {}\n", n.id));
                for line in n.log().lines().filter(|l| l.contains("partition") && !l.contains("request failed")) {
                    logs.push_str(line);
                    logs.push('\n');
                }
            }
            for b in 0..BRANDS {
                let r = c.request(node, "GET", &format!("{path}&brand={}", brand(b)), Some(ADMIN), None, &[]);
                logs.push_str(&format!("brand {b}: {} total {} via {:?} partition {:?}\n", r.status, r.body["total"], r.node, r.partition));
            }
            panic!("{path} through node {node} never found {want}: {} {}\n{logs}\n{}", r.status, r.body, c.view());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ok(r: Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Every hit of `path` followed page by page, each page asked of the next node.
fn all_pages(c: &Cluster, path: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let node = page % c.nodes.len();
        let url = match &cursor {
            Some(k) => format!("{path}&cursor={k}"),
            None => path.to_string(),
        };
        let body = ok(retry_until_ok(|| c.request(node, "GET", &url, Some(ADMIN), None, &[])));
        for h in body["hits"].as_array().expect("hits") {
            seen.push(format!("{}/{}", h["brand"].as_str().expect("brand"), h["sku"].as_str().or(h["id"].as_str()).expect("id")));
        }
        match body["next_cursor"].as_str() {
            Some(k) => cursor = Some(k.to_string()),
            None => break,
        }
        assert!(page < 100, "the pages never end");
    }
    seen
}

#[test]
fn every_node_answers_a_search_the_same_and_cursors_continue_on_any_node() {
    let _serial = serial();
    let mut c = Cluster::start(3);
    let tokens = catalog(&c);
    let knits = (BRANDS * SKUS_PER_BRAND.div_ceil(2)) as u64;
    let path = "/v1/search/skus?q=%E3%83%8B%E3%83%83%E3%83%88&limit=4";

    // The same answer from every node: hits in order, total, facets, next cursor.
    let first = search_until(&c, 0, path, knits);
    for node in 1..3 {
        assert_eq!(search_until(&c, node, path, knits), first, "node {node} answers otherwise");
    }
    assert_eq!(first["facets"]["brand"].as_array().expect("brand facet").len(), BRANDS, "{first}");
    let all = search_until(&c, 1, "/v1/search/skus?limit=100", (BRANDS * SKUS_PER_BRAND) as u64);
    let navy = all["facets"]["color"].as_array().expect("colors").iter().find(|v| v["value"] == "navy").expect("navy")["count"].clone();
    assert_eq!(navy, json!(BRANDS * SKUS_PER_BRAND.div_ceil(3)), "{all}");

    // Pages asked of one node after another: every knit once, in one order.
    let pages = all_pages(&c, path);
    assert_eq!(pages.len() as u64, knits, "{pages:?}");
    assert_eq!(pages.iter().collect::<BTreeSet<_>>().len(), pages.len(), "a hit came twice: {pages:?}");
    let one_page = ok(c.request(2, "GET", "/v1/search/skus?q=%E3%83%8B%E3%83%83%E3%83%88&limit=100", Some(ADMIN), None, &[]));
    let in_order: Vec<String> = one_page["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| format!("{}/{}", h["brand"].as_str().unwrap(), h["sku"].as_str().unwrap()))
        .collect();
    assert_eq!(pages, in_order, "paging through the nodes changed the order");

    // Shipments, gathered the same way.
    let ships = search_until(&c, 2, "/v1/search/shipments?limit=2", BRANDS as u64);
    assert_eq!(ships, search_until(&c, 0, "/v1/search/shipments?limit=2", BRANDS as u64));
    assert_eq!(all_pages(&c, "/v1/search/shipments?limit=2").len(), BRANDS);

    // A brand token's search, through every node (two of them forward it to the
    // owner), reads its own write with min_lsn.
    let b0 = brand(0);
    for node in 0..3 {
        let sku = format!("NEW{node}");
        let body = json!({"name": format!("カシミヤ ストール {node}"), "price": 5000});
        let w = retry_until_ok(|| c.request(node, "PUT", &format!("/v1/brands/{b0}/skus/{sku}"), Some(&tokens[0]), Some(&body), &[]));
        let lsn = w.lsn.expect("x-zaiko-lsn");
        let found = ok(retry_until_ok(|| {
            let path = format!("/v1/search/skus?q=%E3%82%AB%E3%82%B7%E3%83%9F%E3%83%A4&min_lsn={lsn}");
            c.request((node + 1) % 3, "GET", &path, Some(&tokens[0]), None, &[])
        }));
        assert_eq!(found["total"], json!(node + 1), "{found}");
        assert!(found["hits"].as_array().unwrap().iter().all(|h| h["brand"] == b0.as_str()), "{found}");
    }
    // Across brands, an LSN means nothing: a clear 400.
    let r = c.request(0, "GET", "/v1/search/skus?min_lsn=1", Some(ADMIN), None, &[]);
    assert_eq!((r.status, r.body["code"].as_str()), (400, Some("invalid_request")), "{}", r.body);

    // The owner of brand 0's partition killed -9: its partitions are indexed on their
    // new owners; the search finds every SKU once, through each surviving node.
    let view = c.view();
    let owner = ok(retry_until_ok(|| c.request(0, "GET", &format!("/v1/brands/{b0}"), Some(&tokens[0]), None, &[])));
    assert_eq!(owner["id"], json!(b0));
    let p0 = retry_until_ok(|| c.request(0, "GET", &format!("/v1/brands/{b0}/skus/S0"), Some(&tokens[0]), None, &[]))
        .partition
        .expect("partition");
    let victim = c.index_of(c.owner_of_partition(&p0).expect("owner").as_str());
    let owned: usize = view["partitions"].as_array().unwrap().iter().filter(|p| p["owner"]["node"] == c.nodes[victim].id.as_str()).count();
    assert!(owned > 0);
    c.nodes[victim].kill9();
    c.wait_all_owned(Duration::from_secs(60));
    let everything = (BRANDS * SKUS_PER_BRAND + 3) as u64;
    let mut answers = Vec::new();
    for node in c.running().collect::<Vec<_>>() {
        let body = search_until(&c, node, "/v1/search/skus?limit=100", everything);
        let ids: BTreeSet<String> = body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| format!("{}/{}", h["brand"].as_str().unwrap(), h["sku"].as_str().unwrap()))
            .collect();
        assert_eq!(ids.len() as u64, everything, "a SKU is missing or came twice through node {node}");
        answers.push(body);
    }
    assert_eq!(answers[0], answers[1], "the surviving nodes answer otherwise");

    // Back again: the restarted node takes its share over in time; still everything once.
    c.nodes[victim].start();
    let client = c.client.clone();
    c.nodes[victim].wait_ready(&client);
    let body = search_until(&c, victim, "/v1/search/skus?limit=100", everything);
    assert_eq!(body["hits"].as_array().unwrap().len() as u64, everything);
}
