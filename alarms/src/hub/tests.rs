//! The hub's core: numbering, journaling, operator actions with their
//! checks, the wall-clock work (shelves expiring) at a time the test sets,
//! and the table rebuilt from the journal.

#![allow(clippy::unwrap_used)]

use hazardwatch_proto::clock::{Clock, SettableClock};
use hazardwatch_proto::{Priority, RuleEvent};
use hazardwatch_rules::{SiteModel, Source};

use super::*;
use crate::access::{Level, Role};

const PARK: &str = r#"
park = { id = "P" }
[[enterprise]]
id = "E01"
[[enterprise.hazard_source]]
id = "HS1"
grade = 2
[[enterprise.hazard_source.unit]]
id = "T101"
[[enterprise.hazard_source.unit.point]]
id = "T101.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
hh = 19.0
"#;

fn site() -> SiteModel {
    SiteModel::parse(&Source {
        path: "park.toml".into(),
        text: PARK.into(),
    })
    .unwrap()
}

fn open(dir: &std::path::Path, site: &SiteModel, now_ms: i64) -> (Arc<AlarmHub>, Restored) {
    let journal = AlarmJournal::open(&dir.join("alarms.redb")).unwrap();
    AlarmHub::open(
        site.catalog.clone(),
        journal,
        EscalationPolicy::default(),
        RiskModel::from_site(site),
        now_ms,
    )
    .unwrap()
}

fn raise(site: &SiteModel, ts_ms: i64) -> RuleEvent {
    let point = site.catalog.lookup("T101.LT").unwrap();
    RuleEvent::new(
        AlarmSource::Point(point),
        AlarmKind::HighHigh,
        true,
        ts_ms,
        19.4,
        19.0,
        Priority::High,
    )
}

fn operator() -> Caller {
    Caller {
        name: "E01 control room".into(),
        role: Role::Operator,
        level: Level::Enterprise,
        scope: Scope::All,
        parks: Scope::All,
    }
}

#[test]
fn a_shelf_expires_when_the_clock_passes_it_and_actions_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let site = site();
    let clock = SettableClock::new(1_800_000_000_000);
    let (hub, _) = open(dir.path(), &site, clock.now_ms());
    let raised = hub.apply(&[raise(&site, clock.now_ms())]);
    assert_eq!(raised[0].alarm_id, "T101.LT/HH");

    // A viewer may not act; a shelf needs its why; an unknown alarm is
    // not found.
    let viewer = Caller {
        role: Role::Viewer,
        ..operator()
    };
    let now = clock.now_ms();
    let until = now + 60_000;
    let shelve =
        |c: &Caller, id: &str, why: &str| hub.act(c, Action::Shelve(60), id, "li.na", why, now);
    assert!(matches!(
        shelve(&viewer, "T101.LT/HH", "known upset"),
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        shelve(&operator(), "T101.LT/HH", " "),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        shelve(&operator(), "T999/HH", "known upset"),
        Err(Error::NotFound(_))
    ));
    let shelved = shelve(&operator(), "T101.LT/HH", "known upset").unwrap();
    assert_eq!(shelved.shelved_until_ms, until);
    assert_eq!(shelved.actor, "li.na via E01 control room");

    // Nothing falls due before the shelf ends; then it expires on its own.
    clock.advance(59_000);
    assert!(hub.tick(clock.now_ms()).is_empty());
    clock.advance(2_000);
    let due = hub.tick(clock.now_ms());
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].transition, pb::Transition::Unshelved as i32);
    // Numbered after the shelf (the risk colour it restores comes next).
    assert!(due[0].seq > shelved.seq && due[0].seq < hub.last_seq());
}

#[test]
fn the_table_is_rebuilt_from_the_journal_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let site = site();
    let t0 = 1_800_000_000_000;
    let last = {
        let (hub, _) = open(dir.path(), &site, t0);
        hub.apply(&[raise(&site, t0)]);
        hub.last_seq()
    };
    let (hub, restored) = open(dir.path(), &site, t0 + 1_000);
    assert_eq!(restored.alarms, 1);
    assert_eq!(
        restored.conditions.len(),
        1,
        "the rules resume the condition"
    );
    assert_eq!(hub.last_seq(), last);
    let (active, as_of) = hub.list_active(&Filter::default());
    assert_eq!((active.len(), as_of), (1, last));
    // An acknowledgement after the restart gets the next number.
    let acked = hub
        .act(
            &operator(),
            Action::Acknowledge,
            "T101.LT/HH",
            "li.na",
            "",
            t0 + 2_000,
        )
        .unwrap();
    assert_eq!(acked.seq, last + 1);
}
