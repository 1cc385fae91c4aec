//! The handle searches go through: run a request, read the hits' stored fields, make
//! the next cursor; and wait until the index covers an LSN (read-your-writes).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tantivy::schema::Value;
use tantivy::{IndexReader, Searcher, TantivyDocument};
use tokio::sync::watch;

use super::collector::{After, Candidate, Found, SearchCollector};
use super::indexer::Wake;
use super::query::{self, SearchRequest, Sort};
use super::schema::Fields;
use super::IndexError;
use crate::journal::Lsn;

/// Most hits on one page.
pub const LIMIT_MAX: usize = 100;
/// Longest cursor accepted, in bytes.
pub const CURSOR_BYTES_MAX: usize = 1024;

#[derive(Debug, Clone, Serialize, PartialEq)]
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
    /// The relevance score; `null` when the request did not sort by relevance of a text
    /// query (nothing was scored).
    pub score: Option<f32>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FacetValue {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Facets {
    pub brand: Vec<FacetValue>,
    pub category: Vec<FacetValue>,
    pub color: Vec<FacetValue>,
    pub size: Vec<FacetValue>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchResult {
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
    let mut h = Sha256::new();
    let opt = |v: Option<&str>| v.map_or_else(|| "\u{0}".to_string(), str::to_string);
    let parts = [
        query::terms(&r.q).join(" "),
        opt(r.brand.as_ref().map(|b| b.as_str())),
        opt(r.category.as_deref()),
        opt(r.color.as_deref()),
        opt(r.size.as_deref()),
        opt(r.location.as_ref().map(|l| l.as_str())),
        r.in_stock.to_string(),
        format!("{:?}/{:?}", r.price_min, r.price_max),
        r.sort.name().to_string(),
    ];
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
    let body = CursorBody { k: last.primary, u: last.uid.clone(), f: fingerprint(r) };
    b64().encode(serde_json::to_vec(&body).expect("cursor serialises"))
}

/// Checks a cursor against the request it is sent with.
pub fn decode_cursor(r: &SearchRequest, raw: &str) -> Result<After, CursorError> {
    if raw.len() > CURSOR_BYTES_MAX {
        return Err(CursorError::Malformed);
    }
    let bytes = b64().decode(raw).map_err(|_| CursorError::Malformed)?;
    let body: CursorBody = serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)?;
    if body.f != fingerprint(r) {
        return Err(CursorError::OtherQuery);
    }
    Ok(After { primary: body.k, uid: body.u })
}

/// The search side of the index. Cheap to share behind an `Arc`.
pub struct SkuIndex {
    reader: IndexReader,
    fields: Fields,
    covered: watch::Receiver<Lsn>,
    wake: Arc<Wake>,
}

impl SkuIndex {
    pub fn new(reader: IndexReader, fields: Fields, covered: watch::Receiver<Lsn>, wake: Arc<Wake>) -> SkuIndex {
        SkuIndex { reader, fields, covered, wake }
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

    /// Runs a search. Blocking (it reads the index): call it off the async executors.
    pub fn search(&self, r: &SearchRequest) -> Result<SearchResult, IndexError> {
        let searcher = self.reader.searcher();
        let query = query::build(&self.fields, r);
        let limit = r.limit.clamp(1, LIMIT_MAX);
        let scoring = r.sort == Sort::Relevance && !query::terms(&r.q).is_empty();
        let collector = SearchCollector { sort: r.sort, limit: limit + 1, after: r.after.clone(), scoring };
        let Found { total, facets, mut top } = searcher.search(&*query, &collector)?;
        let next_cursor = if top.len() > limit {
            top.truncate(limit);
            top.last().map(|c| encode_cursor(r, &After { primary: c.primary, uid: c.uid.clone() }))
        } else {
            None
        };
        let hits = top.iter().map(|c| self.hit(&searcher, c, scoring)).collect::<Result<_, _>>()?;
        let [brand, category, color, size] = facets.map(|v| v.into_iter().map(|(value, count)| FacetValue { value, count }).collect());
        Ok(SearchResult { total, hits, facets: Facets { brand, category, color, size }, next_cursor })
    }

    fn hit(&self, searcher: &Searcher, c: &Candidate, scored: bool) -> Result<Hit, IndexError> {
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
            score: scored.then_some(c.score),
        })
    }
}
