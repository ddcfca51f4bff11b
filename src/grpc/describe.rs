//! `SiteService.Describe`: the site model as a caller may see it, for
//! consoles and maps.

use hazardwatch_alarms::Scope;
use hazardwatch_proto::{AlarmKind, pb};
use hazardwatch_rules::site::UnitState;
use hazardwatch_rules::{Position, SiteModel};

/// A unit state's wire form.
fn unit_state_pb(state: UnitState) -> pb::UnitState {
    match state {
        UnitState::Running => pb::UnitState::Running,
        UnitState::Stopped => pb::UnitState::Stopped,
        UnitState::Overhaul => pb::UnitState::Overhaul,
        UnitState::Trial => pb::UnitState::Trial,
    }
}

/// The enterprises of `site` that `scope` allows, with their hazard
/// sources, units and points.
pub(crate) fn describe(site: &SiteModel, scope: &Scope) -> pb::DescribeResponse {
    let catalog = &site.catalog;
    let point = |p: u32| {
        let meta = catalog.meta(p);
        let rules = site.rules.get(p as usize);
        let limit = |kind: AlarmKind| {
            rules.and_then(|r| r.limits.iter().find(|l| l.kind == kind).map(|l| l.value))
        };
        let gateway = site
            .registry
            .get(site.registry.owner(p))
            .map(|g| g.id.clone())
            .unwrap_or_default();
        pb::SitePoint {
            id: meta.id.to_string(),
            kind: meta.kind.as_str().to_owned(),
            eng_unit: meta.eng_unit.to_string(),
            range_low: rules.map_or(f64::NAN, |r| r.range.0),
            range_high: rules.map_or(f64::NAN, |r| r.range.1),
            ll: limit(AlarmKind::LowLow),
            l: limit(AlarmKind::Low),
            h: limit(AlarmKind::High),
            hh: limit(AlarmKind::HighHigh),
            latch: rules.is_some_and(|r| r.latch),
            gateway,
        }
    };
    let enterprises = site
        .enterprises
        .iter()
        .filter(|e| scope.allows(&e.id))
        .map(|e| pb::SiteEnterprise {
            id: e.id.clone(),
            name: e.name.clone(),
            hazard_sources: e
                .hazard_sources
                .iter()
                .map(|hs| pb::SiteHazardSource {
                    id: hs.id.clone(),
                    name: hs.name.clone(),
                    grade: u32::from(hs.grade),
                    position: hs.position.map(|p| match p {
                        Position::Plan { x, y } => pb::Position { x, y, geo: false },
                        Position::Geo { lon, lat } => pb::Position {
                            x: lon,
                            y: lat,
                            geo: true,
                        },
                    }),
                    camera_url: hs.camera.clone().unwrap_or_default(),
                    units: hs
                        .units
                        .iter()
                        .map(|u| {
                            let state = catalog
                                .unit_lookup(&u.id)
                                .and_then(|i| site.units.get(i as usize))
                                .map_or(UnitState::Running, |r| r.state);
                            pb::SiteUnit {
                                id: u.id.clone(),
                                name: u.name.clone(),
                                state: unit_state_pb(state) as i32,
                                points: u.points.iter().map(|&p| point(p)).collect(),
                            }
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    pb::DescribeResponse {
        park_id: site.park_id.clone(),
        park_name: site.park_name.clone(),
        enterprises,
        plan: site.plan.as_ref().map(|p| pb::SitePlan {
            width: p.size.0,
            height: p.size.1,
            media_type: p.media_type().to_owned(),
        }),
    }
}
