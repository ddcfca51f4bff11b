//! Limit alarms in event time: on/off delays, deadband, sensor faults, and
//! the same events whatever the arrival order and worker count.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use hazardwatch_proto::{AlarmKind, Quality, Reading, RuleEvent};
use hazardwatch_rules::SiteModel;
use proptest::prelude::*;

mod common;

fn model(point_extra: &str) -> SiteModel {
    common::model(&format!(
        r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
h = 18.0
hh = 19.0
deadband = 0.4
{point_extra}
[[enterprise.hazard_source.unit.point]]
id = "T1.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 100.0]
l = 5.0
h = 60.0
on_delay_s = 2
off_delay_s = 2
"#
    ))
}

fn run(model: &SiteModel, workers: usize, batches: &[Vec<Reading>], end_ms: i64) -> Vec<RuleEvent> {
    common::run(model, workers, 100, batches, end_ms)
}

fn series(
    model: &SiteModel,
    point: &str,
    start_ms: i64,
    step_ms: i64,
    values: &[f64],
) -> Vec<Reading> {
    let point = model.catalog.lookup(point).unwrap();
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| Reading {
            point,
            ts_ms: start_ms + i as i64 * step_ms,
            value,
            quality: Quality::Good,
        })
        .collect()
}

fn summary(events: &[RuleEvent]) -> Vec<(AlarmKind, bool, i64)> {
    events.iter().map(|e| (e.kind, e.active, e.ts_ms)).collect()
}

#[test]
fn on_delay_raises_only_after_the_condition_held_and_fires_on_its_timer() {
    let m = model("on_delay_s = 3\noff_delay_s = 0");
    // Above H for 2 s only: nothing.
    let short = series(&m, "T1.LT", 10_000, 1_000, &[17.0, 18.5, 18.6, 17.0]);
    assert!(run(&m, 1, &[short], 60_000).is_empty());
    // Above H from 10 s on, one last reading at 11 s: the timer raises at
    // 13 s although no reading arrives then.
    let held = series(&m, "T1.LT", 10_000, 1_000, &[18.5, 18.7]);
    assert_eq!(
        summary(&run(&m, 1, &[held], 60_000)),
        [(AlarmKind::High, true, 13_000)]
    );
}

#[test]
fn a_timer_beyond_the_end_of_input_does_not_fire() {
    let m = model("on_delay_s = 30");
    let held = series(&m, "T1.LT", 10_000, 1_000, &[18.5, 18.7]);
    assert!(run(&m, 1, &[held], 20_000).is_empty());
}

#[test]
fn deadband_keeps_a_value_hovering_at_the_limit_from_chattering() {
    let m = model("on_delay_s = 0\noff_delay_s = 0");
    let hover = [17.9, 18.1, 17.8, 18.2, 17.7, 18.05, 17.65, 18.1, 17.5, 17.9];
    let events = run(&m, 1, &[series(&m, "T1.LT", 0, 1_000, &hover)], 60_000);
    // Raised at the first excursion, cleared only below 18 - 0.4.
    assert_eq!(
        summary(&events),
        [
            (AlarmKind::High, true, 1_000),
            (AlarmKind::High, false, 8_000)
        ]
    );
}

#[test]
fn off_delay_and_low_limits_mirror_high_ones() {
    let m = model("");
    let te = series(
        &m,
        "T1.TE",
        0,
        1_000,
        &[10.0, 4.0, 4.5, 4.0, 6.0, 4.0, 7.0, 7.0, 7.0],
    );
    // Low from 1 s, held 2 s -> raised at 3 s. Back above L+deadband (6 > 5+1?
    // deadband is 1 % of 100 = 1, so > 6 is needed): 7 at 6 s, held 2 s ->
    // cleared at 8 s. The 6.0 at 4 s is inside the deadband.
    assert_eq!(
        summary(&run(&m, 1, &[te], 60_000)),
        [
            (AlarmKind::Low, true, 3_000),
            (AlarmKind::Low, false, 8_000)
        ]
    );
}

#[test]
fn bad_quality_and_out_of_range_readings_raise_a_fault_not_a_process_alarm() {
    let m = model("on_delay_s = 0\noff_delay_s = 0");
    let p = m.catalog.lookup("T1.LT").unwrap();
    let r = |ts_ms, value, quality| Reading {
        point: p,
        ts_ms,
        value,
        quality,
    };
    let readings = vec![
        r(1_000, 19.5, Quality::Bad),
        r(2_000, 25.0, Quality::Good), // above the instrument range: a fault
        r(3_000, 18.5, Quality::Good),
        r(4_000, 1.0, Quality::Bad),
        r(5_000, -3.0, Quality::Good),
    ];
    // The limit alarm sees only the good in-range reading at 3 s; the
    // others are sensor faults, and the fault alarm follows them.
    assert_eq!(
        summary(&run(&m, 1, &[readings], 60_000)),
        [
            (AlarmKind::Fault, true, 1_000),
            (AlarmKind::High, true, 3_000),
            (AlarmKind::Fault, false, 3_000),
            (AlarmKind::Fault, true, 4_000),
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Same readings, same alarms: whatever order they arrive in (within
    /// the lateness bound), however many workers run the rules and however
    /// long their epochs. The input ends within the readings, off any
    /// epoch's boundary, with delays pending: nothing after it is judged,
    /// whatever the epochs.
    #[test]
    fn events_do_not_depend_on_arrival_order_or_worker_count(
        case in common::arrival_case((0u8..2, 0i64..30_000, prop_oneof![0.0..20.0f64, 17.0..19.5f64]), 120)
    ) {
        let m = model("on_delay_s = 1\noff_delay_s = 1");
        let points = [m.catalog.lookup("T1.LT").unwrap(), m.catalog.lookup("T1.TE").unwrap()];
        // Whole hundredths, as an instrument would report.
        let (reference, got) = common::reference_and_shuffled(&m, &points, &case, 100.0, 100, 7, 24_537);
        prop_assert_eq!(got, reference);
    }
}

#[test]
fn conditions_restored_after_a_restart_clear_when_they_end_and_are_not_raised_again() {
    use hazardwatch_proto::AlarmSource;
    use hazardwatch_rules::{Collector, Engine, EngineConfig, Resume};
    let m = model("on_delay_s = 0\noff_delay_s = 0");
    let lt = m.catalog.lookup("T1.LT").unwrap();
    let te = m.catalog.lookup("T1.TE").unwrap();
    // The journal said: T1.LT H and T1.TE H were active at the stop.
    let active = [
        (AlarmSource::Point(lt), AlarmKind::High),
        (AlarmSource::Point(te), AlarmKind::High),
    ];
    for workers in [1, 2] {
        let config = EngineConfig {
            workers,
            epoch_ms: 100,
            lateness_ms: 0,
            ..EngineConfig::default()
        };
        let events = Collector::new();
        let resume = Resume {
            active: active.to_vec(),
            replay_from_ms: None,
        };
        let mut engine = Engine::start_from(&m, &config, events.sink(), resume).unwrap();
        // The level came back while the service was down; the temperature
        // is still high.
        let mut batch = series(&m, "T1.LT", 1_000, 1_000, &[17.0, 17.0]);
        batch.extend(series(&m, "T1.TE", 1_000, 1_000, &[70.0, 70.0]));
        engine.input().send(&batch, &mut Vec::new());
        engine.input().advance_to(10_000);
        engine.finish().unwrap();
        let seen: Vec<_> = events
            .take()
            .iter()
            .map(|e| (e.point(), e.kind, e.active, e.ts_ms))
            .collect();
        assert_eq!(
            seen,
            [(Some(lt), AlarmKind::High, false, 1_000)],
            "{workers} workers"
        );
    }
}

/// In a cluster, process 0 holds the alarm journal: the conditions it
/// brings reach the workers that own them in the other process, and it
/// learns the earliest point from which any process judges its log again.
#[test]
fn a_cluster_restores_conditions_in_every_process_and_gathers_where_the_logs_start() {
    use hazardwatch_proto::AlarmSource;
    use hazardwatch_rules::{Collector, Engine, EngineConfig, Resume};
    let m = model("on_delay_s = 0\noff_delay_s = 0");
    let lt = m.catalog.lookup("T1.LT").unwrap();
    let te = m.catalog.lookup("T1.TE").unwrap();
    let active = vec![
        (AlarmSource::Point(lt), AlarmKind::High),
        (AlarmSource::Point(te), AlarmKind::High),
    ];
    let addresses = common::loopback_addresses(2);
    let gathered = Collector::new();
    let run = |process: usize, resume: Resume, sink: hazardwatch_rules::EventSink| {
        let (m, addresses) = (m.clone(), addresses.clone());
        // Each process is fed one point's readings: process 0 the level,
        // process 1 the temperature, whoever owns them.
        let point = ["T1.LT", "T1.TE"][process];
        let value = [17.0, 70.0][process];
        let batch = series(&m, point, 1_000, 1_000, &[value, value]);
        std::thread::spawn(move || {
            let config = EngineConfig {
                workers: 1,
                epoch_ms: 100,
                lateness_ms: 0,
                cluster: addresses,
                process,
                cluster_private_network: false,
                ..EngineConfig::default()
            };
            let mut engine = Engine::start_from(&m, &config, sink, resume).unwrap();
            let from = engine.replay_from_ms();
            engine.input().send(&batch, &mut Vec::new());
            engine.input().advance_to(10_000);
            // Every process sees the cluster's progress (its readiness
            // depends on it), not only the one that gathers the events.
            let progress = engine.progress();
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while progress.judged_before_ms() < 10_000 && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert_eq!(progress.judged_before_ms(), 10_000, "process {process}");
            engine.finish().unwrap();
            from
        })
    };
    let first = run(
        0,
        Resume {
            active,
            replay_from_ms: Some(5_000),
        },
        gathered.sink(),
    );
    let second = run(
        1,
        Resume {
            active: Vec::new(),
            replay_from_ms: Some(3_000),
        },
        Collector::new().sink(),
    );
    assert_eq!(first.join().unwrap(), Some(3_000), "the earliest log start");
    second.join().unwrap();
    let seen: Vec<_> = gathered
        .take()
        .iter()
        .map(|e| (e.point(), e.kind, e.active, e.ts_ms))
        .collect();
    assert_eq!(seen, [(Some(lt), AlarmKind::High, false, 1_000)]);
}

#[test]
fn finishing_with_readings_stamped_beyond_the_watermark_ends_and_judges_up_to_it() {
    use hazardwatch_rules::{Collector, Engine, EngineConfig};
    let m = model("on_delay_s = 0\noff_delay_s = 0");
    for workers in [1, 2] {
        let config = EngineConfig {
            workers,
            epoch_ms: 100,
            lateness_ms: 0,
            ..EngineConfig::default()
        };
        let events = Collector::new();
        let mut engine = Engine::start(&m, &config, events.sink()).unwrap();
        // A gateway clock ahead: readings stamped after the watermark the
        // input ends at.
        let batch = series(&m, "T1.LT", 1_000, 1_000, &[18.5, 18.5, 18.5, 18.5, 18.5]);
        engine.input().send(&batch, &mut Vec::new());
        engine.input().advance_to(2_500);
        // Returns (it used to wait for ever on the readings at 3 s to 5 s).
        engine.finish().unwrap();
        let seen: Vec<_> = events
            .take()
            .iter()
            .map(|e| (e.kind, e.active, e.ts_ms))
            .collect();
        assert_eq!(seen, [(AlarmKind::High, true, 1_000)], "{workers} workers");
    }
}

#[test]
fn progress_follows_the_watermark_once_every_worker_has_judged_up_to_it() {
    use hazardwatch_rules::{Collector, Engine, EngineConfig};
    let m = model("on_delay_s = 0\noff_delay_s = 0");
    for workers in [1, 2] {
        let config = EngineConfig {
            workers,
            epoch_ms: 100,
            lateness_ms: 0,
            ..EngineConfig::default()
        };
        let events = Collector::new();
        let mut engine = Engine::start(&m, &config, events.sink()).unwrap();
        let progress = engine.progress();
        assert_eq!(progress.judged_before_ms(), 0, "nothing judged yet");
        let batch = series(&m, "T1.LT", 1_000, 1_000, &[18.5, 18.5]);
        engine.input().send(&batch, &mut Vec::new());
        engine.input().advance_to(5_050);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while progress.judged_before_ms() < 5_000 {
            assert!(std::time::Instant::now() < deadline, "{workers} workers");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Complete epochs only: the one holding 5,050 ms is still open.
        assert_eq!(progress.judged_before_ms(), 5_000, "{workers} workers");
        assert!(!events.take().is_empty(), "the high level was judged");
        engine.finish().unwrap();
    }
}

/// `measurement`: any other process measurement (here a cooling-water
/// flow and a valve position), in its own unit and range, with limits if
/// it has them, judged like the other kinds (their defaults: 2 % deadband,
/// 5 s delays); an occupational exposure limit is still a toxic gas's
/// alone.
#[test]
fn a_measurement_point_has_its_own_unit_and_optional_limits() {
    let points = r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.FT"
kind = "measurement"
eng_unit = "m3/h"
range = [0.0, 100.0]
l = 20.0
[[enterprise.hazard_source.unit.point]]
id = "T1.ZT"
kind = "measurement"
eng_unit = "%"
range = [0.0, 100.0]
"#;
    let m = common::model(points);
    let ft = m.catalog.lookup("T1.FT").unwrap();
    assert_eq!(
        m.catalog.meta(ft).kind,
        hazardwatch_proto::PointKind::Measurement
    );
    // The cooling water falls below L and stays there: L after the 5 s
    // on-delay. The valve position has no limits and raises nothing.
    let mut readings = series(
        &m,
        "T1.FT",
        0,
        1_000,
        &[50.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0],
    );
    readings.extend(series(&m, "T1.ZT", 0, 1_000, &[5.0, 95.0, 100.0, 0.0]));
    let events = run(&m, 2, &[readings], 20_000);
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.point(), e.kind, e.active, e.ts_ms))
        .collect();
    assert_eq!(seen, [(Some(ft), AlarmKind::Low, true, 6_000)]);

    let text = common::model_text(&format!("{points}oel = 5.0\n"));
    let err = hazardwatch_rules::SiteModel::parse(&hazardwatch_rules::Source {
        path: "test.toml".into(),
        text,
    })
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("only toxic_gas points"), "{err}");
}
