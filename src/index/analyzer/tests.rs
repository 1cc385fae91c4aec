use proptest::prelude::*;

use super::*;

/// A reference phrase matcher: every query token appears in the document at the same
/// offset from some common base position (what a tantivy phrase query checks).
fn phrase_matches(doc: &[Tok], query: &[Tok]) -> bool {
    let Some(first) = query.first() else { return false };
    doc.iter().filter(|d| d.text == first.text && d.position >= first.position).any(|d| {
        let base = d.position - first.position;
        query.iter().all(|q| doc.iter().any(|t| t.text == q.text && t.position == base + q.position))
    })
}

fn finds(doc: &str, query: &str) -> bool {
    phrase_matches(&tokens(doc, Mode::Index), &tokens(query, Mode::Query))
}

fn texts(text: &str, mode: Mode) -> Vec<String> {
    tokens(text, mode).into_iter().map(|t| t.text).collect()
}

#[test]
fn normalises_width_and_case() {
    assert_eq!(normalize("ＴシャツＡＢＣ"), "tシャツabc");
    assert_eq!(normalize("ｵｰﾊﾞｰｻｲｽﾞ"), "オーバーサイズ");
    assert_eq!(normalize("ﾄｰﾄ"), "トート");
    assert_eq!(normalize("ｂ００３－０００７５９"), "b003-000759");
    assert_eq!(normalize("already plain"), "already plain");
}

#[test]
fn cjk_runs_index_unigrams_and_bigrams_at_shared_positions() {
    let toks = tokens("レザー靴", Mode::Index);
    let got: Vec<(&str, usize)> = toks.iter().map(|t| (t.text.as_str(), t.position)).collect();
    assert_eq!(got, vec![("レ", 0), ("レザ", 0), ("ザ", 1), ("ザー", 1), ("ー", 2), ("ー靴", 2), ("靴", 3)]);
}

#[test]
fn queries_use_bigrams_and_single_characters_use_unigrams() {
    assert_eq!(texts("スニーカー", Mode::Query), vec!["スニ", "ニー", "ーカ", "カー"]);
    assert_eq!(texts("綿", Mode::Query), vec!["綿"]);
    assert_eq!(texts("長袖", Mode::Query), vec!["長袖"]);
}

#[test]
fn the_issue_examples_match() {
    assert!(finds("レザースニーカー", "スニーカー"));
    assert!(finds("トートバッグ", "ﾄｰﾄ"));
    assert!(finds("Tシャツ", "ｔシャツ"));
    assert!(finds("オーバーサイズ Tシャツ", "ｔシャツ"));
    assert!(finds("ロングスリーブTシャツ", "Ｔシャツ"));
    assert!(finds("ｵｰﾊﾞｰｻｲｽﾞ ﾃﾞﾆﾑﾊﾟﾝﾂ", "オーバーサイズ"));
    assert!(finds("綿麻 シャツ", "綿"));
    assert!(finds("UVカット パーカー", "uv"));
}

#[test]
fn phrases_do_not_match_out_of_order_or_apart() {
    assert!(!finds("スニーカー", "カースニ"));
    assert!(!finds("レザー スニーカー", "レザースニーカー"), "a compound needs its characters adjacent");
    assert!(!finds("シャツ", "シャツワンピース"));
}

#[test]
fn latin_words_are_lowercased_and_plurals_folded() {
    assert_eq!(texts("Low Top Sneakers", Mode::Index), vec!["low", "top", "sneaker"]);
    assert!(finds("Crew Socks 3-Pack", "sock"));
    assert!(finds("Running Shoes", "shoe"));
    assert!(finds("Relaxed Fit", "RELAXED"));
    assert_eq!(s_stem("dress"), "dress");
    assert_eq!(s_stem("hoodies"), "hoody");
    assert_eq!(s_stem("hoody"), "hoody");
    assert_eq!(s_stem("status"), "status");
}

#[test]
fn skus_split_on_punctuation_and_keep_their_order() {
    assert_eq!(texts("B001-001503-CR-L", Mode::Query), vec!["b001", "001503", "cr", "l"]);
    assert!(finds("b003-000759-BK-M", "000759-bk"));
    assert!(!finds("b003-000759-BK-M", "bk-000759"));
}

#[test]
fn long_words_are_cut_the_same_way_on_both_sides() {
    let long = "a".repeat(WORD_CHARS_MAX * 3);
    let t = tokens(&long, Mode::Index);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].text.chars().count(), WORD_CHARS_MAX);
    assert!(finds(&long, &long));
}

#[test]
fn separators_and_marks_alone_make_no_tokens() {
    assert!(tokens("  & ・ -- \u{0301}", Mode::Index).is_empty());
    assert!(tokens("", Mode::Query).is_empty());
}

fn gram_finds(doc: &str, query: &str) -> bool {
    gram_query(query).is_some_and(|q| phrase_matches(&gram_tokens(doc), &q))
}

#[test]
fn hiragana_folds_to_katakana_on_both_sides() {
    assert_eq!(normalize("にっと"), "ニット");
    assert_eq!(normalize("ゆったり"), "ユッタリ");
    assert_eq!(normalize("ゔぁ"), "ヴァ");
    assert!(finds("ユッタリ ニット", "ゆったり"));
    assert!(finds("くつした 3足組", "クツシタ"));
}

#[test]
fn dashes_after_katakana_are_long_vowels_unless_a_word_follows() {
    for typed in ["ブ-ツ", "ブ－ツ", "ブ―ツ", "ブ‐ツ", "ブ−ツ"] {
        assert_eq!(normalize(typed), "ブーツ", "{typed}");
        assert!(finds(typed, "ブーツ"), "{typed}");
        assert!(finds("ブーツ", typed), "{typed}");
    }
    assert_eq!(normalize("パーカー-M"), "パーカー-m");
    assert_eq!(normalize("MA-1"), "ma-1");
}

#[test]
fn decimals_stay_whole_and_units_split_off() {
    assert_eq!(texts("23.5cm", Mode::Index), vec!["23.5cm", "23.5", "cm"]);
    assert_eq!(texts("23.5cm", Mode::Query), vec!["23.5cm"]);
    assert!(finds("ブーツ 23.5cm", "23.5"));
    assert!(finds("ブーツ 23.5cm", "cm"));
    assert!(finds("ブーツ 23.5cm", "23.5cm"));
    assert!(!finds("ブーツ 23.5cm", "23"), "a decimal is one number");
    assert_eq!(texts("v2.0.", Mode::Query), vec!["v2.0"]);
}

#[test]
fn runs_glued_to_kana_split_at_the_script_boundary() {
    let t = texts("2WAYVネック", Mode::Index);
    for want in ["2wayv", "2", "wayv", "v", "yv"] {
        assert!(t.contains(&want.to_string()), "{want} not in {t:?}");
    }
    assert!(finds("2WAYVネック セーター", "vネック"));
    assert!(finds("2WAYVネック セーター", "2WAYVネック"));
    assert!(finds("Vネック", "vネック"));
    assert!(finds("ネックV2", "ネックv"), "a prefix after a CJK run");
    assert!(!finds("2WAYVネック", "wネック"));
}

#[test]
fn plurals_and_singulars_meet() {
    for (a, b) in
        [("hoodies", "hoodie"), ("hoodie", "hoody"), ("dresses", "dress"), ("watches", "watch"), ("shoes", "shoe"), ("ties", "tie")]
    {
        assert_eq!(texts(a, Mode::Index), texts(b, Mode::Query), "{a} / {b}");
    }
}

#[test]
fn latin_and_digit_substrings_are_found_through_trigrams() {
    assert!(gram_finds("Heavyweight Sweatshirt", "shirt"));
    assert!(gram_finds("KAZEMACHI", "kaze"));
    assert!(gram_finds("2WAYMA-1ジャケット", "ma-1"));
    assert!(gram_finds("AY-02241-NV-M", "224"));
    assert!(gram_finds("AY-00713-BK-M", "713-BK"));
    assert!(gram_finds("ブーツ 23.5cm", "23.5"));
    assert!(!gram_finds("Sweat Shirt", "atsh"), "no substring spans a space");
    assert!(!gram_finds("AY-00713-BK-M", "713-bkm"));
    assert_eq!(gram_query("ab"), None, "two characters are found as words, not substrings");
    assert_eq!(gram_query("vネック"), None);
    assert_eq!(texts_of(gram_tokens("(shirt)")), vec!["shi", "hir", "irt"]);
    let sparse: Vec<(String, usize)> = gram_query("sweatshirt").unwrap().into_iter().map(|t| (t.text, t.position)).collect();
    assert_eq!(sparse, [("swe".to_string(), 0), ("ats".into(), 3), ("hir".into(), 6), ("irt".into(), 7)]);
}

#[test]
fn labels_are_keywords_whole_and_by_word() {
    assert_eq!(keywords("T-shirts"), ["t-shirts", "t", "shirt"]);
    assert_eq!(keywords("マフラー・ストール"), ["マフラー・ストール", "マフラー", "ストール"]);
    assert_eq!(keywords("tops/knitwear"), ["tops/knitwear", "top", "knitwear"]);
    assert_eq!(keywords("23.5"), ["23.5"]);
    assert_eq!(keyword("Sneakers"), "sneaker");
    assert_eq!(keyword("ﾈｲﾋﾞｰ"), "ネイビー");
    assert_eq!(keyword("にっと"), "ニット");
}

fn texts_of(toks: Vec<Tok>) -> Vec<String> {
    toks.into_iter().map(|t| t.text).collect()
}

/// Names drawn from what the catalog holds, already normalised.
fn name_strategy() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "レザー",
        "スニーカー",
        "ー",
        "シャツ",
        "t",
        "長袖",
        "綿",
        "麻",
        "ふわふわ",
        "くつした",
        "撥水加工",
        " ",
        " ",
        "linen",
        "2.0",
        "-",
        "々",
        "ヴ",
        "한국",
    ]);
    prop::collection::vec(pieces, 1..12).prop_map(|v| v.concat())
}

fn cjk_substrings(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out = Vec::new();
    for i in 0..chars.len() {
        for j in i + 1..=chars.len() {
            if chars[i..j].iter().all(|&c| is_cjk(c)) {
                out.push(chars[i..j].iter().collect());
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn every_cjk_substring_of_a_name_is_found(name in name_strategy()) {
        let doc = tokens(&name, Mode::Index);
        for s in cjk_substrings(&name) {
            prop_assert!(phrase_matches(&doc, &tokens(&s, Mode::Query)), "{s:?} not found in {name:?}");
        }
    }

    #[test]
    fn every_text_finds_itself(text in "\\PC{0,40}") {
        let q = tokens(&text, Mode::Query);
        prop_assert!(q.is_empty() || phrase_matches(&tokens(&text, Mode::Index), &q));
    }

    /// The fast paths (ASCII, text without capitals) give what the plain composition
    /// gives: NFKC, lowercase, NFKC, then the kana folds.
    #[test]
    fn normalisation_is_nfkc_lower_nfkc_folded(text in "(\\PC|[A-Zａ-ｚＡ-Ｚﾊﾟｶﾞｷﾞ\u{212B}\u{0130}ﬁ])\\PC{0,40}") {
        use unicode_normalization::UnicodeNormalization;
        let plain: String = text.nfkc().collect::<String>().to_lowercase().nfkc().collect();
        prop_assert_eq!(normalize(&text).into_owned(), fold_kana(&plain));
    }

    #[test]
    fn normalisation_is_idempotent(text in "\\PC{0,40}") {
        let once = normalize(&text).into_owned();
        prop_assert_eq!(normalize(&once).into_owned(), once.clone());
        prop_assert_eq!(tokens(&once, Mode::Index), tokens(&text, Mode::Index));
    }

    #[test]
    fn every_latin_substring_of_three_is_found(word in "[a-z0-9]{3,20}", start in 0usize..18, len in 3usize..20) {
        let start = start.min(word.len() - 3);
        let end = (start + len).min(word.len());
        prop_assert!(gram_finds(&word, &word[start..end]), "{} in {word}", &word[start..end]);
    }

    #[test]
    fn any_unicode_gives_sane_tokens(text in any::<String>()) {
        let grams = gram_tokens(&text);
        prop_assert!(grams.windows(2).all(|w| w[0].position < w[1].position));
        for mode in [Mode::Index, Mode::Query] {
            let toks = tokens(&text, mode);
            prop_assert!(toks.windows(2).all(|w| w[0].position <= w[1].position));
            for t in &toks {
                prop_assert!(!t.text.is_empty());
                prop_assert!(t.text.len() <= tantivy::tokenizer::MAX_TOKEN_LEN);
            }
        }
    }
}
