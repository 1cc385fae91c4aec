//! The handle SKU searches go through: run a request, read the hits' stored fields,
//! make the next cursor; and [`Coverage`], shared by every kind: wait until the index
//! covers an LSN (read-your-writes). Cursors are made here for every kind.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermSetQuery};
use tantivy::schema::{Field, Value};
use tantivy::{IndexReader, Searcher, TantivyDocument, Term};
use tokio::sync::watch;

use super::collector::group::{GroupCollector, GroupFound};
use super::collector::{ranked_facet, After, Candidate, Found, SearchCollector, FACET_VALUES_MAX};
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
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

    /// What nudges the indexer.
    pub fn wake(&self) -> &Arc<Wake> {
        &self.wake
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
pub fn page(top: Vec<Candidate>, limit: usize, cursor: impl Fn(&After) -> String) -> (Vec<Candidate>, Option<String>) {
    page_by(top, limit, |c| c, cursor)
}

/// [`page`] of anything that holds a candidate.
fn page_by<T>(
    mut top: Vec<T>,
    limit: usize,
    candidate: impl Fn(&T) -> &Candidate,
    cursor: impl Fn(&After) -> String,
) -> (Vec<T>, Option<String>) {
    let next = if top.len() > limit {
        top.truncate(limit);
        top.last().map(|t| {
            let c = candidate(t);
            cursor(&After { primary: c.primary, uid: c.uid.clone() })
        })
    } else {
        None
    };
    (top, next)
}

/// Keeps `query` to the documents of `partitions` (cluster mode); scores are unchanged.
pub fn in_partitions(query: Box<dyn Query>, field: Field, partitions: &[u32]) -> Box<dyn Query> {
    let terms: Vec<Term> = partitions.iter().map(|p| Term::from_field_u64(field, u64::from(*p))).collect();
    let filter = ConstScoreQuery::new(Box::new(TermSetQuery::new(terms)), 0.0);
    Box::new(BooleanQuery::new(vec![(Occur::Must, query), (Occur::Must, Box::new(filter))]))
}

/// A cluster node's share of a gathered search (see [`SkuIndex::search_part`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct Part<H> {
    pub total: u64,
    /// In result order, at most one more than the page.
    pub hits: Vec<Keyed<H>>,
    /// Per facet field, every value's count.
    pub facets: Vec<Vec<(String, u64)>>,
}

/// A hit and its place in the result order.
#[derive(Debug, Serialize, Deserialize)]
pub struct Keyed<H> {
    pub primary: u64,
    pub uid: String,
    pub hit: H,
}

/// Parts merged into one page: the total and facet counts summed (the facets then cut
/// to the most frequent, as one index's would be), the hits in result order, and the
/// position of the page's last hit when more follow.
pub struct Merged<H> {
    pub total: u64,
    pub hits: Vec<H>,
    pub facets: Vec<Vec<(String, u64)>>,
    pub next: Option<After>,
}

/// Merges the parts of a gathered search into a page of `limit` hits. The parts come
/// from disjoint sets of documents (each partition answered by one node), so the sums
/// are exact; each part scored its hits against its own index's statistics.
pub fn merge<H>(parts: Vec<Part<H>>, limit: usize) -> Merged<H> {
    let mut total = 0;
    let mut counts: Vec<std::collections::HashMap<String, u64>> = Vec::new();
    let mut hits = Vec::new();
    for part in parts {
        total += part.total;
        counts.resize_with(counts.len().max(part.facets.len()), Default::default);
        for (i, values) in part.facets.into_iter().enumerate() {
            for (v, n) in values {
                *counts[i].entry(v).or_default() += n;
            }
        }
        hits.extend(part.hits);
    }
    hits.sort_by(|a, b| b.primary.cmp(&a.primary).then_with(|| a.uid.cmp(&b.uid)));
    let next = if hits.len() > limit {
        hits.truncate(limit);
        hits.last().map(|h| After { primary: h.primary, uid: h.uid.clone() })
    } else {
        None
    };
    let facets = counts.into_iter().map(|c| ranked_facet(c, FACET_VALUES_MAX)).collect();
    Merged { total, hits: hits.into_iter().map(|h| h.hit).collect(), facets, next }
}

/// A SKU search's page from its parts gathered across a cluster.
pub fn merged(r: &SearchRequest, parts: Vec<Part<Hit>>) -> SearchResult {
    let m = merge(parts, r.limit.clamp(1, LIMIT_MAX));
    SearchResult { total: m.total, hits: m.hits, facets: facets_of(m.facets), next_cursor: m.next.map(|a| encode_cursor(r, &a)) }
}

/// What [`SkuIndex::run`] found.
struct Ran {
    searcher: Searcher,
    total: u64,
    facets: Vec<Vec<(String, u64)>>,
    top: Vec<(Candidate, Option<Variants>)>,
    scoring: bool,
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
        let ran = self.run(r, None, FACET_VALUES_MAX)?;
        let (top, next_cursor) = page_by(ran.top, r.limit.clamp(1, LIMIT_MAX), |(c, _)| c, |last| encode_cursor(r, last));
        let hits =
            top.into_iter().map(|(c, v)| self.hit(&ran.searcher, &c, ran.scoring, r.channel.as_ref(), v)).collect::<Result<_, _>>()?;
        Ok(SearchResult { total: ran.total, hits, facets: facets_of(ran.facets), next_cursor })
    }

    /// Cluster mode: this node's share of a gathered search, kept to the documents of
    /// `partitions` — every facet value counted, up to one hit more than the page,
    /// each with its place in the result order ([`merged`] makes the page).
    pub fn search_part(&self, r: &SearchRequest, partitions: &[u32]) -> Result<Part<Hit>, IndexError> {
        let ran = self.run(r, Some(partitions), usize::MAX)?;
        let hits = ran
            .top
            .into_iter()
            .map(|(c, v)| {
                let hit = self.hit(&ran.searcher, &c, ran.scoring, r.channel.as_ref(), v)?;
                Ok(Keyed { primary: c.primary, uid: c.uid, hit })
            })
            .collect::<Result<_, IndexError>>()?;
        Ok(Part { total: ran.total, hits, facets: ran.facets })
    }

    /// The one pass: total, facets and up to one more than the page of hits (with
    /// `group=product`, each group's best variant and its variants).
    fn run(&self, r: &SearchRequest, partitions: Option<&[u32]>, facet_values_max: usize) -> Result<Ran, IndexError> {
        let searcher = self.reader.searcher();
        let mut query = query::build(&self.fields, r, &self.synonyms);
        if let Some(partitions) = partitions {
            query = in_partitions(query, self.fields.partition, partitions);
        }
        let limit = r.limit.clamp(1, LIMIT_MAX);
        let scoring = r.sort == Sort::Relevance && !query::terms(&r.q).is_empty();
        let collector = SearchCollector {
            order: r.sort.order(),
            facets: &FACET_FIELDS,
            limit: limit + 1,
            after: r.after.clone(),
            scoring,
            facet_values_max,
        };
        let (total, facets, top) = if r.group_by_product {
            let GroupFound { total, facets, top } = searcher.search(&*query, &GroupCollector(collector))?;
            let top = top
                .into_iter()
                .map(|g| {
                    let skus = g.variants.iter().map(|u| u.split_once('/').map_or(u.as_str(), |(_, s)| s).to_string()).collect();
                    (g.best, Some(Variants { total: g.matched, skus }))
                })
                .collect();
            (total, facets, top)
        } else {
            let Found { total, facets, top } = searcher.search(&*query, &collector)?;
            (total, facets, top.into_iter().map(|c| (c, None)).collect())
        };
        Ok(Ran { searcher, total, facets, top, scoring })
    }

    fn hit(
        &self,
        searcher: &Searcher,
        c: &Candidate,
        scored: bool,
        channel: Option<&Id>,
        variants: Option<Variants>,
    ) -> Result<Hit, IndexError> {
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
            variants,
        })
    }
}
