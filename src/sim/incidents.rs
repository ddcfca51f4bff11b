//! The simulator's incidents (see the module docs of [`super`]): which
//! points of a site model they strike, when, and how far.

use std::sync::Arc;

use hazardwatch_proto::PointKind;
use hazardwatch_rules::SiteModel;

use super::SimPoint;

/// An excursion of one point: ramp up to `peak`, hold, ramp back.
#[derive(Debug, Clone)]
pub struct Incident {
    /// What it simulates.
    pub name: &'static str,
    /// The point.
    pub point: Arc<str>,
    /// Start, seconds after the simulation start.
    pub start_s: f64,
    /// Seconds to reach the peak.
    pub rise_s: f64,
    /// Seconds at the peak.
    pub hold_s: f64,
    /// Seconds back to normal.
    pub fall_s: f64,
    /// Value at the peak.
    pub peak: f64,
    pub(super) index: usize,
}

impl Incident {
    /// Fraction of the way to the peak at `t_s` (0 outside the incident).
    pub(super) fn envelope(&self, t_s: f64) -> f64 {
        let t = t_s - self.start_s;
        if t <= 0.0 {
            0.0
        } else if t < self.rise_s {
            t / self.rise_s
        } else if t < self.rise_s + self.hold_s {
            1.0
        } else if t < self.rise_s + self.hold_s + self.fall_s {
            1.0 - (t - self.rise_s - self.hold_s) / self.fall_s
        } else {
            0.0
        }
    }
}

/// Point `idx`'s limit `tag` (`H`, `HH`, `L`, `LL`), if configured.
pub(super) fn limit_of(model: &SiteModel, idx: u32, tag: &str) -> Option<f64> {
    model
        .point_rules(idx)
        .limits
        .iter()
        .find(|l| l.kind.tag() == tag)
        .map(|l| l.value)
}

/// Picks the incident points from the model (see the module docs).
pub(super) fn schedule(model: &SiteModel, points: &[SimPoint], t0: f64) -> Vec<Incident> {
    let mut out = Vec::new();
    let limit = |idx: u32, tag: &str| limit_of(model, idx, tag);
    let kind = |idx: u32| model.catalog.meta(idx).kind;
    let units = |e: usize| {
        model
            .enterprises
            .get(e)
            .into_iter()
            .flat_map(|e| e.hazard_sources.iter())
            .flat_map(|h| h.units.iter())
    };
    let mut add = |name, idx: u32, start_s, rise_s, hold_s, fall_s, peak: f64| {
        let p = &points[idx as usize];
        out.push(Incident {
            name,
            point: p.name.clone(),
            start_s: t0 + start_s,
            rise_s,
            hold_s,
            fall_s,
            peak: peak.clamp(p.lo, p.hi),
            index: idx as usize,
        });
    };
    // Overfill: past HH by a quarter of the headroom above it.
    if let Some(&lt) = units(0)
        .flat_map(|u| u.points.iter())
        .find(|&&p| kind(p) == PointKind::Level && limit(p, "HH").is_some())
    {
        let hh = limit(lt, "HH").unwrap_or(points[lt as usize].hi);
        let peak = hh + 0.25 * (points[lt as usize].hi - hh);
        add("overfill", lt, 0.0, 40.0, 15.0, 20.0, peak);
    }
    // Runaway heating: temperature and pressure of one unit together.
    if let Some(u) = units(1).find(|u| {
        u.points.iter().any(|&p| kind(p) == PointKind::Temperature)
            && u.points.iter().any(|&p| kind(p) == PointKind::Pressure)
    }) {
        for &p in &u.points {
            if matches!(kind(p), PointKind::Temperature | PointKind::Pressure) {
                let span = points[p as usize].hi - points[p as usize].lo;
                let top = limit(p, "HH")
                    .or(limit(p, "H"))
                    .unwrap_or(points[p as usize].hi);
                add(
                    "runaway heating",
                    p,
                    10.0,
                    25.0,
                    15.0,
                    20.0,
                    top + 0.05 * span,
                );
            }
        }
    }
    // Gas leak spreading: detector i starts 6 s after detector i-1, each
    // reaching less far.
    if let Some(u) = units(2).find(|u| {
        u.points
            .iter()
            .filter(|&&p| matches!(kind(p), PointKind::CombustibleGas | PointKind::ToxicGas))
            .count()
            >= 2
    }) {
        let gas: Vec<u32> = u
            .points
            .iter()
            .copied()
            .filter(|&p| matches!(kind(p), PointKind::CombustibleGas | PointKind::ToxicGas))
            .collect();
        for (i, &p) in gas.iter().enumerate() {
            let span = points[p as usize].hi - points[p as usize].lo;
            let h = limit(p, "H").unwrap_or(0.25 * span);
            let hh = limit(p, "HH").unwrap_or(0.5 * span);
            let peak = match i {
                0 => hh + 0.1 * span,
                1 => (h + hh) / 2.0,
                2 => h + 0.05 * span,
                _ => h / 2.0,
            };
            let i = i as f64;
            add(
                "gas leak",
                p,
                20.0 + 6.0 * i,
                8.0,
                25.0 - 6.0 * i,
                15.0,
                peak,
            );
        }
    }
    out
}

/// Picks the slow incidents' units and points (see the module docs).
pub(super) fn schedule_slow(model: &SiteModel, points: &[SimPoint], t0: f64) -> Vec<Incident> {
    const MIN: f64 = 60.0;
    let mut out = Vec::new();
    let limit = |idx: u32, tag: &str| limit_of(model, idx, tag);
    let kind = |idx: u32| model.catalog.meta(idx).kind;
    let of_kind = |u: &[u32], k: PointKind| -> Vec<u32> {
        u.iter().copied().filter(|&p| kind(p) == k).collect()
    };
    let span = |p: u32| points[p as usize].hi - points[p as usize].lo;
    let set = |p: u32| points[p as usize].set_point;
    let mut add = |name, p: u32, start_s: f64, rise_s: f64, peak: f64| {
        let sp = &points[p as usize];
        out.push(Incident {
            name,
            point: sp.name.clone(),
            start_s: t0 + start_s,
            rise_s,
            hold_s: 20.0 * MIN,
            fall_s: 40.0 * MIN,
            peak: peak.clamp(sp.lo, sp.hi),
            index: p as usize,
        });
    };
    let units: Vec<&[u32]> = model.units().map(|u| u.points.as_slice()).collect();
    // Past H by a third of the way to HH (or 5 % of the span).
    let past_high = |p: u32| {
        let h = limit(p, "H").unwrap_or(points[p as usize].hi);
        match limit(p, "HH") {
            Some(hh) => h + (hh - h) / 3.0,
            None => h + 0.05 * span(p),
        }
    };
    let reactor = units.iter().find(|u| {
        of_kind(u, PointKind::Temperature)
            .first()
            .is_some_and(|&t| limit(t, "H").is_some())
            && of_kind(u, PointKind::Measurement).len() >= 3
    });
    if let Some(u) = reactor {
        let te = of_kind(u, PointKind::Temperature)[0];
        let m = of_kind(u, PointKind::Measurement);
        let (cw_flow, cw_temp, feed) = (m[0], m[1], m[2]);
        let pt = of_kind(u, PointKind::Pressure).first().copied();
        let rise = 120.0 * MIN;
        add("cooling degradation", te, 0.0, rise, past_high(te));
        add(
            "cooling degradation",
            cw_flow,
            0.0,
            rise,
            set(cw_flow) + 0.25 * span(cw_flow),
        );
        add(
            "cooling degradation",
            cw_temp,
            0.0,
            rise,
            set(cw_temp) + 0.15 * span(cw_temp),
        );
        let start = 240.0 * MIN;
        let rise = 180.0 * MIN;
        add(
            "feed-ratio fault",
            feed,
            start,
            rise,
            set(feed) + 0.25 * span(feed),
        );
        add("feed-ratio fault", te, start, rise, past_high(te));
        add(
            "feed-ratio fault",
            cw_flow,
            start,
            rise,
            set(cw_flow) + 0.1 * span(cw_flow),
        );
        if let Some(pt) = pt {
            let h = limit(pt, "H").unwrap_or(points[pt as usize].hi);
            add("feed-ratio fault", pt, start, rise, (set(pt) + h) / 2.0);
        }
    }
    let tank = units.iter().find(|u| {
        of_kind(u, PointKind::Level)
            .first()
            .is_some_and(|&l| limit(l, "L").is_some())
            && !of_kind(u, PointKind::Measurement).is_empty()
    });
    if let Some(u) = tank {
        let lt = of_kind(u, PointKind::Level)[0];
        let l = limit(lt, "L").unwrap_or(points[lt as usize].lo);
        let trough = match limit(lt, "LL") {
            Some(ll) => (l + ll) / 2.0,
            None => l - 0.02 * span(lt),
        };
        add("slow leak", lt, 0.0, 240.0 * MIN, trough);
    }
    out
}
