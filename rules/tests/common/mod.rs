//! Fixtures shared by the rules' integration tests: a one-unit park around
//! the points a test declares, and a run of the engine to the end of input.

use hazardwatch_proto::{Reading, RuleEvent};
use hazardwatch_rules::{Collector, Engine, EngineConfig, SiteModel, SiteSpec, Source};

/// A park with one enterprise `E`, hazard source `HS` and unit `T1`, whose
/// points (and any further tables) are `points_toml`.
pub(crate) fn model(points_toml: &str) -> SiteModel {
    parse(&model_text(points_toml))
}

/// The text [`model`] parses.
#[allow(dead_code)]
pub(crate) fn model_text(points_toml: &str) -> String {
    format!(
        r#"
park = {{ id = "P" }}
[[enterprise]]
id = "E"
[[enterprise.hazard_source]]
id = "HS"
grade = 2
[[enterprise.hazard_source.unit]]
id = "T1"
{points_toml}
"#
    )
}

/// Parses and validates a whole configuration text.
pub(crate) fn parse(text: &str) -> SiteModel {
    let src = Source {
        path: "test.toml".into(),
        text: text.into(),
    };
    SiteModel::from_spec(&src.parse::<SiteSpec>().unwrap(), &src).unwrap()
}

/// Feeds the batches in the order given (none may be late: the watermark
/// stays put until they are all in), then advances to `end_ms`, ends the
/// input and returns every event.
pub(crate) fn run(
    model: &SiteModel,
    workers: usize,
    epoch_ms: u64,
    batches: &[Vec<Reading>],
    end_ms: i64,
) -> Vec<RuleEvent> {
    let events = Collector::new();
    let config = EngineConfig {
        workers,
        epoch_ms,
        lateness_ms: 0,
    };
    let mut engine = Engine::start(model, &config, events.sink()).unwrap();
    let mut late = Vec::new();
    for b in batches {
        engine.input().send(b, &mut late);
        assert!(
            late.iter().all(|l| !l),
            "nothing is late before the watermark moves"
        );
    }
    engine.input().advance_to(end_ms);
    engine.finish().unwrap();
    events.take()
}
