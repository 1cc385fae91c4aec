//! `channels-1` and `channels-5`: `single-change` on half of the brands each, with one
//! or five sales channels configured on them, so that the cost of per-channel
//! availability on the write path (every change derives each channel's available
//! and carries it in its `stock.changed` event) is measured in the same run.
//! `channels-1` writes to the even brands, `channels-5` to the odd ones (run with
//! `--brands 2` or more).

use std::sync::Arc;

use anyhow::ensure;
use futures_util::future::BoxFuture;
use rand::Rng;
use serde_json::json;

use super::stock_changes::write_changes_at;
use super::{Planned, Scenario, Worker};
use crate::fixture::{call, Fixture};

/// The channels the odd brands get (the even ones only the first): location subsets
/// and buffers as a brand selling through a marketplace, its own EC site and stores
/// would set them. Location indices refer to `Fixture::locations`.
const CHANNELS: [(&str, &[usize], i64); 5] =
    [("zozotown", &[0, 1], 2), ("brand_ec", &[0, 1, 2], 1), ("store-shibuya", &[2], 0), ("rakuten", &[0], 3), ("amazon", &[1], 5)];

pub struct Channels {
    pub name: &'static str,
    /// 1 or 5.
    pub channels: usize,
}

impl Channels {
    /// Brands this scenario writes to: even brands for 1 channel, odd for 5.
    fn parity(&self) -> usize {
        usize::from(self.channels > 1)
    }
}

impl Scenario for Channels {
    fn name(&self) -> &'static str {
        self.name
    }

    fn writes(&self) -> bool {
        true
    }

    /// Configures the channels (a PUT is an upsert, so every run may repeat it).
    fn prepare<'a>(&'a self, fx: &'a Arc<Fixture>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            ensure!(fx.brands.len() >= 2, "{} needs --brands 2 or more (even brands get 1 channel, odd ones 5)", self.name);
            for brand in fx.brands.iter().skip(self.parity()).step_by(2) {
                for (name, locations, buffer) in CHANNELS.iter().take(self.channels) {
                    let locations: Vec<&str> = locations.iter().filter_map(|&l| fx.locations.get(l)).map(String::as_str).collect();
                    let body = json!({"name": name, "locations": locations, "buffer": buffer});
                    let path = format!("/v1/brands/{}/channels/{name}", brand.id);
                    let (status, body) = call(&fx.addr, "PUT", &path, &brand.token, Some(&body)).await?;
                    ensure!(status == 200 || status == 201, "PUT {path}: {status} {}", String::from_utf8_lossy(&body));
                }
            }
            Ok(())
        })
    }

    fn next(&self, fx: &Fixture, w: &mut Worker, out: &mut Vec<u8>) -> Planned {
        let mine = (fx.brands.len() - self.parity()).div_ceil(2);
        let b = 2 * w.rng.random_range(0..mine.max(1)) + self.parity();
        Planned { label: "change", effect: write_changes_at(fx, w, b, fx.skus_per_brand, 1, out) }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::fixture::BrandFx;

    #[test]
    fn one_channel_writes_to_even_brands_and_five_to_odd_ones() {
        for brands in [2usize, 3, 5] {
            let fx = Fixture {
                addr: "h:1".into(),
                admin_token: String::new(),
                brands: (0..brands).map(|b| BrandFx { id: format!("b-{b}"), token: format!("t{b}") }).collect(),
                skus_per_brand: 10,
                locations: vec!["a".into(), "b".into(), "c".into()],
                routes: Default::default(),
            };
            for (s, parity) in [(Channels { name: "channels-1", channels: 1 }, 0), (Channels { name: "channels-5", channels: 5 }, 1)] {
                let mut w = Worker { rng: rand::rngs::SmallRng::seed_from_u64(7), conn: 0, seq: 0, run_tag: Arc::from("r"), surged: false };
                let mut seen = std::collections::BTreeSet::new();
                for _ in 0..200 {
                    let mut out = Vec::new();
                    s.next(&fx, &mut w, &mut out);
                    let head = String::from_utf8(out).unwrap();
                    let b: usize = head["POST /v1/brands/b-".len()..].split('/').next().unwrap().parse().unwrap();
                    seen.insert(b);
                }
                let want: std::collections::BTreeSet<usize> = (parity..brands).step_by(2).collect();
                assert_eq!(seen, want, "{} with {brands} brands", s.name);
            }
        }
    }
}
