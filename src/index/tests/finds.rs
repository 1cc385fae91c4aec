//! Issue 22, "Search: what was missed": each example on a small catalog built to hold
//! it, asserting the exact set (and the order where the issue asks for one).

use super::*;

/// brand, brand name, sku, product id, name, category, colour, size.
type Item<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

const CATALOG: &[Item] = &[
    ("b1", "ノースレーベル", "K1-NV-M", "K1", "ウール ニットベスト", "tops/knitwear", "navy", "M"),
    ("b1", "ノースレーベル", "K1-BK-M", "K1", "ウール ニットベスト", "tops/knitwear", "black", "M"),
    ("b1", "ノースレーベル", "K2-NV-L", "K2", "タートルネックニット", "tops/knitwear", "navy", "L"),
    ("b1", "ノースレーベル", "H1-BK-F", "H1", "ニット帽", "accessories/hats", "black", "F"),
    ("b1", "ノースレーベル", "H2-NV-F", "H2", "ケーブル ニット帽", "accessories/hats", "navy", "F"),
    ("b2", "黒田商店", "T1-WH-M", "T1", "オーバーサイズ Tシャツ", "tops/t-shirts", "white", "M"),
    ("b2", "黒田商店", "T2-WH-L", "T2", "ロゴ Tシャツ", "tops/t-shirts", "white", "L"),
    ("b3", "Iron & Co.", "T3-GY-M", "T3", "ネイビーライン Tシャツ", "tops/t-shirts", "gray", "M"),
    ("b3", "Iron & Co.", "SW1-GY-M", "SW1", "Heavyweight Sweatshirt", "tops/sweats", "gray", "M"),
    ("b3", "Iron & Co.", "SH1-WH-M", "SH1", "Linen Shirt", "tops/shirts", "white", "M"),
    ("b4", "KAZEMACHI", "KZ1-BK-M", "KZ1", "ロングコート", "outerwear/coats", "black", "M"),
    ("b4", "KAZEMACHI", "BT1-BK-235", "BT1", "レザーブーツ 23.5cm", "shoes/boots", "black", "23.5"),
    ("b4", "KAZEMACHI", "BT2-BR-240", "BT2", "ワーク ブ-ツ 24.0cm", "shoes/work", "brown", "24.0"),
    ("b4", "KAZEMACHI", "BT3-BK-250", "BT3", "サイドゴア ブ－ツ", "shoes/work", "black", "25.0"),
    ("b5", "つむぎ堂", "AY-02241-NV-M", "AY-02241", "ゆったり カーディガン", "tops/cardigans", "navy", "M"),
    ("b5", "つむぎ堂", "AY-00224-BK-M", "AY-00224", "ユッタリ パンツ", "bottoms/pants", "black", "M"),
    ("b5", "つむぎ堂", "AY-00713-BK-M", "AY-00713", "リネンシャツ", "tops/shirts", "black", "M"),
    ("b5", "つむぎ堂", "AY-00713-NV-M", "AY-00713", "リネンシャツ", "tops/shirts", "navy", "M"),
    ("b6", "Harbor", "VN1-BK-M", "VN1", "2WAYVネック セーター", "tops/sweaters", "black", "M"),
    ("b6", "Harbor", "MA1-OL-M", "MA1", "2WAYMA-1 ジャケット", "outerwear/jackets", "olive", "M"),
    ("b6", "Harbor", "HD1-GY-M", "HD1", "Zip Hoodie", "tops/sweats", "gray", "M"),
];

fn item(i: &Item, updated: i64) -> SkuItem {
    let &(brand, brand_name, sku, pid, name, category, color, size) = i;
    let mut st = state(&CORPUS[0], updated);
    st.catalog = Catalog {
        product_id: Some(pid.into()),
        name: name.into(),
        category: Some(category.into()),
        color: Some(color.into()),
        size: Some(size.into()),
        ..Catalog::default()
    };
    SkuItem::Upsert {
        brand: BrandId::parse(brand).unwrap(),
        brand_name: brand_name.to_string(),
        sku: Id::parse(sku).unwrap(),
        state: Box::new(st),
        channels: Vec::new(),
    }
}

pub(super) fn catalog_fixture() -> Fixture {
    let mut f = Fixture::new(&[]);
    f.apply(CATALOG.iter().enumerate().map(|(i, it)| item(it, 1_000 + i as i64)).collect());
    f
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort();
    v
}

/// Query → every SKU it finds, as a set.
const SETS: &[(&str, &[&str])] = &[
    // Colours by value, display name and synonym (kanji).
    ("navy", &["AY-00713-NV-M", "AY-02241-NV-M", "H2-NV-F", "K1-NV-M", "K2-NV-L", "T3-GY-M"]),
    ("ネイビー", &["AY-00713-NV-M", "AY-02241-NV-M", "H2-NV-F", "K1-NV-M", "K2-NV-L", "T3-GY-M"]),
    ("紺", &["AY-00713-NV-M", "AY-02241-NV-M", "H2-NV-F", "K1-NV-M", "K2-NV-L", "T3-GY-M"]),
    // The synonym 黒 also finds the brand 黒田商店 (ranked below, see ORDERS).
    (
        "black",
        &["AY-00224-BK-M", "AY-00713-BK-M", "BT1-BK-235", "BT3-BK-250", "H1-BK-F", "K1-BK-M", "KZ1-BK-M", "VN1-BK-M", "T1-WH-M", "T2-WH-L"],
    ),
    (
        "ブラック",
        &["AY-00224-BK-M", "AY-00713-BK-M", "BT1-BK-235", "BT3-BK-250", "H1-BK-F", "K1-BK-M", "KZ1-BK-M", "VN1-BK-M", "T1-WH-M", "T2-WH-L"],
    ),
    // Categories by display name; sizes by value.
    ("ジャケット", &["MA1-OL-M"]),
    ("knitwear", &["K1-BK-M", "K1-NV-M", "K2-NV-L"]),
    ("tシャツ l", &["T2-WH-L"]),
    // Latin inside a word.
    ("kaze", &["BT1-BK-235", "BT2-BR-240", "BT3-BK-250", "KZ1-BK-M"]),
    ("sweat", &["HD1-GY-M", "SW1-GY-M"]),
    // Numbers and units; digit runs inside codes.
    ("23.5", &["BT1-BK-235"]),
    ("cm", &["BT1-BK-235", "BT2-BR-240"]),
    ("224", &["AY-00224-BK-M", "AY-02241-NV-M"]),
    ("713-BK", &["AY-00713-BK-M"]),
    // Letters glued across scripts.
    ("2way", &["MA1-OL-M", "VN1-BK-M"]),
    ("vネック", &["VN1-BK-M"]),
    ("2WAYVネック", &["VN1-BK-M"]),
    ("ma-1", &["MA1-OL-M"]),
    // Kana and long-vowel variants.
    ("にっと", &["H1-BK-F", "H2-NV-F", "K1-BK-M", "K1-NV-M", "K2-NV-L"]),
    ("ゆったり", &["AY-00224-BK-M", "AY-02241-NV-M"]),
    ("ユッタリ", &["AY-00224-BK-M", "AY-02241-NV-M"]),
    ("ブーツ", &["BT1-BK-235", "BT2-BR-240", "BT3-BK-250"]),
    // Plurals.
    ("hoodies", &["HD1-GY-M"]),
    ("hoodie", &["HD1-GY-M"]),
];

#[test]
fn what_was_missed_is_found() {
    let f = catalog_fixture();
    let mut failures = Vec::new();
    for &(q, want) in SETS {
        let r = f.run(&SearchRequest { limit: 100, ..req(q) });
        let got = sorted(skus(&r));
        if got != sorted(want.to_vec()) {
            failures.push(format!("{q:?}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "issue 22 examples:\n{}", failures.join("\n"));
}

/// Query → its first hits, as consecutive groups: each group is a set (the order
/// within it is BM25's), and every group ranks above the next.
const ORDERS: &[(&str, &[&[&str]])] = &[
    // A name match above the colour.
    ("ネイビー", &[&["T3-GY-M"], &["AY-00713-NV-M", "AY-02241-NV-M", "H2-NV-F", "K1-NV-M", "K2-NV-L"]]),
    // Black things above the brand whose name has 黒 in it.
    (
        "黒",
        &[
            &["AY-00224-BK-M", "AY-00713-BK-M", "BT1-BK-235", "BT3-BK-250", "H1-BK-F", "K1-BK-M", "KZ1-BK-M", "VN1-BK-M"],
            &["T1-WH-M", "T2-WH-L"],
        ],
    ),
    // Knits (name and category) above knit hats (name only).
    ("ニット", &[&["K1-BK-M", "K1-NV-M", "K2-NV-L"], &["H1-BK-F", "H2-NV-F"]]),
    // A whole word in the name above the category (shirts, T-shirts), above a substring.
    ("shirt", &[&["SH1-WH-M"], &["AY-00713-BK-M", "AY-00713-NV-M", "T1-WH-M", "T2-WH-L", "T3-GY-M"], &["SW1-GY-M"]]),
    // Black things (the colour, through its synonyms) above the brand named with 黒.
    (
        "black",
        &[
            &["AY-00224-BK-M", "AY-00713-BK-M", "BT1-BK-235", "BT3-BK-250", "H1-BK-F", "K1-BK-M", "KZ1-BK-M", "VN1-BK-M"],
            &["T1-WH-M", "T2-WH-L"],
        ],
    ),
];

#[test]
fn ranking_puts_names_over_brands_words_over_substrings_and_counts_the_category() {
    let f = catalog_fixture();
    let mut failures = Vec::new();
    for &(q, groups) in ORDERS {
        let r = f.run(&SearchRequest { limit: 100, ..req(q) });
        let got = skus(&r);
        let mut at = 0;
        for group in groups {
            let end = (at + group.len()).min(got.len());
            if sorted(got[at..end].to_vec()) != sorted(group.to_vec()) {
                failures.push(format!("{q:?}: expected {groups:?} in this order, got {got:?}"));
                break;
            }
            at = end;
        }
    }
    assert!(
        failures.is_empty(),
        "ranking:
{}",
        failures.join(
            "
"
        )
    );
}
