//! Multivariate monitoring (issue 17): a unit's points against the PCA
//! model of its normal operation, in event time. A cooling loss shows as
//! the cooling flow no longer following the load while every value stays
//! inside its usual range: no limit, and no single point's deviation, sees
//! it; the unit's model does, and names the flow.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use hazardwatch_proto::{AlarmKind, Priority, Quality, Reading, RuleEvent};
use hazardwatch_rules::monitor::{Models, Pca, Trained, UnitModel};
use hazardwatch_rules::{SiteModel, Source};

mod common;

/// R1 at 1 Hz from minute `from` for `minutes`: a load swings slowly, and
/// temperature, pressure and cooling flow follow it; from minute `cut` on
/// the flow stays where it was (a cooling loss), by `loss` m3/h less.
fn plant(from: i64, minutes: i64, cut: Option<(i64, f64)>) -> Vec<[f64; 4]> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ from as u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    (from * 60..(from + minutes) * 60)
        .map(|s| {
            let load = (s as f64 / 1500.0).sin() + 0.5 * (s as f64 / 431.0).sin();
            let te = 80.0 + 5.0 * load + noise();
            let pt = 400.0 + 40.0 * load + 4.0 * noise();
            let mut ft = 50.0 + 10.0 * load + noise();
            if let Some((at, loss)) = cut
                && s / 60 >= at
            {
                ft -= loss;
            }
            [s as f64, te, pt, ft]
        })
        .collect()
}

/// The unit's model, fitted on ten hours of one-minute means.
fn models() -> Models {
    let rows: Vec<Vec<f64>> = plant(1_000, 600, None)
        .chunks(60)
        .map(|minute| {
            (1..4)
                .map(|j| minute.iter().map(|r| r[j]).sum::<f64>() / 60.0)
                .collect()
        })
        .collect();
    let pca = Pca::fit(&rows, 0.9, 0.99).unwrap();
    let mut units = BTreeMap::new();
    units.insert(
        "R1".to_owned(),
        UnitModel {
            points: vec!["R1.TE".into(), "R1.PT".into(), "R1.FT".into()],
            pca,
        },
    );
    Models {
        format: Models::FORMAT.into(),
        version: Models::VERSION,
        trained: Trained {
            from_ms: 60_000_000,
            to_ms: 96_000_000,
            park: "P".into(),
            config: "park.toml".into(),
            readings: 108_000,
        },
        grid_s: 60,
        arl0: 43_200.0,
        points: BTreeMap::new(),
        units,
        skipped: BTreeMap::new(),
    }
}

fn park(dir: &Path, multivariate: &str) -> Result<SiteModel, String> {
    park_from(dir, &models(), multivariate)
}

fn park_from(dir: &Path, models: &Models, multivariate: &str) -> Result<SiteModel, String> {
    std::fs::write(
        dir.join("models.json"),
        serde_json::to_string(models).unwrap(),
    )
    .unwrap();
    let text = format!(
        r#"
park = {{ id = "P", models = "models.json" }}
[[enterprise]]
id = "E"
[[enterprise.hazard_source]]
id = "HS"
grade = 2
[[enterprise.hazard_source.unit]]
id = "R1"
{multivariate}
[[enterprise.hazard_source.unit.point]]
id = "R1.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 200.0]
h = 95.0
[[enterprise.hazard_source.unit.point]]
id = "R1.PT"
kind = "pressure"
eng_unit = "kPa"
range = [0.0, 1000.0]
h = 520.0
[[enterprise.hazard_source.unit.point]]
id = "R1.FT"
kind = "measurement"
eng_unit = "m3/h"
range = [0.0, 100.0]
l = 30.0
"#
    );
    SiteModel::parse(&Source {
        path: dir.join("park.toml"),
        text,
    })
    .map_err(|e| e.to_string())
}

fn readings(m: &SiteModel, rows: &[[f64; 4]]) -> Vec<Reading> {
    let ids = ["R1.TE", "R1.PT", "R1.FT"].map(|p| m.catalog.lookup(p).unwrap());
    rows.iter()
        .flat_map(|r| {
            ids.iter().enumerate().map(move |(j, &point)| Reading {
                point,
                ts_ms: r[0] as i64 * 1000,
                value: r[j + 1],
                quality: Quality::Good,
            })
        })
        .collect()
}

fn warnings(events: &[RuleEvent]) -> Vec<(bool, i64)> {
    events
        .iter()
        .filter(|e| e.kind == AlarmKind::Multivariate)
        .map(|e| (e.active, e.ts_ms / 60_000))
        .collect()
}

#[test]
fn a_cooling_loss_inside_every_range_is_a_unit_warning_that_names_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    let m = park(dir.path(), "multivariate = { priority = \"medium\" }").unwrap();
    let unit = m.catalog.unit_lookup("R1").unwrap();
    // Two hours of normal operation: nothing at all.
    let normal = readings(&m, &plant(0, 120, None));
    let events = common::run(&m, 2, 1000, &[normal], 120 * 60_000);
    assert_eq!(events, [], "normal operation raises nothing");

    // The flow falls 6 m3/h behind the load from minute 40 to the end
    // (still inside 30-100, no limit crossed), and comes back at 80.
    let mut rows = plant(0, 40, None);
    rows.extend(plant(40, 40, Some((40, 6.0))));
    rows.extend(plant(80, 40, None));
    let history = readings(&m, &rows);
    let batches: Vec<Vec<Reading>> = history.chunks(1000).map(<[Reading]>::to_vec).collect();
    let events = common::run(&m, 2, 1000, &batches, 120 * 60_000);
    let seen = warnings(&events);
    assert_eq!(
        seen.len(),
        2,
        "one warning and its clear: {seen:?} {events:?}"
    );
    assert!(
        seen[0].0 && (41..=46).contains(&seen[0].1),
        "raised at {:?}",
        seen[0]
    );
    assert!(
        !seen[1].0 && (81..=90).contains(&seen[1].1),
        "cleared at {:?}",
        seen[1]
    );
    assert!(
        events.iter().all(|e| e.kind == AlarmKind::Multivariate),
        "no limit alarm: {events:?}"
    );
    let raise = &events[0];
    assert_eq!(raise.source, hazardwatch_proto::AlarmSource::Unit(unit));
    assert_eq!(raise.priority, Priority::Medium);
    assert!(raise.value > 1.0, "past its limit: {}", raise.value);
    assert_eq!(
        raise.contributors[0],
        m.catalog.lookup("R1.FT"),
        "the flow first"
    );

    // The same events whatever the arrival order and the worker count.
    let mut shuffled = history.clone();
    shuffled.reverse();
    let again = common::run(&m, 1, 1000, &[shuffled], 120 * 60_000);
    assert_eq!(again, events);
}

#[test]
fn a_unit_whose_points_fall_silent_is_not_judged() {
    let dir = tempfile::tempdir().unwrap();
    let m = park(dir.path(), "multivariate = {}").unwrap();
    // The flow reports only for the first ten minutes, during a cooling
    // loss the model would see; afterwards the unit has one point of
    // three missing, more than a quarter: no cell is judged.
    let fl = m.catalog.lookup("R1.FT").unwrap();
    let rows = plant(0, 60, Some((0, 6.0)));
    let history: Vec<Reading> = readings(&m, &rows)
        .into_iter()
        .filter(|r| r.point != fl || r.ts_ms < 600_000)
        .collect();
    let events = common::run(&m, 2, 1000, &[history], 60 * 60_000);
    let seen = warnings(&events);
    // Raised within the ten minutes the flow reported, never cleared
    // while the unit cannot be judged.
    assert!(seen.len() <= 1, "{seen:?}");
    assert!(
        seen.iter().all(|&(active, at)| active && at <= 13),
        "{seen:?}"
    );
}

#[test]
fn a_multivariate_rule_needs_the_units_model() {
    let dir = tempfile::tempdir().unwrap();
    let err = park(dir.path(), "multivariate = { persistence = [0, 5] }").unwrap_err();
    assert!(
        err.contains("unit R1: multivariate") && err.contains("persistence [0, 5]"),
        "{err}"
    );
    // A model whose vectors disagree would index out of bounds: refused.
    let mut bad = models();
    bad.units.get_mut("R1").unwrap().pca.scale.pop();
    let err = park_from(dir.path(), &bad, "multivariate = {}").unwrap_err();
    assert!(
        err.contains("unit R1's model does not have one variable per point"),
        "{err}"
    );
    let m = park(dir.path(), "multivariate = {}").unwrap();
    let unit = m.catalog.unit_lookup("R1").unwrap();
    let rules = m.units[unit as usize].multivariate.clone().unwrap();
    assert_eq!(
        (rules.k, rules.n, rules.priority, rules.max_missing),
        (3, 5, Priority::Low, 0)
    );
}
