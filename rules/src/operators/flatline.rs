//! Frozen sensor: the value has not moved by more than `flatline_band` for
//! `flatline_s` of event time, on a point that should move (a level
//! transmitter stuck while the tank is filled looks perfectly healthy to a
//! limit alarm). Returns to normal when the value moves again.
//!
//! One timer per point is pending at a time, moved forward when it fires
//! after the value has changed.

use hazardwatch_proto::{AlarmKind, PointIdx, Reading, RuleEvent};

use crate::operators::event_time::{Deadline, KeyedLogic, Scheduled};
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
    type State = FlatlineState;

    fn on_input(
        &self,
        rules: &RuleSet,
        st: &mut FlatlineState,
        r: &Reading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(f) = rules.point(r.point).and_then(|p| p.flatline) else {
            return;
        };
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
        st: &mut FlatlineState,
        point: PointIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
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
}
