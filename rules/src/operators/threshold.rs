//! HH/H/L/LL limit alarms with deadband and on/off delays (ISA-18.2).
//!
//! A high limit's alarm is raised when the value has stayed above the limit
//! for the on-delay, and returns to normal when the value has stayed below
//! `limit - deadband` for the off-delay (mirrored for low limits). Delays run
//! in event time on the dataflow's timers. Readings of bad quality or outside
//! the instrument range are sensor faults, not process values: they neither
//! raise nor clear a limit alarm.

use std::sync::Arc;

use hazardwatch_proto::{PointIdx, Quality, Reading, RuleEvent};

use crate::operators::event_time::{PointLogic, Scheduled};
use crate::site::{Limit, PointRules};

/// The limit rule over every point of a site model.
#[derive(Debug, Clone)]
pub struct Threshold {
    rules: Arc<Vec<PointRules>>,
}

impl Threshold {
    /// A limit rule over the given per-point parameters (indexed by point).
    pub fn new(rules: Arc<Vec<PointRules>>) -> Self {
        Threshold { rules }
    }
}

/// Where one limit of one point stands.
#[derive(Debug, Clone, Copy, Default)]
struct LimitState {
    /// The alarm is active.
    active: bool,
    /// Event time since which the condition to change (raise when inactive,
    /// clear when active) has held without a break.
    pending_since: Option<i64>,
}

/// Per-point state: one [`LimitState`] per configured limit.
#[derive(Debug, Default)]
pub struct ThresholdState {
    limits: Vec<LimitState>,
    /// Last good in-range value, reported when a delay runs out.
    last_value: f64,
}

fn beyond(limit: &Limit, v: f64) -> bool {
    if limit.is_high() {
        v > limit.value
    } else {
        v < limit.value
    }
}

fn back_inside(limit: &Limit, deadband: f64, v: f64) -> bool {
    if limit.is_high() {
        v < limit.value - deadband
    } else {
        v > limit.value + deadband
    }
}

fn event(point: PointIdx, limit: &Limit, active: bool, ts_ms: i64, value: f64) -> RuleEvent {
    RuleEvent {
        point,
        kind: limit.kind,
        active,
        ts_ms,
        value,
        limit: limit.value,
        priority: limit.priority,
        predicted_ms: None,
    }
}

impl PointLogic for Threshold {
    type State = ThresholdState;

    fn on_reading(
        &self,
        state: &mut ThresholdState,
        r: &Reading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(rules) = self.rules.get(r.point as usize) else {
            return;
        };
        let (lo, hi) = rules.range;
        if r.quality == Quality::Bad || r.value < lo || r.value > hi {
            return;
        }
        state
            .limits
            .resize(rules.limits.len(), LimitState::default());
        state.last_value = r.value;
        for (limit, st) in rules.limits.iter().zip(state.limits.iter_mut()) {
            let wants_change = if st.active {
                back_inside(limit, rules.deadband, r.value)
            } else {
                beyond(limit, r.value)
            };
            if !wants_change {
                st.pending_since = None;
                continue;
            }
            let delay = if st.active {
                rules.off_delay_ms
            } else {
                rules.on_delay_ms
            };
            match st.pending_since {
                _ if delay == 0 => {
                    st.active = !st.active;
                    st.pending_since = None;
                    out.push(event(r.point, limit, st.active, r.ts_ms, r.value));
                }
                None => {
                    st.pending_since = Some(r.ts_ms);
                    timers.at(r.ts_ms + delay);
                }
                Some(_) => {}
            }
        }
    }

    fn on_timer(
        &self,
        state: &mut ThresholdState,
        point: PointIdx,
        due_ms: i64,
        _timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(rules) = self.rules.get(point as usize) else {
            return;
        };
        for (limit, st) in rules.limits.iter().zip(state.limits.iter_mut()) {
            let delay = if st.active {
                rules.off_delay_ms
            } else {
                rules.on_delay_ms
            };
            if st
                .pending_since
                .is_some_and(|since| since + delay == due_ms)
            {
                st.active = !st.active;
                st.pending_since = None;
                out.push(event(point, limit, st.active, due_ms, state.last_value));
            }
        }
    }
}
