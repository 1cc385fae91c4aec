//! A read-mostly mix: `read_percent` % `GET .../skus/{sku}/stock` of a random SKU, the
//! rest single adjusts as in `single-change`. Latencies are kept per kind.

use rand::Rng;

use super::stock_changes::write_changes;
use super::{Planned, Scenario, Worker};
use crate::client::write_request;
use crate::fixture::Fixture;
use crate::ledger::Effect;

pub struct Mixed {
    pub read_percent: u32,
}

impl Scenario for Mixed {
    fn name(&self) -> &'static str {
        "mixed"
    }

    fn writes(&self) -> bool {
        true
    }

    fn next(&self, fx: &Fixture, w: &mut Worker, out: &mut Vec<u8>) -> Planned {
        if w.rng.random_range(0..100) >= self.read_percent {
            return Planned { label: "change", effect: write_changes(fx, w, 1, out) };
        }
        let b = w.rng.random_range(0..fx.brands.len());
        let sku = w.rng.random_range(0..fx.skus_per_brand);
        let brand = &fx.brands[b];
        let path = format!("/v1/brands/{}/skus/{}/stock", brand.id, Fixture::sku_id(sku));
        write_request(out, "GET", &path, &fx.addr, &[("Authorization", &format!("Bearer {}", brand.token))], b"");
        Planned { label: "get-stock", effect: Effect::None }
    }
}
