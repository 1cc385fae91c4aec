//! A shipment search request and the tantivy query it becomes.
//!
//! `q` is normalised and split on whitespace like a SKU search ([`terms`]); every term
//! must match (AND) one of: the shipment id, order ref or tracking number exactly
//! (ranked first) or by prefix from [`PREFIX_CHARS_MIN`] characters; a SKU of its
//! lines exactly or by prefix (ranked below, since many shipments share a SKU); or a
//! word inside any of them (`20261128` in `EC-20261128-001`). Filters narrow without
//! scoring: brand, statuses (any of), and `created_from <= created_at < created_to`
//! (half-open, so consecutive days never overlap).

use std::ops::Bound;

use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, Occur, Query, RangeQuery};
use tantivy::Term;

use super::schema::{names, ShipmentFields};
use crate::domain::fulfilment::ShipmentStatus;
use crate::domain::{BrandId, Timestamp};
use crate::index::analyzer::{tokens, Mode};
use crate::index::collector::{After, Order};
use crate::index::query::{
    id_like, prefix_query, term_query, terms, text_match, truncate, PREFIX_CHARS_MIN, QUERY_TERMS_MAX, TERM_CHARS_MAX,
};

/// Constant scores of id matches: an exact shipment id, order ref or tracking number
/// first, then their prefixes, then SKUs; words inside ids score by BM25 (small).
const SCORE_KEY_EXACT: f32 = 50.0;
const SCORE_KEY_PREFIX: f32 = 10.0;
const SCORE_SKU_EXACT: f32 = 5.0;
const SCORE_SKU_PREFIX: f32 = 2.0;
const BOOST_WORDS: f32 = 1.0;

/// Every status, in lifecycle order.
pub const STATUSES: [ShipmentStatus; 6] = [
    ShipmentStatus::Accepted,
    ShipmentStatus::Picking,
    ShipmentStatus::Packed,
    ShipmentStatus::Shipped,
    ShipmentStatus::Delivered,
    ShipmentStatus::Cancelled,
];

/// A status by its API name.
pub fn parse_status(s: &str) -> Option<ShipmentStatus> {
    STATUSES.into_iter().find(|v| v.as_str() == s)
}

/// How results are ordered. Ties are broken by `brand/id`, ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipmentSort {
    Relevance,
    CreatedDesc,
    UpdatedDesc,
}

impl ShipmentSort {
    pub const ALL: [ShipmentSort; 3] = [ShipmentSort::Relevance, ShipmentSort::CreatedDesc, ShipmentSort::UpdatedDesc];

    pub fn name(self) -> &'static str {
        match self {
            ShipmentSort::Relevance => "relevance",
            ShipmentSort::CreatedDesc => "created_desc",
            ShipmentSort::UpdatedDesc => "updated_desc",
        }
    }

    pub fn parse(s: &str) -> Option<ShipmentSort> {
        ShipmentSort::ALL.into_iter().find(|v| v.name() == s)
    }

    fn order(self) -> Order {
        match self {
            ShipmentSort::Relevance => Order::Score,
            ShipmentSort::CreatedDesc => Order::Desc(names::CREATED),
            ShipmentSort::UpdatedDesc => Order::Desc(names::UPDATED),
        }
    }
}

/// A checked shipment search. `brand` is the scope: for a brand token it is always
/// that brand.
#[derive(Debug, Clone, Default)]
pub struct ShipmentRequest {
    pub q: String,
    pub brand: Option<BrandId>,
    /// Any of these statuses; empty: every status.
    pub statuses: Vec<ShipmentStatus>,
    /// Inclusive.
    pub created_from: Option<Timestamp>,
    /// Exclusive.
    pub created_to: Option<Timestamp>,
    /// `None`: relevance when `q` has terms, else newest first.
    pub sort: Option<ShipmentSort>,
    pub limit: usize,
    pub after: Option<After>,
}

impl ShipmentRequest {
    /// The order results come in. Relevance without terms would be all ties (every
    /// score equal), so it falls back to newest first.
    pub fn effective_sort(&self) -> ShipmentSort {
        let has_terms = !terms(&self.q).is_empty();
        match self.sort {
            Some(ShipmentSort::Relevance) | None if has_terms => ShipmentSort::Relevance,
            Some(ShipmentSort::Relevance) | None => ShipmentSort::CreatedDesc,
            Some(s) => s,
        }
    }

    pub fn order(&self) -> Order {
        self.effective_sort().order()
    }

    /// Whether scores decide the order (and are shown).
    pub fn scoring(&self) -> bool {
        self.effective_sort() == ShipmentSort::Relevance
    }
}

/// What one term of `q` must match, or `None` when it can match nothing.
fn one_term(f: &ShipmentFields, term: &str) -> Option<Box<dyn Query>> {
    let toks = tokens(term, Mode::Query);
    let mut should: Vec<Box<dyn Query>> = Vec::new();
    if !toks.is_empty() {
        should.push(Box::new(BoostQuery::new(text_match(f.ids_text, &toks), BOOST_WORDS)));
    }
    if id_like(term) {
        let long = term.chars().count() >= PREFIX_CHARS_MIN;
        for (field, exact, prefix) in [(f.keys_raw, SCORE_KEY_EXACT, SCORE_KEY_PREFIX), (f.skus_raw, SCORE_SKU_EXACT, SCORE_SKU_PREFIX)] {
            should.push(Box::new(ConstScoreQuery::new(term_query(field, term), exact)));
            if long {
                should.push(Box::new(ConstScoreQuery::new(prefix_query(field, term), prefix)));
            }
        }
    }
    if should.is_empty() {
        return None;
    }
    Some(Box::new(BooleanQuery::union(should)))
}

/// The filters of a request, each a non-scoring clause.
fn filters(f: &ShipmentFields, r: &ShipmentRequest) -> Vec<Box<dyn Query>> {
    let mut out: Vec<Box<dyn Query>> = Vec::new();
    if let Some(b) = &r.brand {
        out.push(term_query(f.brand, b.as_str()));
    }
    if !r.statuses.is_empty() {
        out.push(Box::new(BooleanQuery::union(r.statuses.iter().map(|s| term_query(f.status, s.as_str())).collect())));
    }
    if r.created_from.is_some() || r.created_to.is_some() {
        let term = |t: Timestamp| Term::from_field_i64(f.created, t.millis());
        let lower = r.created_from.map_or(Bound::Unbounded, |t| Bound::Included(term(t)));
        let upper = r.created_to.map_or(Bound::Unbounded, |t| Bound::Excluded(term(t)));
        out.push(Box::new(RangeQuery::new(lower, upper)));
    }
    out.into_iter().map(|q| Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn Query>).collect()
}

/// The whole query of a request.
pub fn build(f: &ShipmentFields, r: &ShipmentRequest) -> Box<dyn Query> {
    let terms = terms(&r.q);
    let mut must: Vec<Box<dyn Query>> =
        terms.iter().take(QUERY_TERMS_MAX).filter_map(|t| one_term(f, truncate(t, TERM_CHARS_MAX))).collect();
    if !terms.is_empty() && must.is_empty() {
        return Box::new(EmptyQuery);
    }
    must.extend(filters(f, r));
    if must.is_empty() {
        return Box::new(AllQuery);
    }
    Box::new(BooleanQuery::new(must.into_iter().map(|q| (Occur::Must, q)).collect()))
}
