//! Sensor fault: a reading of bad quality or outside the instrument range is
//! not a process value. It raises a fault alarm (a diagnostic, not a process
//! alarm: the limit rules ignore such readings), which returns to normal at
//! the next good reading inside the range.

use hazardwatch_proto::{AlarmKind, PointIdx, Quality, Reading, RuleEvent};

use crate::operators::event_time::{PointLogic, Scheduled};
use crate::operators::health::PointTable;

/// The fault rule over every point.
#[derive(Debug, Clone)]
pub struct Fault {
    table: PointTable,
}

impl Fault {
    /// The rule over the point table.
    pub fn new(table: PointTable) -> Self {
        Fault { table }
    }
}

impl PointLogic for Fault {
    /// Whether the fault alarm is active.
    type State = bool;

    fn on_reading(
        &self,
        active: &mut bool,
        r: &Reading,
        _: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(rules) = self.table.rules(r.point) else {
            return;
        };
        let (lo, hi) = rules.range;
        // The limit reported: the range bound crossed, NaN for bad quality.
        let faulty = if r.quality == Quality::Bad {
            Some(f64::NAN)
        } else if r.value < lo {
            Some(lo)
        } else if r.value > hi {
            Some(hi)
        } else {
            None
        };
        if faulty.is_some() != *active {
            *active = faulty.is_some();
            let limit = faulty.unwrap_or(f64::NAN);
            out.push(
                self.table
                    .event(r.point, AlarmKind::Fault, *active, r.ts_ms, r.value, limit),
            );
        }
    }

    fn on_timer(
        &self,
        _: &mut bool,
        _: PointIdx,
        _: i64,
        _: &mut Scheduled,
        _: &mut Vec<RuleEvent>,
    ) {
    }
}
