//! Gateway offline, in event time: silence beyond `offline_after_s`, a last
//! will, a gateway never heard from; the same alarms whatever the batches,
//! their order and the number of workers.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use hazardwatch_proto::{AlarmKind, AlarmSource, Quality, Reading, RuleEvent};
use hazardwatch_rules::SiteModel;
use proptest::prelude::*;

mod common;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

/// Unit T1 (two points) reported by GW1 every second (offline after the
/// default 10 s); T2 by GW2 with `offline_after_s = 30`.
fn model() -> SiteModel {
    common::model(&format!(
        r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
[[enterprise.hazard_source.unit.point]]
id = "T1.PT"
kind = "pressure"
eng_unit = "kPa"
range = [0.0, 1000.0]
[[enterprise.hazard_source.unit]]
id = "T2"
[[enterprise.hazard_source.unit.point]]
id = "T2.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
[[enterprise.gateway]]
id = "GW1"
units = ["T1"]
interval_s = 1
password_hash = "{HASH}"
[[enterprise.gateway]]
id = "GW2"
units = ["T2"]
interval_s = 1
offline_after_s = 30
password_hash = "{HASH}"
"#
    ))
}

fn at(m: &SiteModel, point: &str, ts_ms: i64, quality: Quality) -> Reading {
    Reading {
        point: m.catalog.lookup(point).unwrap(),
        ts_ms,
        value: if quality.is_marker() { f64::NAN } else { 1.0 },
        quality,
    }
}

/// The OFFLINE events as (gateway id, active, time, value is NaN).
fn offline(m: &SiteModel, events: &[RuleEvent]) -> Vec<(String, bool, i64, bool)> {
    events
        .iter()
        .filter(|e| e.kind == AlarmKind::Offline)
        .map(|e| {
            let AlarmSource::Gateway(_) = e.source else {
                panic!("OFFLINE on {:?}", e.source)
            };
            (
                m.catalog.source_id(e.source).to_owned(),
                e.active,
                e.ts_ms,
                e.value.is_nan(),
            )
        })
        .collect()
}

/// Readings in [`scenario`].
const SCENARIO_LEN: usize = 26;

/// The scenario: both gateways expected at 0; GW1 reports 0-9 s, is silent,
/// reports again at 40 s, then its last will at 50 s (markers on both its
/// points); GW2 is never heard from.
fn scenario(m: &SiteModel) -> Vec<Reading> {
    let mut r = vec![
        at(m, "T1.LT", 0, Quality::Expected),
        at(m, "T1.PT", 0, Quality::Expected),
        at(m, "T2.LT", 0, Quality::Expected),
    ];
    for s in 0..10 {
        r.push(at(m, "T1.LT", s * 1000, Quality::Good));
        r.push(at(m, "T1.PT", s * 1000 + 500, Quality::Good));
    }
    r.push(at(m, "T1.LT", 40_000, Quality::Good));
    r.push(at(m, "T1.LT", 50_000, Quality::Offline));
    r.push(at(m, "T1.PT", 50_000, Quality::Offline));
    r
}

#[test]
fn silence_a_last_will_and_never_hearing_from_a_gateway_raise_offline() {
    let m = model();
    let events = common::run(&m, 2, 1000, &[scenario(&m)], 100_000);
    assert_eq!(
        offline(&m, &events),
        [
            // GW1: last reading 9.5 s, offline 10 s later.
            ("GW1".into(), true, 19_500, false),
            ("GW2".into(), true, 30_000, true),
            ("GW1".into(), false, 40_000, false),
            ("GW1".into(), true, 50_000, false),
        ]
    );
    let first = events
        .iter()
        .find(|e| e.kind == AlarmKind::Offline)
        .unwrap();
    assert_eq!(first.value, 10.0, "seconds of silence");
    assert_eq!(first.limit, 10.0, "offline_after_s");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_same_alarms_whatever_the_batches_their_order_the_workers_and_the_epochs(
        order in Just((0..SCENARIO_LEN).collect::<Vec<_>>()).prop_shuffle(),
        cuts in prop::collection::vec(1..SCENARIO_LEN, 0..6),
        workers in prop_oneof![Just(1usize), Just(2), Just(4)],
        epoch_ms in prop_oneof![Just(10u64), Just(100), Just(1000)],
    ) {
        let m = model();
        let all = scenario(&m);
        prop_assert_eq!(all.len(), SCENARIO_LEN);
        let want = offline(&m, &common::run(&m, 1, 1000, std::slice::from_ref(&all), 100_000));
        let shuffled: Vec<Reading> = order.iter().map(|&i| all[i]).collect();
        let mut cuts = cuts;
        cuts.sort_unstable();
        cuts.dedup();
        let mut batches = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain([shuffled.len()]) {
            batches.push(shuffled[from..c].to_vec());
            from = c;
        }
        let got = offline(&m, &common::run(&m, workers, epoch_ms, &batches, 100_000));
        prop_assert_eq!(got, want);
    }
}
