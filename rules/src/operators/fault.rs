//! Sensor fault: a reading of bad quality or outside the instrument range is
//! not a process value. It raises a fault alarm (a diagnostic, not a process
//! alarm: the limit rules ignore such readings), which returns to normal at
//! the next good reading inside the range.

use hazardwatch_proto::{AlarmKind, Quality, Reading, RuleEvent};

use crate::operators::event_time::{KeyedLogic, Scheduled};
use crate::rule_set::RuleSet;

/// The fault rule over every point.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fault;

impl KeyedLogic for Fault {
    type Input = Reading;
    /// Whether the fault alarm is active.
    type State = bool;

    fn on_input(
        &self,
        rules: &RuleSet,
        active: &mut bool,
        r: &Reading,
        _: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(pr) = rules.point(r.point) else {
            return;
        };
        if r.quality == Quality::Offline {
            // Communication loss is the stale rule's business.
            return;
        }
        let (lo, hi) = pr.range;
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
            out.push(rules.event(r.point, AlarmKind::Fault, *active, r.ts_ms, r.value, limit));
        }
    }
}
