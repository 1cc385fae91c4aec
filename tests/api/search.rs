//! SKU search end to end: read-your-writes through `min_lsn`, brand isolation,
//! parameter checks, paging, and the index after kill -9, restart, deletion and
//! graceful shutdown.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{Options, Resp, TestServer, ADMIN};

/// `GET /v1/search/skus` with the parameters URL-encoded.
fn search(s: &TestServer, token: &str, params: &[(&str, &str)]) -> Resp {
    let url = reqwest::Url::parse_with_params(&s.url("/v1/search/skus"), params).expect("url");
    s.get(&format!("{}?{}", url.path(), url.query().unwrap_or("")), token)
}

/// How many times the server log says it opened (not rebuilt) the index of `kind`.
pub fn opened(s: &TestServer, kind: &str) -> usize {
    let plain = |line: &str| {
        line.split('\x1b').map(|part| part.split_once('m').filter(|_| part.starts_with('[')).map_or(part, |p| p.1)).collect::<String>()
    };
    s.log().lines().map(plain).filter(|l| l.contains("search index opened") && l.contains(&format!("kind={kind} "))).count()
}

fn skus(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| format!("{}/{}", h["brand"].as_str().unwrap(), h["sku"].as_str().unwrap()))
        .collect()
}

fn put_sku(s: &TestServer, brand: &str, token: &str, sku: &str, body: Value) -> u64 {
    let r = s.put(&format!("/v1/brands/{brand}/skus/{sku}"), token, &body);
    assert!(r.status == 200 || r.status == 201, "{r:?}");
    r.lsn.expect("X-Zaiko-Lsn")
}

fn adjust(s: &TestServer, brand: &str, token: &str, sku: &str, delta: i64) -> u64 {
    let key = format!("adj-{sku}-{}", crate::helpers::rand_suffix());
    let body = json!({"changes": [{"sku": sku, "location": "tsukuba", "op": "adjust", "delta": delta}]});
    let r = s.post_key(&format!("/v1/brands/{brand}/stock/changes"), token, &key, &body);
    assert_eq!(r.body["results"][0]["status"], "applied", "{r:?}");
    r.lsn.expect("X-Zaiko-Lsn")
}

#[test]
fn a_search_with_min_lsn_always_sees_the_write() {
    let s = TestServer::spawn();
    let t = s.setup_brand("ryw", &["tsukuba"], &[]);
    for i in 0..40 {
        let word = format!("ryw{i}x");
        let lsn = put_sku(&s, "ryw", &t, &format!("S{i}"), json!({"name": format!("レザースニーカー {word}"), "price": 1000 + i}));
        let lsn_s = lsn.to_string();
        let r = search(&s, &t, &[("q", &word), ("min_lsn", &lsn_s)]).expect(200);
        assert_eq!(skus(&r), [format!("ryw/S{i}")], "round {i}: {r}");
        // A stock change is visible the same way.
        let lsn = adjust(&s, "ryw", &t, &format!("S{i}"), i + 1);
        let lsn_s = lsn.to_string();
        let r = search(&s, &t, &[("q", &word), ("min_lsn", &lsn_s), ("in_stock", "true")]).expect(200);
        assert_eq!(r["hits"][0]["available"], i + 1, "round {i}: {r}");
    }
    let r = search(&s, &t, &[("q", "ｽﾆｰｶｰ"), ("limit", "100")]).expect(200);
    assert_eq!(r["total"], 40);
}

#[test]
fn hits_carry_unsellable_and_in_transit_units() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["wh", "shibuya"], &["S1"]);
    s.set_stock("b1", &t, "S1", "wh", 10);
    let body = json!({"changes": [{"sku": "S1", "location": "wh", "op": "mark_unsellable", "quantity": 2, "reason": "検品"}]});
    let r = s.post_key("/v1/brands/b1/stock/changes", &t, "unsellable-1", &body);
    assert_eq!(r.body["results"][0]["status"], "applied", "{r:?}");
    let transfer = json!({"id": "T1", "origin": "wh", "destination": "shibuya", "lines": [{"sku": "S1", "quantity": 3}]});
    s.post("/v1/brands/b1/transfers", &t, &transfer).expect(201);
    let shipped = s.post("/v1/brands/b1/transfers/T1/ship", &t, &json!(null));
    assert_eq!(shipped.status, 200, "{shipped:?}");
    let lsn = shipped.lsn.expect("X-Zaiko-Lsn").to_string();

    let r = search(&s, &t, &[("q", "S1"), ("min_lsn", &lsn)]).expect(200);
    let hit = &r["hits"][0];
    let levels = json!([hit["on_hand"], hit["available"], hit["unsellable"], hit["in_transit"]]);
    assert_eq!(levels, json!([5, 5, 2, 3]), "{r}");
}

#[test]
fn min_lsn_beyond_the_journal_is_not_ready() {
    let s = TestServer::spawn();
    let r = search(&s, ADMIN, &[("min_lsn", "999999")]);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.code(), "not_ready");
    assert!(r.retry_after.is_some());
}

#[test]
fn a_brand_token_never_sees_another_brand() {
    let s = TestServer::spawn();
    let a = s.setup_brand("brand-a", &["tsukuba"], &[]);
    let b = s.setup_brand("brand-b", &[], &[]);
    let lsn_a = put_sku(&s, "brand-a", &a, "A1", json!({"name": "ウール ニット", "color": "navy"})).to_string();
    let lsn_b = put_sku(&s, "brand-b", &b, "B1", json!({"name": "ウール ニット Brand brand-a", "color": "red"})).to_string();
    // Each brand waits for its own write: an LSN is one partition's in cluster mode, so
    // brand-b's LSN says nothing of brand-a's index there. Once both have answered with
    // their write, B1 is indexed for the checks below and for the viewer's search.
    let own = search(&s, &b, &[("q", "ニット"), ("min_lsn", &lsn_b)]).expect(200);
    assert_eq!(skus(&own), ["brand-b/B1"]);
    for q in ["ニット", "brand-a", "", "b1"] {
        let r = search(&s, &a, &[("q", q), ("min_lsn", &lsn_a)]).expect(200);
        assert!(skus(&r).iter().all(|h| h.starts_with("brand-a/")), "q={q:?}: {r}");
        assert!(r["facets"]["brand"].as_array().unwrap().iter().all(|f| f["value"] == "brand-a"), "q={q:?}: {r}");
    }
    assert_eq!(search(&s, &a, &[("brand", "brand-b")]).status, 403);
    assert_eq!(skus(&search(&s, &a, &[("brand", "brand-a"), ("q", "ニット")]).expect(200)), ["brand-a/A1"]);
    let viewer = s.post("/v1/tokens", ADMIN, &json!({"role": "viewer"})).expect(201)["token"].as_str().unwrap().to_string();
    let all = search(&s, &viewer, &[("q", "ニット")]).expect(200);
    assert_eq!(all["total"], 2);
    assert_eq!(skus(&search(&s, &viewer, &[("q", "ニット"), ("brand", "brand-b")]).expect(200)), ["brand-b/B1"]);
    assert_eq!(search(&s, "not-a-token", &[("q", "ニット")]).status, 401);
}

#[test]
fn bad_parameters_are_400_naming_the_parameter() {
    let s = TestServer::spawn();
    let long_q = "あ".repeat(513);
    let many_words = (0..65).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let long_word = "a".repeat(129);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("limit", "0")], "query.limit"),
        (&[("limit", "101")], "query.limit"),
        (&[("limit", "ten")], "query.limit"),
        (&[("sort", "cheapest")], "query.sort"),
        (&[("in_stock", "yes")], "query.in_stock"),
        (&[("group", "color")], "query.group"),
        (&[("colour", "red")], "query.colour"),
        (&[("cursor", "garbage!")], "query.cursor"),
        (&[("q", &long_q)], "query.q"),
        (&[("q", &many_words)], "query.q"),
        (&[("q", &long_word)], "query.q"),
        (&[("brand", "Not A Brand")], "query.brand"),
        (&[("location", "a b")], "query.location"),
        (&[("min_lsn", "-1")], "query.min_lsn"),
        (&[("price_min", "10"), ("price_max", "5")], "query.price_min"),
        (&[("q", "a"), ("q", "b")], "query.q"),
    ];
    for (params, field) in cases {
        let r = search(&s, ADMIN, params);
        assert_eq!(r.status, 400, "{params:?}: {r:?}");
        assert_eq!(r.body["errors"][0]["field"], *field, "{params:?}: {r:?}");
        assert_eq!(r.content_type, "application/problem+json");
    }
    // A cursor made for one query is refused for another.
    let t = s.setup_brand("cur", &[], &[]);
    let lsn = ["S1", "S2", "S3"].map(|sku| put_sku(&s, "cur", &t, sku, json!({"name": "ニット"})))[2].to_string();
    let first = search(&s, &t, &[("limit", "1"), ("min_lsn", &lsn)]).expect(200);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_string();
    let r = search(&s, &t, &[("limit", "1"), ("cursor", &cursor), ("sort", "price_asc")]);
    assert_eq!(r.body["errors"][0]["field"], "query.cursor", "{r:?}");
}

#[test]
fn cursor_pages_return_every_hit_once_in_order() {
    let s = TestServer::spawn();
    let t = s.setup_brand("pages", &["tsukuba"], &[]);
    let mut lsn = 0;
    for i in 0..25 {
        lsn = put_sku(&s, "pages", &t, &format!("P{i:02}"), json!({"name": "カシミヤ セーター", "price": 1000 * (i % 4)}));
    }
    let lsn = lsn.to_string();
    for sort in ["relevance", "price_asc", "price_desc", "updated_desc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("q", "カシミヤ"), ("limit", "7"), ("sort", sort), ("min_lsn", lsn.as_str())];
            if let Some(c) = &cursor {
                params.push(("cursor", c));
            }
            let r = search(&s, &t, &params).expect(200);
            assert_eq!(r["total"], 25);
            seen.extend(skus(&r));
            match r["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
            assert!(seen.len() <= 25, "paging does not end: {seen:?}");
        }
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25, "{sort}: {seen:?}");
        let one = search(&s, &t, &[("q", "カシミヤ"), ("limit", "100"), ("sort", sort)]).expect(200);
        assert_eq!(seen, skus(&one), "{sort}: pages differ from one page");
    }
}

/// A server that commits its index only when a search asks for `min_lsn` (or on
/// shutdown), so a test knows what the index has not seen.
fn lazy_index() -> Options {
    Options { args: vec!["--index-commit-interval-ms".into(), "60000".into()], ..Options::default() }
}

#[test]
fn after_kill_9_the_index_catches_up_from_its_stored_lsn() {
    let mut s = TestServer::spawn_with(lazy_index());
    let t = s.setup_brand("crash", &["tsukuba"], &["S1"]);
    let lsn = put_sku(&s, "crash", &t, "S2", json!({"name": "ダウンジャケット"})).to_string();
    assert_eq!(search(&s, &t, &[("q", "ダウン"), ("min_lsn", &lsn)]).expect(200)["total"], 1);
    // Changes the index has not committed: a new SKU and stock of an old one.
    let lsn_new = put_sku(&s, "crash", &t, "S3", json!({"name": "ダウンベスト"}));
    let lsn_stock = adjust(&s, "crash", &t, "S2", 5);
    s.kill9();
    s.start();
    let last = lsn_new.max(lsn_stock).to_string();
    let r = search(&s, &t, &[("q", "ダウン"), ("min_lsn", &last), ("sort", "price_asc")]).expect(200);
    assert_eq!(r["total"], 2, "{r}");
    let s2 = r["hits"].as_array().unwrap().iter().find(|h| h["sku"] == "S2").expect("S2");
    assert_eq!(s2["available"], 5);
    assert_eq!(opened(&s, "skus"), 1, "the second start must open, not rebuild:\n{}", s.log());
}

#[test]
fn a_deleted_or_damaged_index_is_rebuilt_on_start() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("lost", &["tsukuba"], &[]);
    let mut lsn = 0;
    for i in 0..10 {
        lsn = put_sku(&s, "lost", &t, &format!("S{i}"), json!({"name": format!("リネンシャツ {i}")}));
    }
    let lsn = lsn.to_string();
    assert_eq!(search(&s, &t, &[("q", "リネン"), ("min_lsn", &lsn)]).expect(200)["total"], 10);
    s.kill9();
    let index_dir = s.data_dir.join("index");
    std::fs::remove_dir_all(&index_dir).expect("remove the index");
    s.start();
    assert_eq!(search(&s, &t, &[("q", "リネン"), ("min_lsn", &lsn)]).expect(200)["total"], 10);
    assert!(index_dir.join("skus").join("meta.json").exists());
    // A commit payload of another format is rebuilt the same way.
    s.kill9();
    let meta = index_dir.join("skus").join("meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["payload"] = json!("{\"format\":999,\"lsn\":1}");
    std::fs::write(&meta, v.to_string()).unwrap();
    s.start();
    assert_eq!(search(&s, &t, &[("q", "リネン"), ("min_lsn", &lsn)]).expect(200)["total"], 10);
    assert!(s.log().contains("search index unusable"), "{}", s.log());
}

#[test]
fn graceful_shutdown_commits_the_index_at_the_last_lsn() {
    let mut s = TestServer::spawn_with(lazy_index());
    let t = s.setup_brand("bye", &["tsukuba"], &["S1"]);
    let lsn = adjust(&s, "bye", &t, "S1", 3);
    s.sigterm();
    assert!(s.wait_exit(std::time::Duration::from_secs(60)).success());
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(s.data_dir.join("index/skus/meta.json")).unwrap()).unwrap();
    let payload: Value = serde_json::from_str(meta["payload"].as_str().expect("a payload")).unwrap();
    assert_eq!(payload["lsn"], lsn, "{payload}");
}

#[test]
fn index_rebuild_builds_the_index_offline_at_the_last_lsn() {
    let mut s = TestServer::spawn_with(lazy_index());
    let t = s.setup_brand("offline", &["tsukuba"], &[]);
    let mut lsn = 0;
    for i in 0..5 {
        lsn = put_sku(&s, "offline", &t, &format!("S{i}"), json!({"name": format!("チノパンツ {i}")}));
    }
    let rebuild = |s: &TestServer| {
        std::process::Command::new(env!("CARGO_BIN_EXE_zaiko"))
            .args(["index", "rebuild", "--data-dir"])
            .arg(&s.data_dir)
            .output()
            .expect("run")
    };
    let busy = rebuild(&s);
    assert!(!busy.status.success(), "a running server's data dir is locked");
    s.kill9();
    std::fs::remove_dir_all(s.data_dir.join("index")).unwrap();
    let out = rebuild(&s);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(s.data_dir.join("index/skus/meta.json")).unwrap()).unwrap();
    let payload: Value = serde_json::from_str(meta["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["lsn"], lsn);
    s.start();
    let lsn = lsn.to_string();
    assert_eq!(search(&s, &t, &[("q", "チノ"), ("min_lsn", &lsn)]).expect(200)["total"], 5);
    assert_eq!(opened(&s, "skus"), 1, "the rebuilt index is used, not rebuilt again:\n{}", s.log());
    assert_eq!(opened(&s, "shipments"), 1, "the rebuilt shipment index is used, not rebuilt again:\n{}", s.log());
}
