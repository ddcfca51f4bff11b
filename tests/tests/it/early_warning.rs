//! The learned rules on the simulator's slow incidents (issue 17): models
//! learned from simulated normal operation of the example park warn of a
//! cooling degradation, a feed-ratio fault and a slow leak before any limit
//! alarm, stay within the false-warning target in normal operation, and
//! give the same alarms on one worker and two. The long evaluation is the
//! `early_warning` benchmark; this is its short version.

use hazardwatch::config::{Config, EXAMPLE_CONFIG};
use hazardwatch::evaluate::{Setup, evaluate, report};
use hazardwatch_proto::RuleEvent;
use hazardwatch_rules::EngineConfig;
use hazardwatch_storage::reader::Range;

#[test]
fn learned_rules_warn_of_slow_incidents_before_the_limits_and_rarely_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        learn_h: 12,
        normal_h: 6,
        seeds: vec![7],
        workers: 1,
        progress: false,
    };
    let outcome = evaluate(dir.path(), EXAMPLE_CONFIG, &setup).unwrap();
    let table = report(&outcome);
    let names: Vec<&str> = outcome.incidents.iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        ["cooling degradation", "feed-ratio fault", "slow leak"],
        "{table}"
    );
    for i in &outcome.incidents {
        // Each ramps for two to four hours; the first limit alarm comes in
        // its last quarter, the learned warning within half an hour.
        let lead = i.lead_min().unwrap_or(f64::NAN);
        assert!(lead > 45.0, "{}: {lead} min\n{table}", i.name);
    }
    let normal = &outcome.normal;
    assert_eq!(
        normal.other, 0,
        "normal operation crosses no limit\n{table}"
    );
    assert!(normal.units >= 5 && normal.points >= 25, "{table}");
    assert!(normal.per_10min_per_unit() <= 1.0, "{table}");

    // The incidents' run again on two workers: the same alarms.
    let learned = Config::load(&dir.path().join("park-learned.toml")).unwrap();
    let root = dir.path().join("incidents-7");
    let run = |workers| -> Vec<RuleEvent> {
        let engine = EngineConfig {
            workers,
            ..learned.settings.engine.clone()
        };
        let mut events = hazardwatch::replay::replay(
            &root,
            &Range::default(),
            &learned.site,
            None,
            &engine,
            false,
        )
        .unwrap()
        .events;
        events.sort_by(|a, b| {
            (a.ts_ms, a.source, a.kind, a.active)
                .partial_cmp(&(b.ts_ms, b.source, b.kind, b.active))
                .unwrap()
        });
        events
    };
    let one = run(1);
    assert!(
        one.iter()
            .any(|e| e.kind == hazardwatch_proto::AlarmKind::Multivariate)
    );
    assert_eq!(one, run(2));

    // What-if: the park without the learned rules against with them, on
    // the same history: only DEV and MV differ.
    let plain = Config::load(&dir.path().join("park.toml")).unwrap();
    let both = hazardwatch::replay::replay(
        &root,
        &Range::default(),
        &plain.site,
        Some(&learned.site),
        &learned.settings.engine,
        false,
    )
    .unwrap();
    let before = hazardwatch::replay::raises(&plain.site.catalog, &both.events);
    let after = hazardwatch::replay::raises(&learned.site.catalog, both.compared.as_ref().unwrap());
    let learned_only = |id: &str| id.ends_with("/DEV") || id.ends_with("/MV");
    assert!(before.keys().all(|id| !learned_only(id)), "{before:?}");
    assert!(after.keys().any(|id| learned_only(id)), "{after:?}");
    for (id, n) in &after {
        if !learned_only(id) {
            assert_eq!(before.get(id), Some(n), "{id}");
        }
    }
}
