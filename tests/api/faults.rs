//! Damage done to a running server: a full disk, a slow disk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Options, TestServer};

fn adjust(s: &TestServer, t: &str, key: &str) -> Option<crate::helpers::Resp> {
    s.try_post_key(
        "/v1/brands/b1/stock/changes",
        t,
        key,
        &json!({"changes": [{"sku": "S1", "location": "tsukuba", "op": "adjust", "delta": 1, "reason": "x".repeat(150)}]}),
    )
}

fn on_hand(s: &TestServer, t: &str) -> i64 {
    s.stock("b1", t, "S1")["locations"]["tsukuba"]["on_hand"].as_i64().unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap()
}

#[test]
fn a_full_disk_refuses_writes_with_503_loses_nothing_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("disk-is-full");
    let args = ["--wal-segment-bytes", "262144", "--wal-record-bytes-max", "65536"].map(String::from).to_vec();
    let mut s = TestServer::spawn_with(Options {
        args,
        envs: vec![("ZAIKO_FAULT_ENOSPC_FILE".into(), flag.to_str().unwrap().into())],
        ..Options::default()
    });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    std::fs::write(&flag, b"").unwrap();
    let mut acked = 0;
    let refused = loop {
        let r = adjust(&s, &t, &format!("k{acked}")).expect("the server stays up");
        if r.status != 200 {
            break r;
        }
        acked += 1;
        assert!(acked < 20_000, "two 256 KiB segments cannot take 20,000 records");
    };
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.code(), "overloaded");
    assert!(refused.body["detail"].as_str().unwrap().contains("disk is full"), "{}", refused.body);
    assert!(refused.retry_after.is_some());
    assert_eq!(s.request("GET", "/readyz", None, None, &[]).status, 503);
    assert_eq!(on_hand(&s, &t), acked, "reads go on and show every acknowledged write, nothing else");
    // Space comes back: the same request (same key) goes through once the next segment
    // has been allocated (the preparer retries every second).
    std::fs::remove_file(&flag).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = adjust(&s, &t, &format!("k{acked}")).unwrap();
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume: {:?}", r.body);
        std::thread::sleep(Duration::from_millis(50));
    }
    acked += 1;
    assert_eq!(s.request("GET", "/readyz", None, None, &[]).status, 200);
    s.kill9();
    s.start();
    assert_eq!(on_hand(&s, &t), acked);
}

#[test]
fn a_slow_disk_gives_bounded_queues_and_503_not_unbounded_memory() {
    let args =
        ["--mailbox-capacity", "16", "--wal-queue-bytes-max", "65536", "--wal-record-bytes-max", "65536", "--wal-segment-bytes", "1048576"]
            .map(String::from)
            .to_vec();
    let mut s =
        TestServer::spawn_with(Options { args, envs: vec![("ZAIKO_FAULT_FSYNC_DELAY_MS".into(), "150".into())], ..Options::default() });
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let rss_before = rss_kib(s.pid());
    let (ok, shed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let acked_keys = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for c in 0..48 {
            let (s, t, ok, shed, acked_keys) = (&s, &t, &ok, &shed, &acked_keys);
            scope.spawn(move || {
                for i in 0..12 {
                    let key = format!("c{c}-{i}");
                    let r = adjust(s, t, &key).expect("the server stays up");
                    match r.status {
                        200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            acked_keys.lock().unwrap().push(key);
                        }
                        503 => {
                            assert_eq!(r.code(), "overloaded");
                            assert!(r.retry_after.is_some());
                            shed.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected {other}: {}", r.body),
                    }
                }
            });
        }
    });
    let (ok, shed) = (ok.into_inner(), shed.into_inner());
    eprintln!("slow disk: {ok} acknowledged, {shed} shed with 503");
    assert!(ok > 0);
    assert!(shed > 0, "with 48 writers on a 150 ms fsync, the 16-deep mailbox or the 64 KiB queue must shed load");
    let growth_kib = rss_kib(s.pid()).saturating_sub(rss_before);
    assert!(growth_kib < 200 * 1024, "memory grew by {growth_kib} KiB");
    let acked = acked_keys.into_inner().unwrap().len() as i64;
    s.kill9();
    s.clear_env();
    s.start();
    // Shed requests changed nothing; every acknowledged one is there.
    assert_eq!(on_hand(&s, &t), acked);
}
