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
//! deadband = 0.1
//! on_delay_s = 0
//! off_delay_s = 0
//! "#;
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() })?;
//! let lt = model.catalog.lookup("T101.LT").expect("declared above");
//! // Hovering across the limit every 5 s for half a minute, then steady below.
//! let readings: Vec<Reading> = (0..=90)
//!     .map(|s: i64| {
//!         let value = if s < 30 && (s / 5) % 2 == 1 { 18.5 } else { 17.5 };
//!         Reading { point: lt, ts_ms: s * 1000, value, quality: Quality::Good }
//!     })
//!     .collect();
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 90_000)?;
//! let chat: Vec<_> = events
//!     .iter()
//!     .filter(|e| e.kind.tag() == "CHAT")
//!     .map(|e| (model.catalog.source_id(e.source), e.active, e.ts_ms / 1000, e.value))
//!     .collect();
//! // The third raise within a minute (5 s, 15 s, 25 s) makes it chattering;
//! // a whole minute without a raise ends it.
//! assert_eq!(chat, [("T101.LT", true, 25, 3.0), ("T101.LT", false, 85, 3.0)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
