//! Transfers and returns files: the rows of a chunk grouped into documents (one per
//! `id`, its rows next to each other), each checked as its API request is — the same
//! header on every row, 1..=`LINES_MAX` lines, each SKU once — before the brand decides
//! it. Pure; no I/O. A document with any wrong row is one error and none of it applies.

use std::collections::HashMap;

use compact_str::CompactString;

use super::parse::DocLine;
use crate::domain::fulfilment::{check_line_set, LINES_MAX};
use crate::domain::import::{DocRows, ImportKind};
use crate::domain::returns::ReturnCmd;
use crate::domain::transfer::TransferCmd;
use crate::domain::Id;

/// A row of a document as the reader gives it: its line, its document, its line or
/// what is wrong with it.
pub type DocRow = (u64, Id, Result<DocLine, String>);

/// The rows of one document: each one's line, and its line or what is wrong with it.
type Run = Vec<(u64, Result<DocLine, String>)>;

/// The runs of rows of one document, in order.
fn runs(rows: Vec<DocRow>) -> Vec<(Id, Run)> {
    let mut out: Vec<(Id, Run)> = Vec::new();
    for (line, id, row) in rows {
        match out.last_mut() {
            Some((last, run)) if *last == id => run.push((line, row)),
            _ => out.push((id, vec![(line, row)])),
        }
    }
    out
}

/// What every row of a document repeats: origin, destination (transfers) or
/// shipment, shipment, reason (returns).
type Header = (Id, Id, CompactString);

/// The header a document's rows must agree on, and the document's line.
fn split_line(line: DocLine) -> ((Id, Id, CompactString), (Id, i64)) {
    match line {
        DocLine::Transfer { origin, destination, sku, quantity } => ((origin, destination, CompactString::default()), (sku, quantity)),
        DocLine::Return { shipment_id, reason, sku, quantity } => ((shipment_id.clone(), shipment_id, reason), (sku, quantity)),
    }
}

/// Checks one document's rows: every row right, the same header on each, a set of
/// lines the API would take. `Ok` holds the header and the lines.
#[allow(clippy::type_complexity)]
fn check(kind: ImportKind, rows: Run) -> Result<((Id, Id, CompactString), Vec<(Id, i64)>), String> {
    let mut header: Option<(u64, (Id, Id, CompactString))> = None;
    let mut lines = Vec::with_capacity(rows.len());
    let mut numbers = Vec::with_capacity(rows.len());
    for (n, row) in rows {
        let (h, line) = split_line(row.map_err(|why| format!("line {n}: {why}"))?);
        match &header {
            None => header = Some((n, h)),
            Some((first, h0)) if *h0 != h => {
                let what = match kind {
                    ImportKind::Returns => "shipment_id and reason",
                    _ => "origin and destination",
                };
                return Err(format!("line {n}: every row of a document gives the same {what} as its first (line {first})"));
            }
            Some(_) => {}
        }
        lines.push(line);
        numbers.push(n);
    }
    let mut problems = Vec::new();
    check_line_set("lines", lines.iter().map(|(sku, q)| (sku, *q)), LINES_MAX, &mut problems);
    if let Some(p) = problems.first() {
        let detail = match p.field.strip_prefix("lines[").and_then(|r| r.split_once("].")) {
            Some((i, field)) => {
                format!("line {}: {field}: {}", i.parse::<usize>().ok().and_then(|i| numbers.get(i)).unwrap_or(&0), p.detail)
            }
            None => format!("a document must hold 1..={LINES_MAX} rows, this one holds {}", lines.len()),
        };
        return Err(detail);
    }
    Ok((header.expect("a run holds a row").1, lines))
}

/// The chunk's transfers: `problems` are the file's documents that fail whatever
/// chunk they fall in (rows not together, too many rows).
pub fn transfers(rows: Vec<DocRow>, problems: &HashMap<Id, String>) -> Vec<DocRows<TransferCmd>> {
    documents(ImportKind::Transfers, rows, problems, |id, (origin, destination, _), lines| TransferCmd { id, origin, destination, lines })
}

/// The chunk's returns, as [`transfers`].
pub fn returns(rows: Vec<DocRow>, problems: &HashMap<Id, String>) -> Vec<DocRows<ReturnCmd>> {
    documents(ImportKind::Returns, rows, problems, |id, (shipment_id, _, reason), lines| ReturnCmd { id, shipment_id, reason, lines })
}

/// The chunk's documents of `kind`, each checked whole and built by `make` from its id,
/// its header fields and its lines.
fn documents<C>(
    kind: ImportKind,
    rows: Vec<DocRow>,
    problems: &HashMap<Id, String>,
    make: impl Fn(Id, Header, Vec<(Id, i64)>) -> C,
) -> Vec<DocRows<C>> {
    runs(rows)
        .into_iter()
        .map(|(id, run)| {
            let lines: Vec<u64> = run.iter().map(|r| r.0).collect();
            let doc = match problems.get(&id) {
                Some(why) => Err(why.clone()),
                None => check(kind, run).map(|(head, lines)| make(id.clone(), head, lines)),
            };
            DocRows { id, lines, doc }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    fn t(line: u64, doc: &str, origin: &str, sku: &str, quantity: i64) -> DocRow {
        (line, id(doc), Ok(DocLine::Transfer { origin: id(origin), destination: id("dst"), sku: id(sku), quantity }))
    }

    #[test]
    fn rows_group_into_documents_and_one_wrong_row_fails_its_whole_document() {
        let rows = vec![
            t(2, "T1", "wh", "S1", 2),
            t(3, "T1", "wh", "S2", 1),
            t(4, "T2", "wh", "S1", 1),
            t(5, "T2", "store", "S2", 1),
            t(6, "T3", "wh", "S1", 1),
            t(7, "T3", "wh", "S1", 1),
            (8, id("T4"), Err("quantity: must be 1..=1000000000000".into())),
            t(9, "T5", "wh", "S1", 1),
        ];
        let problems = HashMap::from([(id("T5"), "split".to_string())]);
        let docs = transfers(rows, &problems);
        let summary: Vec<(&str, Vec<u64>, Result<usize, &str>)> =
            docs.iter().map(|d| (d.id.as_str(), d.lines.clone(), d.doc.as_ref().map(|c| c.lines.len()).map_err(|e| e.as_str()))).collect();
        assert_eq!(summary[0], ("T1", vec![2, 3], Ok(2)));
        assert_eq!(summary[1].1, vec![4, 5]);
        assert!(summary[1].2.unwrap_err().starts_with("line 5: every row of a document gives the same origin and destination"));
        assert!(summary[2].2.unwrap_err().starts_with("line 7: sku: the same sku may not appear twice"), "{:?}", summary[2]);
        assert_eq!(summary[3].2, Err("line 8: quantity: must be 1..=1000000000000"));
        assert_eq!(summary[4].2, Err("split"));
        let ok = docs[0].doc.as_ref().unwrap();
        assert_eq!((ok.origin.as_str(), ok.destination.as_str(), ok.lines[0].1), ("wh", "dst", 2));
    }

    #[test]
    fn a_return_document_agrees_on_its_shipment_and_reason() {
        let r = |line: u64, reason: &str| {
            (
                line,
                id("R1"),
                Ok(DocLine::Return { shipment_id: id("SH1"), reason: reason.into(), sku: id(&format!("S{line}")), quantity: 1 }),
            )
        };
        let docs = returns(vec![r(2, "size"), r(3, "size")], &HashMap::new());
        let cmd = docs[0].doc.as_ref().unwrap();
        assert_eq!((cmd.shipment_id.as_str(), cmd.reason.as_str(), cmd.lines.len()), ("SH1", "size", 2));
        let docs = returns(vec![r(2, "size"), r(3, "colour")], &HashMap::new());
        assert!(docs[0].doc.as_ref().unwrap_err().contains("same shipment_id and reason as its first (line 2)"));
    }
}
