//! `POST /v1/brands/{b}/stock/changes` with `per_request` adjusts on random SKUs and
//! locations of one random brand, each request with a unique Idempotency-Key:
//! `single-change` (1 per request), `batch-100` and `batch-1000` (the most the API takes).

use std::fmt::Write as _;

use rand::Rng;

use super::{Planned, Scenario, Worker};
use crate::client::write_request;
use crate::fixture::Fixture;
use crate::ledger::{Effect, PlannedChange};

pub struct StockChanges {
    name: &'static str,
    per_request: usize,
}

impl StockChanges {
    pub fn new(name: &'static str, per_request: usize) -> Self {
        StockChanges { name, per_request }
    }
}

/// A delta of ±1..=3: small against the initial stock, so that nothing is rejected
/// for insufficient stock, yet both directions are exercised.
fn random_delta(w: &mut Worker) -> i64 {
    let d = w.rng.random_range(1..=3);
    if w.rng.random_bool(0.5) {
        d
    } else {
        -d
    }
}

/// Writes one stock-change request of `n` adjusts for a random brand.
pub fn write_changes(fx: &Fixture, w: &mut Worker, n: usize, out: &mut Vec<u8>) -> Effect {
    let b = w.rng.random_range(0..fx.brands.len());
    write_changes_at(fx, w, b, fx.skus_per_brand, n, out)
}

/// Writes one stock-change request of `n` adjusts on the first `skus` SKUs of brand `b`.
pub fn write_changes_at(fx: &Fixture, w: &mut Worker, b: usize, skus: usize, n: usize, out: &mut Vec<u8>) -> Effect {
    let mut body = String::with_capacity(40 + 80 * n);
    let mut planned = Vec::with_capacity(n);
    body.push_str(r#"{"changes":["#);
    for i in 0..n {
        let sku = w.rng.random_range(0..skus.clamp(1, fx.skus_per_brand));
        let loc = w.rng.random_range(0..fx.locations.len());
        let delta = random_delta(w);
        let sep = if i == 0 { "" } else { "," };
        // Writing into a String cannot fail.
        let _ =
            write!(body, r#"{sep}{{"sku":"{}","location":"{}","op":"adjust","delta":{delta}}}"#, Fixture::sku_id(sku), fx.locations[loc]);
        planned.push(PlannedChange { slot: fx.slot(b, sku, loc) as u32, delta });
    }
    body.push_str("]}");
    let brand = &fx.brands[b];
    let (auth, key) = (format!("Bearer {}", brand.token), w.unique_key());
    let headers = [("Authorization", auth.as_str()), ("Idempotency-Key", key.as_str())];
    write_request(out, "POST", &format!("/v1/brands/{}/stock/changes", brand.id), &fx.addr, &headers, body.as_bytes());
    Effect::StockChanges(planned)
}

impl Scenario for StockChanges {
    fn name(&self) -> &'static str {
        self.name
    }

    fn writes(&self) -> bool {
        true
    }

    fn next(&self, fx: &Fixture, w: &mut Worker, out: &mut Vec<u8>) -> Planned {
        Planned { label: "change", effect: write_changes(fx, w, self.per_request, out) }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;

    use super::*;
    use crate::fixture::BrandFx;

    #[test]
    fn requests_plan_what_their_body_says() {
        let brands = vec![BrandFx { id: "b-0".into(), token: "t0".into() }];
        let fx = Fixture {
            addr: "h:1".into(),
            admin_token: String::new(),
            brands,
            skus_per_brand: 50,
            locations: vec!["a".into(), "b".into()],
            routes: Default::default(),
        };
        let mut w = Worker { rng: rand::rngs::SmallRng::seed_from_u64(7), conn: 3, seq: 9, run_tag: Arc::from("r1"), surged: false };
        let mut out = Vec::new();
        let Effect::StockChanges(planned) = write_changes(&fx, &mut w, 5, &mut out) else { panic!("a write") };
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /v1/brands/b-0/stock/changes HTTP/1.1\r\n"));
        assert!(head.contains("Idempotency-Key: r1-3-9\r\n") && head.contains("Authorization: Bearer t0\r\n"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let changes = v["changes"].as_array().unwrap();
        assert_eq!(changes.len(), planned.len());
        for (c, p) in changes.iter().zip(&planned) {
            let sku: usize = c["sku"].as_str().unwrap()[1..].parse().unwrap();
            let loc = fx.locations.iter().position(|l| l == c["location"].as_str().unwrap()).unwrap();
            assert_eq!(fx.slot(0, sku, loc) as u32, p.slot);
            assert_eq!(c["delta"].as_i64().unwrap(), p.delta);
            assert!((1..=3).contains(&p.delta.abs()));
        }
    }
}
