//! Frozen sensor: the value has not moved by more than `flatline_band` for
//! `flatline_s` of event time, on a point that should move (a level
//! transmitter stuck while the tank is filled looks perfectly healthy to a
//! limit alarm). Returns to normal when the value moves again.
//!
//! One timer per point is pending at a time, moved forward when it fires
//! after the value has changed.

use hazardwatch_proto::{AlarmKind, PointIdx, Quality, Reading, RuleEvent};

use crate::operators::event_time::{Deadline, PointLogic, Scheduled};
use crate::operators::health::PointTable;

/// The flatline rule over every point with `flatline_s`.
#[derive(Debug, Clone)]
pub struct Flatline {
    table: PointTable,
}

impl Flatline {
    /// The rule over the point table.
    pub fn new(table: PointTable) -> Self {
        Flatline { table }
    }
}

/// Per-point state.
#[derive(Debug, Default)]
pub struct FlatlineState {
    /// The value the point is stuck at, and since when.
    reference: Option<(f64, i64)>,
    deadline: Deadline,
    active: bool,
}

impl PointLogic for Flatline {
    type State = FlatlineState;

    fn on_reading(
        &self,
        st: &mut FlatlineState,
        r: &Reading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(f) = self.table.rules(r.point).and_then(|p| p.flatline) else {
            return;
        };
        if r.quality == Quality::Bad {
            return;
        }
        match st.reference {
            Some((v, _)) if (r.value - v).abs() <= f.band => {}
            _ => {
                st.reference = Some((r.value, r.ts_ms));
                if st.active {
                    st.active = false;
                    out.push(self.table.event(
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
        st: &mut FlatlineState,
        point: PointIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let (Some(f), Some((value, since))) = (
            self.table.rules(point).and_then(|p| p.flatline),
            st.reference,
        ) else {
            return;
        };
        if st.deadline.fired(due_ms, since + f.after_ms, timers) && !st.active {
            st.active = true;
            out.push(self.table.event(
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
