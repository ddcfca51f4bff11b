//! Voting (per unit): k of the unit's N gas detectors at the first alarm
//! level confirm a leak, and raise one unit alarm of the configured priority
//! (GB/T 50493 practice: one detector may be a false alarm, two detectors of
//! one unit are a leak). A detector counts while its H or HH condition is
//! active; the unit alarm clears when fewer than k remain. Like the gas
//! alarms it is made from, it latches until an operator resets it.
//!
//! Input: the point rules' events, routed by unit.
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
//! id = "TF1"
//! voting = { k = 2 }
//! [[enterprise.hazard_source.unit.point]]
//! id = "GT1"
//! kind = "combustible_gas"
//! eng_unit = "%LEL"
//! range = [0.0, 100.0]
//! h = 20.0
//! hh = 40.0
//! [[enterprise.hazard_source.unit.point]]
//! id = "GT2"
//! kind = "combustible_gas"
//! eng_unit = "%LEL"
//! range = [0.0, 100.0]
//! h = 20.0
//! hh = 40.0
//! "#;
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() })?;
//! let gt1 = model.catalog.lookup("GT1").expect("declared above");
//! let gt2 = model.catalog.lookup("GT2").expect("declared above");
//! // GT1 sees 22 %LEL from 10 s, GT2 from 20 s.
//! let readings: Vec<Reading> = (0..=30)
//!     .flat_map(|s: i64| {
//!         [(gt1, 10), (gt2, 20)].map(|(point, from)| {
//!             let value = if s >= from { 22.0 } else { 0.0 };
//!             Reading { point, ts_ms: s * 1000, value, quality: Quality::Good }
//!         })
//!     })
//!     .collect();
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 30_000)?;
//! let seen: Vec<_> = events
//!     .iter()
//!     .map(|e| (model.catalog.source_id(e.source), e.kind.tag(), e.ts_ms / 1000))
//!     .collect();
//! // Two detectors of one unit: a confirmed leak, one unit alarm.
//! assert_eq!(seen, [("GT1", "H", 10), ("GT2", "H", 20), ("TF1", "VOTE", 20)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, RuleEvent, UnitIdx};

use crate::operators::event_time::{KeyedLogic, Routed, Scheduled, withdraw};
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

    /// Voting removed from the unit by a reload (or the whole unit).
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        st: &mut VotingState,
        unit: UnitIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let configured = rules.unit(unit).is_some_and(|u| u.voting.is_some());
        let source = AlarmSource::Unit(unit);
        withdraw(
            &mut st.active,
            configured,
            rules,
            source,
            AlarmKind::Voting,
            ts_ms,
            out,
        );
        if !configured {
            *st = VotingState::default();
        }
    }

    fn on_restore(&self, st: &mut VotingState, kind: AlarmKind) {
        if kind == AlarmKind::Voting {
            st.active = true;
        }
    }
}
