//! The lazy disjunctions ([`AnyOf`] and [`WordsOrSubstring`]) against an oracle that
//! reads the documents: the same matches and the same scores, alone and inside an
//! intersection (where they are sought rather than advanced), scored and counted.

use proptest::prelude::*;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::{doc, Index, Score, Term};

use super::WordsOrSubstring;
use crate::index::tier::{AnyOf, Combine, Tier};

/// One document: its words (`w0`…`w3`), its grams (`g0`…`g3`), and whether it passes
/// the filter.
type Doc = (Vec<u8>, Vec<u8>, bool);

struct Fields {
    words: Field,
    grams: Field,
    filter: Field,
}

fn index(docs: &[Doc]) -> (Index, Fields) {
    let mut b = Schema::builder();
    let positions = TextOptions::default()
        .set_indexing_options(TextFieldIndexing::default().set_index_option(IndexRecordOption::WithFreqsAndPositions));
    let f = Fields {
        words: b.add_text_field("words", positions.clone()),
        grams: b.add_text_field("grams", positions),
        filter: b.add_text_field("filter", tantivy::schema::STRING),
    };
    let index = Index::create_in_ram(b.build());
    let mut w = index.writer_with_num_threads(1, 15_000_000).expect("writer");
    let text = |prefix: &str, toks: &[u8]| toks.iter().map(|t| format!("{prefix}{t}")).collect::<Vec<_>>().join(" ");
    for (words, grams, pass) in docs {
        w.add_document(doc!(f.words => text("w", words), f.grams => text("g", grams), f.filter => if *pass { "yes" } else { "no" }))
            .expect("add");
    }
    w.commit().expect("commit");
    (index, f)
}

fn term(field: Field, text: &str) -> Term {
    Term::from_field_text(field, text)
}

/// A clause worth `score` wherever it matches, as the query builder makes them (a
/// [`Tier`] passes `seek_danger` through to a phrase, a `ConstScoreQuery` does not).
fn constant(q: Box<dyn Query>, score: Score) -> Box<dyn Query> {
    Box::new(Tier::constant(q, score))
}

fn term_q(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(term(field, text), IndexRecordOption::WithFreqs))
}

fn phrase_q(field: Field, a: &str, b: &str) -> Box<dyn Query> {
    Box::new(PhraseQuery::new(vec![term(field, a), term(field, b)]))
}

fn has(toks: &[u8], t: u8) -> bool {
    toks.contains(&t)
}

fn has_pair(toks: &[u8], a: u8, b: u8) -> bool {
    toks.windows(2).any(|w| w == [a, b])
}

/// The words clauses (`w0` 8, `w1` 4, the phrase `w2 w3` 2; summed), or else the
/// substring (the phrase `g0 g1`, 1).
fn query(f: &Fields) -> Box<dyn Query> {
    let words = AnyOf::new(
        vec![constant(term_q(f.words, "w0"), 8.0), constant(term_q(f.words, "w1"), 4.0), constant(phrase_q(f.words, "w2", "w3"), 2.0)],
        Combine::Sum,
    );
    Box::new(WordsOrSubstring::new(Box::new(words), constant(phrase_q(f.grams, "g0", "g1"), 1.0)))
}

/// What [`query`] should score a document, `None` where it should not match.
fn oracle(d: &Doc) -> Option<Score> {
    let (words, grams, _) = d;
    let w = [(has(words, 0), 8.0), (has(words, 1), 4.0), (has_pair(words, 2, 3), 2.0)];
    let sum: Score = w.iter().filter(|(m, _)| *m).map(|(_, s)| s).sum();
    if w.iter().any(|(m, _)| *m) {
        Some(sum)
    } else {
        has_pair(grams, 0, 1).then_some(1.0)
    }
}

fn scored(index: &Index, q: &dyn Query, n: usize) -> Vec<(u32, Score)> {
    let searcher = index.reader().expect("reader").searcher();
    let mut got: Vec<(u32, Score)> = searcher
        .search(q, &TopDocs::with_limit(n.max(1)).order_by_score())
        .expect("search")
        .into_iter()
        .map(|(s, a)| (a.doc_id, s))
        .collect();
    got.sort_by_key(|(d, _)| *d);
    got
}

fn count(index: &Index, q: &dyn Query) -> usize {
    index.reader().expect("reader").searcher().search(q, &Count).expect("count")
}

fn doc_strategy() -> impl Strategy<Value = Vec<Doc>> {
    let toks = proptest::collection::vec(0u8..4, 0..5);
    proptest::collection::vec((toks.clone(), toks, any::<bool>()), 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn lazy_disjunctions_match_and_score_as_the_oracle(docs in doc_strategy()) {
        let (index, f) = index(&docs);
        let want: Vec<(u32, Score)> = docs.iter().enumerate().filter_map(|(i, d)| oracle(d).map(|s| (i as u32, s))).collect();
        prop_assert_eq!(scored(&index, &*query(&f), docs.len()), want.clone());
        prop_assert_eq!(count(&index, &*query(&f)), want.len());

        let filter = Box::new(ConstScoreQuery::new(term_q(f.filter, "yes"), 0.0));
        let filtered = BooleanQuery::new(vec![(Occur::Must, filter as Box<dyn Query>), (Occur::Must, query(&f))]);
        let want: Vec<(u32, Score)> = want.into_iter().filter(|(i, _)| docs[*i as usize].2).collect();
        prop_assert_eq!(scored(&index, &filtered, docs.len()), want.clone());
        prop_assert_eq!(count(&index, &filtered), want.len());
    }
}
