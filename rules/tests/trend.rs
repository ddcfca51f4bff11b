//! Trend rules in event time: rate of change, and the predicted-limit early
//! warning that must come well before the HH alarm.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use hazardwatch_proto::{AlarmKind, Quality, Reading, RuleEvent};
use hazardwatch_rules::SiteModel;

mod common;

fn model() -> SiteModel {
    common::model(
        r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
h = 18.0
hh = 19.0
roc = { limit_per_min = 0.5, window_s = 60 }
predict = { horizon_s = 600, window_s = 120 }
[[enterprise.hazard_source.unit.point]]
id = "R1.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 200.0]
h = 80.0
hh = 90.0
predict = { horizon_s = 900 }
"#,
    )
}

fn run(model: &SiteModel, readings: &[Reading], end_ms: i64) -> Vec<RuleEvent> {
    let batches: Vec<Vec<Reading>> = readings.chunks(100).map(<[Reading]>::to_vec).collect();
    common::run(model, 2, 1000, &batches, end_ms)
}

/// 1 Hz readings of `f(t_s)` with a small deterministic ripple, quantised to
/// 0.01 as an instrument reports.
fn profile(model: &SiteModel, point: &str, secs: i64, f: impl Fn(f64) -> f64) -> Vec<Reading> {
    let point = model.catalog.lookup(point).unwrap();
    (0..secs)
        .map(|s| {
            let ripple = 0.02 * ((s * 7919 % 13) as f64 / 13.0 - 0.5);
            Reading {
                point,
                ts_ms: s * 1000,
                value: ((f(s as f64) + ripple) * 100.0).round() / 100.0,
                quality: Quality::Good,
            }
        })
        .collect()
}

fn first(events: &[RuleEvent], kind: AlarmKind, active: bool) -> Option<&RuleEvent> {
    events.iter().find(|e| e.kind == kind && e.active == active)
}

#[test]
fn overfill_warns_minutes_before_the_hh_alarm_and_withdraws_when_the_transfer_stops() {
    let m = model();
    // Filling at 1 m/min from 10 m for 9.5 min, held at 19.5 m for 2 min,
    // then drained at 1 m/min.
    let level = |t: f64| {
        if t < 570.0 {
            10.0 + t / 60.0
        } else if t < 690.0 {
            19.5
        } else {
            19.5 - (t - 690.0) / 60.0
        }
    };
    let events = run(&m, &profile(&m, "T1.LT", 1200, level), 1_200_000);
    let warn = first(&events, AlarmKind::PredictedHighHigh, true).expect("early warning");
    let hh = first(&events, AlarmKind::HighHigh, true).expect("HH alarm");
    let lead_min = (hh.ts_ms - warn.ts_ms) as f64 / 60_000.0;
    println!("overfill: predicted-HH warning {lead_min:.1} min before the HH alarm");
    assert!(lead_min >= 5.0, "only {lead_min:.1} min of warning");
    // The prediction is close to when HH is really reached (540 s).
    let predicted = warn.predicted_ms.unwrap();
    assert!(
        (predicted - 540_000).abs() < 30_000,
        "predicted {predicted}"
    );
    // Withdrawn once the transfer stops and the level falls.
    let withdrawn = first(&events, AlarmKind::PredictedHighHigh, false).expect("withdrawn");
    assert!(withdrawn.ts_ms > 570_000, "{withdrawn:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == AlarmKind::PredictedHighHigh && e.active)
            .count(),
        1,
        "no chattering of the pre-alarm"
    );
    // Rate of change: 1 m/min against 0.5 m/min, raised once the window is
    // half full, cleared when the level holds.
    let roc = first(&events, AlarmKind::RateOfChange, true).expect("ROC alarm");
    assert!(roc.ts_ms <= 60_000, "{roc:?}");
    assert!((roc.value - 1.0).abs() < 0.05, "{roc:?}");
    let roc_clear = first(&events, AlarmKind::RateOfChange, false).expect("ROC cleared");
    assert!(
        (570_000..700_000).contains(&roc_clear.ts_ms),
        "{roc_clear:?}"
    );
}

#[test]
fn runaway_heating_is_predicted_before_the_hh_alarm() {
    let m = model();
    // Steady at 40 degC for 10 min, then heating at 2 degC/min.
    let temp = |t: f64| {
        if t < 600.0 {
            40.0
        } else {
            40.0 + 2.0 * (t - 600.0) / 60.0
        }
    };
    let events = run(&m, &profile(&m, "R1.TE", 2400, temp), 2_400_000);
    let warn = first(&events, AlarmKind::PredictedHighHigh, true).expect("early warning");
    let hh = first(&events, AlarmKind::HighHigh, true).expect("HH alarm");
    let lead_min = (hh.ts_ms - warn.ts_ms) as f64 / 60_000.0;
    println!("runaway heating: predicted-HH warning {lead_min:.1} min before the HH alarm");
    // HH (90) is reached 25 min after heating starts; the horizon is 15 min.
    assert!(lead_min >= 10.0, "only {lead_min:.1} min of warning");
    // No pre-alarm in the steady first 10 minutes.
    assert!(warn.ts_ms > 600_000, "{warn:?}");
}

#[test]
fn steady_noisy_values_raise_no_trend_alarm() {
    let m = model();
    let events = run(&m, &profile(&m, "T1.LT", 3600, |_| 12.0), 3_600_000);
    assert!(events.is_empty(), "{events:?}");
}
