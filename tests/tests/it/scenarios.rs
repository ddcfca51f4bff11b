//! The simulated park through the rule engine, offline and in event time:
//! the incident alarm sequence is pinned as a snapshot, and normal operation
//! must stay quiet (EEMUA 191 asks for about one alarm per 10 minutes per
//! console; a well-behaved simulated park should raise none).

use hazardwatch::config::Config;
use hazardwatch::sim::{SimOptions, Simulator};
use hazardwatch_proto::RuleEvent;
use hazardwatch_rules::{Collector, Engine, EngineConfig, SiteModel};

const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Runs `seconds` of the simulated park (1 Hz) through the engine.
fn simulate(
    model: &SiteModel,
    options: &SimOptions,
    seconds: i64,
    workers: usize,
) -> Vec<RuleEvent> {
    let events = Collector::new();
    let config = EngineConfig {
        workers,
        epoch_ms: 1000,
        lateness_ms: 2000,
        ..EngineConfig::default()
    };
    let mut engine = Engine::start(model, &config, events.sink()).unwrap();
    let mut sim = Simulator::new(model, options);
    let mut late = Vec::new();
    for s in 0..seconds {
        let now = START_MS + s * 1000;
        engine.input().send(&sim.readings(now), &mut late);
        assert!(late.iter().all(|l| !l));
        // Replay-style watermark: it follows the data.
        engine.input().advance_to(now - 2000);
    }
    engine.input().advance_to(START_MS + seconds * 1000);
    engine.finish().unwrap();
    events.take()
}

fn lines(model: &SiteModel, events: &[RuleEvent]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "+{:>5.1}s {:<9} {:<5} {:<7} {}",
                (e.ts_ms - START_MS) as f64 / 1000.0,
                model.catalog.source_id(e.source),
                e.kind.tag(),
                if e.active { "raised" } else { "cleared" },
                e.priority.as_str(),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn incident_alarm_sequence_of_the_example_park() {
    let model = Config::example().site;
    let events = simulate(&model, &SimOptions::default(), 120, 2);
    insta::assert_snapshot!(lines(&model, &events));
    // The same with one worker: same sequence.
    assert_eq!(simulate(&model, &SimOptions::default(), 120, 1), events);
}

#[test]
fn normal_operation_raises_no_alarm_in_two_hours() {
    let model = Config::example().site;
    let options = SimOptions {
        incidents: false,
        ..SimOptions::default()
    };
    let events = simulate(&model, &options, 7_200, 2);
    println!(
        "normal operation: {} alarm events in 2 h of the example park ({:.2} per 10 min)",
        events.len(),
        events.len() as f64 / 12.0
    );
    assert!(events.is_empty(), "{}", lines(&model, &events));
}
