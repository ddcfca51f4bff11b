//! Sensor health: communication loss (stale) and frozen sensors (flatline)
//! on event-time timers, so they fire without any reading arriving.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use hazardwatch_proto::{AlarmKind, Priority, Quality, Reading, RuleEvent};
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
stale_s = 30
flatline_s = 120
flatline_band = 0.005
[[enterprise.hazard_source.unit.point]]
id = "T1.GT"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = 20.0
[[enterprise.hazard_source.unit.point]]
id = "T1.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 100.0]

[defaults.temperature]
stale_s = 0
"#,
    )
}

fn run(model: &SiteModel, readings: &[Reading], end_ms: i64) -> Vec<RuleEvent> {
    common::run(model, 2, 1000, &[readings.to_vec()], end_ms)
}

fn reading(model: &SiteModel, point: &str, ts_ms: i64, value: f64) -> Reading {
    Reading {
        point: model.catalog.lookup(point).unwrap(),
        ts_ms,
        value,
        quality: Quality::Good,
    }
}

fn of(events: &[RuleEvent], point: u32, kind: AlarmKind) -> Vec<(bool, i64)> {
    events
        .iter()
        .filter(|e| e.point() == Some(point) && e.kind == kind)
        .map(|e| (e.active, e.ts_ms))
        .collect()
}

#[test]
fn a_silent_gateway_makes_its_points_stale_without_any_reading_arriving() {
    let m = model();
    let lt = m.catalog.lookup("T1.LT").unwrap();
    let gt = m.catalog.lookup("T1.GT").unwrap();
    let te = m.catalog.lookup("T1.TE").unwrap();
    let mut readings = Vec::new();
    // Every point reports each second for 10 s, then the gateway goes
    // silent until 200 s, then reports once more.
    for s in 0..10 {
        for p in ["T1.LT", "T1.GT", "T1.TE"] {
            readings.push(reading(&m, p, s * 1000, 5.0 + (s % 2) as f64));
        }
    }
    readings.push(reading(&m, "T1.LT", 200_000, 6.0));
    readings.push(reading(&m, "T1.GT", 200_000, 6.0));
    let events = run(&m, &readings, 300_000);
    // Level: stale 30 s after its last reading (9 s), back at 200 s, and
    // stale again 30 s after that single reading.
    assert_eq!(
        of(&events, lt, AlarmKind::Stale),
        [(true, 39_000), (false, 200_000), (true, 230_000)]
    );
    // Gas: the default 60 s, at high priority (lost protection).
    assert_eq!(
        of(&events, gt, AlarmKind::Stale),
        [(true, 69_000), (false, 200_000), (true, 260_000)]
    );
    let gas_stale = events
        .iter()
        .find(|e| e.point() == Some(gt) && e.kind == AlarmKind::Stale)
        .unwrap();
    assert_eq!(gas_stale.priority, Priority::High);
    // Temperature: stale turned off in [defaults.temperature].
    assert!(of(&events, te, AlarmKind::Stale).is_empty());
}

#[test]
fn a_frozen_sensor_raises_flatline_and_moving_again_clears_it() {
    let m = model();
    let lt = m.catalog.lookup("T1.LT").unwrap();
    let mut readings = Vec::new();
    // Moving for 60 s, then stuck at 7.40 (within the 0.005 band) for 200 s,
    // then moving again.
    for s in 0..60 {
        readings.push(reading(&m, "T1.LT", s * 1000, 5.0 + s as f64 * 0.01));
    }
    for s in 60..260 {
        let jitter = if s % 2 == 0 { 0.0 } else { 0.004 };
        readings.push(reading(&m, "T1.LT", s * 1000, 7.40 + jitter));
    }
    for s in 260..300 {
        readings.push(reading(&m, "T1.LT", s * 1000, 7.5 + s as f64 * 0.01));
    }
    let events = run(&m, &readings, 300_000);
    assert_eq!(
        of(&events, lt, AlarmKind::Flatline),
        [(true, 180_000), (false, 260_000)]
    );
    assert!(of(&events, lt, AlarmKind::Stale).is_empty());
}

#[test]
fn stale_does_not_fire_beyond_the_end_of_the_input() {
    let m = model();
    let readings = [reading(&m, "T1.LT", 0, 5.0)];
    // The input ends at 20 s: nothing is known after that, so no stale at 30 s.
    assert!(run(&m, &readings, 20_000).is_empty());
}

#[test]
fn a_gateway_going_offline_makes_its_points_stale_at_once() {
    let m = model();
    let lt = m.catalog.lookup("T1.LT").unwrap();
    let mut readings: Vec<Reading> = (0..5)
        .map(|s| reading(&m, "T1.LT", s * 1000, 5.0 + s as f64 / 10.0))
        .collect();
    // The last will arrives at 6 s: stale then, not 30 s after 4 s.
    readings.push(Reading {
        value: f64::NAN,
        quality: Quality::Offline,
        ..reading(&m, "T1.LT", 6_000, 0.0)
    });
    readings.push(reading(&m, "T1.LT", 20_000, 5.5));
    let events = run(&m, &readings, 25_000);
    assert_eq!(
        of(&events, lt, AlarmKind::Stale),
        [(true, 6_000), (false, 20_000)]
    );
    // An offline marker is not a sensor fault.
    assert!(of(&events, lt, AlarmKind::Fault).is_empty());
}

#[test]
fn a_point_never_heard_from_goes_stale_after_its_expected_marker() {
    let m = model();
    let lt = m.catalog.lookup("T1.LT").unwrap();
    let gt = m.catalog.lookup("T1.GT").unwrap();
    let expected = |point: &str, ts_ms| Reading {
        value: f64::NAN,
        quality: Quality::Expected,
        ..reading(&m, point, ts_ms, 0.0)
    };
    // The service starts at 10 s and expects both points; the level never
    // reports, the gas detector reports at 15 s and 50 s.
    let readings = [
        expected("T1.LT", 10_000),
        expected("T1.GT", 10_000),
        reading(&m, "T1.GT", 15_000, 1.0),
        reading(&m, "T1.GT", 50_000, 1.0),
    ];
    let events = run(&m, &readings, 100_000);
    // The level: stale 30 s after the service began expecting it.
    assert_eq!(of(&events, lt, AlarmKind::Stale), [(true, 40_000)]);
    let first = events.iter().find(|e| e.point() == Some(lt)).unwrap();
    assert!(first.value.is_nan(), "no reading, no value: {first:?}");
    // The gas detector (60 s default): from its last reading, not the
    // marker; a marker is neither a fault nor a value.
    assert!(of(&events, gt, AlarmKind::Stale).is_empty());
    assert!(of(&events, gt, AlarmKind::Fault).is_empty());
    // A marker after a reading (a restart) counts from the later of the
    // two; it does not clear anything on its own.
    let readings = [reading(&m, "T1.LT", 0, 5.0), expected("T1.LT", 20_000)];
    assert_eq!(
        of(&run(&m, &readings, 100_000), lt, AlarmKind::Stale),
        [(true, 50_000)]
    );
}
