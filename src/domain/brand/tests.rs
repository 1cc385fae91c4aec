//! Unit tests of the brand partition, and a property test of stock changes against a
//! simple model.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;
use crate::domain::event::BrandRecord;
use crate::domain::registry::{Location, LocationKind};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

fn world(locs: &[&str]) -> BTreeMap<Id, Location> {
    locs.iter()
        .map(|l| {
            let loc = Location {
                id: id(l),
                name: l.to_string(),
                kind: LocationKind::Warehouse,
                created_at: Timestamp(0),
                updated_at: Timestamp(0),
            };
            (id(l), loc)
        })
        .collect()
}

fn brand_with(skus: &[&str]) -> BrandState {
    let mut b = BrandState::new(BrandId::parse("b1").unwrap(), "B".into(), Timestamp(0));
    let mut lsn = 0;
    for s in skus {
        let (ev, _) = b.decide_put_sku(&id(s), Catalog { name: format!("name {s}").into(), ..Catalog::default() }).unwrap();
        lsn += 1;
        commit(&mut b, lsn, vec![ev]);
    }
    b
}

fn commit(b: &mut BrandState, lsn: Lsn, events: Vec<Event>) {
    let rec = BrandRecord { brand: b.id.clone(), at: Timestamp(lsn as i64), idempotency: None, events };
    b.apply(lsn, &rec).unwrap();
}

fn change(sku: &str, loc: &str, op: StockOp) -> StockChangeCmd {
    StockChangeCmd { sku: id(sku), location: id(loc), op, expected_version: None, reason: None }
}

#[test]
fn a_checked_change_names_its_own_fields_range_first() {
    let new = |op, reason: Option<&str>| StockChangeCmd::new(id("S1"), id("tsukuba"), op, Some(3), reason.map(Into::into));
    let ok = new(StockOp::Adjust { delta: -2 }, Some("棚卸し")).unwrap();
    assert_eq!((ok.op, ok.expected_version, ok.reason.as_deref()), (StockOp::Adjust { delta: -2 }, Some(3), Some("棚卸し")));
    let problems = new(StockOp::Set { on_hand: -1 }, Some("")).unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["on_hand", "reason"]);
    assert_eq!(problems[1].detail, "must be 1..=200 characters without control characters");
    assert_eq!(new(StockOp::Adjust { delta: 0 }, None).unwrap_err()[0].field, "delta");
}

#[test]
fn changes_in_one_batch_see_each_other() {
    let mut b = brand_with(&["S1"]);
    let w = world(&["tsukuba"]);
    let (events, outcomes) = b.decide_stock_changes(
        &[
            change("S1", "tsukuba", StockOp::Set { on_hand: 10 }),
            change("S1", "tsukuba", StockOp::Adjust { delta: -4 }),
            change("S1", "tsukuba", StockOp::Adjust { delta: -7 }),
            change("S1", "tsukuba", StockOp::SetSafetyStock { quantity: 2 }),
        ],
        &w,
    );
    assert_eq!(events.len(), 3);
    assert_eq!(outcomes[0], ChangeOutcome::Applied { version: 1, on_hand: 10, available: 10 });
    assert_eq!(outcomes[1], ChangeOutcome::Applied { version: 2, on_hand: 6, available: 6 });
    assert!(matches!(&outcomes[2], ChangeOutcome::Rejected(r) if r.code == ErrorCode::InsufficientStock));
    assert_eq!(outcomes[3], ChangeOutcome::Applied { version: 3, on_hand: 6, available: 4 });
    // Deciding changed nothing.
    assert_eq!(b.skus[&id("S1")].stock_version, 0);
    commit(&mut b, 10, events);
    let s = &b.skus[&id("S1")];
    assert_eq!(s.stock_version, 3);
    assert_eq!(s.levels.get(&id("tsukuba")).on_hand, 6);
}

#[test]
fn unknown_sku_location_and_stale_version_are_rejected() {
    let b = brand_with(&["S1"]);
    let w = world(&["tsukuba"]);
    let mut stale = change("S1", "tsukuba", StockOp::Adjust { delta: 1 });
    stale.expected_version = Some(7);
    let (events, outcomes) = b.decide_stock_changes(
        &[change("nope", "tsukuba", StockOp::Adjust { delta: 1 }), change("S1", "osaka", StockOp::Adjust { delta: 1 }), stale],
        &w,
    );
    assert!(events.is_empty());
    let codes: Vec<_> = outcomes
        .iter()
        .map(|o| match o {
            ChangeOutcome::Rejected(r) => r.code,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(codes, vec![ErrorCode::NotFound, ErrorCode::NotFound, ErrorCode::VersionConflict]);
}

#[test]
fn put_sku_validates_and_versions() {
    let mut b = brand_with(&[]);
    let bad = b.decide_put_sku(&id("S1"), Catalog::default()).unwrap_err();
    assert_eq!(bad.code, ErrorCode::InvalidRequest);
    assert_eq!(bad.errors[0].field, "name");
    let (ev, created) = b.decide_put_sku(&id("S1"), Catalog { name: "シャツ".into(), ..Catalog::default() }).unwrap();
    assert!(created);
    commit(&mut b, 1, vec![ev]);
    let (ev, created) = b.decide_put_sku(&id("S1"), Catalog { name: "シャツ 2".into(), ..Catalog::default() }).unwrap();
    assert!(!created);
    assert!(matches!(ev, Event::SkuUpserted { version: 2, .. }));
}

#[test]
fn apply_refuses_records_that_do_not_fit() {
    let mut b = brand_with(&["S1"]);
    let bad = Event::StockChanged {
        sku: id("S1"),
        version: 5,
        levels: Levels::default(),
        channels: Vec::new(),
        cause: Cause::Change { op: StockOp::Adjust { delta: 1 }, reason: None },
    };
    let rec = BrandRecord { brand: b.id.clone(), at: Timestamp(0), idempotency: None, events: vec![bad] };
    assert!(b.apply(100, &rec).unwrap_err().contains("does not follow"));
    let rec = BrandRecord { brand: b.id.clone(), at: Timestamp(0), idempotency: None, events: vec![] };
    assert!(b.apply(1, &rec).unwrap_err().contains("not after"));
}

// ---------------------------------------------------------------- property test

#[derive(Debug, Clone)]
struct ModelCmd {
    sku: usize,
    loc: usize,
    op: StockOp,
    expect: Option<u64>,
}

fn op_strategy() -> impl Strategy<Value = StockOp> {
    prop_oneof![
        (-20i64..20).prop_map(|delta| StockOp::Adjust { delta }),
        (0i64..30).prop_map(|on_hand| StockOp::Set { on_hand }),
        (0i64..5).prop_map(|quantity| StockOp::SetSafetyStock { quantity }),
        (1i64..10).prop_map(|quantity| StockOp::MarkUnsellable { quantity }),
        (1i64..10).prop_map(|quantity| StockOp::ReleaseUnsellable { quantity }),
        (1i64..10).prop_map(|quantity| StockOp::Dispose { quantity }),
    ]
}

fn cmd_strategy() -> impl Strategy<Value = ModelCmd> {
    (0usize..4, 0usize..3, op_strategy(), prop::option::of(0u64..6)).prop_map(|(sku, loc, op, expect)| ModelCmd { sku, loc, op, expect })
}

/// The model: plain integers per (sku, location), checked by hand-written rules.
#[derive(Default)]
struct Model {
    on_hand: HashMap<(usize, usize), i64>,
    unsellable: HashMap<(usize, usize), i64>,
    safety: HashMap<(usize, usize), i64>,
    version: HashMap<usize, u64>,
}

const SKUS: [&str; 4] = ["S0", "S1", "S2", "ghost"];
const LOCS: [&str; 3] = ["L0", "L1", "nowhere"];

impl Model {
    /// Returns whether the change applies, updating the model if so.
    fn step(&mut self, c: &ModelCmd) -> bool {
        if c.sku == 3 || c.loc == 2 {
            return false;
        }
        let v = self.version.entry(c.sku).or_default();
        if c.expect.is_some_and(|e| e != *v) {
            return false;
        }
        let oh = self.on_hand.entry((c.sku, c.loc)).or_default();
        let un = self.unsellable.entry((c.sku, c.loc)).or_default();
        match c.op {
            StockOp::Adjust { delta } if *oh + delta < 0 => return false,
            StockOp::Adjust { delta } => *oh += delta,
            StockOp::Set { on_hand } => *oh = on_hand,
            StockOp::SetSafetyStock { quantity } => {
                self.safety.insert((c.sku, c.loc), quantity);
            }
            // Nothing is reserved here: only on_hand itself bounds what can be marked.
            StockOp::MarkUnsellable { quantity } if quantity > *oh => return false,
            StockOp::MarkUnsellable { quantity } => (*oh, *un) = (*oh - quantity, *un + quantity),
            StockOp::ReleaseUnsellable { quantity } | StockOp::Dispose { quantity } if quantity > *un => return false,
            StockOp::ReleaseUnsellable { quantity } => (*oh, *un) = (*oh + quantity, *un - quantity),
            StockOp::Dispose { quantity } => *un -= quantity,
        }
        *v += 1;
        true
    }
}

proptest! {
    #[test]
    fn stock_changes_match_the_model(batches in prop::collection::vec(prop::collection::vec(cmd_strategy(), 1..8), 1..20)) {
        let mut b = brand_with(&SKUS[..3]);
        let w = world(&LOCS[..2]);
        let mut model = Model::default();
        let mut lsn = 100;
        for batch in batches {
            let cmds: Vec<_> = batch.iter().map(|c| StockChangeCmd {
                sku: id(SKUS[c.sku]), location: id(LOCS[c.loc]), op: c.op, expected_version: c.expect, reason: None,
            }).collect();
            let (events, outcomes) = b.decide_stock_changes(&cmds, &w);
            // The shard writes these after this check alone (no preview): it must pass
            // for every decision, as `apply` below must succeed.
            prop_assert_eq!(b.check_bulk_events(&events), Ok(()));
            for (c, o) in batch.iter().zip(&outcomes) {
                let applied = model.step(c);
                prop_assert_eq!(applied, matches!(o, ChangeOutcome::Applied { .. }), "cmd {:?} outcome {:?}", c, o);
            }
            lsn += 1;
            commit(&mut b, lsn, events);
            for (si, s) in SKUS[..3].iter().enumerate() {
                let st = &b.skus[&id(s)];
                prop_assert_eq!(st.stock_version, model.version.get(&si).copied().unwrap_or(0));
                for (li, l) in LOCS[..2].iter().enumerate() {
                    let level = st.levels.get(&id(l));
                    prop_assert!(level.check().is_ok());
                    prop_assert!(level.available() >= 0);
                    prop_assert_eq!(level.on_hand, model.on_hand.get(&(si, li)).copied().unwrap_or(0));
                    prop_assert_eq!(level.unsellable, model.unsellable.get(&(si, li)).copied().unwrap_or(0));
                    prop_assert_eq!(level.safety_stock, model.safety.get(&(si, li)).copied().unwrap_or(0));
                }
            }
        }
    }
}

/// A million SKUs pay for every byte of the record: it must stay in jemalloc's
/// 224-byte size class (the next one is 256).
#[test]
fn a_sku_record_fits_the_224_byte_allocation_class() {
    assert!(std::mem::size_of::<SkuState>() <= 224, "SkuState is {} bytes", std::mem::size_of::<SkuState>());
}
