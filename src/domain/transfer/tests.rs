//! Transfers: the lifecycle by hand, and a property test that no sequence of commands
//! creates or loses a unit.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;
use crate::domain::brand::{StockChangeCmd, World};
use crate::domain::catalog::Catalog;
use crate::domain::event::BrandRecord;
use crate::domain::fulfilment::{LineRequest, ReserveCmd, Scope};
use crate::domain::registry::{Location, LocationKind};
use crate::domain::stock::StockOp;
use crate::domain::{BrandId, Lsn};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

const SKUS: [&str; 2] = ["S0", "S1"];
const LOCS: [&str; 3] = ["wh", "store", "outlet"];

struct Fixture {
    b: BrandState,
    world: BTreeMap<Id, Location>,
    lsn: Lsn,
}

impl Fixture {
    fn new() -> Fixture {
        let loc = |l: &str| Location {
            id: id(l),
            name: l.into(),
            kind: LocationKind::Warehouse,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        let mut f = Fixture {
            b: BrandState::new(BrandId::parse("b").unwrap(), "B".into(), Timestamp(0)),
            world: LOCS.iter().map(|l| (id(l), loc(l))).collect(),
            lsn: 0,
        };
        for s in SKUS {
            let (ev, _) = f.b.decide_put_sku(&id(s), Catalog { name: "x".into(), ..Catalog::default() }).unwrap();
            f.commit(vec![ev]);
        }
        f
    }

    fn commit(&mut self, events: Vec<Event>) {
        self.lsn += 1;
        let rec = BrandRecord { brand: self.b.id.clone(), at: Timestamp(self.lsn as i64), idempotency: None, events };
        self.b.apply(self.lsn, &rec).unwrap();
    }

    /// Applies a decision; the events it wrote (none when unchanged or refused).
    fn decided(&mut self, d: Result<Decision, Rejection>) -> Result<Vec<Event>, Rejection> {
        match d? {
            Decision::Apply(evs) => {
                self.commit(evs.clone());
                Ok(evs)
            }
            Decision::Unchanged => Ok(Vec::new()),
        }
    }

    fn change(&mut self, sku: &str, loc: &str, op: StockOp) -> Vec<Event> {
        let cmd = StockChangeCmd { sku: id(sku), location: id(loc), op, expected_version: None, reason: None };
        let (evs, _) = self.b.decide_stock_changes(&[cmd], &self.world);
        self.commit(evs.clone());
        evs
    }

    fn create(&mut self, tid: &str, from: &str, to: &str, lines: &[(&str, i64)]) -> Result<Vec<Event>, Rejection> {
        let cmd =
            TransferCmd { id: id(tid), origin: id(from), destination: id(to), lines: lines.iter().map(|(s, q)| (id(s), *q)).collect() };
        let d = self.b.decide_transfer(&cmd, &self.world, Timestamp(0));
        self.decided(d)
    }

    fn level(&self, sku: &str, loc: &str) -> crate::domain::stock::Level {
        self.b.skus[&id(sku)].levels.get(&id(loc))
    }
}

#[test]
fn a_transfer_ships_receives_in_part_and_writes_off_the_rest_on_closing() {
    let mut f = Fixture::new();
    f.change("S0", "wh", StockOp::Set { on_hand: 10 });
    f.create("T1", "wh", "store", &[("S0", 6)]).unwrap();
    assert_eq!(f.b.transfers[&id("T1")].status, TransferStatus::Draft);
    assert_eq!(f.level("S0", "wh").on_hand, 10, "a draft moves nothing");
    let d = f.b.decide_ship_transfer(&id("T1"));
    let evs = f.decided(d).unwrap();
    assert!(matches!(&evs[1], Event::StockChanged { cause: Cause::TransferShipped { .. }, .. }));
    assert_eq!((f.level("S0", "wh").on_hand, f.level("S0", "store").in_transit), (4, 6));
    assert!(f.decided(f.b.decide_ship_transfer(&id("T1"))).unwrap().is_empty(), "shipping again changes nothing");
    let d = f.b.decide_transfer_receipt(&id("T1"), &[(id("S0"), 4)]);
    f.decided(d).unwrap();
    assert_eq!((f.level("S0", "store").on_hand, f.level("S0", "store").in_transit), (4, 2));
    assert_eq!(f.b.transfers[&id("T1")].status, TransferStatus::Receiving);
    let over = f.b.decide_transfer_receipt(&id("T1"), &[(id("S0"), 3)]).unwrap_err();
    assert_eq!((over.code, over.errors[0].field.as_str()), (ErrorCode::InvalidRequest, "lines[0].quantity"));
    assert!(f.b.decide_cancel_transfer(&id("T1")).is_err(), "a shipped transfer is closed, not cancelled");
    let d = f.b.decide_close_transfer(&id("T1"));
    let evs = f.decided(d).unwrap();
    assert_eq!(evs[0], Event::TransferClosed { id: id("T1"), written_off: vec![(id("S0"), 2)] });
    assert_eq!((f.level("S0", "store").on_hand, f.level("S0", "store").in_transit), (4, 0));
    let t = &f.b.transfers[&id("T1")];
    assert_eq!((t.status, t.lines[0].received, t.lines[0].written_off), (TransferStatus::Closed, 4, 2));
}

#[test]
fn shipping_never_takes_reserved_units_or_the_safety_stock() {
    let mut f = Fixture::new();
    f.change("S0", "wh", StockOp::Set { on_hand: 10 });
    f.change("S0", "wh", StockOp::SetSafetyStock { quantity: 2 });
    let cmd = ReserveCmd {
        id: id("R1"),
        channel: id("ec"),
        ttl_seconds: 60,
        lines: vec![LineRequest { sku: id("S0"), location: Some(id("wh")), quantity: 5 }],
    };
    let d = f.b.decide_reserve(&cmd, &Scope::default(), Timestamp(0));
    f.decided(d).unwrap();
    f.create("T1", "wh", "store", &[("S0", 4)]).unwrap();
    let r = f.b.decide_ship_transfer(&id("T1")).unwrap_err();
    assert_eq!(r.code, ErrorCode::InsufficientStock);
    assert_eq!((r.shortages[0].requested, r.shortages[0].available), (4, 3));
    f.create("T2", "wh", "store", &[("S0", 3)]).unwrap();
    assert!(f.b.decide_ship_transfer(&id("T2")).is_ok());
}

#[test]
fn creating_checks_ids_and_is_idempotent_by_id() {
    let mut f = Fixture::new();
    assert_eq!(f.create("T1", "wh", "wh", &[("S0", 1)]).unwrap_err().errors[0].field, "destination");
    assert_eq!(f.create("T1", "wh", "mars", &[("S0", 1)]).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(f.create("T1", "wh", "store", &[("NOPE", 1)]).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(f.create("T1", "wh", "store", &[("S0", 1)]).unwrap().len(), 1);
    assert!(f.create("T1", "wh", "store", &[("S0", 1)]).unwrap().is_empty(), "the same body again: unchanged");
    assert_eq!(f.create("T1", "wh", "store", &[("S0", 2)]).unwrap_err().code, ErrorCode::AlreadyExists);
    assert_eq!(f.b.decide_close_transfer(&id("T1")).unwrap_err().code, ErrorCode::InvalidTransition);
    assert_eq!(f.b.decide_transfer_receipt(&id("T1"), &[(id("S0"), 1)]).unwrap_err().code, ErrorCode::InvalidTransition);
    let d = f.b.decide_cancel_transfer(&id("T1"));
    f.decided(d).unwrap();
    assert_eq!(f.b.decide_ship_transfer(&id("T1")).unwrap_err().code, ErrorCode::InvalidTransition);
    assert!(World::location_exists(&f.world, &id("wh")));
}

#[derive(Debug, Clone)]
enum Op {
    Stock(usize, usize, StockOp),
    Reserve(usize, usize, i64),
    Create(usize, usize, Vec<(usize, i64)>),
    Ship(usize),
    Receive(usize, usize, i64),
    Close(usize),
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let stock_op = prop_oneof![
        (-5i64..8).prop_map(|delta| StockOp::Adjust { delta }),
        (0i64..15).prop_map(|on_hand| StockOp::Set { on_hand }),
        (0i64..3).prop_map(|quantity| StockOp::SetSafetyStock { quantity }),
        (1i64..4).prop_map(|quantity| StockOp::MarkUnsellable { quantity }),
        (1i64..4).prop_map(|quantity| StockOp::ReleaseUnsellable { quantity }),
        (1i64..4).prop_map(|quantity| StockOp::Dispose { quantity }),
    ];
    let lines = prop::collection::vec((0..SKUS.len(), 1i64..6), 1..3).prop_map(|mut v| {
        v.sort_by_key(|l| l.0);
        v.dedup_by_key(|l| l.0);
        v
    });
    prop_oneof![
        3 => (0..SKUS.len(), 0..LOCS.len(), stock_op).prop_map(|(s, l, o)| Op::Stock(s, l, o)),
        1 => (0..SKUS.len(), 0..LOCS.len(), 1i64..5).prop_map(|(s, l, q)| Op::Reserve(s, l, q)),
        2 => (0..LOCS.len(), 0..LOCS.len(), lines).prop_map(|(a, b, v)| Op::Create(a, b, v)),
        2 => (0usize..6).prop_map(Op::Ship),
        2 => (0usize..6, 0..SKUS.len(), 1i64..5).prop_map(|(t, s, q)| Op::Receive(t, s, q)),
        1 => (0usize..6).prop_map(Op::Close),
        1 => (0usize..6).prop_map(Op::Cancel),
    ]
}

/// Units a SKU's locations hold or have in transit: what only explicit changes and
/// write-offs may change.
fn units(f: &Fixture, sku: &str) -> i64 {
    LOCS.iter().map(|l| f.level(sku, l)).map(|l| l.on_hand + l.unsellable + l.in_transit).sum()
}

/// The units a record's write-offs account for: what each `transfer.closed` names.
fn written_off(events: &[Event], sku: &str) -> i64 {
    let sku = id(sku);
    events
        .iter()
        .map(|e| match e {
            Event::TransferClosed { written_off, .. } => written_off.iter().filter(|(s, _)| *s == sku).map(|(_, q)| q).sum(),
            _ => 0,
        })
        .sum()
}

/// The units an applied explicit stock change adds at its location (`old`: the level
/// before it).
fn explicit(op: StockOp, old: crate::domain::stock::Level) -> i64 {
    match op {
        StockOp::Adjust { delta } => delta,
        StockOp::Set { on_hand } => on_hand - old.on_hand,
        StockOp::Dispose { quantity } => -quantity,
        StockOp::SetSafetyStock { .. } | StockOp::MarkUnsellable { .. } | StockOp::ReleaseUnsellable { .. } => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// No sequence of commands creates or loses a unit: per SKU, on_hand + unsellable +
    /// in_transit over every location changes only by explicit changes (adjust, set,
    /// dispose) and by the write-offs a `transfer.closed` names; a shipped transfer's
    /// remaining units are exactly what is in transit at its destination; shipping is
    /// refused exactly when the origin's available cannot cover a line.
    #[test]
    fn no_unit_is_created_or_lost(ops in prop::collection::vec(op(), 1..50)) {
        let mut f = Fixture::new();
        let mut ids: Vec<Id> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            let before: HashMap<String, i64> = SKUS.iter().map(|s| (s.to_string(), units(&f, s))).collect();
            let tid = |i: usize| ids.get(i).cloned();
            let mut expected: HashMap<&str, i64> = HashMap::new();
            let events = match op {
                Op::Stock(s, l, o) => {
                    let old = f.level(SKUS[s], LOCS[l]);
                    let evs = f.change(SKUS[s], LOCS[l], o);
                    if !evs.is_empty() { expected.insert(SKUS[s], explicit(o, old)); }
                    evs
                }
                Op::Reserve(s, l, q) => {
                    let cmd = ReserveCmd { id: id(&format!("R{n}")), channel: id("ec"), ttl_seconds: 60,
                        lines: vec![LineRequest { sku: id(SKUS[s]), location: Some(id(LOCS[l])), quantity: q }] };
                    let d = f.b.decide_reserve(&cmd, &Scope::default(), Timestamp(0));
                    f.decided(d).unwrap_or_default()
                }
                Op::Create(a, b, v) => {
                    let lines: Vec<(&str, i64)> = v.iter().map(|(s, q)| (SKUS[*s], *q)).collect();
                    let r = f.create(&format!("T{n}"), LOCS[a], LOCS[b], &lines);
                    prop_assert_eq!(r.is_ok(), a != b);
                    if r.is_ok() { ids.push(id(&format!("T{n}"))); }
                    r.unwrap_or_default()
                }
                Op::Ship(i) => match tid(i) {
                    None => Vec::new(),
                    Some(t) => {
                        let tr = f.b.transfers[&t].clone();
                        let covered = tr.lines.iter().all(|l| f.level(l.sku.as_str(), tr.origin.as_str()).available() >= l.quantity);
                        let d = f.b.decide_ship_transfer(&t);
                        let r = f.decided(d);
                        if tr.status == TransferStatus::Draft {
                            prop_assert_eq!(r.is_ok(), covered, "ship {:?}", tr);
                        }
                        r.unwrap_or_default()
                    }
                },
                Op::Receive(i, s, q) => match tid(i) {
                    None => Vec::new(),
                    Some(t) => { let d = f.b.decide_transfer_receipt(&t, &[(id(SKUS[s]), q)]); f.decided(d).unwrap_or_default() }
                },
                Op::Close(i) => match tid(i) { None => Vec::new(), Some(t) => { let d = f.b.decide_close_transfer(&t); f.decided(d).unwrap_or_default() } },
                Op::Cancel(i) => match tid(i) { None => Vec::new(), Some(t) => { let d = f.b.decide_cancel_transfer(&t); f.decided(d).unwrap_or_default() } },
            };
            for s in SKUS {
                let want = expected.get(s).copied().unwrap_or(0) - written_off(&events, s);
                prop_assert_eq!(units(&f, s) - before[s], want, "{} after {:?}", s, events);
            }
            // What is in transit at each location is what its shipped transfers still owe.
            for s in SKUS {
                for l in LOCS {
                    let owed: i64 = f.b.transfers.values()
                        .filter(|t| t.destination.as_str() == l && matches!(t.status, TransferStatus::Shipped | TransferStatus::Receiving))
                        .flat_map(|t| t.lines.iter().filter(|x| x.sku.as_str() == s).map(|x| x.remaining()))
                        .sum();
                    prop_assert_eq!(f.level(s, l).in_transit, owed, "{}@{}", s, l);
                    prop_assert!(f.level(s, l).check().is_ok());
                }
            }
        }
    }
}

#[test]
fn open_transfers_are_bounded_and_ended_ones_purged_after_their_retention() {
    let mut f = Fixture::new();
    for i in 0..OPEN_TRANSFERS_PER_BRAND_MAX {
        f.create(&format!("T{i}"), "wh", "store", &[("S0", 1)]).unwrap();
    }
    let full = f.create("ONE-MORE", "wh", "store", &[("S0", 1)]).unwrap_err();
    assert_eq!(full.code, ErrorCode::Unprocessable);
    assert!(full.detail.contains(&format!("({OPEN_TRANSFERS_PER_BRAND_MAX}); close or cancel some first")), "{}", full.detail);
    assert!(f.create("T0", "wh", "store", &[("S0", 1)]).unwrap().is_empty(), "the same request again is still answered");
    let d = f.b.decide_cancel_transfer(&id("T0"));
    f.decided(d).unwrap();
    assert_eq!(f.b.transfers.open(), OPEN_TRANSFERS_PER_BRAND_MAX - 1);
    f.create("ONE-MORE", "wh", "store", &[("S0", 1)]).unwrap();

    let cancelled_at = f.b.transfers[&id("T0")].updated_at;
    assert!(f.b.decide_transfer_purges(Timestamp(cancelled_at.0 + ENDED_TRANSFER_RETENTION_MS)).is_empty(), "kept for its retention");
    let purges = f.b.decide_transfer_purges(Timestamp(cancelled_at.0 + ENDED_TRANSFER_RETENTION_MS + 1));
    assert_eq!(purges, vec![Event::TransferPurged { id: id("T0") }], "open ones are never purged");
    f.commit(purges);
    assert!(f.b.transfers.get(&id("T0")).is_none());
    assert_eq!(f.b.transfers.open(), OPEN_TRANSFERS_PER_BRAND_MAX);
}
