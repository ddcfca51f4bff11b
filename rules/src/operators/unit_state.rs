//! Unit state (ISA-18.2 suppression by design): the events of a unit that
//! is stopped or under overhaul, and of its points, are marked suppressed.
//! They are still evaluated and recorded, but not annunciated, and they do
//! not count towards floods or chattering. The state comes from the site
//! model (`state = "overhaul"` on a unit) in force at the event's epoch, so
//! a reloaded model changes it at one event time everywhere.
//!
//! # Example
//!
//! ```
//! use hazardwatch_proto::{Quality, Reading};
//! use hazardwatch_rules::{evaluate, EngineConfig, SiteModel, Source};
//!
//! let text = r#"
//! # park = { id = "P" }
//! # [[enterprise]]
//! # id = "E01"
//! # [[enterprise.hazard_source]]
//! # id = "HS1"
//! # grade = 2
//! [[enterprise.hazard_source.unit]]
//! id = "T101"
//! state = "overhaul"
//! [[enterprise.hazard_source.unit.point]]
//! id = "T101.LT"
//! kind = "level"
//! eng_unit = "m"
//! range = [0.0, 20.0]
//! h = 18.0
//! on_delay_s = 0
//! "#;
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() })?;
//! let lt = model.catalog.lookup("T101.LT").expect("declared above");
//! let readings = [17.0, 18.5].map(|value| Reading { point: lt, ts_ms: 1_000, value, quality: Quality::Good });
//! let events = evaluate(&model, &EngineConfig::default(), [&readings[..1], &readings[1..]], 2_000)?;
//! // Evaluated and recorded, but marked: the control room is not alarmed.
//! let seen: Vec<_> = events.iter().map(|e| (e.kind.tag(), e.active, e.suppressed)).collect();
//! assert_eq!(seen, [("H", true, true)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hazardwatch_proto::RuleEvent;
use timely::dataflow::Stream;

use crate::operators::event_time::EachEvent;
use crate::rule_set::RuleBook;

/// Marks every event whose unit's state suppresses alarms.
pub fn mark_suppressed<'scope>(
    events: Stream<'scope, u64, Vec<RuleEvent>>,
    book: RuleBook,
) -> Stream<'scope, u64, Vec<RuleEvent>> {
    events.each_event("UnitState", book, |rules, e| {
        Some(RuleEvent {
            suppressed: rules.suppressed(e.source),
            ..*e
        })
    })
}
