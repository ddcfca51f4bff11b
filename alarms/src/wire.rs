//! The alarm table's records in wire form: alarm ids, transitions and
//! states, the human-readable message of every event, and the journal's
//! record of an alarm, both ways.

use hazardwatch_proto::{AlarmKind, AlarmSource, Catalog, PointKind, Priority, pb};

use crate::table::{ActiveAlarm, AlarmRecord, AlarmState, ESCALATION_LEVELS, Transition};
use crate::text::{self, Lang, Text};

/// `AlarmEvent.action` of a notification failure that ends its attempts
/// (the other failures are retried: `retrying`).
pub const ABANDONED: &str = "abandoned";
/// `AlarmEvent.action` of a notification failure that will be retried.
pub const RETRYING: &str = "retrying";

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
        Transition::Notified => pb::Transition::Notified,
        Transition::NotificationFailed => pb::Transition::NotificationFailed,
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
        pb::Transition::Notified => Transition::Notified,
        pb::Transition::NotificationFailed => Transition::NotificationFailed,
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

/// A point kind as a [`Term`](crate::text::Term) value: its name in
/// configuration files.
fn kind_word(k: PointKind) -> &'static str {
    k.as_str()
}

/// A number as messages show it: three decimals.
fn num(v: f64) -> String {
    format!("{v:.3}")
}

/// A count or a number of seconds as messages show it: no decimals.
fn whole(v: f64) -> String {
    format!("{v:.0}")
}

/// The message of an alarm event (see [`crate::text`]).
fn describe(r: &AlarmRecord, catalog: &Catalog) -> Text {
    let id = catalog.source_id(r.source);
    let tag = r.kind.tag();
    let named = |key| Text::new(key).with("id", id).with("tag", tag);
    let by = |key| named(key).with("actor", &r.actor);
    match (r.transition, r.source) {
        (Transition::Acknowledged, _) => by("acknowledged"),
        (Transition::Reset, _) => by("reset"),
        (Transition::Shelved, _) => {
            let until = chrono::DateTime::from_timestamp_millis(r.shelved_until_ms.unwrap_or(0))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            by("shelved").with("until", until)
        }
        (Transition::Unshelved, _) if r.actor.is_empty() => named("shelf_expired"),
        (Transition::Unshelved, _) => by("unshelved"),
        (Transition::Commented, _) => by("commented"),
        (Transition::RemovedFromService, _) => by("removed_from_service"),
        (Transition::ReturnedToService, _) => by("returned_to_service"),
        (Transition::Escalated, _) => named("escalated").with(
            "level",
            ESCALATION_LEVELS[usize::from(r.escalation).min(ESCALATION_LEVELS.len() - 1)],
        ),
        (Transition::Notified, _) => by("notified").with("attempts", whole(r.value)),
        (Transition::NotificationFailed, _) => by(if r.action == ABANDONED {
            "notification_abandoned"
        } else {
            "notification_failed"
        })
        .with("attempts", whole(r.value))
        .with("reason", &r.comment),
        (Transition::Disposed, _) => by("disposed")
            .with("cause", &r.comment)
            .with("action", &r.action),
        // How a rule ends the conditions of a rule or point that a reload
        // removed (`operators::event_time::withdraw`).
        (Transition::Cleared, _) if r.value.is_nan() && r.limit.is_nan() => {
            named("removed_from_model")
        }
        (_, AlarmSource::Point(p)) if r.kind != AlarmKind::Chattering => {
            describe_point(r, catalog.meta(p))
        }
        (Transition::Raised, _) if r.kind == AlarmKind::Multivariate => {
            let points: Vec<&str> = r
                .contributors
                .iter()
                .flatten()
                .map(|&p| catalog.meta(p).id)
                .collect();
            named("multivariate_raised")
                .with("value", format!("{:.1}", r.value))
                .with("points", points.join(", "))
        }
        (_, _) if r.kind == AlarmKind::Multivariate => named("multivariate_cleared"),
        _ => describe_alarm_system(r, id),
    }
}

/// The message of a condition change of a unit rule (voting,
/// correlation) or of the alarm system (flood, chattering).
fn describe_alarm_system(r: &AlarmRecord, id: &str) -> Text {
    let raised = r.transition == Transition::Raised;
    let key = match (raised, r.kind) {
        (true, AlarmKind::Offline) if r.value.is_nan() => "gateway_never_heard",
        (true, AlarmKind::Offline) => "gateway_offline",
        (false, AlarmKind::Offline) => "gateway_online",
        (true, AlarmKind::Voting) => "voting_raised",
        (false, AlarmKind::Voting) => "voting_cleared",
        (true, AlarmKind::Correlation) => "correlation_raised",
        (false, AlarmKind::Correlation) => "correlation_cleared",
        (true, AlarmKind::Flood) => "flood_raised",
        (false, AlarmKind::Flood) => "flood_cleared",
        (true, AlarmKind::Chattering) => "chattering_raised",
        (false, AlarmKind::Chattering) => "chattering_cleared",
        (true, _) => "raised",
        (false, _) => "cleared",
    };
    let (value, limit) = if r.kind == AlarmKind::Correlation {
        (format!("{:+.3}", r.value), num(r.limit))
    } else {
        (whole(r.value), whole(r.limit))
    };
    Text::new(key)
        .with("id", id)
        .with("tag", r.kind.tag())
        .with("value", value)
        .with("limit", limit)
}

/// The message of a condition change on a point.
fn describe_point(r: &AlarmRecord, m: hazardwatch_proto::PointView<'_>) -> Text {
    let raised = r.transition == Transition::Raised;
    let text = |key| {
        Text::new(key)
            .with("id", m.id)
            .with("what", kind_word(m.kind))
            .with("tag", r.kind.tag())
            .with("unit", m.eng_unit)
            .with("value", num(r.value))
    };
    match (raised, r.kind) {
        (true, AlarmKind::RateOfChange) => text("rate_raised")
            .with("value", format!("{:+.3}", r.value))
            .with("limit", num(r.limit)),
        (false, AlarmKind::RateOfChange) => {
            text("rate_cleared").with("value", format!("{:+.3}", r.value))
        }
        (true, AlarmKind::PredictedHighHigh | AlarmKind::PredictedLowLow) => {
            let limit_tag = if r.kind == AlarmKind::PredictedHighHigh {
                "HH"
            } else {
                "LL"
            };
            let eta = r.predicted_ms.and_then(|at| {
                let clock = chrono::DateTime::from_timestamp_millis(at)?;
                Some((
                    clock.format("%H:%M:%S").to_string(),
                    format!("{:.1}", (at - r.ts_ms) as f64 / 60_000.0),
                ))
            });
            let base = |key| {
                text(key)
                    .with("limit_tag", limit_tag)
                    .with("limit", num(r.limit))
            };
            match eta {
                Some((at, minutes)) => base("predicted_raised")
                    .with("at", at)
                    .with("minutes", minutes),
                None => base("predicted_raised_soon"),
            }
        }
        (false, AlarmKind::PredictedHighHigh | AlarmKind::PredictedLowLow) => {
            text("predicted_cleared")
        }
        (true, AlarmKind::Fault) if r.limit.is_nan() => text("fault_bad_quality"),
        (true, AlarmKind::Fault) => text("fault_range").with("limit", num(r.limit)),
        (false, AlarmKind::Fault) => text("fault_cleared"),
        (true, AlarmKind::Stale) => text("stale_raised").with("limit", whole(r.limit)),
        (false, AlarmKind::Stale) => text("stale_cleared"),
        (true, AlarmKind::Flatline) => text("flatline_raised").with("limit", whole(r.limit)),
        (false, AlarmKind::Flatline) => text("flatline_cleared"),
        (true, AlarmKind::Deviation) => text("deviation_raised").with("limit", num(r.limit)),
        (false, AlarmKind::Deviation) => text("deviation_cleared"),
        (true, _) => text("limit_raised").with("limit", num(r.limit)),
        (false, _) => text("limit_cleared"),
    }
}

/// Sets an event's message: its template and parameters, and its English
/// rendering with the notes of its flags.
pub fn set_text(e: &mut pb::AlarmEvent, text: &Text) {
    e.text_key = text.key.to_owned();
    e.text_params = text.wire_params();
    e.message = message(e, Lang::En);
}

/// An event's message in `lang`: its template rendered with its
/// parameters, then the notes of its flags (latched, suppressed,
/// backfilled).
pub fn message(e: &pb::AlarmEvent, lang: Lang) -> String {
    let mut out = text::render(
        &e.text_key,
        |name| e.text_params.get(name).map(String::as_str),
        lang,
    );
    for (flag, key) in [
        (e.latched, "latched"),
        (e.suppressed, "suppressed"),
        (e.backfilled, "backfilled"),
    ] {
        if flag {
            out.push_str(text::note(key, lang));
        }
    }
    out
}

/// An alarm as the journal stored it, back in the table's terms; `None`
/// when its source is no longer in the site model (or the record is not
/// one this service wrote).
pub(crate) fn restore_alarm(catalog: &Catalog, stored: &pb::JournalAlarm) -> Option<ActiveAlarm> {
    let record = record(catalog, stored.last.as_ref()?)?;
    Some(ActiveAlarm {
        state: state_from_pb(stored.state)?,
        raised_at_ms: stored.raised_at_ms,
        latch: stored.latch,
        condition: stored.condition,
        awaiting_since_ms: stored.awaiting_since_ms,
        last: record,
    })
}

/// The table's record of a journaled event; `None` when its source is no
/// longer in the catalog or a field does not decode.
pub(crate) fn record(catalog: &Catalog, e: &pb::AlarmEvent) -> Option<AlarmRecord> {
    let (source, kind) = alarm_key(catalog, &e.alarm_id)?;
    if let AlarmSource::Point(p) = source
        && !catalog.is_live(p)
    {
        return None;
    }
    let priority: Option<Priority> = pb::Priority::try_from(e.priority).ok()?.into();
    Some(AlarmRecord {
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
        contributors: [None; 2],
        shelved_until_ms: (e.shelved_until_ms != 0).then_some(e.shelved_until_ms),
        out_of_service: e.out_of_service,
        // Unspecified (0) is the first level.
        escalation: u8::try_from(e.escalation_level - 1).unwrap_or(0),
        awaiting_disposal: e.awaiting_disposal,
        action: e.action.clone(),
        actor: e.actor.clone(),
        comment: e.comment.clone(),
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
    let mut e = pb::AlarmEvent {
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
        message: String::new(),
        text_key: String::new(),
        text_params: Default::default(),
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
        park: String::new(),
        upstream_seq: 0,
    };
    set_text(&mut e, &describe(r, catalog));
    e
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
