//! In-process tests of the journal: append, durability, replay, rollover, torn tail,
//! disk full and fail-stop (poison mode).

use std::path::Path;
use std::time::Duration;

use super::*;

fn small_config() -> JournalConfig {
    JournalConfig { segment_bytes: 4096, record_bytes_max: 1024, on_failure: FailureAction::Poison, ..JournalConfig::default() }
}

fn replay_all(dir: &Path, cfg: JournalConfig, after: Lsn) -> (Journal, OpenReport, Vec<(Lsn, Vec<u8>)>) {
    let mut seen = Vec::new();
    let (j, report) = open(dir, OpenOptions { config: cfg, replay_after: after }, |lsn, p| {
        seen.push((lsn, p.to_vec()));
        Ok(())
    })
    .unwrap();
    (j, report, seen)
}

fn payload(i: u64) -> Vec<u8> {
    format!("record number {i} {}", "x".repeat((i % 50) as usize)).into_bytes()
}

#[test]
fn appends_are_durable_and_replayed_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (j, report, seen) = replay_all(dir.path(), small_config(), 0);
    assert_eq!(report.last_lsn, 0);
    assert!(seen.is_empty());
    let mut last = 0;
    for i in 1..=500u64 {
        let lsn = j.append(payload(i)).unwrap();
        assert_eq!(lsn, i, "lsns are dense and increasing");
        last = lsn;
    }
    j.wait_durable_blocking(last).unwrap();
    assert!(j.durable_lsn() >= 500);
    j.shutdown();
    assert!(files::list_segments(dir.path()).unwrap().len() > 3, "small segments roll over");

    let (j, report, seen) = replay_all(dir.path(), small_config(), 0);
    assert_eq!(report.last_lsn, 500);
    assert_eq!(seen.len(), 500);
    for (i, (lsn, p)) in seen.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
        assert_eq!(p, &payload(i as u64 + 1));
    }
    // Appending continues after the replayed records.
    assert_eq!(j.append(b"after".to_vec()).unwrap(), 501);
    j.shutdown();
    let (_j, _, seen) = replay_all(dir.path(), small_config(), 490);
    assert_eq!(seen.first().map(|s| s.0), Some(491));
    assert_eq!(seen.last().map(|s| s.0), Some(501));
}

#[test]
fn removed_segments_are_only_those_wholly_covered() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay_all(dir.path(), small_config(), 0);
    let mut last = 0;
    for i in 1..=300u64 {
        last = j.append(payload(i)).unwrap();
    }
    j.wait_durable_blocking(last).unwrap();
    let removed = j.remove_segments_through(150).unwrap();
    assert!(removed > 0);
    j.shutdown();
    // Replaying after 150 still works: every record after it is there.
    let (_j, report, seen) = replay_all(dir.path(), small_config(), 150);
    assert_eq!(seen.first().map(|s| s.0), Some(151));
    assert_eq!(report.last_lsn, 300);
    // Replaying from the start no longer can, and says so.
    let err = open(dir.path(), OpenOptions { config: small_config(), replay_after: 0 }, |_, _| Ok(()));
    assert!(matches!(err, Err(JournalError::Invalid(m)) if m.contains("segments are missing")));
}

#[test]
fn torn_tail_is_cut_and_writing_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig { segment_bytes: 1 << 20, ..small_config() };
    let (j, _, _) = replay_all(dir.path(), cfg.clone(), 0);
    for i in 1..=10u64 {
        j.append(payload(i)).unwrap();
    }
    j.wait_durable_blocking(10).unwrap();
    j.shutdown();
    let segs = files::list_segments(dir.path()).unwrap();
    let path = &segs.last().unwrap().1;
    let bytes = std::fs::read(path).unwrap();
    let scan = format::scan(&bytes, true).unwrap();
    let last = scan.frames.last().unwrap();
    // Cut in the middle of the last record.
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len((last.payload_start + 2) as u64).unwrap();
    drop(f);
    let v = verify(dir.path()).unwrap();
    assert!(v.corruption.is_none());
    assert_eq!(v.torn_tail.as_ref().map(|t| t.1), Some(last.offset as u64));
    let (j, report, seen) = replay_all(dir.path(), cfg.clone(), 0);
    assert_eq!(seen.len(), 9);
    assert_eq!(report.torn_tail.map(|t| t.1), Some(last.offset as u64));
    assert_eq!(j.append(b"again".to_vec()).unwrap(), 10);
    j.wait_durable_blocking(10).unwrap();
    j.shutdown();
    let (_j, _, seen) = replay_all(dir.path(), cfg, 0);
    assert_eq!(seen.last().unwrap(), &(10, b"again".to_vec()));
}

#[test]
fn corruption_in_the_middle_refuses_to_open_and_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig { segment_bytes: 1 << 20, ..small_config() };
    let (j, _, _) = replay_all(dir.path(), cfg.clone(), 0);
    for i in 1..=10u64 {
        j.append(payload(i)).unwrap();
    }
    j.wait_durable_blocking(10).unwrap();
    j.shutdown();
    let path = files::list_segments(dir.path()).unwrap().pop().unwrap().1;
    let mut bytes = std::fs::read(&path).unwrap();
    let scan = format::scan(&bytes, true).unwrap();
    let victim = scan.frames[4];
    bytes[victim.payload_start + 1] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = open(dir.path(), OpenOptions { config: cfg, replay_after: 0 }, |_, _| Ok(())).err().unwrap();
    match err {
        JournalError::Corrupt { path: p, offset, .. } => {
            assert_eq!(p, path);
            assert_eq!(offset, victim.offset as u64);
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(verify(dir.path()).unwrap().corruption.is_some());
}

#[test]
fn injected_fsync_failure_stops_the_journal_and_acknowledges_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config();
    cfg.faults.fail_fsync_after = Some(3);
    let (j, _, _) = replay_all(dir.path(), cfg, 0);
    let mut results = Vec::new();
    for i in 1..=20u64 {
        match j.append(payload(i)) {
            Ok(lsn) => results.push((lsn, j.wait_durable_blocking(lsn))),
            Err(e) => {
                assert_eq!(e, AppendError::Stopped);
                break;
            }
        }
    }
    let acked: Vec<_> = results.iter().filter(|r| r.1.is_ok()).map(|r| r.0).collect();
    // The first fsync belongs to no batch? No: every fsync is a batch; three succeed.
    assert_eq!(acked, vec![1, 2, 3], "exactly the records of the three good fsyncs are acknowledged");
    assert!(results.iter().skip(3).all(|r| r.1 == Err(AppendError::Stopped)));
    assert_eq!(j.append(b"late".to_vec()), Err(AppendError::Stopped));
}

#[test]
fn full_disk_refuses_appends_that_need_a_new_segment_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("enospc");
    let mut cfg = small_config();
    cfg.faults.enospc_while_exists = Some(flag.clone());
    cfg.space_retry = Duration::from_millis(10);
    let wal = dir.path().join("wal");
    std::fs::write(&flag, b"").unwrap();
    let (j, _, _) = replay_all(&wal, cfg.clone(), 0);
    let mut acked = Vec::new();
    let refused = loop {
        match j.append(payload(7)) {
            Ok(lsn) => acked.push(lsn),
            Err(e) => break e,
        }
        assert!(acked.len() < 1000, "a 4 KiB segment cannot take 1000 records");
    };
    assert_eq!(refused, AppendError::DiskFull);
    j.wait_durable_blocking(*acked.last().unwrap()).unwrap();
    assert!(j.disk_full());
    std::fs::remove_file(&flag).unwrap();
    // The preparer retries every 10 ms; wait for it by polling the journal's own state.
    let lsn = loop {
        match j.append(payload(8)) {
            Ok(lsn) => break lsn,
            Err(AppendError::DiskFull) => std::thread::yield_now(),
            Err(e) => panic!("unexpected {e}"),
        }
    };
    assert_eq!(lsn, acked.len() as u64 + 1);
    j.wait_durable_blocking(lsn).unwrap();
    j.shutdown();
    let (_j, report, seen) = replay_all(&wal, cfg, 0);
    assert_eq!(report.last_lsn, lsn);
    assert_eq!(seen.len() as u64, lsn);
}

#[test]
fn a_tail_reads_every_durable_record_once_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay_all(dir.path(), small_config(), 0);
    let mut tail = tail::Tail::new(dir.path(), 1);
    let mut seen: Vec<(Lsn, Vec<u8>)> = Vec::new();
    let mut read = |tail: &mut tail::Tail, durable: Lsn, max: usize| {
        tail.read_durable::<()>(durable, max, |lsn, p| {
            seen.push((lsn, p.to_vec()));
            Ok(())
        })
        .unwrap()
        .unwrap()
    };
    assert_eq!(read(&mut tail, j.durable_lsn(), 100), 0, "nothing yet");
    for round in 0..5u64 {
        let mut last = 0;
        for i in 1..=100u64 {
            last = j.append(payload(round * 100 + i)).unwrap();
        }
        j.wait_durable_blocking(last).unwrap();
        // In small steps, so that reads stop inside segments and resume there.
        while read(&mut tail, j.durable_lsn(), 7) > 0 {}
    }
    j.shutdown();
    assert!(files::list_segments(dir.path()).unwrap().len() > 3);
    assert_eq!(seen.len(), 500);
    for (i, (lsn, p)) in seen.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
        assert_eq!(p, &payload(i as u64 + 1));
    }
    // A new tail can start anywhere, including in the middle of a segment.
    let mut tail = tail::Tail::new(dir.path(), 333);
    let mut first = None;
    tail.read_durable::<()>(500, 1, |lsn, p| {
        first = Some((lsn, p.to_vec()));
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(first, Some((333, payload(333))));
}

#[test]
fn a_tail_never_reads_past_the_durable_lsn_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay_all(dir.path(), small_config(), 0);
    for i in 1..=10 {
        j.append(payload(i)).unwrap();
    }
    j.wait_durable_blocking(10).unwrap();
    let mut tail = tail::Tail::new(dir.path(), 1);
    let n = tail.read_durable::<()>(4, 100, |_, _| Ok(())).unwrap().unwrap();
    assert_eq!((n, tail.next_lsn()), (4, 5));
    let n = tail.read_durable::<()>(10, 100, |_, _| Ok(())).unwrap().unwrap();
    assert_eq!((n, tail.next_lsn()), (6, 11));
    j.shutdown();
}

#[test]
fn a_durable_record_damaged_under_a_tail_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay_all(dir.path(), small_config(), 0);
    for i in 1..=3 {
        j.append(payload(i)).unwrap();
    }
    j.wait_durable_blocking(3).unwrap();
    j.shutdown();
    let seg = files::list_segments(dir.path()).unwrap()[0].1.clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[format::SEGMENT_HEADER_BYTES + format::FRAME_HEADER_BYTES + 2] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let mut tail = tail::Tail::new(dir.path(), 1);
    let err = tail.read_durable::<()>(3, 10, |_, _| Ok(())).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
}

#[test]
fn read_holds_keep_segment_removal_behind_their_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay_all(dir.path(), small_config(), 0);
    let mut last = 0;
    for i in 1..=300 {
        last = j.append(payload(i)).unwrap();
    }
    j.wait_durable_blocking(last).unwrap();
    let before = files::list_segments(dir.path()).unwrap().len();
    let hold = j.hold("feed", 0);
    assert_eq!(j.remove_segments_through(last).unwrap(), 0, "the reader has consumed nothing");
    hold.advance(150);
    let removed = j.remove_segments_through(last).unwrap();
    assert!(removed > 0);
    let segs = files::list_segments(dir.path()).unwrap();
    assert!(segs[0].0 <= 151, "record 151 is still on disk: {segs:?}");
    drop(hold);
    assert!(j.remove_segments_through(last).unwrap() > 0);
    assert!(files::list_segments(dir.path()).unwrap().len() < before);
    // The timed wait returns the durable LSN when nothing new comes.
    assert_eq!(j.wait_durable_timeout(last + 1, Duration::from_millis(10)).unwrap(), last);
    j.shutdown();
    assert!(j.wait_durable_timeout(last + 1, Duration::from_millis(10)).is_err());
}

/// The snapshot builder reads a range once, noting where each record lies, then reads
/// the records again by place in another order: each comes back as it was, from a
/// segment removed meanwhile too (its file stays open), and a record changed on disk
/// since is an error, not a different payload.
#[test]
fn records_read_again_by_place_are_the_records_read_first() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay_all(dir.path(), small_config(), 0);
    for i in 1..=300 {
        j.append(payload(i)).unwrap();
    }
    j.wait_durable_blocking(300).unwrap();
    let mut places = Vec::new();
    let files = read_range_located(dir.path(), 40, 290, |lsn, p, at| {
        assert_eq!(p, payload(lsn));
        places.push(at);
        Ok(())
    })
    .unwrap();
    assert_eq!(places.iter().map(|at| at.lsn).collect::<Vec<_>>(), (41..=290).collect::<Vec<_>>());
    let segments = files::list_segments(dir.path()).unwrap();
    assert!(segments.len() > 3, "the range spans segments: {segments:?}");
    j.shutdown();
    // The first segment of the range goes away under the reader.
    let first = segments.iter().rev().find(|(first, _)| *first <= 41).unwrap().1.clone();
    std::fs::remove_file(&first).unwrap();
    let mut buf = Vec::new();
    for at in places.iter().rev() {
        assert_eq!(files.read(*at, &mut buf).unwrap(), payload(at.lsn));
    }
    // A byte of record 200's payload changes on disk after the first read.
    let (_, seg) = segments.iter().rev().find(|(first, _)| *first <= 200).unwrap();
    let at = places.iter().find(|at| at.lsn == 200).unwrap();
    let mut bytes = std::fs::read(seg).unwrap();
    let i = bytes.windows(payload(200).len()).position(|w| w == payload(200)).unwrap();
    bytes[i + 3] ^= 0xff;
    std::fs::write(seg, bytes).unwrap();
    let err = files.read(*at, &mut buf).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
}
