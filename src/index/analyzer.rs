//! Text analysis for search: pure functions from text to positioned tokens, used for
//! documents (through the tantivy tokenizers [`JaTokenizer`] and [`GramTokenizer`])
//! and for queries, so the two sides can never drift apart.
//!
//! 1. Normalise ([`normalize`]): Unicode NFKC (full-width Latin → ASCII, half-width
//!    katakana → full-width, `ｰ` → `ー`), lowercase, NFKC again (lowercasing can
//!    produce a sequence that NFKC would change), then fold hiragana to katakana
//!    (`にっと` → `ニット`) and a dash after katakana to the long-vowel mark (`ブ-ツ`,
//!    `ブ－ツ`, `ブ―ツ`, `ブ‐ツ`, `ブ−ツ` → `ブーツ`) unless a Latin letter or digit
//!    follows it (`パーカー-M` keeps its separator).
//! 2. Split into runs of *units* (a base character and the combining marks after it):
//!    CJK runs (kanji, katakana including `ー`, hangul), word runs (any other letter or
//!    digit, and a `.` between two digits, so `23.5` stays whole) and separators
//!    (everything else, dropped).
//! 3. A word run is one token at one position, lowercased, cut at [`WORD_CHARS_MAX`]
//!    characters and lightly stemmed when it is an ASCII word ([`s_stem`]: `sneakers` →
//!    `sneaker`, `hoodies` and `hoodie` → `hoody`). In [`Mode::Index`] the same
//!    position also holds the run's *parts*, split where letters meet digits (`23.5cm`
//!    → `23.5`, `cm`; `2way` → `2`, `way`), and, where the run is glued to a CJK run
//!    without a separator, its suffixes before the CJK run and its prefixes after one
//!    (up to [`GLUE_AFFIX_CHARS_MAX`] characters: `2wayvネック` holds `v`, `yv`, … so
//!    `vネック` is found as a phrase). Queries keep the whole run only.
//! 4. A CJK run of n units at position p yields, in [`Mode::Index`], the unigram of
//!    unit i *and* the bigram of units i, i+1 both at position p+i (like Lucene's
//!    CJKBigramFilter with `outputUnigrams`). In [`Mode::Query`] it yields only the
//!    bigrams (or the unigram of a one-unit run). The next token is at p+n in both
//!    modes, so a query term becomes a phrase over the same positions as the document:
//!    any substring of two or more CJK characters is found as a phrase of its bigrams,
//!    and a single character as its unigram.
//! 5. Substrings of Latin and digit text ([`gram_tokens`], the `grams` field): each
//!    *chunk* (a stretch without whitespace or CJK, trimmed of punctuation at its ends)
//!    of at least [`GRAM_CHARS`] characters yields its character trigrams at
//!    consecutive positions, as the FTS5 trigram peer does; a query chunk becomes the
//!    phrase of its trigrams, so `shirt` finds `sweatshirt`, `224` finds
//!    `ay-02241-nv` and `ma-1` finds `2wayma-1`. Ranking puts these under whole words.

use std::borrow::Cow;

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Longest word token, in characters; longer runs are cut (both sides cut the same way).
pub const WORD_CHARS_MAX: usize = 64;

/// Longest suffix (prefix) of a word run glued to a following (preceding) CJK run that
/// is indexed on its own: `vネック` in `2wayvネック`. Longer affixes are still found as
/// substrings through the `grams` field.
pub const GLUE_AFFIX_CHARS_MAX: usize = 8;

/// Length of the character n-grams of the `grams` field: the shortest Latin or digit
/// substring that is found inside a longer word.
pub const GRAM_CHARS: usize = 3;

/// Longest chunk the `grams` field indexes, in characters; longer chunks are cut (both
/// sides cut the same way).
pub const GRAM_CHUNK_CHARS_MAX: usize = 64;

/// The name under which [`JaTokenizer`] is registered with each index.
pub const TOKENIZER_NAME: &str = "zaiko_ja";

/// The name under which [`GramTokenizer`] is registered with the SKU index.
pub const GRAM_TOKENIZER_NAME: &str = "zaiko_grams";

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

/// NFKC, lowercase, NFKC, then the kana folds. ASCII takes a fast path (its NFKC is
/// itself and it holds no kana).
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
    // Text without capitals (Japanese text, mostly) is the NFKC text again: no second
    // check, which took a tenth of the indexer's CPU under a flood of stock changes.
    let lower = if lower == nfkc {
        lower
    } else {
        match is_nfkc_quick(lower.chars()) {
            IsNormalized::Yes => lower,
            _ => lower.nfkc().collect(),
        }
    };
    Cow::Owned(fold_kana(&lower))
}

/// Katakana letters and the long-vowel mark (what a dash after them lengthens).
fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30FA}' | '\u{30FC}')
}

/// Dashes typed for `ー` after katakana (after NFKC, `－` is `-`).
fn is_dash(c: char) -> bool {
    matches!(c, '-' | '\u{2010}' | '\u{2015}' | '\u{2212}')
}

/// Hiragana → katakana (the same offset for the whole block, iteration marks
/// included), then dashes after katakana → `ー`.
fn fold_kana(text: &str) -> String {
    let chars: Vec<char> = text
        .chars()
        .map(|c| match c {
            '\u{3041}'..='\u{3096}' | '\u{309D}' | '\u{309E}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            _ => c,
        })
        .collect();
    let mut out = String::with_capacity(text.len());
    let mut prev: Option<char> = None;
    for (i, &c) in chars.iter().enumerate() {
        let next_is_word = chars.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric());
        let c = if is_dash(c) && prev.is_some_and(is_katakana) && !next_is_word { 'ー' } else { c };
        out.push(c);
        prev = Some(c);
    }
    out
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
/// combining marks that follow it. A mark with no base is a separator; a `.` between
/// two ASCII digits belongs to the word (`23.5`).
fn units(text: &str) -> Vec<(usize, usize, Class)> {
    let mut out: Vec<(usize, usize, Class)> = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        if unicode_normalization::char::is_combining_mark(c) {
            match out.last_mut() {
                Some(last) if last.1 == i && last.2 != Class::Sep => last.1 = end,
                _ => out.push((i, end, Class::Sep)),
            }
            continue;
        }
        let decimal_point = c == '.' && i > 0 && bytes[i - 1].is_ascii_digit() && bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit());
        out.push((i, end, if decimal_point { Class::Word } else { class(c) }));
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
                let glued = Glued { before: i > 0 && units[i - 1].2 == Class::Cjk, after: units.get(j).is_some_and(|u| u.2 == Class::Cjk) };
                word_tokens(&norm[units[i].0..units[j - 1].1], glued, position, mode, &mut out);
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

/// Whether a word run touches a CJK run before or after it (no separator between).
#[derive(Debug, Clone, Copy)]
struct Glued {
    before: bool,
    after: bool,
}

fn word_tokens(run: &str, glued: Glued, position: usize, mode: Mode, out: &mut Vec<Tok>) {
    let run = cut(run, WORD_CHARS_MAX);
    let start = out.len();
    let push = |text: String, out: &mut Vec<Tok>| {
        if !out[start..].iter().any(|t| t.text == text) {
            out.push(Tok { text, position });
        }
    };
    push(word_token(run), out);
    if mode == Mode::Query {
        return;
    }
    for part in parts(run) {
        push(word_token(part), out);
    }
    let bounds: Vec<usize> = run.char_indices().map(|(i, _)| i).skip(1).collect();
    if glued.after {
        for &b in bounds.iter().rev().take(GLUE_AFFIX_CHARS_MAX) {
            push(word_token(&run[b..]), out);
        }
    }
    if glued.before {
        for &b in bounds.iter().take(GLUE_AFFIX_CHARS_MAX) {
            push(word_token(&run[..b]), out);
        }
    }
}

/// The parts of a word run where letters meet digits (a decimal point goes with the
/// digits); one part when there is no such place.
fn parts(run: &str) -> Vec<&str> {
    let numeric = |c: char| c.is_numeric() || c == '.';
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev: Option<bool> = None;
    for (i, c) in run.char_indices() {
        let n = numeric(c);
        if prev.is_some_and(|p| p != n) {
            out.push(&run[start..i]);
            start = i;
        }
        prev = Some(n);
    }
    if !out.is_empty() {
        out.push(&run[start..]);
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

/// The first `chars` characters of `s`.
fn cut(s: &str, chars: usize) -> &str {
    s.char_indices().nth(chars).map_or(s, |(i, _)| &s[..i])
}

/// A word: S-stemmed if plain ASCII letters.
fn word_token(word: &str) -> String {
    if word.len() >= 3 && word.bytes().all(|b| b.is_ascii_lowercase()) {
        return s_stem(word).into_owned();
    }
    word.to_string()
}

/// Harman's S-stemmer (1991), made to agree on singular and plural where apparel
/// names need it: `-ies` and a final `-ie` → `-y` (`hoodies`, `hoodie`, `hoody` →
/// `hoody`), `-sses`/`-xes`/`-ches`/`-shes`/`-zes` lose `-es` (`dresses` → `dress`),
/// other `-es` → `-e`, `-s` → ``, with Harman's exceptions. Input is lowercase ASCII.
pub(crate) fn s_stem(w: &str) -> Cow<'_, str> {
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| w.ends_with(s));
    if w.len() < 3 {
        return Cow::Borrowed(w);
    }
    if ends(&["ies"]) && !ends(&["eies", "aies"]) {
        return Cow::Owned(format!("{}y", &w[..w.len() - 3]));
    }
    if ends(&["ie"]) {
        return Cow::Owned(format!("{}y", &w[..w.len() - 2]));
    }
    if w.len() < 4 {
        return Cow::Borrowed(w);
    }
    if ends(&["sses", "xes", "ches", "shes", "zes"]) {
        return Cow::Borrowed(&w[..w.len() - 2]);
    }
    if ends(&["es"]) && !ends(&["aes", "ees", "oes"]) {
        return Cow::Borrowed(&w[..w.len() - 1]);
    }
    if ends(&["s"]) && !ends(&["us", "ss"]) {
        return Cow::Borrowed(&w[..w.len() - 1]);
    }
    Cow::Borrowed(w)
}

/// The chunks of normalised text that the `grams` field covers: stretches without
/// whitespace or CJK, trimmed of punctuation at both ends, cut at
/// [`GRAM_CHUNK_CHARS_MAX`] characters.
fn gram_chunks(norm: &str) -> impl Iterator<Item = &str> {
    norm.split(|c: char| c.is_whitespace() || is_cjk(c) || !(c.is_ascii() || c.is_alphanumeric()))
        .map(|chunk| cut(chunk.trim_matches(|c: char| !c.is_alphanumeric()), GRAM_CHUNK_CHARS_MAX))
        .filter(|chunk| !chunk.is_empty())
}

/// The trigrams of every chunk of `text` (normalised here), at consecutive positions;
/// chunks are apart by more than one position, so no phrase spans two of them.
pub fn gram_tokens(text: &str) -> Vec<Tok> {
    let norm = normalize(text);
    let mut out = Vec::new();
    let mut position = 0;
    for chunk in gram_chunks(&norm) {
        let starts: Vec<usize> = chunk.char_indices().map(|(i, _)| i).chain(std::iter::once(chunk.len())).collect();
        for k in 0..starts.len().saturating_sub(GRAM_CHARS) {
            out.push(Tok { text: chunk[starts[k]..starts[k + GRAM_CHARS]].to_string(), position: position + k });
        }
        position += starts.len() + 1;
    }
    out
}

/// The trigrams a query term is looked up by in the `grams` field: only a term that is
/// one chunk of at least [`GRAM_CHARS`] characters (a term with CJK in it is found by
/// its bigrams). Only every third trigram and the last are kept, at their offsets:
/// they still cover every character, so the phrase matches exactly the same texts,
/// with a third of the term lookups.
pub fn gram_query(term: &str) -> Option<Vec<Tok>> {
    let norm = normalize(term);
    let mut chunks = gram_chunks(&norm);
    let only = chunks.next()?;
    if chunks.next().is_some() || norm.chars().any(is_cjk) {
        return None;
    }
    let toks = gram_tokens(only);
    let last = toks.len().checked_sub(1)?;
    Some(toks.into_iter().enumerate().filter(|(i, _)| i % GRAM_CHARS == 0 || *i == last).map(|(_, t)| t).collect())
}

/// A whole query term as a keyword: normalised, and S-stemmed when it is one ASCII
/// word (`Sneakers` → `sneaker`). What [`keywords`] indexes a label under.
pub fn keyword(term: &str) -> String {
    let norm = normalize(term);
    if norm.bytes().all(|b| b.is_ascii_lowercase()) {
        return s_stem(&norm).into_owned();
    }
    norm.into_owned()
}

/// The keywords a label (a colour or category name or value, a size) is found by: the
/// whole label and each of its words, each as [`keyword`] makes a term
/// (`T-shirts` → `t-shirts`, `t`, `shirt`; `マフラー・ストール` → itself, `マフラー`,
/// `ストール`; a `.` does not split, so `23.5` stays one). Labels are matched whole,
/// as one term lookup each, not as phrases.
pub fn keywords(label: &str) -> Vec<String> {
    let norm = normalize(label);
    let mut out = vec![keyword(&norm)];
    for part in norm.split(|c: char| !c.is_alphanumeric() && !is_cjk(c) && c != '.').filter(|p| !p.is_empty()) {
        let k = keyword(part);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// The tantivy side of [`tokens`] in [`Mode::Index`].
#[derive(Clone, Default)]
pub struct JaTokenizer;

/// The tantivy side of [`gram_tokens`].
#[derive(Clone, Default)]
pub struct GramTokenizer;

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

impl Tokenizer for GramTokenizer {
    type TokenStream<'a> = JaTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JaTokenStream {
        JaTokenStream { tokens: gram_tokens(text).into_iter(), current: Token::default() }
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
