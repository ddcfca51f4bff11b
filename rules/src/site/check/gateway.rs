//! The gateway registry's checks: ids, the points each gateway reports
//! (its own enterprise's, each point by exactly one gateway), its interval
//! and its credential.

use std::collections::HashMap;

use hazardwatch_proto::PointIdx;

use super::Checker;
use crate::site::spec::*;
use hazardwatch_proto::{Credential, GatewayInfo, Registry};

/// Longest reporting interval accepted: one day.
const MAX_INTERVAL_S: f64 = 86_400.0;

/// Silence before offline when not configured: three intervals, at least
/// this many seconds (a gateway reporting every second is not offline
/// after one lost message).
const MIN_OFFLINE_AFTER_S: f64 = 10.0;

/// Where the registry's names point: units and points by id, with their
/// enterprise.
pub(super) struct Names<'a> {
    /// Unit id: (enterprise, its points).
    pub units: HashMap<&'a str, (&'a str, Vec<PointIdx>)>,
    /// Point id: (enterprise, index).
    pub points: HashMap<&'a str, (&'a str, PointIdx)>,
}

impl Checker<'_> {
    /// Checks every enterprise's gateways against the model's `names` and
    /// builds the registry over `point_count` points.
    pub(super) fn registry(
        &mut self,
        spec: &SiteSpec,
        names: &Names<'_>,
        point_count: usize,
    ) -> Registry {
        let mut gateways = Vec::new();
        let mut owner: Vec<Option<&str>> = vec![None; point_count];
        let mut cert_cns: HashMap<&str, &str> = HashMap::new();
        for e in &spec.enterprise {
            let enterprise = e.id.get_ref().as_str();
            for g in &e.gateway {
                self.id("gateway", &g.id, false);
                let id = g.id.get_ref().as_str();
                // Alarm ids name their source: a gateway must not share its
                // id with a point, a unit or an enterprise.
                let taken = if names.points.contains_key(id) {
                    Some("a point")
                } else if names.units.contains_key(id) {
                    Some("a unit")
                } else if spec.enterprise.iter().any(|e| e.id.get_ref() == id) {
                    Some("an enterprise")
                } else {
                    None
                };
                if let Some(what) = taken {
                    self.err(
                        g.id.span(),
                        "gateway id".into(),
                        format!("`{id}` is already the id of {what}"),
                    );
                }
                let field = |f: &str| format!("gateway {id}: {f}");
                let mut points = Vec::new();
                for u in &g.units {
                    match names.units.get(u.get_ref().as_str()) {
                        Some((ent, ps)) if *ent == enterprise => points.extend(ps),
                        Some((ent, _)) => self.err(
                            u.span(),
                            field("units"),
                            format!(
                                "unit `{}` belongs to enterprise {ent}, not {enterprise}",
                                u.get_ref()
                            ),
                        ),
                        None => self.err(
                            u.span(),
                            field("units"),
                            format!("unknown unit `{}`", u.get_ref()),
                        ),
                    }
                }
                for p in &g.points {
                    match names.points.get(p.get_ref().as_str()) {
                        Some((ent, i)) if *ent == enterprise => points.push(*i),
                        Some((ent, _)) => self.err(
                            p.span(),
                            field("points"),
                            format!(
                                "point `{}` belongs to enterprise {ent}, not {enterprise}",
                                p.get_ref()
                            ),
                        ),
                        None => self.err(
                            p.span(),
                            field("points"),
                            format!("unknown point `{}`", p.get_ref()),
                        ),
                    }
                }
                if points.is_empty() {
                    self.err(
                        g.id.span(),
                        field("units"),
                        "a gateway must report at least one unit or point".into(),
                    );
                }
                for &p in &points {
                    match owner[p as usize] {
                        Some(other) => {
                            let name = names
                                .points
                                .iter()
                                .find(|(_, (_, i))| *i == p)
                                .map_or("?", |(n, _)| *n);
                            let span = g
                                .points
                                .first()
                                .or(g.units.first())
                                .map_or(g.id.span(), |s| s.span());
                            self.err(
                                span,
                                field("points"),
                                if other == id {
                                    format!("point `{name}` is listed twice")
                                } else {
                                    format!("point `{name}` is already reported by gateway {other}")
                                },
                            );
                        }
                        None => owner[p as usize] = Some(id),
                    }
                }
                let interval_s = *g.interval_s.get_ref();
                if !(interval_s.is_finite() && interval_s > 0.0 && interval_s <= MAX_INTERVAL_S) {
                    self.err(
                        g.interval_s.span(),
                        field("interval_s"),
                        format!(
                            "{interval_s} must be more than 0 and at most {MAX_INTERVAL_S} seconds"
                        ),
                    );
                }
                let default_offline = (3.0 * interval_s).max(MIN_OFFLINE_AFTER_S);
                let offline_after_s = match &g.offline_after_s {
                    Some(o) => {
                        let v = *o.get_ref();
                        let least = interval_s.max(1.0);
                        if !(v.is_finite() && v >= least && v <= 10.0 * MAX_INTERVAL_S) {
                            self.err(
                                o.span(),
                                field("offline_after_s"),
                                format!(
                                    "{v} must be at least interval_s and 1 s ({least}) and at most {} seconds",
                                    10.0 * MAX_INTERVAL_S
                                ),
                            );
                        }
                        v
                    }
                    None => default_offline,
                };
                if let Some(h) = &g.password_hash
                    && let Err(why) = check_password_hash(h.get_ref())
                {
                    self.err(h.span(), field("password_hash"), why);
                }
                if let Some(cn) = &g.cert_cn {
                    let s = cn.get_ref().as_str();
                    if s.is_empty() || s.len() > 64 || s.chars().any(char::is_control) {
                        self.err(
                            cn.span(),
                            field("cert_cn"),
                            "must be 1-64 printable characters".into(),
                        );
                    } else if let Some(other) = cert_cns.insert(s, id) {
                        self.err(
                            cn.span(),
                            field("cert_cn"),
                            format!("`{s}` is already the certificate of gateway {other}"),
                        );
                    }
                }
                if g.password_hash.is_none() && g.cert_cn.is_none() {
                    self.err(
                        g.id.span(),
                        field("password_hash"),
                        "a gateway needs a credential: password_hash (from `hazardwatch gateway hash-password`), cert_cn, or both".into(),
                    );
                }
                gateways.push(GatewayInfo {
                    id: id.to_owned(),
                    name: g.name.clone(),
                    enterprise: enterprise.to_owned(),
                    points,
                    interval_ms: (interval_s * 1000.0).round() as i64,
                    offline_after_ms: (offline_after_s * 1000.0).round() as i64,
                    credential: Credential {
                        password_hash: g.password_hash.as_ref().map(|h| h.get_ref().clone()),
                        cert_cn: g.cert_cn.as_ref().map(|c| c.get_ref().clone()),
                    },
                });
            }
        }
        if !gateways.is_empty() {
            let orphans: Vec<&str> = names
                .points
                .iter()
                .filter(|(_, (_, i))| owner[*i as usize].is_none())
                .map(|(n, _)| *n)
                .collect();
            if !orphans.is_empty() {
                let mut orphans = orphans;
                orphans.sort_unstable();
                let span = spec
                    .enterprise
                    .iter()
                    .flat_map(|e| e.gateway.first())
                    .next()
                    .map_or(0..0, |g| g.id.span());
                let shown = orphans
                    .iter()
                    .take(10)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                let more = orphans.len().saturating_sub(10);
                self.err(
                    span,
                    "gateway".into(),
                    format!(
                        "{} point(s) are reported by no gateway: {shown}{}; once gateways are registered every point needs one",
                        orphans.len(),
                        if more > 0 { format!(" and {more} more") } else { String::new() }
                    ),
                );
            }
        }
        Registry::new(gateways, point_count)
    }
}

/// Checks that `hash` is an argon2id PHC string (what `hazardwatch gateway
/// hash-password` prints), so a plain password pasted into the file is
/// refused rather than never matching.
fn check_password_hash(hash: &str) -> Result<(), String> {
    let parsed = password_hash::PasswordHash::new(hash).map_err(|e| {
        format!("not a PHC password hash ({e}); make one with `hazardwatch gateway hash-password`")
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "algorithm `{}` is not argon2id; make one with `hazardwatch gateway hash-password`",
            parsed.algorithm
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("the hash has no salt or no output".into());
    }
    Ok(())
}
