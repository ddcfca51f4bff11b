//! The alarm table's records in wire form: alarm ids, transitions and
//! states, the human-readable message of every event, and the journal's
//! record of an alarm, both ways.

use hazardwatch_proto::{AlarmKind, AlarmSource, Catalog, PointKind, Priority, pb};

use crate::table::{ActiveAlarm, AlarmRecord, AlarmState, ESCALATION_LEVELS, Transition};

/// Wire name of a transition.
fn transition_pb(t: Transition) -> pb::Transition {
    match t {
        Transition::Raised => pb::Transition::Raised,
        Transition::Cleared => pb::Transition::Cleared,
        Transition::Acknowledged => pb::Transition::Acknowledged,
        Transition::Reset => pb::Transition::Reset,
        Transition::Shelved => pb::Transition::Shelved,
        Transition::Unshelved => pb::Transition::Unshelved,
        Transition::Commented => pb::Transition::Commented,
        Transition::RemovedFromService => pb::Transition::RemovedFromService,
        Transition::ReturnedToService => pb::Transition::ReturnedToService,
        Transition::Escalated => pb::Transition::Escalated,
        Transition::Disposed => pb::Transition::Disposed,
    }
}

fn transition_from_pb(t: i32) -> Option<Transition> {
    Some(match pb::Transition::try_from(t).ok()? {
        pb::Transition::Raised => Transition::Raised,
        pb::Transition::Cleared => Transition::Cleared,
        pb::Transition::Acknowledged => Transition::Acknowledged,
        pb::Transition::Reset => Transition::Reset,
        pb::Transition::Shelved => Transition::Shelved,
        pb::Transition::Unshelved => Transition::Unshelved,
        pb::Transition::Commented => Transition::Commented,
        pb::Transition::RemovedFromService => Transition::RemovedFromService,
        pb::Transition::ReturnedToService => Transition::ReturnedToService,
        pb::Transition::Escalated => Transition::Escalated,
        pb::Transition::Disposed => Transition::Disposed,
        pb::Transition::Unspecified
        | pb::Transition::RiskChanged
        | pb::Transition::UnitStateChanged => return None,
    })
}

fn state_from_pb(s: i32) -> Option<AlarmState> {
    Some(match pb::AlarmState::try_from(s).ok()? {
        pb::AlarmState::Normal => AlarmState::Normal,
        pb::AlarmState::UnackedActive => AlarmState::UnackedActive,
        pb::AlarmState::AckedActive => AlarmState::AckedActive,
        pb::AlarmState::UnackedRtn => AlarmState::UnackedRtn,
        pb::AlarmState::Unspecified => return None,
    })
}

pub(crate) fn state_pb(s: AlarmState) -> pb::AlarmState {
    match s {
        AlarmState::Normal => pb::AlarmState::Normal,
        AlarmState::UnackedActive => pb::AlarmState::UnackedActive,
        AlarmState::AckedActive => pb::AlarmState::AckedActive,
        AlarmState::UnackedRtn => pb::AlarmState::UnackedRtn,
    }
}

fn kind_word(k: PointKind) -> &'static str {
    match k {
        PointKind::Temperature => "temperature",
        PointKind::Level => "level",
        PointKind::Pressure => "pressure",
        PointKind::CombustibleGas => "combustible gas",
        PointKind::ToxicGas => "toxic gas",
    }
}

/// The human-readable text of an alarm event.
fn describe(r: &AlarmRecord, catalog: &Catalog) -> String {
    let id = catalog.source_id(r.source);
    let tag = r.kind.tag();
    let mut text = match (r.transition, r.source) {
        (Transition::Acknowledged, _) => format!("{id} {tag} acknowledged by {}", r.actor),
        (Transition::Reset, _) => format!("{id} {tag} reset by {}", r.actor),
        (Transition::Shelved, _) => {
            let until = chrono::DateTime::from_timestamp_millis(r.shelved_until_ms.unwrap_or(0))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            format!("{id} {tag} shelved by {} until {until}", r.actor)
        }
        (Transition::Unshelved, _) if r.actor.is_empty() => {
            format!("{id} {tag} shelf expired")
        }
        (Transition::Unshelved, _) => format!("{id} {tag} unshelved by {}", r.actor),
        (Transition::Commented, _) => format!("{id} {tag} comment by {}", r.actor),
        (Transition::RemovedFromService, _) => {
            format!("{id} {tag} taken out of service by {}", r.actor)
        }
        (Transition::ReturnedToService, _) => {
            format!("{id} {tag} returned to service by {}", r.actor)
        }
        (Transition::Escalated, _) => format!(
            "{id} {tag} escalated to the {} level: no disposal record yet",
            ESCALATION_LEVELS[usize::from(r.escalation).min(ESCALATION_LEVELS.len() - 1)]
        ),
        (Transition::Disposed, _) => format!(
            "{id} {tag} disposed by {}: cause: {}; action: {}",
            r.actor, r.comment, r.action
        ),
        // How a rule ends the conditions of a rule or point that a reload
        // removed (`operators::event_time::withdraw`).
        (Transition::Cleared, _) if r.value.is_nan() && r.limit.is_nan() => {
            format!("{id} {tag} returned to normal: removed from the site model")
        }
        (_, AlarmSource::Point(p)) if r.kind != AlarmKind::Chattering => {
            describe_point(r, catalog.meta(p))
        }
        _ => describe_alarm_system(r, id),
    };
    if r.latched {
        text.push_str(" [latched: reset when checked]");
    }
    if r.suppressed {
        text.push_str(" [suppressed: unit stopped or in overhaul]");
    }
    if r.backfilled {
        text.push_str(" [backfilled: judged from readings that arrived late]");
    }
    text
}

/// Text of a condition change of a unit rule (voting, correlation) or of
/// the alarm system (flood, chattering).
fn describe_alarm_system(r: &AlarmRecord, id: &str) -> String {
    let raised = r.transition == Transition::Raised;
    match (raised, r.kind) {
        (true, AlarmKind::Offline) if r.value.is_nan() => format!(
            "{id} gateway never heard from: nothing for {:.0} s since it was expected; every point it reports is unmonitored",
            r.limit
        ),
        (true, AlarmKind::Offline) => format!(
            "{id} gateway offline: silent for {:.0} s (limit {:.0} s) or disconnected; every point it reports is unmonitored",
            r.value, r.limit
        ),
        (false, AlarmKind::Offline) => format!("{id} gateway reporting again"),
        (true, AlarmKind::Voting) => format!(
            "{id} leak confirmed: {:.0} gas detectors at the first level (voting {:.0} of N)",
            r.value, r.limit
        ),
        (false, AlarmKind::Voting) => format!(
            "{id} fewer than {:.0} gas detectors at the first level ({:.0})",
            r.limit, r.value
        ),
        (true, AlarmKind::Correlation) => format!(
            "{id} runaway heating: temperature and pressure rising together ({:+.3}/min, limit {:.3}/min)",
            r.value, r.limit
        ),
        (false, AlarmKind::Correlation) => {
            format!("{id} temperature and pressure no longer rising together")
        }
        (true, AlarmKind::Flood) => format!(
            "{id} console in alarm flood: {:.0} alarms in 10 min (more than {:.0})",
            r.value, r.limit
        ),
        (false, AlarmKind::Flood) => format!(
            "{id} alarm flood over: {:.0} alarms raised during it",
            r.value
        ),
        (true, AlarmKind::Chattering) => {
            format!("{id} alarms chattering: {:.0} raises in a minute", r.value)
        }
        (false, AlarmKind::Chattering) => {
            format!("{id} chattering over after {:.0} raises", r.value)
        }
        (true, _) => format!("{id} {} raised", r.kind.tag()),
        (false, _) => format!("{id} {} cleared", r.kind.tag()),
    }
}

/// Text of a condition change on a point.
fn describe_point(r: &AlarmRecord, m: &hazardwatch_proto::PointMeta) -> String {
    let (id, what, unit, tag) = (&m.id, kind_word(m.kind), &m.eng_unit, r.kind.tag());
    // Operator actions are described by `describe`.
    match (r.transition == Transition::Raised, r.kind) {
        (true, AlarmKind::RateOfChange) => format!(
            "{id} {what} changing at {:+.3} {unit}/min (limit {:.3} {unit}/min)",
            r.value, r.limit
        ),
        (false, AlarmKind::RateOfChange) => {
            format!(
                "{id} {what} rate back under the limit: {:+.3} {unit}/min",
                r.value
            )
        }
        (true, AlarmKind::PredictedHighHigh | AlarmKind::PredictedLowLow) => {
            let limit_tag = if r.kind == AlarmKind::PredictedHighHigh {
                "HH"
            } else {
                "LL"
            };
            let eta = r.predicted_ms.map_or(String::from("soon"), |at| {
                let mins = (at - r.ts_ms) as f64 / 60_000.0;
                let clock = chrono::DateTime::from_timestamp_millis(at)
                    .map(|t| t.format("%H:%M:%S").to_string())
                    .unwrap_or_default();
                format!("at {clock} UTC, in {mins:.1} min")
            });
            format!(
                "{id} {what} trend reaches {limit_tag} {:.3} {unit} {eta} (now {:.3} {unit})",
                r.limit, r.value
            )
        }
        (false, AlarmKind::PredictedHighHigh | AlarmKind::PredictedLowLow) => {
            format!(
                "{id} {what} trend no longer heading for the limit: {:.3} {unit}",
                r.value
            )
        }
        (true, AlarmKind::Fault) if r.limit.is_nan() => {
            format!(
                "{id} sensor fault: reading of bad quality ({:.3} {unit})",
                r.value
            )
        }
        (true, AlarmKind::Fault) => format!(
            "{id} sensor fault: {:.3} {unit} is outside the instrument range (bound {:.3})",
            r.value, r.limit
        ),
        (false, AlarmKind::Fault) => {
            format!("{id} sensor healthy again: {:.3} {unit}", r.value)
        }
        (true, AlarmKind::Stale) => format!(
            "{id} no reading for {:.0} s: communication loss (last {:.3} {unit})",
            r.limit, r.value
        ),
        (false, AlarmKind::Stale) => {
            format!("{id} readings again: {:.3} {unit}", r.value)
        }
        (true, AlarmKind::Flatline) => format!(
            "{id} {what} stuck at {:.3} {unit} for {:.0} s: frozen sensor?",
            r.value, r.limit
        ),
        (false, AlarmKind::Flatline) => {
            format!("{id} {what} moving again: {:.3} {unit}", r.value)
        }
        (true, _) => format!(
            "{id} {what} {tag} {:.3} {unit} (limit {:.3})",
            r.value, r.limit
        ),
        (false, _) => {
            format!("{id} {what} back inside {tag} limit: {:.3} {unit}", r.value)
        }
    }
}

/// An alarm as the journal stored it, back in the table's terms; `None`
/// when its source is no longer in the site model (or the record is not
/// one this service wrote).
pub(crate) fn restore_alarm(catalog: &Catalog, stored: &pb::JournalAlarm) -> Option<ActiveAlarm> {
    let e = stored.last.as_ref()?;
    let (source, kind) = alarm_key(catalog, &e.alarm_id)?;
    if let AlarmSource::Point(p) = source
        && !catalog.is_live(p)
    {
        return None;
    }
    let priority: Option<Priority> = pb::Priority::try_from(e.priority).ok()?.into();
    let record = AlarmRecord {
        seq: e.seq,
        source,
        kind,
        priority: priority?,
        transition: transition_from_pb(e.transition)?,
        state: state_from_pb(e.state)?,
        ts_ms: e.event_time_ms,
        value: e.value,
        limit: e.limit,
        predicted_ms: (e.predicted_time_ms != 0).then_some(e.predicted_time_ms),
        latched: e.latched,
        suppressed: e.suppressed,
        backfilled: e.backfilled,
        shelved_until_ms: (e.shelved_until_ms != 0).then_some(e.shelved_until_ms),
        out_of_service: e.out_of_service,
        // Unspecified (0) is the first level.
        escalation: u8::try_from(e.escalation_level - 1).unwrap_or(0),
        awaiting_disposal: e.awaiting_disposal,
        action: e.action.clone(),
        actor: e.actor.clone(),
        comment: e.comment.clone(),
    };
    Some(ActiveAlarm {
        state: state_from_pb(stored.state)?,
        raised_at_ms: stored.raised_at_ms,
        latch: stored.latch,
        condition: stored.condition,
        awaiting_since_ms: stored.awaiting_since_ms,
        last: record,
    })
}

/// The stable id of an alarm: `{source}/{tag}`, the source being a point,
/// unit or enterprise id.
pub fn alarm_id(source: &str, kind: AlarmKind) -> String {
    format!("{source}/{}", kind.tag())
}

/// The source and kind an [`alarm_id`] names in `catalog`, if any.
pub fn alarm_key(catalog: &Catalog, id: &str) -> Option<(AlarmSource, AlarmKind)> {
    let (source, tag) = id.rsplit_once('/')?;
    Some((catalog.source_lookup(source)?, AlarmKind::from_tag(tag)?))
}

/// The wire form of a table record, named from `catalog`.
pub(crate) fn event(r: &AlarmRecord, catalog: &Catalog) -> pb::AlarmEvent {
    let [enterprise, hazard_source, unit, point] = catalog.source_place(r.source);
    let eng_unit = match r.source {
        AlarmSource::Point(p) => catalog.meta(p).eng_unit.to_string(),
        _ => String::new(),
    };
    pb::AlarmEvent {
        seq: r.seq,
        alarm_id: alarm_id(catalog.source_id(r.source), r.kind),
        enterprise: enterprise.to_owned(),
        hazard_source: hazard_source.to_owned(),
        unit: unit.to_owned(),
        point: point.to_owned(),
        kind: pb::AlarmKind::from(r.kind) as i32,
        priority: pb::Priority::from(r.priority) as i32,
        transition: transition_pb(r.transition) as i32,
        state: state_pb(r.state) as i32,
        event_time_ms: r.ts_ms,
        value: r.value,
        limit: r.limit,
        eng_unit,
        message: describe(r, catalog),
        actor: r.actor.clone(),
        comment: r.comment.clone(),
        predicted_time_ms: r.predicted_ms.unwrap_or(0),
        suppressed: r.suppressed,
        latched: r.latched,
        shelved_until_ms: r.shelved_until_ms.unwrap_or(0),
        out_of_service: r.out_of_service,
        escalation_level: i32::from(r.escalation) + 1,
        awaiting_disposal: r.awaiting_disposal,
        action: r.action.clone(),
        risk_colour: pb::RiskColour::Unspecified as i32,
        backfilled: r.backfilled,
    }
}

/// The journal's form of an alarm that is not normal.
pub(crate) fn stored(a: &ActiveAlarm, catalog: &Catalog) -> pb::JournalAlarm {
    pb::JournalAlarm {
        last: Some(event(&a.last, catalog)),
        state: state_pb(a.state) as i32,
        raised_at_ms: a.raised_at_ms,
        latch: a.latch,
        condition: a.condition,
        awaiting_since_ms: a.awaiting_since_ms,
    }
}
