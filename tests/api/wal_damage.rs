//! Damage done to a real journal: torn tails cut at many offsets, a flipped byte in
//! the middle, and injected write/fsync failures (fail-stop).

use std::time::Duration;

use serde_json::json;
use zaiko::journal::format::{scan, SegmentEnd};

use crate::helpers::{corrupt_third_last_record, last_segment, Options, TestServer};

fn adjust(s: &TestServer, token: &str, key: &str) -> Option<u64> {
    let r = s.post_key(
        "/v1/brands/b1/stock/changes",
        token,
        key,
        &json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}]}),
    );
    (r.status == 200).then(|| r.lsn.expect("lsn"))
}

fn on_hand(s: &TestServer, token: &str) -> i64 {
    s.stock("b1", token, "S1")["locations"]["tsukuba"]["on_hand"].as_i64().unwrap_or(0)
}

fn verify(data_dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zaiko")).args(["wal", "verify", "--data-dir"]).arg(data_dir).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn torn_tails_are_cut_back_to_the_last_whole_record() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    for i in 0..5 {
        adjust(&s, &t, &format!("a{i}")).unwrap();
    }
    s.kill9();
    let seg = last_segment(&s.data_dir);
    let pristine = std::fs::read(&seg).unwrap();
    let frames = scan(&pristine, true).unwrap().frames;
    assert!(frames.len() >= 8);
    // Cut inside each of the last three records (the five adjusts are the last five
    // records), at the first byte, inside the header, and inside the payload.
    for back in 1..=3usize {
        let f = frames[frames.len() - back];
        let end = f.payload_start + f.payload_len;
        for cut in [f.offset + 1, f.offset + 7, f.payload_start, f.payload_start + f.payload_len / 2, end - 1] {
            std::fs::write(&seg, &pristine[..cut]).unwrap();
            let (ok, out) = verify(&s.data_dir);
            // What is left of the torn record may be all zero bytes (a 1-byte cut where the
            // length's low byte is 0): that reads as the segment's zero preallocation, a
            // clean end at the same place, so nothing differs but the word.
            let looks_preallocated = pristine[f.offset..cut].iter().all(|&b| b == 0);
            assert!(ok && (out.contains("torn tail") || looks_preallocated), "cut {cut}: {out}");
            s.start();
            assert_eq!(on_hand(&s, &t), 5 - back as i64, "cut at {cut}, {back} records back");
            s.kill9();
        }
    }
    // After a cut, writing continues at the cut and survives another restart.
    let f = frames[frames.len() - 1];
    std::fs::write(&seg, &pristine[..f.payload_start + 3]).unwrap();
    s.start();
    adjust(&s, &t, "after-cut").unwrap();
    s.restart();
    assert_eq!(on_hand(&s, &t), 5);
    let bytes = std::fs::read(last_segment(&s.data_dir)).unwrap();
    assert!(matches!(scan(&bytes, true).unwrap().end, SegmentEnd::Clean { .. }));
}

#[test]
fn a_flipped_byte_in_the_middle_refuses_to_start_and_names_the_place() {
    let mut s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    for i in 0..5 {
        adjust(&s, &t, &format!("a{i}")).unwrap();
    }
    s.kill9();
    let (seg, victim, bytes) = corrupt_third_last_record(&s.data_dir);

    let (ok, out) = verify(&s.data_dir);
    assert!(!ok);
    assert!(out.contains(&format!("byte offset {}", victim.offset)), "{out}");
    s.start_unready();
    let status = s.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = s.log();
    assert!(
        log.contains("corruption") && log.contains(&seg.display().to_string()) && log.contains(&format!("byte offset {}", victim.offset)),
        "{log}"
    );
    // Nothing was cut: the damage is still there for an operator to look at.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);

    // The operator decides to cut there: without the flag nothing changes, with it the
    // server starts with every record before the damage.
    let repair = |accept: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zaiko"));
        cmd.args(["wal", "repair", "--data-dir"]).arg(&s.data_dir);
        if accept {
            cmd.arg("--accept-data-loss");
        }
        cmd.output().unwrap()
    };
    assert!(!repair(false).status.success());
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    let out = repair(true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("quarantine-"));
    s.start();
    assert_eq!(on_hand(&s, &t), 2, "the three adjusts from the damaged record on are cut");
}

/// Starts a server with a journal fault, drives concurrent changes until it stops,
/// then restarts without the fault and checks that every acknowledged change is there
/// and that retrying every request (same key) lands each change exactly once.
fn fail_stop_with(fault: (&str, &str)) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut s = TestServer::spawn_with(Options { data_dir: Some(data.clone()), ..Options::default() });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    s.kill9();
    // Setup took some batches; the fault counts from the new process's start.
    let mut s =
        TestServer::spawn_with(Options { data_dir: Some(data), envs: vec![(fault.0.into(), fault.1.into())], ..Options::default() });
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for c in 0..4 {
            let (s, t, acked) = (&s, &t, &acked);
            scope.spawn(move || {
                for i in 0..200 {
                    let key = format!("c{c}-{i}");
                    let body = json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1}]});
                    match s.try_post_key("/v1/brands/b1/stock/changes", t, &key, &body) {
                        Some(r) if r.status == 200 => acked.lock().unwrap().push(key),
                        Some(r) => panic!("unexpected answer {r:?}"),
                        None => break,
                    }
                }
            });
        }
    });
    let status = s.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "the process must stop after the failure");
    assert!(s.log().contains("failed") && s.log().contains("fail-stop"), "{}", s.log());
    let acked = acked.into_inner().unwrap();
    s.clear_env();
    s.start();
    let after_restart = on_hand(&s, &t);
    assert!(after_restart >= acked.len() as i64, "acknowledged changes lost: {} acked, {after_restart} found", acked.len());
    // Retrying every request with its key lands each exactly once.
    for c in 0..4 {
        for i in 0..200 {
            adjust(&s, &t, &format!("c{c}-{i}")).unwrap();
        }
    }
    assert_eq!(on_hand(&s, &t), 800);
}

#[test]
fn fsync_failure_stops_the_process_and_acknowledges_nothing_after() {
    fail_stop_with(("ZAIKO_FAULT_FSYNC_FAIL_AFTER", "25"));
}

#[test]
fn write_failure_stops_the_process_and_acknowledges_nothing_after() {
    fail_stop_with(("ZAIKO_FAULT_WRITE_FAIL_AFTER", "25"));
}
