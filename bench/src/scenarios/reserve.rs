//! `reserve-1`, `reserve-5`: `POST /v1/brands/{b}/reservations` of `lines` lines over distinct
//! random SKUs of one brand, each line at a named location (so the ledger knows which
//! slot's `reserved` it holds), and on the connection's next request
//! `POST .../reservations/{id}/release` of it, so that stock never runs out. The stock
//! check then asks: on_hand unchanged, reserved = initial + the held, unreleased
//! quantities, reserved ≤ on_hand, and reserved back to its initial value once what
//! was still held at the end is released.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::ensure;
use futures_util::future::BoxFuture;
use serde_json::json;

use rand::Rng;

use super::{Planned, Scenario, Worker};
use crate::client::write_request;
use crate::fixture::{call, Fixture};
use crate::ledger::{Effect, Hold, PlannedChange};

/// The channel reservations are made for: it sells from every location with no
/// buffer — never configured, or (on a brand an earlier `channels-*` run gave
/// channels, which refuses a channel it has not configured) configured so.
pub const CHANNEL: &str = "bench-ec";
/// Long enough that nothing expires during a run: what is held is released by the
/// scenario or after it, never by the clock, so `reserved` is exactly accountable.
pub const TTL_SECONDS: u32 = 600;

pub struct Reserve {
    pub name: &'static str,
    pub lines: usize,
}

/// `n` distinct indices in `0..len` (all of them when `len <= n`), in random order.
pub fn distinct(w: &mut Worker, n: usize, len: usize) -> Vec<usize> {
    if len <= n {
        return (0..len).collect();
    }
    let mut out: Vec<usize> = Vec::with_capacity(n);
    while out.len() < n {
        let i = w.rng.random_range(0..len);
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The id of the reservation a connection makes as its `pair`-th.
pub fn reservation_id(w: &Worker, pair: u64) -> String {
    format!("{}-{}-r{pair}", w.run_tag, w.conn)
}

/// Configures [`CHANNEL`] (every location, no buffer) on each brand that has channels
/// and not it; brands without channels are left without.
pub async fn ensure_channel(fx: &Fixture) -> anyhow::Result<()> {
    for brand in &fx.brands {
        let path = format!("/v1/brands/{}/channels", brand.id);
        let (status, body) = call(&fx.addr, "GET", &path, &brand.token, None).await?;
        ensure!(status == 200, "GET {path}: {status} {}", String::from_utf8_lossy(&body));
        let listed: serde_json::Value = serde_json::from_slice(&body)?;
        let channels = listed["channels"].as_array().map(Vec::as_slice).unwrap_or_default();
        if channels.is_empty() || channels.iter().any(|c| c["id"] == CHANNEL) {
            continue;
        }
        let path = format!("{path}/{CHANNEL}");
        let (status, body) = call(&fx.addr, "PUT", &path, &brand.token, Some(&json!({"name": CHANNEL, "buffer": 0}))).await?;
        ensure!(status == 200 || status == 201, "PUT {path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Writes a reservation of 1..=3 units of each of `skus` (SKU indices of brand `b`),
/// each at a random location.
pub fn write_reserve(fx: &Fixture, w: &mut Worker, b: usize, id: String, skus: &[usize], out: &mut Vec<u8>) -> Effect {
    let mut body = String::with_capacity(100 + 70 * skus.len());
    let mut lines = Vec::with_capacity(skus.len());
    // Writing into a String cannot fail.
    let _ = write!(body, r#"{{"id":"{id}","channel":"{CHANNEL}","ttl_seconds":{TTL_SECONDS},"lines":["#);
    for (i, &sku) in skus.iter().enumerate() {
        let loc = w.rng.random_range(0..fx.locations.len());
        let quantity = w.rng.random_range(1..=3);
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(body, r#"{sep}{{"sku":"{}","location":"{}","quantity":{quantity}}}"#, Fixture::sku_id(sku), fx.locations[loc]);
        lines.push(PlannedChange { slot: fx.slot(b, sku, loc) as u32, delta: quantity });
    }
    body.push_str("]}");
    let brand = &fx.brands[b];
    let auth = format!("Bearer {}", brand.token);
    write_request(out, "POST", &format!("/v1/brands/{}/reservations", brand.id), &fx.addr, &[("Authorization", &auth)], body.as_bytes());
    Effect::Reserve(Hold { brand: b, id, lines })
}

/// Writes the release of reservation `id` of brand `b`.
pub fn write_release(fx: &Fixture, b: usize, id: String, out: &mut Vec<u8>) -> Effect {
    let brand = &fx.brands[b];
    let path = format!("/v1/brands/{}/reservations/{id}/release", brand.id);
    write_request(out, "POST", &path, &fx.addr, &[("Authorization", &format!("Bearer {}", brand.token))], b"");
    Effect::Release { brand: b, id }
}

/// The brand of a connection's `pair`-th reservation: a function of the two, so that
/// the release finds the brand its reservation was made in.
pub fn pair_brand(fx: &Fixture, w: &Worker, pair: u64) -> usize {
    (w.conn + pair as usize) % fx.brands.len()
}

impl Scenario for Reserve {
    fn name(&self) -> &'static str {
        self.name
    }

    fn writes(&self) -> bool {
        true
    }

    fn prepare<'a>(&'a self, fx: &'a Arc<Fixture>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(ensure_channel(fx))
    }

    fn next(&self, fx: &Fixture, w: &mut Worker, out: &mut Vec<u8>) -> Planned {
        let pair = w.seq / 2;
        let (b, id) = (pair_brand(fx, w, pair), reservation_id(w, pair));
        if w.seq % 2 == 1 {
            return Planned { label: "release", effect: write_release(fx, b, id, out) };
        }
        let skus = distinct(w, self.lines, fx.skus_per_brand);
        Planned { label: "reserve", effect: write_reserve(fx, w, b, id, &skus, out) }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;

    use super::*;
    use crate::fixture::BrandFx;

    fn fixture() -> Fixture {
        let brands = (0..3).map(|b| BrandFx { id: format!("b-{b}"), token: format!("t{b}") }).collect();
        Fixture {
            addr: "h:1".into(),
            admin_token: String::new(),
            brands,
            skus_per_brand: 20,
            locations: vec!["a".into(), "b".into()],
            routes: Default::default(),
        }
    }

    fn worker(conn: usize) -> Worker {
        Worker { rng: rand::rngs::SmallRng::seed_from_u64(conn as u64), conn, seq: 0, run_tag: Arc::from("r1"), surged: false }
    }

    fn split(out: Vec<u8>) -> (String, String) {
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    #[test]
    fn distinct_never_repeats() {
        let mut w = worker(1);
        for _ in 0..200 {
            let mut v = distinct(&mut w, 5, 7);
            assert_eq!(v.len(), 5);
            v.sort_unstable();
            v.dedup();
            assert_eq!(v.len(), 5);
            assert!(v.iter().all(|&i| i < 7));
        }
        assert_eq!(distinct(&mut w, 5, 3), vec![0, 1, 2], "fewer SKUs than lines: each once");
    }

    #[test]
    fn a_reservation_then_its_release_in_the_same_brand() {
        let fx = fixture();
        let s = Reserve { name: "reserve-5", lines: 5 };
        let mut w = worker(4);
        let mut out = Vec::new();
        let planned = s.next(&fx, &mut w, &mut out);
        assert_eq!(planned.label, "reserve");
        let Effect::Reserve(hold) = planned.effect else { panic!("a reservation") };
        let (head, body) = split(std::mem::take(&mut out));
        let brand = &fx.brands[hold.brand];
        assert!(head.starts_with(&format!("POST /v1/brands/{}/reservations HTTP/1.1\r\n", brand.id)), "{head}");
        assert!(head.contains(&format!("Authorization: Bearer {}\r\n", brand.token)));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((v["id"].as_str().unwrap(), v["channel"].as_str().unwrap()), (hold.id.as_str(), CHANNEL));
        assert_eq!(v["ttl_seconds"], TTL_SECONDS);
        let lines = v["lines"].as_array().unwrap();
        assert_eq!((lines.len(), hold.lines.len()), (5, 5));
        for (l, p) in lines.iter().zip(&hold.lines) {
            let sku: usize = l["sku"].as_str().unwrap()[1..].parse().unwrap();
            let loc = fx.locations.iter().position(|x| x == l["location"].as_str().unwrap()).unwrap();
            assert_eq!(fx.slot(hold.brand, sku, loc) as u32, p.slot);
            assert_eq!(l["quantity"].as_i64().unwrap(), p.delta);
        }
        w.seq += 1;
        let planned = s.next(&fx, &mut w, &mut out);
        assert_eq!(planned.label, "release");
        assert_eq!(planned.effect, Effect::Release { brand: hold.brand, id: hold.id.clone() });
        let (head, _) = split(std::mem::take(&mut out));
        assert!(head.starts_with(&format!("POST /v1/brands/{}/reservations/{}/release HTTP/1.1\r\n", brand.id, hold.id)), "{head}");
        w.seq += 1;
        let Effect::Reserve(next) = s.next(&fx, &mut w, &mut out).effect else { panic!("a reservation") };
        assert_ne!(next.id, hold.id, "every pair has its own id");
    }
}
