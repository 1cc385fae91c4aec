//! Journal histories against real processes: after `snapshot restore` or a `wal repair`
//! that cuts, the LSNs after the fork hold other records. Old cursors must be refused
//! with a way to resync (410 `cursor_history_changed` and a `next`), new events and
//! webhook deliveries must never carry an id the old server handed out, and a plain
//! restart must keep the history.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{corrupt_third_last_record, Options, Resp, TestServer, ADMIN};
use crate::receiver::{first_arrivals, signature_ok, wait_until, Receiver};

/// Long enough for every condition here on a slow, shared machine.
const WAIT: Duration = Duration::from_secs(60);

fn zaiko(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zaiko")).args(args).output().unwrap()
}

fn events(s: &TestServer, token: &str, after: &str) -> Resp {
    s.get(&format!("/v1/brands/b1/events?after={after}&limit=1000"), token)
}

/// The whole feed after `after` (from the oldest kept without), and the last `next`.
fn read_all(s: &TestServer, token: &str, after: Option<&str>) -> (Vec<Value>, String) {
    let mut out = Vec::new();
    let mut cursor = after.map(str::to_string);
    loop {
        let page = match &cursor {
            Some(c) => events(s, token, c).expect(200),
            None => s.get("/v1/brands/b1/events?limit=1000", token).expect(200),
        };
        let got = page["events"].as_array().unwrap().clone();
        let next = page["next"].as_str().unwrap().to_string();
        if got.is_empty() {
            return (out, next);
        }
        out.extend(got);
        cursor = Some(next);
    }
}

fn ids(evs: &[Value]) -> HashSet<String> {
    evs.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

fn on_hands(evs: &[Value]) -> Vec<i64> {
    evs.iter().filter(|e| e["type"] == "stock.changed").map(|e| e["data"]["locations"]["tsukuba"]["on_hand"].as_i64().unwrap()).collect()
}

fn on_hand(s: &TestServer, token: &str) -> i64 {
    s.stock("b1", token, "S1")["locations"]["tsukuba"]["on_hand"].as_i64().unwrap()
}

/// A 410 `cursor_history_changed` whose `next` is a cursor of the current history.
#[track_caller]
fn assert_history_changed(r: &Resp) -> String {
    assert_eq!((r.status, r.code()), (410, "cursor_history_changed"), "{:?}", r.body);
    assert_eq!(r.content_type, "application/problem+json");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("read the stock") && detail.contains("`next`"), "the detail says how to resync: {detail}");
    r.body["next"].as_str().expect("a `next` to follow after the resync").to_string()
}

/// Restores the snapshot at `lsn` of `from` into a new dir under `parent`; returns the
/// dir and what the command said.
fn restore(from: &Path, lsn: u64, parent: &Path) -> (PathBuf, String) {
    let file = from.join("snapshots").join(format!("snap-{lsn:020}.sqlite"));
    let new_dir = parent.join("restored");
    let out = zaiko(&["snapshot", "restore", "--from", file.to_str().unwrap(), "--data-dir", new_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (new_dir, String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn after_a_restore_old_cursors_are_gone_with_a_way_to_resync_and_no_event_id_comes_back() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    for n in [11, 12, 13] {
        s.set_stock("b1", &t, "S1", "tsukuba", n);
    }
    let (before, at_snapshot) = read_all(&s, &t, None);
    let lsn = s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201)["lsn"].as_u64().unwrap();
    // After the snapshot: changes the restored server will not have.
    for n in [14, 15] {
        s.set_stock("b1", &t, "S1", "tsukuba", n);
    }
    let (lost, after_snapshot) = read_all(&s, &t, Some(&at_snapshot));
    assert_eq!(on_hands(&lost), vec![14, 15]);
    let old_ids: HashSet<String> = ids(&before).union(&ids(&lost)).cloned().collect();
    s.kill9();

    let dir = tempfile::tempdir().unwrap();
    let (restored, said) = restore(&s.data_dir, lsn, dir.path());
    let mut r = TestServer::spawn_with(Options { data_dir: Some(restored), ..Options::default() });
    // The consumer's cursor from after the snapshot: refused, with a cursor to go on from.
    let next = assert_history_changed(&events(&r, &t, &after_snapshot));
    // Every cursor of the old history is refused, the one at the snapshot too: the
    // restored data dir has no feed from before its snapshot to check it against.
    assert_history_changed(&events(&r, &t, &at_snapshot));
    // A SKU's history follows the feed's cursors and their rules.
    assert_history_changed(&r.get(&format!("/v1/brands/b1/skus/S1/history?after={after_snapshot}"), &t));
    // Resync as the problem says: read the stock, then follow the feed from `next`.
    assert_eq!(on_hand(&r, &t), 13, "the state at the snapshot");
    // The journal goes on at the LSNs the lost changes had, with other contents.
    for n in [20, 21] {
        r.set_stock("b1", &t, "S1", "tsukuba", n);
    }
    let (followed, new_next) = read_all(&r, &t, Some(&next));
    assert_eq!(on_hands(&followed), vec![20, 21], "every change after the resync point, once");
    assert_eq!(followed[0]["data"]["version"], lost[0]["data"]["version"], "the same SKU version as a lost event…");
    assert_ne!(followed[0]["id"], lost[0]["id"], "…but never its id");
    let (whole, _) = read_all(&r, &t, None);
    let reused: Vec<_> = ids(&whole).intersection(&old_ids).cloned().collect();
    assert!(reused.is_empty(), "event ids of the old server handed out again: {reused:?}");

    // A plain restart keeps the history: its cursors and ids stay, old ones stay gone.
    r.kill9();
    r.start();
    assert_eq!(events(&r, &t, &new_next).expect(200), json!({"events": [], "next": new_next}));
    assert_history_changed(&events(&r, &t, &after_snapshot));
    assert_eq!(read_all(&r, &t, None).0, whole, "the same events with the same ids after the restart");
    // The command told the operator, and named the admin token the new server needs.
    assert!(said.contains("new history") && said.contains("--admin-token"), "{said}");
}

#[test]
fn webhook_deliveries_after_a_restore_carry_new_ids_and_skip_nothing() {
    let args: Vec<String> = ["--webhook-allow-private", "--webhook-retry-schedule", "100ms"].iter().map(|a| a.to_string()).collect();
    let mut s = TestServer::spawn_with(Options { args: args.clone(), ..Options::default() });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let rx = Receiver::start();
    let hook = s.post("/v1/brands/b1/webhooks", &t, &json!({"url": rx.url, "events": ["stock.changed"]})).expect(201);
    let secret = hook["secret"].as_str().unwrap().to_string();
    for n in [1, 2, 3] {
        s.set_stock("b1", &t, "S1", "tsukuba", n);
    }
    assert!(wait_until(WAIT, || first_arrivals(&rx.accepted()).len() == 3));
    let lsn = s.post("/v1/admin/snapshots", ADMIN, &json!({})).expect(201)["lsn"].as_u64().unwrap();
    s.set_stock("b1", &t, "S1", "tsukuba", 4);
    assert!(wait_until(WAIT, || first_arrivals(&rx.accepted()).len() == 4));
    let old_ids: HashSet<String> = rx.got().into_iter().map(|r| r.id).collect();
    s.kill9();

    let dir = tempfile::tempdir().unwrap();
    let r = TestServer::spawn_with(Options { data_dir: Some(restore(&s.data_dir, lsn, dir.path()).0), args, ..Options::default() });
    for n in [40, 41] {
        r.set_stock("b1", &t, "S1", "tsukuba", n);
    }
    assert!(wait_until(WAIT, || first_arrivals(&rx.accepted()).len() == 6), "the restored server delivers its changes");
    let new: Vec<_> = first_arrivals(&rx.accepted()).into_iter().skip(4).collect();
    let feed = read_all(&r, &t, None).0;
    for (got, want) in new.iter().zip([40, 41]) {
        assert!(!old_ids.contains(&got.id), "webhook-id {} was used by the old server", got.id);
        assert!(signature_ok(&secret, got), "signed with the subscription's secret");
        assert_eq!(got.json["data"]["locations"]["tsukuba"]["on_hand"], want);
        assert_eq!(got.json["id"], got.id.as_str(), "webhook-id is the event id");
        assert!(feed.iter().any(|e| e["id"] == got.id.as_str()), "the same id as in the restored feed");
    }
}

#[test]
fn a_wal_repair_that_cuts_begins_a_new_history() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    for i in 0..5 {
        let body = json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}]});
        s.post_key("/v1/brands/b1/stock/changes", &t, &format!("a{i}"), &body).expect(200);
    }
    let (seen, cursor) = read_all(&s, &t, None);
    s.kill9();
    // Damage the record three back; the repair cuts it and the two after it.
    corrupt_third_last_record(&s.data_dir);
    let out = Command::new(env!("CARGO_BIN_EXE_zaiko"))
        .args(["wal", "repair", "--accept-data-loss", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    s.start();
    // The consumer saw the three cut changes: its cursor is refused.
    let next = assert_history_changed(&events(&s, &t, &cursor));
    assert_eq!(on_hand(&s, &t), 2);
    // New changes take the LSNs of the cut records.
    for i in 0..3 {
        let body = json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 10}]});
        s.post_key("/v1/brands/b1/stock/changes", &t, &format!("b{i}"), &body).expect(200);
    }
    let (followed, _) = read_all(&s, &t, Some(&next));
    assert_eq!(on_hands(&followed), vec![12, 22, 32], "every change after the repair, once");
    let reused: Vec<_> = ids(&followed).intersection(&ids(&seen)).cloned().collect();
    assert!(reused.is_empty(), "event ids from before the repair handed out again: {reused:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("new history"), "the repair says what it did to consumers");
    let verify = zaiko(&["wal", "verify", "--data-dir", s.data_dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("(repair, records after lsn"), "{}", String::from_utf8_lossy(&verify.stdout));
}
