//! Voting (per unit): k of the unit's N gas detectors at the first alarm
//! level confirm a leak, and raise one unit alarm of the configured priority
//! (GB/T 50493 practice: one detector may be a false alarm, two detectors of
//! one unit are a leak). A detector counts while its H or HH condition is
//! active; the unit alarm clears when fewer than k remain. Like the gas
//! alarms it is made from, it latches until an operator resets it.
//!
//! Input: the point rules' events, routed by unit.

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, RuleEvent, UnitIdx};

use crate::operators::event_time::{KeyedLogic, Routed, Scheduled};
use crate::rule_set::RuleSet;

/// The voting rule over every unit that configures `voting`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Voting;

/// Per-unit state.
#[derive(Debug, Default)]
pub struct VotingState {
    /// Members with an active first (bit 0) or second (bit 1) level.
    levels: Vec<(PointIdx, u8)>,
    active: bool,
}

impl KeyedLogic for Voting {
    type Input = Routed;
    type State = VotingState;

    fn on_input(
        &self,
        rules: &RuleSet,
        st: &mut VotingState,
        input: &Routed,
        _timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let unit: UnitIdx = input.key;
        let e = &input.event;
        let Some(voting) = rules.unit(unit).and_then(|u| u.voting.as_ref()) else {
            return;
        };
        let (Some(point), bit) = (
            e.point(),
            match e.kind {
                AlarmKind::High => 1u8,
                AlarmKind::HighHigh => 2,
                _ => return,
            },
        ) else {
            return;
        };
        if !voting.members.contains(&point) {
            return;
        }
        match st.levels.iter_mut().find(|(p, _)| *p == point) {
            Some((_, mask)) if e.active => *mask |= bit,
            Some((_, mask)) => *mask &= !bit,
            None if e.active => st.levels.push((point, bit)),
            None => {}
        }
        st.levels.retain(|(_, mask)| *mask != 0);
        let at_level = st.levels.len();
        let confirmed = at_level >= voting.k;
        if confirmed != st.active {
            st.active = confirmed;
            out.push(RuleEvent {
                latch: true,
                ..RuleEvent::new(
                    AlarmSource::Unit(unit),
                    AlarmKind::Voting,
                    confirmed,
                    e.ts_ms,
                    at_level as f64,
                    voting.k as f64,
                    voting.priority,
                )
            });
        }
    }
}
