//! Alerts: once per crossing, per channel, with SKU overrides; and a property test
//! that the alerts of any sequence of availabilities are exactly its band changes.

use proptest::prelude::*;

use super::*;
use crate::domain::event::{BrandRecord, Cause};
use crate::domain::stock::{Levels, StockOp};
use crate::domain::{BrandId, Timestamp};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

fn brand(default: Option<i64>, skus: &[(&str, i64)]) -> BrandState {
    let mut b = BrandState::new(BrandId::parse("b").unwrap(), "B".into(), Timestamp(0));
    let thresholds = Thresholds { default, skus: skus.iter().map(|(s, t)| (id(s), *t)).collect() };
    let rec = BrandRecord {
        brand: b.id.clone(),
        at: Timestamp(0),
        idempotency: None,
        events: vec![Event::ThresholdsSet { channel: id("ec"), thresholds: Box::new(thresholds) }],
    };
    b.apply(1, &rec).unwrap();
    b
}

fn changed(sku: &str, ec: i64) -> Event {
    Event::StockChanged {
        sku: id(sku),
        version: 1,
        levels: Levels::default(),
        channels: vec![(id("ec"), ec), (id("zozo"), ec)],
        cause: Cause::Change { op: StockOp::Adjust { delta: 1 }, reason: None },
    }
}

/// Feeds availabilities of `sku` one record at a time; the bands the alerts name.
fn run(b: &mut BrandState, sku: &str, availabilities: &[i64]) -> Vec<Band> {
    let mut bands = Vec::new();
    for a in availabilities {
        let alerts = b.stock_alerts(&[changed(sku, *a)]);
        for e in &alerts {
            if let Event::StockAlert { band, channel, .. } = e {
                assert_eq!(channel.as_str(), "ec", "no threshold for zozo");
                bands.push(*band);
            }
        }
        let rec = BrandRecord { brand: b.id.clone(), at: Timestamp(0), idempotency: None, events: alerts };
        b.apply(b.last_lsn + 1, &rec).unwrap();
    }
    bands
}

#[test]
fn an_alert_comes_once_per_crossing_not_per_change() {
    let mut b = brand(Some(5), &[("VIP", 20)]);
    assert_eq!(run(&mut b, "S1", &[10, 9, 4, 3, 2, 0, 0, 1, 5, 6]), [Band::Low, Band::Out, Band::Low, Band::Ok]);
    assert_eq!(run(&mut b, "VIP", &[30, 19, 25]), [Band::Low, Band::Ok]);
}

#[test]
fn two_changes_in_one_record_compare_with_each_other() {
    let b = brand(Some(5), &[]);
    let alerts = b.stock_alerts(&[changed("S1", 3), changed("S1", 0), changed("S1", 0)]);
    let bands: Vec<Band> = alerts.iter().filter_map(|e| if let Event::StockAlert { band, .. } = e { Some(*band) } else { None }).collect();
    assert_eq!(bands, [Band::Low, Band::Out]);
    assert!(brand(None, &[]).stock_alerts(&[changed("S1", 0)]).is_empty(), "no threshold, no alert");
}

proptest! {
    #[test]
    fn alerts_are_exactly_the_band_changes(threshold in 1i64..6, availabilities in prop::collection::vec(0i64..8, 1..40)) {
        let mut b = brand(Some(threshold), &[]);
        let got = run(&mut b, "S1", &availabilities);
        let mut want = Vec::new();
        let mut band = Band::Ok;
        for a in availabilities {
            let now = Band::of(a, threshold);
            if now != band { want.push(now); band = now; }
        }
        prop_assert_eq!(got, want);
    }
}

#[test]
fn bands_go_with_their_sku_and_with_their_threshold() {
    let mut b = brand(Some(5), &[("VIP", 20)]);
    run(&mut b, "S1", &[3]);
    run(&mut b, "VIP", &[10]);
    assert_eq!(b.bands.len(), 2);
    b.forget_bands_of(&id("S1"));
    assert_eq!((b.band(&id("S1"), &id("ec")), b.bands.len()), (Band::Ok, 1), "a deleted SKU keeps no band");
    // Thresholds without a default: only VIP keeps one, so only VIP keeps its band.
    run(&mut b, "S1", &[0]);
    let set = |t: Thresholds| BrandRecord {
        brand: BrandId::parse("b").unwrap(),
        at: Timestamp(0),
        idempotency: None,
        events: vec![Event::ThresholdsSet { channel: id("ec"), thresholds: Box::new(t) }],
    };
    let only_vip = Thresholds { default: None, skus: [(id("VIP"), 20)].into_iter().collect() };
    b.apply(b.last_lsn + 1, &set(only_vip)).unwrap();
    assert_eq!(b.bands.keys().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["VIP"]);
    b.apply(b.last_lsn + 1, &set(Thresholds::default())).unwrap();
    assert!(b.bands.is_empty(), "no thresholds, no bands");
}
