//! Rate-of-change alarm: the least-squares slope over a window, in either
//! direction, faster than the configured rate (e.g. a level rising faster
//! than a transfer should fill it).
//!
//! The alarm is raised when |slope| exceeds the limit and returns to normal
//! when it falls below [`CLEAR_FRACTION`] of it, so a rate hovering at the
//! limit does not chatter. Bad-quality and out-of-range readings are left
//! out of the window.

use hazardwatch_proto::{AlarmKind, Reading, RuleEvent};

use crate::operators::event_time::{KeyedLogic, Scheduled};
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
    type State = RocState;

    fn on_input(
        &self,
        rules: &RuleSet,
        state: &mut RocState,
        r: &Reading,
        _timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(pr) = rules.point(r.point) else {
            return;
        };
        let Some(roc) = pr.roc else { return };
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
}
