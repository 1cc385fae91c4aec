//! A data dir written by an earlier zaiko (record format 1, snapshot format 1:
//! `tests/fixtures/format1/`) loads in today's server: the snapshot checks, the journal
//! after it replays, the feed's stored events render, and new writes follow.

use std::path::Path;

use serde_json::{json, Value};
use zaiko::domain::idempotency::Lookup;

use crate::helpers::{Options, TestServer, ADMIN};

const TOKEN: &str = "zk_42ea4fc2a2f95ea2_6VsRydfyBw8g38b28OWzl355nWileB4xQoJLhk_ETps";
const SEGMENT_BYTES: u64 = 135_168;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1").join(name)
}

fn sqlite_from_dump(dump: &str, to: &Path) {
    let conn = rusqlite::Connection::open(to).unwrap();
    conn.execute_batch(&std::fs::read_to_string(fixture(dump)).unwrap()).unwrap();
}

/// The fixture laid out as the old server left it.
fn format1_data_dir(dir: &Path) {
    for sub in ["wal", "snapshots"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let seg = dir.join("wal/00000000000000000001.wal");
    std::fs::copy(fixture("00000000000000000001.wal"), &seg).unwrap();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(SEGMENT_BYTES).unwrap();
    std::fs::copy(fixture("history.json"), dir.join("wal/history.json")).unwrap();
    sqlite_from_dump("snap-00000000000000000010.sql", &dir.join("snapshots/snap-00000000000000000010.sqlite"));
    sqlite_from_dump("feed.sql", &dir.join("feed.sqlite"));
}

fn level(on_hand: i64, reserved: i64, safety_stock: i64, available: i64, incoming: i64) -> Value {
    json!({"on_hand": on_hand, "reserved": reserved, "safety_stock": safety_stock, "available": available,
           "incoming": incoming, "unsellable": 0, "in_transit": 0})
}

#[test]
fn a_format_1_data_dir_loads_with_its_snapshot_journal_and_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    format1_data_dir(&dir);
    // The old snapshot itself loads and checks (its digest), not only the journal.
    let snap = dir.join("snapshots/snap-00000000000000000010.sqlite");
    let (state, info) = zaiko::snapshot::load(&snap).expect("a format-1 snapshot loads");
    assert_eq!((info.lsn, state.brands.len()), (10, 1));
    // Its outcome was stored with the request's whole SHA-256; memory keeps the first
    // 16 bytes, and the digest above was checked over all 32 the row holds.
    let fmt1 = state.brands.values().next().unwrap();
    let sha: [u8; 32] = hex::decode("CFBC9B64B950FD48ACE400B3B300B9119D66E26862669F688A064202A8E8CAB0").unwrap().try_into().unwrap();
    match fmt1.idempotency.lookup("k1", &sha) {
        Lookup::Replay(o) => {
            let answer: Value = serde_json::from_slice(&o.body.to_vec()).unwrap();
            assert_eq!((o.lsn, answer["results"][3]["available"].as_i64()), (7, Some(5)), "{answer}");
        }
        other => panic!("k1: {other:?}"),
    }
    let mut other = sha;
    other[15] ^= 1;
    assert!(matches!(fmt1.idempotency.lookup("k1", &other), Lookup::Mismatch));
    let args = ["--wal-record-bytes-max", "65536", "--wal-segment-bytes", "135168"].map(String::from).to_vec();
    let mut s = TestServer::spawn_with(Options { data_dir: Some(dir.clone()), args, ..Options::default() });
    assert!(!s.log().contains("damaged"), "{}", s.log());

    // What the old server answered last, plus the two new levels at zero.
    let s1 = s.stock("fmt1", TOKEN, "S1");
    assert_eq!(s1["version"], 5);
    assert_eq!(s1["locations"], json!({"shibuya": level(3, 0, 0, 3, 0), "tsukuba": level(8, 0, 0, 8, 0)}));
    assert_eq!(s1["channels"], json!({"ec": {"available": 7}}));
    let s2 = s.stock("fmt1", TOKEN, "S2");
    assert_eq!(s2["locations"], json!({"tsukuba": level(6, 1, 1, 4, 5)}));
    assert_eq!(s.get("/v1/brands/fmt1/shipments/SH-1", TOKEN).expect(200)["status"], "shipped");

    // The feed's events were stored in format 1 and still render, in order.
    let feed = s.get("/v1/brands/fmt1/events?limit=1000", TOKEN).expect(200);
    let events = feed["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.len(), 21);
    assert_eq!((types[0], types[10], types[20]), ("brand.created", "shipment.created", "channel.availability_changed"));
    let last = &events[19];
    assert_eq!((last["type"].as_str(), last["data"]["cause"]["reason"].as_str()), (Some("stock.changed"), Some("sold_in_store")));
    assert_eq!(last["data"]["locations"]["shibuya"], level(3, 0, 0, 3, 0));

    // New records follow the old ones in the same journal, and all of it replays.
    let body = json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "mark_unsellable", "quantity": 2}]});
    assert_eq!(s.post_key("/v1/brands/fmt1/stock/changes", TOKEN, "new-1", &body).expect(200)["results"][0]["on_hand"], 6);
    let next = feed["next"].as_str().unwrap();
    let new = s.get(&format!("/v1/brands/fmt1/events?after={next}"), TOKEN).expect(200);
    assert_eq!(new["events"][0]["data"]["locations"]["tsukuba"]["unsellable"], 2);
    s.kill9();
    s.start();
    assert_eq!(s.stock("fmt1", TOKEN, "S1")["locations"]["tsukuba"]["unsellable"], 2);
    // A snapshot of today's format holds both.
    s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201);
    let s2_now = s.stock("fmt1", TOKEN, "S2");
    s.kill9();
    std::fs::remove_file(dir.join("snapshots/snap-00000000000000000010.sqlite")).unwrap();
    s.start();
    assert_eq!(s.stock("fmt1", TOKEN, "S2"), s2_now);
    assert_eq!(s.stock("fmt1", TOKEN, "S1")["locations"]["tsukuba"]["unsellable"], 2);
}

/// A format-1 snapshot's digest covers all 32 bytes of each stored fingerprint, though
/// memory keeps 16: a snapshot whose last byte of one was changed is refused.
#[test]
fn a_format_1_snapshot_with_a_changed_fingerprint_tail_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = std::fs::read_to_string(fixture("snap-00000000000000000010.sql")).unwrap();
    let row = "8A064202A8E8CAB0','ok'";
    assert_eq!(dump.matches(row).count(), 1, "the fixture's one outcome");
    let snap = tmp.path().join("snap-00000000000000000010.sqlite");
    rusqlite::Connection::open(&snap).unwrap().execute_batch(&dump.replace(row, "8A064202A8E8CAB1','ok'")).unwrap();
    let err = zaiko::snapshot::load(&snap).map(|_| ()).expect_err("a changed fingerprint fails the digest");
    assert!(err.to_string().contains("does not match its recorded SHA-256"), "{err}");
}
