//! What makes a file invalid: the checks that turn a [`SiteSpec`] into a
//! [`SiteModel`], reporting every problem with its file, line, column and
//! field.
//!
//! - this file: the checker itself, ids, grades, and the walk over the tree;
//! - [`point`](self): a point's range, limits, delays and trend rules, and
//!   GB/T 50493's gas alarm levels;
//! - [`unit`](self): a unit's voting and correlation against its points.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use hazardwatch_proto::{Catalog, PointIdx, PointKind, PointMeta};
use toml::Spanned;

use super::model::*;
use super::source::{Invalid, Source};
use super::spec::*;
use crate::error::Error;

mod gateway;
mod models;
mod place;
mod point;
mod unit;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Problems of one file listed in full; past them, only counted (each
/// names its line, which is found by reading the file up to it: a million
/// of them would take hours, and be no help).
const LISTED_ERRORS: usize = 100;

struct Checker<'a> {
    src: &'a Source,
    /// The first [`LISTED_ERRORS`] problems.
    errors: Vec<Error>,
    /// Problems past those.
    more: usize,
    ids: HashSet<String>,
    /// Whether the park's map positions are geographic, set by the first.
    geo_map: Option<bool>,
}

impl Checker<'_> {
    /// A hazard source's grade (GB 18218-2018): computed from its
    /// substances as R = α · Σ βᵢ · qᵢ / Qᵢ, or given by hand; both must
    /// agree when both are there.
    fn grade(&mut self, hs: &HazardSourceSpec) -> (u8, Option<f64>) {
        let id = hs.id.get_ref();
        let field = |f: &str| format!("hazard source {id}: {f}");
        let alpha = hs.alpha.as_ref().map_or(1.0, |a| *a.get_ref());
        if let Some(a) = &hs.alpha
            && !(0.5..=2.0).contains(a.get_ref())
        {
            self.err(
                a.span(),
                field("alpha"),
                format!("{} must be from 0.5 to 2.0 (GB 18218 table 5)", a.get_ref()),
            );
        }
        let mut r = None;
        let mut sum_ratio = 0.0;
        for s in &hs.substance {
            let v = s.get_ref();
            let bad = if !(v.quantity_t.is_finite() && v.quantity_t >= 0.0) {
                Some("quantity_t must be 0 or more tonnes")
            } else if !(v.critical_t.is_finite() && v.critical_t > 0.0) {
                Some("critical_t must be more than 0 tonnes")
            } else if !(1.0..=20.0).contains(&v.beta) {
                Some("beta must be from 1 to 20 (GB 18218 table 3)")
            } else {
                None
            };
            if let Some(why) = bad {
                self.err(
                    s.span(),
                    field(&format!("substance {}", v.name)),
                    why.into(),
                );
                continue;
            }
            sum_ratio += v.quantity_t / v.critical_t;
            *r.get_or_insert(0.0) += v.beta * v.quantity_t / v.critical_t;
        }
        let r = r.map(|sum| alpha * sum);
        if r.is_some() && sum_ratio < 1.0 {
            let span = hs.substance.first().map_or(hs.id.span(), |s| s.span());
            self.err(
                span,
                field("substance"),
                format!(
                    "Σ q/Q = {sum_ratio:.2} is under 1: not a major hazard source under GB 18218"
                ),
            );
        }
        match (&hs.grade, r) {
            (Some(g), _) if !(1..=4).contains(g.get_ref()) => {
                self.err(
                    g.span(),
                    field("grade"),
                    format!("{} must be 1, 2, 3 or 4 (GB 18218)", g.get_ref()),
                );
                (4, r)
            }
            (Some(g), Some(r)) if *g.get_ref() != grade_of(r) => {
                self.err(
                    g.span(),
                    field("grade"),
                    format!(
                        "{} disagrees with the substances: R = {r:.1} is grade {}",
                        g.get_ref(),
                        grade_of(r)
                    ),
                );
                (*g.get_ref(), Some(r))
            }
            (Some(g), r) => (*g.get_ref(), r),
            (None, Some(r)) => (grade_of(r), Some(r)),
            (None, None) => {
                self.err(
                    hs.id.span(),
                    field("grade"),
                    "give `grade`, or `substance` entries to compute it from".into(),
                );
                (4, None)
            }
        }
    }

    fn err(&mut self, span: Range<usize>, field: String, message: String) {
        if self.errors.len() < LISTED_ERRORS {
            self.errors.push(self.src.invalid(span, field, message));
        } else {
            self.more += 1;
        }
    }

    /// Checks an id's spelling and park-wide uniqueness (`what` says which
    /// namespace: enterprise, hazard source, unit, point).
    fn id(&mut self, what: &str, id: &Spanned<String>, allow_dot: bool) {
        let s = id.get_ref();
        let ok = valid_id(s) && (allow_dot || !s.contains('.'));
        if !ok {
            self.err(
                id.span(),
                format!("{what} id"),
                format!(
                    "`{s}` must be 1-64 characters of letters, digits, `_`, `-`{}",
                    if allow_dot { " or `.`" } else { "" }
                ),
            );
        }
        if !self.ids.insert(format!("{what}\u{0}{s}")) {
            self.err(
                id.span(),
                format!("{what} id"),
                format!("duplicate {what} id `{s}`"),
            );
        }
    }

    fn finite_non_negative(&mut self, v: &Spanned<f64>, field: String, max: f64) -> f64 {
        let x = *v.get_ref();
        if !x.is_finite() || x < 0.0 || x > max {
            self.err(
                v.span(),
                field,
                format!("{x} must be a number from 0 to {max}"),
            );
        }
        x
    }
}

impl SiteModel {
    /// Parses and validates a whole site model text: a parse error or every
    /// validation problem, each naming file, line and column.
    pub fn parse(src: &Source) -> std::result::Result<SiteModel, Invalid> {
        let spec = src.parse::<SiteSpec>().map_err(|e| Invalid(vec![e]))?;
        SiteModel::from_spec(&spec, src)
    }

    /// Validates a parsed spec. Every problem is reported, each with the
    /// file, line, column and field it concerns.
    pub fn from_spec(spec: &SiteSpec, src: &Source) -> std::result::Result<SiteModel, Invalid> {
        let mut c = Checker {
            src,
            errors: Vec::new(),
            more: 0,
            ids: HashSet::new(),
            geo_map: None,
        };
        let mut defaults = BTreeMap::new();
        for (kind_name, d) in &spec.defaults {
            let kind = PointKind::ALL.into_iter().find(|k| k.as_str() == kind_name);
            let Some(kind) = kind else {
                c.err(
                    d.span(),
                    format!("defaults.{kind_name}"),
                    format!(
                        "unknown point kind `{kind_name}`; expected one of {}",
                        PointKind::ALL.map(|k| k.as_str()).join(", ")
                    ),
                );
                continue;
            };
            let b = builtin_defaults(kind);
            let v = d.get_ref();
            defaults.insert(
                kind,
                KindDefaults {
                    deadband_pct: v.deadband_pct.unwrap_or(b.deadband_pct),
                    on_delay_s: v.on_delay_s.unwrap_or(b.on_delay_s),
                    off_delay_s: v.off_delay_s.unwrap_or(b.off_delay_s),
                    stale_s: v.stale_s.unwrap_or(b.stale_s),
                },
            );
        }
        if !valid_id(spec.park.id.get_ref()) {
            c.err(
                spec.park.id.span(),
                "park id".into(),
                format!(
                    "`{}` must be 1-64 letters, digits, `_`, `-` or `.`",
                    spec.park.id.get_ref()
                ),
            );
        }
        let mut metas = Vec::new();
        let mut rules = Vec::new();
        let mut unit_rules = Vec::new();
        let mut enterprises = Vec::new();
        let mut names = gateway::Names {
            units: Default::default(),
            points: Default::default(),
        };
        for e in &spec.enterprise {
            c.id("enterprise", &e.id, false);
            let mut hazard_sources = Vec::new();
            for hs in &e.hazard_source {
                c.id("hazard source", &hs.id, true);
                let (grade, r_value) = c.grade(hs);
                let mut units = Vec::new();
                for u in &hs.unit {
                    c.id("unit", &u.id, true);
                    let first = metas.len() as PointIdx;
                    let mut points = Vec::new();
                    for p in &u.point {
                        let r = c.point(p, &defaults);
                        names
                            .points
                            .insert(p.id.get_ref(), (e.id.get_ref(), metas.len() as PointIdx));
                        points.push(metas.len() as PointIdx);
                        metas.push(PointMeta::new(
                            p.id.get_ref(),
                            e.id.get_ref(),
                            hs.id.get_ref(),
                            u.id.get_ref(),
                            p.kind,
                            &p.eng_unit,
                        ));
                        rules.push(r);
                    }
                    unit_rules.push((u.id.get_ref().clone(), c.unit(u, first, &rules)));
                    names
                        .units
                        .insert(u.id.get_ref(), (e.id.get_ref(), points.clone()));
                    units.push(UnitInfo {
                        id: u.id.get_ref().clone(),
                        name: u.name.clone(),
                        points,
                    });
                }
                let (position, camera) = c.place(hs);
                hazard_sources.push(HazardSourceInfo {
                    id: hs.id.get_ref().clone(),
                    name: hs.name.clone(),
                    grade,
                    r_value,
                    units,
                    position,
                    camera,
                });
            }
            enterprises.push(EnterpriseInfo {
                id: e.id.get_ref().clone(),
                name: e.name.clone(),
                hazard_sources,
            });
        }
        let plan = c.plan(spec, &enterprises);
        let models = c.models(spec, &metas, &enterprises);
        c.deviations(spec, models.as_deref(), &mut rules);
        c.multivariates(spec, models.as_deref(), &metas, &mut unit_rules);
        let registry = c.registry(spec, &names, metas.len());
        if c.more > 0 {
            c.errors.push(Error::More {
                path: src.path.clone(),
                count: c.more,
            });
        }
        if !c.errors.is_empty() {
            return Err(Invalid(c.errors));
        }
        let mut catalog = Catalog::default();
        catalog.extend(metas);
        // Gateways are alarm sources too (`{gateway}/OFFLINE`).
        for g in registry.gateways() {
            catalog.insert_gateway(&g.id, &g.enterprise);
        }
        // Units without points have no index and no alarms.
        let mut units = vec![UnitRules::default(); catalog.unit_count()];
        for (id, r) in unit_rules {
            if let Some(u) = catalog.unit_lookup(&id) {
                units[u as usize] = r;
            }
        }
        Ok(SiteModel {
            park_id: spec.park.id.get_ref().clone(),
            park_name: spec.park.name.clone(),
            plan,
            models,
            enterprises,
            catalog: Arc::new(catalog),
            rules: Arc::new(rules.into_iter().collect()),
            units,
            registry: Arc::new(registry),
        })
    }
}
