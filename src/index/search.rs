//! The handle SKU searches go through: run a request, read the hits' stored fields,
//! make the next cursor; and [`Coverage`], shared by every kind: wait until the index
//! covers an LSN (read-your-writes). Cursors are made here for every kind.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tantivy::schema::Value;
use tantivy::{IndexReader, Searcher, TantivyDocument};
use tokio::sync::watch;

use super::collector::group::{GroupCollector, GroupFound};
use super::collector::{After, Candidate, Found, SearchCollector};
use super::query::{self, SearchRequest, Sort};
use super::schema::Fields;
use super::schema::{names, stored_channel_available};
use super::synonyms::Synonyms;
use super::wake::Wake;
use super::IndexError;
use crate::domain::Id;
use crate::journal::Lsn;

/// Most hits on one page.
pub const LIMIT_MAX: usize = 100;
/// Longest cursor accepted, in bytes.
pub const CURSOR_BYTES_MAX: usize = 1024;

/// One SKU found.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = SkuHit)]
pub struct Hit {
    pub brand: String,
    pub sku: String,
    pub product_id: Option<String>,
    pub name: String,
    pub color: Option<String>,
    pub size: Option<String>,
    pub category: Option<String>,
    pub price: Option<i64>,
    pub on_hand: i64,
    pub available: i64,
    /// Sum of `incoming` over the locations.
    pub incoming: i64,
    /// Sum of `unsellable` over the locations: held, never available (not in `on_hand`).
    pub unsellable: i64,
    /// Sum of `in_transit` over the locations: shipped by transfer towards them, not
    /// received yet (not in `on_hand`).
    pub in_transit: i64,
    /// Available to the request's `channel` (only when it named one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_available: Option<i64>,
    /// The relevance score; `null` when the request did not sort by relevance of a text
    /// query (nothing was scored).
    pub score: Option<f32>,
    /// With `group=product`: the product's matching variants (this hit is the best).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Variants>,
}

/// The matching variants of a grouped hit's product.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Variants {
    /// How many of the product's SKUs matched.
    pub total: u64,
    /// The first of them in result order (at most 10), the hit's own SKU first.
    pub skus: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FacetValue {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq, utoipa::ToSchema)]
pub struct Facets {
    pub brand: Vec<FacetValue>,
    pub category: Vec<FacetValue>,
    pub color: Vec<FacetValue>,
    pub size: Vec<FacetValue>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SearchResult {
    /// Matching SKUs; with `group=product`, matching products (a SKU without a
    /// product counts as one).
    pub total: u64,
    pub hits: Vec<Hit>,
    pub facets: Facets,
    pub next_cursor: Option<String>,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("not a cursor this server made; pass next_cursor back unchanged")]
    Malformed,
    #[error("this cursor belongs to another query, filter or sort; start again without a cursor")]
    OtherQuery,
}

/// What a cursor holds (base64url of this JSON): the last hit's sort key and uid, and
/// a fingerprint of the request it continues.
#[derive(Serialize, Deserialize)]
struct CursorBody {
    k: u64,
    u: String,
    f: String,
}

/// A fingerprint of everything that decides the result order and set (not `limit`).
fn fingerprint(r: &SearchRequest) -> String {
    let opt = |v: Option<&str>| v.map_or_else(|| "\u{0}".to_string(), str::to_string);
    let parts = [
        query::terms(&r.q).join(" "),
        opt(r.brand.as_ref().map(|b| b.as_str())),
        opt(r.category.as_deref()),
        opt(r.color.as_deref()),
        opt(r.size.as_deref()),
        opt(r.location.as_ref().map(|l| l.as_str())),
        opt(r.channel.as_ref().map(|c| c.as_str())),
        r.in_stock.to_string(),
        format!("{:?}/{:?}", r.price_min, r.price_max),
        r.sort.name().to_string(),
        r.group_by_product.to_string(),
    ];
    fingerprint_of(parts)
}

/// A short hash of the parts of a request that decide its result order and set.
pub fn fingerprint_of(parts: impl IntoIterator<Item = String>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0xff]);
    }
    hex::encode(&h.finalize()[..8])
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// The cursor after `last` for request `r`.
pub fn encode_cursor(r: &SearchRequest, last: &After) -> String {
    encode_cursor_for(fingerprint(r), last)
}

/// Checks a cursor against the request it is sent with.
pub fn decode_cursor(r: &SearchRequest, raw: &str) -> Result<After, CursorError> {
    decode_cursor_for(&fingerprint(r), raw)
}

/// The cursor after `last` for the request of fingerprint `f` (any kind).
pub fn encode_cursor_for(f: String, last: &After) -> String {
    let body = CursorBody { k: last.primary, u: last.uid.clone(), f };
    b64().encode(serde_json::to_vec(&body).expect("cursor serialises"))
}

/// Checks a cursor against the fingerprint of the request it is sent with.
pub fn decode_cursor_for(f: &str, raw: &str) -> Result<After, CursorError> {
    if raw.len() > CURSOR_BYTES_MAX {
        return Err(CursorError::Malformed);
    }
    let bytes = b64().decode(raw).map_err(|_| CursorError::Malformed)?;
    let body: CursorBody = serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)?;
    if body.f != f {
        return Err(CursorError::OtherQuery);
    }
    Ok(After { primary: body.k, uid: body.u })
}

/// What the indexer has made visible, shared by the search handles of every kind:
/// one covered LSN, since one indexer commits every kind in the same cycle.
#[derive(Clone)]
pub struct Coverage {
    covered: watch::Receiver<Lsn>,
    wake: Arc<Wake>,
}

impl Coverage {
    pub fn new(covered: watch::Receiver<Lsn>, wake: Arc<Wake>) -> Coverage {
        Coverage { covered, wake }
    }

    /// Every record at or below this LSN is reflected in what searches see.
    pub fn covered_lsn(&self) -> Lsn {
        *self.covered.borrow()
    }

    /// Waits until the index covers `lsn`, nudging the indexer; false on timeout or
    /// when the indexer has stopped.
    pub async fn wait_covered(&self, lsn: Lsn, timeout: Duration) -> bool {
        if self.covered_lsn() >= lsn {
            return true;
        }
        self.wake.nudge();
        let mut rx = self.covered.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= lsn)).await;
        matches!(reached, Ok(Ok(_)))
    }
}

/// A page's hits and next cursor, from the collector's candidates (one more than the
/// page, to know whether a next page exists).
pub fn page(mut top: Vec<Candidate>, limit: usize, cursor: impl Fn(&After) -> String) -> (Vec<Candidate>, Option<String>) {
    let next = if top.len() > limit {
        top.truncate(limit);
        top.last().map(|c| cursor(&After { primary: c.primary, uid: c.uid.clone() }))
    } else {
        None
    };
    (top, next)
}

/// Facet values as the API shows them.
pub fn facet_values(values: Vec<(String, u64)>) -> Vec<FacetValue> {
    values.into_iter().map(|(value, count)| FacetValue { value, count }).collect()
}

/// The facets of a SKU search from the collector's counts, in [`FACET_FIELDS`] order.
fn facets_of(counts: Vec<Vec<(String, u64)>>) -> Facets {
    let mut facets = counts.into_iter().map(facet_values);
    let mut next = || facets.next().unwrap_or_default();
    Facets { brand: next(), category: next(), color: next(), size: next() }
}

/// The facets of a SKU search, in the order of [`Facets`] fields.
pub const FACET_FIELDS: [&str; 4] = [names::BRAND, names::CATEGORY, names::COLOR, names::SIZE];

/// The search side of the SKU index. Cheap to share behind an `Arc`.
pub struct SkuIndex {
    reader: IndexReader,
    fields: Fields,
    coverage: Coverage,
    synonyms: Arc<Synonyms>,
}

impl SkuIndex {
    pub fn new(reader: IndexReader, fields: Fields, covered: watch::Receiver<Lsn>, wake: Arc<Wake>) -> SkuIndex {
        SkuIndex { reader, fields, coverage: Coverage::new(covered, wake), synonyms: Arc::new(Synonyms::shipped()) }
    }

    /// The same handle with these synonyms instead of the shipped ones.
    pub fn with_synonyms(self, synonyms: Arc<Synonyms>) -> SkuIndex {
        SkuIndex { synonyms, ..self }
    }

    /// What the index covers, and waiting for more (`min_lsn`).
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// Runs a search. Blocking (it reads the index): call it off the async executors.
    pub fn search(&self, r: &SearchRequest) -> Result<SearchResult, IndexError> {
        let searcher = self.reader.searcher();
        let query = query::build(&self.fields, r, &self.synonyms);
        let limit = r.limit.clamp(1, LIMIT_MAX);
        let scoring = r.sort == Sort::Relevance && !query::terms(&r.q).is_empty();
        let collector = SearchCollector { order: r.sort.order(), facets: &FACET_FIELDS, limit: limit + 1, after: r.after.clone(), scoring };
        if r.group_by_product {
            return self.search_grouped(&searcher, &*query, collector, r);
        }
        let Found { total, facets, top } = searcher.search(&*query, &collector)?;
        let (top, next_cursor) = page(top, limit, |last| encode_cursor(r, last));
        let hits = top.iter().map(|c| self.hit(&searcher, c, scoring, r.channel.as_ref())).collect::<Result<_, _>>()?;
        Ok(SearchResult { total, hits, facets: facets_of(facets), next_cursor })
    }

    /// One hit per product: its best variant's hit with the matching variants.
    fn search_grouped(
        &self,
        searcher: &Searcher,
        query: &dyn tantivy::query::Query,
        collector: SearchCollector,
        r: &SearchRequest,
    ) -> Result<SearchResult, IndexError> {
        let (limit, scoring) = (collector.limit - 1, collector.scoring);
        let GroupFound { total, facets, mut top } = searcher.search(query, &GroupCollector(collector))?;
        let next_cursor = if top.len() > limit {
            top.truncate(limit);
            top.last().map(|g| encode_cursor(r, &After { primary: g.best.primary, uid: g.best.uid.clone() }))
        } else {
            None
        };
        let mut hits = Vec::with_capacity(top.len());
        for g in &top {
            let mut hit = self.hit(searcher, &g.best, scoring, r.channel.as_ref())?;
            let skus = g.variants.iter().map(|u| u.split_once('/').map_or(u.as_str(), |(_, s)| s).to_string()).collect();
            hit.variants = Some(Variants { total: g.matched, skus });
            hits.push(hit);
        }
        Ok(SearchResult { total, hits, facets: facets_of(facets), next_cursor })
    }

    fn hit(&self, searcher: &Searcher, c: &Candidate, scored: bool, channel: Option<&Id>) -> Result<Hit, IndexError> {
        let doc: TantivyDocument = searcher.doc(c.address)?;
        let f = &self.fields;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str().map(str::to_string));
        let int = |field| doc.get_first(field).and_then(|v| v.as_i64());
        Ok(Hit {
            brand: text(f.brand).unwrap_or_default(),
            sku: text(f.sku).unwrap_or_default(),
            product_id: text(f.product_id),
            name: text(f.name).unwrap_or_default(),
            color: text(f.color),
            size: text(f.size),
            category: text(f.category),
            price: int(f.price),
            on_hand: int(f.on_hand).unwrap_or(0),
            available: int(f.available).unwrap_or(0),
            incoming: int(f.incoming).unwrap_or(0),
            unsellable: int(f.unsellable).unwrap_or(0),
            in_transit: int(f.in_transit).unwrap_or(0),
            // A brand without channels sells to any channel what is available anywhere;
            // one with channels sells nothing to a channel it has not configured.
            channel_available: channel.map(|ch| {
                let mut stored = doc.get_all(f.chan_avail).filter_map(|v| v.as_str()).peekable();
                match stored.peek() {
                    None => int(f.available).unwrap_or(0),
                    Some(_) => stored_channel_available(stored, ch.as_str()).unwrap_or(0),
                }
            }),
            score: scored.then_some(c.score),
            variants: None,
        })
    }
}
