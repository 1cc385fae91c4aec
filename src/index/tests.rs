//! The index in process: a relevance table over a small fixed corpus (Japanese and
//! Latin queries → expected top hits), filters, facets, sorting, and cursor paging.

use std::sync::Arc;

use proptest::prelude::*;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument};
use tokio::sync::watch;

use super::indexer::{apply_items, Wake};
use super::query::{SearchRequest, Sort};
use super::search::{decode_cursor, SearchResult, SkuIndex};
use super::{register_tokenizer, schema};
use crate::actors::drain::SkuItem;
use crate::domain::brand::SkuState;
use crate::domain::catalog::Catalog;
use crate::domain::stock::{Level, Levels};
use crate::domain::{BrandId, Id, Timestamp};

/// One row of a corpus: brand, brand name, sku, product id, name, category, price, tags,
/// `(location, on_hand, available)`.
type Row<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str, i64, &'a [&'a str], &'a [(&'a str, i64, i64)]);

const CORPUS: &[Row] = &[
    ("b1", "ノースレーベル", "S1", "P1", "レザースニーカー", "shoes/sneakers", 12900, &["新作"], &[("tsukuba", 5, 5)]),
    ("b1", "ノースレーベル", "S2", "P2", "キャンバス トートバッグ", "bags/totes", 3990, &[], &[("tsukuba", 3, 0)]),
    ("b1", "ノースレーベル", "S3", "P3", "オーバーサイズ Tシャツ", "tops/t-shirts", 2990, &["cotton"], &[("osaka", 9, 9)]),
    ("b2", "紺屋商店", "S4", "P4", "ロングスリーブTシャツ", "tops/t-shirts", 3990, &[], &[]),
    ("b2", "紺屋商店", "S5", "P5", "長袖シャツ", "tops/shirts", 5990, &[], &[("tsukuba", 2, 2)]),
    ("b2", "紺屋商店", "S6", "P6", "綿麻 ワイドパンツ", "bottoms/pants", 6990, &[], &[("tsukuba", 1, 1)]),
    ("b2", "紺屋商店", "S7", "P7", "ｽﾆｰｶｰ ﾊｲｶｯﾄ", "shoes/sneakers", 8990, &[], &[]),
    ("b3", "Iron & Co.", "S8", "P8", "Low Top Sneakers", "shoes/sneakers", 9990, &["organic"], &[("tsukuba", 4, 4)]),
    ("b3", "Iron & Co.", "S9", "P9", "Linen Shirt Relaxed Fit", "tops/shirts", 7990, &[], &[]),
    ("b3", "Iron & Co.", "B003-000759-BK-M", "b003-000759", "撥水 マウンテンパーカー", "outerwear/jackets", 19900, &[], &[]),
    ("b3", "Iron & Co.", "B003-000759-BK-L", "b003-000759", "撥水 マウンテンパーカー", "outerwear/jackets", 19900, &[], &[]),
    ("b1", "ノースレーベル", "S12", "P12", "ふわふわ ニット", "tops/knitwear", 4990, &[], &[("osaka", 1, 1)]),
    ("b1", "ノースレーベル", "S13", "P13", "スニーカー", "shoes/sneakers", 5990, &[], &[]),
    ("b1", "ノースレーベル", "S14", "P14", "ランニングシューズ", "shoes/sneakers", 7990, &["スニーカー"], &[]),
];

fn state(row: &Row, updated: i64) -> SkuState {
    let (_, _, _, pid, name, category, price, tags, levels) = *row;
    let levels = levels
        .iter()
        .map(|&(loc, on_hand, available)| {
            (Id::parse(loc).unwrap(), Level { on_hand, reserved: on_hand - available, safety_stock: 0, incoming: 0, ..Level::default() })
        })
        .collect();
    SkuState {
        catalog: Catalog {
            product_id: Some(pid.into()),
            name: name.into(),
            category: Some(category.into()),
            price: Some(price),
            tags: tags.iter().map(|&t| t.into()).collect(),
            ..Catalog::default()
        },
        version: 1,
        stock_version: 1,
        levels: Levels(levels),
        created_at: Timestamp(updated),
        updated_at: Timestamp(updated),
    }
}

fn upsert(row: &Row, updated: i64) -> SkuItem {
    SkuItem::Upsert {
        brand: BrandId::parse(row.0).unwrap(),
        brand_name: row.1.to_string(),
        sku: Id::parse(row.2).unwrap(),
        state: Box::new(state(row, updated)),
        channels: Vec::new(),
    }
}

/// An in-memory index and a writer on it.
struct Fixture {
    writer: IndexWriter<TantivyDocument>,
    reader: IndexReader,
    fields: schema::Fields,
    search: SkuIndex,
}

impl Fixture {
    fn new(rows: &[Row]) -> Fixture {
        let (schema, fields) = schema::build();
        let index = Index::create_in_ram(schema);
        register_tokenizer(&index);
        let writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let reader: IndexReader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().unwrap();
        let search = SkuIndex::new(reader.clone(), fields, watch::channel(0).1, Arc::new(Wake::default()));
        let mut f = Fixture { writer, reader, fields, search };
        f.apply(rows.iter().enumerate().map(|(i, r)| upsert(r, 1_000 + i as i64)).collect());
        f
    }

    fn apply(&mut self, items: Vec<SkuItem>) {
        self.apply_in(items, None);
    }

    /// With `partitions` (cluster mode), documents carry their brand's partition.
    fn apply_in(&mut self, items: Vec<SkuItem>, partitions: Option<u32>) {
        apply_items(&self.writer, &self.fields, items, partitions).unwrap();
        self.writer.commit().unwrap();
        self.reader.reload().unwrap();
    }

    fn run(&self, r: &SearchRequest) -> SearchResult {
        self.search.search(r).unwrap()
    }

    fn q(&self, q: &str) -> SearchResult {
        self.run(&req(q))
    }
}

fn req(q: &str) -> SearchRequest {
    SearchRequest { q: q.into(), limit: 20, ..SearchRequest::default() }
}

fn skus(r: &SearchResult) -> Vec<&str> {
    r.hits.iter().map(|h| h.sku.as_str()).collect()
}

/// Query → the SKUs that must be the top hits, in order, and the total.
const RELEVANCE: &[(&str, &[&str], u64)] = &[
    // The shortest name with the term ranks first; a tag match ranks last. The
    // category (shoes/sneakers, スニーカー) finds S8.
    ("スニーカー", &["S13"], 5),
    ("ﾄｰﾄ", &["S2"], 1),
    ("ｔシャツ", &["S3", "S4"], 2),
    ("Ｔシャツ", &["S3", "S4"], 2),
    ("レザースニーカー", &["S1"], 1),
    ("レザー スニーカー", &["S1"], 1),
    ("綿", &["S6"], 1),
    ("長袖", &["S5"], 1),
    ("ふわ", &["S12"], 1),
    ("ﾊｲｶｯﾄ", &["S7"], 1),
    ("撥水 パーカー", &["B003-000759-BK-L", "B003-000759-BK-M"], 2),
    ("sneakers", &["S8"], 5),
    ("SNEAKER", &["S8"], 5),
    ("linen shirt", &["S9"], 1),
    ("organic", &["S8"], 1),
    // An exact SKU ranks first; the product id, its prefix and a run of its words find both sizes.
    ("b003-000759-bk-m", &["B003-000759-BK-M"], 1),
    ("B003-000759-BK-L", &["B003-000759-BK-L"], 1),
    ("b003-000759", &["B003-000759-BK-L", "B003-000759-BK-M"], 2),
    ("ｂ００３－０００７５９", &["B003-000759-BK-L", "B003-000759-BK-M"], 2),
    ("000759-bk", &["B003-000759-BK-L", "B003-000759-BK-M"], 2),
    ("b003-0007", &["B003-000759-BK-L", "B003-000759-BK-M"], 2),
    ("s1", &["S1"], 1),
    // Brand names.
    ("紺屋", &[], 4),
    ("iron co.", &[], 4),
    ("Iron & Co.", &[], 4),
    ("ノースレーベル スニーカー", &["S13", "S1", "S14"], 3),
    // Nothing.
    ("&", &[], 0),
    ("ゴアテックス", &[], 0),
    ("スニーカー linen", &[], 0),
];

#[test]
fn relevance_table() {
    let f = Fixture::new(CORPUS);
    let mut failures = Vec::new();
    for &(q, top, total) in RELEVANCE {
        let r = f.q(q);
        let got = skus(&r);
        if r.total != total || got.len() < top.len() || got[..top.len()] != *top {
            failures.push(format!("{q:?}: expected total {total} top {top:?}, got total {} {got:?}", r.total));
        }
    }
    assert!(failures.is_empty(), "relevance table:\n{}", failures.join("\n"));
}

#[test]
fn filters_narrow_without_reordering() {
    let f = Fixture::new(CORPUS);
    let with = |mut r: SearchRequest, set: &dyn Fn(&mut SearchRequest)| {
        set(&mut r);
        let mut got: Vec<String> = f.run(&r).hits.into_iter().map(|h| h.sku).collect();
        got.sort();
        got
    };
    assert_eq!(with(req(""), &|r| r.category = Some("tops".into())), ["S12", "S3", "S4", "S5", "S9"]);
    assert_eq!(with(req(""), &|r| r.category = Some("tops/t-shirts".into())), ["S3", "S4"]);
    assert_eq!(with(req(""), &|r| r.category = Some("tops/t".into())), Vec::<String>::new());
    assert_eq!(with(req("スニーカー"), &|r| r.in_stock = true), ["S1", "S8"]);
    assert_eq!(with(req(""), &|r| r.location = Some(Id::parse("osaka").unwrap())), ["S12", "S3"]);
    assert_eq!(with(req("スニーカー"), &|r| r.brand = Some(BrandId::parse("b2").unwrap())), ["S7"]);
    assert_eq!(with(req(""), &|r| (r.price_min, r.price_max) = (Some(5990), Some(7990))), ["S13", "S14", "S5", "S6", "S9"]);
}

#[test]
fn facets_count_the_whole_result() {
    let f = Fixture::new(CORPUS);
    let r = f.q("スニーカー");
    let brands: Vec<(&str, u64)> = r.facets.brand.iter().map(|v| (v.value.as_str(), v.count)).collect();
    assert_eq!(brands, [("b1", 3), ("b2", 1), ("b3", 1)]);
    assert_eq!(r.facets.category.len(), 1);
    assert_eq!(r.facets.category[0].count, 5);
    let all = f.q("");
    assert_eq!(all.total, CORPUS.len() as u64);
    assert_eq!(all.facets.brand.iter().map(|v| v.count).sum::<u64>(), all.total);
}

#[test]
fn facets_keep_only_the_most_frequent_values() {
    use super::collector::FACET_VALUES_MAX;
    let mut f = Fixture::new(&[]);
    // FACET_VALUES_MAX + 10 colours seen once, and one colour (last by name) seen twice.
    let colours: Vec<String> = (0..FACET_VALUES_MAX + 10).map(|i| format!("c{i:03}")).chain(["zzz".into(), "zzz".into()]).collect();
    let items = colours
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut st = state(&CORPUS[0], 1);
            st.catalog.color = Some(c.as_str().into());
            SkuItem::Upsert {
                brand: BrandId::parse("b1").unwrap(),
                brand_name: "b".into(),
                sku: Id::parse(&format!("X{i}")).unwrap(),
                state: Box::new(st),
                channels: Vec::new(),
            }
        })
        .collect();
    f.apply(items);
    let r = f.q("");
    assert_eq!(r.facets.color.len(), FACET_VALUES_MAX);
    assert_eq!((r.facets.color[0].value.as_str(), r.facets.color[0].count), ("zzz", 2), "the most frequent value comes first");
    assert_eq!(r.total, colours.len() as u64);
}

#[test]
fn sorts_by_field_and_breaks_ties_by_brand_and_sku() {
    let f = Fixture::new(CORPUS);
    let sorted = |sort| f.run(&SearchRequest { sort, limit: 100, ..req("") }).hits;
    let prices: Vec<i64> = sorted(Sort::PriceAsc).iter().map(|h| h.price.unwrap()).collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
    let prices: Vec<i64> = sorted(Sort::PriceDesc).iter().map(|h| h.price.unwrap()).collect();
    assert!(prices.windows(2).all(|w| w[0] >= w[1]), "{prices:?}");
    let avail: Vec<i64> = sorted(Sort::AvailableDesc).iter().map(|h| h.available).collect();
    assert!(avail.windows(2).all(|w| w[0] >= w[1]), "{avail:?}");
    assert_eq!(sorted(Sort::UpdatedDesc)[0].sku, "S14", "the last row is the newest");
    let ties: Vec<(String, String)> =
        sorted(Sort::PriceAsc).into_iter().filter(|h| h.price == Some(19900)).map(|h| (h.brand, h.sku)).collect();
    assert_eq!(ties, [("b3".to_string(), "B003-000759-BK-L".to_string()), ("b3".into(), "B003-000759-BK-M".into())]);
}

#[test]
fn an_upsert_replaces_and_a_delete_removes() {
    let mut f = Fixture::new(CORPUS);
    let mut renamed = CORPUS[0];
    (renamed.4, renamed.5) = ("ローファー", "shoes/loafers");
    f.apply(vec![upsert(&renamed, 5_000)]);
    assert_eq!(f.q("スニーカー").total, 4);
    assert_eq!(skus(&f.q("ローファー")), ["S1"]);
    f.apply(vec![SkuItem::Delete { brand: BrandId::parse("b1").unwrap(), sku: Id::parse("S1").unwrap() }]);
    assert_eq!(f.q("ローファー").total, 0);
    assert_eq!(f.q("").total, CORPUS.len() as u64 - 1);
}

/// A batch is applied as one delete of all its SKUs, then the adds: a SKU that comes
/// twice in one batch ends as its last item says, and is never indexed twice.
#[test]
fn a_sku_twice_in_one_batch_ends_as_its_last_item_says() {
    let mut f = Fixture::new(CORPUS);
    let (mut first, mut second) = (CORPUS[0], CORPUS[0]);
    (first.4, second.4) = ("ローファー", "サンダル");
    let s1 = || SkuItem::Delete { brand: BrandId::parse("b1").unwrap(), sku: Id::parse("S1").unwrap() };
    f.apply(vec![upsert(&first, 5_000), upsert(&CORPUS[2], 5_000), upsert(&second, 5_001)]);
    assert_eq!((f.q("ローファー").total, skus(&f.q("サンダル"))), (0, vec!["S1"]));
    assert_eq!(f.q("").total, CORPUS.len() as u64, "S1 and S3 are each indexed once");
    f.apply(vec![upsert(&first, 5_002), s1()]);
    assert_eq!((f.q("ローファー").total, f.q("サンダル").total), (0, 0));
    assert_eq!(f.q("").total, CORPUS.len() as u64 - 1);
    f.apply(vec![s1(), upsert(&first, 5_003)]);
    assert_eq!(skus(&f.q("ローファー")), ["S1"]);
    assert_eq!(f.q("").total, CORPUS.len() as u64);
}

/// `(sku, available, incoming, channels)` of the channel corpus: brand `b1` configures
/// `zozo` (and `ec`), brand `b2` configures nothing.
type ChannelRow<'a> = (&'a str, &'a str, i64, i64, &'a [(&'a str, i64)]);

const CHANNEL_ROWS: &[ChannelRow] = &[
    ("b1", "C1", 5, 0, &[("zozo", 0), ("ec", 5)]),
    ("b1", "C2", 5, 7, &[("zozo", 3), ("ec", 5)]),
    ("b1", "C3", 0, 2, &[("zozo", 0), ("ec", 0)]),
    ("b2", "C4", 4, 0, &[]),
    ("b2", "C5", 0, 0, &[]),
];

fn channel_fixture() -> Fixture {
    let mut f = Fixture::new(&[]);
    let items = CHANNEL_ROWS
        .iter()
        .map(|&(brand, sku, available, incoming, channels)| {
            let mut st = state(&CORPUS[0], 1);
            st.levels = Levels(Box::new([(
                Id::parse("tsukuba").unwrap(),
                Level { on_hand: available, reserved: 0, safety_stock: 0, incoming, ..Level::default() },
            )]));
            SkuItem::Upsert {
                brand: BrandId::parse(brand).unwrap(),
                brand_name: "b".into(),
                sku: Id::parse(sku).unwrap(),
                state: Box::new(st),
                channels: channels.iter().map(|&(c, n)| (Id::parse(c).unwrap(), n)).collect(),
            }
        })
        .collect();
    f.apply(items);
    f
}

#[test]
fn channel_in_stock_uses_the_channel_availability_or_all_locations_where_the_brand_has_no_channels() {
    let f = channel_fixture();
    let with = |channel: Option<&str>, in_stock: bool| {
        let r = SearchRequest { channel: channel.map(|c| Id::parse(c).unwrap()), in_stock, limit: 100, ..req("") };
        let mut got: Vec<(String, Option<i64>)> = f.run(&r).hits.into_iter().map(|h| (h.sku, h.channel_available)).collect();
        got.sort();
        got
    };
    let some = |v: &[(&str, i64)]| v.iter().map(|&(s, n)| (s.to_string(), Some(n))).collect::<Vec<_>>();
    // C1 has stock but none for zozo (its buffer); b2 never configured zozo, so C4 sells what it has.
    assert_eq!(with(Some("zozo"), true), some(&[("C2", 3), ("C4", 4)]));
    assert_eq!(with(Some("ec"), true), some(&[("C1", 5), ("C2", 5), ("C4", 4)]));
    assert_eq!(with(Some("zozo"), false), some(&[("C1", 0), ("C2", 3), ("C3", 0), ("C4", 4), ("C5", 0)]));
    // b1 has channels and not this one (it would refuse a reservation for it): it
    // sells nothing there; b2 has no channels, so it sells what it has.
    assert_eq!(with(Some("other"), true), some(&[("C4", 4)]));
    assert_eq!(with(Some("other"), false), some(&[("C1", 0), ("C2", 0), ("C3", 0), ("C4", 4), ("C5", 0)]));
    let plain = with(None, true);
    assert_eq!(plain.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["C1", "C2", "C4"]);
    assert!(plain.iter().all(|(_, c)| c.is_none()), "no channel asked, no channel_available");
}

#[test]
fn hits_carry_incoming() {
    let f = channel_fixture();
    let r = f.run(&SearchRequest { limit: 100, ..req("") });
    let incoming: Vec<(String, i64)> = r.hits.into_iter().filter(|h| h.incoming > 0).map(|h| (h.sku, h.incoming)).collect();
    let mut incoming = incoming;
    incoming.sort();
    assert_eq!(incoming, [("C2".to_string(), 7), ("C3".to_string(), 2)]);
}

#[test]
fn a_cursor_of_one_channel_does_not_continue_another() {
    let f = channel_fixture();
    let r = SearchRequest { channel: Some(Id::parse("zozo").unwrap()), in_stock: true, limit: 1, ..req("") };
    let cursor = f.run(&r).next_cursor.expect("two hits, one per page");
    assert!(decode_cursor(&r, &cursor).is_ok());
    assert!(decode_cursor(&SearchRequest { channel: Some(Id::parse("ec").unwrap()), ..r.clone() }, &cursor).is_err());
}

/// Walks every page of `r` with page size `limit`.
fn walk(f: &Fixture, r: &SearchRequest, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut page = SearchRequest { limit, ..r.clone() };
    for _ in 0..1000 {
        let res = f.run(&page);
        out.extend(res.hits.into_iter().map(|h| format!("{}/{}", h.brand, h.sku)));
        match res.next_cursor {
            Some(c) => page.after = Some(decode_cursor(&page, &c).unwrap()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

#[test]
fn pages_are_stable_while_documents_change() {
    let mut f = Fixture::new(CORPUS);
    let r = SearchRequest { sort: Sort::PriceAsc, ..req("") };
    let first = f.run(&SearchRequest { limit: 4, ..r.clone() });
    let cursor = first.next_cursor.clone().unwrap();
    // Change a SKU already shown and add one that sorts before the cursor.
    let mut cheap = CORPUS[5];
    cheap.2 = "NEW";
    cheap.6 = 10;
    let mut moved = CORPUS[first.hits.len() - 1];
    moved.4 = "名前変更";
    f.apply(vec![upsert(&cheap, 9_000), upsert(&moved, 9_000)]);
    let page = SearchRequest { limit: 100, after: Some(decode_cursor(&r, &cursor).unwrap()), ..r.clone() };
    let rest: Vec<String> = f.run(&page).hits.into_iter().map(|h| h.sku).collect();
    let shown: Vec<&str> = skus(&first);
    assert!(rest.iter().all(|s| !shown.contains(&s.as_str()) && s != "NEW"), "{rest:?} repeats page one {shown:?}");
    assert_eq!(rest.len() + shown.len(), CORPUS.len());
}

#[test]
fn a_cursor_only_continues_its_own_query() {
    let f = Fixture::new(CORPUS);
    let r = SearchRequest { limit: 2, ..req("スニーカー") };
    let cursor = f.run(&r).next_cursor.unwrap();
    assert!(decode_cursor(&r, &cursor).is_ok());
    assert!(decode_cursor(&SearchRequest { sort: Sort::PriceAsc, ..r.clone() }, &cursor).is_err());
    assert!(decode_cursor(&req("シャツ"), &cursor).is_err());
    assert!(decode_cursor(&r, "not-a-cursor").is_err());
    assert!(decode_cursor(&r, &"A".repeat(5000)).is_err());
}

fn row_strategy() -> impl Strategy<Value = Vec<(i64, u8, bool)>> {
    // (price from a small set so ties are common, brand 0..3, name has the query term)
    prop::collection::vec((prop::sample::select(vec![100i64, 200, 300]), 0u8..3, any::<bool>()), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Walking pages of any size gives exactly the one-page result, for every sort.
    #[test]
    fn paging_equals_one_big_page(rows in row_strategy(), limit in 1usize..7) {
        let names: Vec<String> = (0..rows.len()).map(|i| format!("SKU{i:03}")).collect();
        let corpus: Vec<Row> = rows
            .iter()
            .zip(&names)
            .map(|(&(price, brand, hit), sku)| {
                let brand = ["b1", "b2", "b3"][brand as usize];
                let name = if hit { "ニット セーター" } else { "ニット" };
                (brand, "ブランド", sku.as_str(), "P", name, "tops/knitwear", price, &[][..], &[][..])
            })
            .collect();
        let f = Fixture::new(&corpus);
        for sort in Sort::ALL {
            for q in ["ニット", "セーター"] {
                let r = SearchRequest { sort, ..req(q) };
                let all: Vec<String> =
                    f.run(&SearchRequest { limit: 100, ..r.clone() }).hits.into_iter().map(|h| format!("{}/{}", h.brand, h.sku)).collect();
                prop_assert_eq!(walk(&f, &r, limit), all);
            }
        }
    }
}

mod finds;

/// Cluster mode's gathered search: the shares of disjoint partition sets, merged, make
/// the very pages one search over all of them makes (the same index here, so even the
/// scores agree), cursors included, for each kind of order and for grouped searches.
#[test]
fn merged_shares_of_partitions_page_like_one_search() {
    use super::search::merged;
    const PARTITIONS: u32 = 16;
    let mut f = Fixture::new(&[]);
    f.apply_in(CORPUS.iter().enumerate().map(|(i, r)| upsert(r, 1_000 + i as i64)).collect(), Some(PARTITIONS));
    let mut partitions: Vec<u32> = ["b1", "b2", "b3"].iter().map(|b| crate::cluster::engine::partition_of(b, PARTITIONS)).collect();
    partitions.sort_unstable();
    partitions.dedup();
    assert!(partitions.len() >= 2, "the corpus's brands share one partition: {partitions:?}");
    let (first, rest) = partitions.split_at(1);
    let requests = [
        SearchRequest { limit: 3, ..req("") },
        SearchRequest { limit: 2, ..req("スニーカー") },
        SearchRequest { limit: 4, sort: Sort::parse("price_asc").unwrap(), ..req("") },
        SearchRequest { limit: 2, group_by_product: true, ..req("") },
        SearchRequest { limit: 1, ..req("シャツ") },
    ];
    for r in requests {
        let mut r = r;
        let mut pages = 0;
        loop {
            let one = f.run(&r);
            let shares = vec![f.search.search_part(&r, first).unwrap(), f.search.search_part(&r, rest).unwrap()];
            let gathered = merged(&r, shares);
            assert_eq!(gathered, one, "{:?} page {pages}", r.q);
            pages += 1;
            match one.next_cursor {
                Some(c) => r.after = Some(super::search::decode_cursor(&r, &c).unwrap()),
                None => break,
            }
        }
        assert!(pages > 1 || r.q == "シャツ", "{:?} should take more than one page", r.q);
    }
    // A share keeps to its partitions.
    let all = f.run(&SearchRequest { limit: 100, ..req("") });
    let mine = f.search.search_part(&SearchRequest { limit: 100, ..req("") }, first).unwrap();
    assert!(mine.total > 0 && mine.total < all.total, "{} of {}", mine.total, all.total);
    assert!(mine.hits.iter().all(|h| crate::cluster::engine::partition_of(&h.hit.brand, PARTITIONS) == first[0]));
}
