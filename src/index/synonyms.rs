//! Query-time synonyms: a term of `q` that is in a group also matches the group's
//! other terms (each scored as that term would be; a SKU counts the best of them once).
//!
//! The shipped table is every colour's names from [`super::labels`] (`紺`, `ネイビー`,
//! `navy` …). Garment words are left to the operator: a shipped `パーカー = hoodie`
//! also found every `マウンテンパーカー` (Japanese matches substrings), and each group
//! costs every query of its words. An operator adds groups with `--search-synonyms FILE`
//! (`ZAIKO_SEARCH_SYNONYMS`). The file is UTF-8 text, one group per line, its terms
//! separated by commas (`紺, ネイビー, navy`); blank lines and lines starting with `#`
//! are ignored. A term is one word of a query (no whitespace) and is normalised as a
//! query is (`ＮＡＶＹ` is `navy`, `くろ` is `クロ`). A term in several groups expands
//! to the terms of all of them; expansion is not transitive. A file that breaks a rule
//! stops the server at start with the line that breaks it.
//!
//! Synonyms are applied when a query is built, never indexed: editing the file and
//! restarting is enough, no rebuild.

use std::collections::HashMap;
use std::path::Path;

use super::analyzer::normalize;
use super::labels::COLORS;

/// Largest synonyms file, in bytes.
pub const SYNONYMS_FILE_BYTES_MAX: u64 = 1 << 20;
/// Most groups in a file.
pub const SYNONYM_GROUPS_MAX: usize = 10_000;
/// Most terms in a group.
pub const SYNONYM_GROUP_TERMS_MAX: usize = 32;
/// Longest term, in characters.
pub const SYNONYM_TERM_CHARS_MAX: usize = 64;
/// Most other terms one query term expands to (the first ones, in file order).
pub const SYNONYM_EXPANSIONS_MAX: usize = 16;

/// Why a synonyms file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SynonymsError {
    #[error("cannot read --search-synonyms {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("--search-synonyms {path} is larger than {SYNONYMS_FILE_BYTES_MAX} bytes; split off what is not needed")]
    TooLarge { path: String },
    #[error("--search-synonyms {path} line {line}: {reason}")]
    Line { path: String, line: usize, reason: String },
}

/// Each term and the terms it also matches.
#[derive(Debug, Clone, Default)]
pub struct Synonyms {
    map: HashMap<String, Vec<String>>,
}

impl Synonyms {
    /// The shipped table.
    pub fn shipped() -> Synonyms {
        let mut s = Synonyms::default();
        for l in COLORS {
            let mut group = vec![l.value, l.ja, l.en];
            group.extend(l.also);
            s.add(&group);
        }
        s
    }

    /// The shipped table and the groups of `path`.
    pub fn load(path: &Path) -> Result<Synonyms, SynonymsError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| SynonymsError::Read { path: shown.clone(), source })?;
        if meta.len() > SYNONYMS_FILE_BYTES_MAX {
            return Err(SynonymsError::TooLarge { path: shown });
        }
        let bytes = std::fs::read(path).map_err(|source| SynonymsError::Read { path: shown.clone(), source })?;
        let mut s = Synonyms::shipped();
        s.parse_into(&bytes).map_err(|(line, reason)| SynonymsError::Line { path: shown, line, reason })?;
        Ok(s)
    }

    /// Adds the groups of a file's bytes; `Err((line, reason))` at the first bad line.
    fn parse_into(&mut self, bytes: &[u8]) -> Result<(), (usize, String)> {
        let mut groups = 0;
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let text = std::str::from_utf8(raw).map_err(|_| (line, "is not UTF-8; save the file as UTF-8".to_string()))?;
            let text = text.strip_suffix('\r').unwrap_or(text).trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            groups += 1;
            if groups > SYNONYM_GROUPS_MAX {
                return Err((line, format!("more than {SYNONYM_GROUPS_MAX} groups; keep at most that many")));
            }
            let terms: Vec<&str> = text.split(',').map(str::trim).collect();
            check_group(&terms).map_err(|reason| (line, reason))?;
            self.add(&terms);
        }
        Ok(())
    }

    fn add(&mut self, group: &[&str]) {
        let norm: Vec<String> = group.iter().map(|t| normalize(t).into_owned()).collect();
        for t in &norm {
            let others = self.map.entry(t.clone()).or_default();
            for o in &norm {
                if o != t && !others.contains(o) && others.len() < SYNONYM_EXPANSIONS_MAX {
                    others.push(o.clone());
                }
            }
        }
    }

    /// The other terms a normalised query term also matches.
    pub fn expand(&self, term: &str) -> &[String] {
        self.map.get(term).map_or(&[], Vec::as_slice)
    }
}

fn check_group(terms: &[&str]) -> Result<(), String> {
    if terms.len() < 2 {
        return Err("a group needs at least two terms separated by commas".into());
    }
    if terms.len() > SYNONYM_GROUP_TERMS_MAX {
        return Err(format!("more than {SYNONYM_GROUP_TERMS_MAX} terms in one group; split it"));
    }
    for (k, t) in terms.iter().enumerate() {
        if t.is_empty() {
            return Err(format!("term {} is empty; remove the extra comma", k + 1));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("term {:?} has a space in it; a term is one word of a query", t));
        }
        if t.chars().count() > SYNONYM_TERM_CHARS_MAX {
            return Err(format!("term {} is longer than {SYNONYM_TERM_CHARS_MAX} characters", k + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Synonyms, (usize, String)> {
        let mut s = Synonyms::default();
        s.parse_into(text.as_bytes()).map(|_| s)
    }

    #[test]
    fn shipped_colours_expand_both_ways_and_normalised() {
        let s = Synonyms::shipped();
        assert!(s.expand("紺").iter().any(|t| t == "ネイビー"));
        assert!(s.expand("紺").iter().any(|t| t == "navy"));
        assert!(s.expand("navy").iter().any(|t| t == "紺"));
        assert!(s.expand("黒").iter().any(|t| t == "black"));
        assert!(s.expand("unknown").is_empty());
    }

    #[test]
    fn a_file_adds_groups_and_skips_comments_and_blanks() {
        let s = parsed("# colours\n\n  ボルドー, bordeaux ,ワインレッド\r\n").unwrap();
        assert_eq!(s.expand("bordeaux"), ["ボルドー", "ワインレッド"]);
        assert_eq!(s.expand("ＢＯＲＤＥＡＵＸ"), [] as [&str; 0], "lookups take normalised terms");
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        assert_eq!(parsed("a, b\nlonely\n").unwrap_err().0, 2);
        assert_eq!(parsed("a, , b").unwrap_err(), (1, "term 2 is empty; remove the extra comma".to_string()));
        assert!(parsed("# c\nlight blue, 水色").unwrap_err().1.contains("space"));
        let mut s = Synonyms::default();
        assert_eq!(s.parse_into(b"a, b\n\xff\xfe, c").unwrap_err().0, 2);
        let long = "x".repeat(SYNONYM_TERM_CHARS_MAX + 1);
        assert_eq!(parsed(&format!("a, {long}")).unwrap_err().0, 1);
    }
}
