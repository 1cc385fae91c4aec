//! One pass over the matching documents that yields everything a search answers:
//! the total, the facet counts, and one page of hits after a cursor.
//!
//! Order: a *primary key* (a `u64`, larger first) made from the score or a fast
//! field ([`Order`]), then the document's `uid` (`brand/sku`, `brand/shipment`)
//! ascending. The collector knows nothing of SKUs or shipments: the kind's search
//! hands it the order and the names of its facet fields. Within a segment the
//! ordinals of the `uid` column are in the same order as the strings, so the
//! tie-break costs one column read per document; strings are only looked up for the
//! few hits a segment keeps. A cursor `(primary, uid)` is turned, per segment, into
//! "primary smaller, or equal and uid ordinal at least N" by one dictionary lookup,
//! which makes pages stable while documents change (search-after).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use super::schema::names;

pub mod group;

/// Most values returned per facet (the most frequent first).
pub const FACET_VALUES_MAX: usize = 50;

/// Most facet fields one search counts.
pub const FACETS_MAX: usize = 8;

/// What the primary key of a document is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The relevance score, larger first.
    Score,
    /// An `i64` fast field, larger first; documents without it last.
    Desc(&'static str),
    /// An `i64` fast field, smaller first; documents without it last.
    Asc(&'static str),
}

/// A position in the result order, exclusive: the last hit of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub primary: u64,
    pub uid: String,
}

/// One hit, before its stored fields are read.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub primary: u64,
    pub uid: String,
    pub address: DocAddress,
    pub score: Score,
}

/// Everything the pass found.
#[derive(Debug, Default)]
pub struct Found {
    pub total: u64,
    /// Per facet field, in the order of [`SearchCollector::facets`]: `(value, count)`,
    /// most frequent first, then by value.
    pub facets: Vec<Vec<(String, u64)>>,
    /// At most `limit` hits in result order.
    pub top: Vec<Candidate>,
}

pub struct SearchCollector {
    pub order: Order,
    /// Fast text fields to count values of (at most [`FACETS_MAX`]).
    pub facets: &'static [&'static str],
    pub limit: usize,
    pub after: Option<After>,
    /// Whether scores are computed: only when they order the result (a relevance sort
    /// of a text query). Without them tantivy hands over blocks of documents and skips
    /// BM25, which halves the cost of broad filter-only requests.
    pub scoring: bool,
    /// Most values kept per facet: [`FACET_VALUES_MAX`], or every value for a cluster
    /// node's share of a gathered search (the gathering node cuts the sums).
    pub facet_values_max: usize,
}

/// The order-preserving `u64` of a score: larger scores give larger keys.
pub fn score_key(s: Score) -> u64 {
    let b = s.to_bits();
    u64::from(if b & 0x8000_0000 != 0 { !b } else { b | 0x8000_0000 })
}

/// The order-preserving `u64` of an `i64`.
fn i64_key(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// The primary key of a document. A missing value is 0, after every present one in
/// both directions.
pub fn primary(order: Order, score: Score, value: Option<i64>) -> u64 {
    match (order, value) {
        (Order::Score, _) => score_key(score),
        (_, None) => 0,
        (Order::Asc(_), Some(v)) => (u64::MAX - i64_key(v)).max(1),
        (Order::Desc(_), Some(v)) => i64_key(v).max(1),
    }
}

fn sort_field(order: Order) -> Option<&'static str> {
    match order {
        Order::Score => None,
        Order::Desc(f) | Order::Asc(f) => Some(f),
    }
}

/// A kept hit within a segment; `Ord` puts the *worst* first so a max-heap can evict it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kept {
    primary: u64,
    uid_ord: u64,
    doc: DocId,
    score_bits: u32,
}

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        (Reverse(self.primary), self.uid_ord).cmp(&(Reverse(other.primary), other.uid_ord))
    }
}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

pub struct SegmentSearch {
    segment: SegmentOrdinal,
    order: Order,
    limit: usize,
    total: u64,
    facet_cols: Vec<Option<StrColumn>>,
    facet_ords: Vec<Option<Column<u64>>>,
    facet_counts: Vec<Vec<u32>>,
    uid: Option<StrColumn>,
    uid_ords: Option<Column<u64>>,
    sort_col: Option<Column<i64>>,
    /// The cursor here: its primary key and the first uid ordinal after it.
    after: Option<(u64, u64)>,
    heap: BinaryHeap<Kept>,
    /// Buffers for reading a block of documents' columns at once.
    ords_buf: Vec<Option<u64>>,
    values_buf: Vec<Option<i64>>,
    /// Scored documents not yet counted in the facets: they arrive one by one, and
    /// are counted a block at a time, as unscored ones are.
    pending: Vec<DocId>,
}

impl Collector for SearchCollector {
    type Fruit = Found;
    type Child = SegmentSearch;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<SegmentSearch> {
        let ff = reader.fast_fields();
        let facet_cols: Vec<Option<StrColumn>> = self.facets.iter().take(FACETS_MAX).map(|n| ff.str(n)).collect::<tantivy::Result<_>>()?;
        let facet_ords = facet_cols.iter().map(|c| c.as_ref().map(|c| c.ords().clone())).collect();
        let facet_counts = facet_cols.iter().map(|c| vec![0u32; c.as_ref().map_or(0, |c| c.num_terms())]).collect();
        let uid = ff.str(names::UID)?;
        let uid_ords = uid.as_ref().map(|c| c.ords().clone());
        let sort_col = sort_field(self.order).map(|n| ff.i64(n)).transpose()?;
        let after = match (&self.after, &uid) {
            (Some(a), Some(uid)) => Some((a.primary, first_ord_after(uid, &a.uid)?)),
            (Some(a), None) => Some((a.primary, u64::MAX)),
            (None, _) => None,
        };
        Ok(SegmentSearch {
            segment,
            order: self.order,
            limit: self.limit,
            total: 0,
            facet_cols,
            facet_ords,
            facet_counts,
            uid,
            uid_ords,
            sort_col,
            after,
            heap: BinaryHeap::with_capacity(self.limit + 1),
            ords_buf: vec![None; tantivy::COLLECT_BLOCK_BUFFER_LEN],
            values_buf: vec![None; tantivy::COLLECT_BLOCK_BUFFER_LEN],
            pending: Vec::with_capacity(tantivy::COLLECT_BLOCK_BUFFER_LEN),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn merge_fruits(&self, fruits: Vec<Found>) -> tantivy::Result<Found> {
        let mut total = 0;
        let mut facets: Vec<HashMap<String, u64>> = vec![HashMap::new(); self.facets.len().min(FACETS_MAX)];
        let mut top = Vec::new();
        for f in fruits {
            total += f.total;
            for (i, values) in f.facets.into_iter().enumerate() {
                for (v, n) in values {
                    *facets[i].entry(v).or_default() += n;
                }
            }
            top.extend(f.top);
        }
        top.sort_by(|a, b| b.primary.cmp(&a.primary).then_with(|| a.uid.cmp(&b.uid)));
        top.truncate(self.limit);
        Ok(Found { total, facets: facets.into_iter().map(|f| ranked_facet(f, self.facet_values_max)).collect(), top })
    }
}

/// A facet's values, most frequent first, then by value; at most `max`.
pub fn ranked_facet(counts: HashMap<String, u64>, max: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(max);
    v
}

/// The first ordinal of the segment's uid dictionary whose term sorts after `uid`.
fn first_ord_after(col: &StrColumn, uid: &str) -> tantivy::Result<u64> {
    Ok(match col.dictionary().term_ord_or_next(uid)? {
        tantivy::columnar::TermOrdHit::Exact(o) => o + 1,
        tantivy::columnar::TermOrdHit::Next(o) => o,
    })
}

impl SegmentSearch {
    fn uid_ord(&self, doc: DocId) -> u64 {
        self.uid_ords.as_ref().and_then(|c| c.first(doc)).unwrap_or(u64::MAX)
    }

    /// Counts a scored document in the facets (a block at a time).
    fn count_facets(&mut self, doc: DocId) {
        self.pending.push(doc);
        if self.pending.len() == self.pending.capacity() {
            self.flush_pending();
        }
    }

    fn flush_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.count_facets_block(&pending);
        self.pending = pending;
        self.pending.clear();
    }

    /// Facet counts of a block of documents, one column read per facet.
    fn count_facets_block(&mut self, docs: &[DocId]) {
        for (ords, counts) in self.facet_ords.iter().zip(self.facet_counts.iter_mut()) {
            let Some(col) = ords else { continue };
            for chunk in docs.chunks(self.ords_buf.len()) {
                let buf = &mut self.ords_buf[..chunk.len()];
                buf.fill(None);
                col.first_vals(chunk, buf);
                for o in buf.iter().flatten() {
                    counts[*o as usize] += 1;
                }
            }
        }
    }

    fn keep(&mut self, doc: DocId, score: Score, value: Option<i64>) {
        let primary = primary(self.order, score, value);
        if let Some((after_primary, min_ord)) = self.after {
            if primary > after_primary {
                return;
            }
            if primary == after_primary && self.uid_ord(doc) < min_ord {
                return;
            }
        }
        if self.heap.len() >= self.limit {
            let worst = self.heap.peek().expect("limit is at least one");
            if primary < worst.primary {
                return;
            }
        }
        let kept = Kept { primary, uid_ord: self.uid_ord(doc), doc, score_bits: score.to_bits() };
        if self.heap.len() < self.limit {
            self.heap.push(kept);
        } else if kept < *self.heap.peek().expect("full") {
            self.heap.pop();
            self.heap.push(kept);
        }
    }

    /// The counted values and their counts. The strings are read in one pass over the
    /// dictionary (its ordinals are sorted), not looked up one by one: a lookup decodes
    /// its block from the start, which for a facet of many values costs more than
    /// counting.
    fn facet_values(col: Option<&StrColumn>, counts: &[u32]) -> Vec<(String, u64)> {
        let Some(col) = col else { return Vec::new() };
        let ords: Vec<u64> = counts.iter().enumerate().filter(|(_, &n)| n > 0).map(|(ord, _)| ord as u64).collect();
        let mut out = Vec::with_capacity(ords.len());
        let mut next = ords.iter();
        let read = col.dictionary().sorted_ords_to_term_cb(&ords, |bytes| {
            if let Some(&ord) = next.next() {
                out.push((String::from_utf8_lossy(bytes).into_owned(), u64::from(counts[ord as usize])));
            }
        });
        // A dictionary that cannot be read leaves its facet short rather than failing
        // the search (the counts stay exact for what is shown).
        if let Err(e) = read {
            tracing::warn!(error = %e, "facet dictionary unreadable");
        }
        out
    }
}

impl SegmentCollector for SegmentSearch {
    type Fruit = Found;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.total += 1;
        self.count_facets(doc);
        self.keep(doc, score, self.sort_col.as_ref().and_then(|c| c.first(doc)));
    }

    /// Unscored requests arrive in blocks; columns are read a block at a time.
    fn collect_block(&mut self, docs: &[DocId]) {
        self.total += docs.len() as u64;
        self.count_facets_block(docs);
        for chunk in docs.chunks(self.values_buf.len()) {
            let mut values = std::mem::take(&mut self.values_buf);
            values.fill(None);
            if let Some(col) = &self.sort_col {
                col.first_vals(chunk, &mut values[..chunk.len()]);
            }
            for (&doc, &value) in chunk.iter().zip(&values) {
                self.keep(doc, 0.0, value);
            }
            self.values_buf = values;
        }
    }

    fn harvest(mut self) -> Found {
        self.flush_pending();
        let facets = self.facet_cols.iter().zip(&self.facet_counts).map(|(col, counts)| Self::facet_values(col.as_ref(), counts)).collect();
        let mut top = Vec::with_capacity(self.heap.len());
        for k in self.heap.into_sorted_vec() {
            let mut uid = String::new();
            if let Some(col) = &self.uid {
                let _ = col.ord_to_str(k.uid_ord, &mut uid);
            }
            top.push(Candidate {
                primary: k.primary,
                uid,
                address: DocAddress::new(self.segment, k.doc),
                score: Score::from_bits(k.score_bits),
            });
        }
        Found { total: self.total, facets, top }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order() {
        let scores = [-3.5f32, -0.0, 0.0, 0.25, 1.0, 7.5, 1e9];
        assert!(scores.windows(2).all(|w| score_key(w[0]) <= score_key(w[1])));
        let values = [i64::MIN + 1, -5, 0, 3, 1_000_000_000_000];
        let (desc, asc) = (Order::Desc(names::PRICE), Order::Asc(names::PRICE));
        assert!(values.windows(2).all(|w| primary(desc, 0.0, Some(w[0])) < primary(desc, 0.0, Some(w[1]))));
        assert!(values.windows(2).all(|w| primary(asc, 0.0, Some(w[0])) > primary(asc, 0.0, Some(w[1]))));
    }

    #[test]
    fn missing_values_sort_last_both_ways() {
        for order in [Order::Asc(names::PRICE), Order::Desc(names::PRICE)] {
            assert!(primary(order, 0.0, None) < primary(order, 0.0, Some(1_000_000_000_000)));
            assert!(primary(order, 0.0, None) < primary(order, 0.0, Some(0)));
        }
    }

    #[test]
    fn kept_orders_worst_first() {
        let k = |primary, uid_ord| Kept { primary, uid_ord, doc: 0, score_bits: 0 };
        assert!(k(1, 0) > k(2, 0), "a smaller primary is worse");
        assert!(k(2, 5) > k(2, 1), "a larger uid is worse on a tie");
    }
}
