//! The data dir's disk filling up and space coming back, on a real, small tmpfs: a
//! snapshot that fails for lack of space leaves no temporary file (and one a crash left
//! is removed at start); while the journal cannot prepare its next segment, the feed,
//! snapshots and uploads hold back, so that space coming back goes to the journal.
//!
//! Mounting a tmpfs needs root, as CI has; without it the test fails, loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Options, TestServer, ADMIN};
use crate::receiver::wait_until;

/// Journal segments of the server under test: the smallest the flags allow with the
/// smallest record limit (64 KiB), twice a record and a page.
const SEGMENT_BYTES: u64 = 136 << 10;
const WAIT: Duration = Duration::from_secs(60);

/// A tmpfs of a given size, unmounted when dropped.
struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "zaiko-test"])
            .arg(&mnt)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs a small tmpfs and could not mount one (it must run as root, as CI does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { mnt, _dir: dir }
    }

    fn free_bytes(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.mnt).expect("statvfs");
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// A file that takes the free space of a filesystem.
struct Filler {
    file: std::fs::File,
    len: u64,
}

impl Filler {
    /// Allocates until at most `leave` bytes are free.
    fn fill(fs: &Tmpfs, leave: u64) -> Filler {
        let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(fs.mnt.join("filler")).expect("filler");
        let mut f = Filler { file, len: 0 };
        for step in [1 << 20, 64 << 10, 4 << 10] {
            while fs.free_bytes() >= leave + step {
                if rustix::fs::fallocate(&f.file, rustix::fs::FallocateFlags::empty(), f.len, step).is_err() {
                    break;
                }
                f.len += step;
            }
        }
        assert!(fs.free_bytes() <= leave + (4 << 10), "could not fill the tmpfs: {} bytes free", fs.free_bytes());
        f
    }

    /// Gives `bytes` back.
    fn free(&mut self, bytes: u64) {
        self.len -= bytes;
        self.file.set_len(self.len).expect("truncate the filler");
    }
}

fn metric(s: &TestServer, name: &str) -> Option<f64> {
    let text = s.client.get(s.url("/metrics")).send().ok()?.text().ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn snapshot_temp_files(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("snapshots"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| n.ends_with(".tmp")).collect())
        .unwrap_or_default()
}

#[test]
fn space_that_comes_back_goes_to_the_journal_first() {
    let fs = Tmpfs::mount(24 << 20);
    let data_dir = fs.mnt.join("data");
    let segment = SEGMENT_BYTES.to_string();
    let args = [
        ["--wal-segment-bytes", &segment],
        ["--wal-record-bytes-max", "65536"],
        ["--snapshot-every-records", "0"],
        ["--snapshot-every-minutes", "0"],
        // Many writes in a row; the brand's rate limit is not what this tests.
        ["--brand-rps", "100000"],
        ["--brand-burst", "100000"],
    ];
    let mut s = TestServer::spawn_with(Options {
        data_dir: Some(data_dir.clone()),
        args: args.iter().flatten().map(|a| a.to_string()).collect(),
        // The log is in the data dir: quiet, so that it takes no space either.
        envs: vec![("ZAIKO_LOG".into(), "off".into())],
        ..Default::default()
    });
    // A brand with no SKUs: its writes go to the journal and the feed only (no index).
    let t = s.setup_brand_raw("b1");
    let mut n = 0i64;
    let put = |n: &mut i64| {
        *n += 1;
        s.put("/v1/brands/b1/channels/web", &t, &json!({"name": "Web", "buffer": *n})).status
    };
    assert!(matches!(put(&mut n), 200 | 201));

    // The disk fills up. A snapshot fails for lack of space, and leaves no file behind.
    let mut filler = Filler::fill(&fs, 0);
    let r = s.request("POST", "/v1/admin/snapshots", Some(ADMIN), None, &[]);
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(snapshot_temp_files(&data_dir), Vec::<String>::new(), "a failed snapshot left its temporary file");

    // The journal fills its segments and cannot prepare the next: writes are refused.
    loop {
        match put(&mut n) {
            200 | 201 => assert!(n < 100_000, "the journal never ran out of space"),
            503 => break,
            other => panic!("write {n}: {other}"),
        }
    }
    assert_eq!(metric(&s, "zaiko_wal_disk_full"), Some(1.0));
    // The feed holds back meanwhile, and so do uploads.
    assert!(wait_until(WAIT, || metric(&s, "zaiko_feed_waiting_for_wal_space") == Some(1.0)), "the feed does not wait for the journal");
    let upload =
        s.raw("POST", "/v1/brands/b1/imports?kind=catalog", Some(&t), b"sku,name\nS1,n\n".to_vec(), &[("content-type", "text/csv")]);
    assert_eq!((upload.status, upload.code()), (503, "overloaded"), "{:?}", upload.body);

    // Space comes back: one segment's worth and two pages. The journal takes it, and
    // writes are accepted again.
    filler.free(SEGMENT_BYTES + (8 << 10));
    // (It then needs another segment, which does not fit: it is full again.)
    assert!(wait_until(WAIT, || matches!(put(&mut n), 200 | 201)), "the journal did not get the space that came back");

    // The rest comes back; the feed catches up with every accepted write.
    drop(filler);
    std::fs::remove_file(fs.mnt.join("filler")).expect("remove the filler");
    let last = s.put("/v1/brands/b1/channels/web", &t, &json!({"name": "Web", "buffer": 1_000_000})).expect(200);
    assert_eq!(last["buffer"], 1_000_000);
    let caught_up = wait_until(WAIT, || {
        let mut after = 0u64;
        loop {
            let page = s.get(&format!("/v1/brands/b1/events?limit=1000&after={after}"), &t);
            let Some(events) = page.body["events"].as_array().filter(|e| !e.is_empty()) else { return false };
            if events.iter().any(|e| e["data"]["buffer"] == 1_000_000) {
                return true;
            }
            after = page.body["next"].as_str().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
        }
    });
    assert!(caught_up, "the feed did not catch up once space came back");

    // A temporary file of a snapshot a crash interrupted is removed at start.
    s.kill9();
    let stale = data_dir.join("snapshots").join("snap-00000000000000000009.sqlite.tmp");
    std::fs::write(&stale, b"").expect("a stale temporary file");
    s.start();
    assert_eq!(snapshot_temp_files(&data_dir), Vec::<String>::new());
}
