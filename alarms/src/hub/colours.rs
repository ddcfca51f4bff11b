//! The hub's live risk colours (GB 18218): each hazard source's colour
//! from its alarms, a `RISK_CHANGED` event when it changes, and the risk
//! report of the `SiteService`.

use std::collections::{BTreeMap, BTreeSet};

use hazardwatch_proto::pb;

use super::{AlarmHub, Filter};
use crate::risk::{self, Colour, RiskModel};
use crate::table::{ActiveAlarm, AlarmRecord, AlarmTable};
use crate::text::{Lang, Text};

/// Reasons in English, one line (the risk event's `reasons` parameter).
fn english(reasons: &[Text]) -> String {
    reasons
        .iter()
        .map(|t| t.render(Lang::En))
        .collect::<Vec<_>>()
        .join("; ")
}
use crate::wire::{self, alarm_id};

impl AlarmHub {
    /// The table's alarms grouped by hazard source, in one pass.
    pub(super) fn by_hazard_source<'t>(
        &self,
        table: &'t AlarmTable,
    ) -> BTreeMap<String, Vec<&'t ActiveAlarm>> {
        let catalog = self.catalog();
        let mut groups: BTreeMap<String, Vec<&ActiveAlarm>> = BTreeMap::new();
        for a in table.active() {
            let hs = catalog.source_place(a.last.source)[1];
            match groups.get_mut(hs) {
                Some(g) => g.push(a),
                None => {
                    groups.insert(hs.to_owned(), vec![a]);
                }
            }
        }
        groups
    }

    /// A hazard source's colour and its reasons, from its alarms.
    pub(super) fn colour_of(
        &self,
        risk: &RiskModel,
        hs: &str,
        alarms: &[&ActiveAlarm],
    ) -> (Colour, Vec<Text>) {
        let catalog = self.catalog();
        let grade = risk.sources.get(hs).map_or(4, |s| s.grade);
        risk::colour(grade, alarms.iter().copied(), |a| {
            alarm_id(catalog.source_id(a.last.source), a.last.kind)
        })
    }

    /// Risk events for the hazard sources whose colour `records` changed.
    pub(super) fn risk_events(
        &self,
        table: &mut AlarmTable,
        records: &[AlarmRecord],
    ) -> Vec<pb::AlarmEvent> {
        let catalog = self.catalog();
        let touched: BTreeSet<&str> = records
            .iter()
            .map(|r| catalog.source_place(r.source)[1])
            .collect();
        let at = records.iter().map(|r| r.ts_ms).max().unwrap_or(0);
        let risk = self.risk();
        let mut colours = self.colours();
        let groups = self.by_hazard_source(table);
        let mut changed = Vec::new();
        for hs in touched {
            let Some(source) = risk.sources.get(hs) else {
                continue;
            };
            let alarms = groups.get(hs).map_or(&[][..], Vec::as_slice);
            let (now, reasons) = self.colour_of(&risk, hs, alarms);
            let before = colours.insert(hs.to_owned(), now);
            if before != Some(now) {
                let was = before.map_or("-", Colour::as_str);
                let mut e = pb::AlarmEvent {
                    alarm_id: format!("{hs}/RISK"),
                    enterprise: source.enterprise.clone(),
                    hazard_source: hs.to_owned(),
                    transition: pb::Transition::RiskChanged as i32,
                    event_time_ms: at,
                    value: f64::NAN,
                    limit: f64::NAN,
                    risk_colour: now.pb() as i32,
                    ..Default::default()
                };
                let text = Text::new("risk_changed")
                    .with("id", hs)
                    .with("colour", now.as_str())
                    .with("was", was)
                    .with("reasons", english(&reasons));
                wire::set_text(&mut e, &text);
                changed.push(e);
            }
        }
        drop(groups);
        for e in &mut changed {
            e.seq = table.next_seq();
        }
        changed
    }

    /// Grades and live colours of the hazard sources `filter` lets through
    /// (its scope and enterprises).
    pub fn risk_report(&self, filter: &Filter) -> pb::RiskResponse {
        let table = self.lock();
        let groups = self.by_hazard_source(&table);
        let risk = self.risk();
        let mut out = pb::RiskResponse {
            park: risk.park.clone(),
            as_of_seq: table.last_seq(),
            ..Default::default()
        };
        let mut park = None;
        for (id, name) in &risk.enterprises {
            let wanted = filter.scope.allows(id)
                && (filter.enterprises.is_empty() || filter.enterprises.contains(id));
            if !wanted {
                continue;
            }
            let mut e = pb::EnterpriseRisk {
                id: id.clone(),
                name: name.clone(),
                ..Default::default()
            };
            let mut worst = Colour::Blue;
            for hs in risk.sources.values().filter(|s| &s.enterprise == id) {
                let alarms = groups.get(&hs.id).map_or(&[][..], Vec::as_slice);
                let (colour, reasons) = self.colour_of(&risk, &hs.id, alarms);
                worst = worst.max(colour);
                e.hazard_sources.push(pb::HazardSourceRisk {
                    id: hs.id.clone(),
                    name: hs.name.clone(),
                    enterprise: id.clone(),
                    grade: u32::from(hs.grade),
                    r_value: hs.r_value.unwrap_or(0.0),
                    colour: colour.pb() as i32,
                    reasons: reasons.iter().map(|t| t.render(Lang::En)).collect(),
                    reason_texts: reasons
                        .iter()
                        .map(|t| pb::MessageText {
                            key: t.key.to_owned(),
                            params: t.wire_params(),
                        })
                        .collect(),
                });
            }
            e.colour = worst.pb() as i32;
            park = park.max(Some(worst));
            out.enterprises.push(e);
        }
        out.park_colour = park.unwrap_or(Colour::Blue).pb() as i32;
        out
    }
}
