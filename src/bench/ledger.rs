//! Stock accounting: after a write scenario, for every SKU and location,
//! `final on_hand == initial + sum of the deltas the server acknowledged`.
//!
//! A delta counts when its request got a 2xx and its own result says `applied`.
//! 429/503 (and other 4xx) answers changed nothing, by contract. A request whose
//! answer never came (connection error) or was a 5xx other than 503 has an unknown
//! outcome: its deltas are kept aside, and a difference they can explain is reported
//! as such rather than as a failure.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

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

/// What a request does to stock, so its answer can be accounted for. Scenarios that
/// change stock in other ways (reservations: `reserved`) add a variant here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A read, or a write the accounting does not follow.
    None,
    /// `POST .../stock/changes`: one entry per change, in request order.
    StockChanges(Vec<PlannedChange>),
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
        })
    }

    /// Accounts for an answer (`None`: no answer came).
    pub fn settle(&self, effect: &Effect, answer: Option<(u16, &[u8])>) -> anyhow::Result<Settled> {
        let Effect::StockChanges(changes) = effect else { return Ok(Settled::default()) };
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

    /// Compares the stock before and after against the acknowledged deltas.
    pub fn check(&self, initial: &[i64], last: &[i64]) -> StockCheck {
        let mut out = StockCheck {
            slots: initial.len() as u64,
            unknown_requests: self.unknown_requests.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (slot, (&before, &after)) in initial.iter().zip(last).enumerate() {
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

/// The verdict of [`Ledger::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StockCheck {
    pub slots: u64,
    pub mismatches: u64,
    /// Slots off by no more than the deltas of requests with an unknown outcome.
    pub explained_by_unknown: u64,
    pub unknown_requests: u64,
    pub examples: Vec<Mismatch>,
}

impl StockCheck {
    pub fn ok(&self) -> bool {
        self.mismatches == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub slot: u64,
    pub initial: i64,
    pub expected: i64,
    pub actual: i64,
}

/// The on_hand of every location in a `GET .../stock` answer, in fixture order.
pub fn on_hand_by_location(body: &[u8], locations: &[String]) -> anyhow::Result<Vec<i64>> {
    let v: serde_json::Value = serde_json::from_slice(body).context("stock answer is not JSON")?;
    Ok(locations.iter().map(|l| v["locations"][l]["on_hand"].as_i64().unwrap_or(0)).collect())
}

/// Reads on_hand of every slot of the fixture (one GET per SKU).
pub async fn read_stock(fx: &Arc<Fixture>, concurrency: usize) -> anyhow::Result<Vec<i64>> {
    let table: Arc<Vec<AtomicI64>> = Arc::new((0..fx.slots()).map(|_| AtomicI64::new(0)).collect());
    let make_fx = fx.clone();
    let make = move |i: usize, out: &mut Vec<u8>| {
        let brand = &make_fx.brands[i / make_fx.skus_per_brand];
        let path = format!("/v1/brands/{}/skus/{}/stock", brand.id, Fixture::sku_id(i % make_fx.skus_per_brand));
        write_request(out, "GET", &path, &make_fx.addr, &[("Authorization", &format!("Bearer {}", brand.token))], b"");
    };
    let (check_fx, check_table) = (fx.clone(), table.clone());
    let check = move |i: usize, status: u16, body: &[u8]| {
        anyhow::ensure!(status == 200, "GET stock: status {status} ({})", String::from_utf8_lossy(body));
        let locs = check_fx.locations.len();
        for (l, v) in on_hand_by_location(body, &check_fx.locations)?.into_iter().enumerate() {
            check_table[i * locs + l].store(v, Ordering::Relaxed);
        }
        Ok(())
    };
    bulk(&fx.addr, concurrency, fx.total_skus(), "read", make, check).await?;
    Ok(table.iter().map(|a| a.load(Ordering::Relaxed)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let check = l.check(&[10, 10, 10], &[9, 10, 10]);
        assert!(check.ok(), "{check:?}");
        let bad = l.check(&[10, 10, 10], &[10, 10, 11]);
        assert_eq!((bad.mismatches, bad.examples[0].slot, bad.examples[0].expected), (2, 0, 9));
    }

    #[test]
    fn unknown_outcomes_explain_but_do_not_hide_differences() {
        let l = Ledger::new(2);
        l.settle(&changes(&[(0, 3)]), None).unwrap();
        l.settle(&changes(&[(1, 2)]), Some((500, b""))).unwrap();
        let c = l.check(&[0, 0], &[3, 0]);
        assert!(c.ok());
        assert_eq!((c.explained_by_unknown, c.unknown_requests), (1, 2));
        assert!(!l.check(&[0, 0], &[4, 0]).ok(), "more than the unknown deltas is a mismatch");
    }

    #[test]
    fn malformed_answers_are_errors() {
        let l = Ledger::new(1);
        assert!(l.settle(&changes(&[(0, 1)]), Some((200, b"not json"))).is_err());
        assert!(l.settle(&changes(&[(0, 1), (0, 1)]), Some((200, br#"{"results":[{"status":"applied"}]}"#))).is_err());
        assert_eq!(l.settle(&Effect::None, Some((200, b"anything"))).unwrap(), Settled::default());
    }

    #[test]
    fn stock_answers_give_on_hand_per_location() {
        let body = br#"{"sku":"S1","version":7,"locations":{"b":{"on_hand":10,"reserved":2}},"total":{"on_hand":10}}"#;
        assert_eq!(on_hand_by_location(body, &["a".into(), "b".into()]).unwrap(), vec![0, 10]);
    }
}
