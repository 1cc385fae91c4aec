//! The feed in process: a real journal, the feed thread, and pages read back.

use std::sync::mpsc;

use super::*;
use crate::clock::ManualClock;
use crate::domain::catalog::Catalog;
use crate::domain::event::{encode, BrandRecord, Event, WalRecord};
use crate::domain::Timestamp;
use crate::journal::{open, FailureAction, JournalConfig, OpenOptions};

struct Rig {
    _dir: tempfile::TempDir,
    journal: Journal,
    feed: Feed,
    imports: mpsc::Receiver<(BrandId, Id)>,
}

fn config(dir: &std::path::Path, max_events: u64) -> FeedConfig {
    FeedConfig {
        path: dir.join("feed.sqlite"),
        retention: Retention { max_age_ms: 3_600_000, max_events_per_brand: max_events },
        prune_interval: Duration::from_secs(3600),
    }
}

fn rig_in(dir: tempfile::TempDir, max_events: u64) -> Rig {
    let cfg = JournalConfig {
        segment_bytes: 64 << 10,
        record_bytes_max: 16 << 10,
        on_failure: FailureAction::Poison,
        ..JournalConfig::default()
    };
    let (journal, _) = open(&dir.path().join("wal"), OpenOptions { config: cfg, replay_after: 0 }, |_, _| Ok(())).unwrap();
    let clock: SharedClock = Arc::new(ManualClock::new(Timestamp(1_000_000)));
    let (tx, imports) = mpsc::channel();
    let feed = Feed::start(config(dir.path(), max_events), journal.clone(), clock, tx, &[]).unwrap();
    Rig { _dir: dir, journal, feed, imports }
}

fn brand(s: &str) -> BrandId {
    BrandId::parse(s).unwrap()
}

fn append(j: &Journal, b: &str, events: Vec<Event>) -> Lsn {
    let rec = WalRecord::Brand(BrandRecord { brand: brand(b), at: Timestamp(1_000_000), idempotency: None, events });
    j.append(encode(&rec)).unwrap()
}

fn upsert(sku: &str, version: u64) -> Event {
    Event::SkuUpserted { sku: Id::parse(sku).unwrap(), catalog: Catalog { name: "n".into(), ..Catalog::default() }, version }
}

async fn all(feed: &Feed, b: &str, after: Option<u64>) -> Vec<serde_json::Value> {
    let page = feed.page(&brand(b), after, PAGE_LIMIT_MAX, Duration::ZERO).await.unwrap();
    page.events.iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

#[tokio::test]
async fn every_brand_event_once_in_commit_order_with_dense_seqs() {
    let r = rig_in(tempfile::tempdir().unwrap(), 1000);
    let mut last = 0;
    for i in 0..50u64 {
        append(&r.journal, "a", vec![upsert(&format!("S{i}"), 1), upsert(&format!("S{i}"), 2)]);
        last = append(
            &r.journal,
            "b",
            vec![Event::SkuDeleted { sku: Id::parse("X").unwrap() }, Event::ReservationPurged { id: Id::parse("R").unwrap() }],
        );
    }
    assert!(r.feed.wait_covered(last, Duration::from_secs(10)).await);
    let a = all(&r.feed, "a", None).await;
    assert_eq!(a.len(), 100);
    for (i, e) in a.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        assert_eq!(e["type"], "sku.upserted");
        assert_eq!(e["data"]["version"], (i % 2) as u64 + 1);
    }
    let b = all(&r.feed, "b", None).await;
    assert_eq!(b.len(), 50, "purges are not feed events");
    let ids: std::collections::HashSet<_> = a.iter().chain(&b).map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 150, "event ids are unique");
    let rest = all(&r.feed, "a", Some(98)).await;
    assert_eq!(rest.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![99, 100]);
    r.journal.shutdown();
}

#[tokio::test]
async fn a_long_poll_wakes_when_the_brand_gets_an_event() {
    let r = rig_in(tempfile::tempdir().unwrap(), 1000);
    let lsn = append(&r.journal, "a", vec![upsert("S1", 1)]);
    assert!(r.feed.wait_covered(lsn, Duration::from_secs(10)).await);
    let feed = r.feed.clone();
    let waiter = tokio::spawn(async move { feed.page(&brand("a"), Some(1), 10, Duration::from_secs(30)).await });
    // Another brand's event does not answer the poll; this brand's does.
    let other = append(&r.journal, "b", vec![upsert("S1", 1)]);
    assert!(r.feed.wait_covered(other, Duration::from_secs(10)).await);
    assert!(!waiter.is_finished());
    append(&r.journal, "a", vec![upsert("S1", 2)]);
    let page = tokio::time::timeout(Duration::from_secs(20), waiter).await.expect("woken before the 30 s wait").unwrap().unwrap();
    assert_eq!(page.next, 2);
    assert_eq!(page.events.len(), 1);
    r.journal.shutdown();
}

#[tokio::test]
async fn cursors_past_the_retention_or_ahead_of_the_feed_are_errors() {
    let r = rig_in(tempfile::tempdir().unwrap(), 5);
    let mut last = 0;
    for i in 0..12u64 {
        last = append(&r.journal, "a", vec![upsert("S1", i + 1)]);
    }
    assert!(r.feed.wait_covered(last, Duration::from_secs(10)).await);
    let err = r.feed.page(&brand("a"), Some(3), 10, Duration::ZERO).await.unwrap_err();
    assert!(matches!(err, FeedError::Expired { after: 3, pruned_through: 7 }), "{err:?}");
    assert_eq!(all(&r.feed, "a", Some(7)).await.len(), 5);
    assert_eq!(all(&r.feed, "a", None).await[0]["seq"], 8, "without a cursor the feed starts at the oldest kept event");
    assert!(matches!(r.feed.page(&brand("a"), Some(13), 10, Duration::ZERO).await, Err(FeedError::Ahead { .. })));
    r.journal.shutdown();
}

#[tokio::test]
async fn a_restart_resumes_after_the_covered_lsn_without_doubling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let r = rig_in(dir, 1000);
    let lsn = append(&r.journal, "a", vec![upsert("S1", 1)]);
    assert!(r.feed.wait_covered(lsn, Duration::from_secs(10)).await);
    r.journal.shutdown();
    // Records written while the feed is not running are picked up on the next start.
    let cfg = JournalConfig {
        segment_bytes: 64 << 10,
        record_bytes_max: 16 << 10,
        on_failure: FailureAction::Poison,
        ..JournalConfig::default()
    };
    let (journal, _) = open(&path.join("wal"), OpenOptions { config: cfg.clone(), replay_after: 0 }, |_, _| Ok(())).unwrap();
    let last = append(&journal, "a", vec![upsert("S1", 2), Event::ImportQueued { job: Box::new(spec()) }]);
    journal.wait_durable_blocking(last).unwrap();
    let clock: SharedClock = Arc::new(ManualClock::new(Timestamp(0)));
    let (tx, imports) = mpsc::channel();
    let feed = Feed::start(config(&path, 1000), journal.clone(), clock, tx, &[]).unwrap();
    assert!(feed.wait_covered(last, Duration::from_secs(10)).await);
    let events = all(&feed, "a", None).await;
    assert_eq!(events.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(imports.recv_timeout(Duration::from_secs(5)).unwrap().1.as_str(), "J1");
    drop(r.imports);
    journal.shutdown();
}

fn spec() -> crate::domain::import::ImportSpec {
    use crate::domain::import::{ImportFormat, ImportKind, ImportSpec};
    ImportSpec {
        id: Id::parse("J1").unwrap(),
        kind: ImportKind::Stock,
        format: ImportFormat::Csv,
        file: "J1.csv".into(),
        bytes: 0,
        sha256: [0; 32],
        created_at: Timestamp(0),
    }
}

#[test]
fn cursors_name_their_history_and_only_the_current_one_is_a_position() {
    use crate::journal::history::{Cause, History, HistoryId};
    let h = HistoryId(0xabc);
    assert_eq!(Cursor::parse("17"), Some(Cursor { history: None, seq: 17 }));
    assert_eq!(Cursor::parse("0000000000000abc.17"), Some(Cursor { history: Some(h), seq: 17 }));
    for bad in ["", "x", "+1", "-1", "1.2", ".5", "0000000000000abc.", "0000000000000ABC.1", "0000000000000abc.+1", "99999999999999999999"]
    {
        assert_eq!(Cursor::parse(bad), None, "{bad:?}");
    }
    assert_eq!(Cursor::render(Some(h), 17), "0000000000000abc.17");
    assert_eq!(Cursor::render(None, 17), "17");

    let first = History { id: HistoryId(1), ..History::initial(Cause::New) };
    let forked = History { id: h, ..History::fork(9, Some(first.id), Cause::Restore) };
    let plain = Cursor::parse("17").unwrap();
    assert!(plain.belongs_to(&first), "plain cursors are the first history's, as before histories existed");
    assert!(!plain.belongs_to(&forked), "a plain cursor after a restore is from the old server");
    assert!(Cursor::parse("0").unwrap().belongs_to(&forked), "0 is the beginning in every history");
    assert!(Cursor::parse("0000000000000abc.17").unwrap().belongs_to(&forked));
    assert!(!Cursor::parse("0000000000000abd.17").unwrap().belongs_to(&forked));
    assert!(!Cursor::parse("0000000000000abc.17").unwrap().belongs_to(&first));
}
