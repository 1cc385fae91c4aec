//! A search request and the tantivy query it becomes.
//!
//! `q` is normalised and split on whitespace into terms. A term matches a SKU when it
//! matches, or one of its synonyms ([`super::synonyms`]) matches, any of: the name,
//! the SKU and product id, the brand name, the tags (as the phrase of its tokens, see
//! [`super::analyzer`]); the category, colour or size, their names or a word of them
//! (whole, as a keyword: `ニット`, `navy`, `shirt` for `T-shirts`); a Latin or digit substring of three or more characters of
//! the name, brand name, tags or ids (the `grams` field), or a SKU or product id
//! exactly or, from [`PREFIX_CHARS_MIN`] characters, as a prefix.
//!
//! **Which terms must match.** Up to [`AND_TERMS_MAX`] terms: every one (AND, as the
//! FTS5 peer). More (a pasted marketplace title): at least a quarter of them, rounded
//! up, and at least two ([`long_query_minimum`]); each matched term then adds
//! [`COORD_SCORE`], more than any one term can score otherwise, so SKUs that match
//! more of the words rank first and the bands below order those that match as many.
//!
//! **Ranking.** Each field a term matches adds a band of width one ([`super::tier`]):
//! name [`BAND_NAME`] above category, ids, colour/size, brand name, tags; BM25 orders
//! name matches within the name band (the other fields add their band alone); a substring match scores [`BAND_SUBSTRING`] only where
//! the term matched no whole word. So a name match ranks above a
//! brand-name match, a whole word above a substring (a whole word also matches its
//! substrings), and a category match adds to a name match (`ニット`: knits named
//! `ニット…` above `ニット帽`). An exact SKU or product id adds [`SCORE_ID_EXACT`].
//! Synonyms of a term count once: the best of them, a synonym's weighed by
//! [`SYNONYM_WEIGHT`]; a synonym matches whole words only, never as a substring. Filters narrow without scoring.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, InvertedIndexRangeQuery, Occur, PhraseQuery, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::Term;

use super::analyzer::{gram_query, keyword, normalize, tokens, Mode};
use super::collector::Order;
use super::schema::{names, Fields, ANY_CHANNEL, FLAG_IN_STOCK};
use super::substring::WordsOrSubstring;
use super::synonyms::Synonyms;
use super::tier::{AnyOf, Combine, Tier};
use crate::domain::{BrandId, Id};

/// Longest `q`, in characters (a pasted marketplace title fits).
pub const QUERY_CHARS_MAX: usize = 512;
/// Most whitespace-separated terms in `q`.
pub const QUERY_TERMS_MAX: usize = 64;
/// Longest single term, in characters (a phrase of at most this many tokens).
pub const TERM_CHARS_MAX: usize = 128;
/// Most terms of which every one must match; a longer `q` needs only
/// [`long_query_minimum`] of them.
pub const AND_TERMS_MAX: usize = 4;
/// Shortest term that also matches SKUs and product ids by prefix: shorter prefixes
/// (`b0`, `m`) would match most of a catalog.
pub const PREFIX_CHARS_MIN: usize = 3;

/// The bands of a term's matches (each adds `band + s/(s+1)`, `s` its BM25 score).
pub const BAND_NAME: f32 = 8.0;
pub const BAND_CATEGORY: f32 = 6.0;
pub const BAND_IDS: f32 = 5.0;
pub const BAND_ATTRS: f32 = 4.0;
pub const BAND_BRAND_NAME: f32 = 3.0;
pub const BAND_TAGS: f32 = 2.0;
pub const BAND_SUBSTRING: f32 = 1.0;
/// What a synonym's match weighs against the term's own: the word typed ranks first
/// where both match the same fields (0.8 × two bands stays under the two bands).
pub const SYNONYM_WEIGHT: f32 = 0.8;
/// Constant scores of id matches: an exact SKU or product id ranks above text matches.
const SCORE_ID_EXACT: f32 = 50.0;
const SCORE_ID_PREFIX: f32 = 5.0;
/// What each matched term of a long query adds: more than one term can score in all
/// its bands and id matches together (under 100).
pub const COORD_SCORE: f32 = 1000.0;

/// How many terms of a long `q` (more than [`AND_TERMS_MAX`]) must match: a quarter,
/// rounded up, and at least two.
pub fn long_query_minimum(terms: usize) -> usize {
    terms.div_ceil(4).max(2)
}

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
    /// One hit per product (`group=product`), see [`super::collector::group`].
    pub group_by_product: bool,
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

/// What one spelling of a term matches, or `None` when it can match nothing (only
/// punctuation, say); `substrings`: also as a Latin or digit substring (the term as
/// typed, not its synonyms: `tee` for `Tシャツ` must not find `steel`).
fn one_spelling(f: &Fields, term: &str, substrings: bool) -> Option<Box<dyn Query>> {
    let toks = tokens(term, Mode::Query);
    let mut should: Vec<Box<dyn Query>> = Vec::new();
    if !toks.is_empty() {
        let kw = keyword(term);
        // Only the name is ordered by BM25 within its band; elsewhere a match is worth
        // its band alone, which spares counting every occurrence of a phrase.
        should.push(Box::new(Tier::new(text_match(f.name, &toks), BAND_NAME)));
        should.push(Box::new(Tier::constant(term_query(f.category_text, &kw), BAND_CATEGORY)));
        should.push(Box::new(Tier::constant(text_match(f.ids_text, &toks), BAND_IDS)));
        should.push(Box::new(Tier::constant(term_query(f.attr_text, &kw), BAND_ATTRS)));
        should.push(Box::new(Tier::constant(text_match(f.brand_name, &toks), BAND_BRAND_NAME)));
        should.push(Box::new(Tier::constant(text_match(f.tags, &toks), BAND_TAGS)));
    }
    if id_like(term) {
        should.push(Box::new(ConstScoreQuery::new(term_query(f.ids_raw, term), SCORE_ID_EXACT)));
        if term.chars().count() >= PREFIX_CHARS_MIN {
            should.push(Box::new(ConstScoreQuery::new(prefix_query(f.ids_raw, term), SCORE_ID_PREFIX)));
        }
    }
    let words: Option<Box<dyn Query>> = (!should.is_empty()).then(|| Box::new(AnyOf::new(should, Combine::Sum)) as Box<dyn Query>);
    // A substring counts only where no whole word matched (every band above it is
    // higher), so Latin words do not gain a band that Japanese ones cannot; and it is
    // only checked there (see `WordsOrSubstring`).
    let grams = if substrings { gram_query(term) } else { None };
    let substring = grams.map(|g| Box::new(Tier::constant(text_match(f.grams, &g), BAND_SUBSTRING)) as Box<dyn Query>);
    match (words, substring) {
        (Some(w), Some(s)) => Some(Box::new(WordsOrSubstring::new(w, s))),
        (w, s) => w.or(s),
    }
}

/// What one term of `q` matches: itself or any of its synonyms, scored as the best.
fn one_term(f: &Fields, term: &str, synonyms: &Synonyms) -> Option<Box<dyn Query>> {
    let term = truncate(term, TERM_CHARS_MAX);
    let mut spellings: Vec<Box<dyn Query>> = one_spelling(f, term, true).into_iter().collect();
    for other in synonyms.expand(term) {
        if let Some(q) = one_spelling(f, truncate(other, TERM_CHARS_MAX), false) {
            spellings.push(Box::new(BoostQuery::new(q, SYNONYM_WEIGHT)));
        }
    }
    match spellings.len() {
        0 => None,
        1 => spellings.pop(),
        _ => Some(Box::new(AnyOf::new(spellings, Combine::Max))),
    }
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
pub fn build(f: &Fields, r: &SearchRequest, synonyms: &Synonyms) -> Box<dyn Query> {
    let terms = terms(&r.q);
    // Terms that can match nothing (`&` in `Iron & Co.`) are dropped; a `q` made only
    // of such terms matches nothing rather than everything.
    let mut matched: Vec<Box<dyn Query>> = terms.iter().take(QUERY_TERMS_MAX).filter_map(|t| one_term(f, t, synonyms)).collect();
    if !terms.is_empty() && matched.is_empty() {
        return Box::new(EmptyQuery);
    }
    let mut must = filters(f, r);
    if matched.len() > AND_TERMS_MAX {
        let minimum = long_query_minimum(matched.len());
        let should = matched.drain(..).map(|q| (Occur::Should, Box::new(Tier::shift(q, COORD_SCORE)) as Box<dyn Query>)).collect();
        must.push(Box::new(BooleanQuery::with_minimum_required_clauses(should, minimum)));
    }
    must.extend(matched);
    if must.is_empty() {
        return Box::new(AllQuery);
    }
    Box::new(BooleanQuery::new(must.into_iter().map(|q| (Occur::Must, q)).collect()))
}
