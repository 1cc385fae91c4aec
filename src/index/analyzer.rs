//! Text analysis for search: one pure function from text to positioned tokens, used
//! for documents (through the tantivy tokenizer [`JaTokenizer`]) and for queries, so
//! the two sides can never drift apart.
//!
//! 1. Normalise: Unicode NFKC (full-width Latin → ASCII, half-width katakana →
//!    full-width, `ｰ` → `ー`), then lowercase, then NFKC again (lowercasing can
//!    produce a sequence that NFKC would change; the second pass makes the function
//!    idempotent).
//! 2. Split into runs of *units* (a base character and the combining marks after it):
//!    CJK runs (kanji, hiragana, katakana including `ー`, hangul), word runs (any other
//!    letter or digit) and separators (everything else, dropped).
//! 3. A word run is one token, lowercased, cut at [`WORD_CHARS_MAX`] characters, and
//!    lightly stemmed when it is an ASCII word (Harman's S-stemmer: `sneakers` →
//!    `sneaker`, `socks` → `sock`), so singular and plural find each other.
//! 4. A CJK run of n units at position p yields, in [`Mode::Index`], the unigram of
//!    unit i *and* the bigram of units i, i+1 both at position p+i (like Lucene's
//!    CJKBigramFilter with `outputUnigrams`). In [`Mode::Query`] it yields only the
//!    bigrams (or the unigram of a one-unit run). The next token is at p+n in both
//!    modes, so a query term becomes a phrase over the same positions as the document:
//!    any substring of two or more CJK characters is found as a phrase of its bigrams,
//!    and a single character as its unigram.
//!
//! Hiragana and katakana are not folded into each other (`くつした` ≠ `クツシタ`), as in
//! the SQLite FTS5 peer; doing so would be a later, versioned change of the index.

use std::borrow::Cow;

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Longest word token, in characters; longer runs are cut (both sides cut the same way).
pub const WORD_CHARS_MAX: usize = 64;

/// The name under which [`JaTokenizer`] is registered with each index.
pub const TOKENIZER_NAME: &str = "zaiko_ja";

/// Whether tokens are produced for a document or for a query term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Index,
    Query,
}

/// One token and its position (in tokens, from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tok {
    pub text: String,
    pub position: usize,
}

/// NFKC, lowercase, NFKC. ASCII takes a fast path (its NFKC is itself).
pub fn normalize(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(text.to_ascii_lowercase());
        }
        return Cow::Borrowed(text);
    }
    let nfkc: String = match is_nfkc_quick(text.chars()) {
        IsNormalized::Yes => text.to_string(),
        _ => text.nfkc().collect(),
    };
    let lower = nfkc.to_lowercase();
    match is_nfkc_quick(lower.chars()) {
        IsNormalized::Yes => Cow::Owned(lower),
        _ => Cow::Owned(lower.nfkc().collect()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Cjk,
    Word,
    Sep,
}

/// Han (with 々 and 〇), hiragana, katakana (with ー, without the middle dot ・), hangul.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3005}' | '\u{3007}'
        | '\u{3041}'..='\u{3096}' | '\u{309D}'..='\u{309F}'
        | '\u{30A1}'..='\u{30FA}' | '\u{30FC}'..='\u{30FF}'
        | '\u{31F0}'..='\u{31FF}'
        | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}'
        | '\u{AC00}'..='\u{D7AF}'
        | '\u{20000}'..='\u{3134F}')
}

fn class(c: char) -> Class {
    if is_cjk(c) {
        Class::Cjk
    } else if c.is_alphanumeric() {
        Class::Word
    } else {
        Class::Sep
    }
}

/// Splits normalised text into units `(start, end, class)`: a base character and the
/// combining marks that follow it. A mark with no base is a separator.
fn units(text: &str) -> Vec<(usize, usize, Class)> {
    let mut out: Vec<(usize, usize, Class)> = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        if unicode_normalization::char::is_combining_mark(c) {
            match out.last_mut() {
                Some(last) if last.1 == i && last.2 != Class::Sep => last.1 = end,
                _ => out.push((i, end, Class::Sep)),
            }
            continue;
        }
        out.push((i, end, class(c)));
    }
    out
}

/// The tokens of `text` (normalised here), in position order.
pub fn tokens(text: &str, mode: Mode) -> Vec<Tok> {
    let norm = normalize(text);
    let units = units(&norm);
    let mut out = Vec::new();
    let mut position = 0;
    let mut i = 0;
    while i < units.len() {
        let class = units[i].2;
        let mut j = i;
        while j < units.len() && units[j].2 == class {
            j += 1;
        }
        match class {
            Class::Sep => {}
            Class::Word => {
                out.push(Tok { text: word_token(&norm[units[i].0..units[j - 1].1], j - i), position });
                position += 1;
            }
            Class::Cjk => {
                cjk_tokens(&norm, &units[i..j], position, mode, &mut out);
                position += j - i;
            }
        }
        i = j;
    }
    out
}

fn cjk_tokens(text: &str, run: &[(usize, usize, Class)], position: usize, mode: Mode, out: &mut Vec<Tok>) {
    let unit = |k: usize| &text[run[k].0..run[k].1];
    let pair = |k: usize| &text[run[k].0..run[k + 1].1];
    for k in 0..run.len() {
        let has_pair = k + 1 < run.len();
        if mode == Mode::Index || run.len() == 1 {
            out.push(Tok { text: unit(k).to_string(), position: position + k });
        }
        if has_pair {
            out.push(Tok { text: pair(k).to_string(), position: position + k });
        }
    }
}

/// A word run: cut to [`WORD_CHARS_MAX`] characters, then S-stemmed if plain ASCII.
fn word_token(word: &str, units: usize) -> String {
    let word = if units > WORD_CHARS_MAX {
        let cut = word.char_indices().nth(WORD_CHARS_MAX).map_or(word.len(), |(i, _)| i);
        &word[..cut]
    } else {
        word
    };
    if word.len() >= 4 && word.bytes().all(|b| b.is_ascii_lowercase()) {
        return s_stem(word).to_string();
    }
    word.to_string()
}

/// Harman's S-stemmer (1991): `-ies` → `-y`, `-es` → `-e`, `-s` → ``, with its
/// exceptions. Input is lowercase ASCII.
fn s_stem(w: &str) -> Cow<'_, str> {
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| w.ends_with(s));
    if ends(&["ies"]) && !ends(&["eies", "aies"]) {
        return Cow::Owned(format!("{}y", &w[..w.len() - 3]));
    }
    if ends(&["es"]) && !ends(&["aes", "ees", "oes"]) {
        return Cow::Borrowed(&w[..w.len() - 1]);
    }
    if ends(&["s"]) && !ends(&["us", "ss"]) {
        return Cow::Borrowed(&w[..w.len() - 1]);
    }
    Cow::Borrowed(w)
}

/// The tantivy side of [`tokens`] in [`Mode::Index`].
#[derive(Clone, Default)]
pub struct JaTokenizer;

pub struct JaTokenStream {
    tokens: std::vec::IntoIter<Tok>,
    current: Token,
}

impl Tokenizer for JaTokenizer {
    type TokenStream<'a> = JaTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JaTokenStream {
        JaTokenStream { tokens: tokens(text, Mode::Index).into_iter(), current: Token::default() }
    }
}

impl TokenStream for JaTokenStream {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some(t) => {
                // Offsets would point into the normalised text; nothing here highlights,
                // so they stay zero rather than pretend to be offsets into the input.
                self.current = Token { offset_from: 0, offset_to: 0, position: t.position, text: t.text, position_length: 1 };
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

#[cfg(test)]
mod tests;
