//! Property-based fuzzing of everything that reads untrusted bytes: WAL frames and
//! records, snapshot files. No input may panic or allocate without bound; damaged input
//! is an error. `ZAIKO_FUZZ_CASES` scales the number of cases (default 1000 each).
//! Failing inputs are kept by proptest under `tests/fuzz/proptest-regressions/`.

use proptest::prelude::*;
use zaiko::domain::event;
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
            levels: Levels(vec![(Id::parse("tsukuba").unwrap(), Level { on_hand: 9, reserved: 2, safety_stock: 1, incoming: 0 })]),
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
        let rec = zaiko::domain::event::BrandRecord { brand: b.id.clone(), at: Timestamp(i), idempotency: None, events: vec![ev] };
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
