//! Communication loss: no reading of a point for `stale_s` of event time,
//! or its gateway announced it went offline. Live, event time follows the
//! wall clock, so a silent gateway's points go stale on the dataflow's timer
//! even though nothing arrives; in replay the same happens at the same event
//! times. A gateway's offline status (its MQTT last will) reaches the rules
//! as [`Quality::Offline`] markers on each of its points, which make them
//! stale at once, without waiting out `stale_s`. The alarm returns to normal
//! with the next reading.
//!
//! A point never heard from is stale too: the service marks every point
//! [`Quality::Expected`] when it starts (and a reload adds it), and a point
//! with no reading `stale_s` after its marker goes stale like one that fell
//! silent. The markers are archived, so replay expects the points from the
//! same times.
//!
//! One timer per point is pending at a time: when it fires early (readings
//! came since it was set) it is moved to the new deadline.
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
//! id = "T101.PT"
//! kind = "pressure"
//! eng_unit = "kPa"
//! range = [0.0, 1000.0]
//! stale_s = 30
//! "#;
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() })?;
//! let pt = model.catalog.lookup("T101.PT").expect("declared above");
//! let at = |s: i64, value: f64, quality| Reading { point: pt, ts_ms: s * 1000, value, quality };
//! // Readings to 10 s, silence, one reading at 50 s, then the gateway's last
//! // will at 55 s (an offline marker).
//! let mut readings: Vec<Reading> = (0..=10).map(|s| at(s, 300.0, Quality::Good)).collect();
//! readings.push(at(50, 300.0, Quality::Good));
//! readings.push(at(55, f64::NAN, Quality::Offline));
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 60_000)?;
//! let seen: Vec<_> = events.iter().map(|e| (e.kind.tag(), e.active, e.ts_ms / 1000)).collect();
//! assert_eq!(seen, [("STALE", true, 40), ("STALE", false, 50), ("STALE", true, 55)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Quality, Reading, RuleEvent};

use crate::operators::event_time::{Deadline, KeyedLogic, NO_TIME, Scheduled, withdraw};
use crate::rule_set::RuleSet;

/// The stale rule over every point with `stale_s` above 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stale;

/// Per-point state (32 bytes: every point holds one).
#[derive(Debug)]
pub struct StaleState {
    /// The time of the latest reading or expectation marker; [`NO_TIME`]:
    /// none yet.
    last_ts: i64,
    last_value: f64,
    deadline: Deadline,
    active: bool,
}

impl Default for StaleState {
    fn default() -> Self {
        StaleState {
            last_ts: NO_TIME,
            last_value: 0.0,
            deadline: Deadline::default(),
            active: false,
        }
    }
}

impl StaleState {
    /// Sets the alarm's condition, emitting an event when it changes. The
    /// value is the reading (or the last one received), the limit the
    /// allowed silence in seconds.
    #[allow(clippy::too_many_arguments)]
    fn change(
        &mut self,
        active: bool,
        rules: &RuleSet,
        point: PointIdx,
        ts_ms: i64,
        value: f64,
        after_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        if self.active != active {
            self.active = active;
            let limit = after_ms as f64 / 1000.0;
            out.push(rules.event(point, AlarmKind::Stale, active, ts_ms, value, limit));
        }
    }
}

impl KeyedLogic for Stale {
    type Input = Reading;
    type State = StaleState;

    fn on_input(
        &self,
        rules: &RuleSet,
        st: &mut StaleState,
        r: &Reading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(after) = rules.point(r.point).and_then(|p| p.stale_ms) else {
            return;
        };
        if r.quality == Quality::Offline {
            let last = st.last_value;
            st.change(true, rules, r.point, r.ts_ms, last, after, out);
            return;
        }
        if r.quality == Quality::Expected {
            // Expected from here: the deadline counts from the later of the
            // marker and the last reading; nothing else changes.
            if st.last_ts == NO_TIME {
                st.last_value = f64::NAN;
            }
            let since = st.last_ts.max(r.ts_ms);
            st.last_ts = since;
            st.deadline.arm(since + after, timers);
            return;
        }
        st.change(false, rules, r.point, r.ts_ms, r.value, after, out);
        st.last_ts = st.last_ts.max(r.ts_ms);
        st.last_value = r.value;
        st.deadline.arm(r.ts_ms + after, timers);
    }

    fn on_timer(
        &self,
        rules: &RuleSet,
        st: &mut StaleState,
        point: PointIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(after) = rules.point(point).and_then(|p| p.stale_ms) else {
            return;
        };
        let last = st.last_ts;
        if last == NO_TIME {
            return;
        }
        if st.deadline.fired(due_ms, last + after, timers) {
            let value = st.last_value;
            st.change(true, rules, point, due_ms, value, after, out);
        }
    }

    /// Stale detection turned off (or the point removed) by a reload.
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        st: &mut StaleState,
        point: PointIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let configured = rules.point(point).is_some_and(|p| p.stale_ms.is_some());
        withdraw(
            &mut st.active,
            configured,
            rules,
            AlarmSource::Point(point),
            AlarmKind::Stale,
            ts_ms,
            out,
        );
    }

    fn on_restore(&self, st: &mut StaleState, kind: AlarmKind) {
        if kind == AlarmKind::Stale {
            st.active = true;
        }
    }
}
