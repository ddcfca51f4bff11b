//! A point's checks: range, limits, deadband, delays, trend rules and
//! GB/T 50493's gas alarm levels.

use std::collections::BTreeMap;

use hazardwatch_proto::{AlarmKind, PointKind};
use toml::Spanned;

use super::Checker;
use crate::site::model::*;
use crate::site::spec::*;

impl Checker<'_> {
    pub(super) fn point(
        &mut self,
        p: &PointSpec,
        defaults: &BTreeMap<PointKind, KindDefaults>,
    ) -> PointRules {
        self.id("point", &p.id, true);
        let name = p.id.get_ref().clone();
        let field = |f: &str| format!("point {name}: {f}");
        let [lo, hi] = *p.range.get_ref();
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            self.err(
                p.range.span(),
                field("range"),
                format!("[{lo}, {hi}] must be two finite numbers, low below high"),
            );
        }
        let span = (hi - lo).abs();
        let mut limits = Vec::new();
        let present: Vec<(AlarmKind, &Spanned<f64>)> = [
            (AlarmKind::HighHigh, &p.hh),
            (AlarmKind::High, &p.h),
            (AlarmKind::Low, &p.l),
            (AlarmKind::LowLow, &p.ll),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        for (kind, v) in &present {
            let x = *v.get_ref();
            let tag = kind.tag().to_ascii_lowercase();
            if !x.is_finite() {
                self.err(v.span(), field(&tag), format!("{x} is not a finite number"));
            } else if x < lo || x > hi {
                self.err(
                    v.span(),
                    field(&tag),
                    format!(
                        "{} limit {x} is outside the instrument range [{lo}, {hi}]",
                        kind.tag()
                    ),
                );
            }
            limits.push(Limit {
                kind: *kind,
                value: x,
                priority: default_priority(p.kind, *kind),
            });
        }
        // Limits must be ordered LL < L < H < HH; check each adjacent pair
        // that is present (present is in HH, H, L, LL order).
        for pair in present.windows(2) {
            let (k_hi, v_hi) = pair[0];
            let (k_lo, v_lo) = pair[1];
            if v_hi.get_ref() <= v_lo.get_ref() {
                self.err(
                    v_lo.span(),
                    field(&k_lo.tag().to_ascii_lowercase()),
                    format!(
                        "{} ({}) must be below {} ({})",
                        k_lo.tag(),
                        v_lo.get_ref(),
                        k_hi.tag(),
                        v_hi.get_ref()
                    ),
                );
            }
        }
        self.gas_levels(p, &field);
        let d = defaults
            .get(&p.kind)
            .copied()
            .unwrap_or_else(|| builtin_defaults(p.kind));
        let deadband = match (&p.deadband, &p.deadband_pct) {
            (Some(abs), Some(_)) => {
                self.err(
                    abs.span(),
                    field("deadband"),
                    "give either deadband or deadband_pct, not both".into(),
                );
                *abs.get_ref()
            }
            (Some(abs), None) => self.finite_non_negative(abs, field("deadband"), span / 2.0),
            (None, Some(pct)) => {
                self.finite_non_negative(pct, field("deadband_pct"), 50.0) / 100.0 * span
            }
            (None, None) => d.deadband_pct / 100.0 * span,
        };
        let secs = |c: &mut Self, v: &Option<Spanned<f64>>, f: &str, default: f64| match v {
            Some(v) => c.finite_non_negative(v, field(f), 86_400.0),
            None => default,
        };
        let on_delay_s = secs(self, &p.on_delay_s, "on_delay_s", d.on_delay_s);
        let off_delay_s = secs(self, &p.off_delay_s, "off_delay_s", d.off_delay_s);
        let ms = |s: f64| (s * 1000.0).round() as i64;
        let stale_s = secs(self, &p.stale_s, "stale_s", d.stale_s);
        let stale_ms = Some(ms(stale_s)).filter(|&m| m > 0);
        let flatline = match &p.flatline_s {
            None => {
                if let Some(b) = &p.flatline_band {
                    self.err(
                        b.span(),
                        field("flatline_band"),
                        "has no effect without flatline_s".into(),
                    );
                }
                None
            }
            Some(f) => {
                let after = self.finite_non_negative(f, field("flatline_s"), 7.0 * 86_400.0);
                let band = match &p.flatline_band {
                    Some(b) => self.finite_non_negative(b, field("flatline_band"), span),
                    None => 0.0,
                };
                Some(FlatlineRules {
                    after_ms: ms(after),
                    band,
                })
                .filter(|f| f.after_ms > 0)
            }
        };
        let window_ok = |w: f64| w.is_finite() && (2.0..=3_600.0).contains(&w);
        let roc = p.roc.as_ref().and_then(|r| {
            let v = r.get_ref();
            if !(v.limit_per_min.is_finite() && v.limit_per_min > 0.0) {
                self.err(
                    r.span(),
                    field("roc.limit_per_min"),
                    format!("{} must be a positive number", v.limit_per_min),
                );
                return None;
            }
            if !window_ok(v.window_s) {
                self.err(
                    r.span(),
                    field("roc.window_s"),
                    format!("{} must be from 2 to 3600 seconds", v.window_s),
                );
                return None;
            }
            Some(RocRules {
                limit_per_s: v.limit_per_min / 60.0,
                window_ms: ms(v.window_s),
            })
        });
        let predict = p.predict.as_ref().and_then(|r| {
            let v = r.get_ref();
            if !(v.horizon_s.is_finite() && v.horizon_s > 0.0 && v.horizon_s <= 86_400.0) {
                self.err(
                    r.span(),
                    field("predict.horizon_s"),
                    format!(
                        "{} must be more than 0 and at most 86400 seconds",
                        v.horizon_s
                    ),
                );
                return None;
            }
            if !window_ok(v.window_s) {
                self.err(
                    r.span(),
                    field("predict.window_s"),
                    format!("{} must be from 2 to 3600 seconds", v.window_s),
                );
                return None;
            }
            if p.hh.is_none() && p.ll.is_none() {
                self.err(
                    r.span(),
                    field("predict"),
                    "needs an hh or ll limit to predict".into(),
                );
                return None;
            }
            Some(PredictRules {
                horizon_ms: ms(v.horizon_s),
                window_ms: ms(v.window_s),
            })
        });
        let gas = matches!(p.kind, PointKind::CombustibleGas | PointKind::ToxicGas);
        let latch = match &p.latch {
            Some(l) if *l.get_ref() && !gas => {
                self.err(
                    l.span(),
                    field("latch"),
                    "only gas detectors latch (GB/T 50493)".into(),
                );
                false
            }
            Some(l) => *l.get_ref(),
            None => gas,
        };
        PointRules {
            latch,
            range: (lo, hi),
            limits,
            deadband,
            on_delay_ms: ms(on_delay_s),
            off_delay_ms: ms(off_delay_s),
            stale_ms,
            flatline,
            roc,
            predict,
            // Filled in once the models are read ([`Checker::deviations`]).
            deviation: None,
        }
    }

    /// GB/T 50493-2019 alarm levels: combustible gas first level (H) at most
    /// 25 %LEL and second level (HH) at most 50 %LEL; toxic gas first level
    /// at most 100 % and second at most 200 % of the occupational exposure
    /// limit (`oel`).
    fn gas_levels(&mut self, p: &PointSpec, field: &dyn Fn(&str) -> String) {
        let check = |c: &mut Self, v: &Option<Spanned<f64>>, f: &str, max: f64, what: &str| {
            if let Some(v) = v
                && *v.get_ref() > max
            {
                c.err(
                    v.span(),
                    field(f),
                    format!("{} is above {what} (GB/T 50493)", v.get_ref()),
                );
            }
        };
        match p.kind {
            PointKind::CombustibleGas => {
                if !p.eng_unit.eq_ignore_ascii_case("%LEL") {
                    self.err(
                        p.id.span(),
                        field("eng_unit"),
                        format!("combustible gas is measured in %LEL, not `{}`", p.eng_unit),
                    );
                    return;
                }
                check(
                    self,
                    &p.h,
                    "h",
                    25.0,
                    "25 %LEL, the highest first alarm level",
                );
                check(
                    self,
                    &p.hh,
                    "hh",
                    50.0,
                    "50 %LEL, the highest second alarm level",
                );
            }
            PointKind::ToxicGas => {
                let Some(oel) = &p.oel else {
                    if p.h.is_some() || p.hh.is_some() {
                        self.err(
                            p.id.span(),
                            field("oel"),
                            "toxic gas alarm levels need the occupational exposure limit `oel` to be checked against".into(),
                        );
                    }
                    return;
                };
                let o = *oel.get_ref();
                if !(o.is_finite() && o > 0.0) {
                    self.err(
                        oel.span(),
                        field("oel"),
                        format!("{o} must be a positive number"),
                    );
                    return;
                }
                check(self, &p.h, "h", o, &format!("100 % of the OEL ({o})"));
                check(
                    self,
                    &p.hh,
                    "hh",
                    2.0 * o,
                    &format!("200 % of the OEL ({o})"),
                );
            }
            _ => {
                if let Some(oel) = &p.oel {
                    self.err(
                        oel.span(),
                        field("oel"),
                        "only toxic_gas points have an occupational exposure limit".into(),
                    );
                }
            }
        }
    }
}
