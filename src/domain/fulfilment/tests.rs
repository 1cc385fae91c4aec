//! Reservations and shipments: unit tests and a property test of random operation
//! sequences against a simple model.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;
use crate::domain::brand::{BrandState, StockChangeCmd};
use crate::domain::catalog::Catalog;
use crate::domain::event::BrandRecord;
use crate::domain::registry::{Location, LocationKind};
use crate::domain::stock::StockOp;
use crate::domain::Lsn;
use crate::domain::{BrandId, ErrorCode};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

struct Fixture {
    b: BrandState,
    world: BTreeMap<Id, Location>,
    lsn: Lsn,
    now: Timestamp,
}

impl Fixture {
    fn new(skus: &[&str], locs: &[&str]) -> Fixture {
        let world = locs
            .iter()
            .map(|l| {
                (
                    id(l),
                    Location {
                        id: id(l),
                        name: l.to_string(),
                        kind: LocationKind::Warehouse,
                        created_at: Timestamp(0),
                        updated_at: Timestamp(0),
                    },
                )
            })
            .collect();
        let mut f = Fixture {
            b: BrandState::new(BrandId::parse("b").unwrap(), "B".into(), Timestamp(0)),
            world,
            lsn: 0,
            now: Timestamp(1_000_000),
        };
        for s in skus {
            let (ev, _) = f.b.decide_put_sku(&id(s), Catalog { name: "x".into(), ..Catalog::default() }).unwrap();
            f.commit(vec![ev]);
        }
        f
    }

    fn commit(&mut self, events: Vec<Event>) {
        self.lsn += 1;
        let rec = BrandRecord { brand: self.b.id.clone(), at: self.now, idempotency: None, events };
        self.b.apply(self.lsn, &rec).unwrap();
    }

    fn decided(&mut self, d: Result<Decision, Rejection>) -> Result<bool, Rejection> {
        match d? {
            Decision::Apply(evs) => {
                self.commit(evs);
                Ok(true)
            }
            Decision::Unchanged => Ok(false),
        }
    }

    fn set(&mut self, sku: &str, loc: &str, on_hand: i64) {
        let cmd = StockChangeCmd { sku: id(sku), location: id(loc), op: StockOp::Set { on_hand }, expected_version: None, reason: None };
        let (evs, _) = self.b.decide_stock_changes(&[cmd], &self.world);
        self.commit(evs);
    }

    fn reserve(&mut self, rid: &str, lines: &[(&str, Option<&str>, i64)]) -> Result<bool, Rejection> {
        let cmd = ReserveCmd {
            id: id(rid),
            channel: id("zozotown"),
            ttl_seconds: 600,
            lines: lines.iter().map(|(s, l, q)| LineRequest { sku: id(s), location: l.map(id), quantity: *q }).collect(),
        };
        let d = self.b.decide_reserve(&cmd, &Scope::default(), self.now);
        self.decided(d)
    }

    fn level(&self, sku: &str, loc: &str) -> crate::domain::stock::Level {
        self.b.skus[&id(sku)].levels.get(&id(loc))
    }
}

fn ship_to() -> ShipTo {
    ShipTo {
        name: "山田 太郎".into(),
        postal_code: "100-0001".into(),
        prefecture: "東京都".into(),
        address: "千代田区1-1".into(),
        phone: None,
    }
}

#[test]
fn a_line_without_location_takes_the_most_available_first_and_splits() {
    let mut f = Fixture::new(&["S1"], &["a", "b", "c"]);
    f.set("S1", "a", 2);
    f.set("S1", "b", 5);
    f.set("S1", "c", 1);
    assert!(f.reserve("R1", &[("S1", None, 6)]).unwrap());
    let r = &f.b.reservations[&id("R1")];
    let got: Vec<_> = r.lines.iter().map(|a| (a.location.as_str(), a.quantity)).collect();
    assert_eq!(got, vec![("b", 5), ("a", 1)]);
    assert_eq!(f.level("S1", "b").reserved, 5);
    assert_eq!(f.level("S1", "a").available(), 1);
}

#[test]
fn one_short_line_holds_nothing() {
    let mut f = Fixture::new(&["S1", "S2"], &["a"]);
    f.set("S1", "a", 5);
    f.set("S2", "a", 1);
    let err = f.reserve("R1", &[("S1", None, 2), ("S2", Some("a"), 2)]).unwrap_err();
    assert_eq!(err.code, ErrorCode::InsufficientStock);
    assert_eq!(err.shortages, vec![crate::domain::error::Shortage { sku: id("S2"), requested: 2, available: 1 }]);
    assert_eq!(f.level("S1", "a").reserved, 0);
    assert!(f.b.reservations.is_empty());
}

#[test]
fn same_id_same_body_is_unchanged_other_body_already_exists() {
    let mut f = Fixture::new(&["S1"], &["a"]);
    f.set("S1", "a", 5);
    assert!(f.reserve("R1", &[("S1", None, 2)]).unwrap());
    assert!(!f.reserve("R1", &[("S1", None, 2)]).unwrap());
    assert_eq!(f.reserve("R1", &[("S1", None, 3)]).unwrap_err().code, ErrorCode::AlreadyExists);
    assert_eq!(f.level("S1", "a").reserved, 2);
}

#[test]
fn release_and_expiry_return_stock_and_end_the_reservation() {
    let mut f = Fixture::new(&["S1"], &["a"]);
    f.set("S1", "a", 5);
    f.reserve("R1", &[("S1", None, 2)]).unwrap();
    f.reserve("R2", &[("S1", None, 3)]).unwrap();
    assert_eq!(f.level("S1", "a").available(), 0);
    let d = f.b.decide_release(&id("R1"), f.now);
    assert!(f.decided(d).unwrap());
    assert!(!f.decided(f.b.decide_release(&id("R1"), f.now)).unwrap(), "releasing again changes nothing");
    assert_eq!(f.level("S1", "a").available(), 2);
    // Not yet expired.
    assert!(f.b.decide_expiries(f.now.plus_seconds(599)).unwrap().is_empty());
    f.now = f.now.plus_seconds(600);
    let evs = f.b.decide_expiries(f.now).unwrap();
    f.commit(evs);
    assert_eq!(f.b.reservations[&id("R2")].status, ReservationStatus::Expired);
    assert_eq!(f.level("S1", "a").reserved, 0);
    assert!(f.b.expiries.is_empty());
    assert_eq!(f.b.decide_release(&id("R2"), f.now).unwrap_err().code, ErrorCode::InvalidTransition);
}

#[test]
fn expiries_due_at_once_come_in_whole_reservations_within_the_budget() {
    use crate::domain::event::encoded_len;
    let skus: Vec<String> = (0..10).map(|i| format!("S{i}")).collect();
    let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    let mut f = Fixture::new(&refs, &["a", "b"]);
    for s in &refs {
        f.set(s, "a", 100);
        f.set(s, "b", 100);
    }
    let lines: Vec<(&str, Option<&str>, i64)> = refs.iter().map(|s| (*s, None, 1)).collect();
    for i in 0..40 {
        f.reserve(&format!("R{i:02}"), &lines).unwrap();
    }
    let mut unbounded = Fixture { b: f.b.clone(), world: f.world.clone(), lsn: f.lsn, now: f.now.plus_seconds(600) };
    let all = unbounded.b.decide_expiries(unbounded.now).unwrap();
    unbounded.commit(all.clone());

    f.now = f.now.plus_seconds(600);
    let one: usize = all.iter().take(1 + refs.len()).map(encoded_len).sum();
    let budget = 7 * one + one / 2;
    let mut records = 0;
    loop {
        let due = f.b.decide_expiries_within(f.now, budget).unwrap();
        assert!(due.too_large.is_empty());
        if due.events.is_empty() {
            break;
        }
        let bytes: usize = due.events.iter().map(encoded_len).sum();
        assert!(bytes <= budget, "{bytes} > {budget}");
        assert!(matches!(due.events[0], Event::ReservationExpired { .. }), "whole reservations, each with its stock");
        let more = due.more;
        f.commit(due.events);
        records += 1;
        assert_eq!(more, !f.b.expiries.is_empty());
    }
    assert_eq!(records, 40usize.div_ceil(7));
    assert!(f.b.expiries.is_empty());
    for s in &refs {
        assert_eq!(f.b.skus[&id(s)], unbounded.b.skus[&id(s)], "{s}: the same state as one record would give");
    }
    // A reservation whose expiry alone is over the budget is left active and named.
    let mut g = Fixture::new(&["S1"], &["a"]);
    g.set("S1", "a", 5);
    g.reserve("BIG", &[("S1", None, 1)]).unwrap();
    g.now = g.now.plus_seconds(600);
    let due = g.b.decide_expiries_within(g.now, 10).unwrap();
    assert_eq!((due.events.len(), due.more, due.too_large), (0, false, vec![id("BIG")]));
}

#[test]
fn a_reservation_past_its_time_cannot_be_shipped_even_before_the_sweep() {
    let mut f = Fixture::new(&["S1"], &["a"]);
    f.set("S1", "a", 5);
    f.reserve("R1", &[("S1", None, 2)]).unwrap();
    let cmd = ShipCmd { id: id("SH1"), order_ref: None, channel: None, source: ShipmentSource::Reservation(id("R1")), ship_to: ship_to() };
    let err = f.b.decide_ship(&cmd, &Scope::default(), f.now.plus_seconds(600)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidTransition);
}

#[test]
fn shipment_lifecycle_moves_stock() {
    let mut f = Fixture::new(&["S1", "S2"], &["a"]);
    f.set("S1", "a", 5);
    f.set("S2", "a", 5);
    f.reserve("R1", &[("S1", None, 2)]).unwrap();
    let from_res = ShipCmd {
        id: id("SH1"),
        order_ref: Some("EC-1".into()),
        channel: None,
        source: ShipmentSource::Reservation(id("R1")),
        ship_to: ship_to(),
    };
    assert!(f.decided(f.b.decide_ship(&from_res, &Scope::default(), f.now)).unwrap());
    assert_eq!(f.b.reservations[&id("R1")].status, ReservationStatus::Consumed);
    assert!(f.b.expiries.is_empty(), "a consumed reservation no longer expires");
    let lines = vec![LineRequest { sku: id("S2"), location: None, quantity: 4 }];
    let from_lines = ShipCmd { id: id("SH2"), order_ref: None, channel: None, source: ShipmentSource::Lines(lines), ship_to: ship_to() };
    assert!(f.decided(f.b.decide_ship(&from_lines, &Scope::default(), f.now)).unwrap());
    assert_eq!(f.level("S2", "a").reserved, 4);
    let st = |s: &str, status| StatusCmd { id: id(s), status, tracking_number: None, carrier: None };
    assert_eq!(f.b.decide_status(&st("SH1", ShipmentStatus::Shipped)).unwrap_err().code, ErrorCode::InvalidTransition);
    for s in [ShipmentStatus::Picking, ShipmentStatus::Packed] {
        assert!(f.decided(f.b.decide_status(&st("SH1", s))).unwrap());
    }
    assert!(!f.decided(f.b.decide_status(&st("SH1", ShipmentStatus::Packed))).unwrap(), "repeat is a no-op");
    let shipped = StatusCmd {
        id: id("SH1"),
        status: ShipmentStatus::Shipped,
        tracking_number: Some("1234-5678".into()),
        carrier: Some("ヤマト運輸".into()),
    };
    assert!(f.decided(f.b.decide_status(&shipped)).unwrap());
    assert_eq!((f.level("S1", "a").on_hand, f.level("S1", "a").reserved), (3, 0));
    assert_eq!(f.b.decide_status(&st("SH1", ShipmentStatus::Cancelled)).unwrap_err().code, ErrorCode::InvalidTransition);
    assert!(f.decided(f.b.decide_status(&st("SH2", ShipmentStatus::Cancelled))).unwrap());
    assert_eq!((f.level("S2", "a").on_hand, f.level("S2", "a").reserved), (5, 0));
    let s1 = &f.b.shipments[&id("SH1")];
    assert_eq!(
        s1.history.iter().map(|h| h.status).collect::<Vec<_>>(),
        vec![ShipmentStatus::Accepted, ShipmentStatus::Picking, ShipmentStatus::Packed, ShipmentStatus::Shipped]
    );
    assert_eq!(s1.tracking_number.as_deref(), Some("1234-5678"));
}

#[test]
fn a_checked_status_change_refuses_accepted_and_bad_texts_in_order() {
    let ok = StatusCmd::new(id("SH1"), ShipmentStatus::Shipped, Some("1234-5678".into()), None).unwrap();
    assert_eq!((ok.status, ok.tracking_number.as_deref()), (ShipmentStatus::Shipped, Some("1234-5678")));
    let problems = StatusCmd::new(id("SH1"), ShipmentStatus::Accepted, Some("".into()), Some("a\nb".into())).unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["status", "tracking_number", "carrier"]);
    assert_eq!(problems[0].detail, "a shipment starts as accepted; it cannot be moved back to it");
}

#[test]
fn statuses_parse_by_exact_name() {
    assert_eq!(ShipmentStatus::parse("accepted"), Some(ShipmentStatus::Accepted));
    for s in ShipmentStatus::TARGETS {
        assert_eq!(ShipmentStatus::parse(s.as_str()), Some(s));
    }
    assert_eq!(ShipmentStatus::parse("Shipped"), None);
    assert_eq!(ShipmentStatus::parse(" shipped"), None);
}

#[test]
fn ship_to_is_never_in_debug_output() {
    let text = format!("{:?}", ship_to());
    assert!(!text.contains("山田") && !text.contains("100-0001"), "{text}");
}

#[test]
fn sku_with_stock_cannot_be_deleted() {
    let mut f = Fixture::new(&["S1"], &["a"]);
    f.set("S1", "a", 1);
    assert_eq!(f.b.decide_delete_sku(&id("S1")).unwrap_err().code, ErrorCode::InvalidTransition);
    // Unsellable units are held too: deleting the SKU would lose them unsaid.
    let cmd = StockChangeCmd {
        sku: id("S1"),
        location: id("a"),
        op: StockOp::MarkUnsellable { quantity: 1 },
        expected_version: None,
        reason: None,
    };
    let (evs, _) = f.b.decide_stock_changes(&[cmd], &f.world);
    f.commit(evs);
    assert_eq!(f.level("S1", "a").on_hand, 0);
    let r = f.b.decide_delete_sku(&id("S1")).unwrap_err();
    assert!(r.detail.contains("unsellable 1"), "{}", r.detail);
    let cmd =
        StockChangeCmd { sku: id("S1"), location: id("a"), op: StockOp::Dispose { quantity: 1 }, expected_version: None, reason: None };
    let (evs, _) = f.b.decide_stock_changes(&[cmd], &f.world);
    f.commit(evs);
    let ev = f.b.decide_delete_sku(&id("S1")).unwrap();
    f.commit(vec![ev]);
    assert!(f.b.skus.is_empty());
}

// ---------------------------------------------------------------- property test

const SKUS: [&str; 3] = ["S0", "S1", "S2"];
const LOCS: [&str; 2] = ["L0", "L1"];

#[derive(Debug, Clone)]
enum Op {
    Set(usize, usize, i64),
    Adjust(usize, usize, i64),
    Reserve(Vec<(usize, Option<usize>, i64)>),
    Release(usize),
    Advance(i64),
    ShipReservation(usize),
    ShipLines(Vec<(usize, Option<usize>, i64)>),
    Status(usize, ShipmentStatus),
}

fn lines() -> impl Strategy<Value = Vec<(usize, Option<usize>, i64)>> {
    prop::collection::vec((0..SKUS.len(), prop::option::of(0..LOCS.len()), 1i64..6), 1..4).prop_map(|mut v| {
        v.sort_by_key(|l| l.0);
        v.dedup_by_key(|l| l.0);
        v
    })
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![
        Just(ShipmentStatus::Picking),
        Just(ShipmentStatus::Packed),
        Just(ShipmentStatus::Shipped),
        Just(ShipmentStatus::Delivered),
        Just(ShipmentStatus::Cancelled)
    ];
    prop_oneof![
        (0..SKUS.len(), 0..LOCS.len(), 0i64..12).prop_map(|(s, l, n)| Op::Set(s, l, n)),
        (0..SKUS.len(), 0..LOCS.len(), -6i64..6).prop_map(|(s, l, d)| Op::Adjust(s, l, d)),
        lines().prop_map(Op::Reserve),
        (0usize..8).prop_map(Op::Release),
        (0i64..400).prop_map(Op::Advance),
        (0usize..8).prop_map(Op::ShipReservation),
        lines().prop_map(Op::ShipLines),
        ((0usize..8), status).prop_map(|(i, s)| Op::Status(i, s)),
    ]
}

/// Checks the holding invariant and the level invariants.
fn check(f: &Fixture) -> Result<(), TestCaseError> {
    let mut held: HashMap<(Id, Id), i64> = HashMap::new();
    for r in f.b.reservations.values().filter(|r| r.status == ReservationStatus::Active) {
        for a in &r.lines {
            *held.entry((a.sku.clone(), a.location.clone())).or_default() += a.quantity;
        }
    }
    for s in f.b.shipments.values().filter(|s| s.status.holds_stock()) {
        for a in &s.lines {
            *held.entry((a.sku.clone(), a.location.clone())).or_default() += a.quantity;
        }
    }
    for sku in SKUS {
        for loc in LOCS {
            let l = f.level(sku, loc);
            prop_assert!(l.check().is_ok(), "{sku}@{loc}: {l:?}");
            prop_assert!(l.available() >= 0);
            prop_assert_eq!(l.reserved, held.get(&(id(sku), id(loc))).copied().unwrap_or(0), "{}@{}", sku, loc);
        }
    }
    prop_assert_eq!(f.b.expiries.len(), f.b.reservations.values().filter(|r| r.status == ReservationStatus::Active).count());
    Ok(())
}

fn to_lines(v: &[(usize, Option<usize>, i64)]) -> Vec<LineRequest> {
    v.iter().map(|(s, l, q)| LineRequest { sku: id(SKUS[*s]), location: l.map(|l| id(LOCS[l])), quantity: *q }).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn random_operations_keep_every_invariant_and_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut f = Fixture::new(&SKUS, &LOCS);
        // The model: on_hand per (sku, loc), moved only by set/adjust/ship.
        let mut on_hand: HashMap<(usize, usize), i64> = HashMap::new();
        let mut reservations = Vec::new();
        let mut shipments = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Set(s, l, q) => {
                    let reserved = f.level(SKUS[*s], LOCS[*l]).reserved;
                    f.set(SKUS[*s], LOCS[*l], *q);
                    if *q >= reserved { on_hand.insert((*s, *l), *q); }
                }
                Op::Adjust(s, l, d) => {
                    let cmd = StockChangeCmd { sku: id(SKUS[*s]), location: id(LOCS[*l]), op: StockOp::Adjust { delta: *d }, expected_version: None, reason: None };
                    let (evs, _) = f.b.decide_stock_changes(&[cmd], &f.world);
                    let before = f.level(SKUS[*s], LOCS[*l]);
                    let applied = !evs.is_empty();
                    f.commit(evs);
                    let want = before.on_hand + d >= before.reserved;
                    prop_assert_eq!(applied, want);
                    if applied { *on_hand.entry((*s, *l)).or_default() += d; }
                }
                Op::Reserve(v) => {
                    let rid = format!("R{n}");
                    // Model: each line is coverable from the locations it allows.
                    let coverable = v.iter().all(|(s, l, q)| {
                        let avail: i64 = (0..LOCS.len()).filter(|x| l.is_none_or(|l| l == *x)).map(|x| f.level(SKUS[*s], LOCS[x]).available()).sum();
                        avail >= *q
                    });
                    let cmd = ReserveCmd { id: id(&rid), channel: id("c"), ttl_seconds: 300, lines: to_lines(v) };
                    let d = f.b.decide_reserve(&cmd, &Scope::default(), f.now);
                    let ok = f.decided(d).is_ok();
                    prop_assert_eq!(ok, coverable, "reserve {:?}", v);
                    if ok { reservations.push(rid); }
                }
                Op::Release(i) => {
                    if let Some(rid) = reservations.get(*i) {
                        let d = f.b.decide_release(&id(rid), f.now);
                        let _ = f.decided(d);
                    }
                }
                Op::Advance(secs) => {
                    f.now = f.now.plus_seconds(*secs);
                    let evs = f.b.decide_expiries(f.now).unwrap();
                    f.commit(evs);
                    prop_assert!(f.b.expiries.iter().all(|(at, _)| *at > f.now));
                }
                Op::ShipReservation(i) => {
                    if let Some(rid) = reservations.get(*i) {
                        let sid = format!("SH{n}");
                        let cmd = ShipCmd { id: id(&sid), order_ref: None, channel: None, source: ShipmentSource::Reservation(id(rid)), ship_to: ship_to() };
                        let d = f.b.decide_ship(&cmd, &Scope::default(), f.now);
                        if f.decided(d).is_ok() { shipments.push(sid); }
                    }
                }
                Op::ShipLines(v) => {
                    let sid = format!("SH{n}");
                    let cmd = ShipCmd { id: id(&sid), order_ref: None, channel: None, source: ShipmentSource::Lines(to_lines(v)), ship_to: ship_to() };
                    let d = f.b.decide_ship(&cmd, &Scope::default(), f.now);
                    if f.decided(d).is_ok() { shipments.push(sid); }
                }
                Op::Status(i, status) => {
                    if let Some(sid) = shipments.get(*i) {
                        let before = f.b.shipments[&id(sid)].clone();
                        let cmd = StatusCmd { id: id(sid), status: *status, tracking_number: None, carrier: None };
                        let d = f.b.decide_status(&cmd);
                        let moved = matches!(f.decided(d), Ok(true));
                        prop_assert_eq!(moved, before.status.can_move_to(*status));
                        if moved && *status == ShipmentStatus::Shipped {
                            for a in &before.lines {
                                let s = SKUS.iter().position(|x| *x == a.sku.as_str()).unwrap();
                                let l = LOCS.iter().position(|x| *x == a.location.as_str()).unwrap();
                                *on_hand.entry((s, l)).or_default() -= a.quantity;
                            }
                        }
                    }
                }
            }
            check(&f)?;
            for (si, s) in SKUS.iter().enumerate() {
                for (li, l) in LOCS.iter().enumerate() {
                    prop_assert_eq!(f.level(s, l).on_hand, on_hand.get(&(si, li)).copied().unwrap_or(0), "on_hand {}@{} after {:?}", s, l, op);
                }
            }
        }
    }
}
