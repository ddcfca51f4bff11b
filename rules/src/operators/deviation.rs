//! Deviation from learned normal operation (issue 17): a point's readings
//! are averaged over the grid its model was fitted on (one minute by
//! default), each grid mean is standardised by the learned centre and
//! spread, and a two-sided CUSUM accumulates what the mean before did not
//! predict of it (the means' learned autocorrelation, see
//! [`crate::monitor::Ar1`]). The
//! pre-alarm is raised when the CUSUM is past its decision interval `h` in
//! `k` of the last `n` grid cells (persistence keeps a single odd minute
//! from raising it) and clears when none of the last `n` is. The statistic
//! is held at 1.5 h, so that the pre-alarm clears within about h / 2k + n
//! cells of the process being normal again, however long it deviated.
//!
//! A cell is judged when its time is over: at the first reading of a later
//! cell, or at a timer at the cell's end, whichever comes first in event
//! time; its events carry the cell's end as their time, so the same
//! readings give the same events whatever their arrival order. Cells with
//! no good reading are not judged (a silent point is the stale rule's).
//! The event's value is the cell's mean, its limit the learned centre.

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Reading, RuleEvent};

use crate::operators::event_time::{Deadline, KeyedLogic, Scheduled, Sparse, withdraw};
use crate::operators::persistence::Persistence;
use crate::rule_set::RuleSet;
use crate::site::model::DeviationRules;

/// The deviation rule over every point with `deviation`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deviation;

/// Per-point state.
#[derive(Debug, Default)]
pub struct DeviationState {
    /// The cell being filled: its index, the sum and count of its values.
    cell: Option<(i64, f64, u32)>,
    /// The CUSUM's statistics (upper, lower).
    cusum: (f64, f64),
    /// The last judged cell and its standardised mean.
    last: Option<(i64, f64)>,
    /// Whether the CUSUM signalled in the last cells, and the pre-alarm.
    persistence: Persistence,
    deadline: Deadline,
}

impl DeviationState {
    /// Judges the cell being filled, if any.
    fn close(&mut self, d: &DeviationRules, point: PointIdx, out: &mut Vec<RuleEvent>) {
        let Some((cell, sum, count)) = self.cell.take() else {
            return;
        };
        let mean = sum / f64::from(count);
        let z = d.robust.standardise(mean);
        let prev = self.last.map(|(c, zp)| (zp, cell - c));
        self.last = Some((cell, z));
        let (up, down) = d.cusum.step(self.cusum, d.ar1.innovation(z, prev));
        // Held at 1.5 h: a long deviation must not pile up a statistic
        // that would take hours to fall back once the process is normal
        // again (it falls by at least k a cell, so it is under h within
        // h / 2k cells).
        let ceiling = 1.5 * d.cusum.h;
        self.cusum = (up.min(ceiling), down.min(ceiling));
        let change = self.persistence.push(d.cusum.signals(self.cusum), d.k, d.n);
        if let Some(active) = change {
            out.push(RuleEvent::new(
                AlarmSource::Point(point),
                AlarmKind::Deviation,
                active,
                (cell + 1).saturating_mul(d.grid_ms),
                mean,
                d.robust.centre,
                d.priority,
            ));
        }
    }
}

impl KeyedLogic for Deviation {
    type Input = Reading;
    type State = Sparse<DeviationState>;

    fn on_input(
        &self,
        rules: &RuleSet,
        st: &mut Sparse<DeviationState>,
        r: &Reading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(d) = rules
            .point(r.point)
            .and_then(|p| p.deviation.as_deref().copied())
        else {
            return;
        };
        if !r.quality.is_process_value() || !r.value.is_finite() {
            return;
        }
        let st = st.get_or_insert_with(Box::default);
        let cell = r.ts_ms.div_euclid(d.grid_ms);
        if st.cell.is_some_and(|(c, _, _)| c < cell) {
            st.close(&d, r.point, out);
        }
        let (_, sum, count) = st.cell.get_or_insert((cell, 0.0, 0));
        *sum += r.value;
        *count += 1;
        st.deadline
            .arm((cell + 1).saturating_mul(d.grid_ms), timers);
    }

    fn on_timer(
        &self,
        rules: &RuleSet,
        st: &mut Sparse<DeviationState>,
        point: PointIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(st) = st.as_deref_mut() else { return };
        let Some(d) = rules
            .point(point)
            .and_then(|p| p.deviation.as_deref().copied())
        else {
            return;
        };
        // The end of the cell being filled (a later one, if readings have
        // moved on since the timer was set: then it is set again).
        let end = st
            .cell
            .map_or(due_ms, |(c, _, _)| (c + 1).saturating_mul(d.grid_ms));
        if st.deadline.fired(due_ms, end, timers) {
            st.close(&d, point, out);
        }
    }

    /// The deviation rule removed by a reload (or the whole point).
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        st: &mut Sparse<DeviationState>,
        point: PointIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(st) = st.as_deref_mut() else { return };
        let configured = rules.point(point).is_some_and(|p| p.deviation.is_some());
        withdraw(
            st.persistence.active_mut(),
            configured,
            rules,
            AlarmSource::Point(point),
            AlarmKind::Deviation,
            ts_ms,
            out,
        );
        if !configured {
            *st = DeviationState::default();
        }
    }

    fn on_restore(&self, st: &mut Sparse<DeviationState>, kind: AlarmKind) {
        if kind == AlarmKind::Deviation {
            st.get_or_insert_with(Box::default).persistence.restore();
        }
    }
}
