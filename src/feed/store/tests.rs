//! The feed store on a temp file: seq assignment, resume, both retentions.

use super::*;
use crate::domain::webhook::Webhook;
use crate::domain::Id;

fn ev(brand: &str, lsn: Lsn, at: i64, sku: &str) -> NewEvent {
    let deleted = Event::SkuDeleted { sku: Id::parse(sku).unwrap() };
    NewEvent::of(&BrandId::parse(brand).unwrap(), lsn, 0, Timestamp(at), &deleted).unwrap()
}

/// A data dir's first history (cursors and ids without an id).
fn first() -> History {
    History { id: HistoryId(1), ..History::initial(crate::journal::history::Cause::New) }
}

const KEEP_ALL: Retention = Retention { max_age_ms: i64::MAX / 2, max_events_per_brand: u64::MAX / 2 };

fn seqs(conn: &mut Connection, brand: &str, after: u64) -> (BrandPosition, Vec<u64>) {
    let (pos, evs) = read_after(conn, brand, after, 1000).unwrap().unwrap();
    (pos, evs.iter().map(|e| e.seq).collect())
}

#[test]
fn seqs_are_per_brand_dense_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    let batch = Batch {
        events: vec![ev("a", 1, 0, "x"), ev("b", 2, 0, "y"), ev("a", 3, 0, "z")],
        hooks: vec![],
        last_lsn: 4,
        sources: vec![],
        seeds: vec![],
    };
    let touched = s.commit(&batch).unwrap();
    assert_eq!(touched.len(), 2);
    assert_eq!(s.covered_lsn(), 4);
    drop(s);
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    assert_eq!(s.covered_lsn(), 4, "the covered lsn is committed with the events");
    s.commit(&Batch { events: vec![ev("a", 5, 0, "w")], hooks: vec![], last_lsn: 5, sources: vec![], seeds: vec![] }).unwrap();
    let mut r = open_reader(&path).unwrap();
    let (pos, a) = seqs(&mut r, "a", 0);
    assert_eq!(a, vec![1, 2, 3]);
    assert_eq!(pos.last_seq, 3);
    let (_, after) = seqs(&mut r, "a", 2);
    assert_eq!(after, vec![3]);
    assert_eq!(seqs(&mut r, "b", 0).1, vec![1]);
    assert!(read_after(&mut r, "c", 0, 10).unwrap().is_none());
    let (_, evs) = read_after(&mut r, "a", 0, 10).unwrap().unwrap();
    let body: serde_json::Value = serde_json::from_str(&evs[2].body).unwrap();
    assert_eq!(body["id"], "evt_5_0");
    assert_eq!(body["seq"], 3);
    assert_eq!(body["data"]["sku"], "w");
}

#[test]
fn the_count_retention_drops_the_oldest_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, Retention { max_age_ms: i64::MAX / 2, max_events_per_brand: 3 }, &first(), &[]).unwrap();
    let events = (1..=5).map(|i| ev("a", i, 0, "x")).collect();
    s.commit(&Batch { events, hooks: vec![], last_lsn: 5, sources: vec![], seeds: vec![] }).unwrap();
    let mut r = open_reader(&path).unwrap();
    let (pos, got) = seqs(&mut r, "a", 0);
    assert_eq!(pos.pruned_through, 2);
    assert_eq!(got, vec![3, 4, 5]);
}

#[test]
fn the_age_retention_drops_a_prefix_of_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, Retention { max_age_ms: 100, max_events_per_brand: u64::MAX / 2 }, &first(), &[]).unwrap();
    let mut events: Vec<NewEvent> = (1..=2500).map(|i| ev("a", i, 0, "x")).collect();
    events.push(ev("a", 2501, 1000, "new"));
    events.push(ev("b", 2502, 1000, "new"));
    s.commit(&Batch { events, hooks: vec![], last_lsn: 2502, sources: vec![], seeds: vec![] }).unwrap();
    assert_eq!(s.prune_by_age(Timestamp(1050)).unwrap(), 2500);
    let mut r = open_reader(&path).unwrap();
    let (pos, got) = seqs(&mut r, "a", 0);
    assert_eq!((pos.pruned_through, got), (2500, vec![2501]));
    assert_eq!(seqs(&mut r, "b", 0).1, vec![1]);
    drop(s);
    let s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    assert_eq!(s.brands[&BrandId::parse("a").unwrap()].pruned_through, 2500);
}

#[test]
fn webhook_rows_follow_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    let w = Webhook {
        id: Id::parse("wh1").unwrap(),
        url: "http://x/".into(),
        events: vec!["stock.changed".into()],
        secret: "whsec_AAAA".into(),
        created_at: Timestamp(0),
    };
    s.commit(&Batch { events: vec![ev("a", 1, 0, "x")], hooks: vec![], last_lsn: 1, sources: vec![], seeds: vec![] }).unwrap();
    // Created after the second of three events of its brand in the batch.
    let created = HookChange::Created { brand: BrandId::parse("a").unwrap(), webhook: Box::new(w), lsn: 7, position: 3 };
    let events = vec![ev("a", 5, 0, "x"), ev("b", 6, 0, "x"), ev("a", 6, 0, "x"), ev("a", 8, 0, "x")];
    s.commit(&Batch { events, hooks: vec![created], last_lsn: 8, sources: vec![], seeds: vec![] }).unwrap();
    let rows = load_webhooks(&s.conn).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].created_lsn, rows[0].start_seq, rows[0].events.clone()), (7, 3, vec!["stock.changed".to_string()]));
    s.commit(&Batch { events: vec![], hooks: vec![HookChange::Deleted { id: "wh1".into() }], last_lsn: 9, sources: vec![], seeds: vec![] })
        .unwrap();
    assert!(load_webhooks(&s.conn).unwrap().is_empty());
}

#[test]
fn a_stored_event_reads_back_as_the_json_rendered_from_it() {
    use crate::domain::event::Cause;
    use crate::domain::stock::{Level, Levels, StockOp};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    let changed = Event::StockChanged {
        sku: Id::parse("S-1").unwrap(),
        version: 4,
        levels: Levels(Box::new([(
            Id::parse("tsukuba").unwrap(),
            Level { on_hand: 9, reserved: 2, safety_stock: 1, incoming: 0, ..Level::default() },
        )])),
        channels: vec![(Id::parse("zozo").unwrap(), 6)],
        cause: Cause::Change { op: StockOp::Adjust { delta: -1 }, reason: Some("棚卸 \"q\"".into()) },
    };
    let brand = BrandId::parse("a").unwrap();
    let new = NewEvent::of(&brand, 7, 2, Timestamp(1_700_000_000_123), &changed).unwrap();
    s.commit(&Batch { events: vec![ev("a", 6, 0, "x"), new], hooks: vec![], last_lsn: 7, sources: vec![], seeds: vec![] }).unwrap();
    let mut r = open_reader(&path).unwrap();
    let (_, evs) = read_after(&mut r, "a", 1, 10).unwrap().unwrap();
    let data = crate::feed::render::data(&changed).unwrap();
    let want = event_json("evt_7_2", 2, "stock.changed", &Timestamp(1_700_000_000_123).to_rfc3339(), &data);
    assert_eq!(evs[0].body, want, "what was served before events were stored encoded");
    assert_eq!((evs[0].kind.as_str(), evs[0].key.as_str()), ("stock.changed", "sku:S-1"));
}

#[test]
fn a_schema_1_store_is_upgraded_in_place_and_its_json_rows_are_served_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let old_body = r#"{"id":"evt_3_0","seq":1,"type":"sku.deleted","at":"1970-01-01T00:00:00.000Z","data":{"sku":"old"}}"#;
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE brands (brand TEXT PRIMARY KEY, brand_no INTEGER NOT NULL UNIQUE,
                 last_seq INTEGER NOT NULL, pruned_through INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE events (id INTEGER PRIMARY KEY, lsn INTEGER NOT NULL, at_ms INTEGER NOT NULL,
                 type TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL);
             CREATE TABLE webhooks (id TEXT PRIMARY KEY, brand TEXT NOT NULL, url TEXT NOT NULL,
                 events TEXT NOT NULL, secret TEXT NOT NULL, created_lsn INTEGER NOT NULL, start_seq INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO meta (key, value) VALUES ('schema', 1), ('covered_lsn', 3);
             INSERT INTO brands VALUES ('a', 1, 1, 0);",
        )
        .unwrap();
        c.execute("INSERT INTO events VALUES (?1, 3, 0, 'sku.deleted', 'sku:old', ?2)", params![row_id(1, 1), old_body]).unwrap();
    }
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    assert_eq!(s.covered_lsn(), 3);
    s.commit(&Batch { events: vec![ev("a", 4, 0, "new")], hooks: vec![], last_lsn: 4, sources: vec![], seeds: vec![] }).unwrap();
    let mut r = open_reader(&path).unwrap();
    let (pos, evs) = read_after(&mut r, "a", 0, 10).unwrap().unwrap();
    assert_eq!(pos.last_seq, 2);
    assert_eq!(evs[0].body, old_body);
    let new: serde_json::Value = serde_json::from_str(&evs[1].body).unwrap();
    assert_eq!((new["id"].as_str(), new["seq"].as_u64(), new["data"]["sku"].as_str()), (Some("evt_4_0"), Some(2), Some("new")));
    let schema: i64 = r.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0)).unwrap();
    assert_eq!(schema, 2);
    drop(s);
    Store::open(&path, KEEP_ALL, &first(), &[]).expect("an upgraded store opens again");
}

#[test]
fn an_unreadable_event_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    s.commit(&Batch { events: vec![ev("a", 1, 0, "x")], hooks: vec![], last_lsn: 1, sources: vec![], seeds: vec![] }).unwrap();
    let mut r = open_reader(&path).unwrap();
    s.conn.execute("UPDATE events SET event = x'01ff'", []).unwrap();
    let err = read_after(&mut r, "a", 0, 10).unwrap_err().to_string();
    assert!(err.contains("event 1 of brand a is unreadable"), "{err}");
}

fn webhook(id: &str) -> Webhook {
    Webhook {
        id: Id::parse(id).unwrap(),
        url: "https://example.com/h".into(),
        events: vec!["stock.changed".into()],
        secret: "whsec_x".into(),
        created_at: Timestamp(0),
    }
}

#[test]
fn a_store_of_another_history_begins_again_after_the_fork_with_the_subscriptions_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    s.commit(&Batch {
        events: vec![ev("a", 1, 0, "x"), ev("a", 2, 0, "y"), ev("a", 3, 0, "z")],
        hooks: vec![],
        last_lsn: 3,
        ..Batch::default()
    })
    .unwrap();
    drop(s);
    // A repair cut the journal after lsn 1: lsn 2 will hold another record.
    let forked = History::fork(1, Some(first().id), crate::journal::history::Cause::Repair);
    let subs = [(BrandId::parse("a").unwrap(), webhook("wh1"))];
    let mut s = Store::open(&path, KEEP_ALL, &forked, &subs).unwrap();
    assert_eq!(s.covered_lsn(), 1, "the feed goes on after the fork");
    let mut r = open_reader(&path).unwrap();
    assert!(read_after(&mut r, "a", 0, 10).unwrap().is_none(), "the old history's events are gone");
    let hooks = load_webhooks(&r).unwrap();
    assert_eq!(hooks.iter().map(|h| (h.id.as_str(), h.start_seq, h.created_lsn)).collect::<Vec<_>>(), vec![("wh1", 0, 1)]);
    s.commit(&Batch { events: vec![ev("a", 2, 0, "other")], hooks: vec![], last_lsn: 2, sources: vec![], seeds: vec![] }).unwrap();
    let (_, evs) = read_after(&mut r, "a", 0, 10).unwrap().unwrap();
    let body: serde_json::Value = serde_json::from_str(&evs[0].body).unwrap();
    assert_eq!((body["id"].as_str(), body["seq"].as_u64()), (Some(format!("evt_{}_2_0", forked.id).as_str()), Some(1)));
    drop(s);
    // Opened again in the same history (a restart): nothing changes.
    let s = Store::open(&path, KEEP_ALL, &forked, &[]).unwrap();
    assert_eq!(s.covered_lsn(), 2);
    assert_eq!(seqs(&mut r, "a", 0).1, vec![1]);
    assert_eq!(load_webhooks(&r).unwrap().len(), 1);
}

#[test]
fn a_store_from_before_histories_is_taken_over_by_a_first_history_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    s.commit(&Batch { events: vec![ev("a", 1, 0, "x")], hooks: vec![], last_lsn: 1, sources: vec![], seeds: vec![] }).unwrap();
    s.conn.execute("DELETE FROM meta WHERE key = 'history'", []).unwrap();
    drop(s);
    let other_first = History { id: HistoryId(2), ..first() };
    let s = Store::open(&path, KEEP_ALL, &other_first, &[]).unwrap();
    assert_eq!(s.covered_lsn(), 1);
    let mut r = open_reader(&path).unwrap();
    let (_, evs) = read_after(&mut r, "a", 0, 10).unwrap().unwrap();
    assert!(evs[0].body.starts_with(r#"{"id":"evt_1_0""#), "ids as before: {}", evs[0].body);
    drop(s);
    // The same old store in a data dir whose history was forked is emptied instead.
    let forked = History::fork(0, None, crate::journal::history::Cause::Restore);
    let w = Connection::open(&path).unwrap();
    w.execute("DELETE FROM meta WHERE key = 'history'", []).unwrap();
    drop(w);
    Store::open(&path, KEEP_ALL, &forked, &[]).unwrap();
    assert!(read_after(&mut r, "a", 0, 10).unwrap().is_none());
}

#[test]
fn cluster_positions_are_committed_with_the_events_and_dropped_with_another_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let stream_a = History { id: HistoryId(7), ..first() };
    let mut s = Store::open(&path, KEEP_ALL, &stream_a, &[]).unwrap();
    assert!(s.sources().unwrap().is_empty());
    let p3 = SourcePosition { partition: 3, epoch: 2, next_lsn: 4, last_seq: 10 };
    s.commit(&Batch { events: vec![ev("a", 3, 0, "x")], hooks: vec![], last_lsn: 10, sources: vec![p3], seeds: vec![] }).unwrap();
    let p3 = SourcePosition { next_lsn: 5, last_seq: 12, ..p3 };
    let p9 = SourcePosition { partition: 9, epoch: 1, next_lsn: 2, last_seq: 11 };
    s.commit(&Batch {
        events: vec![ev("b", 1, 0, "y"), ev("a", 4, 0, "z")],
        hooks: vec![],
        last_lsn: 12,
        sources: vec![p9, p3],
        seeds: vec![],
    })
    .unwrap();
    drop(s);
    let s = Store::open(&path, KEEP_ALL, &stream_a, &[]).unwrap();
    assert_eq!(s.covered_lsn(), 12);
    assert_eq!(s.sources().unwrap(), vec![p3, p9], "each partition's newest position, as committed");
    drop(s);
    // The node now follows another cluster's stream: nothing of the old one is kept.
    let stream_b = History { id: HistoryId(8), ..first() };
    let s = Store::open(&path, KEEP_ALL, &stream_b, &[]).unwrap();
    assert_eq!((s.covered_lsn(), s.sources().unwrap()), (0, vec![]));
    let r = open_reader(&path).unwrap();
    assert!(!brand_known(&r, "a").unwrap(), "the old stream's brands are gone");
}

#[test]
fn a_relaxed_store_syncs_at_checkpoints_only_and_keeps_what_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.sqlite");
    let synchronous = |s: &Store| -> i64 { s.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap() };
    let mut s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    assert_eq!(synchronous(&s), 2, "a single node's store syncs every commit (FULL)");
    s.relax_durability().unwrap();
    assert_eq!(synchronous(&s), 1, "a cluster node's store syncs at checkpoints (NORMAL)");
    s.commit(&Batch { events: vec![ev("a", 1, 0, "x"), ev("a", 2, 0, "y")], hooks: vec![], last_lsn: 2, sources: vec![], seeds: vec![] })
        .unwrap();
    drop(s);
    let s = Store::open(&path, KEEP_ALL, &first(), &[]).unwrap();
    assert_eq!(s.covered_lsn(), 2);
    let mut r = open_reader(&path).unwrap();
    assert_eq!(seqs(&mut r, "a", 0).1, vec![1, 2]);
}

fn hook(id: &str) -> Webhook {
    Webhook {
        id: Id::parse(id).unwrap(),
        url: format!("http://x/{id}"),
        events: vec!["stock.changed".into()],
        secret: "whsec_AAAA".into(),
        created_at: Timestamp(0),
    }
}

fn created(brand: &str, id: &str, lsn: Lsn, position: usize) -> HookChange {
    HookChange::Created { brand: BrandId::parse(brand).unwrap(), webhook: Box::new(hook(id)), lsn, position }
}

fn last_seqs(s: &Store) -> std::collections::BTreeMap<BrandId, u64> {
    s.brands.iter().map(|(b, r)| (b.clone(), r.last_seq)).collect()
}

#[test]
fn a_checkpoint_counts_as_the_store_does_and_a_store_behind_it_starts_there() {
    use super::super::seed::FeedSeed;
    let dir = tempfile::tempdir().unwrap();
    let batch = |events, hooks, last_lsn| Batch { events, hooks, last_lsn, ..Batch::default() };
    let early = batch(vec![ev("a", 1, 0, "x"), ev("b", 2, 0, "y")], vec![created("a", "wh1", 1, 1)], 2);
    let purged = vec![
        batch(
            vec![ev("a", 3, 0, "x"), ev("a", 4, 0, "x"), ev("b", 4, 0, "y")],
            vec![created("b", "wh2", 4, 2), created("a", "wh3", 4, 3)],
            4,
        ),
        batch(vec![ev("c", 5, 0, "z")], vec![HookChange::Deleted { id: "wh1".into() }], 5),
    ];
    let later = batch(vec![ev("a", 6, 0, "x"), ev("c", 7, 0, "z")], vec![created("c", "wh4", 7, 1)], 7);

    // A store that read everything, and the checkpoint folded over the same batches.
    let mut full = Store::open(&dir.path().join("full.sqlite"), KEEP_ALL, &first(), &[]).unwrap();
    let mut seed = FeedSeed::new(3);
    for b in std::iter::once(&early).chain(&purged) {
        full.commit(b).unwrap();
        seed.apply(b);
    }
    assert_eq!(seed.brands, last_seqs(&full), "the checkpoint's seqs against the store's");
    let hooks: Vec<(String, u64, Lsn)> = seed.webhooks.values().map(|h| (h.webhook.id.to_string(), h.start_seq, h.created_lsn)).collect();
    let rows: Vec<(String, u64, Lsn)> =
        load_webhooks(&full.conn).unwrap().into_iter().map(|r| (r.id, r.start_seq, r.created_lsn)).collect();
    assert_eq!(hooks, rows, "the checkpoint's subscriptions against the store's");
    seed.rule.last_seq = 5;

    // A store that read only the first batch starts again at the checkpoint; then both
    // read the same batch and agree.
    let mut behind = Store::open(&dir.path().join("behind.sqlite"), KEEP_ALL, &first(), &[]).unwrap();
    behind.commit(&early).unwrap();
    for _ in 0..2 {
        // Twice: a checkpoint applied again changes nothing.
        behind.commit(&Batch { last_lsn: 2, seeds: vec![seed.clone()], ..Batch::default() }).unwrap();
    }
    full.commit(&later).unwrap();
    behind.commit(&later).unwrap();
    assert_eq!(last_seqs(&behind), last_seqs(&full));
    assert_eq!(load_webhooks(&behind.conn).unwrap(), load_webhooks(&full.conn).unwrap());
    for brand in ["a", "b", "c"] {
        let (pos, got) = seqs(&mut behind.conn, brand, 0);
        assert_eq!(
            pos.pruned_through,
            seed.brands[&BrandId::parse(brand).unwrap()],
            "{brand}: what the checkpoint holds counts as dropped"
        );
        let (_, all) = seqs(&mut full.conn, brand, pos.pruned_through);
        assert_eq!(got, all, "{brand}: the events after the checkpoint, seq for seq");
    }
    assert_eq!(seqs(&mut behind.conn, "a", 0).1, vec![4], "a's events up to the checkpoint (3) are gone, the next one is 4");
    assert_eq!(behind.sources().unwrap(), vec![seed.position()]);
}
