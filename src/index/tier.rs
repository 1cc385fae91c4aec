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

use tantivy::fastfield::AliveBitSet;
use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SeekDangerResult, SegmentReader, Term, COLLECT_BLOCK_BUFFER_LEN, TERMINATED};

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

    /// Delegated, so an intersection can still start a phrase near its candidate
    /// without matching the phrase first.
    fn scorer_danger(&self, reader: &SegmentReader, target: DocId, boost: Score) -> tantivy::Result<(SeekDangerResult, Box<dyn Scorer>)> {
        let (found, inner) = self.inner.scorer_danger(reader, target, 1.0)?;
        if inner.is::<EmptyScorer>() {
            return Ok((found, inner));
        }
        Ok((found, Box::new(TierScorer { inner, base: self.base * boost, saturate: self.saturate, constant: self.constant })))
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

    fn seek_danger(&mut self, target: DocId) -> SeekDangerResult {
        self.inner.seek_danger(target)
    }

    fn fill_buffer(&mut self, buffer: &mut [DocId; COLLECT_BLOCK_BUFFER_LEN]) -> usize {
        self.inner.fill_buffer(buffer)
    }

    fn count(&mut self, alive_bitset: &AliveBitSet) -> u32 {
        self.inner.count(alive_bitset)
    }

    fn count_including_deleted(&mut self) -> u32 {
        self.inner.count_including_deleted()
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

/// How [`AnyOf`] combines the scores of the clauses a document matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    Sum,
    Max,
}

/// A disjunction that moves its clauses by seeking them one by one. tantivy's union
/// fills windows of documents by advancing every clause through them, which makes a
/// phrase clause match its phrase on every document of the window; inside an
/// intersection driven by a rarer term that is most of the work. A term's clauses are
/// few (one per field), so seeking each is cheap.
///
/// The clauses are also moved *lazily*: a seek tries them in the order given and
/// stops at the first that lands on the target (the others stay behind it until they
/// are needed), and a score brings the ones left behind up to the document. So a
/// membership test, which is all an unscored count or a rejected candidate of an
/// intersection needs, costs one clause when the first one matches: list the clause
/// most likely to match, and cheapest to check, first.
pub struct AnyOf {
    clauses: Vec<Box<dyn Query>>,
    combine: Combine,
}

impl AnyOf {
    pub fn new(clauses: Vec<Box<dyn Query>>, combine: Combine) -> AnyOf {
        AnyOf { clauses, combine }
    }
}

impl Clone for AnyOf {
    fn clone(&self) -> Self {
        AnyOf { clauses: self.clauses.iter().map(|q| q.box_clone()).collect(), combine: self.combine }
    }
}

impl fmt::Debug for AnyOf {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "AnyOf({:?}, {:?})", self.combine, self.clauses)
    }
}

impl Query for AnyOf {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let weights = self.clauses.iter().map(|q| q.weight(enable_scoring)).collect::<tantivy::Result<Vec<_>>>()?;
        Ok(Box::new(AnyOfWeight { weights, combine: self.combine }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        for q in &self.clauses {
            q.query_terms(visitor);
        }
    }
}

struct AnyOfWeight {
    weights: Vec<Box<dyn Weight>>,
    combine: Combine,
}

impl Weight for AnyOfWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut children = Vec::with_capacity(self.weights.len());
        for w in &self.weights {
            let s = w.scorer(reader, boost)?;
            // A clause that matches nothing here (an empty scorer, or a prefix range
            // whose bitset is empty) would only be visited for nothing.
            if !s.is::<EmptyScorer>() && s.doc() != TERMINATED {
                children.push(s);
            }
        }
        match children.len() {
            0 => Ok(Box::new(EmptyScorer)),
            1 => Ok(children.pop().expect("one")),
            _ => Ok(Box::new(AnyOfScorer::new(children, self.combine))),
        }
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut e = Explanation::new_with_string(format!("any of ({:?})", self.combine), 0.0);
        let mut total: Score = 0.0;
        for w in &self.weights {
            if let Ok(x) = w.explain(reader, doc) {
                total = match self.combine {
                    Combine::Sum => total + x.value(),
                    Combine::Max => total.max(x.value()),
                };
                e.add_detail(x);
            }
        }
        let mut out = Explanation::new_with_string(format!("any of ({:?})", self.combine), total);
        out.add_detail(e);
        Ok(out)
    }
}

/// The union of its children. `docs[i]` is where child `i` stands: on `doc`, past it,
/// or behind it (not yet moved: a seek stopped at an earlier child); never read a
/// child behind `doc` as "not matching" without seeking it first.
struct AnyOfScorer {
    children: Vec<Box<dyn Scorer>>,
    docs: Vec<DocId>,
    doc: DocId,
    combine: Combine,
}

impl AnyOfScorer {
    fn new(children: Vec<Box<dyn Scorer>>, combine: Combine) -> AnyOfScorer {
        let docs: Vec<DocId> = children.iter().map(|c| c.doc()).collect();
        let doc = docs.iter().copied().min().unwrap_or(TERMINATED);
        AnyOfScorer { children, docs, doc, combine }
    }

    /// Moves to the first document at or after `target` (which is after `doc`).
    fn go(&mut self, target: DocId) -> DocId {
        let mut min = TERMINATED;
        let next = self.doc.checked_add(1) == Some(target);
        for (child, at) in self.children.iter_mut().zip(self.docs.iter_mut()) {
            if *at < target {
                // A child on `doc` steps to its next document; one behind seeks.
                *at = if next && *at == self.doc { child.advance() } else { child.seek(target) };
            }
            if *at == target {
                self.doc = target;
                return target;
            }
            min = min.min(*at);
        }
        self.doc = min;
        min
    }
}

impl DocSet for AnyOfScorer {
    fn advance(&mut self) -> DocId {
        if self.doc == TERMINATED {
            return TERMINATED;
        }
        self.go(self.doc + 1)
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc >= target {
            return self.doc;
        }
        self.go(target)
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.children.iter().map(|c| c.size_hint()).fold(0u32, u32::saturating_add)
    }

    fn cost(&self) -> u64 {
        self.children.iter().map(|c| c.cost()).sum()
    }
}

impl Scorer for AnyOfScorer {
    fn score(&mut self) -> Score {
        let at = self.doc;
        let mut total: Score = 0.0;
        for (child, pos) in self.children.iter_mut().zip(self.docs.iter_mut()) {
            if *pos < at {
                *pos = child.seek(at);
            }
            if *pos == at {
                let s = child.score();
                total = match self.combine {
                    Combine::Sum => total + s,
                    Combine::Max => total.max(s),
                };
            }
        }
        total
    }
}
