//! Rows of an import file: the CSV header check, and each row (CSV record or NDJSON
//! line) turned into a checked command or a row error. Pure; no I/O.
//!
//! Columns are the fields of the matching JSON endpoint:
//! - stock: `sku`, `location`, and exactly one of `on_hand` (set) or `delta` (adjust);
//!   optional `reason`, `expected_version`.
//! - catalog: `sku`, `name`; optional `product_id`, `color`, `size`, `category`,
//!   `price`, `tags` (`|`-separated in CSV), and `attributes.<key>` columns (CSV) or an
//!   `attributes` object (NDJSON).
//! - shipment_status: `shipment_id`, `status` (`picking`, `packed`, `shipped`,
//!   `delivered` or `cancelled`); optional `tracking_number`, `carrier` (1..=200
//!   characters, as in `POST .../shipments/{id}/status`).
//!
//! - transfers: `id`, `origin`, `destination`, `sku`, `quantity` — a row per line of
//!   a transfer, the rows of one transfer (same `id`) next to each other.
//! - returns: `id`, `shipment_id`, `reason`, `sku`, `quantity` — likewise per return.
//!
//! A stock row may instead of `on_hand` or `delta` name an `op` (`mark_unsellable`,
//! `release_unsellable`, `dispose`, `set_safety_stock`) with its `quantity`, as the
//! stock-change ops of those names.
//!
//! An unknown or missing column makes the whole file unusable (422 on upload): a
//! misspelt column silently ignored would import the wrong thing. An empty CSV cell
//! is an absent optional field.

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::Deserialize;

use crate::domain::brand::StockChangeCmd;
use crate::domain::catalog::{Catalog, SkuInput};
use crate::domain::fulfilment::{ShipmentStatus, StatusCmd};
use crate::domain::import::{problems_detail, ImportKind};
use crate::domain::stock::{StockOp, QUANTITY_MAX};
use crate::domain::text::check_text;
use crate::domain::{FieldError, Id};
/// Wrong column names a header error lists (the rest are counted).
const COLUMNS_LISTED_MAX: usize = 10;
/// Characters of a value or column name an error message repeats.
const SHOWN_CHARS_MAX: usize = 40;

/// `v` quoted, cut to [`SHOWN_CHARS_MAX`] characters: what an error message repeats
/// of the input, so a hostile value cannot make the message as large as itself.
fn shown(v: &str) -> String {
    match v.char_indices().nth(SHOWN_CHARS_MAX) {
        None => format!("{v:?}"),
        Some((cut, _)) => format!("{:?}…", &v[..cut]),
    }
}

/// Names for an error message: at most [`COLUMNS_LISTED_MAX`], each [`shown`].
fn listed<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = names.len();
    let mut out: Vec<String> = names.take(COLUMNS_LISTED_MAX).map(shown).collect();
    if n > COLUMNS_LISTED_MAX {
        out.push(format!("and {} more", n - COLUMNS_LISTED_MAX));
    }
    format!("[{}]", out.join(", "))
}

/// A checked row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Stock(StockChangeCmd),
    Catalog(Id, Catalog),
    ShipmentStatus(StatusCmd),
    /// A row of a transfer or return (its `id`), with its line or what is wrong with
    /// it: a row that names its document but is wrong makes the whole document fail.
    Document(Id, Result<DocLine, String>),
}

/// One line of a transfer or return document, as a row gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocLine {
    Transfer { origin: Id, destination: Id, sku: Id, quantity: i64 },
    Return { shipment_id: Id, reason: CompactString, sku: Id, quantity: i64 },
}

/// Where each known column is in a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    kind: ImportKind,
    index: BTreeMap<String, usize>,
    /// `attributes.<key>` columns: (key, index).
    attributes: Vec<(String, usize)>,
    pub count: usize,
}

const STOCK_COLUMNS: [&str; 8] = ["sku", "location", "on_hand", "delta", "op", "quantity", "reason", "expected_version"];
const CATALOG_COLUMNS: [&str; 8] = ["sku", "name", "product_id", "color", "size", "category", "price", "tags"];
const SHIPMENT_STATUS_COLUMNS: [&str; 4] = ["shipment_id", "status", "tracking_number", "carrier"];
const TRANSFER_COLUMNS: [&str; 5] = ["id", "origin", "destination", "sku", "quantity"];
const RETURN_COLUMNS: [&str; 5] = ["id", "shipment_id", "reason", "sku", "quantity"];
/// The ops a stock row names in its `op` column (the others have columns of their own).
const STOCK_ROW_OPS: [&str; 4] = ["mark_unsellable", "release_unsellable", "dispose", "set_safety_stock"];

/// Checks a CSV header for `kind`; the error says which columns are wrong.
pub fn check_header(kind: ImportKind, header: &[&str]) -> Result<Columns, String> {
    let (known, required): (&[&str], &[&str]) = match kind {
        ImportKind::Stock => (&STOCK_COLUMNS, &["sku", "location"]),
        ImportKind::Catalog => (&CATALOG_COLUMNS, &["sku", "name"]),
        ImportKind::ShipmentStatus => (&SHIPMENT_STATUS_COLUMNS, &["shipment_id", "status"]),
        ImportKind::Transfers => (&TRANSFER_COLUMNS, &TRANSFER_COLUMNS),
        ImportKind::Returns => (&RETURN_COLUMNS, &RETURN_COLUMNS),
    };
    let mut cols = Columns { kind, index: BTreeMap::new(), attributes: Vec::new(), count: header.len() };
    let mut unknown: Vec<&str> = Vec::new();
    for (i, raw) in header.iter().enumerate() {
        let name = raw.trim().trim_start_matches('\u{feff}');
        if kind == ImportKind::Catalog {
            if let Some(key) = name.strip_prefix("attributes.").filter(|k| !k.is_empty()) {
                cols.attributes.push((key.to_string(), i));
                continue;
            }
        }
        if !known.contains(&name) || cols.index.insert(name.to_string(), i).is_some() {
            unknown.push(name);
        }
    }
    let missing: Vec<&str> = required.iter().filter(|c| !cols.index.contains_key(**c)).copied().collect();
    let mut problems = Vec::new();
    if !unknown.is_empty() {
        problems.push(format!("unknown or repeated columns {}", listed(unknown.into_iter())));
    }
    if !missing.is_empty() {
        problems.push(format!("missing columns {}", listed(missing.into_iter())));
    }
    if kind == ImportKind::Stock {
        let has = |c: &str| cols.index.contains_key(c);
        if [has("on_hand"), has("delta"), has("op")].iter().filter(|h| **h).count() != 1 {
            problems.push("give exactly one of the columns on_hand (set), delta (adjust) or op (with quantity)".into());
        } else if has("op") != has("quantity") {
            problems.push("give the columns op and quantity together".into());
        }
    }
    if problems.is_empty() {
        Ok(cols)
    } else {
        Err(format!("{}; {} columns are {}", problems.join("; "), kind.as_str(), known.join(", ")))
    }
}

fn cell<'a>(cols: &Columns, fields: &[&'a str], name: &str) -> Option<&'a str> {
    cols.index.get(name).and_then(|&i| fields.get(i)).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn id(field: &str, v: Option<&str>) -> Result<Id, String> {
    let v = v.ok_or_else(|| format!("{field}: required"))?;
    Id::parse(v).map_err(|e| format!("{field}: {e}"))
}

fn number<T: std::str::FromStr>(field: &str, v: Option<&str>) -> Result<Option<T>, String> {
    v.map(|s| s.parse::<T>().map_err(|_| format!("{field}: {} is not an integer", shown(s)))).transpose()
}

/// Parses one CSV record (already split into fields).
pub fn csv_row(cols: &Columns, fields: &[&str]) -> Result<Row, String> {
    if fields.len() != cols.count {
        return Err(format!("has {} fields, the header has {}", fields.len(), cols.count));
    }
    match cols.kind {
        ImportKind::Stock => {
            let input = StockInput {
                sku: id("sku", cell(cols, fields, "sku"))?,
                location: id("location", cell(cols, fields, "location"))?,
                on_hand: number("on_hand", cell(cols, fields, "on_hand"))?,
                delta: number("delta", cell(cols, fields, "delta"))?,
                op: cell(cols, fields, "op").map(CompactString::from),
                quantity: number("quantity", cell(cols, fields, "quantity"))?,
                reason: cell(cols, fields, "reason").map(CompactString::from),
                expected_version: number("expected_version", cell(cols, fields, "expected_version"))?,
            };
            stock(input)
        }
        ImportKind::Catalog => {
            let opt = |name: &str| cell(cols, fields, name).map(CompactString::from);
            let input = CatalogInput {
                sku: id("sku", cell(cols, fields, "sku"))?,
                name: opt("name").ok_or("name: required")?,
                product_id: opt("product_id"),
                color: opt("color"),
                size: opt("size"),
                category: opt("category"),
                price: number("price", cell(cols, fields, "price"))?,
                tags: cell(cols, fields, "tags").map(|t| t.split('|').map(|x| CompactString::from(x.trim())).collect()).unwrap_or_default(),
                attributes: cols
                    .attributes
                    .iter()
                    .filter_map(|(k, i)| {
                        fields
                            .get(*i)
                            .filter(|v| !v.trim().is_empty())
                            .map(|v| (CompactString::from(k.as_str()), CompactString::from(v.trim())))
                    })
                    .collect(),
            };
            catalog(input)
        }
        ImportKind::ShipmentStatus => {
            let opt = |name: &str| cell(cols, fields, name).map(CompactString::from);
            let input = ShipmentStatusInput {
                shipment_id: id("shipment_id", cell(cols, fields, "shipment_id"))?,
                status: opt("status").ok_or("status: required")?,
                tracking_number: opt("tracking_number"),
                carrier: opt("carrier"),
            };
            shipment_status(input)
        }
        ImportKind::Transfers | ImportKind::Returns => {
            let doc = id("id", cell(cols, fields, "id"))?;
            let c = |name: &str| cell(cols, fields, name);
            let line = match cols.kind {
                ImportKind::Transfers => (|| {
                    transfer_line(TransferRow {
                        _id: None,
                        origin: id("origin", c("origin"))?,
                        destination: id("destination", c("destination"))?,
                        sku: id("sku", c("sku"))?,
                        quantity: number("quantity", c("quantity"))?.ok_or("quantity: required")?,
                    })
                })(),
                _ => (|| {
                    return_line(ReturnRow {
                        _id: None,
                        shipment_id: id("shipment_id", c("shipment_id"))?,
                        reason: c("reason").map(CompactString::from).ok_or("reason: required")?,
                        sku: id("sku", c("sku"))?,
                        quantity: number("quantity", c("quantity"))?.ok_or("quantity: required")?,
                    })
                })(),
            };
            Ok(Row::Document(doc, line))
        }
    }
}

#[derive(Deserialize)]
struct DocumentId {
    id: Id,
}

/// The fields of a transfer row (NDJSON: with its `id`, checked before).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRow {
    #[serde(default, rename = "id")]
    _id: Option<serde::de::IgnoredAny>,
    origin: Id,
    destination: Id,
    sku: Id,
    quantity: i64,
}

/// The fields of a return row (NDJSON: with its `id`, checked before).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnRow {
    #[serde(default, rename = "id")]
    _id: Option<serde::de::IgnoredAny>,
    shipment_id: Id,
    reason: CompactString,
    sku: Id,
    quantity: i64,
}

/// A line's quantity, as the API checks a line's: 1..=[`QUANTITY_MAX`].
fn line_quantity(q: i64) -> Result<i64, String> {
    if (1..=QUANTITY_MAX).contains(&q) {
        Ok(q)
    } else {
        Err(format!("quantity: must be 1..={QUANTITY_MAX}"))
    }
}

fn transfer_line(r: TransferRow) -> Result<DocLine, String> {
    let quantity = line_quantity(r.quantity)?;
    Ok(DocLine::Transfer { origin: r.origin, destination: r.destination, sku: r.sku, quantity })
}

fn return_line(r: ReturnRow) -> Result<DocLine, String> {
    if let Some(p) = check_text("reason", &r.reason) {
        return Err(problems_detail(&[p]));
    }
    let quantity = line_quantity(r.quantity)?;
    Ok(DocLine::Return { shipment_id: r.shipment_id, reason: r.reason, sku: r.sku, quantity })
}

/// An NDJSON row of a document: its `id` first (a row without a valid one belongs to
/// no document and is an error of its own), then the rest of it.
fn document_row(kind: ImportKind, line: &[u8]) -> Result<Row, String> {
    let err = |e: serde_json::Error| format!("not a valid {} object: {e}", kind.as_str());
    let DocumentId { id } = serde_json::from_slice(line).map_err(err)?;
    let rest = match kind {
        ImportKind::Transfers => serde_json::from_slice::<TransferRow>(line).map_err(err).and_then(transfer_line),
        _ => serde_json::from_slice::<ReturnRow>(line).map_err(err).and_then(return_line),
    };
    Ok(Row::Document(id, rest))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockInput {
    sku: Id,
    location: Id,
    on_hand: Option<i64>,
    delta: Option<i64>,
    op: Option<CompactString>,
    quantity: Option<i64>,
    reason: Option<CompactString>,
    expected_version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogInput {
    sku: Id,
    name: CompactString,
    product_id: Option<CompactString>,
    color: Option<CompactString>,
    size: Option<CompactString>,
    category: Option<CompactString>,
    price: Option<i64>,
    #[serde(default)]
    tags: Vec<CompactString>,
    #[serde(default)]
    attributes: BTreeMap<CompactString, CompactString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShipmentStatusInput {
    shipment_id: Id,
    /// Checked by [`shipment_status`], so CSV and NDJSON rows get the same message.
    status: CompactString,
    tracking_number: Option<CompactString>,
    carrier: Option<CompactString>,
}

/// A stock or shipment status row is reported by its first problem.
fn first_problem(problems: Vec<FieldError>) -> String {
    problems_detail(&problems[..1])
}

fn shipment_status(i: ShipmentStatusInput) -> Result<Row, String> {
    let Some(status) = ShipmentStatus::parse(&i.status) else {
        let names: Vec<&str> = ShipmentStatus::TARGETS.iter().map(|s| s.as_str()).collect();
        return Err(format!("status: {} is not one of {}", shown(&i.status), names.join(", ")));
    };
    StatusCmd::new(i.shipment_id, status, i.tracking_number, i.carrier).map(Row::ShipmentStatus).map_err(first_problem)
}

fn stock(i: StockInput) -> Result<Row, String> {
    let op = match (i.on_hand, i.delta, i.op.as_deref(), i.quantity) {
        (Some(on_hand), None, None, None) => StockOp::Set { on_hand },
        (None, Some(delta), None, None) => StockOp::Adjust { delta },
        (None, None, Some(op), Some(quantity)) => match op {
            "mark_unsellable" => StockOp::MarkUnsellable { quantity },
            "release_unsellable" => StockOp::ReleaseUnsellable { quantity },
            "dispose" => StockOp::Dispose { quantity },
            "set_safety_stock" => StockOp::SetSafetyStock { quantity },
            other => return Err(format!("op: {} is not one of {}", shown(other), STOCK_ROW_OPS.join(", "))),
        },
        (None, None, Some(_), None) => return Err("quantity: required with op".into()),
        _ => return Err("give exactly one of on_hand, delta or op (with quantity)".into()),
    };
    StockChangeCmd::new(i.sku, i.location, op, i.expected_version, i.reason).map(Row::Stock).map_err(first_problem)
}

/// A catalog row, checked here as `PUT .../skus/{sku}` checks its body (the brand
/// checks it again, with the same message): a row that cannot be applied is not
/// carried through the mailbox, and a valid row holds at most 50 tags and attributes.
fn catalog(i: CatalogInput) -> Result<Row, String> {
    let CatalogInput { sku, name, product_id, color, size, category, price, tags, attributes } = i;
    let fields = SkuInput { product_id, name, color, size, category, price, tags, attributes };
    let c = Catalog::new(fields).map_err(|problems| problems_detail(&problems))?;
    Ok(Row::Catalog(sku, c))
}

/// Parses one NDJSON line.
pub fn json_row(kind: ImportKind, line: &[u8]) -> Result<Row, String> {
    let err = |e: serde_json::Error| format!("not a valid {} object: {e}", kind.as_str());
    match kind {
        ImportKind::Stock => stock(serde_json::from_slice(line).map_err(err)?),
        ImportKind::Catalog => catalog(serde_json::from_slice(line).map_err(err)?),
        ImportKind::ShipmentStatus => shipment_status(serde_json::from_slice(line).map_err(err)?),
        ImportKind::Transfers | ImportKind::Returns => document_row(kind, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_headers_need_sku_location_and_one_quantity() {
        assert!(check_header(ImportKind::Stock, &["sku", "location", "on_hand"]).is_ok());
        assert!(check_header(ImportKind::Stock, &["\u{feff}sku", "location", "delta", "reason"]).is_ok(), "a BOM is tolerated");
        for bad in [
            &["sku", "location"][..],
            &["sku", "location", "on_hand", "delta"],
            &["sku", "on_hand"],
            &["sku", "location", "qty"],
            &["a", "b"],
        ] {
            let e = check_header(ImportKind::Stock, bad).unwrap_err();
            assert!(e.contains("stock columns are"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn stock_rows_are_checked_field_by_field() {
        let cols = check_header(ImportKind::Stock, &["sku", "location", "delta", "reason"]).unwrap();
        match csv_row(&cols, &["S1", "tsukuba", "-3", ""]).unwrap() {
            Row::Stock(c) => assert_eq!((c.op, c.reason), (StockOp::Adjust { delta: -3 }, None)),
            other => panic!("{other:?}"),
        }
        assert!(csv_row(&cols, &["S1", "tsukuba", "x", ""]).unwrap_err().starts_with("delta:"));
        assert!(csv_row(&cols, &["S1", "tsukuba", "0", ""]).unwrap_err().starts_with("delta:"));
        assert!(csv_row(&cols, &["bad sku", "tsukuba", "1", ""]).unwrap_err().starts_with("sku:"));
        assert!(csv_row(&cols, &["S1", "tsukuba", "1"]).unwrap_err().contains("fields"));
        let row = json_row(ImportKind::Stock, br#"{"sku":"S1","location":"t","on_hand":4}"#).unwrap();
        assert!(matches!(row, Row::Stock(c) if c.op == StockOp::Set { on_hand: 4 }));
        assert!(json_row(ImportKind::Stock, br#"{"sku":"S1","location":"t","on_hand":4,"delta":1}"#).is_err());
        assert!(json_row(ImportKind::Stock, br#"{"sku":"S1","location":"t","qty":4}"#).unwrap_err().contains("qty"));
    }

    #[test]
    fn catalog_rows_with_tags_and_attribute_columns() {
        let cols = check_header(ImportKind::Catalog, &["sku", "name", "price", "tags", "attributes.material"]).unwrap();
        let Row::Catalog(sku, c) = csv_row(&cols, &["S1", "Tシャツ", "3990", "cotton| summer", "cotton"]).unwrap() else { panic!() };
        assert_eq!(sku.as_str(), "S1");
        assert_eq!((c.price, c.tags.len(), c.attributes[0].1.as_str()), (Some(3990), 2, "cotton"));
        assert!(csv_row(&cols, &["S1", "", "1", "", ""]).unwrap_err().starts_with("name:"));
        assert!(check_header(ImportKind::Catalog, &["sku", "nmae"]).is_err());
        let row = json_row(ImportKind::Catalog, r#"{"sku":"S2","name":"n","attributes":{"fit":"loose"}}"#.as_bytes()).unwrap();
        assert!(matches!(row, Row::Catalog(_, c) if c.attributes.len() == 1));
    }

    #[test]
    fn shipment_status_headers_need_shipment_id_and_status() {
        assert!(check_header(ImportKind::ShipmentStatus, &["shipment_id", "status"]).is_ok());
        assert!(check_header(ImportKind::ShipmentStatus, &["carrier", "status", "tracking_number", "shipment_id"]).is_ok());
        for bad in
            [&["shipment_id"][..], &["status", "carrier"], &["shipment_id", "status", "tracking"], &["shipment_id", "status", "status"]]
        {
            let e = check_header(ImportKind::ShipmentStatus, bad).unwrap_err();
            assert!(e.contains("shipment_status columns are shipment_id, status, tracking_number, carrier"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn shipment_status_rows_are_checked_field_by_field() {
        let cols = check_header(ImportKind::ShipmentStatus, &["shipment_id", "status", "tracking_number", "carrier"]).unwrap();
        let Row::ShipmentStatus(c) = csv_row(&cols, &["SH-1", "shipped", "1234-5678", "ヤマト運輸"]).unwrap() else { panic!() };
        assert_eq!(
            (c.id.as_str(), c.status, c.tracking_number.as_deref(), c.carrier.as_deref()),
            ("SH-1", ShipmentStatus::Shipped, Some("1234-5678"), Some("ヤマト運輸"))
        );
        let Row::ShipmentStatus(c) = csv_row(&cols, &["SH-1", " picking ", "", ""]).unwrap() else { panic!() };
        assert_eq!((c.status, c.tracking_number, c.carrier), (ShipmentStatus::Picking, None, None), "empty cells are absent");
        assert!(csv_row(&cols, &["SH-1", "lost", "", ""]).unwrap_err().starts_with("status:"));
        assert!(csv_row(&cols, &["SH-1", "Shipped", "", ""]).unwrap_err().starts_with("status:"));
        assert!(csv_row(&cols, &["SH-1", "accepted", "", ""]).unwrap_err().contains("starts as accepted"));
        assert!(csv_row(&cols, &["SH-1", "", "", ""]).unwrap_err().starts_with("status:"));
        assert!(csv_row(&cols, &["", "packed", "", ""]).unwrap_err().starts_with("shipment_id:"));
        assert!(csv_row(&cols, &["bad id", "packed", "", ""]).unwrap_err().starts_with("shipment_id:"));
        assert!(csv_row(&cols, &["SH-1", "packed", &"x".repeat(201), ""]).unwrap_err().starts_with("tracking_number:"));
        let row = json_row(ImportKind::ShipmentStatus, br#"{"shipment_id":"SH-2","status":"cancelled"}"#).unwrap();
        assert!(matches!(row, Row::ShipmentStatus(c) if c.status == ShipmentStatus::Cancelled && c.carrier.is_none()));
        assert!(json_row(ImportKind::ShipmentStatus, br#"{"shipment_id":"SH-2","status":"lost"}"#).unwrap_err().contains("status:"));
        assert!(json_row(ImportKind::ShipmentStatus, br#"{"shipment_id":"SH-2","status":"packed","carrier":""}"#)
            .unwrap_err()
            .starts_with("carrier:"));
        assert!(json_row(ImportKind::ShipmentStatus, br#"{"shipment_id":"SH-2","status":"packed","note":"x"}"#)
            .unwrap_err()
            .contains("note"));
        assert!(json_row(ImportKind::ShipmentStatus, br#"{"status":"packed"}"#).unwrap_err().contains("shipment_id"));
    }
}
