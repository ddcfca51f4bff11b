//! The rule engine: the site model, the timely dataflow and its operators.
//! What becomes of a rule's finding (the alarm table, its ISA-18.2 states)
//! is the `hazardwatch-alarms` crate's.
//!
//! - [`site`]: the TOML site model (park > enterprise > hazard source > unit >
//!   point) and its validation, with errors that name file, line and field.
//! - [`engine`]: starts timely workers and feeds them readings in event time.
//! - [`operators`]: the rules, each a [`operators::KeyedLogic`] run by the
//!   shared event-time mechanics.
//! - [`rule_set`]: the rules in force, by the epoch from which they apply.
//!
//! ```
//! use hazardwatch_proto::{Quality, Reading};
//! use hazardwatch_rules::{Collector, Engine, EngineConfig, SiteModel, Source};
//!
//! let text = r#"
//! park = { id = "P" }
//! [[enterprise]]
//! id = "E01"
//! [[enterprise.hazard_source]]
//! id = "HS1"
//! grade = 2
//! [[enterprise.hazard_source.unit]]
//! id = "T101"
//! [[enterprise.hazard_source.unit.point]]
//! id = "T101.LT"
//! kind = "level"
//! eng_unit = "m"
//! range = [0.0, 20.0]
//! h = 18.0
//! on_delay_s = 0
//! "#;
//! let src = Source { path: "park.toml".into(), text: text.into() };
//! let model = SiteModel::parse(&src).unwrap();
//! let events = Collector::new();
//! let config = EngineConfig { workers: 1, ..EngineConfig::default() };
//! let mut engine = Engine::start(&model, &config, events.sink()).unwrap();
//! let point = model.catalog.lookup("T101.LT").unwrap();
//! let readings = [17.0, 18.5].map(|v| Reading { point, ts_ms: 1_000, value: v, quality: Quality::Good });
//! engine.input().send(&readings[..1], &mut Vec::new());
//! engine.input().send(&[Reading { ts_ms: 2_000, ..readings[1] }], &mut Vec::new());
//! engine.input().advance_to(10_000);
//! engine.finish().unwrap();
//! let events = events.take();
//! assert_eq!(events.len(), 1);
//! assert!(events[0].active && events[0].ts_ms == 2_000);
//! ```

pub mod engine;
pub mod error;
pub mod monitor;
pub mod operators;
pub mod rule_set;
pub mod site;

pub use engine::{
    Collector, Engine, EngineConfig, EngineInput, EventSink, Progress, Resume, WatermarkPolicy,
    evaluate,
};
pub use error::{Error, Result};
pub use site::{Invalid, Position, SiteModel, SitePlan, SiteSpec, Source};
