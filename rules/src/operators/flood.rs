//! Alarm flood (per enterprise console), as EEMUA 191 defines it: a flood
//! starts when more than [`FLOOD_START`] alarms were raised in the last
//! [`FLOOD_WINDOW_MS`] and ends when fewer than [`FLOOD_END`] were. Counted
//! are the raises an operator sees: not suppressed ones, and not the flood
//! and chattering conditions themselves.
//!
//! The flood is a console condition that needs no acknowledgement. Its
//! raise carries the alarms in the window (value) against the threshold
//! (limit); its clear carries the alarms raised during the whole flood.
//! The end is found on an event-time timer: when the oldest raise in the
//! window ages out, the count is checked again.
//!
//! # Example
//!
//! ```
//! use hazardwatch_proto::{Quality, Reading};
//! use hazardwatch_rules::{evaluate, EngineConfig, SiteModel, Source};
//!
//! // Eleven level points of one enterprise; point i goes above its limit at
//! // 10·i s and stays there.
//! let mut text = String::from(r#"
//! park = { id = "P" }
//! [[enterprise]]
//! id = "E01"
//! [[enterprise.hazard_source]]
//! id = "HS1"
//! grade = 2
//! [[enterprise.hazard_source.unit]]
//! id = "T101"
//! "#);
//! for i in 1..=11 {
//!     text += &format!("[[enterprise.hazard_source.unit.point]]\nid = \"LT{i}\"\nkind = \"level\"\n\
//!                       eng_unit = \"m\"\nrange = [0.0, 20.0]\nh = 18.0\non_delay_s = 0\n");
//! }
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text })?;
//! let readings: Vec<Reading> = (0..=700)
//!     .flat_map(|s: i64| {
//!         (1..=11).map(move |i: u32| (i, s))
//!     })
//!     .map(|(i, s)| {
//!         let point = model.catalog.lookup(&format!("LT{i}")).expect("declared above");
//!         let value = if s >= 10 * i as i64 { 19.0 } else { 10.0 };
//!         Reading { point, ts_ms: s * 1000, value, quality: Quality::Good }
//!     })
//!     .collect();
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 700_000)?;
//! let flood: Vec<_> = events
//!     .iter()
//!     .filter(|e| model.catalog.source_id(e.source) == "E01")
//!     .map(|e| (e.kind.tag(), e.active, e.ts_ms / 1000, e.value))
//!     .collect();
//! // The 11th alarm in 10 minutes starts a flood; it ends when the 10-minute
//! // window holds fewer than 5 raises (the raise at 70 s left it at 670 s).
//! // The clear carries how many alarms the flood brought.
//! assert_eq!(flood, [("FLOOD", true, 110, 11.0), ("FLOOD", false, 670, 11.0)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;

use hazardwatch_proto::{AlarmKind, AlarmSource, ConsoleIdx, Priority, RuleEvent};

use crate::operators::event_time::{KeyedLogic, Routed, Scheduled};
use crate::rule_set::RuleSet;

/// Length of the sliding window, ms (10 minutes).
pub const FLOOD_WINDOW_MS: i64 = 600_000;
/// A flood starts above this many alarms in the window.
pub const FLOOD_START: usize = 10;
/// A flood ends below this many alarms in the window.
pub const FLOOD_END: usize = 5;

/// True for a rule event that an operator sees as a new alarm: a raise, not
/// suppressed, not an alarm-system condition (flood, chattering).
pub fn annunciated_raise(e: &RuleEvent) -> bool {
    e.active && !e.suppressed && e.kind.needs_ack()
}

/// Keeps the raise times (oldest first) inside the window `(now - window,
/// now]`: the sliding count of the flood and chattering rules.
pub fn keep_window(raises: &mut VecDeque<i64>, now_ms: i64, window_ms: i64) {
    while raises.front().is_some_and(|&t| t <= now_ms - window_ms) {
        raises.pop_front();
    }
}

/// The flood rule over every console.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flood;

/// Per-console state.
#[derive(Debug, Default)]
pub struct FloodState {
    /// Event times of the raises in the window, oldest first.
    raises: VecDeque<i64>,
    /// Raises since the flood started, while it lasts.
    during: Option<u64>,
    /// The pending timer.
    timer: Option<i64>,
}

impl FloodState {
    /// While flooding, keeps a timer at the time the oldest raise ages out.
    fn arm(&mut self, timers: &mut Scheduled) {
        if self.during.is_some()
            && self.timer.is_none()
            && let Some(&oldest) = self.raises.front()
        {
            let due = oldest + FLOOD_WINDOW_MS;
            self.timer = Some(due);
            timers.at(due);
        }
    }
}

fn event(console: ConsoleIdx, active: bool, ts_ms: i64, value: f64, limit: f64) -> RuleEvent {
    RuleEvent::new(
        AlarmSource::Console(console),
        AlarmKind::Flood,
        active,
        ts_ms,
        value,
        limit,
        Priority::Medium,
    )
}

impl KeyedLogic for Flood {
    type Input = Routed;
    type State = FloodState;

    fn on_input(
        &self,
        _rules: &RuleSet,
        st: &mut FloodState,
        input: &Routed,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let e = &input.event;
        if !annunciated_raise(e) {
            return;
        }
        st.raises.push_back(e.ts_ms);
        keep_window(&mut st.raises, e.ts_ms, FLOOD_WINDOW_MS);
        match &mut st.during {
            Some(n) => *n += 1,
            None if st.raises.len() > FLOOD_START => {
                st.during = Some(st.raises.len() as u64);
                out.push(event(
                    input.key,
                    true,
                    e.ts_ms,
                    st.raises.len() as f64,
                    FLOOD_START as f64,
                ));
            }
            None => {}
        }
        st.arm(timers);
    }

    fn on_timer(
        &self,
        _rules: &RuleSet,
        st: &mut FloodState,
        console: ConsoleIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        if st.timer != Some(due_ms) {
            return;
        }
        st.timer = None;
        keep_window(&mut st.raises, due_ms, FLOOD_WINDOW_MS);
        if let Some(during) = st.during
            && st.raises.len() < FLOOD_END
        {
            st.during = None;
            out.push(event(
                console,
                false,
                due_ms,
                during as f64,
                FLOOD_END as f64,
            ));
        }
        st.arm(timers);
    }
}
