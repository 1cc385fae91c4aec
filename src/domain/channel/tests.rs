//! Channels and inbound stock: unit tests and a property test of random operations.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;
use crate::domain::brand::StockChangeCmd;
use crate::domain::catalog::Catalog;
use crate::domain::event::BrandRecord;
use crate::domain::fulfilment::{LineRequest, ReserveCmd};
use crate::domain::stock::StockOp;
use crate::domain::BrandId;
use crate::domain::Lsn;

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

struct F {
    b: BrandState,
    lsn: Lsn,
    now: Timestamp,
    /// Every StockChanged seen, for checking its channel figures.
    seen: Vec<Event>,
}

impl F {
    fn new(skus: &[&str]) -> F {
        let mut f = F {
            b: BrandState::new(BrandId::parse("b").unwrap(), "B".into(), Timestamp(0)),
            lsn: 0,
            now: Timestamp(1000),
            seen: Vec::new(),
        };
        for s in skus {
            let (ev, _) = f.b.decide_put_sku(&id(s), Catalog { name: "x".into(), ..Catalog::default() }).unwrap();
            f.commit(vec![ev]);
        }
        f
    }

    fn commit(&mut self, events: Vec<Event>) {
        self.lsn += 1;
        for e in &events {
            if let Event::StockChanged { levels, channels, .. } = e {
                // The figures carried for consumers are the formula under the current configuration.
                assert_eq!(channels, &self.b.channel_view(levels));
                assert!(channels.iter().all(|(_, a)| *a >= 0));
            }
        }
        self.seen.extend(events.iter().filter(|e| matches!(e, Event::StockChanged { .. })).cloned());
        let rec = BrandRecord { brand: self.b.id.clone(), at: self.now, idempotency: None, events };
        self.b.apply(self.lsn, &rec).unwrap();
    }

    fn set(&mut self, sku: &str, loc: &str, on_hand: i64) {
        let locs: BTreeMap<Id, crate::domain::registry::Location> = LOCS
            .iter()
            .map(|l| {
                let loc = crate::domain::registry::Location {
                    id: id(l),
                    name: l.to_string(),
                    kind: crate::domain::registry::LocationKind::Warehouse,
                    created_at: Timestamp(0),
                    updated_at: Timestamp(0),
                };
                (id(l), loc)
            })
            .collect();
        let cmd = StockChangeCmd { sku: id(sku), location: id(loc), op: StockOp::Set { on_hand }, expected_version: None, reason: None };
        let (evs, _) = self.b.decide_stock_changes(&[cmd], &locs);
        self.commit(evs);
    }

    fn put_channel(&mut self, c: &str, locations: Option<Vec<&str>>, buffer: i64) {
        let cmd = ChannelCmd { id: id(c), name: c.into(), locations: locations.map(|l| l.into_iter().map(id).collect()), buffer };
        let (ev, _) = self.b.decide_put_channel(cmd, |_| true, self.now).unwrap();
        self.commit(vec![ev]);
    }

    /// Runs every pending channel sync to its end; returns the SKUs it reported.
    fn finish_syncs(&mut self) -> Vec<(Id, i64)> {
        let mut out = Vec::new();
        while let Some(ev) = self.b.decide_channel_sync() {
            if let Event::ChannelSynced { skus, .. } = &ev {
                out.extend(skus.iter().cloned());
            }
            self.commit(vec![ev]);
        }
        out
    }

    fn decided(&mut self, d: Result<Decision, Rejection>) -> Result<(), Rejection> {
        if let Decision::Apply(evs) = d? {
            self.commit(evs);
        }
        Ok(())
    }
}

const LOCS: [&str; 3] = ["L0", "L1", "L2"];

#[test]
fn channel_available_is_the_formula() {
    let mut f = F::new(&["S1"]);
    f.set("S1", "L0", 5);
    f.set("S1", "L1", 3);
    f.set("S1", "L2", 10);
    f.put_channel("zozotown", Some(vec!["L0", "L1"]), 2);
    f.put_channel("store", Some(vec!["L2"]), 0);
    let s = &f.b.skus[&id("S1")];
    assert_eq!(f.b.channel_view(&s.levels), vec![(id("store"), 10), (id("zozotown"), 6)]);
    assert_eq!(channel_available(None, &s.levels), 18, "an unconfigured channel sells everything");
    f.put_channel("zozotown", Some(vec!["L0", "L1"]), 100);
    assert_eq!(f.b.channel_view(&f.b.skus[&id("S1")].levels)[1], (id("zozotown"), 0), "never negative");
}

#[test]
fn a_channel_cannot_take_what_its_buffer_or_locations_hold_back() {
    let mut f = F::new(&["S1"]);
    f.set("S1", "L0", 5);
    f.set("S1", "L2", 4);
    f.put_channel("zozotown", Some(vec!["L0"]), 2);
    let reserve = |f: &mut F, rid: &str, q: i64| {
        let cmd = ReserveCmd {
            id: id(rid),
            channel: id("zozotown"),
            ttl_seconds: 60,
            lines: vec![LineRequest { sku: id("S1"), location: None, quantity: q }],
        };
        let scope = f.b.scope_for(Some(&id("zozotown")));
        let d = f.b.decide_reserve(&cmd, &scope, f.now);
        f.decided(d)
    };
    let err = reserve(&mut f, "R1", 4).unwrap_err();
    assert_eq!(err.shortages[0].available, 3);
    reserve(&mut f, "R2", 3).unwrap();
    assert!(f.b.reservations[&id("R2")].lines.iter().all(|a| a.location.as_str() == "L0"));
    assert!(reserve(&mut f, "R3", 1).is_err(), "the buffer of 2 stays");
}

#[test]
fn a_channel_not_configured_is_refused_only_once_the_brand_has_channels() {
    let mut f = F::new(&["S1"]);
    f.set("S1", "L0", 5);
    f.set("S1", "L2", 5);
    let reserve = |f: &mut F, rid: &str, channel: &str| {
        let cmd = ReserveCmd {
            id: id(rid),
            channel: id(channel),
            ttl_seconds: 60,
            lines: vec![LineRequest { sku: id("S1"), location: None, quantity: 1 }],
        };
        let scope = f.b.scope_for(Some(&id(channel)));
        let d = f.b.decide_reserve(&cmd, &scope, f.now);
        f.decided(d)
    };
    reserve(&mut f, "R1", "anything").expect("no channels yet: any name sells from everywhere");
    f.put_channel("zozotown", Some(vec!["L0"]), 2);
    let err = reserve(&mut f, "R2", "zozotwon").unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownChannel);
    assert!(err.detail.contains("use one of zozotown"), "{}", err.detail);
    reserve(&mut f, "R3", "zozotown").unwrap();
    let cmd = ReserveCmd {
        id: id("R1"),
        channel: id("anything"),
        ttl_seconds: 60,
        lines: vec![LineRequest { sku: id("S1"), location: None, quantity: 1 }],
    };
    assert_eq!(
        f.b.decide_reserve(&cmd, &Scope::default(), f.now).unwrap(),
        Decision::Unchanged,
        "a retry of a reservation made before still answers it"
    );
    for n in 0..12 {
        f.put_channel(&format!("c{n:02}"), None, 0);
    }
    let err = reserve(&mut f, "R4", "nope").unwrap_err();
    assert!(err.detail.contains("c09, …"), "ten names listed: {}", err.detail);
}

#[test]
fn reconfiguring_streams_the_changed_skus_in_chunks() {
    let names: Vec<String> = (0..2500).map(|i| format!("S{i:05}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut f = F::new(&refs);
    for (i, n) in names.iter().enumerate() {
        if i % 2 == 0 {
            f.set(n, "L1", 4);
        }
    }
    f.put_channel("zozotown", None, 0);
    let first = f.finish_syncs();
    assert_eq!(first.len(), 2500, "a new channel reports every SKU");
    // Dropping L1 from the channel changes exactly the SKUs stocked there.
    f.put_channel("zozotown", Some(vec!["L0"]), 0);
    let mut steps = 0;
    let mut changed = Vec::new();
    while let Some(ev) = f.b.decide_channel_sync() {
        steps += 1;
        if let Event::ChannelSynced { skus, .. } = &ev {
            changed.extend(skus.iter().cloned());
        }
        f.commit(vec![ev]);
    }
    assert_eq!(steps, 3, "2500 SKUs in chunks of {SYNC_CHUNK_SKUS}");
    assert_eq!(changed.len(), 1250);
    assert!(changed.iter().all(|(_, a)| *a == 0));
    assert!(f.b.channel_syncs.is_empty());
}

#[test]
fn a_sync_step_stops_at_the_sku_that_would_not_fit_and_the_next_step_starts_there() {
    use crate::domain::event::encoded_len;
    let names: Vec<String> = (0..300).map(|i| format!("{}{i:03}", "S".repeat(125))).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut f = F::new(&refs);
    f.put_channel("zozotown", None, 0);
    let budget = 10_000;
    let mut reported = Vec::new();
    let mut steps = 0;
    while let Some(ev) = f.b.decide_channel_sync_within(budget) {
        assert!(encoded_len(&ev) <= budget, "a step of {} bytes", encoded_len(&ev));
        if let Event::ChannelSynced { skus, .. } = &ev {
            assert!(!skus.is_empty(), "every step makes progress");
            reported.extend(skus.iter().map(|(s, _)| s.clone()));
        }
        steps += 1;
        f.commit(vec![ev]);
    }
    assert_eq!(reported, refs.iter().map(|s| id(s)).collect::<Vec<_>>(), "every SKU once, in order");
    assert!(steps >= 300 * 130 / budget, "{steps} steps");
    assert!(f.b.channel_syncs.is_empty());
}

#[test]
fn inbound_receipts_move_incoming_to_on_hand() {
    let mut f = F::new(&["S1", "S2"]);
    let cmd = InboundCmd { id: id("IN-1"), location: id("L0"), expected_at: None, lines: vec![(id("S1"), 50), (id("S2"), 5)] };
    let d = f.b.decide_inbound(&cmd, f.now);
    f.decided(d).unwrap();
    assert_eq!(f.b.skus[&id("S1")].levels.get(&id("L0")).incoming, 50);
    assert!(matches!(f.b.decide_inbound(&cmd, f.now), Ok(Decision::Unchanged)));
    let d = f.b.decide_receipt(&id("IN-1"), &[(id("S1"), 20)]);
    f.decided(d).unwrap();
    let l = f.b.skus[&id("S1")].levels.get(&id("L0"));
    assert_eq!((l.on_hand, l.incoming), (20, 30));
    // Over-receipt: 40 arrive for the 30 still expected.
    let d = f.b.decide_receipt(&id("IN-1"), &[(id("S1"), 40)]);
    f.decided(d).unwrap();
    let l = f.b.skus[&id("S1")].levels.get(&id("L0"));
    assert_eq!((l.on_hand, l.incoming), (60, 0));
    assert_eq!(f.b.inbounds[&id("IN-1")].lines[0].received, 60);
    assert_eq!(f.b.decide_receipt(&id("IN-1"), &[(id("S9"), 1)]).unwrap_err().code, crate::domain::ErrorCode::InvalidRequest);
    let d = f.b.decide_close_inbound(&id("IN-1"));
    f.decided(d).unwrap();
    assert_eq!(f.b.skus[&id("S2")].levels.get(&id("L0")).incoming, 0, "closing drops what did not come");
    assert_eq!(f.b.inbounds[&id("IN-1")].status, InboundStatus::Closed);
    assert!(f.b.decide_receipt(&id("IN-1"), &[(id("S1"), 1)]).is_err());
}

// ---------------------------------------------------------------- property test

#[derive(Debug, Clone)]
enum Op {
    Set(usize, usize, i64),
    Channel(usize, Option<Vec<usize>>, i64),
    Reserve(usize, usize, i64),
    Inbound(usize, usize, i64),
    Receive(usize, i64),
    Close(usize),
}

const CHANNELS: [&str; 2] = ["zozotown", "brand_ec"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..3, 0usize..3, 0i64..10).prop_map(|(s, l, q)| Op::Set(s, l, q)),
        (0usize..2, prop::option::of(prop::collection::btree_set(0usize..3, 1..3)), 0i64..4).prop_map(|(c, l, b)| Op::Channel(
            c,
            l.map(|s| s.into_iter().collect()),
            b
        )),
        (0usize..2, 0usize..3, 1i64..5).prop_map(|(c, s, q)| Op::Reserve(c, s, q)),
        (0usize..3, 0usize..3, 1i64..8).prop_map(|(s, l, q)| Op::Inbound(s, l, q)),
        (0usize..6, 1i64..8).prop_map(|(i, q)| Op::Receive(i, q)),
        (0usize..6).prop_map(Op::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn channel_availability_is_always_the_formula_and_never_oversold(ops in prop::collection::vec(op(), 1..50)) {
        let skus = ["S0", "S1", "S2"];
        let mut f = F::new(&skus);
        let mut inbounds: Vec<(String, usize)> = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Set(s, l, q) => f.set(skus[*s], LOCS[*l], (*q).max(f.b.skus[&id(skus[*s])].levels.get(&id(LOCS[*l])).reserved)),
                Op::Channel(c, locs, buffer) => {
                    f.put_channel(CHANNELS[*c], locs.as_ref().map(|l| l.iter().map(|i| LOCS[*i]).collect()), *buffer);
                    f.finish_syncs();
                }
                Op::Reserve(c, s, q) => {
                    let ch = id(CHANNELS[*c]);
                    let before = channel_available(f.b.channels.get(&ch), &f.b.skus[&id(skus[*s])].levels);
                    let cmd = ReserveCmd { id: id(&format!("R{n}")), channel: ch.clone(), ttl_seconds: 60, lines: vec![LineRequest { sku: id(skus[*s]), location: None, quantity: *q }] };
                    let scope = f.b.scope_for(Some(&ch));
                    let d = f.b.decide_reserve(&cmd, &scope, f.now);
                    let known = f.b.channels.is_empty() || f.b.channels.contains_key(&ch);
                    let result = f.decided(d);
                    let ok = result.is_ok();
                    prop_assert_eq!(ok, known && *q <= before, "channel {} had {} for {}", ch, before, q);
                    if !known {
                        prop_assert_eq!(result.unwrap_err().code, ErrorCode::UnknownChannel);
                    }
                    if ok {
                        let r = &f.b.reservations[&id(&format!("R{n}"))];
                        if let Some(c) = f.b.channels.get(&ch) {
                            prop_assert!(r.lines.iter().all(|a| c.locations.as_ref().is_none_or(|ls| ls.contains(&a.location))));
                        }
                    }
                }
                Op::Inbound(s, l, q) => {
                    let iid = format!("IN{n}");
                    let cmd = InboundCmd { id: id(&iid), location: id(LOCS[*l]), expected_at: None, lines: vec![(id(skus[*s]), *q)] };
                    let d = f.b.decide_inbound(&cmd, f.now);
                    f.decided(d).unwrap();
                    inbounds.push((iid, *s));
                }
                Op::Receive(i, q) => {
                    if let Some((iid, s)) = inbounds.get(*i).cloned() {
                        let d = f.b.decide_receipt(&id(&iid), &[(id(skus[s]), *q)]);
                        let _ = f.decided(d);
                    }
                }
                Op::Close(i) => {
                    if let Some((iid, _)) = inbounds.get(*i).cloned() {
                        let d = f.b.decide_close_inbound(&id(&iid));
                        let _ = f.decided(d);
                    }
                }
            }
            // incoming equals what open inbounds still expect.
            let mut expected: HashMap<(Id, Id), i64> = HashMap::new();
            for ib in f.b.inbounds.values().filter(|i| i.status != InboundStatus::Closed) {
                for l in &ib.lines {
                    *expected.entry((l.sku.clone(), ib.location.clone())).or_default() += l.remaining();
                }
            }
            for s in skus {
                for l in LOCS {
                    let lvl = f.b.skus[&id(s)].levels.get(&id(l));
                    prop_assert!(lvl.check().is_ok());
                    prop_assert_eq!(lvl.incoming, expected.get(&(id(s), id(l))).copied().unwrap_or(0));
                }
            }
        }
        prop_assert!(!f.seen.is_empty() || ops.iter().all(|o| !matches!(o, Op::Set(..) | Op::Inbound(..))));
    }
}
