//! Sensor fault: a reading of bad quality or outside the instrument range is
//! not a process value. It raises a fault alarm (a diagnostic, not a process
//! alarm: the limit rules ignore such readings), which returns to normal at
//! the next good reading inside the range.
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
//! let at = |s: i64, value: f64, quality| Reading { point: lt, ts_ms: s * 1000, value, quality };
//! let readings = [
//!     at(0, 10.0, Quality::Good),
//!     at(1, 25.0, Quality::Good), // beyond the 20 m instrument range
//!     at(2, 19.0, Quality::Bad),  // the gateway flags the value bad
//!     at(3, 10.0, Quality::Good),
//! ];
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 4_000)?;
//! let seen: Vec<_> = events.iter().map(|e| (e.kind.tag(), e.active, e.ts_ms / 1000)).collect();
//! // A fault, and no H alarm: neither 25 m nor the bad 19 m is a level.
//! assert_eq!(seen, [("FAULT", true, 1), ("FAULT", false, 3)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Quality, Reading, RuleEvent};

use crate::operators::event_time::{KeyedLogic, Scheduled, withdraw};
use crate::rule_set::RuleSet;

/// The fault rule over every point.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fault;

impl KeyedLogic for Fault {
    type Input = Reading;
    /// Whether the fault alarm is active.
    type State = bool;

    fn on_input(
        &self,
        rules: &RuleSet,
        active: &mut bool,
        r: &Reading,
        _: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(pr) = rules.point(r.point) else {
            return;
        };
        if r.quality.is_marker() {
            // Communication loss is the stale rule's business.
            return;
        }
        let (lo, hi) = pr.range;
        // The limit reported: the range bound crossed, NaN for bad quality.
        let faulty = if r.quality == Quality::Bad {
            Some(f64::NAN)
        } else if r.value < lo {
            Some(lo)
        } else if r.value > hi {
            Some(hi)
        } else {
            None
        };
        if faulty.is_some() != *active {
            *active = faulty.is_some();
            let limit = faulty.unwrap_or(f64::NAN);
            out.push(rules.event(r.point, AlarmKind::Fault, *active, r.ts_ms, r.value, limit));
        }
    }

    /// A point removed by a reload has no instrument left to be faulty.
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        active: &mut bool,
        point: PointIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let configured = rules.point(point).is_some_and(|p| !p.is_inert());
        withdraw(
            &mut *active,
            configured,
            rules,
            AlarmSource::Point(point),
            AlarmKind::Fault,
            ts_ms,
            out,
        );
    }

    fn on_restore(&self, active: &mut bool, kind: AlarmKind) {
        if kind == AlarmKind::Fault {
            *active = true;
        }
    }
}
