//! Rules on units and consoles: voting, correlation, suppression by unit
//! state, alarm floods and chattering, and a rule reload mid-stream.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use hazardwatch_proto::{AlarmKind, AlarmSource, Priority, Quality, Reading, RuleEvent};
use hazardwatch_rules::operators::flood::FLOOD_WINDOW_MS;
use hazardwatch_rules::{Collector, Engine, EngineConfig, SiteModel};
use proptest::prelude::*;

mod common;

/// Gas detector `T1.GT{i}`: first level 20 %LEL, second 40.
fn gas_detector(i: u32) -> String {
    format!(
        r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.GT{i}"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = 20.0
hh = 40.0
"#
    )
}

/// Unit T1 with four gas detectors voting 2 of 4, and unit R1 with a
/// temperature and a pressure that correlate.
fn model(t1_state: &str) -> SiteModel {
    let gas = (1..=4).map(gas_detector).collect::<String>();
    common::model(&format!(
        r#"
state = "{t1_state}"
voting = {{ k = 2 }}
{gas}
[[enterprise.hazard_source.unit]]
id = "R1"
correlation = {{ window_s = 60 }}
[[enterprise.hazard_source.unit.point]]
id = "R1.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 200.0]
h = 150.0
roc = {{ limit_per_min = 5.0, window_s = 20 }}
[[enterprise.hazard_source.unit.point]]
id = "R1.PT"
kind = "pressure"
eng_unit = "kPa"
range = [0.0, 1000.0]
h = 900.0
roc = {{ limit_per_min = 30.0, window_s = 20 }}
"#
    ))
}

fn point(m: &SiteModel, id: &str) -> u32 {
    m.catalog.lookup(id).unwrap()
}

/// Readings of `id` each second from `from_s` to `to_s` (exclusive).
fn series(m: &SiteModel, id: &str, from_s: i64, to_s: i64, f: impl Fn(f64) -> f64) -> Vec<Reading> {
    let p = point(m, id);
    (from_s..to_s)
        .map(|s| Reading {
            point: p,
            ts_ms: s * 1000,
            value: (f(s as f64) * 100.0).round() / 100.0,
            quality: Quality::Good,
        })
        .collect()
}

fn of_kind(events: &[RuleEvent], kind: AlarmKind) -> Vec<(AlarmSource, bool, i64)> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.source, e.active, e.ts_ms))
        .collect()
}

/// A leak spreading over the unit: detector i starts rising 30 s after
/// detector i-1, the first three reach the first level, the fourth not.
fn leak(m: &SiteModel) -> Vec<Reading> {
    let mut readings = Vec::new();
    for (i, peak) in [(1, 45.0), (2, 30.0), (3, 22.0), (4, 10.0)] {
        let start = 30.0 * i as f64;
        readings.extend(series(m, &format!("T1.GT{i}"), 0, 400, |t| {
            let x = ((t - start) / 20.0).clamp(0.0, 1.0);
            let back = ((t - start - 120.0) / 20.0).clamp(0.0, 1.0);
            1.0 + (peak - 1.0) * (x - back)
        }));
    }
    readings
}

#[test]
fn a_spreading_leak_raises_exactly_one_unit_alarm() {
    let m = model("running");
    let events = common::run(&m, 2, 1000, &[leak(&m)], 400_000);
    let unit = AlarmSource::Unit(m.catalog.unit_lookup("T1").unwrap());
    let votes = of_kind(&events, AlarmKind::Voting);
    // GT2 reaches 20 %LEL about 13.5 s into its rise (at 60 s): the second
    // detector at the first level confirms the leak. GT3 joining changes
    // nothing; the vote clears when fewer than two remain.
    assert_eq!(votes.len(), 2, "one raise and one clear: {votes:?}");
    assert_eq!(votes[0].0, unit);
    assert!(
        votes[0].1 && (73_000..=75_000).contains(&votes[0].2),
        "{votes:?}"
    );
    assert!(!votes[1].1);
    let raise = events.iter().find(|e| e.kind == AlarmKind::Voting).unwrap();
    assert_eq!(
        (raise.value, raise.limit, raise.priority),
        (2.0, 2.0, Priority::High)
    );
    assert!(raise.latch, "a confirmed leak latches like the gas alarms");
    // Each detector's own alarms latch too.
    assert!(
        events
            .iter()
            .filter(|e| e.kind == AlarmKind::High)
            .all(|e| e.latch)
    );
}

#[test]
fn runaway_heating_is_one_unit_alarm_and_one_rising_point_is_not() {
    let m = model("running");
    let unit = AlarmSource::Unit(m.catalog.unit_lookup("R1").unwrap());
    // Temperature rises at 20 degC/min from 100 s, pressure at 120 kPa/min
    // from 130 s, both for 60 s.
    let ramp = |start: f64, base: f64, per_min: f64| {
        move |t: f64| base + per_min / 60.0 * (t - start).clamp(0.0, 60.0)
    };
    let mut both = series(&m, "R1.TE", 0, 400, ramp(100.0, 60.0, 20.0));
    both.extend(series(&m, "R1.PT", 0, 400, ramp(130.0, 300.0, 120.0)));
    let events = common::run(&m, 2, 1000, &[both], 400_000);
    let corr = of_kind(&events, AlarmKind::Correlation);
    assert_eq!(corr.len(), 2, "{corr:?}");
    assert_eq!((corr[0].0, corr[0].1), (unit, true));
    assert!(!corr[1].1);
    // Raised when the pressure's rate alarm joins the temperature's.
    let pt_roc = events
        .iter()
        .find(|e| e.point() == Some(point(&m, "R1.PT")) && e.kind == AlarmKind::RateOfChange)
        .unwrap();
    assert_eq!(corr[0].2, pt_roc.ts_ms);

    // Temperature alone: rate alarm, no unit alarm.
    let mut alone = series(&m, "R1.TE", 0, 400, ramp(100.0, 60.0, 20.0));
    alone.extend(series(&m, "R1.PT", 0, 400, |_| 300.0));
    let events = common::run(&m, 1, 1000, &[alone], 400_000);
    assert!(of_kind(&events, AlarmKind::Correlation).is_empty());
    assert!(!of_kind(&events, AlarmKind::RateOfChange).is_empty());

    // Pressure rising only after the window: no unit alarm either.
    let mut apart = series(&m, "R1.TE", 0, 600, ramp(100.0, 60.0, 20.0));
    apart.extend(series(&m, "R1.PT", 0, 600, ramp(300.0, 300.0, 120.0)));
    let events = common::run(&m, 1, 1000, &[apart], 600_000);
    assert!(of_kind(&events, AlarmKind::Correlation).is_empty());
}

#[test]
fn a_unit_in_overhaul_is_evaluated_and_recorded_but_suppressed() {
    let m = model("overhaul");
    let events = common::run(&m, 2, 1000, &[leak(&m)], 400_000);
    let t1: Vec<&RuleEvent> = events
        .iter()
        .filter(|e| {
            e.point().is_some_and(|p| m.catalog.meta(p).unit == "T1")
                || e.source == AlarmSource::Unit(m.catalog.unit_lookup("T1").unwrap())
        })
        .collect();
    assert!(
        t1.iter().any(|e| e.kind == AlarmKind::Voting),
        "still evaluated"
    );
    assert!(t1.iter().all(|e| e.suppressed), "and all suppressed");
    // Suppressed alarms do not count as chattering or flood.
    assert!(of_kind(&events, AlarmKind::Chattering).is_empty());
    assert!(of_kind(&events, AlarmKind::Flood).is_empty());
}

/// `count` points that each cross their H limit once, one every `every_s`,
/// starting at 10 s, each staying high for a minute.
fn many_alarms(count: usize, every_s: i64) -> (SiteModel, Vec<Reading>) {
    let points = (0..count)
        .map(|i| {
            format!(
                r#"
[[enterprise.hazard_source.unit.point]]
id = "P{i:02}"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
h = 18.0
on_delay_s = 0
"#
            )
        })
        .collect::<String>();
    let m = common::model(&points);
    let mut readings = Vec::new();
    for i in 0..count {
        let at = 10 + every_s * i as i64;
        readings.extend(series(&m, &format!("P{i:02}"), 0, 3_000, |t| {
            if t as i64 >= at && (t as i64) < at + 60 {
                19.0
            } else {
                10.0
            }
        }));
    }
    (m, readings)
}

#[test]
fn more_than_ten_alarms_in_ten_minutes_is_a_flood_until_fewer_than_five() {
    // One new alarm every 30 s: the 11th (at 310 s) starts the flood.
    let (m, readings) = many_alarms(16, 30);
    let events = common::run(&m, 2, 1000, &[readings], 3_000_000);
    let console = AlarmSource::Console(0);
    let floods: Vec<&RuleEvent> = events
        .iter()
        .filter(|e| e.kind == AlarmKind::Flood)
        .collect();
    assert_eq!(floods.len(), 2, "{floods:?}");
    assert_eq!(
        (floods[0].source, floods[0].active, floods[0].ts_ms),
        (console, true, 310_000)
    );
    assert_eq!((floods[0].value, floods[0].limit), (11.0, 10.0));
    // The last raise is at 460 s; raises age out of the window one by one
    // (every 30 s from 610 s); fewer than 5 remain once the raise at 340 s
    // leaves, at 340 s + 10 min.
    assert!(!floods[1].active);
    assert_eq!(floods[1].ts_ms, 340_000 + FLOOD_WINDOW_MS);
    assert_eq!(floods[1].value, 16.0, "alarms raised during the flood");

    // Slower than that, no flood.
    let (m, readings) = many_alarms(16, 70);
    let events = common::run(&m, 1, 1000, &[readings], 3_000_000);
    assert!(of_kind(&events, AlarmKind::Flood).is_empty());
}

#[test]
fn an_alarm_raised_three_times_in_a_minute_is_chattering() {
    // No deadband, no delays: a value bouncing across the limit chatters.
    let m = common::model(
        r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
h = 18.0
deadband = 0
on_delay_s = 0
off_delay_s = 0
"#,
    );
    let bouncing = series(&m, "T1.LT", 0, 200, |t| {
        if (10.0..40.0).contains(&t) && (t as i64) % 10 < 5 {
            18.5
        } else {
            17.5
        }
    });
    let events = common::run(&m, 2, 1000, &[bouncing], 250_000);
    let source = AlarmSource::Point(point(&m, "T1.LT"));
    // Raises at 10, 20, 30 s: chattering from the third; over a minute
    // after the last raise.
    assert_eq!(
        of_kind(&events, AlarmKind::Chattering),
        [(source, true, 30_000), (source, false, 90_000)]
    );
    // Noise hovering at the limit, flipping each second: without deadband
    // and delay it chatters; with the level defaults (deadband 2 % of span,
    // 5 s on-delay) it raises nothing.
    let hovering = |m: &SiteModel| {
        series(m, "T1.LT", 0, 200, |t| {
            if (t as i64) % 2 == 0 { 18.2 } else { 17.9 }
        })
    };
    let events = common::run(&m, 1, 1000, &[hovering(&m)], 250_000);
    assert_eq!(
        of_kind(&events, AlarmKind::Chattering)[0],
        (source, true, 4_000)
    );
    let m = common::model(
        r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
h = 18.0
"#,
    );
    let events = common::run(&m, 1, 1000, &[hovering(&m)], 250_000);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_reload_changes_the_changed_point_and_keeps_the_others_alarms() {
    let config = EngineConfig {
        workers: 2,
        epoch_ms: 1000,
        lateness_ms: 0,
        ..EngineConfig::default()
    };
    let before = model("running");
    let text_after = |h: f64| {
        common::model_text(&format!(
            r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.GT1"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = 20.0
[[enterprise.hazard_source.unit.point]]
id = "T1.GT2"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = {h}
"#
        ))
    };
    let after = common::parse(&text_after(25.0));
    let gt1 = point(&before, "T1.GT1");
    let gt2 = point(&before, "T1.GT2");
    assert_eq!(
        (point(&after, "T1.GT1"), point(&after, "T1.GT2")),
        (gt1, gt2)
    );
    let events = Collector::new();
    let mut engine = Engine::start(&before, &config, events.sink()).unwrap();
    let r = |p, s: i64, v| Reading {
        point: p,
        ts_ms: s * 1000,
        value: v,
        quality: Quality::Good,
    };
    let mut late = Vec::new();
    // Both at 22 %LEL: both above the old first level (20).
    for s in 0..10 {
        engine
            .input()
            .send(&[r(gt1, s, 22.0), r(gt2, s, 22.0)], &mut late);
    }
    engine.input().advance_to(10_000);
    // GT2's first level moves to 25: from its next reading it is back
    // inside, and clears after the gas off-delay (5 s); GT1's alarm carries
    // on untouched.
    engine.input().reload(&after);
    for s in 10..20 {
        engine
            .input()
            .send(&[r(gt1, s, 22.0), r(gt2, s, 22.0)], &mut late);
    }
    engine.input().advance_to(20_000);
    engine.finish().unwrap();
    let events = events.take();
    let high = |p| -> Vec<(bool, i64)> {
        events
            .iter()
            .filter(|e| e.point() == Some(p) && e.kind == AlarmKind::High)
            .map(|e| (e.active, e.ts_ms))
            .collect()
    };
    assert_eq!(
        high(gt1),
        [(true, 0)],
        "unchanged point: raised once, never again"
    );
    assert_eq!(high(gt2), [(true, 0), (false, 15_000)]);
}

#[test]
fn a_reload_ends_the_alarms_of_removed_points_and_rules_where_it_takes_effect() {
    let level = |extra: &str| {
        format!(
            r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
h = 18.0
on_delay_s = 0
{extra}
"#
        )
    };
    let temperature = r#"
[[enterprise.hazard_source.unit.point]]
id = "T1.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 200.0]
h = 50.0
on_delay_s = 0
"#;
    let before = common::model(&format!(
        "voting = {{ k = 2 }}\n{}{}{}{temperature}",
        gas_detector(1),
        gas_detector(2),
        level("flatline_s = 5")
    ));
    // Voting, the level's flatline check and the whole temperature point
    // are removed; the rest is unchanged.
    let mut after = common::model(&format!(
        "{}{}{}",
        gas_detector(1),
        gas_detector(2),
        level("")
    ));
    let (added, removed) = after.rebase(&before.catalog);
    assert!(added.is_empty());
    assert_eq!(removed, ["T1.TE"]);
    for workers in [1, 2] {
        let config = EngineConfig {
            workers,
            epoch_ms: 1000,
            lateness_ms: 0,
            ..EngineConfig::default()
        };
        let events = Collector::new();
        let mut engine = Engine::start(&before, &config, events.sink()).unwrap();
        let mut late = Vec::new();
        let second = |ids: &[&str], s: i64| -> Vec<Reading> {
            ids.iter()
                .map(|id| Reading {
                    point: point(&before, id),
                    ts_ms: s * 1000,
                    value: if *id == "T1.TE" {
                        60.0
                    } else {
                        19.0 + 3.0 * f64::from(id.starts_with("T1.GT"))
                    },
                    quality: Quality::Good,
                })
                .collect()
        };
        for s in 0..10 {
            let batch = second(&["T1.GT1", "T1.GT2", "T1.LT", "T1.TE"], s);
            engine.input().send(&batch, &mut late);
        }
        engine.input().advance_to(10_500);
        engine.input().reload(&after);
        // The removed point's readings no longer come (ingest quarantines
        // them); the others carry on unchanged.
        for s in 10..20 {
            let batch = second(&["T1.GT1", "T1.GT2", "T1.LT"], s);
            engine.input().send(&batch, &mut late);
        }
        engine.input().advance_to(20_000);
        engine.finish().unwrap();
        let seen: Vec<(String, &str, bool, i64)> = events
            .take()
            .iter()
            .map(|e| {
                let id = after.catalog.source_id(e.source).to_owned();
                (id, e.kind.tag(), e.active, e.ts_ms)
            })
            .collect();
        let ev = |id: &str, tag, active, ts_ms| (id.to_owned(), tag, active, ts_ms);
        assert_eq!(
            seen,
            [
                ev("T1.GT1", "H", true, 0),
                ev("T1.GT2", "H", true, 0),
                ev("T1.LT", "H", true, 0),
                ev("T1.TE", "H", true, 0),
                ev("T1", "VOTE", true, 0),
                ev("T1.LT", "FLAT", true, 5_000),
                // At the start of the epoch the new rules apply from; the
                // gas and level alarms that are still configured go on.
                ev("T1.LT", "FLAT", false, 10_000),
                ev("T1.TE", "H", false, 10_000),
                ev("T1", "VOTE", false, 10_000),
            ],
            "{workers} workers"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Unit and console rules are as deterministic as the point rules:
    /// voting, chattering and floods come out the same whatever the
    /// arrival order, worker count and epochs, to an end off the epochs'
    /// boundaries.
    #[test]
    fn unit_and_console_events_do_not_depend_on_order_or_workers(
        case in common::arrival_case((0u8..4, 0i64..120_000, prop_oneof![0.0..50.0f64, 15.0..25.0f64]), 200)
    ) {
        let m = model("running");
        let points: Vec<u32> = (1..=4).map(|i| point(&m, &format!("T1.GT{i}"))).collect();
        let (reference, got) = common::reference_and_shuffled(&m, &points, &case, 10.0, 1000, 9, 97_537);
        prop_assert_eq!(got, reference);
    }
}

/// Two free loopback addresses for a cluster's processes.
/// A cluster of two processes (here two engines on their own threads,
/// connected over loopback TCP as two hosts would be) finds exactly what
/// one process finds: point, unit and console rules, with each process
/// fed a share of the readings that is not its own points'.
#[test]
fn a_cluster_of_two_processes_finds_what_one_process_finds() {
    let m = model("running");
    let mut readings = leak(&m);
    let ramp = |start: f64, base: f64, per_min: f64| {
        move |t: f64| base + per_min / 60.0 * (t - start).clamp(0.0, 60.0)
    };
    readings.extend(series(&m, "R1.TE", 0, 400, ramp(100.0, 60.0, 20.0)));
    readings.extend(series(&m, "R1.PT", 0, 400, ramp(130.0, 300.0, 120.0)));
    let end_ms = 400_000;
    let one = common::run(&m, 1, 1000, std::slice::from_ref(&readings), end_ms);
    assert!(!of_kind(&one, AlarmKind::Voting).is_empty());
    assert!(!of_kind(&one, AlarmKind::Correlation).is_empty());

    let addresses = common::loopback_addresses(2);
    let gathered = Collector::new();
    let run = |process: usize, sink: hazardwatch_rules::EventSink| {
        let (m, addresses) = (m.clone(), addresses.clone());
        // Process 0 takes the even readings, process 1 the odd ones.
        let share: Vec<Reading> = readings.iter().skip(process).step_by(2).copied().collect();
        std::thread::spawn(move || {
            let config = EngineConfig {
                workers: 2,
                epoch_ms: 1000,
                lateness_ms: 0,
                cluster: addresses,
                process,
                cluster_private_network: false,
                ..EngineConfig::default()
            };
            let mut engine = Engine::start(&m, &config, sink).unwrap();
            let mut late = Vec::new();
            for batch in share.chunks(97) {
                engine.input().send(batch, &mut late);
            }
            engine.input().advance_to(end_ms);
            engine.finish().unwrap()
        })
    };
    let first = run(0, gathered.sink());
    let nowhere = Collector::new();
    let second = run(1, nowhere.sink());
    assert_eq!(first.join().unwrap(), 0, "nothing late");
    assert_eq!(second.join().unwrap(), 0, "nothing late");
    assert!(
        nowhere.take().is_empty(),
        "events are gathered in process 0"
    );
    assert_eq!(gathered.take(), one);
}
