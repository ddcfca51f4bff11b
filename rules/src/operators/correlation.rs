//! Correlation (per unit): the tank's temperature and pressure both rising
//! faster than their rate-of-change limits, the second starting within
//! `window_s` of the first, is one unit alarm: runaway heating or reaction,
//! worth more than two separate rate alarms. It clears when either stops
//! rising fast (its rate-of-change alarm clears or turns to falling).
//!
//! Input: the point rules' events, routed by unit. The value is the rate
//! (per minute) of the point whose rise completed the pair, the limit its
//! rate limit.
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
//! id = "R201"
//! correlation = { window_s = 60 }
//! [[enterprise.hazard_source.unit.point]]
//! id = "R201.TE"
//! kind = "temperature"
//! eng_unit = "degC"
//! range = [-20.0, 200.0]
//! roc = { limit_per_min = 20.0, window_s = 10 }
//! [[enterprise.hazard_source.unit.point]]
//! id = "R201.PT"
//! kind = "pressure"
//! eng_unit = "kPa"
//! range = [0.0, 1000.0]
//! roc = { limit_per_min = 200.0, window_s = 10 }
//! "#;
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() })?;
//! let te = model.catalog.lookup("R201.TE").expect("declared above");
//! let pt = model.catalog.lookup("R201.PT").expect("declared above");
//! // Temperature climbs 1 degC/s from 30 s; pressure 5 kPa/s from 50 s.
//! let readings: Vec<Reading> = (0..=70)
//!     .flat_map(|s: i64| {
//!         [
//!             Reading { point: te, ts_ms: s * 1000, value: 60.0 + (s.max(30) - 30) as f64, quality: Quality::Good },
//!             Reading { point: pt, ts_ms: s * 1000, value: 300.0 + 5.0 * (s.max(50) - 50) as f64, quality: Quality::Good },
//!         ]
//!     })
//!     .collect();
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 70_000)?;
//! let seen: Vec<_> = events
//!     .iter()
//!     .map(|e| (model.catalog.source_id(e.source), e.kind.tag(), e.ts_ms / 1000))
//!     .collect();
//! // Each rate alarm once its 10 s slope passes the limit; the pair within
//! // 60 s is runaway heating.
//! assert_eq!(seen, [("R201.TE", "ROC", 34), ("R201.PT", "ROC", 57), ("R201", "CORR", 57)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hazardwatch_proto::{AlarmKind, AlarmSource, RuleEvent, UnitIdx};

use crate::operators::event_time::{KeyedLogic, Routed, Scheduled, withdraw};
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

    /// Correlation removed from the unit by a reload (or the whole unit).
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        st: &mut CorrelationState,
        unit: UnitIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let configured = rules.unit(unit).is_some_and(|u| u.correlation.is_some());
        let source = AlarmSource::Unit(unit);
        withdraw(
            &mut st.active,
            configured,
            rules,
            source,
            AlarmKind::Correlation,
            ts_ms,
            out,
        );
        if !configured {
            *st = CorrelationState::default();
        }
    }

    fn on_restore(&self, st: &mut CorrelationState, kind: AlarmKind) {
        if kind == AlarmKind::Correlation {
            st.active = true;
        }
    }
}
