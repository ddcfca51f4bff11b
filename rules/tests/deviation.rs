//! Deviation from learned normal operation (issue 17): a point's one-minute
//! means against the centre and spread `hazardwatch learn` fitted, through
//! a CUSUM with persistence, in event time.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use hazardwatch_proto::{AlarmKind, Priority, Quality, Reading, RuleEvent};
use hazardwatch_rules::monitor::{Ar1, Cusum, Models, PointModel, Robust, Trained};
use hazardwatch_rules::{SiteModel, Source};

mod common;

/// Models for the park below: R1.TE normally 50 degC with a spread of 1
/// on a one-minute grid, its CUSUM tuned for a month of minutes; R1.PT was
/// skipped when they were fitted.
fn models() -> Models {
    let mut points = BTreeMap::new();
    points.insert(
        "R1.TE".to_owned(),
        PointModel {
            kind: "temperature".into(),
            eng_unit: "degC".into(),
            samples: 10_080,
            robust: Robust {
                centre: 50.0,
                spread: 1.0,
            },
            cusum: Cusum::for_arl(0.5, 43_200.0),
            ar1: Ar1(0.0),
        },
    );
    Models {
        format: Models::FORMAT.into(),
        version: Models::VERSION,
        trained: Trained {
            from_ms: 0,
            to_ms: 604_800_000,
            park: "P".into(),
            config: "park.toml".into(),
            readings: 1_209_600,
        },
        grid_s: 60,
        arl0: 43_200.0,
        points,
        units: BTreeMap::new(),
        skipped: [(
            "R1.PT".to_owned(),
            "it does not vary in the period".to_owned(),
        )]
        .into(),
    }
}

/// The park with `deviation` on R1.TE as given, its models file beside it.
fn park(dir: &Path, deviation: &str, models_line: &str) -> Result<SiteModel, String> {
    park_with(dir, deviation, "", models_line)
}

/// [`park`] with settings for R1.PT too.
fn park_with(
    dir: &Path,
    deviation: &str,
    pt: &str,
    models_line: &str,
) -> Result<SiteModel, String> {
    park_from(dir, &models(), deviation, pt, models_line)
}

/// [`park_with`] on `models`.
fn park_from(
    dir: &Path,
    models: &Models,
    deviation: &str,
    pt: &str,
    models_line: &str,
) -> Result<SiteModel, String> {
    std::fs::write(
        dir.join("models.json"),
        serde_json::to_string(models).unwrap(),
    )
    .unwrap();
    let text = common::model_text(&format!(
        r#"
[[enterprise.hazard_source.unit.point]]
id = "R1.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 200.0]
{deviation}
[[enterprise.hazard_source.unit.point]]
id = "R1.PT"
kind = "pressure"
eng_unit = "kPa"
range = [0.0, 1000.0]
{pt}
"#
    ))
    .replacen(
        "park = { id = \"P\" }",
        &format!("park = {{ id = \"P\"{models_line} }}"),
        1,
    );
    SiteModel::parse(&Source {
        path: dir.join("park.toml"),
        text,
    })
    .map_err(|e| e.to_string())
}

/// R1.TE at 1 Hz for `minutes`: noise of one spread around 50, and from
/// minute `from` to minute `to` a drift of `shift` spreads.
fn history(m: &SiteModel, minutes: i64, from: i64, to: i64, shift: f64) -> Vec<Reading> {
    let te = m.catalog.lookup("R1.TE").unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..minutes * 60)
        .map(|s| {
            let (u, v) = (uniform(), uniform());
            let noise = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            let minute = s / 60;
            // One-minute means of 1 Hz noise have a spread of 1/sqrt(60):
            // the model's spread of 1 is of the means, so the readings
            // carry noise of sqrt(60) to match it.
            let drift = if (from..to).contains(&minute) {
                shift
            } else {
                0.0
            };
            Reading {
                point: te,
                ts_ms: s * 1000,
                value: 50.0 + drift + 60f64.sqrt() * noise,
                quality: Quality::Good,
            }
        })
        .collect()
}

fn deviations(events: &[RuleEvent]) -> Vec<(bool, i64)> {
    events
        .iter()
        .filter(|e| e.kind == AlarmKind::Deviation)
        .map(|e| (e.active, e.ts_ms / 60_000))
        .collect()
}

#[test]
fn a_drift_of_a_spread_and_a_half_is_a_pre_alarm_and_normal_operation_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let m = park(
        dir.path(),
        "deviation = { priority = \"medium\" }",
        ", models = \"models.json\"",
    )
    .unwrap();
    // Three hours of normal operation: nothing.
    let normal = history(&m, 180, 0, 0, 0.0);
    let batches: Vec<Vec<Reading>> = normal.chunks(500).map(<[Reading]>::to_vec).collect();
    let events = common::run(&m, 2, 1000, &batches, 180 * 60_000);
    assert_eq!(
        deviations(&events),
        [],
        "false pre-alarms in normal operation"
    );

    // A drift of 1.5 spreads from minute 30 to 90.
    let drift = history(&m, 180, 30, 90, 1.5);
    let batches: Vec<Vec<Reading>> = drift.chunks(500).map(<[Reading]>::to_vec).collect();
    let events = common::run(&m, 2, 1000, &batches, 180 * 60_000);
    let seen = deviations(&events);
    assert_eq!(seen.len(), 2, "one raise, one clear: {seen:?}");
    let (raised, cleared) = (seen[0], seen[1]);
    assert!(raised.0 && !cleared.0);
    // The CUSUM climbs about one spread a minute to its decision
    // interval (about 9.5), then three of five cells: 8 to 20 minutes.
    assert!(
        (38..=50).contains(&raised.1),
        "raised at minute {}",
        raised.1
    );
    // Held at 1.5 h, it falls under h within about 10 minutes of the
    // drift's end, then five quiet cells.
    assert!(
        (91..=110).contains(&cleared.1),
        "cleared at minute {}",
        cleared.1
    );
    let e = events
        .iter()
        .find(|e| e.kind == AlarmKind::Deviation)
        .unwrap();
    assert_eq!(e.priority, Priority::Medium);
    assert_eq!(e.limit, 50.0, "the learned centre");
    assert_eq!(e.ts_ms % 60_000, 0, "at the end of a grid cell");

    // The same events whatever the arrival order and the worker count.
    let mut shuffled = drift.clone();
    shuffled.reverse();
    let batches: Vec<Vec<Reading>> = shuffled.chunks(777).map(<[Reading]>::to_vec).collect();
    let again = common::run(&m, 1, 1000, &[batches.concat()], 180 * 60_000);
    assert_eq!(deviations(&again), seen);
}

#[test]
fn a_deviation_needs_the_points_model_and_a_pre_alarms_settings() {
    let dir = tempfile::tempdir().unwrap();
    let with = ", models = \"models.json\"";
    let err = park(dir.path(), "deviation = {}", "").unwrap_err();
    assert!(
        err.contains("point R1.TE: deviation") && err.contains("[park] models"),
        "{err}"
    );
    let err = park(dir.path(), "deviation = { priority = \"high\" }", with).unwrap_err();
    assert!(
        err.contains("a learned rule raises a pre-alarm, low or medium"),
        "{err}"
    );
    let err = park(dir.path(), "deviation = { persistence = [6, 5] }", with).unwrap_err();
    assert!(err.contains("persistence [6, 5]"), "{err}");
    // R1.PT has no model: the file says why.
    let err = park_with(dir.path(), "", "deviation = {}", with).unwrap_err();
    assert!(
        err.contains("point R1.PT: deviation")
            && err
                .contains("the models file has no model of R1.PT: it does not vary in the period"),
        "{err}"
    );
    // A models file is input from outside: numbers the rules cannot judge
    // against are refused by name, not divided by.
    let mut bad = models();
    bad.grid_s = 0;
    let err = park_from(dir.path(), &bad, "deviation = {}", "", with).unwrap_err();
    assert!(err.contains("grid_s 0 is not from 1 to 86400"), "{err}");
    let mut bad = models();
    bad.points.get_mut("R1.TE").unwrap().robust.spread = 0.0;
    let err = park_from(dir.path(), &bad, "deviation = {}", "", with).unwrap_err();
    assert!(err.contains("point R1.TE's model needs"), "{err}");
    let m = park(dir.path(), "deviation = {}", with).unwrap();
    let te = m.catalog.lookup("R1.TE").unwrap();
    let d = *m.point_rules(te).deviation.clone().unwrap();
    assert_eq!(
        (d.k, d.n, d.priority, d.grid_ms),
        (3, 5, Priority::Low, 60_000)
    );
}

/// R1.TE at 1 Hz for `minutes` whose one-minute means follow an AR(1)
/// process of coefficient `phi` and unit variance around 50 (a process
/// that wanders slowly with its load), plus `step` spreads from minute
/// `from` on.
fn wandering(m: &SiteModel, minutes: i64, phi: f64, from: i64, step: f64) -> Vec<Reading> {
    let te = m.catalog.lookup("R1.TE").unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut normal = move || {
        let mut u = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    };
    let mut level = 0.0;
    let mut out = Vec::new();
    for minute in 0..minutes {
        level = phi * level + (1.0 - phi * phi).sqrt() * normal();
        let shift = if minute >= from { step } else { 0.0 };
        for s in 0..60 {
            out.push(Reading {
                point: te,
                ts_ms: (minute * 60 + s) * 1000,
                // Readings scattered about the minute's level, summing to it.
                value: 50.0 + level + shift + if s % 2 == 0 { 0.1 } else { -0.1 },
                quality: Quality::Good,
            });
        }
    }
    out
}

#[test]
fn a_point_that_wanders_slowly_is_judged_on_what_its_last_minute_did_not_predict() {
    let dir = tempfile::tempdir().unwrap();
    let with = ", models = \"models.json\"";
    let mut learned = models();
    learned.points.get_mut("R1.TE").unwrap().ar1 = Ar1(0.95);
    let m = park_from(dir.path(), &learned, "deviation = {}", "", with).unwrap();
    let naive = park(dir.path(), "deviation = {}", with).unwrap();
    let hours = 12;
    let normal = wandering(&m, hours * 60, 0.95, i64::MAX, 0.0);
    let batches: Vec<Vec<Reading>> = normal.chunks(600).map(<[Reading]>::to_vec).collect();
    let end = hours * 3_600_000;
    // Judged as independent means, the slow swings of normal operation
    // are shifts again and again; judged on its prediction errors, the
    // point is quiet.
    let raised = |events: &[RuleEvent]| deviations(events).iter().filter(|d| d.0).count();
    let wrong = raised(&common::run(&naive, 2, 1000, &batches, end));
    assert!(
        wrong >= 3,
        "{wrong} pre-alarms taking the means as independent"
    );
    assert_eq!(raised(&common::run(&m, 2, 1000, &batches, end)), 0);
    // A sudden shift of three spreads is still seen, within minutes.
    let shifted = wandering(&m, 180, 0.95, 60, 3.0);
    let batches: Vec<Vec<Reading>> = shifted.chunks(600).map(<[Reading]>::to_vec).collect();
    let seen = deviations(&common::run(&m, 2, 1000, &batches, 180 * 60_000));
    assert!(
        seen.first()
            .is_some_and(|&(up, minute)| up && (61..=75).contains(&minute)),
        "{seen:?}"
    );
}

#[test]
fn the_park_can_give_every_modelled_point_the_deviation_rule() {
    let dir = tempfile::tempdir().unwrap();
    // R1.TE has a model, R1.PT none: the park's setting gives R1.TE the
    // rule and passes R1.PT over, where a point's own setting would be
    // refused.
    let m = park(
        dir.path(),
        "",
        ", models = \"models.json\", deviation = { priority = \"medium\", persistence = [2, 4] }",
    )
    .unwrap();
    let te = m.catalog.lookup("R1.TE").unwrap();
    let pt = m.catalog.lookup("R1.PT").unwrap();
    let d = *m.point_rules(te).deviation.clone().unwrap();
    assert_eq!((d.k, d.n, d.priority), (2, 4, Priority::Medium));
    assert!(m.point_rules(pt).deviation.is_none());
    // A point's own setting wins.
    let m = park(
        dir.path(),
        "deviation = { persistence = [1, 1] }",
        ", models = \"models.json\", deviation = {}",
    )
    .unwrap();
    let d = *m.point_rules(te).deviation.clone().unwrap();
    assert_eq!((d.k, d.n, d.priority), (1, 1, Priority::Low));
    // Without models, or with settings a pre-alarm cannot have: refused
    // once, for the park.
    let err = park(dir.path(), "", ", deviation = {}").unwrap_err();
    assert!(
        err.contains("park: deviation") && err.contains("[park] models"),
        "{err}"
    );
    let err = park(
        dir.path(),
        "",
        ", models = \"models.json\", multivariate = { priority = \"high\" }",
    )
    .unwrap_err();
    assert!(
        err.contains("park: multivariate") && err.contains("low or medium"),
        "{err}"
    );
}
