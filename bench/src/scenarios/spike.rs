//! `spike`: a sale start. The base connections (the run's connection count) send,
//! over all brands, in turns of four: a one-line reservation, its release, and two
//! single adjusts. When the measured window opens, `factor` times as many connections
//! are open: the new ones send the same turns, all to the first brand (whose sale
//! starts) and its first [`HOT_SKUS`] SKUs. The window is the spike: its throughput,
//! latencies and 429/503 answers are what is reported; every 429/503 must carry
//! `Retry-After`, and stock must add up to what was acknowledged afterwards.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use rand::Rng;

use super::reserve::{ensure_channel, reservation_id, write_release, write_reserve};
use super::stock_changes::write_changes_at;
use super::{Planned, Scenario, Worker};
use crate::fixture::Fixture;

/// SKUs of the first brand the sale is about.
pub const HOT_SKUS: usize = 50;

pub struct Spike {
    pub factor: usize,
}

/// The brand and the SKUs (the first `n` of the brand) of a connection's `turn`-th
/// turn: fixed per turn, so that a release goes to its reservation's brand.
fn turn_target(fx: &Fixture, w: &Worker, turn: u64) -> (usize, usize) {
    if w.surged {
        (0, HOT_SKUS.min(fx.skus_per_brand))
    } else {
        ((w.conn + turn as usize) % fx.brands.len(), fx.skus_per_brand)
    }
}

impl Scenario for Spike {
    fn name(&self) -> &'static str {
        "spike"
    }

    fn writes(&self) -> bool {
        true
    }

    fn surge(&self) -> usize {
        self.factor
    }

    fn prepare<'a>(&'a self, fx: &'a Arc<Fixture>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(ensure_channel(fx))
    }

    fn next(&self, fx: &Fixture, w: &mut Worker, out: &mut Vec<u8>) -> Planned {
        let turn = w.seq / 4;
        let (b, skus) = turn_target(fx, w, turn);
        match w.seq % 4 {
            0 => {
                let sku = w.rng.random_range(0..skus);
                let id = reservation_id(w, turn);
                Planned { label: "reserve", effect: write_reserve(fx, w, b, id, &[sku], out) }
            }
            1 => Planned { label: "release", effect: write_release(fx, b, reservation_id(w, turn), out) },
            _ => Planned { label: "change", effect: write_changes_at(fx, w, b, skus, 1, out) },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;

    use super::*;
    use crate::fixture::BrandFx;
    use crate::ledger::Effect;

    fn fixture() -> Fixture {
        let brands = (0..4).map(|b| BrandFx { id: format!("b-{b}"), token: format!("t{b}") }).collect();
        Fixture {
            addr: "h:1".into(),
            admin_token: String::new(),
            brands,
            skus_per_brand: 1000,
            locations: vec!["a".into(), "b".into()],
            routes: Default::default(),
        }
    }

    /// (label, brand, largest SKU index) of the first `n` requests of a connection.
    fn requests(surged: bool, conn: usize, n: u64) -> Vec<(&'static str, usize, usize)> {
        let fx = fixture();
        let s = Spike { factor: 10 };
        let mut w = Worker { rng: rand::rngs::SmallRng::seed_from_u64(3), conn, seq: 0, run_tag: Arc::from("r"), surged };
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut last_hold = None;
        for seq in 0..n {
            w.seq = seq;
            out.clear();
            let p = s.next(&fx, &mut w, &mut out);
            let (brand, max_sku) = match &p.effect {
                Effect::Reserve(h) => {
                    last_hold = Some(h.clone());
                    (h.brand, h.lines.iter().map(|l| l.slot as usize / 2 % 1000).max().unwrap())
                }
                Effect::Release { brand, id } => {
                    let h = last_hold.as_ref().expect("a release follows its reservation");
                    assert_eq!((*brand, id), (h.brand, &h.id));
                    (*brand, 0)
                }
                Effect::StockChanges(c) => (c[0].slot as usize / 2 / 1000, c[0].slot as usize / 2 % 1000),
                Effect::None => panic!("the spike only writes"),
            };
            seen.push((p.label, brand, max_sku));
        }
        seen
    }

    #[test]
    fn turns_of_reserve_release_and_two_changes() {
        let labels: Vec<_> = requests(false, 1, 8).iter().map(|r| r.0).collect();
        assert_eq!(labels, ["reserve", "release", "change", "change", "reserve", "release", "change", "change"]);
    }

    #[test]
    fn surged_connections_hit_the_hot_skus_of_the_first_brand() {
        for (_, brand, sku) in requests(true, 700, 400) {
            assert_eq!(brand, 0);
            assert!(sku < HOT_SKUS);
        }
        let brands: std::collections::BTreeSet<usize> = requests(false, 2, 400).iter().map(|r| r.1).collect();
        assert_eq!(brands.len(), 4, "base connections spread over every brand");
    }
}
