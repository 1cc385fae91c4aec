//! Property-based fuzzing of everything that reads untrusted bytes: WAL frames and
//! records, snapshot files, import files (CSV and NDJSON, read in resumable chunks).
//! No input may panic or allocate without bound; damaged input is an error.
//! `ZAIKO_FUZZ_CASES` scales the number of cases (default 1000 each). Failing inputs
//! are kept by proptest in `tests/proptest-regressions/main.txt` (the corpus; rerun
//! first on every run).

use proptest::prelude::*;
use zaiko::domain::event;
use zaiko::domain::import::{ImportFormat, ImportKind};
use zaiko::journal::format::{self, SegmentHeader, FORMAT_VERSION};

fn cases() -> u32 {
    std::env::var("ZAIKO_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

/// A real record, for mutation.
fn sample_record() -> Vec<u8> {
    use zaiko::domain::event::{BrandRecord, Cause, Event, WalRecord};
    use zaiko::domain::stock::{Level, Levels, StockOp};
    use zaiko::domain::{BrandId, Id, Timestamp};
    let rec = WalRecord::Brand(BrandRecord {
        brand: BrandId::parse("b-001").unwrap(),
        at: Timestamp(1_800_000_000_000),
        idempotency: None,
        events: vec![Event::StockChanged {
            sku: Id::parse("S1").unwrap(),
            version: 7,
            levels: Levels(Box::new([(
                Id::parse("tsukuba").unwrap(),
                Level { on_hand: 9, reserved: 2, safety_stock: 1, incoming: 0, ..Level::default() },
            )])),
            channels: vec![(Id::parse("zozotown").unwrap(), 6)],
            cause: Cause::Change { op: StockOp::Adjust { delta: -1 }, reason: Some("sold".into()) },
        }],
    });
    event::encode(&rec)
}

fn segment_with(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut seg = SegmentHeader { version: FORMAT_VERSION, first_lsn: 1 }.encode().to_vec();
    for (i, p) in payloads.iter().enumerate() {
        format::encode_frame(&mut seg, i as u64 + 1, p);
    }
    seg
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    #[test]
    fn record_decoder_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = event::decode(&bytes);
        let mut framed = vec![event::RECORD_FORMAT];
        framed.extend_from_slice(&bytes);
        let _ = event::decode(&framed);
    }

    #[test]
    fn record_decoder_never_panics_on_mutated_records(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut rec = sample_record();
        for (at, v) in flips {
            let i = at.index(rec.len());
            rec[i] ^= v;
        }
        let _ = event::decode(&rec);
        let _ = event::decode(&rec[..cut.index(rec.len() + 1)]);
    }

    #[test]
    fn segment_scan_never_panics_and_never_returns_a_frame_past_damage(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 1..6),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in any::<prop::sample::Index>(),
        is_last in any::<bool>(),
    ) {
        let pristine = segment_with(&payloads);
        let mut seg = pristine.clone();
        for (at, v) in &flips {
            let i = at.index(seg.len());
            seg[i] ^= v;
        }
        let seg = &seg[..cut.index(seg.len() + 1)];
        if let Ok(scan) = format::scan(seg, is_last) {
            // Every frame returned is intact: its bytes are the pristine ones.
            for f in &scan.frames {
                let end = f.payload_start + f.payload_len;
                prop_assert_eq!(&seg[f.offset..end], &pristine[f.offset..end]);
            }
        }
    }

    #[test]
    fn segment_scan_never_panics_on_arbitrary_bytes_after_a_valid_header(tail in prop::collection::vec(any::<u8>(), 0..2048), is_last in any::<bool>()) {
        let mut seg = SegmentHeader { version: FORMAT_VERSION, first_lsn: 42 }.encode().to_vec();
        seg.extend_from_slice(&tail);
        let _ = format::scan(&seg, is_last);
    }
}

/// A small snapshot file written once, then mutated many ways.
fn snapshot_bytes() -> (tempfile::TempDir, Vec<u8>) {
    use zaiko::domain::brand::BrandState;
    use zaiko::domain::catalog::Catalog;
    use zaiko::domain::{BrandId, Id, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let mut state = zaiko::state::State::default();
    let mut b = BrandState::new(BrandId::parse("b1").unwrap(), "ブランド".into(), Timestamp(0));
    for i in 0..20 {
        let (ev, _) = b
            .decide_put_sku(&Id::parse(&format!("S{i}")).unwrap(), Catalog { name: format!("商品 {i}").into(), ..Catalog::default() })
            .unwrap();
        // Every other record keyed: the file holds outcome chunks to damage too.
        let idempotency = (i % 2 == 0).then(|| zaiko::domain::idempotency::IdemWrite {
            key: format!("put-S{i}"),
            fingerprint: [i as u8; 32],
            status: zaiko::domain::idempotency::Status::Created,
            body: format!(r#"{{"sku":"S{i}","version":1}}"#).into_bytes(),
        });
        let rec = zaiko::domain::event::BrandRecord { brand: b.id.clone(), at: Timestamp(i), idempotency, events: vec![ev] };
        b.apply(i as u64 + 1, &rec).unwrap();
    }
    state.brands.insert(b.id.clone(), b);
    state.lsn = 20;
    let info = zaiko::snapshot::write(dir.path(), &state, Timestamp(0)).unwrap();
    let bytes = std::fs::read(&info.path).unwrap();
    (dir, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 10, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_reader_never_panics_and_never_accepts_a_wrong_state(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let (dir, pristine) = snapshot_bytes();
        let (good, _) = zaiko::snapshot::load(&dir.path().join("snapshots").join("snap-00000000000000000020.sqlite")).unwrap();
        let mut bytes = pristine.clone();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= v;
        }
        let path = dir.path().join("mutated.sqlite");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok((state, _)) = zaiko::snapshot::load(&path) {
            prop_assert!(state == good, "a damaged snapshot loaded as a different state");
        }
    }
}

/// Import files: a header (right, wrong or missing) and lines built from the pieces
/// that trouble CSV and NDJSON readers: quotes, separators, CR, LF, blank lines,
/// invalid UTF-8, numbers out of range, JSON fragments.
fn import_file() -> impl Strategy<Value = (ImportFormat, ImportKind, Vec<u8>)> {
    let format = prop_oneof![Just(ImportFormat::Csv), Just(ImportFormat::Ndjson)];
    let kind = prop_oneof![Just(ImportKind::Stock), Just(ImportKind::Catalog), Just(ImportKind::ShipmentStatus)];
    let piece = prop_oneof![
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"S1".to_vec()),
        Just(b"tsukuba".to_vec()),
        Just(b"-3".to_vec()),
        Just(b"99999999999999999999".to_vec()),
        Just(b"shipped".to_vec()),
        Just("レザースニーカー".as_bytes().to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(b"{\"sku\":\"S1\",\"location\":\"tsukuba\",\"delta\":2}".to_vec()),
        Just(b"{\"sku\":".to_vec()),
        Just(b"[1,{\"a\":[".to_vec()),
        prop::collection::vec(any::<u8>(), 1..4),
    ];
    let header = prop_oneof![
        Just(b"sku,location,delta\n".to_vec()),
        Just(b"sku,location,on_hand,reason\r\n".to_vec()),
        Just(b"sku,name,color,price,tags,attributes.fit\n".to_vec()),
        Just(b"shipment_id,status,tracking_number,carrier\n".to_vec()),
        Just(b"\"sku\",\"loc\nation\",delta\n".to_vec()),
        Just(Vec::new()),
    ];
    (format, kind, header, prop::collection::vec(piece, 0..120)).prop_map(|(format, kind, mut bytes, pieces)| {
        bytes.extend(pieces.concat());
        (format, kind, bytes)
    })
}

/// Rows and errors read (line, as text), and after each chunk its recorded end
/// (offset, line) with the number of items read up to it.
struct Reading {
    items: Vec<(u64, String)>,
    ends: Vec<((u64, u64), usize)>,
}

/// A file read in chunks of `rows_max` rows and about `bytes_max` bytes from `at`.
fn read_chunks(
    path: &std::path::Path,
    format: ImportFormat,
    kind: ImportKind,
    start: &zaiko::imports::reader::Start,
    at: (u64, u64),
    rows_max: usize,
    bytes_max: u64,
) -> Result<Reading, TestCaseError> {
    use zaiko::imports::reader::ChunkReader;
    let mut r = ChunkReader::open(path, format, kind, start, at.0, at.1).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (mut items, mut ends) = (Vec::new(), Vec::new());
    // Each chunk holds at least one row or error, so the file bounds the loop; the
    // guard only turns a reader that never ends into a failure instead of a hang.
    for _ in 0..=path.metadata().unwrap().len() + 1 {
        let chunk = match r.next_chunk(rows_max, bytes_max) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(Reading { items, ends }),
            // A read error (I/O) ends the job; it must not panic, and that is all
            // this checks.
            Err(_) => return Ok(Reading { items, ends }),
        };
        prop_assert!(chunk.len() <= rows_max, "a chunk of {} rows for a bound of {rows_max}", chunk.len());
        let mut these: Vec<(u64, String)> = chunk
            .rows
            .iter()
            .map(|(l, row)| (*l, format!("{row:?}")))
            .chain(chunk.errors.iter().map(|e| (e.row, format!("{e:?}"))))
            .collect();
        these.sort_by_key(|x| x.0);
        items.extend(these);
        ends.push(((chunk.next_offset, chunk.next_row), items.len()));
    }
    Err(TestCaseError::fail("the chunk reader never reached the end of the file"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// The import reader on hostile files: no panic; rows numbered by increasing line;
    /// `rows_total` (count_rows) equals what the reader hands out; and a reader resumed
    /// at any chunk's recorded end reads exactly what followed it — the property
    /// exactly-once resumption after a crash rests on.
    #[test]
    fn import_reader_never_panics_counts_rows_and_resumes_exactly(
        (format, kind, bytes) in import_file(),
        rows_max in 1usize..8,
        bytes_max in 1u64..256,
        pick in any::<prop::sample::Index>(),
        small_limits in prop::option::of((1usize..48, 1usize..6)),
    ) {
        use zaiko::imports::reader;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        std::fs::write(&path, &bytes).unwrap();
        let start = match reader::start(&path, format, kind) {
            // Rows past small bounds are skipped to their end and reported: the same
            // rows, lines and resumption as with the real bounds.
            Ok(mut s) => {
                if let Some((row_bytes_max, row_fields_max)) = small_limits {
                    s.limits = reader::Limits { row_bytes_max, row_fields_max };
                }
                s
            }
            Err(reader::ReadError::Unusable(_)) => return Ok(()),
            Err(e) => { prop_assert!(format == ImportFormat::Csv, "{e}"); return Ok(()); }
        };
        let Reading { items, ends } = read_chunks(&path, format, kind, &start, (start.offset, start.line), rows_max, bytes_max)?;
        for w in items.windows(2) {
            prop_assert!(w[0].0 < w[1].0, "row lines not increasing: {:?}", w);
        }
        if let Some(first) = items.first() {
            prop_assert!(first.0 >= start.line);
        }
        if let Ok(total) = reader::count_rows(&path, format) {
            prop_assert_eq!(total, items.len() as u64, "rows_total differs from the rows read");
        }
        if small_limits.is_some() {
            let real = reader::Start { limits: reader::Limits::default(), ..start.clone() };
            let with_real = read_chunks(&path, format, kind, &real, (real.offset, real.line), rows_max, bytes_max)?;
            let lines = |r: &[(u64, String)]| r.iter().map(|x| x.0).collect::<Vec<_>>();
            prop_assert_eq!(lines(&items), lines(&with_real.items), "small bounds changed which rows were read");
        }
        if !ends.is_empty() {
            let i = pick.index(ends.len());
            let (at, done) = ends[i];
            let resumed = read_chunks(&path, format, kind, &start, at, rows_max, bytes_max)?;
            prop_assert_eq!(&resumed.items[..], &items[done..], "resumed after chunk {} of {}", i, ends.len());
        }
    }

    /// Row parsers on arbitrary text: an error or a row, never a panic.
    #[test]
    fn import_row_parsers_never_panic(fields in prop::collection::vec(".{0,12}", 0..8), line in prop::collection::vec(any::<u8>(), 0..64)) {
        use zaiko::imports::parse::{check_header, csv_row, json_row};
        let headers: [(ImportKind, &[&str]); 6] = [
            (ImportKind::Stock, &["sku", "location", "delta", "reason", "expected_version"]),
            (ImportKind::Stock, &["sku", "location", "op", "quantity", "reason"]),
            (ImportKind::Catalog, &["sku", "name", "price", "tags", "attributes.fit"]),
            (ImportKind::ShipmentStatus, &["shipment_id", "status", "tracking_number", "carrier"]),
            (ImportKind::Transfers, &["id", "origin", "destination", "sku", "quantity"]),
            (ImportKind::Returns, &["id", "shipment_id", "reason", "sku", "quantity"]),
        ];
        for (kind, header) in headers {
            let _ = json_row(kind, &line);
            let cols = check_header(kind, header).unwrap();
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            let _ = csv_row(&cols, &refs);
        }
    }
}
