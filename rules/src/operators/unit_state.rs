//! Unit state (ISA-18.2 suppression by design): the events of a unit that
//! is stopped or under overhaul, and of its points, are marked suppressed.
//! They are still evaluated and recorded, but not annunciated, and they do
//! not count towards floods or chattering. The state comes from the site
//! model (`state = "overhaul"` on a unit) in force at the event's epoch, so
//! a reloaded model changes it at one event time everywhere.

use hazardwatch_proto::RuleEvent;
use timely::dataflow::Stream;

use crate::operators::event_time::EachEvent;
use crate::rule_set::RuleBook;

/// Marks every event whose unit's state suppresses alarms.
pub fn mark_suppressed<'scope>(
    events: Stream<'scope, u64, Vec<RuleEvent>>,
    book: RuleBook,
) -> Stream<'scope, u64, Vec<RuleEvent>> {
    events.each_event("UnitState", book, |rules, e| {
        Some(RuleEvent {
            suppressed: rules.suppressed(e.source),
            ..*e
        })
    })
}
