//! Correlation (per unit): the tank's temperature and pressure both rising
//! faster than their rate-of-change limits, the second starting within
//! `window_s` of the first, is one unit alarm: runaway heating or reaction,
//! worth more than two separate rate alarms. It clears when either stops
//! rising fast (its rate-of-change alarm clears or turns to falling).
//!
//! Input: the point rules' events, routed by unit. The value is the rate
//! (per minute) of the point whose rise completed the pair, the limit its
//! rate limit.

use hazardwatch_proto::{AlarmKind, AlarmSource, RuleEvent, UnitIdx};

use crate::operators::event_time::{KeyedLogic, Routed, Scheduled};
use crate::rule_set::RuleSet;

/// The correlation rule over every unit that configures `correlation`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Correlation;

/// Per-unit state.
#[derive(Debug, Default)]
pub struct CorrelationState {
    /// Since when temperature (0) and pressure (1) have been rising fast.
    rising_since: [Option<i64>; 2],
    active: bool,
}

impl KeyedLogic for Correlation {
    type Input = Routed;
    type State = CorrelationState;

    fn on_input(
        &self,
        rules: &RuleSet,
        st: &mut CorrelationState,
        input: &Routed,
        _timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let unit: UnitIdx = input.key;
        let e = &input.event;
        let Some(c) = rules.unit(unit).and_then(|u| u.correlation.as_ref()) else {
            return;
        };
        if e.kind != AlarmKind::RateOfChange {
            return;
        }
        let member = match e.point() {
            Some(p) if p == c.temperature => 0,
            Some(p) if p == c.pressure => 1,
            _ => return,
        };
        let rising = e.active && e.value > 0.0;
        st.rising_since[member] = match (rising, st.rising_since[member]) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(e.ts_ms),
            (false, _) => None,
        };
        let together = match st.rising_since {
            [Some(t), Some(p)] => (t - p).abs() <= c.window_ms,
            _ => false,
        };
        // Once raised, the alarm holds while both keep rising.
        let now = if st.active {
            st.rising_since.iter().all(Option::is_some)
        } else {
            together
        };
        if now != st.active {
            st.active = now;
            out.push(RuleEvent::new(
                AlarmSource::Unit(unit),
                AlarmKind::Correlation,
                now,
                e.ts_ms,
                e.value,
                e.limit,
                c.priority,
            ));
        }
    }
}
