//! Import jobs in the domain: chunks apply once, in order, with their errors counted.

use std::collections::BTreeMap;

use super::*;
use crate::domain::event::BrandRecord;
use crate::domain::registry::{Location, LocationKind};
use crate::domain::stock::StockOp;
use crate::domain::BrandId;
use crate::domain::Lsn;

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

fn world() -> BTreeMap<Id, Location> {
    let loc =
        Location { id: id("tsukuba"), name: "t".into(), kind: LocationKind::Warehouse, created_at: Timestamp(0), updated_at: Timestamp(0) };
    BTreeMap::from([(id("tsukuba"), loc)])
}

struct B {
    state: BrandState,
    lsn: Lsn,
}

impl B {
    fn new() -> B {
        B { state: BrandState::new(BrandId::parse("b1").unwrap(), "B".into(), Timestamp(0)), lsn: 0 }
    }

    fn commit(&mut self, events: Vec<Event>) {
        self.lsn += 1;
        let rec = BrandRecord { brand: self.state.id.clone(), at: Timestamp(self.lsn as i64), idempotency: None, events };
        self.state.apply(self.lsn, &rec).unwrap();
    }

    fn decided(&mut self, d: Decision) -> bool {
        match d {
            Decision::Apply(events) => {
                self.commit(events);
                true
            }
            Decision::Unchanged => false,
        }
    }
}

fn spec(job: &str) -> ImportSpec {
    ImportSpec {
        id: id(job),
        kind: ImportKind::Stock,
        format: ImportFormat::Csv,
        file: format!("{job}.csv"),
        bytes: 10,
        sha256: [0; 32],
        created_at: Timestamp(0),
    }
}

fn adjust(row: u64, sku: &str, delta: i64) -> (u64, StockChangeCmd) {
    (row, StockChangeCmd { sku: id(sku), location: id("tsukuba"), op: StockOp::Adjust { delta }, expected_version: None, reason: None })
}

fn chunk(n: u64, rows: Vec<(u64, StockChangeCmd)>, pre_errors: Vec<RowError>) -> ChunkCmd {
    let (lines, changes) = rows.into_iter().unzip();
    ChunkCmd {
        id: id("J1"),
        chunk: n,
        next_offset: 100 * (n + 1),
        next_row: 10 * (n + 1),
        rows: ChunkRows::Stock { lines, changes },
        pre_errors,
    }
}

fn started() -> B {
    let mut b = B::new();
    let (ev, _) = b.state.decide_put_sku(&id("S1"), Catalog { name: "n".into(), ..Catalog::default() }).unwrap();
    b.commit(vec![ev]);
    let ev = b.state.decide_queue_import(&spec("J1")).unwrap();
    b.commit(vec![ev]);
    let d = b.state.decide_start_import(&id("J1"), 4).unwrap();
    assert!(b.decided(d));
    b
}

#[test]
fn each_chunk_applies_once_and_only_in_order() {
    let mut b = started();
    let w = world();
    let c0 = chunk(0, vec![adjust(2, "S1", 5), adjust(3, "S1", 2)], vec![]);
    let d = b.state.decide_import_chunk(&c0, &w, Timestamp(0)).unwrap();
    assert!(b.decided(d));
    // The same chunk again (a resumed runner) changes nothing.
    let d = b.state.decide_import_chunk(&c0, &w, Timestamp(0)).unwrap();
    assert!(!b.decided(d));
    assert_eq!(b.state.skus[&id("S1")].levels.get(&id("tsukuba")).on_hand, 7);
    // A chunk from the future is refused: the runner must resend the one expected.
    let c2 = chunk(2, vec![adjust(9, "S1", 1)], vec![]);
    assert_eq!(b.state.decide_import_chunk(&c2, &w, Timestamp(0)).unwrap_err().code, ErrorCode::InvalidTransition);
    let job = b.state.import(&id("J1")).unwrap();
    assert_eq!((job.next_chunk, job.next_offset, job.next_row, job.rows_ok), (1, 100, 10, 2));
}

#[test]
fn rejected_and_unparsable_rows_are_counted_with_their_rows() {
    let mut b = started();
    let w = world();
    let bad = RowError { row: 4, code: ErrorCode::InvalidRequest, detail: "delta: not a number".into() };
    let c0 = chunk(0, vec![adjust(2, "S1", -1), adjust(3, "NOPE", 1), adjust(5, "S1", 3)], vec![bad]);
    let d = b.state.decide_import_chunk(&c0, &w, Timestamp(0)).unwrap();
    assert!(b.decided(d));
    let job = b.state.import(&id("J1")).unwrap();
    assert_eq!((job.rows_ok, job.rows_failed), (1, 3));
    let rows: Vec<(u64, ErrorCode)> = job.errors.iter().map(|e| (e.row, e.code)).collect();
    assert_eq!(rows, vec![(2, ErrorCode::InsufficientStock), (3, ErrorCode::NotFound), (4, ErrorCode::InvalidRequest)]);
}

#[test]
fn only_the_first_errors_are_kept_but_all_are_counted() {
    let mut b = started();
    let w = world();
    for n in 0..3u64 {
        let rows = (0..60).map(|i| adjust(n * 100 + i, "NOPE", 1)).collect();
        let d = b.state.decide_import_chunk(&chunk(n, rows, vec![]), &w, Timestamp(0)).unwrap();
        assert!(b.decided(d));
    }
    let job = b.state.import(&id("J1")).unwrap();
    assert_eq!(job.rows_failed, 180);
    assert_eq!(job.errors.len(), IMPORT_ERRORS_KEPT);
}

#[test]
fn catalog_rows_naming_one_sku_twice_get_successive_versions() {
    let mut b = started();
    let w = world();
    let cat = |name: &str| Catalog { name: name.into(), ..Catalog::default() };
    let c = ChunkCmd {
        id: id("J1"),
        chunk: 0,
        next_offset: 1,
        next_row: 1,
        rows: ChunkRows::Catalog(vec![(2, id("S1"), cat("a")), (3, id("S1"), cat("b")), (4, id("S9"), cat(""))]),
        pre_errors: vec![],
    };
    let d = b.state.decide_import_chunk(&c, &w, Timestamp(0)).unwrap();
    assert!(b.decided(d));
    assert_eq!(b.state.skus[&id("S1")].version, 3);
    assert_eq!(b.state.skus[&id("S1")].catalog.name, "b");
    assert_eq!(b.state.import(&id("J1")).unwrap().errors[0].row, 4);
}

#[test]
fn finished_jobs_are_kept_up_to_the_bound_and_pending_ones_are_limited() {
    let mut b = B::new();
    for i in 0..IMPORTS_PENDING_PER_BRAND_MAX {
        let ev = b.state.decide_queue_import(&spec(&format!("P{i}"))).unwrap();
        b.commit(vec![ev]);
    }
    assert_eq!(b.state.decide_queue_import(&spec("X")).unwrap_err().code, ErrorCode::RateLimited);
    assert_eq!(b.state.pending_imports().len(), IMPORTS_PENDING_PER_BRAND_MAX);
    for i in 0..IMPORTS_PENDING_PER_BRAND_MAX {
        let d = b.state.decide_finish_import(&id(&format!("P{i}")), None).unwrap();
        assert!(b.decided(d));
    }
    for i in 0..IMPORTS_FINISHED_KEPT {
        let ev = b.state.decide_queue_import(&spec(&format!("F{i}"))).unwrap();
        b.commit(vec![ev]);
        let d = b.state.decide_finish_import(&id(&format!("F{i}")), Some("x".into())).unwrap();
        assert!(b.decided(d));
    }
    assert_eq!(b.state.imports.jobs.len(), IMPORTS_FINISHED_KEPT);
    assert!(b.state.import(&id("P0")).is_err(), "the oldest finished jobs are forgotten");
    assert_eq!(b.state.import(&id("F0")).unwrap().status, ImportStatus::Failed);
}

#[test]
fn a_chunk_is_checked_as_apply_would_check_it() {
    let b = started();
    let w = world();
    let c0 = chunk(0, vec![adjust(2, "S1", 5), adjust(3, "S1", 2)], vec![]);
    let Decision::Apply(mut events) = b.state.decide_import_chunk(&c0, &w, Timestamp(0)).unwrap() else { panic!("applies") };
    assert_eq!(b.state.check_bulk_events(&events), Ok(()));
    if let Event::StockChanged { version, .. } = &mut events[1] {
        *version += 1;
    }
    assert!(b.state.check_bulk_events(&events).unwrap_err().contains("does not follow"));
    let stale = chunk(0, vec![adjust(2, "S1", 1)], vec![]);
    let Decision::Apply(events) = b.state.decide_import_chunk(&stale, &w, Timestamp(0)).unwrap() else { panic!("applies") };
    let mut b2 = started();
    let Decision::Apply(first) = b2.state.decide_import_chunk(&c0, &w, Timestamp(0)).unwrap() else { panic!("applies") };
    b2.commit(first);
    assert!(b2.state.check_bulk_events(&events).is_err(), "a chunk decided before another was applied");
}

#[test]
fn a_cancelled_job_takes_no_more_chunks_and_only_unfinished_jobs_can_be_cancelled() {
    let mut b = started();
    let w = world();
    let d = b.state.decide_import_chunk(&chunk(0, vec![adjust(2, "S1", 5)], vec![]), &w, Timestamp(0)).unwrap();
    assert!(b.decided(d));
    let d = b.state.decide_cancel_import(&id("J1")).unwrap();
    assert!(b.decided(d));
    let job = b.state.import(&id("J1")).unwrap();
    assert_eq!((job.status, job.rows_ok, job.finished_at.is_some()), (ImportStatus::Cancelled, 1, true));
    assert!(b.state.pending_imports().is_empty(), "a cancelled job is not resumed");
    // A chunk already on its way when the cancel was recorded is not applied.
    assert!(!b.decided(b.state.decide_import_chunk(&chunk(1, vec![adjust(3, "S1", 5)], vec![]), &w, Timestamp(0)).unwrap()));
    assert_eq!(b.state.skus[&id("S1")].levels.get(&id("tsukuba")).on_hand, 5);
    assert!(!b.decided(b.state.decide_cancel_import(&id("J1")).unwrap()), "cancelling again changes nothing");
    assert!(!b.decided(b.state.decide_finish_import(&id("J1"), None).unwrap()), "the runner's finish changes nothing");
    assert_eq!(b.state.import(&id("J1")).unwrap().status, ImportStatus::Cancelled);

    let ev = b.state.decide_queue_import(&spec("J2")).unwrap();
    b.commit(vec![ev]);
    let d = b.state.decide_cancel_import(&id("J2")).unwrap();
    assert!(b.decided(d), "a queued job can be cancelled");
    let ev = b.state.decide_queue_import(&spec("J3")).unwrap();
    b.commit(vec![ev]);
    let d = b.state.decide_finish_import(&id("J3"), None).unwrap();
    assert!(b.decided(d));
    let r = b.state.decide_cancel_import(&id("J3")).unwrap_err();
    assert_eq!(r.code, ErrorCode::InvalidTransition);
    assert!(r.detail.contains("is done"), "{}", r.detail);
    assert_eq!(b.state.decide_cancel_import(&id("J9")).unwrap_err().code, ErrorCode::NotFound);
}

#[test]
fn a_chunks_progress_with_every_kept_error_fits_the_smallest_record_whatever_the_file_holds() {
    use crate::domain::event::{encode, WalRecord, RECORD_BYTES_MAX_FLOOR};
    let mut b = B::new();
    let mut long_spec = spec(&"J".repeat(128));
    long_spec.file = "x".into();
    let ev = b.state.decide_queue_import(&long_spec).unwrap();
    b.commit(vec![ev]);
    let job = long_spec.id.clone();
    let d = b.state.decide_start_import(&job, 1).unwrap();
    assert!(b.decided(d));
    // A parse error may quote the field it refuses: a long one, full of characters
    // that take four bytes.
    let detail = "𝄞".repeat(10_000);
    let errors = (0..2 * IMPORT_ERRORS_KEPT as u64).map(|row| RowError {
        row: u64::MAX - row,
        code: ErrorCode::InvalidRequest,
        detail: detail.clone(),
    });
    let c = ChunkCmd {
        id: job.clone(),
        chunk: 0,
        next_offset: u64::MAX,
        next_row: u64::MAX,
        rows: ChunkRows::Stock { lines: vec![], changes: vec![] },
        pre_errors: errors.collect(),
    };
    let Decision::Apply(events) = b.state.decide_import_chunk(&c, &world(), Timestamp(0)).unwrap() else { panic!("applies") };
    let Event::ImportChunkApplied { progress } = &events[0] else { panic!("progress") };
    assert_eq!((progress.rows_failed, progress.errors.len()), (2 * IMPORT_ERRORS_KEPT as u64, IMPORT_ERRORS_KEPT));
    assert!(progress.errors.iter().all(|e| e.detail.len() <= ERROR_DETAIL_BYTES_MAX && e.detail.ends_with('…')));
    let record = WalRecord::Brand(BrandRecord {
        brand: BrandId::parse(&"b".repeat(64)).unwrap(),
        at: Timestamp(i64::MAX),
        idempotency: None,
        events,
    });
    let bytes = encode(&record).len();
    assert!(bytes <= RECORD_BYTES_MAX_FLOOR, "{bytes} bytes");
    let d = b.state.decide_finish_import(&job, Some(detail)).unwrap();
    assert!(b.decided(d));
    assert!(b.state.import(&job).unwrap().detail.as_ref().unwrap().len() <= ERROR_DETAIL_BYTES_MAX);
}

#[test]
fn cutting_keeps_whole_characters_and_short_text() {
    assert_eq!(cut_to("short".into(), 10), "short");
    assert_eq!(cut_to("abcdefghij".into(), 10), "abcdefghij");
    assert_eq!(cut_to("abcdefghijk".into(), 10), "abcdefg…");
    let cut = cut_to("在庫".repeat(10), 10);
    assert_eq!(cut, "在庫…");
    assert!(cut.len() <= 10);
}

mod shipment_status {
    use compact_str::CompactString;

    use super::*;
    use crate::domain::brand::ChangeOutcome;
    use crate::domain::fulfilment::{LineRequest, Scope, ShipCmd, ShipTo, ShipmentSource};

    fn ship_to() -> ShipTo {
        ShipTo { name: "n".into(), postal_code: "100-0001".into(), prefecture: "東京都".into(), address: "a".into(), phone: None }
    }

    /// A running job over S1 (10 on hand at tsukuba) and shipments SH1 (2 of S1) and
    /// SH2 (3 of S1), both accepted.
    fn with_shipments() -> B {
        let mut b = started();
        let w = world();
        let set = StockChangeCmd {
            sku: id("S1"),
            location: id("tsukuba"),
            op: StockOp::Set { on_hand: 10 },
            expected_version: None,
            reason: None,
        };
        let (events, outcomes) = b.state.decide_stock_changes(&[set], &w);
        assert!(matches!(outcomes[0], ChangeOutcome::Applied { .. }));
        b.commit(events);
        for (sh, q) in [("SH1", 2), ("SH2", 3)] {
            let cmd = ShipCmd {
                id: id(sh),
                order_ref: None,
                channel: None,
                source: ShipmentSource::Lines(vec![LineRequest { sku: id("S1"), location: None, quantity: q }]),
                ship_to: ship_to(),
            };
            let d = b.state.decide_ship(&cmd, &Scope::default(), Timestamp(0)).unwrap();
            assert!(b.decided(d));
        }
        b
    }

    fn row(line: u64, sh: &str, status: ShipmentStatus, tracking: Option<&str>) -> (u64, StatusCmd) {
        (line, StatusCmd { id: id(sh), status, tracking_number: tracking.map(CompactString::from), carrier: None })
    }

    fn status_chunk(n: u64, rows: Vec<(u64, StatusCmd)>) -> ChunkCmd {
        ChunkCmd {
            id: id("J1"),
            chunk: n,
            next_offset: 100 * (n + 1),
            next_row: 10 * (n + 1),
            rows: ChunkRows::ShipmentStatus(rows),
            pre_errors: vec![],
        }
    }

    fn level(b: &B) -> (i64, i64, u64) {
        let s = &b.state.skus[&id("S1")];
        let l = s.levels.get(&id("tsukuba"));
        (l.on_hand, l.reserved, s.stock_version)
    }

    fn errors(b: &B) -> Vec<(u64, ErrorCode)> {
        b.state.import(&id("J1")).unwrap().errors.iter().map(|e| (e.row, e.code)).collect()
    }

    #[test]
    fn rows_of_one_chunk_see_the_rows_before_them() {
        use ShipmentStatus::*;
        let mut b = with_shipments();
        let w = world();
        assert_eq!(level(&b), (10, 5, 3));
        let rows = vec![
            row(2, "SH1", Picking, None),
            row(3, "SH1", Packed, None),
            row(4, "SH1", Shipped, Some("T-1")),
            row(5, "SH1", Cancelled, None), // shipped by row 4: too late
            row(6, "SH1", Shipped, None),   // a repeat: a no-op, counted as applied
            row(7, "SH2", Cancelled, None),
        ];
        let c0 = status_chunk(0, rows);
        let Decision::Apply(events) = b.state.decide_import_chunk(&c0, &w, Timestamp(0)).unwrap() else { panic!("applies") };
        assert_eq!(b.state.check_bulk_events(&events), Ok(()), "two stock changes of S1 in one chunk take successive versions");
        b.commit(events);
        let sh1 = b.state.shipment(&id("SH1")).unwrap();
        assert_eq!(sh1.status, Shipped);
        assert_eq!(sh1.history.iter().map(|h| h.status).collect::<Vec<_>>(), vec![Accepted, Picking, Packed, Shipped]);
        assert_eq!(sh1.tracking_number.as_deref(), Some("T-1"));
        assert_eq!(b.state.shipment(&id("SH2")).unwrap().status, Cancelled);
        // Shipped: 2 out of on_hand and reserved; cancelled: 3 out of reserved.
        assert_eq!(level(&b), (8, 0, 5));
        let job = b.state.import(&id("J1")).unwrap();
        assert_eq!((job.rows_ok, job.rows_failed), (5, 1));
        assert_eq!(errors(&b), vec![(5, ErrorCode::InvalidTransition)]);
        // The chunk again (a resumed runner): nothing moves twice.
        let d = b.state.decide_import_chunk(&c0, &w, Timestamp(0)).unwrap();
        assert!(!b.decided(d));
        assert_eq!(b.state.shipment(&id("SH1")).unwrap().history.len(), 4);
        assert_eq!(level(&b), (8, 0, 5));
    }

    #[test]
    fn illegal_transitions_and_unknown_shipments_are_row_errors() {
        use ShipmentStatus::*;
        let mut b = with_shipments();
        let w = world();
        let rows = vec![
            row(2, "SH1", Packed, None), // accepted → packed skips picking
            row(3, "SH1", Picking, None),
            row(4, "NOPE", Picking, None),
            row(5, "SH2", Delivered, None),
            row(6, "SH2", Picking, Some("T-2")),
        ];
        let d = b.state.decide_import_chunk(&status_chunk(0, rows), &w, Timestamp(0)).unwrap();
        assert!(b.decided(d));
        assert_eq!(errors(&b), vec![(2, ErrorCode::InvalidTransition), (4, ErrorCode::NotFound), (5, ErrorCode::InvalidTransition)]);
        assert!(b.state.import(&id("J1")).unwrap().errors[1].detail.contains("NOPE"));
        assert_eq!(b.state.shipment(&id("SH1")).unwrap().status, Picking);
        let sh2 = b.state.shipment(&id("SH2")).unwrap();
        assert_eq!((sh2.status, sh2.tracking_number.as_deref()), (Picking, Some("T-2")));
        assert_eq!(level(&b), (10, 5, 3), "no stock moves before shipped or cancelled");
        // A later chunk goes on from where this one left the shipments.
        let rows = vec![row(7, "SH1", Picking, None), row(8, "SH2", Cancelled, None), row(9, "SH2", Picking, None)];
        let d = b.state.decide_import_chunk(&status_chunk(1, rows), &w, Timestamp(0)).unwrap();
        assert!(b.decided(d));
        let job = b.state.import(&id("J1")).unwrap();
        assert_eq!((job.rows_ok, job.rows_failed), (4, 4));
        assert_eq!(errors(&b).last(), Some(&(9, ErrorCode::InvalidTransition)));
        assert_eq!(level(&b), (10, 2, 4), "SH2's 3 released");
    }

    #[test]
    fn a_chunk_check_refuses_a_transition_the_rules_do_not_allow() {
        let b = with_shipments();
        let bad =
            vec![Event::ShipmentStatusChanged { id: id("SH1"), status: ShipmentStatus::Delivered, tracking_number: None, carrier: None }];
        assert!(b.state.check_bulk_events(&bad).unwrap_err().contains("cannot become delivered"));
        let unknown =
            vec![Event::ShipmentStatusChanged { id: id("SH9"), status: ShipmentStatus::Picking, tracking_number: None, carrier: None }];
        assert!(b.state.check_bulk_events(&unknown).is_err());
    }
}
