//! The shipment index in process: which shipment an id, order ref, tracking number or
//! SKU finds first, filters, facets, sorts, and cursor paging.

use std::sync::Arc;

use proptest::prelude::*;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument};
use tokio::sync::watch;

use super::query::{ShipmentRequest, ShipmentSort};
use super::{decode_cursor, ShipmentIndex, ShipmentSearchResult};
use crate::actors::drain::ShipmentItem;
use crate::domain::fulfilment::ShipmentStatus::{self, *};
use crate::domain::view::ShipmentSummary;
use crate::domain::{BrandId, Id, Timestamp};
use crate::index::indexer::{apply_shipment_items, Wake};
use crate::index::search::Coverage;
use crate::index::{register_tokenizer, SHIPMENTS};

/// brand, id, order ref, status, tracking number, skus, created (ms).
type Row<'a> = (&'a str, &'a str, Option<&'a str>, ShipmentStatus, Option<&'a str>, &'a [&'a str], i64);

const CORPUS: &[Row] = &[
    ("b1", "SH-1", Some("EC-20261128-001"), Accepted, None, &["S1", "S2"], 1_000),
    ("b1", "SH-2", Some("EC-20261128-002"), Picking, None, &["S1"], 2_000),
    ("b1", "SH-3", Some("EC-20261129-001"), Shipped, Some("4912-3456-7890"), &["S3"], 3_000),
    ("b2", "SH-1", Some("Z-777"), Delivered, Some("YMT-0001"), &["B003-000759-BK-M"], 4_000),
    ("b2", "SH-10", None, Cancelled, None, &["S1"], 5_000),
    ("b2", "ORD-S1", Some("ZZ-1"), Packed, None, &["X9"], 6_000),
];

fn summary(row: &Row, updated: i64) -> ShipmentSummary {
    let (_, id, order_ref, status, tracking, skus, created) = *row;
    ShipmentSummary {
        id: Id::parse(id).unwrap(),
        order_ref: order_ref.map(str::to_string),
        channel: Some(Id::parse("brand_ec").unwrap()),
        status,
        tracking_number: tracking.map(str::to_string),
        carrier: tracking.map(|_| "yamato".to_string()),
        skus: skus.iter().map(|s| Id::parse(s).unwrap()).collect(),
        reservation_id: None,
        created_at: Timestamp(created),
        updated_at: Timestamp(updated),
    }
}

fn upsert(row: &Row, updated: i64) -> ShipmentItem {
    ShipmentItem::Upsert { brand: BrandId::parse(row.0).unwrap(), shipment: Box::new(summary(row, updated)) }
}

struct Fixture {
    writer: IndexWriter<TantivyDocument>,
    reader: IndexReader,
    fields: super::schema::ShipmentFields,
    search: ShipmentIndex,
}

impl Fixture {
    /// Row `i` is updated at `10_000 - i`: the update order is the reverse of creation.
    fn new(rows: &[Row]) -> Fixture {
        let (schema, fields) = (SHIPMENTS.build)();
        let index = Index::create_in_ram(schema);
        register_tokenizer(&index);
        let writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let reader: IndexReader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().unwrap();
        let coverage = Coverage::new(watch::channel(0).1, Arc::new(Wake::default()));
        let search = ShipmentIndex::new(reader.clone(), fields, coverage);
        let mut f = Fixture { writer, reader, fields, search };
        f.apply(rows.iter().enumerate().map(|(i, r)| upsert(r, 10_000 - i as i64)).collect());
        f
    }

    fn apply(&mut self, items: Vec<ShipmentItem>) {
        apply_shipment_items(&self.writer, &self.fields, items, None).unwrap();
        self.writer.commit().unwrap();
        self.reader.reload().unwrap();
    }

    fn run(&self, r: &ShipmentRequest) -> ShipmentSearchResult {
        self.search.search(r).unwrap()
    }
}

fn req(q: &str) -> ShipmentRequest {
    ShipmentRequest { q: q.into(), limit: 20, ..ShipmentRequest::default() }
}

fn ids(r: &ShipmentSearchResult) -> Vec<String> {
    r.hits.iter().map(|h| format!("{}/{}", h.brand, h.id)).collect()
}

/// Query → the shipment that must rank first (where ranking matters), and every hit.
const RELEVANCE: &[(&str, Option<&str>, &[&str])] = &[
    // An exact shipment id first; as a prefix (from 3 characters) it finds the rest.
    ("SH-1", Some("b1/SH-1"), &["b1/SH-1", "b2/SH-1", "b2/SH-10"]),
    ("sh-10", Some("b2/SH-10"), &["b2/SH-10"]),
    ("ｓｈ－３", Some("b1/SH-3"), &["b1/SH-3"]),
    // Order refs: exact, prefix, a word inside.
    ("EC-20261128-002", Some("b1/SH-2"), &["b1/SH-2"]),
    ("ec-20261128", None, &["b1/SH-1", "b1/SH-2"]),
    ("20261129", Some("b1/SH-3"), &["b1/SH-3"]),
    // Tracking numbers, whole or a group of digits.
    ("4912-3456-7890", Some("b1/SH-3"), &["b1/SH-3"]),
    ("3456", Some("b1/SH-3"), &["b1/SH-3"]),
    ("ymt-0001", Some("b2/SH-1"), &["b2/SH-1"]),
    // SKUs: every shipment with the SKU, then ids with the word (`ORD-S1`).
    ("S1", None, &["b1/SH-1", "b1/SH-2", "b2/SH-10", "b2/ORD-S1"]),
    ("b003-000759", Some("b2/SH-1"), &["b2/SH-1"]),
    ("000759-bk", Some("b2/SH-1"), &["b2/SH-1"]),
    // An exact id ranks above the shipments that hold a SKU of that name.
    ("ord-s1", Some("b2/ORD-S1"), &["b2/ORD-S1"]),
    // Every term must match.
    ("S1 ec-20261128-002", Some("b1/SH-2"), &["b1/SH-2"]),
    ("S3 Z-777", None, &[]),
    // Nothing.
    ("&", None, &[]),
    ("SH-99", None, &[]),
];

#[test]
fn relevance_table() {
    let f = Fixture::new(CORPUS);
    let mut failures = Vec::new();
    for &(q, first, all) in RELEVANCE {
        let r = f.run(&req(q));
        let got = ids(&r);
        let mut set = got.clone();
        set.sort();
        let mut want: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        want.sort();
        if r.total != all.len() as u64 || set != want || first.is_some_and(|f| got.first().map(String::as_str) != Some(f)) {
            failures.push(format!("{q:?}: expected first {first:?} of {all:?}, got total {} {got:?}", r.total));
        }
    }
    assert!(failures.is_empty(), "relevance table:\n{}", failures.join("\n"));
}

#[test]
fn a_sku_match_ranks_above_a_word_inside_an_id() {
    let f = Fixture::new(CORPUS);
    let got = ids(&f.run(&req("s1")));
    assert_eq!(got.last().map(String::as_str), Some("b2/ORD-S1"), "{got:?}");
}

#[test]
fn an_exact_key_ranks_above_a_sku_and_scores_are_shown_only_for_relevance() {
    let mut rows = CORPUS.to_vec();
    rows.push(("b1", "S1", None, Accepted, None, &["Q1"], 7_000));
    let f = Fixture::new(&rows);
    let r = f.run(&req("s1"));
    assert_eq!(ids(&r)[0], "b1/S1", "the shipment whose id is the term comes first");
    assert!(r.hits.iter().all(|h| h.score.is_some()));
    assert!(f.run(&req("")).hits.iter().all(|h| h.score.is_none()));
    assert!(f.run(&ShipmentRequest { sort: Some(ShipmentSort::UpdatedDesc), ..req("s1") }).hits.iter().all(|h| h.score.is_none()));
}

#[test]
fn filters_narrow_by_brand_statuses_and_a_half_open_created_range() {
    let f = Fixture::new(CORPUS);
    let with = |set: &dyn Fn(&mut ShipmentRequest)| {
        let mut r = req("");
        set(&mut r);
        let mut got = ids(&f.run(&r));
        got.sort();
        got
    };
    assert_eq!(with(&|r| r.brand = Some(BrandId::parse("b2").unwrap())), ["b2/ORD-S1", "b2/SH-1", "b2/SH-10"]);
    assert_eq!(with(&|r| r.statuses = vec![Picking, Packed]), ["b1/SH-2", "b2/ORD-S1"]);
    assert_eq!(with(&|r| r.statuses = vec![Delivered]), ["b2/SH-1"]);
    assert_eq!(with(&|r| (r.created_from, r.created_to) = (Some(Timestamp(2_000)), Some(Timestamp(4_000)))), ["b1/SH-2", "b1/SH-3"]);
    assert_eq!(with(&|r| r.created_from = Some(Timestamp(5_000))), ["b2/ORD-S1", "b2/SH-10"]);
    assert_eq!(with(&|r| r.created_to = Some(Timestamp(1_000))), Vec::<String>::new());
    let both = with(&|r| {
        r.q = "s1".into();
        r.brand = Some(BrandId::parse("b1").unwrap());
        r.statuses = vec![Accepted];
    });
    assert_eq!(both, ["b1/SH-1"]);
}

#[test]
fn facets_count_brands_and_statuses_of_the_whole_result() {
    let f = Fixture::new(CORPUS);
    let r = f.run(&ShipmentRequest { limit: 1, ..req("sh-1") });
    let brands: Vec<(&str, u64)> = r.facets.brand.iter().map(|v| (v.value.as_str(), v.count)).collect();
    assert_eq!(brands, [("b2", 2), ("b1", 1)]);
    let statuses: Vec<(&str, u64)> = r.facets.status.iter().map(|v| (v.value.as_str(), v.count)).collect();
    assert_eq!(statuses, [("accepted", 1), ("cancelled", 1), ("delivered", 1)]);
    assert_eq!(r.total, 3);
    assert_eq!(r.hits.len(), 1);
}

#[test]
fn sorts_default_to_newest_without_words_and_to_relevance_with_them() {
    let f = Fixture::new(CORPUS);
    let all = ids(&f.run(&req("")));
    assert_eq!(all, ["b2/ORD-S1", "b2/SH-10", "b2/SH-1", "b1/SH-3", "b1/SH-2", "b1/SH-1"], "created_desc by default");
    let updated = ids(&f.run(&ShipmentRequest { sort: Some(ShipmentSort::UpdatedDesc), ..req("") }));
    assert_eq!(updated, ["b1/SH-1", "b1/SH-2", "b1/SH-3", "b2/SH-1", "b2/SH-10", "b2/ORD-S1"]);
    let relevance_without_words = ids(&f.run(&ShipmentRequest { sort: Some(ShipmentSort::Relevance), ..req("") }));
    assert_eq!(relevance_without_words, all);
    assert_eq!(req("x").effective_sort(), ShipmentSort::Relevance);
}

#[test]
fn a_status_change_replaces_the_document_and_a_purge_removes_it() {
    let mut f = Fixture::new(CORPUS);
    let mut moved = CORPUS[1];
    moved.3 = Packed;
    moved.4 = Some("TRK-NEW-1");
    f.apply(vec![upsert(&moved, 20_000)]);
    let r = f.run(&req("trk-new-1"));
    assert_eq!(ids(&r), ["b1/SH-2"]);
    assert_eq!((r.hits[0].status.as_str(), r.hits[0].updated_at.as_str()), ("packed", "1970-01-01T00:00:20.000Z"));
    assert_eq!(f.run(&ShipmentRequest { statuses: vec![Picking], ..req("") }).total, 0);
    f.apply(vec![ShipmentItem::Delete { brand: BrandId::parse("b1").unwrap(), id: Id::parse("SH-2").unwrap() }]);
    assert_eq!(f.run(&req("")).total, CORPUS.len() as u64 - 1);
}

#[test]
fn a_hit_carries_the_summary_fields() {
    let f = Fixture::new(CORPUS);
    let h = f.run(&req("4912-3456-7890")).hits.remove(0);
    assert_eq!(h.id, "SH-3");
    assert_eq!(h.order_ref.as_deref(), Some("EC-20261129-001"));
    assert_eq!(h.status, "shipped");
    assert_eq!(h.channel.as_deref(), Some("brand_ec"));
    assert_eq!((h.tracking_number.as_deref(), h.carrier.as_deref()), (Some("4912-3456-7890"), Some("yamato")));
    assert_eq!(h.skus, ["S3"]);
    assert_eq!(h.reservation_id, None);
    assert_eq!(h.created_at, "1970-01-01T00:00:03.000Z");
    let json = serde_json::to_value(&h).unwrap();
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    assert!(!keys.iter().any(|k| k.contains("ship_to")), "{keys:?}");
}

#[test]
fn pages_are_stable_while_documents_change() {
    let mut f = Fixture::new(CORPUS);
    let r = req("");
    let first = f.run(&ShipmentRequest { limit: 2, ..r.clone() });
    let cursor = first.next_cursor.clone().unwrap();
    // A newer shipment (sorts before the cursor) and a change to one already shown.
    let newer: Row = ("b1", "SH-NEW", None, Accepted, None, &["S1"], 99_000);
    let mut shown = CORPUS[5];
    shown.3 = Cancelled;
    f.apply(vec![upsert(&newer, 1), upsert(&shown, 1)]);
    let rest = ids(&f.run(&ShipmentRequest { limit: 100, after: Some(decode_cursor(&r, &cursor).unwrap()), ..r.clone() }));
    let seen = ids(&first);
    assert!(rest.iter().all(|s| !seen.contains(s) && s != "b1/SH-NEW"), "{rest:?} repeats {seen:?}");
    assert_eq!(rest.len() + seen.len(), CORPUS.len());
}

#[test]
fn a_cursor_only_continues_its_own_request() {
    let f = Fixture::new(CORPUS);
    let r = ShipmentRequest { limit: 1, ..req("s1") };
    let cursor = f.run(&r).next_cursor.unwrap();
    assert!(decode_cursor(&r, &cursor).is_ok());
    assert!(decode_cursor(&ShipmentRequest { statuses: vec![Accepted], ..r.clone() }, &cursor).is_err());
    assert!(decode_cursor(&ShipmentRequest { sort: Some(ShipmentSort::UpdatedDesc), ..r.clone() }, &cursor).is_err());
    assert!(decode_cursor(&ShipmentRequest { created_to: Some(Timestamp(1)), ..r.clone() }, &cursor).is_err());
    assert!(decode_cursor(&req("s2"), &cursor).is_err());
    // The SKU search's cursors are not shipment cursors, even for the same words.
    let sku = crate::index::search::encode_cursor(&crate::index::SearchRequest { q: "s1".into(), ..Default::default() }, &cursor_after());
    assert!(decode_cursor(&r, &sku).is_err());
}

fn cursor_after() -> crate::index::collector::After {
    crate::index::collector::After { primary: 1, uid: "b1/SH-1".into() }
}

/// Walks every page of `r` with page size `limit`.
fn walk(f: &Fixture, r: &ShipmentRequest, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut page = ShipmentRequest { limit, ..r.clone() };
    for _ in 0..1000 {
        let res = f.run(&page);
        out.extend(ids(&res));
        match res.next_cursor {
            Some(c) => page.after = Some(decode_cursor(&page, &c).unwrap()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Walking pages of any size gives exactly the one-page result, for every sort,
    /// with many ties (created and updated times from a small set).
    #[test]
    fn paging_equals_one_big_page(rows in prop::collection::vec((0u8..3, 0i64..3, 0i64..3, any::<bool>()), 1..40), limit in 1usize..7) {
        let names: Vec<String> = (0..rows.len()).map(|i| format!("SH-{i:03}")).collect();
        let corpus: Vec<(Row, i64)> = rows
            .iter()
            .zip(&names)
            .map(|(&(brand, created, updated, tracked), id)| {
                let brand = ["b1", "b2", "b3"][brand as usize];
                let row: Row = (brand, id.as_str(), None, Accepted, tracked.then_some("TRK-1"), &["S1"][..], created);
                (row, updated)
            })
            .collect();
        let mut f = Fixture::new(&[]);
        f.apply(corpus.iter().map(|(row, updated)| upsert(row, *updated)).collect());
        for sort in ShipmentSort::ALL {
            for q in ["", "s1", "trk-1", "sh-0"] {
                let r = ShipmentRequest { sort: Some(sort), ..req(q) };
                let all = ids(&f.run(&ShipmentRequest { limit: 100, ..r.clone() }));
                prop_assert_eq!(walk(&f, &r, limit), all);
            }
        }
    }
}
