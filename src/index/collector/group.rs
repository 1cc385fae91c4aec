//! `group=product`: the same single pass, but one hit per group (a product, or a SKU
//! without one), ranked by its best matching variant, with the number of its
//! matching variants and the first [`VARIANTS_MAX`] of them in result order.
//!
//! A group's best variant is only known once every segment has been seen, so the
//! cursor (the best variant's primary key and uid, as for SKUs) is applied after the
//! merge: a group whose best variant was on an earlier page never comes back because
//! one of its other variants sorts after the cursor. The cost is a map entry per
//! matching group and one dictionary lookup for each group's key and kept variants,
//! so a broad grouped search costs more than an ungrouped one.

use std::collections::HashMap;

use super::*;

/// Most variant ids a grouped hit lists.
pub const VARIANTS_MAX: usize = 10;

/// The grouped search: the [`SearchCollector`]'s order, facets, page size and cursor.
pub struct GroupCollector(pub SearchCollector);

/// One group found.
#[derive(Debug, Clone)]
pub struct GroupHit {
    /// Its best variant.
    pub best: Candidate,
    /// How many of its variants matched.
    pub matched: u64,
    /// The uids of its first matching variants, best first (at most [`VARIANTS_MAX`]).
    pub variants: Vec<String>,
}

/// What the grouped pass found: `total` counts groups; facets count SKUs.
#[derive(Debug, Default)]
pub struct GroupFound {
    pub total: u64,
    pub facets: Vec<Vec<(String, u64)>>,
    pub top: Vec<GroupHit>,
}

/// A variant's place in the result order: `(primary, uid)` sorts best first as
/// `(Reverse(primary), uid)`.
type Rank<U> = (Reverse<u64>, U);

struct Acc<U> {
    best: (Rank<U>, DocAddress, Score),
    matched: u64,
    /// Best first, at most [`VARIANTS_MAX`].
    variants: Vec<Rank<U>>,
}

impl<U: Ord + Clone> Acc<U> {
    fn new(rank: Rank<U>, address: DocAddress, score: Score) -> Acc<U> {
        Acc { best: (rank.clone(), address, score), matched: 1, variants: vec![rank] }
    }

    fn add(&mut self, rank: Rank<U>, address: DocAddress, score: Score) {
        self.matched += 1;
        if rank < self.best.0 {
            self.best = (rank.clone(), address, score);
        }
        insert_ranked(&mut self.variants, rank);
    }

    fn merge(&mut self, other: Acc<U>) {
        self.matched += other.matched;
        if other.best.0 < self.best.0 {
            self.best = other.best;
        }
        for r in other.variants {
            insert_ranked(&mut self.variants, r);
        }
    }
}

fn insert_ranked<U: Ord>(v: &mut Vec<Rank<U>>, rank: Rank<U>) {
    if v.len() >= VARIANTS_MAX && rank >= *v.last().expect("full") {
        return;
    }
    let at = v.partition_point(|r| *r < rank);
    v.insert(at, rank);
    v.truncate(VARIANTS_MAX);
}

pub struct GroupSegment {
    base: SegmentSearch,
    group_col: Option<StrColumn>,
    group_ords: Option<Column<u64>>,
    groups: HashMap<u64, Acc<u64>>,
}

/// One segment's groups, with their keys and uids looked up.
pub struct GroupFruit {
    facets: Vec<Vec<(String, u64)>>,
    groups: Vec<(String, Acc<String>)>,
}

impl Collector for GroupCollector {
    type Fruit = GroupFound;
    type Child = GroupSegment;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<GroupSegment> {
        let base = self.0.for_segment(segment, reader)?;
        let group_col = reader.fast_fields().str(names::GROUP)?;
        let group_ords = group_col.as_ref().map(|c| c.ords().clone());
        Ok(GroupSegment { base, group_col, group_ords, groups: HashMap::new() })
    }

    fn requires_scoring(&self) -> bool {
        self.0.scoring
    }

    fn merge_fruits(&self, fruits: Vec<GroupFruit>) -> tantivy::Result<GroupFound> {
        let mut facets: Vec<HashMap<String, u64>> = vec![HashMap::new(); self.0.facets.len().min(FACETS_MAX)];
        let mut groups: HashMap<String, Acc<String>> = HashMap::new();
        for f in fruits {
            for (i, values) in f.facets.into_iter().enumerate() {
                for (v, n) in values {
                    *facets[i].entry(v).or_default() += n;
                }
            }
            for (key, acc) in f.groups {
                match groups.get_mut(&key) {
                    Some(g) => g.merge(acc),
                    None => {
                        groups.insert(key, acc);
                    }
                }
            }
        }
        let total = groups.len() as u64;
        let after = self.0.after.as_ref().map(|a| (Reverse(a.primary), a.uid.clone()));
        let mut top: Vec<Acc<String>> = groups.into_values().filter(|g| after.as_ref().is_none_or(|a| g.best.0 > *a)).collect();
        top.sort_by(|a, b| a.best.0.cmp(&b.best.0));
        top.truncate(self.0.limit);
        let top = top
            .into_iter()
            .map(|g| {
                let ((Reverse(primary), uid), address, score) = g.best;
                GroupHit {
                    best: Candidate { primary, uid, address, score },
                    matched: g.matched,
                    variants: g.variants.into_iter().map(|(_, u)| u).collect(),
                }
            })
            .collect();
        Ok(GroupFound { total, facets: facets.into_iter().map(|f| ranked_facet(f, self.0.facet_values_max)).collect(), top })
    }
}

impl SegmentCollector for GroupSegment {
    type Fruit = GroupFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.base.count_facets(doc);
        let value = self.base.sort_col.as_ref().and_then(|c| c.first(doc));
        let rank = (Reverse(primary(self.base.order, score, value)), self.base.uid_ord(doc));
        let address = DocAddress::new(self.base.segment, doc);
        // Every SKU document has a group; one without would be its own group.
        let key = self.group_ords.as_ref().and_then(|c| c.first(doc)).unwrap_or(u64::MAX);
        match self.groups.get_mut(&key) {
            Some(g) => g.add(rank, address, score),
            None => {
                self.groups.insert(key, Acc::new(rank, address, score));
            }
        }
    }

    fn harvest(self) -> GroupFruit {
        let mut base = self.base;
        base.flush_pending();
        let facets =
            base.facet_cols.iter().zip(&base.facet_counts).map(|(col, counts)| SegmentSearch::facet_values(col.as_ref(), counts)).collect();
        let text = |col: Option<&StrColumn>, ord: u64| {
            let mut s = String::new();
            if let Some(col) = col {
                let _ = col.ord_to_str(ord, &mut s);
            }
            s
        };
        let uid = |ord: u64| text(base.uid.as_ref(), ord);
        let groups = self
            .groups
            .into_iter()
            .map(|(key, g)| {
                let ((p, best_ord), address, score) = g.best;
                let key = if key == u64::MAX { uid(best_ord) } else { text(self.group_col.as_ref(), key) };
                let acc = Acc {
                    best: ((p, uid(best_ord)), address, score),
                    matched: g.matched,
                    variants: g.variants.into_iter().map(|(p, o)| (p, uid(o))).collect(),
                };
                (key, acc)
            })
            .collect();
        GroupFruit { facets, groups }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_keep_the_best_ten_in_order() {
        let mut v: Vec<Rank<u64>> = Vec::new();
        for i in (0..25u64).rev() {
            insert_ranked(&mut v, (Reverse(i % 5), i));
        }
        assert_eq!(v.len(), VARIANTS_MAX);
        assert_eq!(v[0], (Reverse(4), 4));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }
}
