//! Hostile import files against the real server, watching its memory: a huge CSV
//! header, a row of millions of fields, a huge quoted field, a huge NDJSON line, deep
//! JSON nesting, several uploads at once. Each must be a short 4xx or a job whose
//! error list is bounded, and the server's resident memory must stay within
//! [`RSS_GROWTH_MAX`] of what it was before (a 50 MB header once took 2.3 GB and
//! answered with a 175 MB problem).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Resp, TestServer};
use crate::receiver::wait_until;

/// How far the server's resident memory may grow over its resident memory before the
/// hostile files, whatever their size. The importer holds at most a row of
/// `ROW_BYTES_MAX` (1 MiB) and a chunk per job being read; each upload a write buffer
/// and a few body chunks; the rest is the allocator keeping freed pages for a second.
const RSS_GROWTH_MAX: u64 = 64 << 20;
/// Size of each hostile file: far past every bound, small enough for a CI disk.
const HOSTILE_BYTES: usize = 48 << 20;
/// The largest problem or job body we accept for any of them.
const ANSWER_BYTES_MAX: usize = 64 << 10;
const WAIT: Duration = Duration::from_secs(180);

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// Samples the server's RSS until stopped; past `ceiling` it SIGKILLs the server so a
/// regression fails the test instead of taking the machine's memory.
struct Watcher {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(pid: u32, ceiling: u64) -> Watcher {
        let (peak, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let rss = status_kb(pid, "VmRSS:") << 10;
                p.fetch_max(rss, Ordering::Relaxed);
                if rss > ceiling {
                    let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Watcher { peak, stop, thread: Some(thread) }
    }

    /// The highest RSS seen, in bytes.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// The answer and its length; `None` if the server did not answer (the watcher killed it).
fn post_file(s: &TestServer, t: &str, kind: &str, content_type: &str, body: Vec<u8>) -> Option<(Resp, usize)> {
    let r = s
        .client
        .post(s.url(&format!("/v1/brands/b1/imports?kind={kind}")))
        .bearer_auth(t)
        .header("content-type", content_type)
        .body(body)
        .send()
        .ok()?;
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes = r.bytes().ok()?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Some((Resp { status, body, lsn: None, content_type, retry_after: None }, bytes.len()))
}

fn job(s: &TestServer, t: &str, id: &str) -> (Value, usize) {
    let r = s.client.get(s.url(&format!("/v1/brands/b1/imports/{id}"))).bearer_auth(t).send().expect("job");
    let bytes = r.bytes().expect("body");
    (serde_json::from_slice(&bytes).expect("job json"), bytes.len())
}

fn repeat_to(prefix: &str, unit: &str, suffix: &str, bytes: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes + prefix.len() + suffix.len());
    v.extend_from_slice(prefix.as_bytes());
    while v.len() < bytes {
        v.extend_from_slice(unit.as_bytes());
    }
    v.extend_from_slice(suffix.as_bytes());
    v
}

struct Hostile {
    name: &'static str,
    kind: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    /// `None`: refused on upload with 422; `Some(n)`: a job with `n` failed rows.
    failed_rows: Option<u64>,
}

fn hostile_files() -> Vec<Hostile> {
    let csv = "text/csv";
    let ndjson = "application/x-ndjson";
    vec![
        // 24M unknown columns, each once echoed in the problem.
        Hostile {
            name: "huge header",
            kind: "stock",
            content_type: csv,
            body: repeat_to("", "x,", "\n", HOSTILE_BYTES),
            failed_rows: None,
        },
        Hostile {
            name: "a header of one huge column name",
            kind: "stock",
            content_type: csv,
            body: repeat_to("sku,location,on_hand,", "y", "\nS1,tsukuba,1\n", HOSTILE_BYTES),
            failed_rows: None,
        },
        Hostile {
            name: "a row of millions of fields",
            kind: "stock",
            content_type: csv,
            body: repeat_to("sku,location,on_hand\nS1,tsukuba,1\nS1,tsukuba,", "1,", "1\nS1,tsukuba,2\n", HOSTILE_BYTES),
            failed_rows: Some(1),
        },
        Hostile {
            name: "a row of one huge quoted field",
            kind: "stock",
            content_type: csv,
            body: repeat_to("sku,location,on_hand,reason\nS1,tsukuba,1,\"", "a\n\"\"", "\"\nS1,tsukuba,3,ok\n", HOSTILE_BYTES),
            failed_rows: Some(1),
        },
        Hostile {
            name: "a huge NDJSON line",
            kind: "catalog",
            content_type: ndjson,
            body: repeat_to(
                "{\"sku\":\"S1\",\"name\":\"n\"}\n{\"sku\":\"S2\",\"name\":\"",
                "ab",
                "\"}\n{\"sku\":\"S3\",\"name\":\"n\"}\n",
                HOSTILE_BYTES,
            ),
            failed_rows: Some(1),
        },
        Hostile {
            name: "deep NDJSON nesting and huge arrays",
            kind: "catalog",
            content_type: ndjson,
            body: {
                let mut v = repeat_to("", "[", "\n", 900 << 10);
                for _ in 0..40 {
                    v.extend(repeat_to("{\"sku\":\"S4\",\"name\":\"n\",\"tags\":[\"\"", ",\"\"", "]}\n", 1000 << 10));
                }
                v
            },
            failed_rows: Some(41),
        },
    ]
}

#[test]
fn hostile_import_files_get_short_answers_and_bounded_memory() {
    let s = TestServer::spawn();
    let t = s.setup_brand("b1", &["tsukuba"], &["S1"]);
    let pid = s.pid();
    let files = hostile_files();
    let baseline = status_kb(pid, "VmRSS:") << 10;
    let watcher = Watcher::start(pid, baseline + RSS_GROWTH_MAX);

    // Four at once (the server streams four uploads at a time), then the rest.
    let mut answers: Vec<(&str, Option<(Resp, usize)>)> = Vec::new();
    for batch in files.chunks(4) {
        answers.extend(std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|f| {
                    let (s, t) = (&s, &t);
                    scope.spawn(move || (f.name, post_file(s, t, f.kind, f.content_type, f.body.clone())))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        }));
    }
    if answers.iter().any(|a| a.1.is_none()) {
        let peak = watcher.finish();
        panic!(
            "the server stopped answering; RSS grew from {} MiB to {} MiB (bound: {} MiB more)",
            baseline >> 20,
            peak >> 20,
            RSS_GROWTH_MAX >> 20
        );
    }
    let mut jobs = Vec::new();
    for (f, (name, answer)) in files.iter().zip(&answers) {
        let (r, len) = answer.as_ref().expect("answered");
        assert!(*len <= ANSWER_BYTES_MAX, "{name}: a {len}-byte answer");
        match f.failed_rows {
            None => {
                assert_eq!((r.status, r.code()), (422, "unprocessable"), "{name}: {:?}", r.body);
                assert!(r.content_type.starts_with("application/problem+json"), "{name}");
            }
            Some(n) => {
                assert_eq!(r.status, 202, "{name}: {:?}", r.body);
                jobs.push((name, r.body["id"].as_str().unwrap().to_string(), n));
            }
        }
    }
    for (name, id, failed) in jobs {
        let mut last = (Value::Null, 0);
        let finished = wait_until(WAIT, || {
            last = job(&s, &t, &id);
            last.0["status"] == "done" || last.0["status"] == "failed"
        });
        assert!(finished, "{name}: the job did not finish: {}", last.0);
        let (body, len) = last;
        assert_eq!(body["status"], "done", "{name}: {body}");
        assert_eq!(body["rows_failed"].as_u64(), Some(failed), "{name}: {body}");
        assert!(len <= ANSWER_BYTES_MAX, "{name}: a {len}-byte job");
    }
    let peak = watcher.finish();
    eprintln!("RSS before: {} MiB, highest seen: {} MiB", baseline >> 20, peak >> 20);
    assert!(
        peak <= baseline + RSS_GROWTH_MAX,
        "RSS grew from {} MiB to {} MiB (bound: {} MiB more)",
        baseline >> 20,
        peak >> 20,
        RSS_GROWTH_MAX >> 20
    );
    // The rows around the hostile ones were applied.
    let on_hand = s.stock("b1", &t, "S1")["locations"]["tsukuba"]["on_hand"].as_i64();
    assert!(on_hand.is_some_and(|n| (1..=3).contains(&n)), "{on_hand:?}");
    for sku in ["S2", "S3", "S4"] {
        let status = s.get(&format!("/v1/brands/b1/skus/{sku}"), &t).status;
        assert_eq!(status, if sku == "S3" { 200 } else { 404 }, "{sku}");
    }
}
