//! Stock accounting: after a write scenario, for every SKU and location,
//! `final on_hand == initial + sum of the deltas the server acknowledged`, and
//! `final reserved == initial + the quantities of acknowledged reservations not yet
//! released`, with `reserved <= on_hand` (no oversell). Reservations still held at the
//! end are then released ([`release_outstanding`]) and `reserved` must be back where
//! it started.
//!
//! A delta counts when its request got a 2xx and its own result says `applied`.
//! 429/503 (and other 4xx) answers changed nothing, by contract. A request whose
//! answer never came (connection error) or was a 5xx other than 503 has an unknown
//! outcome: its deltas are kept aside, and a difference they can explain is reported
//! as such rather than as a failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::client::write_request;
use super::fixture::{bulk, Fixture};

/// One planned change of on_hand at a stock slot (see [`Fixture::slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedChange {
    pub slot: u32,
    pub delta: i64,
}

/// What a request does to stock, so its answer can be accounted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A read, or a write the accounting does not follow.
    None,
    /// `POST .../stock/changes`: one entry per change, in request order.
    StockChanges(Vec<PlannedChange>),
    /// `POST .../reservations` with every line at a given location: `delta` of each
    /// line is the quantity that `reserved` of its slot grows by.
    Reserve(Hold),
    /// `POST .../reservations/{id}/release` of a reservation planned by a `Reserve`.
    Release { brand: usize, id: String },
}

/// A reservation as planned: its brand (fixture index), id and lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub brand: usize,
    pub id: String,
    pub lines: Vec<PlannedChange>,
}

/// How one answer was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    /// Changes the server says it applied.
    pub applied: u64,
    /// Changes it rejected one by one (e.g. insufficient stock) in a 2xx answer.
    pub rejected: u64,
}

/// Acknowledged deltas per slot, shared by every connection of a run.
pub struct Ledger {
    acked: Vec<AtomicI64>,
    /// Sum of |delta| of changes whose outcome is unknown, per slot.
    unknown_abs: Vec<AtomicI64>,
    pub unknown_requests: AtomicU64,
    /// `reserved` held by acknowledged, not yet released reservations, per slot.
    held: Vec<AtomicI64>,
    /// Quantities of reservations (or releases) whose outcome is unknown, per slot.
    unknown_held: Vec<AtomicI64>,
    /// Reservations acknowledged and not released, by id.
    active: Mutex<HashMap<String, Hold>>,
    /// Reservations that may exist: their create or release got no answer.
    unsure: Mutex<HashMap<String, Hold>>,
}

#[derive(Debug, Deserialize)]
struct ResultsBody<'a> {
    #[serde(borrow)]
    results: Vec<ResultStatus<'a>>,
}

#[derive(Debug, Deserialize)]
struct ResultStatus<'a> {
    status: &'a str,
}

/// The `applied` flag of each result of a `stock/changes` answer.
pub fn applied_flags(body: &[u8]) -> anyhow::Result<Vec<bool>> {
    let parsed: ResultsBody<'_> = serde_json::from_slice(body).context("stock/changes answer without results")?;
    Ok(parsed.results.iter().map(|r| r.status == "applied").collect())
}

impl Ledger {
    pub fn new(slots: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            acked: (0..slots).map(|_| AtomicI64::new(0)).collect(),
            unknown_abs: (0..slots).map(|_| AtomicI64::new(0)).collect(),
            unknown_requests: AtomicU64::new(0),
            held: (0..slots).map(|_| AtomicI64::new(0)).collect(),
            unknown_held: (0..slots).map(|_| AtomicI64::new(0)).collect(),
            active: Mutex::new(HashMap::new()),
            unsure: Mutex::new(HashMap::new()),
        })
    }

    fn unknown_hold(&self, hold: Hold) {
        self.unknown_requests.fetch_add(1, Ordering::Relaxed);
        for c in &hold.lines {
            self.unknown_held[c.slot as usize].fetch_add(c.delta.abs(), Ordering::Relaxed);
        }
        self.unsure.lock().expect("ledger lock").insert(hold.id.clone(), hold);
    }

    fn settle_reserve(&self, hold: &Hold, answer: Option<(u16, &[u8])>) -> anyhow::Result<Settled> {
        match answer {
            Some((status, body)) if (200..300).contains(&status) => {
                let held = held_quantities(body)?;
                let planned: Vec<(u32, i64)> = hold.lines.iter().map(|c| (c.slot, c.delta)).collect();
                anyhow::ensure!(
                    held.len() == planned.len() && held.iter().sum::<i64>() == planned.iter().map(|p| p.1).sum::<i64>(),
                    "reservation {} holds {held:?}, planned {planned:?}",
                    hold.id
                );
                for c in &hold.lines {
                    self.held[c.slot as usize].fetch_add(c.delta, Ordering::Relaxed);
                }
                self.active.lock().expect("ledger lock").insert(hold.id.clone(), hold.clone());
                Ok(Settled { applied: 1, rejected: 0 })
            }
            Some((status, _)) if status < 500 || status == 503 => Ok(Settled::default()),
            _ => {
                self.unknown_hold(hold.clone());
                Ok(Settled::default())
            }
        }
    }

    fn settle_release(&self, id: &str, answer: Option<(u16, &[u8])>) -> Settled {
        match answer {
            Some((status, _)) if (200..300).contains(&status) => {
                if let Some(hold) = self.active.lock().expect("ledger lock").remove(id) {
                    for c in &hold.lines {
                        self.held[c.slot as usize].fetch_sub(c.delta, Ordering::Relaxed);
                    }
                }
                // A reservation whose create had no answer did exist and is gone now:
                // it no longer needs releasing (its quantities stay as slack).
                self.unsure.lock().expect("ledger lock").remove(id);
                Settled { applied: 1, rejected: 0 }
            }
            // 404 (the create was refused), 409 (already released), 429/503: nothing
            // changed, and a still active reservation is released at the end.
            Some((status, _)) if status < 500 || status == 503 => Settled::default(),
            _ => {
                let hold = self.active.lock().expect("ledger lock").remove(id);
                if let Some(hold) = hold {
                    // Its quantities stay counted in `held`; whether they are still
                    // reserved is unknown.
                    self.unknown_hold(hold);
                } else {
                    self.unknown_requests.fetch_add(1, Ordering::Relaxed);
                }
                Settled::default()
            }
        }
    }

    /// Reservations that may still be held: the acknowledged ones not released, and
    /// those with an unknown outcome.
    pub fn outstanding(&self) -> Vec<Hold> {
        let mut out: Vec<Hold> = self.active.lock().expect("ledger lock").values().cloned().collect();
        out.extend(self.unsure.lock().expect("ledger lock").values().cloned());
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Accounts for an answer (`None`: no answer came).
    pub fn settle(&self, effect: &Effect, answer: Option<(u16, &[u8])>) -> anyhow::Result<Settled> {
        let changes = match effect {
            Effect::None => return Ok(Settled::default()),
            Effect::Reserve(hold) => return self.settle_reserve(hold, answer),
            Effect::Release { id, .. } => return Ok(self.settle_release(id, answer)),
            Effect::StockChanges(changes) => changes,
        };
        match answer {
            Some((status, body)) if (200..300).contains(&status) => {
                let flags = applied_flags(body)?;
                anyhow::ensure!(flags.len() == changes.len(), "{} results for {} changes", flags.len(), changes.len());
                let mut s = Settled::default();
                for (c, applied) in changes.iter().zip(flags) {
                    if applied {
                        self.acked[c.slot as usize].fetch_add(c.delta, Ordering::Relaxed);
                        s.applied += 1;
                    } else {
                        s.rejected += 1;
                    }
                }
                Ok(s)
            }
            Some((status, _)) if status < 500 || status == 503 => Ok(Settled::default()),
            _ => {
                self.unknown_requests.fetch_add(1, Ordering::Relaxed);
                for c in changes {
                    self.unknown_abs[c.slot as usize].fetch_add(c.delta.abs(), Ordering::Relaxed);
                }
                Ok(Settled::default())
            }
        }
    }

    /// Compares the stock before and after against the acknowledged deltas and holds.
    pub fn check(&self, initial: &StockTable, last: &StockTable) -> StockCheck {
        let mut out = StockCheck {
            slots: initial.on_hand.len() as u64,
            unknown_requests: self.unknown_requests.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (slot, (&before, &after)) in initial.reserved.iter().zip(&last.reserved).enumerate() {
            if after > last.on_hand[slot] {
                out.oversold += 1;
                if out.examples.len() < 10 {
                    out.examples.push(Mismatch { slot: slot as u64, initial: before, expected: last.on_hand[slot], actual: after });
                }
            }
            let expected = before + self.held[slot].load(Ordering::Relaxed);
            if after == expected || (after - expected).abs() <= self.unknown_held[slot].load(Ordering::Relaxed) {
                continue;
            }
            out.reserved_mismatches += 1;
            if out.examples.len() < 10 {
                out.examples.push(Mismatch { slot: slot as u64, initial: before, expected, actual: after });
            }
        }
        for (slot, (&before, &after)) in initial.on_hand.iter().zip(&last.on_hand).enumerate() {
            let expected = before + self.acked[slot].load(Ordering::Relaxed);
            if after == expected {
                continue;
            }
            if (after - expected).abs() <= self.unknown_abs[slot].load(Ordering::Relaxed) {
                out.explained_by_unknown += 1;
                continue;
            }
            out.mismatches += 1;
            if out.examples.len() < 10 {
                out.examples.push(Mismatch { slot: slot as u64, initial: before, expected, actual: after });
            }
        }
        out
    }
}

/// The verdict of [`Ledger::check`]. `examples` lists on_hand and reserved
/// mismatches alike (an oversold slot shows on_hand as `expected`, reserved as `actual`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StockCheck {
    pub slots: u64,
    /// Slots whose on_hand differs from initial + acknowledged deltas.
    pub mismatches: u64,
    /// Slots whose reserved differs from initial + acknowledged, unreleased holds.
    pub reserved_mismatches: u64,
    /// Slots with reserved > on_hand.
    pub oversold: u64,
    /// Reservations released after the run, and slots whose reserved was not back at
    /// its initial value after that (`None`: the scenario holds nothing).
    pub released_after: Option<u64>,
    pub reserved_not_restored: Option<u64>,
    /// Slots off by no more than the deltas of requests with an unknown outcome.
    pub explained_by_unknown: u64,
    pub unknown_requests: u64,
    pub examples: Vec<Mismatch>,
}

impl StockCheck {
    pub fn ok(&self) -> bool {
        self.mismatches == 0 && self.reserved_mismatches == 0 && self.oversold == 0 && self.reserved_not_restored.unwrap_or(0) == 0
    }

    /// Records the release of what was outstanding: `reserved` must be back at its
    /// initial value everywhere (every reservation of the run is gone).
    pub fn check_restored(&mut self, released: u64, initial: &StockTable, after: &StockTable) {
        let bad = initial.reserved.iter().zip(&after.reserved).filter(|(a, b)| a != b).count() as u64;
        self.released_after = Some(released);
        self.reserved_not_restored = Some(bad);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub slot: u64,
    pub initial: i64,
    pub expected: i64,
    pub actual: i64,
}

/// The quantities of each line of a reservation answer (`{"lines":[{"quantity"}]}`).
pub fn held_quantities(body: &[u8]) -> anyhow::Result<Vec<i64>> {
    let v: serde_json::Value = serde_json::from_slice(body).context("reservation answer is not JSON")?;
    let lines = v["lines"].as_array().context("reservation answer without lines")?;
    lines.iter().map(|l| l["quantity"].as_i64().context("reservation line without quantity")).collect()
}

/// on_hand and reserved of every slot, in slot order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockTable {
    pub on_hand: Vec<i64>,
    pub reserved: Vec<i64>,
}

/// (on_hand, reserved) of every location in a `GET .../stock` answer, in fixture order.
pub fn stock_by_location(body: &[u8], locations: &[String]) -> anyhow::Result<Vec<(i64, i64)>> {
    let v: serde_json::Value = serde_json::from_slice(body).context("stock answer is not JSON")?;
    let q = |l: &String, k: &str| v["locations"][l][k].as_i64().unwrap_or(0);
    Ok(locations.iter().map(|l| (q(l, "on_hand"), q(l, "reserved"))).collect())
}

/// Reads on_hand and reserved of every slot of the fixture (one GET per SKU).
pub async fn read_stock(fx: &Arc<Fixture>, concurrency: usize) -> anyhow::Result<StockTable> {
    let table: Arc<Vec<AtomicI64>> = Arc::new((0..2 * fx.slots()).map(|_| AtomicI64::new(0)).collect());
    let make_fx = fx.clone();
    let make = move |i: usize, out: &mut Vec<u8>| {
        let brand = &make_fx.brands[i / make_fx.skus_per_brand];
        let path = format!("/v1/brands/{}/skus/{}/stock", brand.id, Fixture::sku_id(i % make_fx.skus_per_brand));
        write_request(out, "GET", &path, &make_fx.addr, &[("Authorization", &format!("Bearer {}", brand.token))], b"");
    };
    let (check_fx, check_table) = (fx.clone(), table.clone());
    let check = move |i: usize, status: u16, body: &[u8]| {
        anyhow::ensure!(status == 200, "GET stock: status {status} ({})", String::from_utf8_lossy(body));
        let (locs, slots) = (check_fx.locations.len(), check_fx.slots());
        for (l, (on_hand, reserved)) in stock_by_location(body, &check_fx.locations)?.into_iter().enumerate() {
            check_table[i * locs + l].store(on_hand, Ordering::Relaxed);
            check_table[slots + i * locs + l].store(reserved, Ordering::Relaxed);
        }
        Ok(())
    };
    bulk(&fx.addr, concurrency, fx.total_skus(), "read", make, check).await?;
    let all: Vec<i64> = table.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let (on_hand, reserved) = all.split_at(fx.slots());
    Ok(StockTable { on_hand: on_hand.to_vec(), reserved: reserved.to_vec() })
}

/// Releases every reservation the ledger says may still be held (200, or 404/409 when
/// it was never created or is already released). Returns how many were released.
pub async fn release_outstanding(fx: &Arc<Fixture>, ledger: &Ledger, concurrency: usize) -> anyhow::Result<u64> {
    let holds = Arc::new(ledger.outstanding());
    if holds.is_empty() {
        return Ok(0);
    }
    let released = Arc::new(AtomicU64::new(0));
    let (make_fx, make_holds) = (fx.clone(), holds.clone());
    let make = move |i: usize, out: &mut Vec<u8>| {
        let h = &make_holds[i];
        let brand = &make_fx.brands[h.brand];
        let path = format!("/v1/brands/{}/reservations/{}/release", brand.id, h.id);
        write_request(out, "POST", &path, &make_fx.addr, &[("Authorization", &format!("Bearer {}", brand.token))], b"");
    };
    let counted = released.clone();
    let check = move |_: usize, status: u16, body: &[u8]| match status {
        200 => {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        404 | 409 => Ok(()),
        _ => anyhow::bail!("release: status {status} ({})", String::from_utf8_lossy(body)),
    };
    bulk(&fx.addr, concurrency, holds.len(), "release", make, check).await?;
    Ok(released.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_hand(v: &[i64]) -> StockTable {
        StockTable { on_hand: v.to_vec(), reserved: vec![0; v.len()] }
    }

    fn table(on_hand: &[i64], reserved: &[i64]) -> StockTable {
        StockTable { on_hand: on_hand.to_vec(), reserved: reserved.to_vec() }
    }

    fn hold(id: &str, list: &[(u32, i64)]) -> Hold {
        Hold { brand: 0, id: id.into(), lines: list.iter().map(|&(slot, delta)| PlannedChange { slot, delta }).collect() }
    }

    const HELD_TWO: &[u8] =
        br#"{"id":"r","status":"active","lines":[{"sku":"S1","location":"a","quantity":2},{"sku":"S2","location":"a","quantity":1}]}"#;

    #[test]
    fn reservations_count_in_reserved_until_released() {
        let l = Ledger::new(3);
        let r1 = Effect::Reserve(hold("r1", &[(0, 2), (1, 1)]));
        let r2 = Effect::Reserve(hold("r2", &[(1, 2), (2, 1)]));
        assert_eq!(l.settle(&r1, Some((201, HELD_TWO))).unwrap().applied, 1);
        assert_eq!(l.settle(&r2, Some((201, br#"{"lines":[{"quantity":2},{"quantity":1}]}"#))).unwrap().applied, 1);
        // A refused reservation holds nothing.
        l.settle(&Effect::Reserve(hold("r3", &[(2, 5)])), Some((409, b"{}"))).unwrap();
        assert_eq!(l.settle(&Effect::Release { brand: 0, id: "r1".into() }, Some((200, b"{}"))).unwrap().applied, 1);
        l.settle(&Effect::Release { brand: 0, id: "r3".into() }, Some((404, b"{}"))).unwrap();
        let before = table(&[10, 10, 10], &[0, 0, 0]);
        let c = l.check(&before, &table(&[10, 10, 10], &[0, 2, 1]));
        assert!(c.ok(), "{c:?}");
        let bad = l.check(&before, &table(&[10, 10, 10], &[0, 3, 1]));
        assert_eq!((bad.reserved_mismatches, bad.mismatches, bad.ok()), (1, 0, false));
        // r2 is still held: it is what a release at the end must undo.
        assert_eq!(l.outstanding().iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["r2"]);
        let mut c = l.check(&before, &table(&[10, 10, 10], &[0, 2, 1]));
        c.check_restored(1, &before, &table(&[10, 10, 10], &[0, 0, 0]));
        assert!(c.ok());
        c.check_restored(1, &before, &table(&[10, 10, 10], &[0, 1, 0]));
        assert_eq!((c.reserved_not_restored, c.ok()), (Some(1), false));
    }

    #[test]
    fn reserved_above_on_hand_is_an_oversell() {
        let l = Ledger::new(1);
        l.settle(&Effect::Reserve(hold("r", &[(0, 5)])), Some((201, br#"{"lines":[{"quantity":5}]}"#))).unwrap();
        let c = l.check(&table(&[4], &[0]), &table(&[4], &[5]));
        assert_eq!((c.oversold, c.reserved_mismatches, c.ok()), (1, 0, false));
    }

    #[test]
    fn reservations_without_answers_may_or_may_not_hold() {
        let l = Ledger::new(2);
        l.settle(&Effect::Reserve(hold("r1", &[(0, 2)])), None).unwrap();
        l.settle(&Effect::Reserve(hold("r2", &[(1, 1)])), Some((201, br#"{"lines":[{"quantity":1}]}"#))).unwrap();
        l.settle(&Effect::Release { brand: 0, id: "r2".into() }, Some((502, b""))).unwrap();
        let before = table(&[9, 9], &[0, 0]);
        for reserved in [[0, 0], [2, 1], [2, 0], [0, 1]] {
            assert!(l.check(&before, &table(&[9, 9], &reserved)).ok(), "{reserved:?}");
        }
        assert!(!l.check(&before, &table(&[9, 9], &[3, 0])).ok());
        assert_eq!(l.outstanding().len(), 2, "both must be released at the end");
        // A reservation answer that does not match the plan is an error, not a hold.
        assert!(l.settle(&Effect::Reserve(hold("r4", &[(0, 1)])), Some((201, HELD_TWO))).is_err());
    }

    fn changes(list: &[(u32, i64)]) -> Effect {
        Effect::StockChanges(list.iter().map(|&(slot, delta)| PlannedChange { slot, delta }).collect())
    }

    const TWO_RESULTS: &[u8] =
        br#"{"results":[{"index":0,"status":"applied","sku":"S1","location":"a","version":2,"on_hand":9,"available":9},
        {"index":1,"status":"rejected","code":"insufficient_stock","detail":"on_hand would drop to -1"}]}"#;

    #[test]
    fn only_applied_changes_of_2xx_answers_count() {
        let l = Ledger::new(3);
        let s = l.settle(&changes(&[(0, -1), (1, -5)]), Some((200, TWO_RESULTS))).unwrap();
        assert_eq!(s, Settled { applied: 1, rejected: 1 });
        // Overload and client errors changed nothing.
        for status in [400, 409, 429, 503] {
            l.settle(&changes(&[(0, 100), (2, 100)]), Some((status, b"{}"))).unwrap();
        }
        let check = l.check(&on_hand(&[10, 10, 10]), &on_hand(&[9, 10, 10]));
        assert!(check.ok(), "{check:?}");
        let bad = l.check(&on_hand(&[10, 10, 10]), &on_hand(&[10, 10, 11]));
        assert_eq!((bad.mismatches, bad.examples[0].slot, bad.examples[0].expected), (2, 0, 9));
    }

    #[test]
    fn unknown_outcomes_explain_but_do_not_hide_differences() {
        let l = Ledger::new(2);
        l.settle(&changes(&[(0, 3)]), None).unwrap();
        l.settle(&changes(&[(1, 2)]), Some((500, b""))).unwrap();
        let c = l.check(&on_hand(&[0, 0]), &on_hand(&[3, 0]));
        assert!(c.ok());
        assert_eq!((c.explained_by_unknown, c.unknown_requests), (1, 2));
        assert!(!l.check(&on_hand(&[0, 0]), &on_hand(&[4, 0])).ok(), "more than the unknown deltas is a mismatch");
    }

    #[test]
    fn malformed_answers_are_errors() {
        let l = Ledger::new(1);
        assert!(l.settle(&changes(&[(0, 1)]), Some((200, b"not json"))).is_err());
        assert!(l.settle(&changes(&[(0, 1), (0, 1)]), Some((200, br#"{"results":[{"status":"applied"}]}"#))).is_err());
        assert_eq!(l.settle(&Effect::None, Some((200, b"anything"))).unwrap(), Settled::default());
    }

    #[test]
    fn stock_answers_give_on_hand_and_reserved_per_location() {
        let body = br#"{"sku":"S1","version":7,"locations":{"b":{"on_hand":10,"reserved":2}},"total":{"on_hand":10}}"#;
        assert_eq!(stock_by_location(body, &["a".into(), "b".into()]).unwrap(), vec![(0, 0), (10, 2)]);
    }
}
