//! Issue 22 over HTTP: colours found by name, `group=product` and its paging,
//! `GET /v1/search/labels`, long pasted titles, and the operator's synonyms file
//! (extending the table, and a bad file refusing to start with its line).

use std::collections::HashSet;
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::{Options, Resp, TestServer};

fn search(s: &TestServer, token: &str, params: &[(&str, &str)]) -> Resp {
    let url = reqwest::Url::parse_with_params(&s.url("/v1/search/skus"), params).expect("url");
    s.get(&format!("{}?{}", url.path(), url.query().unwrap_or("")), token)
}

fn skus(body: &Value) -> Vec<String> {
    body["hits"].as_array().expect("hits").iter().map(|h| h["sku"].as_str().unwrap().to_string()).collect()
}

/// Puts the SKUs and returns the last write's LSN.
fn put_all(s: &TestServer, brand: &str, token: &str, items: &[(&str, Value)]) -> String {
    let mut lsn = 0;
    for (sku, body) in items {
        let r = s.put(&format!("/v1/brands/{brand}/skus/{sku}"), token, body);
        assert!(r.status == 200 || r.status == 201, "{r:?}");
        lsn = r.lsn.expect("X-Zaiko-Lsn");
    }
    lsn.to_string()
}

#[test]
fn colours_are_found_by_value_name_and_synonym_and_labels_say_the_names() {
    let s = TestServer::spawn();
    let t = s.setup_brand("col", &["tsukuba"], &[]);
    let lsn = put_all(
        &s,
        "col",
        &t,
        &[
            ("NV-1", json!({"name": "ウール ニット", "color": "navy", "category": "tops/knitwear"})),
            ("BK-1", json!({"name": "ウール ニット", "color": "black", "category": "tops/knitwear"})),
            ("NV-2", json!({"name": "ネイビー ボーダー Tシャツ", "color": "white", "category": "tops/t-shirts"})),
        ],
    );
    for q in ["navy", "ネイビー", "ﾈｲﾋﾞｰ", "紺", "NAVY"] {
        let r = search(&s, &t, &[("q", q), ("min_lsn", &lsn)]).expect(200);
        assert_eq!(skus(&r), ["NV-2", "NV-1"], "{q}: the name match first, then the colour: {r}");
    }
    let r = search(&s, &t, &[("q", "black")]).expect(200);
    assert_eq!(skus(&r), ["BK-1"]);

    let labels = s.get("/v1/search/labels", &t).expect(200);
    assert_eq!(labels["colors"]["navy"], json!({"ja": "ネイビー", "en": "Navy"}));
    assert_eq!(labels["categories"]["tops/t-shirts"], json!({"ja": "Tシャツ", "en": "T-shirts"}));
    assert_eq!(labels["categories"]["tops/knitwear"]["ja"], "ニット");
}

#[test]
fn group_product_gives_one_hit_per_product_and_pages_over_products() {
    let s = TestServer::spawn();
    let t = s.setup_brand("grp", &["tsukuba"], &[]);
    let boot = |pid: Option<&str>, color: &str, size: &str| {
        let mut b = json!({"name": "レザー ブーツ", "color": color, "size": size, "category": "shoes/boots"});
        if let Some(p) = pid {
            b["product_id"] = json!(p);
        }
        b
    };
    let mut items = Vec::new();
    // P1: 12 variants (more than the 10 listed), P2: 2, and one SKU without a product.
    let p1: Vec<String> = (0..12).map(|i| format!("P1-{i:02}")).collect();
    for (i, sku) in p1.iter().enumerate() {
        items.push((sku.as_str(), boot(Some("P1"), if i % 2 == 0 { "black" } else { "brown" }, &format!("{}", 23 + i))));
    }
    items.push(("P2-BK", boot(Some("P2"), "black", "25.0")));
    items.push(("P2-BR", boot(Some("P2"), "brown", "25.0")));
    items.push(("LONE", boot(None, "black", "26.0")));
    items.push(("OTHER", json!({"name": "キャンバス トート", "product_id": "P3"})));
    let lsn = put_all(&s, "grp", &t, &items);

    let flat = search(&s, &t, &[("q", "ブーツ"), ("min_lsn", &lsn), ("limit", "100")]).expect(200);
    assert_eq!(flat["total"], 15);
    assert!(flat["hits"][0].get("variants").is_none(), "ungrouped hits have no variants: {flat}");

    let mut seen = Vec::new();
    let mut by_product = std::collections::BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut params = vec![("q", "ブーツ"), ("group", "product"), ("limit", "2")];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let r = search(&s, &t, &params).expect(200);
        assert_eq!(r["total"], 3, "total counts products: {r}");
        for h in r["hits"].as_array().unwrap() {
            let listed: Vec<&str> = h["variants"]["skus"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(listed[0], h["sku"], "the hit is its best variant, listed first: {h}");
            seen.push(h["product_id"].as_str().unwrap_or("-").to_string());
            by_product.insert(h["sku"].as_str().unwrap().to_string(), (h["variants"]["total"].clone(), listed.len()));
        }
        cursor = r["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, ["-", "P1", "P2"], "each product once over the pages: {seen:?}");
    let counts: HashSet<(Value, usize)> = by_product.into_values().collect();
    assert_eq!(counts, HashSet::from([(json!(12), 10), (json!(2), 2), (json!(1), 1)]));

    let bad = search(&s, &t, &[("q", "ブーツ"), ("group", "color")]);
    assert_eq!((bad.status, bad.body["errors"][0]["field"].as_str()), (400, Some("query.group")), "{:?}", bad.body);
    // A cursor of the grouped search does not continue the flat one.
    let r = search(&s, &t, &[("q", "ブーツ"), ("group", "product"), ("limit", "1")]).expect(200);
    let c = r["next_cursor"].as_str().unwrap();
    assert_eq!(search(&s, &t, &[("q", "ブーツ"), ("cursor", c)]).status, 400);
}

#[test]
fn a_pasted_title_is_accepted_and_ranks_by_how_many_words_match() {
    let s = TestServer::spawn();
    let t = s.setup_brand("ttl", &["tsukuba"], &[]);
    let lsn = put_all(
        &s,
        "ttl",
        &t,
        &[
            (
                "BEST",
                json!({"name": "ヘビーウェイト オーバーサイズ Tシャツ 半袖", "color": "navy", "size": "L", "category": "tops/t-shirts"}),
            ),
            ("SOME", json!({"name": "ヘビーウェイト スウェット", "color": "gray", "size": "M", "category": "tops/sweats"})),
            ("ONE", json!({"name": "オーバーサイズ シャツ", "color": "white", "size": "S", "category": "tops/shirts"})),
            ("NONE", json!({"name": "キャンバス トートバッグ", "color": "beige", "size": "F", "category": "bags/totes"})),
        ],
    );
    // 17 words, as pasted from a marketplace.
    let title =
        "【送料無料】 ヘビーウェイト オーバーサイズ Tシャツ 半袖 ネイビー L メンズ レディース 綿100% 春 夏 秋 新作 人気 おしゃれ ゆったり";
    assert_eq!(title.split_whitespace().count(), 17);
    let r = search(&s, &t, &[("q", title), ("min_lsn", &lsn)]).expect(200);
    // BEST matches 6 words; SOME and ONE 1 and 1 word each, under the minimum of 5.
    assert_eq!(skus(&r), ["BEST"], "{r}");
    let shorter = "ヘビーウェイト オーバーサイズ Tシャツ 半袖 ネイビー スウェット 春 夏";
    let r = search(&s, &t, &[("q", shorter)]).expect(200);
    // 8 words need 2: BEST matches 5, SOME 2; ONE matches 1.
    assert_eq!(skus(&r), ["BEST", "SOME"], "{r}");

    let words65 = vec!["w"; 65].iter().enumerate().map(|(i, _)| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let r = search(&s, &t, &[("q", &words65)]);
    assert_eq!(r.status, 400, "{:?}", r.body);
    let chars513 = "あ".repeat(513);
    assert_eq!(search(&s, &t, &[("q", &chars513)]).status, 400);
}

fn zaiko() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zaiko"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ZAIKO_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn an_operator_synonyms_file_extends_the_table_and_a_bad_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("synonyms.txt");
    std::fs::write(&file, "# our words\n\nボルドー, bordeaux, ワインレッド\n").unwrap();
    let s =
        TestServer::spawn_with(Options { envs: vec![("ZAIKO_SEARCH_SYNONYMS".into(), file.display().to_string())], ..Options::default() });
    let t = s.setup_brand("syn", &["tsukuba"], &[]);
    let lsn = put_all(&s, "syn", &t, &[("W1", json!({"name": "ボルドー ニット"})), ("W2", json!({"name": "ワインレッド ニット"}))]);
    let r = search(&s, &t, &[("q", "bordeaux"), ("min_lsn", &lsn)]).expect(200);
    let mut got = skus(&r);
    got.sort();
    assert_eq!(got, ["W1", "W2"]);
    // The shipped table is still there.
    assert_eq!(search(&s, &t, &[("q", "紺")]).expect(200)["total"], 0);

    std::fs::write(&file, "ボルドー, bordeaux\n# fine so far\nlight blue, 水色\n").unwrap();
    let data = dir.path().join("data");
    let out =
        zaiko().args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&data).arg("--search-synonyms").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 3") && stderr.contains("space"), "{stderr}");
    assert!(!data.join("wal").exists(), "nothing was started: {stderr}");
}
