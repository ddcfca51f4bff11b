//! Communication loss: no reading of a point for `stale_s` of event time.
//! Live, event time follows the wall clock, so a silent gateway's points go
//! stale on the dataflow's timer even though nothing arrives; in replay the
//! same happens at the same event times. The alarm returns to normal with
//! the next reading.
//!
//! One timer per point is pending at a time: when it fires early (readings
//! came since it was set) it is moved to the new deadline.

use hazardwatch_proto::{AlarmKind, PointIdx, Reading, RuleEvent};

use crate::operators::event_time::{Deadline, PointLogic, Scheduled};
use crate::operators::health::PointTable;

/// The stale rule over every point with `stale_s` above 0.
#[derive(Debug, Clone)]
pub struct Stale {
    table: PointTable,
}

impl Stale {
    /// The rule over the point table.
    pub fn new(table: PointTable) -> Self {
        Stale { table }
    }
}

/// Per-point state.
#[derive(Debug, Default)]
pub struct StaleState {
    last_ts: Option<i64>,
    last_value: f64,
    deadline: Deadline,
    active: bool,
}

impl PointLogic for Stale {
    type State = StaleState;

    fn on_reading(
        &self,
        st: &mut StaleState,
        r: &Reading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(after) = self.table.rules(r.point).and_then(|p| p.stale_ms) else {
            return;
        };
        if st.active {
            st.active = false;
            out.push(self.table.event(
                r.point,
                AlarmKind::Stale,
                false,
                r.ts_ms,
                r.value,
                after as f64 / 1000.0,
            ));
        }
        st.last_ts = Some(st.last_ts.map_or(r.ts_ms, |t| t.max(r.ts_ms)));
        st.last_value = r.value;
        st.deadline.arm(r.ts_ms + after, timers);
    }

    fn on_timer(
        &self,
        st: &mut StaleState,
        point: PointIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let (Some(after), Some(last)) =
            (self.table.rules(point).and_then(|p| p.stale_ms), st.last_ts)
        else {
            return;
        };
        if st.deadline.fired(due_ms, last + after, timers) && !st.active {
            st.active = true;
            // Value: the last one received; limit: the allowed silence in s.
            out.push(self.table.event(
                point,
                AlarmKind::Stale,
                true,
                due_ms,
                st.last_value,
                after as f64 / 1000.0,
            ));
        }
    }
}
