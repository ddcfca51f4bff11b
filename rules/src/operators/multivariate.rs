//! Multivariate monitoring of a unit against its learned normal operation
//! (issue 17): the readings of the unit's modelled points are averaged
//! over the model's grid in event time; each complete cell is a sample
//! scored by the unit's PCA model. The pre-alarm (`UNIT/MV`) is raised when
//! Hotelling's T² (the usual relations at unusual values) or the squared
//! prediction error (the relations broken) is past its limit in `k` of the
//! last `n` cells, and clears when none of the last `n` is. Its value is
//! the larger statistic as a multiple of its limit; it names the two
//! points contributing most to that statistic.
//!
//! Points sampled at different rates are all averaged onto the one grid;
//! a point with no reading in a cell keeps its mean of the two cells
//! before. A cell with more than a quarter of the points still missing is
//! not judged: the model cannot say anything sound about it, and the
//! silent points' own stale alarms say which they are.
//!
//! As for the deviation rule, a cell is judged at the first reading of a
//! later cell or at a timer at its end, and its events carry the cell's
//! end as their time.

use hazardwatch_proto::{AlarmKind, AlarmSource, Reading, RuleEvent, UnitIdx};
use serde::{Deserialize, Serialize};

use crate::operators::event_time::{
    Deadline, KeyedLogic, Scheduled, Sparse, Timed, point_hash, withdraw,
};
use crate::operators::persistence::Persistence;
use crate::rule_set::RuleSet;
use crate::site::model::MultivariateRules;

/// Cells a point's mean stands in for it when it has no reading.
const CARRY_CELLS: i64 = 2;

/// A reading of a point of a unit with a multivariate model, routed to the
/// unit's worker.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UnitReading {
    /// The unit.
    pub unit: UnitIdx,
    /// The reading.
    pub reading: Reading,
}

impl Timed for UnitReading {
    type Key = UnitIdx;
    fn key(&self) -> UnitIdx {
        self.unit
    }
    fn ts_ms(&self) -> i64 {
        self.reading.ts_ms
    }
    fn route_key(key: UnitIdx) -> u64 {
        point_hash(key)
    }
    fn sort(records: &mut [Self]) {
        records.sort_unstable_by(|a, b| {
            (a.unit, a.reading.ts_ms, a.reading.point)
                .cmp(&(b.unit, b.reading.ts_ms, b.reading.point))
                .then(a.reading.value.total_cmp(&b.reading.value))
        });
    }
}

/// The multivariate rule over every unit with `multivariate`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Multivariate;

/// Per-unit state.
#[derive(Debug, Default)]
pub struct MultivariateState {
    /// The cell being filled.
    cell: Option<i64>,
    /// Its sum and count per model variable.
    sums: Vec<(f64, u32)>,
    /// Each variable's latest mean and its cell.
    last: Vec<Option<(i64, f64)>>,
    /// Whether a statistic was past its limit in the last cells, and the
    /// pre-alarm.
    persistence: Persistence,
    deadline: Deadline,
}

impl MultivariateState {
    /// Judges the cell being filled, if any.
    fn close(&mut self, m: &MultivariateRules, unit: UnitIdx, out: &mut Vec<RuleEvent>) {
        let Some(cell) = self.cell.take() else { return };
        let vars = m.points.len();
        self.last.resize(vars, None);
        let mut sample = Vec::with_capacity(vars);
        let mut missing = 0;
        for (j, (sum, count)) in self.sums.iter_mut().enumerate() {
            if *count > 0 {
                self.last[j] = Some((cell, *sum / f64::from(*count)));
            }
            (*sum, *count) = (0.0, 0);
            match self.last[j] {
                Some((c, mean)) if cell - c <= CARRY_CELLS => sample.push(mean),
                _ => {
                    missing += 1;
                    sample.push(f64::NAN);
                }
            }
        }
        if missing > m.max_missing || missing == vars {
            return;
        }
        // A missing variable stands at its training mean: it adds nothing
        // to either statistic beyond what the others say.
        for (j, v) in sample.iter_mut().enumerate() {
            if v.is_nan() {
                *v = m.pca.mean[j];
            }
        }
        let score = m.pca.score(&sample);
        let t2 = score.t2 / m.pca.t2_limit;
        let spe = if m.pca.spe_limit > 0.0 {
            score.spe / m.pca.spe_limit
        } else {
            0.0
        };
        let change = self.persistence.push(t2 > 1.0 || spe > 1.0, m.k, m.n);
        let Some(active) = change else { return };
        let (ratio, contributions) = if spe > t2 {
            (spe, &score.spe_contributions)
        } else {
            (t2, &score.t2_contributions)
        };
        let mut order: Vec<usize> = (0..vars).collect();
        order.sort_by(|&a, &b| {
            contributions[b]
                .total_cmp(&contributions[a])
                .then(a.cmp(&b))
        });
        let mut event = RuleEvent::new(
            AlarmSource::Unit(unit),
            AlarmKind::Multivariate,
            active,
            (cell + 1).saturating_mul(m.grid_ms),
            ratio,
            1.0,
            m.priority,
        );
        for (slot, &j) in event.contributors.iter_mut().zip(&order) {
            *slot = m.points.get(j).copied();
        }
        out.push(event);
    }
}

impl KeyedLogic for Multivariate {
    type Input = UnitReading;
    type State = Sparse<MultivariateState>;

    fn on_input(
        &self,
        rules: &RuleSet,
        st: &mut Sparse<MultivariateState>,
        r: &UnitReading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(m) = rules.unit(r.unit).and_then(|u| u.multivariate.as_deref()) else {
            return;
        };
        let reading = &r.reading;
        if !reading.quality.is_process_value() || !reading.value.is_finite() {
            return;
        }
        let Some(var) = m.points.iter().position(|&p| p == reading.point) else {
            return;
        };
        let st = st.get_or_insert_with(Box::default);
        let cell = reading.ts_ms.div_euclid(m.grid_ms);
        if st.cell.is_some_and(|c| c < cell) {
            st.close(m, r.unit, out);
        }
        st.sums.resize(m.points.len(), (0.0, 0));
        st.cell = Some(cell);
        let (sum, count) = &mut st.sums[var];
        *sum += reading.value;
        *count += 1;
        st.deadline
            .arm((cell + 1).saturating_mul(m.grid_ms), timers);
    }

    fn on_timer(
        &self,
        rules: &RuleSet,
        st: &mut Sparse<MultivariateState>,
        unit: UnitIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(st) = st.as_deref_mut() else { return };
        let Some(m) = rules.unit(unit).and_then(|u| u.multivariate.as_deref()) else {
            return;
        };
        let end = st
            .cell
            .map_or(due_ms, |c| (c + 1).saturating_mul(m.grid_ms));
        if st.deadline.fired(due_ms, end, timers) {
            st.close(m, unit, out);
        }
    }

    /// The multivariate rule removed by a reload (or the whole unit).
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        st: &mut Sparse<MultivariateState>,
        unit: UnitIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(st) = st.as_deref_mut() else { return };
        let configured = rules.unit(unit).is_some_and(|u| u.multivariate.is_some());
        withdraw(
            st.persistence.active_mut(),
            configured,
            rules,
            AlarmSource::Unit(unit),
            AlarmKind::Multivariate,
            ts_ms,
            out,
        );
        if !configured {
            *st = MultivariateState::default();
        }
    }

    fn on_restore(&self, st: &mut Sparse<MultivariateState>, kind: AlarmKind) {
        if kind == AlarmKind::Multivariate {
            st.get_or_insert_with(Box::default).persistence.restore();
        }
    }
}

/// The unit a reading is routed to, when its point is a variable of its
/// unit's multivariate model.
pub fn routed(rules: &RuleSet, r: &Reading) -> Option<UnitReading> {
    let unit = rules.unit_of(AlarmSource::Point(r.point))?;
    let m = rules.unit(unit)?.multivariate.as_deref()?;
    m.points
        .contains(&r.point)
        .then_some(UnitReading { unit, reading: *r })
}
