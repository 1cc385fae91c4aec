//! Returns: the lifecycle by hand, and a property test that receipts are the only way
//! a return moves stock and never take in more than was shipped.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;
use crate::domain::brand::StockChangeCmd;
use crate::domain::catalog::Catalog;
use crate::domain::event::BrandRecord;
use crate::domain::fulfilment::{LineRequest, Scope, ShipCmd, ShipTo, ShipmentSource, StatusCmd};
use crate::domain::registry::{Location, LocationKind};
use crate::domain::stock::StockOp;
use crate::domain::{BrandId, Lsn};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

const SKUS: [&str; 2] = ["S0", "S1"];
const LOCS: [&str; 2] = ["wh", "store"];

struct Fixture {
    b: BrandState,
    world: BTreeMap<Id, Location>,
    lsn: Lsn,
}

impl Fixture {
    /// A brand whose shipment `SH1` shipped 3 of S0 and 2 of S1 from `wh`.
    fn shipped() -> Fixture {
        let loc =
            |l: &str| Location { id: id(l), name: l.into(), kind: LocationKind::Store, created_at: Timestamp(0), updated_at: Timestamp(0) };
        let mut f = Fixture {
            b: BrandState::new(BrandId::parse("b").unwrap(), "B".into(), Timestamp(0)),
            world: LOCS.iter().map(|l| (id(l), loc(l))).collect(),
            lsn: 0,
        };
        for s in SKUS {
            let (ev, _) = f.b.decide_put_sku(&id(s), Catalog { name: "x".into(), ..Catalog::default() }).unwrap();
            f.commit(vec![ev]);
            let cmd =
                StockChangeCmd { sku: id(s), location: id("wh"), op: StockOp::Set { on_hand: 10 }, expected_version: None, reason: None };
            let (evs, _) = f.b.decide_stock_changes(&[cmd], &f.world);
            f.commit(evs);
        }
        let lines =
            vec![LineRequest { sku: id("S0"), location: None, quantity: 3 }, LineRequest { sku: id("S1"), location: None, quantity: 2 }];
        let ship_to =
            ShipTo { name: "山田".into(), postal_code: "1".into(), prefecture: "東京都".into(), address: "1".into(), phone: None };
        let cmd = ShipCmd { id: id("SH1"), order_ref: None, channel: None, source: ShipmentSource::Lines(lines), ship_to };
        let d = f.b.decide_ship(&cmd, &Scope::default(), Timestamp(0));
        f.decided(d).unwrap();
        for status in [ShipmentStatus::Picking, ShipmentStatus::Packed, ShipmentStatus::Shipped] {
            let d = f.b.decide_status(&StatusCmd { id: id("SH1"), status, tracking_number: None, carrier: None });
            f.decided(d).unwrap();
        }
        f
    }

    fn commit(&mut self, events: Vec<Event>) {
        self.lsn += 1;
        let rec = BrandRecord { brand: self.b.id.clone(), at: Timestamp(self.lsn as i64), idempotency: None, events };
        self.b.apply(self.lsn, &rec).unwrap();
    }

    fn decided(&mut self, d: Result<Decision, Rejection>) -> Result<Vec<Event>, Rejection> {
        match d? {
            Decision::Apply(evs) => {
                self.commit(evs.clone());
                Ok(evs)
            }
            Decision::Unchanged => Ok(Vec::new()),
        }
    }

    fn request(&mut self, rid: &str, lines: &[(&str, i64)]) -> Result<Vec<Event>, Rejection> {
        let cmd = ReturnCmd {
            id: id(rid),
            shipment_id: id("SH1"),
            reason: "size".into(),
            lines: lines.iter().map(|(s, q)| (id(s), *q)).collect(),
        };
        let d = self.b.decide_return(&cmd, Timestamp(0));
        self.decided(d)
    }

    fn receive(&mut self, rid: &str, lines: &[(&str, i64, Disposition, Option<&str>)]) -> Result<Vec<Event>, Rejection> {
        let lines: Vec<ReceiptLine> =
            lines.iter().map(|(s, q, d, l)| ReceiptLine { sku: id(s), quantity: *q, disposition: *d, location: l.map(id) }).collect();
        let d = self.b.decide_return_receipt(&id(rid), &lines, &self.world);
        self.decided(d)
    }

    fn units(&self, sku: &str) -> i64 {
        LOCS.iter().map(|l| self.b.skus[&id(sku)].levels.get(&id(l))).map(|l| l.on_hand + l.unsellable + l.in_transit).sum()
    }
}

#[test]
fn a_return_is_inspected_into_restock_unsellable_and_missing() {
    let mut f = Fixture::shipped();
    assert_eq!(f.units("S0"), 7);
    f.request("RT1", &[("S0", 3), ("S1", 1)]).unwrap();
    let d = f.b.decide_return_in_transit(&id("RT1"));
    f.decided(d).unwrap();
    f.receive("RT1", &[("S0", 1, Disposition::Restock, Some("store")), ("S0", 1, Disposition::Unsellable, Some("wh"))]).unwrap();
    assert_eq!(f.b.returns[&id("RT1")].status, ReturnStatus::Receiving);
    let store = f.b.skus[&id("S0")].levels.get(&id("store"));
    let wh = f.b.skus[&id("S0")].levels.get(&id("wh"));
    assert_eq!((store.on_hand, wh.unsellable, wh.on_hand), (1, 1, 7));
    let over = f.receive("RT1", &[("S0", 2, Disposition::Missing, None)]).unwrap_err();
    assert_eq!(over.errors[0].field, "lines[0].quantity");
    f.receive("RT1", &[("S0", 1, Disposition::Missing, None), ("S1", 1, Disposition::Restock, Some("wh"))]).unwrap();
    let r = &f.b.returns[&id("RT1")];
    assert_eq!((r.status, r.lines[0].missing, r.lines[1].restocked), (ReturnStatus::Received, 1, 1));
    assert_eq!(f.units("S0"), 9, "two of the three came back");
    assert_eq!(f.b.decide_cancel_return(&id("RT1")).unwrap_err().code, ErrorCode::InvalidTransition);
    let d = f.b.decide_close_return(&id("RT1"));
    f.decided(d).unwrap();
    assert_eq!(f.b.returns[&id("RT1")].status, ReturnStatus::Closed);
}

#[test]
fn a_return_never_asks_for_more_than_shipped_less_what_others_ask() {
    let mut f = Fixture::shipped();
    let e = f.request("RT1", &[("S0", 4)]).unwrap_err();
    assert_eq!(e.errors[0].field, "lines[0].quantity");
    f.request("RT1", &[("S0", 2)]).unwrap();
    assert_eq!(f.request("RT2", &[("S0", 2)]).unwrap_err().errors[0].field, "lines[0].quantity");
    assert!(f.request("RT1", &[("S0", 2)]).unwrap().is_empty(), "the same request again: unchanged");
    assert_eq!(f.request("RT1", &[("S0", 1)]).unwrap_err().code, ErrorCode::AlreadyExists);
    let d = f.b.decide_cancel_return(&id("RT1"));
    f.decided(d).unwrap();
    f.request("RT2", &[("S0", 3)]).unwrap();
    let e = f.receive("RT2", &[("S0", 1, Disposition::Restock, None)]).unwrap_err();
    assert_eq!(e.errors[0].field, "lines[0].location");
    let e = f.receive("RT2", &[("S0", 1, Disposition::Restock, Some("mars"))]).unwrap_err();
    assert_eq!(e.errors[0].field, "lines[0].location");
    assert_eq!(f.receive("RT2", &[("S9", 1, Disposition::Missing, None)]).unwrap_err().errors[0].field, "lines[0].sku");
    let cmd = ReturnCmd { id: id("RT3"), shipment_id: id("NOPE"), reason: "x".into(), lines: vec![(id("S0"), 1)] };
    assert_eq!(f.b.decide_return(&cmd, Timestamp(0)).unwrap_err().code, ErrorCode::NotFound);
}

#[derive(Debug, Clone)]
enum Op {
    Request(usize, i64),
    Receive(usize, usize, i64, usize, usize),
    InTransit(usize),
    Close(usize),
    Cancel(usize),
    /// Forgets the ended returns, as a purge with the shipment's would.
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..SKUS.len(), 1i64..4).prop_map(|(s, q)| Op::Request(s, q)),
        (0usize..5, 0..SKUS.len(), 1i64..3, 0usize..3, 0..LOCS.len()).prop_map(|(r, s, q, d, l)| Op::Receive(r, s, q, d, l)),
        (0usize..5).prop_map(Op::InTransit),
        (0usize..5).prop_map(Op::Close),
        (0usize..5).prop_map(Op::Cancel),
        Just(Op::Purge),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// Whatever the commands, a return moves stock only by its receipts, by exactly
    /// the restocked and unsellable units they name; the returns of a shipment never
    /// ask for more than it shipped; and a line never takes in more than it expects.
    #[test]
    fn returns_move_exactly_what_their_receipts_say(ops in prop::collection::vec(op(), 1..40)) {
        let mut f = Fixture::shipped();
        let mut ids: Vec<String> = Vec::new();
        let shipped = [3i64, 2];
        for (n, op) in ops.into_iter().enumerate() {
            let before: Vec<i64> = SKUS.iter().map(|s| f.units(s)).collect();
            let events = match op {
                Op::Request(s, q) => {
                    let rid = format!("RT{n}");
                    let r = f.request(&rid, &[(SKUS[s], q)]);
                    if r.is_ok() { ids.push(rid); }
                    r.unwrap_or_default()
                }
                Op::Receive(r, s, q, d, l) => match ids.get(r).cloned() {
                    None => Vec::new(),
                    Some(rid) => {
                        let disposition = [Disposition::Restock, Disposition::Unsellable, Disposition::Missing][d];
                        let loc = (disposition != Disposition::Missing).then_some(LOCS[l]);
                        f.receive(&rid, &[(SKUS[s], q, disposition, loc)]).unwrap_or_default()
                    }
                },
                Op::InTransit(r) => match ids.get(r) { None => Vec::new(), Some(rid) => { let d = f.b.decide_return_in_transit(&id(rid)); f.decided(d).unwrap_or_default() } },
                Op::Close(r) => match ids.get(r) { None => Vec::new(), Some(rid) => { let d = f.b.decide_close_return(&id(rid)); f.decided(d).unwrap_or_default() } },
                Op::Cancel(r) => match ids.get(r) { None => Vec::new(), Some(rid) => { let d = f.b.decide_cancel_return(&id(rid)); f.decided(d).unwrap_or_default() } },
                Op::Purge => {
                    let sh = id("SH1");
                    let evs = f.b.decide_return_purges(Timestamp(i64::MAX / 2), &[&sh]);
                    f.commit(evs.clone());
                    evs
                }
            };
            // The index by shipment and the open count are what a scan finds.
            prop_assert_eq!(f.b.returns.check_index(), Ok(()));
            let scanned: Vec<&Id> = f.b.returns.values().filter(|r| r.shipment_id == id("SH1") && r.status != ReturnStatus::Cancelled).map(|r| &r.id).collect();
            let indexed: Vec<&Id> = f.b.returns_of_shipment(&id("SH1")).map(|r| &r.id).collect();
            prop_assert_eq!(indexed, scanned);
            let mut taken_in: HashMap<Id, i64> = HashMap::new();
            for e in &events {
                if let Event::ReturnReceived { lines, .. } = e {
                    for l in lines.iter().filter(|l| l.disposition != Disposition::Missing) {
                        *taken_in.entry(l.sku.clone()).or_default() += l.quantity;
                    }
                }
            }
            for (i, s) in SKUS.iter().enumerate() {
                prop_assert_eq!(f.units(s) - before[i], taken_in.get(&id(s)).copied().unwrap_or(0), "{} after {:?}", s, events);
                let asked: i64 = f.b.returns_of_shipment(&id("SH1")).flat_map(|r| r.lines.iter().filter(|l| l.sku.as_str() == *s)).map(|l| l.quantity).sum();
                prop_assert!(asked <= shipped[i], "{} asked {} of {}", s, asked, shipped[i]);
            }
            for r in f.b.returns.values() {
                prop_assert!(r.lines.iter().all(|l| l.remaining() >= 0), "{:?}", r);
            }
        }
    }
}

#[test]
fn open_returns_are_bounded_and_ended_ones_purged_only_with_their_shipment() {
    let mut f = Fixture::shipped();
    f.request("RT1", &[("S0", 1)]).unwrap();
    let d = f.b.decide_cancel_return(&id("RT1"));
    f.decided(d).unwrap();
    // Past the retention, but SH1 is still kept: RT1 stays (it says what was returned).
    let later = Timestamp(f.b.returns[&id("RT1")].updated_at.0 + ENDED_RETURN_RETENTION_MS + 1);
    assert!(f.b.decide_return_purges(later, &[]).is_empty());
    assert_eq!(f.b.decide_return_purges(later, &[&id("SH1")]), vec![Event::ReturnPurged { id: id("RT1") }]);
    assert!(f.b.decide_return_purges(Timestamp(5), &[&id("SH1")]).is_empty(), "not before its retention");
    f.commit(vec![Event::ReturnPurged { id: id("RT1") }]);
    assert!(f.b.returns.get(&id("RT1")).is_none());

    // Fill the brand up to the bound (returns of another shipment, inserted directly).
    for i in f.b.returns.open()..OPEN_RETURNS_PER_BRAND_MAX {
        let rid = id(&format!("X{i}"));
        let r = Return {
            id: rid.clone(),
            shipment_id: id("SHX"),
            reason: "x".into(),
            status: ReturnStatus::Requested,
            lines: vec![ReturnLine { sku: id("S0"), quantity: 1, restocked: 0, unsellable: 0, missing: 0 }],
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        f.b.returns.insert(rid, r);
    }
    let full = f.request("RT2", &[("S0", 1)]).unwrap_err();
    assert_eq!(full.code, ErrorCode::Unprocessable);
    assert!(full.detail.contains("close or cancel some first"), "{}", full.detail);
    // One ends: there is room again.
    f.commit(vec![Event::ReturnClosed { id: id("X0") }]);
    assert_eq!(f.b.returns.open(), OPEN_RETURNS_PER_BRAND_MAX - 1);
    f.request("RT2", &[("S0", 1)]).unwrap();
    assert_eq!(f.b.returns.check_index(), Ok(()));
}
