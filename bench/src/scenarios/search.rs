//! `search`: `GET /v1/search/skus` over the fixture's catalog (see
//! [`crate::fixture::catalog_json`]): Japanese queries (katakana, kanji,
//! half-width kana, tags), Latin ones (SKU and product ids, a word with no hit), and
//! filter-only or filtered ones (category, color, size, location, in_stock, price,
//! sorts); every answer counts the four facets. Three in four requests use a brand
//! token (that brand's SKUs only), the rest the admin token (every brand).
//! [`Scenario::prepare`] checks that the queries meant to find something do.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use rand::Rng;

use super::{Planned, Scenario, Worker};
use crate::client::write_request;
use crate::fixture::{call, Fixture};
use crate::ledger::Effect;

/// One query of the mix: its label, its parameters, and whether it finds something.
pub struct Query {
    pub label: &'static str,
    pub params: &'static [(&'static str, &'static str)],
    pub hits: bool,
}

const fn q(label: &'static str, params: &'static [(&'static str, &'static str)], hits: bool) -> Query {
    Query { label, params, hits }
}

pub const QUERIES: &[Query] = &[
    q("search-ja", &[("q", "オーバーサイズ")], true),
    q("search-ja", &[("q", "Tシャツ")], true),
    q("search-ja", &[("q", "ワイドパンツ"), ("in_stock", "true")], true),
    q("search-ja", &[("q", "撥水 シャツ")], true),
    q("search-ja", &[("q", "ｺｰﾃﾞｭﾛｲ")], true),
    q("search-ja", &[("q", "ネイビー"), ("size", "M")], true),
    q("search-ja", &[("q", "定番"), ("sort", "price_asc")], true),
    q("search-ja", &[("q", "ニット"), ("category", "tops"), ("sort", "available_desc")], true),
    q("search-ja", &[("q", "ゴアテックス")], false),
    q("search-latin", &[("q", "S0000042")], true),
    q("search-latin", &[("q", "S00001")], true),
    q("search-latin", &[("q", "P-0000012")], true),
    q("search-latin", &[("q", "cashmere sweater")], false),
    q("search-filter", &[("category", "tops/t-shirts"), ("color", "navy"), ("size", "M")], true),
    q("search-filter", &[("in_stock", "true"), ("sort", "price_asc")], true),
    q("search-filter", &[("category", "shoes"), ("location", "tsukuba"), ("in_stock", "true")], true),
    q("search-filter", &[("price_min", "3000"), ("price_max", "8000"), ("sort", "price_desc"), ("limit", "50")], true),
    q("search-filter", &[("color", "black"), ("sort", "updated_desc")], true),
];

/// Percent-encodes a query-string component (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The path and query of a search.
pub fn path(query: &Query) -> String {
    let mut p = String::from("/v1/search/skus?");
    for (i, (k, v)) in query.params.iter().enumerate() {
        let sep = if i == 0 { "" } else { "&" };
        let _ = write!(p, "{sep}{k}={}", encode(v));
    }
    p
}

/// Longest the index may take to show the fixture (it commits every 200 ms).
const INDEX_WAIT: Duration = Duration::from_secs(30);

pub struct Search;

impl Scenario for Search {
    fn name(&self) -> &'static str {
        "search"
    }

    fn writes(&self) -> bool {
        false
    }

    fn prepare<'a>(&'a self, fx: &'a Arc<Fixture>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let started = Instant::now();
            for query in QUERIES {
                let path = path(query);
                loop {
                    let (status, body) = call(&fx.addr, "GET", &path, &fx.admin_token, None).await?;
                    anyhow::ensure!(status == 200, "{path}: status {status} ({})", String::from_utf8_lossy(&body));
                    let v: serde_json::Value = serde_json::from_slice(&body).context("search answer is not JSON")?;
                    let total = v["total"].as_u64().context("search answer without total")?;
                    if (total > 0) == query.hits {
                        break;
                    }
                    anyhow::ensure!(
                        started.elapsed() < INDEX_WAIT,
                        "{path}: {total} hits, expected {}",
                        if query.hits { "some" } else { "none" }
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Ok(())
        })
    }

    fn next(&self, fx: &Fixture, w: &mut Worker, out: &mut Vec<u8>) -> Planned {
        let query = &QUERIES[w.rng.random_range(0..QUERIES.len())];
        let token = if w.rng.random_range(0..4) == 0 {
            fx.admin_token.as_str()
        } else {
            fx.brands[w.rng.random_range(0..fx.brands.len())].token.as_str()
        };
        write_request(out, "GET", &path(query), &fx.addr, &[("Authorization", &format!("Bearer {token}"))], b"");
        Planned { label: query.label, effect: Effect::None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_percent_encoded_as_utf8() {
        assert_eq!(encode("S0000042"), "S0000042");
        assert_eq!(encode("tops/t-shirts"), "tops%2Ft-shirts");
        assert_eq!(encode("撥水 ダ"), "%E6%92%A5%E6%B0%B4%20%E3%83%80");
        assert_eq!(encode("a&b=c~_."), "a%26b%3Dc~_.");
    }

    #[test]
    fn every_query_round_trips_through_a_query_string_parser() {
        for query in QUERIES {
            let p = path(query);
            let (route, qs) = p.split_once('?').unwrap();
            assert_eq!(route, "/v1/search/skus");
            let parsed = actix_web::web::Query::<Vec<(String, String)>>::from_query(qs).unwrap().into_inner();
            let want: Vec<(String, String)> = query.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(parsed, want, "{p}");
        }
    }
}
