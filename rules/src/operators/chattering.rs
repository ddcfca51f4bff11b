//! Chattering alarms (per enterprise console): an alarm raised
//! [`CHATTER_COUNT`] or more times within [`CHATTER_WINDOW_MS`] (EEMUA 191's
//! chattering alarm: 3 in a minute) gives its point or unit a chattering
//! condition (`T101.LT/CHAT`), so the console and the bad-actor reports can
//! show it. It ends when none of the source's alarms has been raised for a
//! whole window. The condition needs no acknowledgement; its raise carries
//! the raises in the window, its clear the raises while it lasted.
//!
//! Counted are the raises an operator sees (see
//! [`crate::operators::flood::annunciated_raise`]).

use std::collections::{BTreeMap, VecDeque};

use hazardwatch_proto::{AlarmKind, AlarmSource, ConsoleIdx, Priority, RuleEvent};

type AlarmKey = (AlarmSource, AlarmKind);

use crate::operators::event_time::{KeyedLogic, Routed, Scheduled};
use crate::operators::flood::{annunciated_raise, keep_window};
use crate::rule_set::RuleSet;

/// Length of the window, ms.
pub const CHATTER_WINDOW_MS: i64 = 60_000;
/// Raises within the window that make a source chattering.
pub const CHATTER_COUNT: usize = 3;

/// The chattering rule over every console.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chattering;

/// Per-console state, in a deterministic order.
#[derive(Debug, Default)]
pub struct ChatteringState {
    /// Recent raise times of each alarm, oldest first.
    raises: BTreeMap<AlarmKey, VecDeque<i64>>,
    /// Sources with a chattering condition: raises while it lasts.
    chattering: BTreeMap<AlarmSource, u64>,
}

fn event(source: AlarmSource, active: bool, ts_ms: i64, value: f64) -> RuleEvent {
    RuleEvent::new(
        source,
        AlarmKind::Chattering,
        active,
        ts_ms,
        value,
        CHATTER_COUNT as f64,
        Priority::Low,
    )
}

impl KeyedLogic for Chattering {
    type Input = Routed;
    type State = ChatteringState;

    fn on_input(
        &self,
        _rules: &RuleSet,
        st: &mut ChatteringState,
        input: &Routed,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let e = &input.event;
        if !annunciated_raise(e) {
            return;
        }
        let raises = st.raises.entry((e.source, e.kind)).or_default();
        raises.push_back(e.ts_ms);
        keep_window(raises, e.ts_ms, CHATTER_WINDOW_MS);
        let in_window = raises.len();
        match st.chattering.get_mut(&e.source) {
            Some(n) => *n += 1,
            None if in_window >= CHATTER_COUNT => {
                st.chattering.insert(e.source, in_window as u64);
                out.push(event(e.source, true, e.ts_ms, in_window as f64));
            }
            None => {}
        }
        // Checked again when this raise has left the window.
        timers.at(e.ts_ms + CHATTER_WINDOW_MS);
    }

    fn on_timer(
        &self,
        _rules: &RuleSet,
        st: &mut ChatteringState,
        _console: ConsoleIdx,
        due_ms: i64,
        _timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        st.raises.retain(|_, raises| {
            keep_window(raises, due_ms, CHATTER_WINDOW_MS);
            !raises.is_empty()
        });
        let quiet: Vec<AlarmSource> = st
            .chattering
            .keys()
            .filter(|&&s| !st.raises.keys().any(|(src, _)| *src == s))
            .copied()
            .collect();
        for source in quiet {
            if let Some(during) = st.chattering.remove(&source) {
                out.push(event(source, false, due_ms, during as f64));
            }
        }
    }
}
