//! A search request and the tantivy query it becomes.
//!
//! Semantics (those of the SQLite FTS5 peer where the engines allow): `q` is
//! normalised and split on whitespace; every term must match (AND) in at least one of
//! name, brand name, SKU / product id, tags (OR). A term matches a text field as the
//! phrase of its tokens (see [`super::analyzer`]), and matches a SKU or product id
//! exactly or, from [`PREFIX_CHARS_MIN`] characters, as a prefix. Filters narrow
//! without scoring. Ranking is BM25 with per-field boosts like the peer's
//! `bm25(4,2,3,3,1)`, plus a large constant for an exact id.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, InvertedIndexRangeQuery, Occur, PhraseQuery, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::Term;

use super::analyzer::{normalize, tokens, Mode};
use super::collector::Order;
use super::schema::{names, Fields, ANY_CHANNEL, FLAG_IN_STOCK};
use crate::domain::{BrandId, Id};

/// Longest `q`, in characters.
pub const QUERY_CHARS_MAX: usize = 500;
/// Most whitespace-separated terms in `q`.
pub const QUERY_TERMS_MAX: usize = 16;
/// Longest single term, in characters (a phrase of at most this many tokens).
pub const TERM_CHARS_MAX: usize = 128;
/// Shortest term that also matches SKUs and product ids by prefix: shorter prefixes
/// (`b0`, `m`) would match most of a catalog.
pub const PREFIX_CHARS_MIN: usize = 3;

/// Boosts per field, as the peer's `bm25(name 4, brand_name 2, sku 3, product_id 3, tags 1)`.
const BOOST_NAME: f32 = 4.0;
const BOOST_BRAND_NAME: f32 = 2.0;
const BOOST_IDS: f32 = 3.0;
const BOOST_TAGS: f32 = 1.0;
/// Constant scores of id matches: an exact SKU or product id ranks above text matches.
const SCORE_ID_EXACT: f32 = 50.0;
const SCORE_ID_PREFIX: f32 = 5.0;

/// How results are ordered. Ties are broken by `brand/sku`, ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Relevance,
    UpdatedDesc,
    AvailableDesc,
    PriceAsc,
    PriceDesc,
}

impl Sort {
    pub const ALL: [Sort; 5] = [Sort::Relevance, Sort::UpdatedDesc, Sort::AvailableDesc, Sort::PriceAsc, Sort::PriceDesc];

    pub fn name(self) -> &'static str {
        match self {
            Sort::Relevance => "relevance",
            Sort::UpdatedDesc => "updated_desc",
            Sort::AvailableDesc => "available_desc",
            Sort::PriceAsc => "price_asc",
            Sort::PriceDesc => "price_desc",
        }
    }

    pub fn parse(s: &str) -> Option<Sort> {
        Sort::ALL.into_iter().find(|v| v.name() == s)
    }

    /// What the collector orders by.
    pub fn order(self) -> Order {
        match self {
            Sort::Relevance => Order::Score,
            Sort::UpdatedDesc => Order::Desc(names::UPDATED),
            Sort::AvailableDesc => Order::Desc(names::AVAILABLE),
            Sort::PriceAsc => Order::Asc(names::PRICE),
            Sort::PriceDesc => Order::Desc(names::PRICE),
        }
    }
}

/// A checked search request. `brand` is the scope: for a brand token it is always that
/// brand, whatever the caller asked.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub q: String,
    pub brand: Option<BrandId>,
    /// Exact category or any category under it (`tops` finds `tops/t-shirts`).
    pub category: Option<String>,
    pub color: Option<String>,
    pub size: Option<String>,
    /// SKUs with `available > 0` at this location.
    pub location: Option<Id>,
    /// With `in_stock`: available to this channel above zero (instead of available at
    /// all). Hits carry the channel's availability.
    pub channel: Option<Id>,
    pub in_stock: bool,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub sort: Sort,
    pub limit: usize,
    /// Continue after this position (from a cursor).
    pub after: Option<super::collector::After>,
}

/// The terms of `q`: normalised, split on whitespace, deduplicated, in order.
pub fn terms(q: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in normalize(q).split_whitespace() {
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

pub(crate) fn term_query(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::WithFreqs))
}

/// The phrase of a term's tokens in one analysed field (a term query for one token).
pub(crate) fn text_match(field: Field, toks: &[super::analyzer::Tok]) -> Box<dyn Query> {
    if let [one] = toks {
        return term_query(field, &one.text);
    }
    let terms = toks.iter().map(|t| (t.position, Term::from_field_text(field, &t.text))).collect();
    Box::new(PhraseQuery::new_with_offset(terms))
}

/// Whether a normalised term could be (the start of) a SKU or product id.
pub(crate) fn id_like(term: &str) -> bool {
    let b = term.as_bytes();
    !b.is_empty() && b[0].is_ascii_alphanumeric() && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// `[term, term with its last byte + 1)`: every string that starts with `term`
/// (ASCII only, so the last byte is below 0x7f and the successor is valid).
pub(crate) fn prefix_query(field: Field, term: &str) -> Box<dyn Query> {
    let mut upper = term.as_bytes().to_vec();
    *upper.last_mut().expect("non-empty") += 1;
    let upper = String::from_utf8(upper).expect("ascii");
    Box::new(InvertedIndexRangeQuery::new(
        Bound::Included(Term::from_field_text(field, term)),
        Bound::Excluded(Term::from_field_text(field, &upper)),
    ))
}

pub(crate) fn truncate(s: &str, chars: usize) -> &str {
    s.char_indices().nth(chars).map_or(s, |(i, _)| &s[..i])
}

/// What one term of `q` must match, or `None` when it can match nothing (only
/// punctuation, say).
fn one_term(f: &Fields, term: &str) -> Option<Box<dyn Query>> {
    let toks = tokens(term, Mode::Query);
    let mut should: Vec<Box<dyn Query>> = Vec::new();
    if !toks.is_empty() {
        for (field, boost) in [(f.name, BOOST_NAME), (f.brand_name, BOOST_BRAND_NAME), (f.ids_text, BOOST_IDS), (f.tags, BOOST_TAGS)] {
            should.push(Box::new(BoostQuery::new(text_match(field, &toks), boost)));
        }
    }
    if id_like(term) {
        should.push(Box::new(ConstScoreQuery::new(term_query(f.ids_raw, term), SCORE_ID_EXACT)));
        if term.chars().count() >= PREFIX_CHARS_MIN {
            should.push(Box::new(ConstScoreQuery::new(prefix_query(f.ids_raw, term), SCORE_ID_PREFIX)));
        }
    }
    if should.is_empty() {
        return None;
    }
    Some(Box::new(BooleanQuery::union(should)))
}

pub(crate) fn i64_range(field: Field, min: Option<i64>, max: Option<i64>) -> Box<dyn Query> {
    let bound = |v: Option<i64>| v.map_or(Bound::Unbounded, |v| Bound::Included(Term::from_field_i64(field, v)));
    Box::new(RangeQuery::new(bound(min), bound(max)))
}

/// The filters of a request, each a non-scoring clause.
fn filters(f: &Fields, r: &SearchRequest) -> Vec<Box<dyn Query>> {
    let mut out: Vec<Box<dyn Query>> = Vec::new();
    let mut exact = |field: Field, v: &str| out.push(term_query(field, v));
    if let Some(b) = &r.brand {
        exact(f.brand, b.as_str());
    }
    if let Some(c) = &r.category {
        exact(f.category_path, c);
    }
    if let Some(c) = &r.color {
        exact(f.color, c);
    }
    if let Some(s) = &r.size {
        exact(f.size, s);
    }
    if let Some(l) = &r.location {
        exact(f.avail_locs, l.as_str());
    }
    match (&r.channel, r.in_stock) {
        (Some(c), true) => out.push(channel_in_stock(f, c)),
        (None, true) => exact(f.flags, FLAG_IN_STOCK),
        (_, false) => {}
    }
    if r.price_min.is_some() || r.price_max.is_some() {
        out.push(i64_range(f.price, r.price_min, r.price_max));
    }
    out.into_iter().map(|q| Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn Query>).collect()
}

/// Available to `channel` above zero: the channel is configured and has stock, or the
/// SKU's brand has no channels and the SKU has stock anywhere (a brand without
/// channels sells to any channel from every location with no buffer; one with
/// channels refuses a channel it has not configured).
fn channel_in_stock(f: &Fields, channel: &Id) -> Box<dyn Query> {
    let no_channels =
        BooleanQuery::new(vec![(Occur::Must, term_query(f.flags, FLAG_IN_STOCK)), (Occur::MustNot, term_query(f.chan_conf, ANY_CHANNEL))]);
    Box::new(BooleanQuery::union(vec![term_query(f.chan_stock, channel.as_str()), Box::new(no_channels)]))
}

/// The whole query of a request.
pub fn build(f: &Fields, r: &SearchRequest) -> Box<dyn Query> {
    let terms = terms(&r.q);
    // Terms that can match nothing (`&` in `Iron & Co.`) are dropped; a `q` made only
    // of such terms matches nothing rather than everything.
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
