//! Snapshot tests: random operations through a real journal, a snapshot at a random
//! point, more operations; restoring the snapshot and replaying the journal gives the
//! live state exactly, and the snapshot alone gives the state at its LSN.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::actors::registry::sha256;
use crate::domain::brand::StockChangeCmd;
use crate::domain::catalog::Catalog;
use crate::domain::channel::{ChannelCmd, InboundCmd};
use crate::domain::error::ErrorCode;
use crate::domain::event::{self, BrandRecord, Event, RegistryRecord, WalRecord};
use crate::domain::fulfilment::{Decision, LineRequest, ReserveCmd, ShipCmd, ShipTo, ShipmentSource, ShipmentStatus, StatusCmd};
use crate::domain::idempotency::{IdemWrite, IdempotencyStore, Status};
use crate::domain::import::{ChunkCmd, ChunkRows, ImportFormat, ImportKind, ImportSpec, ImportStatus, RowError};
use crate::domain::registry::{Location, LocationKind, RegistryEvent, Role, TokenRecord};
use crate::domain::returns::{Disposition, ReceiptLine, ReturnCmd};
use crate::domain::stock::StockOp;
use crate::domain::transfer::TransferCmd;
use crate::domain::webhook::Webhook;
use crate::domain::{BrandId, Id};
use crate::journal::{FailureAction, Journal, JournalConfig, Lsn, OpenOptions};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

/// Drives random commands through the domain and a real journal, keeping the live state.
struct Driver {
    data: tempfile::TempDir,
    journal: Journal,
    live: State,
    now: Timestamp,
}

impl Driver {
    fn new() -> Driver {
        let data = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            segment_bytes: 1 << 20,
            record_bytes_max: 64 << 10,
            on_failure: FailureAction::Poison,
            ..JournalConfig::default()
        };
        let (journal, _) =
            crate::journal::open(&data.path().join("wal"), OpenOptions { config: cfg, replay_after: 0 }, |_, _| Ok(())).unwrap();
        Driver { data, journal, live: State::default(), now: Timestamp(1_800_000_000_000) }
    }

    fn write(&mut self, rec: WalRecord) {
        let payload = event::encode(&rec);
        let lsn = self.journal.append(payload.clone()).unwrap();
        self.live.apply_payload(lsn, &payload).unwrap();
    }

    fn brand(&mut self, b: &str, events: Vec<Event>, key: Option<String>) {
        if events.is_empty() {
            return;
        }
        // An answer like a real one: memory keeps it packed (`idempotency::FRAGMENTS`).
        let answer = |k: &str| format!(r#"{{"results":[{{"index":0,"status":"applied","sku":"{k}","location":"L0","version":3}}]}}"#);
        let idempotency =
            key.map(|k| IdemWrite { fingerprint: sha256(k.as_bytes()), body: answer(&k).into_bytes(), key: k, status: Status::Done });
        self.write(WalRecord::Brand(BrandRecord { brand: BrandId::parse(b).unwrap(), at: self.now, idempotency, events }));
    }

    fn registry(&mut self, events: Vec<RegistryEvent>) {
        self.write(WalRecord::Registry(RegistryRecord { at: self.now, idempotency: None, events }));
    }

    fn state(&self, b: &str) -> &crate::domain::brand::BrandState {
        &self.live.brands[&BrandId::parse(b).unwrap()]
    }

    fn decided(&mut self, b: &str, d: Result<Decision, crate::domain::Rejection>) {
        if let Ok(Decision::Apply(evs)) = d {
            self.brand(b, evs, None);
        }
    }

    fn setup(&mut self) {
        let locs: Vec<RegistryEvent> = ["L0", "L1"]
            .iter()
            .map(|l| {
                RegistryEvent::LocationUpserted(Location {
                    id: id(l),
                    name: format!("倉庫 {l}"),
                    kind: LocationKind::Warehouse,
                    created_at: self.now,
                    updated_at: self.now,
                })
            })
            .collect();
        self.registry(locs);
        self.registry(vec![RegistryEvent::AdminTokenGenerated { secret_sha256: sha256(b"admin") }]);
        for b in BRANDS {
            self.brand(b, vec![Event::BrandCreated { name: format!("ブランド {b}") }], None);
            self.registry(vec![RegistryEvent::TokenCreated(TokenRecord {
                id: id(&format!("tok{b}")),
                role: Role::Brand(BrandId::parse(b).unwrap()),
                secret_sha256: sha256(b.as_bytes()),
                created_at: self.now,
                revoked_at: None,
            })]);
            for s in SKUS {
                let catalog = Catalog {
                    name: format!("レザースニーカー {s}").into(),
                    price: Some(9900),
                    tags: Box::new(["新作".into()]),
                    attributes: vec![("material".into(), "leather".into())],
                    ..Catalog::default()
                };
                let (ev, _) = self.state(b).decide_put_sku(&id(s), catalog).unwrap();
                self.brand(b, vec![ev], None);
            }
        }
    }

    fn step(&mut self, op: &Op, n: usize) {
        let b = BRANDS[op.brand];
        let world: BTreeMap<Id, Location> = self.live.registry.locations.clone();
        let sku = id(SKUS[op.sku]);
        let loc = id(["L0", "L1"][op.loc]);
        match op.kind {
            0 => {
                let cmd = StockChangeCmd {
                    sku,
                    location: loc,
                    op: StockOp::Set { on_hand: op.qty * 3 },
                    expected_version: None,
                    reason: Some("cycle".into()),
                };
                let (evs, _) = self.state(b).decide_stock_changes(&[cmd], &world);
                self.brand(b, evs, Some(format!("key-{n}")));
            }
            1 => {
                let cmd = ReserveCmd {
                    id: id(&format!("R{}", n % 7)),
                    channel: id("zozotown"),
                    ttl_seconds: 60 + op.qty,
                    lines: vec![LineRequest { sku, location: None, quantity: op.qty }],
                };
                let scope = self.state(b).scope_for(Some(&cmd.channel));
                let d = self.state(b).decide_reserve(&cmd, &scope, self.now);
                self.decided(b, d);
            }
            2 => {
                let d = self.state(b).decide_release(&id(&format!("R{}", op.qty % 7)), self.now);
                self.decided(b, d);
            }
            3 => {
                self.now = self.now.plus_seconds(op.qty * 20);
                if let Ok(evs) = self.state(b).decide_expiries(self.now) {
                    self.brand(b, evs, None);
                }
            }
            4 => {
                let ship_to = ShipTo {
                    name: "見本 太郎".into(),
                    postal_code: "000-0001".into(),
                    prefecture: "東京都".into(),
                    address: "見本市".into(),
                    phone: None,
                };
                let source = if op.qty % 2 == 0 {
                    ShipmentSource::Reservation(id(&format!("R{}", op.qty % 7)))
                } else {
                    ShipmentSource::Lines(vec![LineRequest { sku, location: Some(loc), quantity: 1 }])
                };
                let cmd = ShipCmd { id: id(&format!("SH{n}")), order_ref: Some("EC-1".into()), channel: None, source, ship_to };
                let scope = self.state(b).scope_for(None);
                let d = self.state(b).decide_ship(&cmd, &scope, self.now);
                self.decided(b, d);
            }
            5 => {
                let ids: Vec<Id> = self.state(b).shipments.keys().cloned().collect();
                if let Some(sid) = ids.get(op.qty as usize % ids.len().max(1)) {
                    let statuses = [
                        ShipmentStatus::Picking,
                        ShipmentStatus::Packed,
                        ShipmentStatus::Shipped,
                        ShipmentStatus::Cancelled,
                        ShipmentStatus::Delivered,
                    ];
                    let cmd =
                        StatusCmd { id: sid.clone(), status: statuses[op.sku % 5], tracking_number: Some("123".into()), carrier: None };
                    let d = self.state(b).decide_status(&cmd);
                    self.decided(b, d);
                }
            }
            6 => {
                let cmd = ChannelCmd {
                    id: id("zozotown"),
                    name: "ZOZOTOWN".into(),
                    locations: (op.qty % 2 == 0).then(|| vec![loc]),
                    buffer: op.qty % 3,
                };
                let world_locs = world.clone();
                if let Ok((ev, _)) = self.state(b).decide_put_channel(cmd, |l| world_locs.contains_key(l), self.now) {
                    self.brand(b, vec![ev], None);
                }
                // Sometimes leave the sync half done: the snapshot must keep its position.
                for _ in 0..op.sku {
                    if let Some(ev) = self.state(b).decide_channel_sync() {
                        self.brand(b, vec![ev], None);
                    }
                }
            }
            7 => {
                let cmd = InboundCmd {
                    id: id(&format!("IN{n}")),
                    location: loc,
                    expected_at: Some(self.now),
                    lines: vec![(sku.clone(), op.qty)],
                };
                let d = self.state(b).decide_inbound(&cmd, self.now);
                self.decided(b, d);
                let d = self.state(b).decide_receipt(&id(&format!("IN{n}")), &[(sku, op.qty / 2 + 1)]);
                self.decided(b, d);
            }
            9 => {
                let hook = id(&format!("wh{}", op.qty % 3));
                let ev = match self.state(b).webhooks.contains_key(&hook) {
                    true => self.state(b).decide_delete_webhook(&hook),
                    false => self.state(b).decide_create_webhook(&Webhook {
                        id: hook,
                        url: "https://ec.example.com/hooks".into(),
                        events: vec!["stock.changed".into()],
                        secret: "whsec_c2VjcmV0".into(),
                        created_at: self.now,
                    }),
                };
                if let Ok(ev) = ev {
                    self.brand(b, vec![ev], None);
                }
            }
            10 => self.import_step(b, op, n),
            11 => {
                // A transfer taken some way along its life; sometimes, a month later, the
                // ended ones are purged (the snapshot must not keep them, nor lose open ones).
                let tid = id(&format!("T{}", n % 5));
                let cmd = TransferCmd { id: tid.clone(), origin: id("L0"), destination: id("L1"), lines: vec![(sku.clone(), op.qty)] };
                let d = self.state(b).decide_transfer(&cmd, &world, self.now);
                self.decided(b, d);
                if op.qty > 1 {
                    let d = self.state(b).decide_ship_transfer(&tid);
                    self.decided(b, d);
                    let d = self.state(b).decide_transfer_receipt(&tid, &[(sku, 1)]);
                    self.decided(b, d);
                }
                let d = if op.loc == 0 { self.state(b).decide_close_transfer(&tid) } else { self.state(b).decide_cancel_transfer(&tid) };
                self.decided(b, d);
                if op.qty == 5 {
                    self.now = self.now.plus_seconds(31 * 24 * 3600);
                    let purges = self.state(b).decide_purges(self.now);
                    self.brand(b, purges, None);
                }
            }
            12 => {
                // A return of a shipped shipment, received, closed or cancelled; half the
                // time of a shipment shipped here for it (stock set, shipped from lines).
                if op.qty % 2 == 1 {
                    let set = StockChangeCmd {
                        sku: sku.clone(),
                        location: loc.clone(),
                        op: StockOp::Adjust { delta: 2 },
                        expected_version: None,
                        reason: None,
                    };
                    let (evs, _) = self.state(b).decide_stock_changes(&[set], &world);
                    self.brand(b, evs, None);
                    let ship_to = ShipTo {
                        name: "見本 花子".into(),
                        postal_code: "000-0002".into(),
                        prefecture: "大阪府".into(),
                        address: "見本町".into(),
                        phone: None,
                    };
                    let sid = id(&format!("SHR{n}"));
                    let source = ShipmentSource::Lines(vec![LineRequest { sku: sku.clone(), location: Some(loc.clone()), quantity: 2 }]);
                    let cmd = ShipCmd { id: sid.clone(), order_ref: None, channel: None, source, ship_to };
                    let d = self.state(b).decide_ship(&cmd, &self.state(b).scope_for(None), self.now);
                    self.decided(b, d);
                    for status in [ShipmentStatus::Picking, ShipmentStatus::Packed, ShipmentStatus::Shipped] {
                        let d = self.state(b).decide_status(&StatusCmd { id: sid.clone(), status, tracking_number: None, carrier: None });
                        self.decided(b, d);
                    }
                }
                let shipped: Vec<Id> = self
                    .state(b)
                    .shipments
                    .values()
                    .filter(|s| matches!(s.status, ShipmentStatus::Shipped | ShipmentStatus::Delivered))
                    .map(|s| s.id.clone())
                    .collect();
                let Some(sid) = shipped.get(op.qty as usize % shipped.len().max(1)) else { return };
                let line = self.state(b).shipments[sid].lines[0].sku.clone();
                let rid = id(&format!("RT{n}"));
                let cmd = ReturnCmd { id: rid.clone(), shipment_id: sid.clone(), reason: "size".into(), lines: vec![(line.clone(), 1)] };
                let d = self.state(b).decide_return(&cmd, self.now);
                self.decided(b, d);
                let d = match op.sku {
                    0 => self.state(b).decide_cancel_return(&rid),
                    1 => {
                        let lines = [ReceiptLine { sku: line, quantity: 1, disposition: Disposition::Unsellable, location: Some(loc) }];
                        self.state(b).decide_return_receipt(&rid, &lines, &world)
                    }
                    _ => self.state(b).decide_close_return(&rid),
                };
                self.decided(b, d);
            }
            _ => {
                self.registry(vec![RegistryEvent::TokenRevoked { id: id(&format!("tok{b}")), at: self.now }]);
            }
        }
    }

    /// Moves an import job one step: queue → start → chunks (with row errors) → finish.
    fn import_step(&mut self, b: &str, op: &Op, n: usize) {
        let world: BTreeMap<Id, Location> = self.live.registry.locations.clone();
        let job = id(&format!("IMP{}", op.sku));
        let Some(current) = self.state(b).imports.jobs.get(&job).cloned() else {
            let spec = ImportSpec {
                id: job,
                kind: ImportKind::Stock,
                format: ImportFormat::Csv,
                file: format!("{b}-{n}.csv"),
                bytes: 100,
                sha256: sha256(b"rows"),
                created_at: self.now,
            };
            let ev = self.state(b).decide_queue_import(&spec).unwrap();
            return self.brand(b, vec![ev], None);
        };
        let d = match current.status {
            ImportStatus::Queued => self.state(b).decide_start_import(&job, 10),
            ImportStatus::Running if op.qty < 5 => {
                let change = StockChangeCmd {
                    sku: id(SKUS[op.sku]),
                    location: id(["L0", "L1"][op.loc]),
                    op: StockOp::Set { on_hand: op.qty },
                    expected_version: None,
                    reason: None,
                };
                let cmd = ChunkCmd {
                    id: job.clone(),
                    chunk: current.next_chunk,
                    next_offset: current.next_offset + 20,
                    next_row: current.next_row + 2,
                    rows: ChunkRows::Stock { lines: vec![current.next_row], changes: vec![change] },
                    pre_errors: vec![RowError { row: current.next_row + 1, code: ErrorCode::InvalidRequest, detail: "bad qty".into() }],
                };
                self.state(b).decide_import_chunk(&cmd, &world, Timestamp(0))
            }
            _ => self.state(b).decide_finish_import(&job, (op.qty == 5).then(|| "stopped".to_string())),
        };
        self.decided(b, d);
    }

    fn durable(&self) -> u64 {
        let last = self.journal.last_assigned_lsn();
        self.journal.wait_durable_blocking(last).unwrap();
        last
    }
}

const BRANDS: [&str; 2] = ["b1", "b2"];
const SKUS: [&str; 3] = ["S0", "S1", "S2"];

#[derive(Debug, Clone)]
struct Op {
    kind: u8,
    brand: usize,
    sku: usize,
    loc: usize,
    qty: i64,
}

fn op() -> impl Strategy<Value = Op> {
    (0u8..13, 0usize..2, 0usize..3, 0usize..2, 1i64..6).prop_map(|(kind, brand, sku, loc, qty)| Op { kind, brand, sku, loc, qty })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn restore_plus_replay_is_the_live_state(before in prop::collection::vec(op(), 0..40), after in prop::collection::vec(op(), 0..40)) {
        let mut d = Driver::new();
        d.setup();
        for (n, o) in before.iter().enumerate() {
            d.step(o, n);
        }
        let at_snapshot = d.live.clone();
        let lsn = d.durable();
        let info = build(d.data.path(), lsn, d.now).unwrap();
        prop_assert_eq!(info.lsn, lsn);
        for (n, o) in after.iter().enumerate() {
            d.step(o, 1000 + n);
        }
        let end = d.durable();
        // The snapshot alone is the state at its LSN.
        let (restored, _) = load(&info.path).unwrap();
        prop_assert!(restored == at_snapshot, "snapshot differs from the state at its lsn");
        prop_assert_eq!(digest(&restored), digest(&at_snapshot));
        // Snapshot + the journal after it is the live state, folded serially or brands
        // side by side on any number of threads (recovery's way), which also lists the
        // documents the records touched.
        let mut replayed = restored.clone();
        crate::journal::read_range(&d.data.path().join("wal"), info.lsn, end, |l, p| replayed.apply_payload(l, p)).unwrap();
        prop_assert!(replayed == d.live, "snapshot + journal differs from the live state");
        for threads in 1..=3 {
            for (from, after) in [(restored.clone(), info.lsn), (State::default(), 0)] {
                let (parallel, dirty) = replay_in_parallel(d.data.path(), from, after, end, threads).unwrap();
                prop_assert!(parallel == d.live, "the parallel replay on {} threads differs from the live state", threads);
                prop_assert_eq!(dirty, touched_after(d.data.path(), after, end));
            }
        }
        // And building a second snapshot from the first gives the same as from scratch.
        let second = build(d.data.path(), end, d.now).unwrap();
        let (from_chain, _) = load(&second.path).unwrap();
        prop_assert!(from_chain == d.live);
        d.journal.shutdown();
    }
}

/// Folds the journal records after `after` into `from` as recovery does
/// (`crate::replay`), with the documents they touched.
fn replay_in_parallel(
    data: &std::path::Path,
    mut from: State,
    after: Lsn,
    end: Lsn,
    threads: usize,
) -> Result<(State, std::collections::HashSet<crate::app::DirtyKey>), crate::replay::Failure> {
    let failed = std::sync::atomic::AtomicBool::new(false);
    let dirty = std::thread::scope(|scope| {
        let mut r = crate::replay::Replay::start(scope, &mut from, threads, Some(0), &failed);
        crate::journal::read_range(&data.join("wal"), after, end, |l, p| {
            r.record(&mut from, l, p);
            Ok(())
        })
        .unwrap();
        r.finish(&mut from)
    })?;
    Ok((from, dirty.0))
}

/// The documents the brand records after `after` touch, listed one record at a time.
fn touched_after(data: &std::path::Path, after: Lsn, end: Lsn) -> std::collections::HashSet<crate::app::DirtyKey> {
    let mut out = std::collections::HashSet::new();
    crate::journal::read_range(&data.join("wal"), after, end, |_, p| {
        if let WalRecord::Brand(b) = event::decode(p)? {
            out.extend(crate::actors::drain::touched_docs(&b));
        }
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn a_parallel_replay_fails_at_the_first_record_that_does_not_apply() {
    let mut d = Driver::new();
    d.setup();
    let good = d.durable();
    // Two records that cannot apply, for brands on different workers: a second
    // creation of b1, then a record for a brand that was never created.
    let now = d.now;
    let bad = |brand: &str, events| {
        event::encode(&WalRecord::Brand(BrandRecord { brand: BrandId::parse(brand).unwrap(), at: now, idempotency: None, events }))
    };
    let first_bad = d.journal.append(bad("b1", vec![Event::BrandCreated { name: "again".into() }])).unwrap();
    d.step(&Op { kind: 0, brand: 1, sku: 1, loc: 0, qty: 2 }, 1);
    d.journal.append(bad("nobody", vec![Event::SkuDeleted { sku: id("S1") }])).unwrap();
    let last = d.journal.append(bad("b9", vec![Event::SkuDeleted { sku: id("S0") }])).unwrap();
    d.journal.wait_durable_blocking(last).unwrap();
    assert!(first_bad > good);
    for threads in 1..=3 {
        let (lsn, detail) = replay_in_parallel(d.data.path(), State::default(), 0, last, threads).unwrap_err();
        assert_eq!(lsn, first_bad, "on {threads} threads: {detail}");
        assert!(detail.contains("created twice"), "{detail}");
    }
    // Recovery refuses to start on it, naming that record.
    d.journal.shutdown();
    let err = crate::app::recover_dir(d.data.path(), JournalConfig::default(), None).err().expect("recovery fails");
    assert!(err.to_string().contains(&format!("replay of record lsn {first_bad} failed")), "{err}");
}

#[test]
fn a_damaged_snapshot_is_detected_and_recovery_falls_back_to_the_older_one() {
    let mut d = Driver::new();
    d.setup();
    let first = build(d.data.path(), d.durable(), d.now).unwrap();
    d.step(&Op { kind: 0, brand: 0, sku: 1, loc: 0, qty: 4 }, 1);
    let second = build(d.data.path(), d.durable(), d.now).unwrap();
    assert!(second.lsn > first.lsn);
    // Change one stock figure inside the file, the way a flipped bit would.
    let conn = rusqlite::Connection::open(&second.path).unwrap();
    conn.execute("UPDATE stock SET on_hand = on_hand + 1 WHERE sku = 'S1' AND location = 'L0'", []).unwrap();
    drop(conn);
    let err = load(&second.path).unwrap_err();
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
    let (state, info) = load_newest_valid(d.data.path()).unwrap().unwrap();
    assert_eq!(info.lsn, first.lsn);
    assert_eq!(state.lsn, first.lsn);
    d.journal.shutdown();
}

#[test]
fn a_newer_format_is_refused_with_a_clear_message() {
    let mut d = Driver::new();
    d.setup();
    let info = build(d.data.path(), d.durable(), d.now).unwrap();
    let conn = rusqlite::Connection::open(&info.path).unwrap();
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'", []).unwrap();
    drop(conn);
    let err = load_newest_valid(d.data.path()).unwrap_err();
    assert!(err.to_string().contains("newer than this binary"), "{err}");
    d.journal.shutdown();
}

#[test]
fn retention_keeps_the_newest() {
    let mut d = Driver::new();
    d.setup();
    let mut lsns = Vec::new();
    for n in 0..4 {
        d.step(&Op { kind: 0, brand: 0, sku: 0, loc: 0, qty: n + 1 }, n as usize);
        lsns.push(build(d.data.path(), d.durable(), d.now).unwrap().lsn);
    }
    let oldest = apply_retention(d.data.path(), 2).unwrap();
    assert_eq!(oldest, Some(lsns[2]));
    assert_eq!(list(d.data.path()).unwrap().iter().map(|i| i.lsn).collect::<Vec<_>>(), lsns[2..].to_vec());
    d.journal.shutdown();
}

/// Every row of every table of a snapshot file, in a canonical order (rowids aside,
/// which follow the order a state's hash maps were walked in): its content.
fn content(path: &std::path::Path) -> BTreeMap<String, Vec<String>> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for table in tables {
        let mut st = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let n = st.column_count();
        let mut rows: Vec<String> = st
            .query_map([], |r| (0..n).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect::<Result<Vec<_>, _>>())
            .unwrap()
            .map(|r| format!("{:?}", r.unwrap()))
            .collect();
        rows.sort();
        out.insert(table, rows);
    }
    out
}

/// What the builder writes for `state` at its LSN is what writing the whole state
/// writes: the same rows and the same digest in `meta`.
fn assert_same_as_whole(built: &SnapshotInfo, state: &State, now: Timestamp) -> Result<(), TestCaseError> {
    let whole = tempfile::tempdir().unwrap();
    let written = write(whole.path(), state, now).unwrap();
    prop_assert_eq!(built.lsn, written.lsn);
    let (a, b) = (content(&built.path), content(&written.path));
    for (table, rows) in &b {
        prop_assert!(a.get(table) == Some(rows), "table {} differs:\n{:?}\n{:?}", table, a.get(table), rows);
    }
    prop_assert_eq!(a.len(), b.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    /// The builder folds the journal in one brand at a time; the file it writes must be
    /// the one a build from the whole state writes: from the journal alone, then from
    /// that snapshot with brands created after it (one before the others in id order,
    /// one after) and brands the journal after it does not touch.
    #[test]
    fn a_brand_by_brand_build_is_the_build_from_the_whole_state(
        before in prop::collection::vec(op(), 0..40),
        after in prop::collection::vec(op(), 0..40),
    ) {
        let mut d = Driver::new();
        d.setup();
        for (n, o) in before.iter().enumerate() {
            d.step(o, n);
        }
        let first = build(d.data.path(), d.durable(), d.now).unwrap();
        assert_same_as_whole(&first, &d.live, d.now)?;
        for b in ["a0", "b3"] {
            d.brand(b, vec![Event::BrandCreated { name: format!("新ブランド {b}") }], None);
            let (ev, _) = d.state(b).decide_put_sku(&id("S0"), Catalog { name: "T シャツ".into(), ..Catalog::default() }).unwrap();
            d.brand(b, vec![ev], Some(format!("put-{b}")));
        }
        for (n, o) in after.iter().enumerate() {
            d.step(o, 1000 + n);
        }
        let second = build(d.data.path(), d.durable(), d.now).unwrap();
        prop_assert!(second.lsn > first.lsn);
        assert_same_as_whole(&second, &d.live, d.now)?;
        d.journal.shutdown();
    }
}

#[test]
fn a_build_from_a_damaged_snapshot_is_not_kept_and_falls_back_to_the_older_one() {
    let mut d = Driver::new();
    d.setup();
    let first = build(d.data.path(), d.durable(), d.now).unwrap();
    d.step(&Op { kind: 0, brand: 1, sku: 1, loc: 0, qty: 4 }, 1);
    let second = build(d.data.path(), d.durable(), d.now).unwrap();
    // The damage is in the last brand the builder reads: it learns of it only after
    // it has written every brand of the new file.
    let conn = rusqlite::Connection::open(&second.path).unwrap();
    let sql = "UPDATE stock SET on_hand = on_hand + 1 WHERE brand = 'b2' AND sku = 'S1' AND location = 'L0'";
    assert_eq!(conn.execute(sql, []).unwrap(), 1);
    drop(conn);
    d.step(&Op { kind: 0, brand: 1, sku: 2, loc: 1, qty: 3 }, 2);
    let end = d.durable();
    let third = build(d.data.path(), end, d.now).unwrap();
    assert!(first.lsn < second.lsn && second.lsn < third.lsn);
    let (state, _) = load(&third.path).unwrap();
    assert!(state == d.live, "built from the first snapshot and the journal after it");
    let leftovers: Vec<_> = std::fs::read_dir(dir(d.data.path()))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    d.journal.shutdown();
}

/// A snapshot of format 1 (outcomes with 32-byte fingerprints, checked by their
/// tails) as the builder's source: the build equals the whole state loaded and
/// replayed, written at once.
#[test]
fn a_build_from_a_format_1_snapshot_is_the_build_from_the_whole_state() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1");
    let data = tempfile::tempdir().unwrap();
    for sub in ["wal", "snapshots"] {
        std::fs::create_dir_all(data.path().join(sub)).unwrap();
    }
    std::fs::copy(fixture.join("00000000000000000001.wal"), data.path().join("wal/00000000000000000001.wal")).unwrap();
    let snap = data.path().join("snapshots/snap-00000000000000000010.sqlite");
    let dump = std::fs::read_to_string(fixture.join("snap-00000000000000000010.sql")).unwrap();
    rusqlite::Connection::open(&snap).unwrap().execute_batch(&dump).unwrap();
    let (mut whole, _) = load(&snap).unwrap();
    crate::journal::read_range(&data.path().join("wal"), 10, 17, |l, p| whole.apply_payload(l, p)).unwrap();
    let now = Timestamp(1_800_000_000_000);
    let built = build(data.path(), 17, now).unwrap();
    assert_eq!(built.lsn, 17);
    assert_same_as_whole(&built, &whole, now).unwrap();
    assert!(load(&built.path).unwrap().0 == whole);
}

/// Every scope's outcomes in a snapshot file, as its chunks hold them (answers as
/// stored, not unpacked).
fn chunked_outcomes(conn: &rusqlite::Connection) -> BTreeMap<String, IdempotencyStore> {
    let scopes: Vec<String> = conn
        .prepare("SELECT DISTINCT scope FROM idempotency_chunks")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = BTreeMap::new();
    for scope in scopes {
        let mut store = IdempotencyStore::default();
        let mut st = conn.prepare("SELECT data FROM idempotency_chunks WHERE scope = ?1 ORDER BY seq").unwrap();
        for data in st.query_map([&scope], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
            outcomes::decode(&data.unwrap(), &mut store, &mut outcomes::Answers::new(None)).unwrap();
        }
        out.insert(scope, store);
    }
    out
}

/// Puts `digest` in a snapshot file's `meta`: for files made from today's by a test,
/// as a build that wrote them would have.
fn restamp(conn: &rusqlite::Connection, digest: [u8; 32]) {
    conn.execute("UPDATE meta SET value = ?1 WHERE key = 'state_sha256'", [hex::encode(digest)]).unwrap();
}

/// The digest of `state` with each scope's outcomes taken as `outcomes` gives them.
fn digest_with(state: &State, outcomes: impl Fn(&str) -> digest::Outcomes, fragments: Option<&[&str]>) -> [u8; 32] {
    let mut s = digest::Stream::new(state.lsn, &state.registry, &outcomes(""), fragments);
    let mut ids: Vec<_> = state.brands.keys().collect();
    ids.sort();
    for id in ids {
        s.brand(id, &state.brands[id], &outcomes(id.as_str()));
    }
    s.finish()
}

/// A stored answer's `status` text in formats 1 to 4.
fn status_text(s: Status) -> &'static str {
    match s {
        Status::Done => "ok",
        Status::Created => "created",
        Status::Accepted => "accepted",
        Status::Removed => "no_content",
    }
}

/// Turns a snapshot of today's format, of `state`, into the format-4 file a build of
/// then would have written: an `idempotency` row per outcome, the digest walking them.
fn as_format_4(path: &std::path::Path, state: &State) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE idempotency (scope TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, fingerprint BLOB NOT NULL,
           status TEXT NOT NULL, body BLOB NOT NULL, packed INTEGER NOT NULL, at TEXT NOT NULL, at_ms INTEGER NOT NULL,
           lsn INTEGER NOT NULL, PRIMARY KEY (scope, seq));",
    )
    .unwrap();
    for (scope, store) in chunked_outcomes(&conn) {
        for (seq, (key, o)) in store.iter().enumerate() {
            let (body, packed) = o.body.stored();
            conn.execute(
                "INSERT INTO idempotency VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    scope,
                    seq as i64,
                    key,
                    &o.fingerprint[..],
                    status_text(o.status),
                    body,
                    packed,
                    o.at.to_rfc3339(),
                    o.at.0,
                    o.lsn as i64
                ],
            )
            .unwrap();
        }
    }
    conn.execute_batch("DROP TABLE idempotency_chunks; UPDATE meta SET value = '4' WHERE key = 'format_version';").unwrap();
    restamp(&conn, digest_with(state, |_| digest::Outcomes::Walk(None), None));
}

/// A packed answer as it was sent.
fn unpacked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::domain::idempotency::unpack_into(&crate::domain::idempotency::FRAGMENTS, body, &mut out, usize::MAX);
    out
}

/// A snapshot of six keyed changes at location `loc` over two brands, and the state
/// it loads to.
fn snapshot_with_answers(loc: usize) -> (Driver, SnapshotInfo, State) {
    let mut d = Driver::new();
    d.setup();
    for n in 0..6 {
        d.step(&Op { kind: 0, brand: n % 2, sku: n % 3, loc, qty: n as i64 + 1 }, n);
    }
    let info = build(d.data.path(), d.durable(), d.now).unwrap();
    let (want, _) = load(&info.path).unwrap();
    (d, info, want)
}

/// Format 4 held an outcome a row; such a file loads to the same state as today's.
#[test]
fn a_format_4_snapshot_of_an_outcome_a_row_loads_to_the_same_state() {
    let (d, info, want) = snapshot_with_answers(0);
    as_format_4(&info.path, &want);
    let conn = rusqlite::Connection::open(&info.path).unwrap();
    let rows: i64 = conn.query_row("SELECT count(*) FROM idempotency WHERE packed = 1", [], |r| r.get(0)).unwrap();
    assert!(rows >= 6, "the snapshot holds packed answers");
    drop(conn);
    let (got, _) = load(&info.path).unwrap();
    assert!(got == want, "a format-4 file loads to another state");
    d.journal.shutdown();
}

/// Format 3 held each answer as it was sent; such a file loads to the same state as
/// today's file of it (its digest walked the answers as sent, as format 4's did).
#[test]
fn a_format_3_snapshot_with_answers_as_sent_loads_to_the_same_state() {
    let (d, info, want) = snapshot_with_answers(0);
    as_format_4(&info.path, &want);
    let conn = rusqlite::Connection::open(&info.path).unwrap();
    let packed: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT rowid, body FROM idempotency WHERE packed = 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(packed.len() >= 6, "the snapshot holds packed answers");
    for (rowid, body) in &packed {
        conn.execute("UPDATE idempotency SET body = ?1 WHERE rowid = ?2", rusqlite::params![unpacked(body), rowid]).unwrap();
    }
    conn.execute_batch(
        "ALTER TABLE idempotency DROP COLUMN packed;
         UPDATE meta SET value = '3' WHERE key = 'format_version';
         DELETE FROM meta WHERE key = 'body_fragments';",
    )
    .unwrap();
    drop(conn);
    let (got, _) = load(&info.path).unwrap();
    assert!(got == want, "a format-3 file loads to another state");
    d.journal.shutdown();
}

/// A file whose answers were packed with other fragments (a build whose list
/// differed) is unpacked with the fragments it names: same state, digest checked.
#[test]
fn answers_packed_with_other_fragments_are_read_with_those() {
    use crate::domain::idempotency::FRAGMENTS;
    let (d, info, want) = snapshot_with_answers(1);
    // The same fragments in the reverse order: code c becomes 32 - c.
    let codes = FRAGMENTS.len() as u8 + 1;
    let reverse = |body: &[u8]| body.iter().map(|&b| if (1..codes).contains(&b) { codes - b } else { b }).collect::<Vec<u8>>();
    let reversed: Vec<&str> = FRAGMENTS.iter().rev().copied().collect();
    let conn = rusqlite::Connection::open(&info.path).unwrap();
    let mut packed = 0;
    let mut shas = BTreeMap::new();
    for (scope, store) in chunked_outcomes(&conn) {
        let mut other = IdempotencyStore::default();
        for (key, o) in store.iter() {
            let (body, is_packed) = o.body.stored();
            packed += usize::from(is_packed);
            let body = if is_packed { reverse(body) } else { body.to_vec() };
            other.load_stored(key, &o.fingerprint, o.status, &body, is_packed, o.at, o.lsn);
        }
        conn.execute("DELETE FROM idempotency_chunks WHERE scope = ?1", [&scope]).unwrap();
        let mut seq = 0;
        let sha = outcomes::encode(&other, |data, n| {
            seq += 1;
            conn.execute("INSERT INTO idempotency_chunks VALUES (?1, ?2, ?3, ?4)", rusqlite::params![scope, seq, n as i64, data]).map(drop)
        })
        .unwrap();
        shas.insert(scope, sha);
    }
    assert!(packed >= 6, "the snapshot holds packed answers");
    let chunks =
        |scope: &str| digest::Outcomes::Chunks(shas.get(scope).copied().unwrap_or_else(|| outcomes::digest(&IdempotencyStore::default())));
    restamp(&conn, digest_with(&want, chunks, Some(&reversed)));
    conn.execute("UPDATE meta SET value = ?1 WHERE key = 'body_fragments'", [serde_json::to_string(&reversed).unwrap()]).unwrap();
    let (got, _) = load(&info.path).unwrap();
    assert!(got == want, "answers packed with other fragments load to another state");
    // The digest takes the fragments the file names: with today's named instead, the
    // same bytes would be other answers, and the file is refused as damaged.
    conn.execute("UPDATE meta SET value = ?1 WHERE key = 'body_fragments'", [serde_json::to_string(&FRAGMENTS).unwrap()]).unwrap();
    drop(conn);
    let err = load(&info.path).unwrap_err();
    assert!(matches!(&err, SnapshotError::Corrupt { detail, .. } if detail.contains("SHA-256")), "{err}");
    d.journal.shutdown();
}

/// One chunk of one outcome whose answer is `body`, stored packed or not.
fn one_outcome_chunk(body: &[u8], packed: bool) -> Vec<u8> {
    let mut store = IdempotencyStore::default();
    store.load_stored("hostile", &[7; 16], Status::Done, body, packed, Timestamp(1_800_000_000_000), 3);
    let mut out = Vec::new();
    outcomes::encode(&store, |data, _| {
        out.extend_from_slice(data);
        Ok::<_, ()>(())
    })
    .unwrap();
    out
}

/// Replaces the first chunk of a snapshot's outcomes with `data` saying it holds `n`.
fn replace_first_chunk(path: &std::path::Path, data: &[u8], n: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let sql = "UPDATE idempotency_chunks SET data = ?1, outcomes = ?2 WHERE rowid = (SELECT min(rowid) FROM idempotency_chunks)";
    assert_eq!(conn.execute(sql, rusqlite::params![data, n]).unwrap(), 1);
}

/// A hostile file cannot make an answer unpack to gigabytes: fragments of 1 KiB and an
/// answer of 100,000 codes (100 MB unpacked) are refused as a damaged file.
#[test]
fn an_answer_that_unpacks_past_the_bound_is_refused() {
    let (d, info, _) = snapshot_with_answers(0);
    let long = "x".repeat(1024);
    let fragments: Vec<&str> = vec![long.as_str(); 31];
    replace_first_chunk(&info.path, &one_outcome_chunk(&[1u8; 100_000], true), 1);
    let conn = rusqlite::Connection::open(&info.path).unwrap();
    conn.execute("UPDATE meta SET value = ?1 WHERE key = 'body_fragments'", [serde_json::to_string(&fragments).unwrap()]).unwrap();
    drop(conn);
    let err = load(&info.path).unwrap_err();
    assert!(matches!(&err, SnapshotError::Corrupt { detail, .. } if detail.contains("unpacks to more than")), "{err}");
    d.journal.shutdown();
}

/// Damaged or hostile chunks are refused as a damaged file, each with what is wrong,
/// and a chunk past the bound is refused before its bytes are read.
#[test]
fn damaged_outcome_chunks_are_refused_naming_the_damage() {
    let (d, info, _) = snapshot_with_answers(0);
    let pristine = std::fs::read(&info.path).unwrap();
    let good = one_outcome_chunk(b"{}", false);
    let mut bad_flags = good.clone();
    bad_flags[1 + "hostile".len() + 16] = 0x80;
    let mut bad_key = good.clone();
    bad_key[1] = b' ';
    let cases: Vec<(Vec<u8>, i64, &str)> = vec![
        (good[..good.len() - 1].to_vec(), 1, "ends inside an outcome"),
        (bad_flags, 1, "bad outcome flags"),
        (bad_key, 1, "bad idempotency key"),
        (good.clone(), 2, "says it holds 2 outcomes and holds 1"),
        (vec![0; (64 << 20) + 1], 1, "more than"),
    ];
    for (data, n, says) in cases {
        std::fs::write(&info.path, &pristine).unwrap();
        replace_first_chunk(&info.path, &data, n);
        let err = load(&info.path).unwrap_err();
        assert!(matches!(&err, SnapshotError::Corrupt { detail, .. } if detail.contains(says)), "{says}: {err}");
    }
    // The same one outcome, undamaged, reads; only the digest then tells the file
    // holds other outcomes than it was written with.
    std::fs::write(&info.path, &pristine).unwrap();
    replace_first_chunk(&info.path, &good, 1);
    let err = load(&info.path).unwrap_err();
    assert!(matches!(&err, SnapshotError::Corrupt { detail, .. } if detail.contains("SHA-256")), "{err}");
    d.journal.shutdown();
}
