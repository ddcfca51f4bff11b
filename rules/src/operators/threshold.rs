//! HH/H/L/LL limit alarms with deadband and on/off delays (ISA-18.2).
//!
//! A high limit's alarm is raised when the value has stayed above the limit
//! for the on-delay, and returns to normal when the value has stayed below
//! `limit - deadband` for the off-delay (mirrored for low limits). Delays run
//! in event time on the dataflow's timers. Readings of bad quality or outside
//! the instrument range are sensor faults, not process values: they neither
//! raise nor clear a limit alarm.
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
//! deadband = 0.5
//! on_delay_s = 5
//! off_delay_s = 0
//! "#;
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() })?;
//! let lt = model.catalog.lookup("T101.LT").expect("declared above");
//! // 1 Hz: 17.0 m, above the limit from 5 s, inside the deadband
//! // (17.5-18.0 m) from 15 s, below it from 25 s.
//! let readings: Vec<Reading> = (0..=30)
//!     .map(|s| {
//!         let value = match s {
//!             0..5 => 17.0,
//!             5..15 => 18.4,
//!             15..25 => 17.8,
//!             _ => 17.2,
//!         };
//!         Reading { point: lt, ts_ms: s * 1000, value, quality: Quality::Good }
//!     })
//!     .collect();
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 30_000)?;
//! let seen: Vec<_> = events.iter().map(|e| (e.kind.tag(), e.active, e.ts_ms / 1000)).collect();
//! // Raised when the on-delay ran out; cleared only below the deadband.
//! assert_eq!(seen, [("H", true, 10), ("H", false, 25)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Reading, RuleEvent};

use crate::operators::event_time::{KeyedLogic, NO_TIME, Scheduled, withdraw};
use crate::rule_set::RuleSet;
use crate::site::{Limit, PointRules};

/// The limit rule over every point of a site model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Threshold;

/// Per-point state: where each limit kind (HH, H, L, LL) stands, so a
/// reloaded configuration that adds or removes a limit leaves the others'
/// states where they are. Packed (48 bytes, not 104): a million points
/// each hold one.
#[derive(Debug)]
pub struct ThresholdState {
    /// By limit slot: event time since which the condition to change
    /// (raise when inactive, clear when active) has held without a break;
    /// [`NO_TIME`]: it does not hold.
    pending_since: [i64; 4],
    /// By limit slot, bit `1 << slot`: the alarm is active.
    active: u8,
    /// Last good in-range value, reported when a delay runs out.
    last_value: f64,
}

impl Default for ThresholdState {
    fn default() -> Self {
        ThresholdState {
            pending_since: [NO_TIME; 4],
            active: 0,
            last_value: 0.0,
        }
    }
}

impl ThresholdState {
    fn active(&self, slot: usize) -> bool {
        self.active & (1 << slot) != 0
    }

    fn set_active(&mut self, slot: usize, active: bool) {
        if active {
            self.active |= 1 << slot;
        } else {
            self.active &= !(1 << slot);
        }
    }

    fn pending_since(&self, slot: usize) -> Option<i64> {
        Some(self.pending_since[slot]).filter(|&t| t != NO_TIME)
    }
}

/// The limit kinds, in the order of [`ThresholdState`]'s slots.
const SLOT_KINDS: [AlarmKind; 4] = [
    AlarmKind::HighHigh,
    AlarmKind::High,
    AlarmKind::Low,
    AlarmKind::LowLow,
];

/// The slot of a limit kind in [`ThresholdState`].
fn slot(kind: AlarmKind) -> usize {
    SLOT_KINDS
        .iter()
        .position(|&k| k == kind)
        .expect("a point's limits are HH, H, L or LL")
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

fn event(
    point: PointIdx,
    rules: &PointRules,
    limit: &Limit,
    active: bool,
    ts_ms: i64,
    value: f64,
) -> RuleEvent {
    RuleEvent {
        latch: rules.latch,
        ..RuleEvent::new(
            AlarmSource::Point(point),
            limit.kind,
            active,
            ts_ms,
            value,
            limit.value,
            limit.priority,
        )
    }
}

impl KeyedLogic for Threshold {
    type Input = Reading;
    type State = ThresholdState;

    fn on_input(
        &self,
        rules: &RuleSet,
        state: &mut ThresholdState,
        r: &Reading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(rules) = rules.point(r.point) else {
            return;
        };
        let (lo, hi) = rules.range;
        if !r.quality.is_process_value() || r.value < lo || r.value > hi {
            return;
        }
        state.last_value = r.value;
        for limit in &rules.limits {
            let i = slot(limit.kind);
            let active = state.active(i);
            let wants_change = if active {
                back_inside(limit, rules.deadband, r.value)
            } else {
                beyond(limit, r.value)
            };
            if !wants_change {
                state.pending_since[i] = NO_TIME;
                continue;
            }
            let delay = if active {
                rules.off_delay_ms
            } else {
                rules.on_delay_ms
            };
            if delay == 0 {
                state.set_active(i, !active);
                state.pending_since[i] = NO_TIME;
                out.push(event(r.point, rules, limit, !active, r.ts_ms, r.value));
            } else if state.pending_since(i).is_none() {
                state.pending_since[i] = r.ts_ms;
                timers.at(r.ts_ms + delay);
            }
        }
    }

    fn on_timer(
        &self,
        rules: &RuleSet,
        state: &mut ThresholdState,
        point: PointIdx,
        due_ms: i64,
        _timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(rules) = rules.point(point) else {
            return;
        };
        for limit in &rules.limits {
            let i = slot(limit.kind);
            let active = state.active(i);
            let delay = if active {
                rules.off_delay_ms
            } else {
                rules.on_delay_ms
            };
            if state
                .pending_since(i)
                .is_some_and(|since| since + delay == due_ms)
            {
                state.set_active(i, !active);
                state.pending_since[i] = NO_TIME;
                out.push(event(
                    point,
                    rules,
                    limit,
                    !active,
                    due_ms,
                    state.last_value,
                ));
            }
        }
    }

    /// A limit removed by a reload (or the whole point) returns to normal
    /// at once; a delay running for it is dropped.
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        state: &mut ThresholdState,
        point: PointIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let limits = rules.point(point).map_or(&[][..], |p| &p.limits[..]);
        for (i, kind) in SLOT_KINDS.into_iter().enumerate() {
            let configured = limits.iter().any(|l| l.kind == kind);
            let mut active = state.active(i);
            withdraw(
                &mut active,
                configured,
                rules,
                AlarmSource::Point(point),
                kind,
                ts_ms,
                out,
            );
            state.set_active(i, active);
            if !configured {
                state.pending_since[i] = NO_TIME;
            }
        }
    }

    fn on_restore(&self, state: &mut ThresholdState, kind: AlarmKind) {
        if let Some(i) = SLOT_KINDS.iter().position(|&k| k == kind) {
            state.set_active(i, true);
        }
    }
}
