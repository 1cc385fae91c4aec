//! [`WordsOrSubstring`]: a term's whole-word clauses, or else its substring clause (the
//! phrase of its trigrams in the `grams` field), checked only where no whole word
//! matched.
//!
//! A Latin word's trigram phrase matches every document its whole word does (and the
//! few where it is inside a longer word: `shirt` in `sweatshirt`). A plain union would
//! read the trigrams' positions on all of them, which for a common word (`denim`: one
//! SKU in seven) is most of a search. Here the phrase is checked only on documents
//! that hold all its trigrams and that the words clause has not already matched, with
//! tantivy's `seek_danger` (check one document, skip to a lower bound otherwise). The
//! set matched is exactly words ∪ substring; the score is the words' where they match
//! (every whole-word band is above the substring band, so this is the maximum of the
//! two) and the substring's elsewhere.

use std::fmt;

use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SeekDangerResult, SegmentReader, Term, TERMINATED};

/// Matches what `words` or `substring` match; scores `words` where it matches and
/// `substring` elsewhere. `substring` must score below `words` wherever both match.
pub struct WordsOrSubstring {
    words: Box<dyn Query>,
    substring: Box<dyn Query>,
}

impl WordsOrSubstring {
    pub fn new(words: Box<dyn Query>, substring: Box<dyn Query>) -> WordsOrSubstring {
        WordsOrSubstring { words, substring }
    }
}

impl Clone for WordsOrSubstring {
    fn clone(&self) -> Self {
        WordsOrSubstring { words: self.words.box_clone(), substring: self.substring.box_clone() }
    }
}

impl fmt::Debug for WordsOrSubstring {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WordsOrSubstring({:?}, {:?})", self.words, self.substring)
    }
}

impl Query for WordsOrSubstring {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(WordsOrSubstringWeight {
            words: self.words.weight(enable_scoring)?,
            substring: self.substring.weight(enable_scoring)?,
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.words.query_terms(visitor);
        self.substring.query_terms(visitor);
    }
}

struct WordsOrSubstringWeight {
    words: Box<dyn Weight>,
    substring: Box<dyn Weight>,
}

impl Weight for WordsOrSubstringWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let words = self.words.scorer(reader, boost)?;
        let substring = self.substring.scorer(reader, boost)?;
        let empty = |s: &dyn Scorer| s.is::<EmptyScorer>() || s.doc() == TERMINATED;
        match (empty(&*words), empty(&*substring)) {
            (true, true) => Ok(Box::new(EmptyScorer)),
            (false, true) => Ok(words),
            (true, false) => Ok(substring),
            (false, false) => Ok(Box::new(WordsOrSubstringScorer::new(words, substring))),
        }
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        match self.words.explain(reader, doc) {
            Ok(e) => Ok(e),
            Err(_) => self.substring.explain(reader, doc),
        }
    }
}

/// Where the substring clause stands. It is only ever moved by `seek_danger` with
/// increasing targets, as its contract asks: after a miss it may be in an invalid
/// state, and `seek_danger` is all it may be sent until it finds a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// It is on this document, which it matches.
    On(DocId),
    /// It matches nothing before this document (`TERMINATED`: nothing more).
    NotBefore(DocId),
}

struct WordsOrSubstringScorer {
    words: Box<dyn Scorer>,
    substring: Box<dyn Scorer>,
    sub: Sub,
    doc: DocId,
}

impl WordsOrSubstringScorer {
    fn new(words: Box<dyn Scorer>, substring: Box<dyn Scorer>) -> WordsOrSubstringScorer {
        // A new scorer stands on its first match (or is terminated).
        let sub = Sub::On(substring.doc());
        let doc = words.doc().min(substring.doc());
        WordsOrSubstringScorer { words, substring, sub, doc }
    }

    /// The first substring match in `[from, before)`, if any, checking the phrase only on
    /// documents that hold all its trigrams.
    fn substring_in(&mut self, from: DocId, before: DocId) -> Option<DocId> {
        let mut target = match self.sub {
            Sub::On(d) if d >= from => return (d < before).then_some(d),
            Sub::On(_) => from,
            Sub::NotBefore(d) => d.max(from),
        };
        while target < before {
            match self.substring.seek_danger(target) {
                SeekDangerResult::Found => {
                    self.sub = Sub::On(target);
                    return Some(target);
                }
                SeekDangerResult::SeekLowerBound(next) => {
                    debug_assert!(next > target);
                    self.sub = Sub::NotBefore(next);
                    target = next;
                }
            }
        }
        None
    }

    /// Settles on the first match at or after `target`, with `words` already moved to
    /// its first match at or after `target`.
    fn settle(&mut self, target: DocId) -> DocId {
        let w = self.words.doc();
        self.doc = if w == target { w } else { self.substring_in(target, w).unwrap_or(w) };
        self.doc
    }
}

impl DocSet for WordsOrSubstringScorer {
    fn advance(&mut self) -> DocId {
        if self.doc == TERMINATED {
            return TERMINATED;
        }
        let target = self.doc + 1;
        if self.words.doc() == self.doc {
            self.words.advance();
        } else if self.words.doc() < target {
            self.words.seek(target);
        }
        self.settle(target)
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc >= target {
            return self.doc;
        }
        if self.words.doc() < target {
            self.words.seek(target);
        }
        self.settle(target)
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.words.size_hint().saturating_add(self.substring.size_hint())
    }

    /// The words' cost and one per substring match: the phrase is rarely checked.
    fn cost(&self) -> u64 {
        self.words.cost().saturating_add(u64::from(self.substring.size_hint()))
    }
}

impl Scorer for WordsOrSubstringScorer {
    fn score(&mut self) -> Score {
        if self.words.doc() == self.doc {
            return self.words.score();
        }
        debug_assert_eq!(self.sub, Sub::On(self.doc));
        self.substring.score()
    }
}

#[cfg(test)]
mod tests;
