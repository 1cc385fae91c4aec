//! The stock API end to end: brands, locations, SKUs, changes, idempotency, restart.

use serde_json::json;

use crate::helpers::{TestServer, ADMIN};

#[test]
fn health_and_readiness() {
    let s = TestServer::spawn();
    assert_eq!(s.request("GET", "/healthz", None, None, &[]).status, 200);
    assert_eq!(s.request("GET", "/readyz", None, None, &[]).status, 200);
}

#[test]
fn stock_changes_end_to_end_with_lsn_and_problems() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b-001", &["tsukuba", "osaka"], &["S1", "S2"]);
    let r = s.post_key(
        "/v1/brands/b-001/stock/changes",
        &t,
        "k-1",
        &json!({"changes": [
            {"sku": "S1", "location": "tsukuba", "op": "set", "on_hand": 10, "reason": "cycle_count"},
            {"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": -3},
            {"sku": "S1", "location": "tsukuba", "op": "set_safety_stock", "quantity": 1},
            {"sku": "S2", "location": "osaka", "op": "adjust", "delta": -1},
            {"sku": "S1", "location": "tsukuba", "op": "set", "on_hand": 1, "expected_version": 1},
            {"sku": "nope", "location": "tsukuba", "op": "adjust", "delta": 1},
            {"sku": "S1", "location": "nowhere", "op": "adjust", "delta": 1}
        ]}),
    );
    assert_eq!(r.status, 200);
    let lsn = r.lsn.expect("mutations carry X-Zaiko-Lsn");
    let res = &r.body["results"];
    assert_eq!(res[0]["status"], "applied");
    assert_eq!(res[1]["on_hand"], 7);
    assert_eq!(res[2]["available"], 6);
    assert_eq!(res[3]["code"], "insufficient_stock");
    assert_eq!(res[4]["code"], "version_conflict");
    assert_eq!(res[5]["code"], "not_found");
    assert_eq!(res[6]["code"], "not_found");
    let st = s.stock("b-001", &t, "S1");
    assert_eq!(st["version"], 3);
    assert_eq!(
        st["locations"]["tsukuba"],
        json!({"on_hand": 7, "reserved": 0, "safety_stock": 1, "available": 6, "incoming": 0, "unsellable": 0, "in_transit": 0})
    );
    assert_eq!(st["total"]["available"], 6);

    // Same key, same body: the original answer, nothing re-applied.
    let again = s.post_key(
        "/v1/brands/b-001/stock/changes",
        &t,
        "k-1",
        &json!({"changes": [
            {"sku": "S1", "location": "tsukuba", "op": "set", "on_hand": 10, "reason": "cycle_count"},
            {"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": -3},
            {"sku": "S1", "location": "tsukuba", "op": "set_safety_stock", "quantity": 1},
            {"sku": "S2", "location": "osaka", "op": "adjust", "delta": -1},
            {"sku": "S1", "location": "tsukuba", "op": "set", "on_hand": 1, "expected_version": 1},
            {"sku": "nope", "location": "tsukuba", "op": "adjust", "delta": 1},
            {"sku": "S1", "location": "nowhere", "op": "adjust", "delta": 1}
        ]}),
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.body, r.body);
    assert_eq!(again.lsn, Some(lsn));
    assert_eq!(s.stock("b-001", &t, "S1")["version"], 3);

    // The same content serialised another way (key order, whitespace, an escaped
    // character): still the original answer.
    let reserialised = br#"{ "changes" : [
        {"reason": "cycle_\u0063ount", "on_hand": 10, "op": "set", "location": "tsukuba", "sku": "S1"},
        {"delta": -3, "op": "adjust", "location": "tsukuba", "sku": "S1"},
        {"quantity": 1, "op": "set_safety_stock", "location": "tsukuba", "sku": "S1"},
        {"delta": -1, "op": "adjust", "location": "osaka", "sku": "S2"},
        {"expected_version": 1, "on_hand": 1, "op": "set", "location": "tsukuba", "sku": "S1"},
        {"delta": 1, "op": "adjust", "location": "tsukuba", "sku": "nope"},
        {"delta": 1, "op": "adjust", "location": "nowhere", "sku": "S1"}
    ] }"#;
    let headers = [("Idempotency-Key", "k-1"), ("Content-Type", "application/json")];
    let retried = s.raw("POST", "/v1/brands/b-001/stock/changes", Some(&t), reserialised.to_vec(), &headers);
    assert_eq!((retried.status, &retried.body, retried.lsn), (200, &r.body, Some(lsn)));
    assert_eq!(s.stock("b-001", &t, "S1")["version"], 3);

    // Same key, another body.
    let reused = s.post_key(
        "/v1/brands/b-001/stock/changes",
        &t,
        "k-1",
        &json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}]}),
    );
    assert_eq!(reused.status, 422);
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(reused.content_type, "application/problem+json");

    // No key: refused, nothing applied.
    let nokey = s.post(
        "/v1/brands/b-001/stock/changes",
        &t,
        &json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}]}),
    );
    assert_eq!(nokey.status, 400);
    assert_eq!(nokey.body["errors"][0]["field"], "header.idempotency-key");
    assert_eq!(s.stock("b-001", &t, "S1")["version"], 3);
}

#[test]
fn bad_input_is_a_problem_naming_the_field_and_changes_nothing() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let path = "/v1/brands/b1/stock/changes";
    let cases = [
        (json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": "x"}]}), "changes[0].delta"),
        (json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust"}]}), "changes[0].delta"),
        (json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "set", "on_hand": -1}]}), "changes[0].on_hand"),
        (json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "set", "on_hand": 1, "delta": 2}]}), "changes[0].delta"),
        (json!({"changes": [{"sku": "bad sku", "location": "tsukuba", "op": "adjust", "delta": 1}]}), "changes[0].sku"),
        (json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "explode", "delta": 1}]}), "changes[0].op"),
        (json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1, "colour": 1}]}), "changes[0]"),
        (json!({"changes": []}), "changes"),
        (
            json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}]})
                .get("nothing")
                .cloned()
                .unwrap_or(json!([])),
            "body",
        ),
    ];
    for (i, (body, field)) in cases.iter().enumerate() {
        let r = s.post_key(path, &t, &format!("bad-{i}"), body);
        assert_eq!(r.status, 400, "case {i}: {}", r.body);
        assert_eq!(r.code(), "invalid_request");
        let f = r.body["errors"][0]["field"].as_str().unwrap_or("");
        assert!(f.starts_with(field), "case {i}: field {f:?} for {}", r.body);
    }
    let too_many: Vec<_> = (0..1001).map(|_| json!({"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1})).collect();
    assert_eq!(s.post_key(path, &t, "many", &json!({"changes": too_many})).status, 400);
    let r = s.raw("POST", path, Some(&t), b"{not json".to_vec(), &[("Idempotency-Key", "raw")]);
    assert_eq!(r.status, 400);
    let big = vec![b' '; 2 << 20];
    let r = s.raw("POST", path, Some(&t), big, &[("Idempotency-Key", "big")]);
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), "payload_too_large");
    assert_eq!(s.request("GET", "/v1/brands/b1/skus/bad%20id/stock", Some(&t), None, &[]).status, 400);
    assert_eq!(s.request("GET", "/v1/brands/B1/skus/S1", Some(ADMIN), None, &[]).status, 400);
    // Nothing changed, the server is healthy.
    assert_eq!(s.stock("b1", &t, "S1")["version"], 0);
    assert_eq!(s.request("GET", "/healthz", None, None, &[]).status, 200);
}

#[test]
fn tokens_and_brand_isolation() {
    let s = TestServer::spawn();
    let a = s.setup_brand("brand-a", &["tsukuba"], &["S1"]);
    let b = s.setup_brand("brand-b", &[], &["S1"]);
    let viewer = s.post("/v1/tokens", ADMIN, &json!({"role": "viewer"})).expect(201)["token"].as_str().unwrap().to_string();
    assert_eq!(s.get("/v1/brands/brand-a/skus/S1", &a).status, 200);
    assert_eq!(s.get("/v1/brands/brand-a/skus/S1", &b).status, 403);
    assert_eq!(s.get("/v1/brands/brand-zz/skus/S1", &b).status, 403, "another brand's path is refused whether or not it exists");
    assert_eq!(s.put("/v1/brands/brand-a/skus/S9", &b, &json!({"name": "x"})).status, 403);
    assert_eq!(s.get("/v1/brands/brand-a/skus/S1", &viewer).status, 200);
    assert_eq!(s.put("/v1/brands/brand-a/skus/S9", &viewer, &json!({"name": "x"})).status, 403);
    assert_eq!(s.get("/v1/brands", &a).status, 403);
    assert_eq!(s.get("/v1/brands", &viewer).expect(200)["brands"].as_array().unwrap().len(), 2);
    assert_eq!(s.request("GET", "/v1/brands/brand-a/skus/S1", None, None, &[]).status, 401);
    assert_eq!(s.get("/v1/brands/brand-a/skus/S1", "zk_0000000000000000_nope").status, 401);
    // Revoke: the token stops working at once and after a restart.
    let created = s.post("/v1/brands/brand-a/tokens", ADMIN, &json!({})).expect(201);
    let tok = created["token"].as_str().unwrap().to_string();
    assert_eq!(s.get("/v1/brands/brand-a/skus/S1", &tok).status, 200);
    assert_eq!(s.delete(&format!("/v1/tokens/{}", created["id"].as_str().unwrap()), ADMIN).status, 204);
    assert_eq!(s.get("/v1/brands/brand-a/skus/S1", &tok).status, 401);
    let mut s = s;
    s.restart();
    assert_eq!(s.get("/v1/brands/brand-a/skus/S1", &tok).status, 401);
    assert_eq!(s.get("/v1/brands/brand-a/skus/S1", &a).status, 200);
}

#[test]
fn state_and_idempotency_survive_restart() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let body = json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 5}]});
    let first = s.post_key("/v1/brands/b1/stock/changes", &t, "once", &body);
    assert_eq!(first.status, 200);
    s.restart();
    let again = s.post_key("/v1/brands/b1/stock/changes", &t, "once", &body);
    assert_eq!(again.body, first.body);
    assert_eq!(again.lsn, first.lsn);
    assert_eq!(s.stock("b1", &t, "S1")["locations"]["tsukuba"]["on_hand"], 5);
    assert_eq!(
        s.post_key(
            "/v1/brands/b1/stock/changes",
            &t,
            "once",
            &json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 6}]})
        )
        .status,
        422
    );
}

#[test]
fn generated_admin_token_is_printed_once_and_stored_as_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zaiko"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("ZAIKO_ADMIN_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let base = line.trim().strip_prefix("zaiko listening on ").unwrap().to_string();
    let client = reqwest::blocking::Client::new();
    // Wait for readiness, then for the token line in the log.
    let token = loop {
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        if let Some(t) = log.split_whitespace().find(|w| w.starts_with("zk_admin_")) {
            break t.to_string();
        }
        assert!(child.try_wait().unwrap().is_none(), "server exited: {log}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let r = client.get(format!("{base}/v1/brands")).bearer_auth(&token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();
    // The secret is nowhere on disk.
    let secret = token.strip_prefix("zk_admin_").unwrap();
    for entry in std::fs::read_dir(data.join("wal")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
}

#[test]
fn demo_start_loads_the_sample_business_once() {
    let mut s = crate::helpers::TestServer::spawn_with(crate::helpers::Options { args: vec!["--demo".into()], ..Default::default() });
    let brands = s.get("/v1/brands", ADMIN).expect(200)["brands"].as_array().unwrap().len();
    assert!(brands >= 5, "{brands} brands");
    let sku = s.get("/v1/brands/komorebi/skus/KM-00001-CH-XS", ADMIN).expect(200);
    assert_eq!(sku["name"], "ビッグシルエット 麻シャツ");
    assert!(sku["stock"]["locations"].as_object().is_some_and(|l| !l.is_empty()));
    // The first shipment ends as the data's last status line for it says.
    let data = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo/shipment_status.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> =
        data.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|v: &serde_json::Value| v["shipment"] == "SH-000001").collect();
    let last = lines.last().expect("SH-000001 has status lines");
    let shipment = s.get(&format!("/v1/brands/{}/shipments/SH-000001", last["brand"].as_str().unwrap()), ADMIN).expect(200);
    assert_eq!(shipment["status"], last["status"]);
    let tracking = lines.iter().rev().find_map(|l| l["tracking_number"].as_str());
    assert_eq!(shipment["tracking_number"].as_str(), tracking);
    // A second start on the same dir serves what is there and loads nothing again.
    let before = s.get("/v1/brands/komorebi/skus/KM-00001-CH-XS", ADMIN).expect(200)["version"].clone();
    s.restart();
    assert_eq!(s.get("/v1/brands/komorebi/skus/KM-00001-CH-XS", ADMIN).expect(200)["version"], before);
    assert!(s.data_dir.join("demo-loaded").exists());
}

#[test]
fn demo_refuses_a_data_dir_that_holds_other_data() {
    let mut s = TestServer::spawn();
    s.setup_brand("mine", &[], &[]);
    s.kill9();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zaiko"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("empty data dir"), "{stderr}");
    // Nothing was touched: the brand is still there.
    s.start();
    assert_eq!(s.get("/v1/brands/mine", ADMIN).status, 200);
}

/// Issue 19: every durable answer to a write carries `X-Zaiko-Lsn`, also when the write
/// changed nothing (a second release, a repeated status, a second revoke): a client
/// that reads its writes through `min_lsn` always has one to pass.
#[test]
fn writes_that_change_nothing_still_carry_an_lsn() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b-lsn", &["tsukuba"], &["S1"]);
    s.set_stock("b-lsn", &t, "S1", "tsukuba", 10);
    let reserve = json!({"id": "R1", "channel": "ec", "lines": [{"sku": "S1", "quantity": 1}]});
    s.post("/v1/brands/b-lsn/reservations", &t, &reserve).expect(201);
    let first = s.post("/v1/brands/b-lsn/reservations/R1/release", &t, &json!({}));
    let first_lsn = first.lsn.expect("a release carries X-Zaiko-Lsn");
    let again = s.post("/v1/brands/b-lsn/reservations/R1/release", &t, &json!({}));
    assert_eq!(again.status, 200);
    assert!(again.lsn.expect("a second release carries X-Zaiko-Lsn") >= first_lsn);

    let ship = json!({"id": "SH1", "lines": [{"sku": "S1", "quantity": 1}],
        "ship_to": {"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"}});
    s.post("/v1/brands/b-lsn/shipments", &t, &ship).expect(201);
    let picking = s.post("/v1/brands/b-lsn/shipments/SH1/status", &t, &json!({"status": "picking"}));
    let picking_lsn = picking.lsn.expect("a status change carries X-Zaiko-Lsn");
    let repeated = s.post("/v1/brands/b-lsn/shipments/SH1/status", &t, &json!({"status": "picking"}));
    assert_eq!(repeated.status, 200);
    assert!(repeated.lsn.expect("a repeated status carries X-Zaiko-Lsn") >= picking_lsn);

    let token = s.post("/v1/brands/b-lsn/tokens", ADMIN, &json!({})).expect(201);
    let id = token["id"].as_str().unwrap();
    assert!(s.delete(&format!("/v1/tokens/{id}"), ADMIN).lsn.is_some());
    let revoked_again = s.delete(&format!("/v1/tokens/{id}"), ADMIN);
    assert_eq!(revoked_again.status, 204);
    assert!(revoked_again.lsn.is_some(), "a second revoke carries X-Zaiko-Lsn");
    // Reads are not writes: no header.
    assert!(s.get("/v1/brands/b-lsn/reservations/R1", &t).lsn.is_none());
}
