//! What the sensor-health rules share: the priority and event of a
//! condition on a point, and the kinds table they read it from.

use std::sync::Arc;

use hazardwatch_proto::{AlarmKind, PointIdx, PointKind, RuleEvent};

use crate::site::{PointRules, default_priority};

/// Per-point rules and kinds, indexed by point.
#[derive(Debug, Clone)]
pub struct PointTable {
    /// Rule parameters.
    pub rules: Arc<Vec<PointRules>>,
    /// What each point measures.
    pub kinds: Arc<Vec<PointKind>>,
}

impl PointTable {
    /// An event of `kind` on `point`, with the default priority for it.
    pub fn event(
        &self,
        point: PointIdx,
        kind: AlarmKind,
        active: bool,
        ts_ms: i64,
        value: f64,
        limit: f64,
    ) -> RuleEvent {
        let point_kind = self
            .kinds
            .get(point as usize)
            .copied()
            .unwrap_or(PointKind::Level);
        RuleEvent {
            point,
            kind,
            active,
            ts_ms,
            value,
            limit,
            priority: default_priority(point_kind, kind),
            predicted_ms: None,
        }
    }

    /// The point's parameters.
    pub fn rules(&self, point: PointIdx) -> Option<&PointRules> {
        self.rules.get(point as usize)
    }
}
