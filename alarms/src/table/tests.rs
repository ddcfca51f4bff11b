//! The table's state machine, transition by transition.

use super::*;

const P3: AlarmSource = AlarmSource::Point(3);

fn ev(active: bool, ts_ms: i64) -> RuleEvent {
    RuleEvent::new(
        P3,
        AlarmKind::High,
        active,
        ts_ms,
        1.0,
        0.5,
        Priority::Medium,
    )
}

#[test]
fn raise_ack_clear_walks_the_isa_states() {
    let mut t = AlarmTable::default();
    let r = t.apply(&ev(true, 10)).unwrap();
    assert_eq!((r.seq, r.state), (1, AlarmState::UnackedActive));
    assert!(t.apply(&ev(true, 11)).is_none(), "already active");
    let a = t
        .acknowledge(P3, AlarmKind::High, "op", "seen", 12)
        .unwrap();
    assert_eq!((a.seq, a.state), (2, AlarmState::AckedActive));
    assert_eq!(
        t.acknowledge(P3, AlarmKind::High, "op", "", 13),
        Err(ActionError::AlreadyAcknowledged)
    );
    let c = t.apply(&ev(false, 20)).unwrap();
    assert_eq!(c.state, AlarmState::Normal);
    assert!(t.is_empty());
}

#[test]
fn clear_before_ack_leaves_unacked_rtn_until_acknowledged() {
    let mut t = AlarmTable::default();
    t.apply(&ev(true, 10));
    let c = t.apply(&ev(false, 20)).unwrap();
    assert_eq!(c.state, AlarmState::UnackedRtn);
    assert_eq!(t.len(), 1);
    let again = t.apply(&ev(true, 30)).unwrap();
    assert_eq!(again.state, AlarmState::UnackedActive);
    assert_eq!(t.active().next().unwrap().raised_at_ms, 30);
    t.apply(&ev(false, 40));
    let a = t.acknowledge(P3, AlarmKind::High, "op", "", 50).unwrap();
    assert_eq!(a.state, AlarmState::Normal);
    assert!(t.is_empty());
    assert_eq!(
        t.acknowledge(P3, AlarmKind::High, "op", "", 60),
        Err(ActionError::NotFound)
    );
}

#[test]
fn a_shelved_alarm_is_recorded_unannunciated_and_comes_back_when_the_shelf_expires() {
    let mut t = AlarmTable::default();
    t.apply(&ev(true, 10)).unwrap();
    let s = t
        .shelve(P3, AlarmKind::High, 100, "op", "known upset", 15)
        .unwrap();
    assert_eq!(
        (s.transition, s.shelved_until_ms, s.state),
        (Transition::Shelved, Some(100), AlarmState::UnackedActive)
    );
    // Cleared and raised again while shelved: recorded, flagged, and
    // the shelf stays even while the alarm is normal.
    let c = t.apply(&ev(false, 20)).unwrap();
    assert_eq!(c.shelved_until_ms, Some(100));
    t.acknowledge(P3, AlarmKind::High, "op", "", 21).unwrap();
    assert_eq!(t.len(), 1, "kept for its shelf");
    let r = t.apply(&ev(true, 30)).unwrap();
    assert_eq!(
        (r.state, r.shelved_until_ms),
        (AlarmState::UnackedActive, Some(100))
    );
    t.acknowledge(P3, AlarmKind::High, "op", "", 31).unwrap();
    assert!(t.expire_shelves(99).is_empty());
    let back = t.expire_shelves(100);
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].transition, back[0].state, back[0].shelved_until_ms),
        (Transition::Unshelved, AlarmState::UnackedActive, None),
        "still active: annunciated again, owed a new acknowledgement"
    );
    assert_eq!(back[0].comment, "shelf expired");
    assert_eq!(
        t.unshelve(P3, AlarmKind::High, "op", "", 101),
        Err(ActionError::NotShelved)
    );
}

#[test]
fn an_alarm_out_of_service_cannot_be_shelved_and_is_annunciated_when_returned() {
    let mut t = AlarmTable::default();
    t.apply(&ev(true, 10)).unwrap();
    t.acknowledge(P3, AlarmKind::High, "op", "", 11).unwrap();
    let o = t
        .set_out_of_service(
            P3,
            AlarmKind::High,
            true,
            "tech",
            "transmitter replaced",
            12,
        )
        .unwrap();
    assert_eq!(
        (o.transition, o.out_of_service),
        (Transition::RemovedFromService, true)
    );
    assert_eq!(
        t.shelve(P3, AlarmKind::High, 100, "op", "", 13),
        Err(ActionError::OutOfService)
    );
    assert_eq!(
        t.set_out_of_service(P3, AlarmKind::High, true, "tech", "", 14),
        Err(ActionError::Already("out of service"))
    );
    let note = t
        .comment(P3, AlarmKind::High, "tech", "loop check at 15:00", 15)
        .unwrap();
    assert_eq!(
        (note.transition, note.state),
        (Transition::Commented, AlarmState::AckedActive)
    );
    let back = t
        .set_out_of_service(P3, AlarmKind::High, false, "tech", "repaired", 16)
        .unwrap();
    assert_eq!(
        (back.transition, back.state, back.out_of_service),
        (
            Transition::ReturnedToService,
            AlarmState::UnackedActive,
            false
        )
    );
}

#[test]
fn an_alarm_awaiting_disposal_escalates_on_its_deadlines_until_disposed() {
    let mut t = AlarmTable::default();
    t.set_disposal_policy(Box::new(|_, _, p| p >= Priority::Medium));
    t.apply(&ev(true, 1_000)).unwrap();
    assert!(t.get(P3, AlarmKind::High).unwrap().last.awaiting_disposal);
    // Leaves the enterprise after 10 s, the park after 30 s.
    let after = |_: AlarmSource, level: u8| {
        [10_000, 30_000, 60_000, 120_000]
            .get(level as usize)
            .copied()
    };
    assert!(t.escalate_due(10_999, after).is_empty());
    let up = t.escalate_due(11_000, after);
    assert_eq!(up.len(), 1);
    assert_eq!(
        (up[0].transition, up[0].escalation),
        (Transition::Escalated, 1)
    );
    // Acknowledged and back to normal: still open, still escalating.
    t.acknowledge(P3, AlarmKind::High, "op", "", 12_000)
        .unwrap();
    t.apply(&ev(false, 13_000)).unwrap();
    assert_eq!(t.len(), 1, "kept until disposed");
    // Two deadlines passed while nobody looked: two levels, in order.
    let up = t.escalate_due(61_000, after);
    let levels: Vec<u8> = up.iter().map(|r| r.escalation).collect();
    assert_eq!(levels, [2, 3]);
    let done = t
        .dispose(
            P3,
            AlarmKind::High,
            "op",
            "valve left open",
            "closed, procedure revised",
            62_000,
        )
        .unwrap();
    assert_eq!(
        (
            done.transition,
            done.awaiting_disposal,
            done.comment.as_str(),
            done.action.as_str()
        ),
        (
            Transition::Disposed,
            false,
            "valve left open",
            "closed, procedure revised"
        )
    );
    assert!(t.is_empty(), "normal, acknowledged and disposed: closed");
    assert!(t.escalate_due(1_000_000, after).is_empty());
}

#[test]
fn a_latched_alarm_stays_after_clearing_until_reset() {
    let mut t = AlarmTable::default();
    let latching = |active, ts| RuleEvent {
        latch: true,
        ..ev(active, ts)
    };
    t.apply(&latching(true, 10)).unwrap();
    assert_eq!(
        t.reset(P3, AlarmKind::High, "op", "", 11),
        Err(ActionError::StillActive)
    );
    let c = t.apply(&latching(false, 20)).unwrap();
    assert_eq!(
        (c.transition, c.state, c.latched),
        (Transition::Cleared, AlarmState::UnackedActive, true)
    );
    t.acknowledge(P3, AlarmKind::High, "op", "", 21).unwrap();
    assert_eq!(
        t.get(P3, AlarmKind::High).unwrap().state,
        AlarmState::AckedActive
    );
    let r = t
        .reset(P3, AlarmKind::High, "op", "checked, no leak", 30)
        .unwrap();
    assert_eq!(
        (r.transition, r.state, r.latched),
        (Transition::Reset, AlarmState::Normal, false)
    );
    assert!(t.is_empty());
    assert_eq!(
        t.reset(P3, AlarmKind::High, "op", "", 31),
        Err(ActionError::NotFound)
    );
}

#[test]
fn reset_is_refused_on_alarms_that_do_not_latch_and_unacked_reset_leaves_rtn() {
    let mut t = AlarmTable::default();
    t.apply(&ev(true, 10));
    assert_eq!(
        t.reset(P3, AlarmKind::High, "op", "", 11),
        Err(ActionError::NotLatched)
    );
    let p4 = AlarmSource::Point(4);
    let latching = RuleEvent {
        source: p4,
        latch: true,
        ..ev(true, 12)
    };
    t.apply(&latching);
    t.apply(&RuleEvent {
        active: false,
        ..latching
    });
    let r = t.reset(p4, AlarmKind::High, "op", "", 13).unwrap();
    assert_eq!(
        r.state,
        AlarmState::UnackedRtn,
        "still owed an acknowledgement"
    );
}

#[test]
fn flood_and_chattering_are_raised_acknowledged() {
    let mut t = AlarmTable::default();
    let flood = RuleEvent::new(
        AlarmSource::Console(0),
        AlarmKind::Flood,
        true,
        5,
        11.0,
        10.0,
        Priority::Medium,
    );
    assert_eq!(t.apply(&flood).unwrap().state, AlarmState::AckedActive);
    let end = t
        .apply(&RuleEvent {
            active: false,
            ..flood
        })
        .unwrap();
    assert_eq!(end.state, AlarmState::Normal);
}
