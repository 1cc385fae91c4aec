//! [`Tier`]: a query wrapper that turns the open-ended BM25 score of what it wraps into
//! a score inside a band `[base, base + 1)`: `base + s / (s + 1)`; or, as
//! [`Tier::shift`], adds a constant to it (a long query's term counts [`super::query`]'s
//! coordination step once, whatever it matched).
//!
//! Summed BM25 over fields ranks by statistics (a short brand name outscores a long
//! product name) and cannot promise an order between kinds of match. Bands can: a
//! term that matches a product's name scores at least [`super::query`]'s name band
//! whatever it matches elsewhere, and within a band BM25 still orders the hits
//! (a shorter name, a rarer term first). Without scoring the wrapper is transparent.

use std::fmt;

use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term};

/// `base + s / (s + 1)` for the score `s` of `inner`.
pub struct Tier {
    inner: Box<dyn Query>,
    base: Score,
    saturate: bool,
    constant: bool,
}

impl Tier {
    /// `base + s / (s + 1)`.
    pub fn new(inner: Box<dyn Query>, base: Score) -> Tier {
        Tier { inner, base, saturate: true, constant: false }
    }

    /// `base`, without scoring `inner` at all: a phrase then stops at its first
    /// occurrence instead of counting them all (which reads every position), for fields
    /// where BM25's order within the band is worth less than that cost.
    pub fn constant(inner: Box<dyn Query>, base: Score) -> Tier {
        Tier { inner, base, saturate: true, constant: true }
    }

    /// `base + s`.
    pub fn shift(inner: Box<dyn Query>, base: Score) -> Tier {
        Tier { inner, base, saturate: false, constant: false }
    }
}

impl Clone for Tier {
    fn clone(&self) -> Self {
        Tier { inner: self.inner.box_clone(), base: self.base, saturate: self.saturate, constant: self.constant }
    }
}

impl fmt::Debug for Tier {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Tier(base={}, saturate={}, {:?})", self.base, self.saturate, self.inner)
    }
}

/// The score of a document whose inner score is `s`.
pub fn band(base: Score, saturate: bool, s: Score) -> Score {
    let s = s.max(0.0);
    if saturate {
        base + s / (s + 1.0)
    } else {
        base + s
    }
}

impl Query for Tier {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        if !enable_scoring.is_scoring_enabled() {
            return self.inner.weight(enable_scoring);
        }
        if self.constant {
            let disabled = match enable_scoring.searcher() {
                Some(searcher) => EnableScoring::disabled_from_searcher(searcher),
                None => EnableScoring::disabled_from_schema(enable_scoring.schema()),
            };
            let inner = self.inner.weight(disabled)?;
            return Ok(Box::new(TierWeight { inner, base: self.base, saturate: self.saturate, constant: true }));
        }
        let inner = self.inner.weight(enable_scoring)?;
        Ok(Box::new(TierWeight { inner, base: self.base, saturate: self.saturate, constant: false }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.inner.query_terms(visitor)
    }
}

struct TierWeight {
    inner: Box<dyn Weight>,
    base: Score,
    saturate: bool,
    constant: bool,
}

impl Weight for TierWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let inner = self.inner.scorer(reader, 1.0)?;
        // An empty scorer stays recognisable, so a boolean query drops it instead of
        // visiting it for every document (most fields miss most terms).
        if inner.is::<EmptyScorer>() {
            return Ok(inner);
        }
        Ok(Box::new(TierScorer { inner, base: self.base * boost, saturate: self.saturate, constant: self.constant }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let inner = self.inner.explain(reader, doc)?;
        let mut e = Explanation::new_with_string(
            format!("tier {} (saturate: {})", self.base, self.saturate),
            band(self.base, self.saturate, inner.value()),
        );
        e.add_detail(inner);
        Ok(e)
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        self.inner.count(reader)
    }
}

struct TierScorer {
    inner: Box<dyn Scorer>,
    base: Score,
    saturate: bool,
    constant: bool,
}

impl DocSet for TierScorer {
    fn advance(&mut self) -> DocId {
        self.inner.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.inner.seek(target)
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }

    fn cost(&self) -> u64 {
        self.inner.cost()
    }
}

impl Scorer for TierScorer {
    fn score(&mut self) -> Score {
        if self.constant {
            return self.base;
        }
        band(self.base, self.saturate, self.inner.score())
    }
}
