//! Predicted time to limit, the early warning: from the least-squares
//! trend over a window, the time at which the value would reach HH (rising)
//! or LL (falling). A pre-alarm is raised when that time is within the
//! horizon, carrying the predicted crossing time, and withdrawn when the
//! trend turns away from the limit or the crossing moves beyond
//! [`WITHDRAW_FACTOR`] times the horizon (so a wavering trend does not
//! chatter). Once the value is at the limit the pre-alarm stays until the
//! trend turns: the HH/LL alarm itself then carries the urgency.
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
//! hh = 19.0
//! predict = { horizon_s = 600, window_s = 60 }
//! "#;
//! let model = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() })?;
//! let lt = model.catalog.lookup("T101.LT").expect("declared above");
//! // Filling at 0.5 m/min from 10 m: HH (19 m) is reached at 1080 s.
//! let readings: Vec<Reading> = (0..=1100)
//!     .map(|s: i64| Reading { point: lt, ts_ms: s * 1000, value: 10.0 + s as f64 / 120.0, quality: Quality::Good })
//!     .collect();
//! let events = evaluate(&model, &EngineConfig::default(), [readings], 1_100_000)?;
//! let raised: Vec<_> = events.iter().filter(|e| e.active).map(|e| (e.kind.tag(), e.ts_ms / 1000)).collect();
//! // The warning 10 minutes ahead; H and HH once above their limits (from
//! // 961 s and 1081 s) for the 5 s on-delay of a level.
//! assert_eq!(raised, [("PHH", 480), ("H", 966), ("HH", 1086)]);
//! // It carries when the level will reach HH.
//! assert_eq!(events[0].predicted_ms.map(|t| t / 1000), Some(1080));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Reading, RuleEvent};

use crate::operators::event_time::{KeyedLogic, Scheduled, Sparse, withdraw};
use crate::operators::slope::SlopeWindow;
use crate::rule_set::RuleSet;

/// A pre-alarm is withdrawn when the predicted crossing is further away than
/// this many horizons.
pub const WITHDRAW_FACTOR: f64 = 1.5;

/// The predicted-limit rule over every point that configures `predict`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Predict;

/// Per-point state.
#[derive(Debug, Default)]
pub struct PredictState {
    window: SlopeWindow,
    /// The pre-alarm that is active, if any.
    active: Option<AlarmKind>,
}

impl KeyedLogic for Predict {
    type Input = Reading;
    type State = Sparse<PredictState>;

    fn on_input(
        &self,
        rules: &RuleSet,
        state: &mut Sparse<PredictState>,
        r: &Reading,
        _timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(pr) = rules.point(r.point) else {
            return;
        };
        let Some(p) = pr.predict else { return };
        let state = state.get_or_insert_with(Box::default);
        let (lo, hi) = pr.range;
        if !r.quality.is_process_value() || r.value < lo || r.value > hi {
            return;
        }
        state.window.push(r.ts_ms, r.value, p.window_ms);
        let Some(fit) = state.window.fit(p.window_ms) else {
            return;
        };
        let limit_of = |k: AlarmKind| pr.limits.iter().find(|l| l.kind == k).map(|l| l.value);
        // Which limit the trend heads for, and how far it is (ms, 0 if there).
        let heading = if fit.per_s > 0.0 {
            limit_of(AlarmKind::HighHigh).map(|l| (AlarmKind::PredictedHighHigh, l))
        } else if fit.per_s < 0.0 {
            limit_of(AlarmKind::LowLow).map(|l| (AlarmKind::PredictedLowLow, l))
        } else {
            None
        };
        let eta = heading.map(|(kind, limit)| {
            let ms = ((limit - fit.value_now) / fit.per_s * 1000.0).max(0.0);
            (kind, limit, ms)
        });
        let horizon = p.horizon_ms as f64;
        let event = |kind, active, limit, predicted_ms| RuleEvent {
            predicted_ms,
            ..rules.event(r.point, kind, active, r.ts_ms, r.value, limit)
        };
        // Withdraw an active pre-alarm whose trend turned or moved away.
        if let Some(active) = state.active {
            let keep =
                matches!(eta, Some((k, _, ms)) if k == active && ms <= horizon * WITHDRAW_FACTOR);
            if !keep {
                let limit = match active {
                    AlarmKind::PredictedLowLow => limit_of(AlarmKind::LowLow),
                    _ => limit_of(AlarmKind::HighHigh),
                };
                out.push(event(active, false, limit.unwrap_or(f64::NAN), None));
                state.active = None;
            }
        }
        if state.active.is_none()
            && let Some((kind, limit, ms)) = eta
            && ms <= horizon
        {
            state.active = Some(kind);
            out.push(event(kind, true, limit, Some(r.ts_ms + ms.round() as i64)));
        }
    }

    /// The early warning removed by a reload (or the whole point).
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        state: &mut Sparse<PredictState>,
        point: PointIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(state) = state.as_deref_mut() else {
            return;
        };
        let configured = rules.point(point).is_some_and(|p| p.predict.is_some());
        if let Some(kind) = state.active {
            let mut active = true;
            withdraw(
                &mut active,
                configured,
                rules,
                AlarmSource::Point(point),
                kind,
                ts_ms,
                out,
            );
            if !active {
                state.active = None;
            }
        }
    }

    fn on_restore(&self, state: &mut Sparse<PredictState>, kind: AlarmKind) {
        if matches!(
            kind,
            AlarmKind::PredictedHighHigh | AlarmKind::PredictedLowLow
        ) {
            state.get_or_insert_with(Box::default).active = Some(kind);
        }
    }
}
