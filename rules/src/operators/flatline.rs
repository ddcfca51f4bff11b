//! Frozen sensor: the value has not moved by more than `flatline_band` for
//! `flatline_s` of event time, on a point that should move (a level
//! transmitter stuck while the tank is filled looks perfectly healthy to a
//! limit alarm). Returns to normal when the value moves again.
//!
//! One timer per point is pending at a time, moved forward when it fires
//! after the value has changed.
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
//! flatline_s = 30
//! flatline_band = 0.01
//! "#;
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() })?;
//! let lt = model.catalog.lookup("T101.LT").expect("declared above");
//! // Filling at 6 cm/s, stuck at 10.6 m from 10 s to 60 s, moving again at 61 s.
//! let readings: Vec<Reading> = (0..=62)
//!     .map(|s: i64| {
//!         let value = 10.0 + 0.06 * s.clamp(0, 10) as f64 + if s > 60 { 0.5 } else { 0.0 };
//!         Reading { point: lt, ts_ms: s * 1000, value, quality: Quality::Good }
//!     })
//!     .collect();
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 62_000)?;
//! let seen: Vec<_> = events.iter().map(|e| (e.kind.tag(), e.active, e.ts_ms / 1000)).collect();
//! assert_eq!(seen, [("FLAT", true, 40), ("FLAT", false, 61)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Reading, RuleEvent};

use crate::operators::event_time::{Deadline, KeyedLogic, Scheduled, Sparse, withdraw};
use crate::rule_set::RuleSet;

/// The flatline rule over every point with `flatline_s`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatline;

/// Per-point state.
#[derive(Debug, Default)]
pub struct FlatlineState {
    /// The value the point is stuck at, and since when.
    reference: Option<(f64, i64)>,
    deadline: Deadline,
    active: bool,
}

impl KeyedLogic for Flatline {
    type Input = Reading;
    type State = Sparse<FlatlineState>;

    fn on_input(
        &self,
        rules: &RuleSet,
        st: &mut Sparse<FlatlineState>,
        r: &Reading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(f) = rules.point(r.point).and_then(|p| p.flatline) else {
            return;
        };
        let st = st.get_or_insert_with(Box::default);
        if !r.quality.is_process_value() {
            return;
        }
        match st.reference {
            Some((v, _)) if (r.value - v).abs() <= f.band => {}
            _ => {
                st.reference = Some((r.value, r.ts_ms));
                if st.active {
                    st.active = false;
                    out.push(rules.event(
                        r.point,
                        AlarmKind::Flatline,
                        false,
                        r.ts_ms,
                        r.value,
                        f.after_ms as f64 / 1000.0,
                    ));
                }
            }
        }
        if let Some((_, since)) = st.reference {
            st.deadline.arm(since + f.after_ms, timers);
        }
    }

    fn on_timer(
        &self,
        rules: &RuleSet,
        st: &mut Sparse<FlatlineState>,
        point: PointIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(st) = st.as_deref_mut() else { return };
        let (Some(f), Some((value, since))) =
            (rules.point(point).and_then(|p| p.flatline), st.reference)
        else {
            return;
        };
        if st.deadline.fired(due_ms, since + f.after_ms, timers) && !st.active {
            st.active = true;
            out.push(rules.event(
                point,
                AlarmKind::Flatline,
                true,
                due_ms,
                value,
                f.after_ms as f64 / 1000.0,
            ));
        }
    }

    /// The flatline check removed by a reload (or the whole point).
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        st: &mut Sparse<FlatlineState>,
        point: PointIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(st) = st.as_deref_mut() else { return };
        let configured = rules.point(point).is_some_and(|p| p.flatline.is_some());
        withdraw(
            &mut st.active,
            configured,
            rules,
            AlarmSource::Point(point),
            AlarmKind::Flatline,
            ts_ms,
            out,
        );
    }

    fn on_restore(&self, st: &mut Sparse<FlatlineState>, kind: AlarmKind) {
        if kind == AlarmKind::Flatline {
            st.get_or_insert_with(Box::default).active = true;
        }
    }
}
