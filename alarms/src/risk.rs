//! Live risk colours of hazard sources, enterprises and the park, from each
//! hazard source's static GB 18218 grade and its alarms now.
//!
//! The rule, per hazard source (a score from 0 to 3, blue to red):
//!
//! 1. Base: grade 1 or 2 is yellow (1), grade 3 or 4 blue (0).
//! 2. Plus 1 if any of its alarms of high priority is in force; plus 2
//!    instead if one is critical, a confirmed leak (`VOTE`) or runaway
//!    heating (`CORR`). In force means condition active or latched, and not
//!    suppressed, shelved or out of service.
//! 3. Plus 1 if any of its alarms has escalated beyond the enterprise.
//! 4. Capped at red (3).
//!
//! An enterprise takes the worst colour of its hazard sources, the park the
//! worst of its enterprises.

use std::collections::BTreeMap;

use crate::table::ActiveAlarm;
use crate::table::ESCALATION_LEVELS;
use crate::text::Text;
use hazardwatch_proto::{AlarmKind, Priority, pb};
use hazardwatch_rules::SiteModel;

/// A risk colour, in increasing risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Colour {
    /// Low.
    Blue,
    /// General.
    Yellow,
    /// Large.
    Orange,
    /// Major.
    Red,
}

impl Colour {
    const ALL: [Colour; 4] = [Colour::Blue, Colour::Yellow, Colour::Orange, Colour::Red];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Orange => "orange",
            Colour::Red => "red",
        }
    }

    /// Its wire form.
    pub fn pb(self) -> pb::RiskColour {
        match self {
            Colour::Blue => pb::RiskColour::Blue,
            Colour::Yellow => pb::RiskColour::Yellow,
            Colour::Orange => pb::RiskColour::Orange,
            Colour::Red => pb::RiskColour::Red,
        }
    }
}

/// One hazard source as the risk rule needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct HazardSource {
    /// Its id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Owning enterprise.
    pub enterprise: String,
    /// GB 18218 grade.
    pub grade: u8,
    /// R, when computed from substances.
    pub r_value: Option<f64>,
}

/// The site's hazard sources and enterprises, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskModel {
    /// Park id.
    pub park: String,
    /// Enterprises as (id, name).
    pub enterprises: Vec<(String, String)>,
    /// Hazard sources by id.
    pub sources: BTreeMap<String, HazardSource>,
}

impl RiskModel {
    /// From a validated site model.
    pub fn from_site(site: &SiteModel) -> RiskModel {
        let mut model = RiskModel {
            park: site.park_id.clone(),
            ..RiskModel::default()
        };
        for e in &site.enterprises {
            model.enterprises.push((e.id.clone(), e.name.clone()));
            for hs in &e.hazard_sources {
                model.sources.insert(
                    hs.id.clone(),
                    HazardSource {
                        id: hs.id.clone(),
                        name: hs.name.clone(),
                        enterprise: e.id.clone(),
                        grade: hs.grade,
                        r_value: hs.r_value,
                    },
                );
            }
        }
        model
    }
}

/// A hazard source's colour from its grade and its alarms (the module's
/// rule), with the reasons in order, as texts in either language; `name`
/// gives an alarm's id, asked only for the alarms a reason names.
pub fn colour<'a>(
    grade: u8,
    alarms: impl IntoIterator<Item = &'a ActiveAlarm>,
    name: impl Fn(&ActiveAlarm) -> String,
) -> (Colour, Vec<Text>) {
    let mut reasons = vec![Text::new("risk_grade").with("grade", grade)];
    let base = usize::from(grade <= 2);
    let mut raise = 0;
    let mut escalated: Option<&ActiveAlarm> = None;
    let mut worst: Option<(usize, &ActiveAlarm, &'static str)> = None;
    for a in alarms {
        let last = &a.last;
        let in_force = (a.condition || last.latched)
            && !last.suppressed
            && last.shelved_until_ms.is_none()
            && !last.out_of_service;
        if in_force {
            let (step, why) = match (last.priority, last.kind) {
                (_, AlarmKind::Voting) => (2, "risk_leak"),
                (_, AlarmKind::Correlation) => (2, "risk_runaway"),
                (Priority::Critical, _) => (2, "risk_critical"),
                (Priority::High, _) => (1, "risk_high"),
                _ => (0, ""),
            };
            if step > worst.map_or(0, |w| w.0) {
                worst = Some((step, a, why));
            }
        }
        if last.escalation > escalated.map_or(0, |e| e.last.escalation) {
            escalated = Some(a);
        }
    }
    if let Some((step, a, why)) = worst {
        raise += step;
        reasons.push(Text::new(why).with("id", name(a)));
    }
    if let Some(a) = escalated {
        raise += 1;
        let level = usize::from(a.last.escalation).min(ESCALATION_LEVELS.len() - 1);
        reasons.push(
            Text::new("risk_escalated")
                .with("level", ESCALATION_LEVELS[level])
                .with("id", name(a)),
        );
    }
    (Colour::ALL[(base + raise).min(3)], reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{AlarmRecord, AlarmState, Transition};
    use hazardwatch_proto::AlarmSource;

    fn alarm(kind: AlarmKind, priority: Priority, condition: bool) -> ActiveAlarm {
        ActiveAlarm {
            state: AlarmState::UnackedActive,
            raised_at_ms: 0,
            latch: false,
            condition,
            awaiting_since_ms: 0,
            last: AlarmRecord {
                seq: 1,
                source: AlarmSource::Point(0),
                kind,
                priority,
                transition: Transition::Raised,
                state: AlarmState::UnackedActive,
                ts_ms: 0,
                value: 0.0,
                limit: 0.0,
                predicted_ms: None,
                latched: false,
                suppressed: false,
                backfilled: false,
                contributors: [None; 2],
                shelved_until_ms: None,
                out_of_service: false,
                escalation: 0,
                awaiting_disposal: false,
                action: String::new(),
                actor: String::new(),
                comment: String::new(),
            },
        }
    }

    #[test]
    fn the_colour_follows_the_documented_rule() {
        let of = |grade, alarms: &[&ActiveAlarm]| {
            colour(grade, alarms.iter().copied(), |_| "X".into()).0
        };
        assert_eq!(of(2, &[]), Colour::Yellow);
        assert_eq!(of(3, &[]), Colour::Blue);
        let medium = alarm(AlarmKind::High, Priority::Medium, true);
        let high = alarm(AlarmKind::HighHigh, Priority::High, true);
        let critical = alarm(AlarmKind::HighHigh, Priority::Critical, true);
        let leak = alarm(AlarmKind::Voting, Priority::High, true);
        assert_eq!(of(3, &[&medium]), Colour::Blue);
        assert_eq!(of(3, &[&high]), Colour::Yellow);
        assert_eq!(of(2, &[&high]), Colour::Orange);
        assert_eq!(of(2, &[&critical]), Colour::Red);
        assert_eq!(of(4, &[&leak, &high]), Colour::Orange);
        let cleared = alarm(AlarmKind::HighHigh, Priority::Critical, false);
        assert_eq!(of(2, &[&cleared]), Colour::Yellow, "not in force");
        let mut shelved = critical.clone();
        shelved.last.shelved_until_ms = Some(1);
        assert_eq!(of(2, &[&shelved]), Colour::Yellow);
        let mut escalated = cleared;
        escalated.last.escalation = 2;
        let (c, reasons) = colour(4, [&escalated], |_| "T1/H".into());
        assert_eq!(c, Colour::Yellow);
        assert_eq!(
            reasons[1].render(crate::text::Lang::En),
            "escalated to the county level: T1/H"
        );
        assert_eq!(
            reasons[1].render(crate::text::Lang::Zh),
            "已升级至县级:T1/H"
        );
        assert_eq!(
            reasons[0].render(crate::text::Lang::Zh),
            "GB 18218 4 级重大危险源"
        );
        assert_eq!(of(1, &[&critical, &escalated]), Colour::Red, "capped");
    }
}
