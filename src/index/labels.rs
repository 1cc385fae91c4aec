//! Display names of the catalog's colour and category values — Japanese (katakana for
//! colours), English, and for colours the other words people type for them (kanji,
//! hiragana, spellings) — shipped with the server.
//!
//! One table serves three readers: the SKU index (a SKU's colour and category are
//! indexed with their names, so `q=ネイビー` finds `color=navy`), the shipped synonyms
//! ([`super::synonyms`]: each colour's names are one group, so `紺` also finds names
//! that say `ネイビー`), and `GET /v1/search/labels`, which the UI shows. A value that
//! is not in the table is indexed and shown as it is. Changing the table changes
//! what is indexed: bump [`super::schema::INDEX_FORMAT`].

use serde::Serialize;

/// A colour value and its names.
#[derive(Debug, Clone, Copy)]
pub struct ColorLabel {
    /// The stored value (`navy`).
    pub value: &'static str,
    /// What the UI shows in Japanese (`ネイビー`).
    pub ja: &'static str,
    /// What the UI shows in English (`Navy`).
    pub en: &'static str,
    /// Other words for it, searched but not shown (`紺`).
    pub also: &'static [&'static str],
}

/// A category value and its names.
#[derive(Debug, Clone, Copy)]
pub struct CategoryLabel {
    pub value: &'static str,
    pub ja: &'static str,
    pub en: &'static str,
}

const fn c(value: &'static str, ja: &'static str, en: &'static str, also: &'static [&'static str]) -> ColorLabel {
    ColorLabel { value, ja, en, also }
}

const fn k(value: &'static str, ja: &'static str, en: &'static str) -> CategoryLabel {
    CategoryLabel { value, ja, en }
}

/// The colours of the demo and benchmark catalogs, and the usual others.
pub const COLORS: &[ColorLabel] = &[
    c("black", "ブラック", "Black", &["黒", "黒色"]),
    c("white", "ホワイト", "White", &["白", "白色"]),
    c("navy", "ネイビー", "Navy", &["紺", "紺色"]),
    c("gray", "グレー", "Gray", &["grey", "グレイ", "灰色"]),
    c("beige", "ベージュ", "Beige", &[]),
    c("olive", "オリーブ", "Olive", &[]),
    c("brown", "ブラウン", "Brown", &["茶", "茶色"]),
    c("khaki", "カーキ", "Khaki", &[]),
    c("blue", "ブルー", "Blue", &["青", "青色"]),
    c("red", "レッド", "Red", &["赤", "赤色"]),
    c("green", "グリーン", "Green", &["緑", "緑色"]),
    c("pink", "ピンク", "Pink", &[]),
    c("ecru", "エクリュ", "Ecru", &["生成り", "生成"]),
    c("cream", "クリーム", "Cream", &[]),
    c("yellow", "イエロー", "Yellow", &["黄", "黄色"]),
    c("charcoal", "チャコール", "Charcoal", &["チャコールグレー"]),
    c("indigo", "インディゴ", "Indigo", &["藍", "藍色"]),
    c("purple", "パープル", "Purple", &["紫", "紫色"]),
    c("orange", "オレンジ", "Orange", &["橙"]),
    c("ivory", "アイボリー", "Ivory", &[]),
    c("silver", "シルバー", "Silver", &["銀"]),
    c("gold", "ゴールド", "Gold", &["金"]),
];

/// The categories of the demo and benchmark catalogs and their parents.
pub const CATEGORIES: &[CategoryLabel] = &[
    k("tops", "トップス", "Tops"),
    k("tops/t-shirts", "Tシャツ", "T-shirts"),
    k("tops/shirts", "シャツ", "Shirts"),
    k("tops/knitwear", "ニット", "Knitwear"),
    k("tops/sweats", "スウェット", "Sweats"),
    k("bottoms", "ボトムス", "Bottoms"),
    k("bottoms/denim", "デニム", "Denim"),
    k("bottoms/pants", "パンツ", "Pants"),
    k("bottoms/skirts", "スカート", "Skirts"),
    k("outerwear", "アウター", "Outerwear"),
    k("outerwear/jackets", "ジャケット", "Jackets"),
    k("outerwear/coats", "コート", "Coats"),
    k("shoes", "シューズ", "Shoes"),
    k("shoes/sneakers", "スニーカー", "Sneakers"),
    k("shoes/boots", "ブーツ", "Boots"),
    k("shoes/sandals", "サンダル", "Sandals"),
    k("bags", "バッグ", "Bags"),
    k("bags/totes", "トートバッグ", "Tote bags"),
    k("bags/backpacks", "リュック", "Backpacks"),
    k("bags/shoulder", "ショルダーバッグ", "Shoulder bags"),
    k("accessories", "小物", "Accessories"),
    k("accessories/hats", "帽子", "Hats"),
    k("accessories/socks", "靴下", "Socks"),
    k("accessories/scarves", "マフラー・ストール", "Scarves"),
    k("accessories/gloves", "手袋", "Gloves"),
    k("innerwear", "インナー", "Innerwear"),
    k("innerwear/thermal", "機能性インナー", "Thermal"),
];

pub fn color(value: &str) -> Option<&'static ColorLabel> {
    COLORS.iter().find(|l| l.value == value)
}

pub fn category(value: &str) -> Option<&'static CategoryLabel> {
    CATEGORIES.iter().find(|l| l.value == value)
}

/// The words a SKU's colour is indexed under: the value, and its names when known.
pub fn color_words(value: &str) -> Vec<&str> {
    let mut out = vec![value];
    if let Some(l) = color(value) {
        out.extend([l.ja, l.en]);
        out.extend(l.also);
    }
    out
}

/// The words a SKU's category is indexed under: the value and each of its ancestors
/// (`tops/knitwear`, `tops`), each with its names when known.
pub fn category_words(value: &str) -> Vec<&str> {
    let ancestors = value.match_indices('/').map(|(i, _)| &value[..i]);
    let mut out = Vec::new();
    for v in std::iter::once(value).chain(ancestors) {
        out.push(v);
        if let Some(l) = category(v) {
            out.extend([l.ja, l.en]);
        }
    }
    out
}

/// A name in both languages, as `GET /v1/search/labels` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LabelNames {
    pub ja: String,
    pub en: String,
}

/// The body of `GET /v1/search/labels`: the display names of colour and category
/// values, keyed by the stored value.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Labels {
    pub colors: std::collections::BTreeMap<String, LabelNames>,
    pub categories: std::collections::BTreeMap<String, LabelNames>,
}

/// The whole table as the API shows it.
pub fn all() -> Labels {
    let names = |ja: &str, en: &str| LabelNames { ja: ja.to_string(), en: en.to_string() };
    Labels {
        colors: COLORS.iter().map(|l| (l.value.to_string(), names(l.ja, l.en))).collect(),
        categories: CATEGORIES.iter().map(|l| (l.value.to_string(), names(l.ja, l.en))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_and_parents_are_listed() {
        let mut seen = std::collections::HashSet::new();
        assert!(COLORS.iter().all(|l| seen.insert(l.value)));
        assert!(CATEGORIES.iter().all(|l| seen.insert(l.value)));
        for l in CATEGORIES {
            if let Some((parent, _)) = l.value.rsplit_once('/') {
                assert!(category(parent).is_some(), "{} has no parent {parent}", l.value);
            }
        }
    }

    #[test]
    fn words_cover_the_value_its_names_and_its_ancestors() {
        assert_eq!(color_words("navy"), vec!["navy", "ネイビー", "Navy", "紺", "紺色"]);
        assert_eq!(color_words("mauve"), vec!["mauve"]);
        assert_eq!(category_words("tops/knitwear"), vec!["tops/knitwear", "ニット", "Knitwear", "tops", "トップス", "Tops"]);
    }
}
