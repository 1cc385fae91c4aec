//! Snapshots against the real server and CLI: online creation, plain-SQLite reading,
//! restore into a new dir, recovery from snapshot + journal, damaged-snapshot fallback.

use std::process::Command;

use serde_json::json;

use crate::helpers::{Options, TestServer, ADMIN};

fn zaiko(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zaiko")).args(args).output().unwrap()
}

fn on_hand(s: &TestServer, t: &str, sku: &str) -> i64 {
    s.stock("b1", t, sku)["locations"]["tsukuba"]["on_hand"].as_i64().unwrap()
}

fn populate(s: &TestServer) -> String {
    let t = s.setup_brand("b1", &["tsukuba"], &["S1", "S2"]);
    s.set_stock("b1", &t, "S1", "tsukuba", 10);
    s.set_stock("b1", &t, "S2", "tsukuba", 3);
    s.post("/v1/brands/b1/reservations", &t, &json!({"id": "R1", "channel": "zozotown", "lines": [{"sku": "S1", "quantity": 2}]}))
        .expect(201);
    s.put("/v1/brands/b1/channels/zozotown", &t, &json!({"name": "ZOZOTOWN", "buffer": 1})).expect(201);
    t
}

#[test]
fn an_online_snapshot_opens_with_plain_sqlite_and_answers_ops_questions() {
    let s = TestServer::spawn();
    let t = populate(&s);
    let snap = s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201);
    let lsn = snap["lsn"].as_u64().unwrap();
    assert!(lsn > 0 && snap["bytes"].as_u64().unwrap() > 0);
    assert_eq!(s.post("/v1/admin/snapshots", &t, &json!({})).status, 403);
    let list = s.get("/v1/admin/snapshots", ADMIN).expect(200);
    assert_eq!(list["snapshots"][0]["lsn"], lsn);
    let file = s.data_dir.join("snapshots").join(format!("snap-{lsn:020}.sqlite"));
    let db = rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let q = |sql: &str| -> String { db.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0)).map(|v| format!("{v:?}")).unwrap() };
    assert_eq!(q("SELECT count(*) FROM skus WHERE brand = 'b1'"), "Integer(2)");
    assert_eq!(
        q("SELECT on_hand || '/' || reserved || '/' || available FROM stock WHERE sku = 'S1' AND location = 'tsukuba'"),
        "Text(\"10/2/8\")"
    );
    assert_eq!(q("SELECT status FROM reservations WHERE id = 'R1'"), "Text(\"active\")");
    assert_eq!(q("SELECT buffer FROM channels WHERE id = 'zozotown'"), "Integer(1)");
    assert_eq!(q("SELECT value FROM meta WHERE key = 'lsn'"), format!("Text(\"{lsn}\")"));
    // Tokens are there only as hashes: the brand token's secret is nowhere in the file.
    let secret = t.rsplit_once('_').unwrap().1;
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    assert_eq!(q("SELECT length(secret_sha256) FROM tokens LIMIT 1"), "Integer(32)");
}

#[test]
fn restore_gives_exactly_the_state_at_the_snapshot_and_writing_goes_on() {
    let s = TestServer::spawn();
    let t = populate(&s);
    let snap = s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201);
    let lsn = snap["lsn"].as_u64().unwrap();
    // After the snapshot: a change that the restored copy must not have.
    s.set_stock("b1", &t, "S2", "tsukuba", 99);
    let file = s.data_dir.join("snapshots").join(format!("snap-{lsn:020}.sqlite"));
    let dir = tempfile::tempdir().unwrap();
    let new_dir = dir.path().join("restored");
    let out = zaiko(&["snapshot", "restore", "--from", file.to_str().unwrap(), "--data-dir", new_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Restoring into a non-empty dir is refused.
    let again = zaiko(&["snapshot", "restore", "--from", file.to_str().unwrap(), "--data-dir", new_dir.to_str().unwrap()]);
    assert!(!again.status.success());
    let r = TestServer::spawn_with(Options { data_dir: Some(new_dir), ..Options::default() });
    assert_eq!(on_hand(&r, &t, "S2"), 3, "the state at the snapshot, not after");
    assert_eq!(on_hand(&r, &t, "S1"), 10);
    assert_eq!(r.get("/v1/brands/b1/reservations/R1", &t).expect(200)["status"], "active");
    // The brand token (a hash in the snapshot) still works; new writes get later LSNs.
    let w = r.post_key(
        "/v1/brands/b1/stock/changes",
        &t,
        "after-restore",
        &json!({"changes": [{"sku": "S2", "location": "tsukuba", "op": "adjust", "delta": 1}]}),
    );
    assert_eq!(w.status, 200);
    assert!(w.lsn.unwrap() > lsn, "the journal goes on after the snapshot's lsn");
}

#[test]
fn recovery_starts_from_the_snapshot_and_replays_the_journal_after_it() {
    let mut s = TestServer::spawn();
    let t = populate(&s);
    s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201);
    s.set_stock("b1", &t, "S2", "tsukuba", 42);
    s.kill9();
    s.start();
    assert_eq!(on_hand(&s, &t, "S2"), 42);
    assert!(s.log().contains("snapshot_lsn"), "recovery says where it started");
    // Offline create refuses while the server runs, works once it is stopped.
    let running = zaiko(&["snapshot", "create", "--data-dir", s.data_dir.to_str().unwrap()]);
    assert!(!running.status.success());
    s.kill9();
    let created = zaiko(&["snapshot", "create", "--data-dir", s.data_dir.to_str().unwrap()]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let listed = zaiko(&["snapshot", "list", "--data-dir", s.data_dir.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 3, "a header and two snapshots");
    s.start();
    assert_eq!(on_hand(&s, &t, "S2"), 42);
}

#[test]
fn a_damaged_newest_snapshot_never_yields_a_wrong_state() {
    let mut s = TestServer::spawn();
    let t = populate(&s);
    s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201);
    s.set_stock("b1", &t, "S2", "tsukuba", 7);
    let newest = s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201)["lsn"].as_u64().unwrap();
    s.set_stock("b1", &t, "S1", "tsukuba", 11);
    s.kill9();
    let file = s.data_dir.join("snapshots").join(format!("snap-{newest:020}.sqlite"));
    let pristine = std::fs::read(&file).unwrap();
    // Every 512th byte in turn: whatever the flip hits, the state after start is right.
    for pos in (4096..pristine.len()).step_by(pristine.len() / 6) {
        let mut bytes = pristine.clone();
        bytes[pos] ^= 0x5a;
        std::fs::write(&file, &bytes).unwrap();
        s.start();
        assert_eq!((on_hand(&s, &t, "S1"), on_hand(&s, &t, "S2")), (11, 7), "byte {pos}");
        s.kill9();
    }
    // A change SQLite cannot notice: the digest does, and recovery falls back.
    std::fs::write(&file, &pristine).unwrap();
    let db = rusqlite::Connection::open(&file).unwrap();
    db.execute("UPDATE stock SET on_hand = 1000 WHERE sku = 'S2'", []).unwrap();
    drop(db);
    s.start();
    assert_eq!(on_hand(&s, &t, "S2"), 7);
    assert!(s.log().contains("snapshot is damaged"), "{}", s.log());
}
