//! Rate-of-change alarm: the least-squares slope over a window, in either
//! direction, faster than the configured rate (e.g. a level rising faster
//! than a transfer should fill it).
//!
//! The alarm is raised when |slope| exceeds the limit and returns to normal
//! when it falls below [`CLEAR_FRACTION`] of it, so a rate hovering at the
//! limit does not chatter. Bad-quality and out-of-range readings are left
//! out of the window.
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
//! roc = { limit_per_min = 0.5, window_s = 60 }
//! "#;
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() })?;
//! let lt = model.catalog.lookup("T101.LT").expect("declared above");
//! // Steady at 10 m, a transfer filling at 1 m/min from 120 s to 300 s.
//! let readings: Vec<Reading> = (0..=480)
//!     .map(|s: i64| {
//!         let value = 10.0 + (s.clamp(120, 300) - 120) as f64 / 60.0;
//!         Reading { point: lt, ts_ms: s * 1000, value, quality: Quality::Good }
//!     })
//!     .collect();
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 480_000)?;
//! let seen: Vec<_> = events.iter().map(|e| (e.kind.tag(), e.active, e.ts_ms / 1000)).collect();
//! // Raised 31 s into the transfer; cleared when the slope over the last
//! // minute falls under 80 % of the limit, 35 s after the filling stops.
//! assert_eq!(seen, [("ROC", true, 151), ("ROC", false, 335)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Reading, RuleEvent};

use crate::operators::event_time::{KeyedLogic, Scheduled, Sparse, withdraw};
use crate::operators::slope::SlopeWindow;
use crate::rule_set::RuleSet;

/// The alarm clears below this fraction of the limit (hysteresis).
pub const CLEAR_FRACTION: f64 = 0.8;

/// The rate-of-change rule over every point that configures `roc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateOfChange;

/// Per-point state.
#[derive(Debug, Default)]
pub struct RocState {
    window: SlopeWindow,
    active: bool,
}

impl KeyedLogic for RateOfChange {
    type Input = Reading;
    type State = Sparse<RocState>;

    fn on_input(
        &self,
        rules: &RuleSet,
        state: &mut Sparse<RocState>,
        r: &Reading,
        _timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(pr) = rules.point(r.point) else {
            return;
        };
        let Some(roc) = pr.roc else { return };
        let state = state.get_or_insert_with(Box::default);
        let (lo, hi) = pr.range;
        if !r.quality.is_process_value() || r.value < lo || r.value > hi {
            return;
        }
        state.window.push(r.ts_ms, r.value, roc.window_ms);
        let Some(fit) = state.window.fit(roc.window_ms) else {
            return;
        };
        let rate = fit.per_s.abs();
        let change = if state.active {
            rate < roc.limit_per_s * CLEAR_FRACTION
        } else {
            rate > roc.limit_per_s
        };
        if change {
            state.active = !state.active;
            // Per minute, as the limit is configured.
            out.push(rules.event(
                r.point,
                AlarmKind::RateOfChange,
                state.active,
                r.ts_ms,
                fit.per_s * 60.0,
                roc.limit_per_s * 60.0,
            ));
        }
    }

    /// The rate-of-change alarm removed by a reload (or the whole point).
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        state: &mut Sparse<RocState>,
        point: PointIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(state) = state.as_deref_mut() else {
            return;
        };
        let configured = rules.point(point).is_some_and(|p| p.roc.is_some());
        withdraw(
            &mut state.active,
            configured,
            rules,
            AlarmSource::Point(point),
            AlarmKind::RateOfChange,
            ts_ms,
            out,
        );
    }

    fn on_restore(&self, state: &mut Sparse<RocState>, kind: AlarmKind) {
        if kind == AlarmKind::RateOfChange {
            state.get_or_insert_with(Box::default).active = true;
        }
    }
}
