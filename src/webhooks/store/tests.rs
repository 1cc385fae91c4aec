//! The delivery store against a real feed store: queueing with the bound and the
//! type filter, outcomes, redrive, replay.

use super::*;
use crate::domain::event::Event;
use crate::domain::Id;
use crate::feed::store::{Batch, NewEvent, Retention, Store};
use crate::journal::history::{Cause, HistoryId};

/// A data dir's first history.
fn first() -> History {
    History { id: HistoryId(1), ..History::initial(Cause::New) }
}

fn feed_with(path: &Path, kinds: &[&'static str]) {
    feed_in(path, &first(), 1, kinds)
}

/// Commits events of `kinds` at LSNs from `lsn` to the feed store, in `history`.
fn feed_in(path: &Path, history: &History, lsn: u64, kinds: &[&'static str]) {
    let mut s = Store::open(path, Retention { max_age_ms: i64::MAX / 2, max_events_per_brand: u64::MAX / 2 }, history, &[]).unwrap();
    let events = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let sku = Id::parse(&format!("S{}", i % 3)).unwrap();
            let ev = match *k {
                "stock.changed" => Event::StockChanged {
                    sku,
                    version: i as u64 + 1,
                    levels: Default::default(),
                    channels: vec![],
                    cause: crate::domain::event::Cause::Change { op: crate::domain::stock::StockOp::Adjust { delta: 1 }, reason: None },
                },
                "sku.deleted" => Event::SkuDeleted { sku },
                other => panic!("no test event of type {other}"),
            };
            NewEvent::of(&BrandId::parse("b1").unwrap(), lsn + i as u64, 0, Timestamp(0), &ev).unwrap()
        })
        .collect();
    s.commit(&Batch { events, hooks: vec![], last_lsn: lsn + kinds.len() as u64 - 1, sources: vec![], seeds: vec![] }).unwrap();
}

fn b1() -> BrandId {
    BrandId::parse("b1").unwrap()
}

async fn enqueue(db: &Db, limit: usize) -> Enqueued {
    let types = vec!["stock.changed".to_string()];
    db.ask(|reply| Op::Enqueue { webhook: "wh".into(), brand: b1(), types, limit, now_ms: 1, reply }).await.unwrap()
}

async fn statuses(db: &Db, status: Option<Status>) -> Vec<(u64, Status)> {
    let rows = db.ask(|reply| Op::List { webhook: "wh".into(), status, after: 0, limit: 100, reply }).await.unwrap();
    rows.iter().map(|r| (r.seq, r.status)).collect()
}

#[tokio::test]
async fn queueing_follows_the_cursor_with_the_bound_and_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.sqlite");
    feed_with(&feed, &["stock.changed", "sku.deleted", "stock.changed", "stock.changed", "stock.changed"]);
    let db = start(&dir.path().join("webhooks.sqlite"), &feed, &first()).unwrap();
    let (queued, more) = db.ask(|reply| Op::Load { webhook: "wh".into(), brand: b1(), start_seq: 1, reply }).await.unwrap();
    assert!(queued.is_empty() && !more);
    let first = enqueue(&db, 2).await;
    assert_eq!(first.added.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![3, 4], "starts after start_seq, skips other types");
    assert!(!first.at_end);
    assert_eq!(first.added[0].event_id, "evt_3_0");
    let rest = enqueue(&db, 10).await;
    assert_eq!(rest.added.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![5]);
    assert!(rest.at_end);
    assert!(enqueue(&db, 10).await.added.is_empty(), "nothing is queued twice");

    let outcome = |seq, status| Outcome {
        webhook: "wh".into(),
        seq,
        status,
        attempts: 3,
        next_attempt_ms: 0,
        at_ms: 5,
        http_status: Some(500),
        error: Some("x".into()),
    };
    db.send(Op::Record(outcome(3, Status::Delivered))).await.unwrap();
    db.send(Op::Record(outcome(4, Status::Dead))).await.unwrap();
    assert_eq!(statuses(&db, None).await, vec![(3, Status::Delivered), (4, Status::Dead), (5, Status::Pending)]);
    let (queued, _) = db.ask(|reply| Op::Load { webhook: "wh".into(), brand: b1(), start_seq: 0, reply }).await.unwrap();
    assert_eq!(queued.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![5], "a second load keeps the cursor and loads what waits");

    assert_eq!(db.ask(|reply| Op::Redrive { webhook: "wh".into(), now_ms: 9, reply }).await.unwrap(), 1);
    assert_eq!(statuses(&db, Some(Status::Pending)).await, vec![(4, Status::Pending), (5, Status::Pending)]);

    // Replay: finished deliveries after the seq are queued again, waiting ones stay.
    assert!(db.ask(|reply| Op::Replay { webhook: "wh".into(), after_seq: 0, reply }).await.unwrap());
    let again = enqueue(&db, 10).await;
    assert_eq!(again.added.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![1, 3]);
    assert!(!db.ask(|reply| Op::Replay { webhook: "other".into(), after_seq: 0, reply }).await.unwrap());
    // A subscription deleted while the server was down is forgotten at the next start.
    db.send(Op::RetainOnly { webhooks: vec!["other".into()] }).await.unwrap();
    assert!(statuses(&db, None).await.is_empty());
    assert!(!db.ask(|reply| Op::Replay { webhook: "wh".into(), after_seq: 0, reply }).await.unwrap());
}

#[tokio::test]
async fn a_new_history_drops_the_old_queue_and_starts_every_subscription_at_its_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, path) = (dir.path().join("feed.sqlite"), dir.path().join("webhooks.sqlite"));
    feed_with(&feed, &["stock.changed", "stock.changed", "stock.changed"]);
    let db = start(&path, &feed, &first()).unwrap();
    db.ask(|reply| Op::Load { webhook: "wh".into(), brand: b1(), start_seq: 0, reply }).await.unwrap();
    assert_eq!(enqueue(&db, 10).await.added.len(), 3);
    drop(db);
    // A restore or a repair: the feed begins again after the fork, with seqs from 1.
    let forked = History::fork(10, Some(first().id), Cause::Repair);
    feed_in(&feed, &forked, 11, &["stock.changed"]);
    let db = start(&path, &feed, &forked).unwrap();
    assert!(statuses(&db, None).await.is_empty(), "the old history's deliveries are gone");
    let (queued, _) = db.ask(|reply| Op::Load { webhook: "wh".into(), brand: b1(), start_seq: 0, reply }).await.unwrap();
    assert!(queued.is_empty());
    let added = enqueue(&db, 10).await.added;
    assert_eq!(added.iter().map(|d| (d.seq, d.event_id.clone())).collect::<Vec<_>>(), vec![(1, format!("evt_{}_11_0", forked.id))]);
    drop(db);
    // Opened again in the same history: nothing is dropped.
    let db = start(&path, &feed, &forked).unwrap();
    assert_eq!(statuses(&db, None).await, vec![(1, Status::Pending)]);
}

#[tokio::test]
async fn dead_deliveries_handed_over_are_listed_and_redriven_by_the_next_store() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.sqlite");
    feed_with(&feed, &["stock.changed", "sku.deleted", "stock.changed", "stock.changed"]);
    // The old owner: seqs 1 and 3 die, 4 is delivered.
    let old = start(&dir.path().join("old.sqlite"), &feed, &first()).unwrap();
    old.ask(|reply| Op::Load { webhook: "wh".into(), brand: b1(), start_seq: 0, reply }).await.unwrap();
    enqueue(&old, 10).await;
    for (seq, status) in [(1, Status::Dead), (3, Status::Dead), (4, Status::Delivered)] {
        let error = Some("x".repeat(500));
        let o = Outcome { webhook: "wh".into(), seq, status, attempts: 2, next_attempt_ms: 0, at_ms: 7, http_status: Some(500), error };
        old.send(Op::Record(o)).await.unwrap();
    }
    let dead = old.ask(|reply| Op::Dead { webhook: "wh".into(), max: 10, reply }).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![3, 1], "newest first");
    assert_eq!(dead[0].last_error.as_ref().map(String::len), Some(DEAD_ERROR_CHARS_MAX), "errors are cut");
    assert_eq!(old.ask(|reply| Op::Dead { webhook: "wh".into(), max: 1, reply }).await.unwrap().len(), 1, "bounded");

    // The next owner: nothing of its own, then the handed-over position and dead ones.
    let new = start(&dir.path().join("new.sqlite"), &feed, &first()).unwrap();
    new.ask(|reply| Op::Adopt { webhook: "wh".into(), brand: b1(), through: 4, reply }).await.unwrap();
    let added = new.ask(|reply| Op::AdoptDead { webhook: "wh".into(), brand: b1(), dead: dead.clone(), reply }).await.unwrap();
    assert_eq!(added, 2);
    let again = new.ask(|reply| Op::AdoptDead { webhook: "wh".into(), brand: b1(), dead: dead.clone(), reply }).await.unwrap();
    assert_eq!(again, 0, "adopting twice adds nothing");
    let listed = new.ask(|reply| Op::List { webhook: "wh".into(), status: Some(Status::Dead), after: 0, limit: 10, reply }).await.unwrap();
    let old_listed =
        old.ask(|reply| Op::List { webhook: "wh".into(), status: Some(Status::Dead), after: 0, limit: 10, reply }).await.unwrap();
    let view = |v: &[DeliveryView]| v.iter().map(|d| (d.id.clone(), d.seq, d.kind.clone(), d.attempts, d.last_status)).collect::<Vec<_>>();
    assert_eq!(view(&listed), view(&old_listed), "the same dead deliveries, with their events' ids and types");
    assert_eq!(new.ask(|reply| Op::Redrive { webhook: "wh".into(), now_ms: 9, reply }).await.unwrap(), 2);
    let (queued, _) = new.ask(|reply| Op::Load { webhook: "wh".into(), brand: b1(), start_seq: 0, reply }).await.unwrap();
    assert_eq!(queued.iter().map(|d| (d.seq, d.event_id.as_str())).collect::<Vec<_>>(), vec![(1, "evt_1_0"), (3, "evt_3_0")]);
    assert!(enqueue(&new, 10).await.added.is_empty(), "nothing after the handed-over position is queued again");
}
