//! A unit's checks: voting and correlation against its points.

use hazardwatch_proto::{PointIdx, PointKind};

use super::Checker;
use crate::site::model::*;
use crate::site::spec::*;

impl Checker<'_> {
    /// Checks a unit's voting and correlation against its points (`first`
    /// is the index of its first point).
    pub(super) fn unit(
        &mut self,
        u: &UnitSpec,
        first: PointIdx,
        rules: &[PointRules],
    ) -> UnitRules {
        let unit = u.id.get_ref();
        let field = |f: &str| format!("unit {unit}: {f}");
        let idx_of = |name: &str| {
            u.point
                .iter()
                .position(|p| p.id.get_ref() == name)
                .map(|i| (first + i as PointIdx, &u.point[i]))
        };
        let has_h = |p: &PointSpec| p.h.is_some();
        let gas = |p: &PointSpec| matches!(p.kind, PointKind::CombustibleGas | PointKind::ToxicGas);
        let voting = u.voting.as_ref().and_then(|v| {
            let spec = v.get_ref();
            let mut members = Vec::new();
            if spec.members.is_empty() {
                for (i, p) in u.point.iter().enumerate() {
                    if gas(p) && has_h(p) {
                        members.push(first + i as PointIdx);
                    }
                }
            } else {
                for m in &spec.members {
                    match idx_of(m) {
                        Some((i, p)) if gas(p) && has_h(p) => members.push(i),
                        Some(_) => self.err(
                            v.span(),
                            field("voting.members"),
                            format!("`{m}` is not a gas detector with a first level `h`"),
                        ),
                        None => self.err(
                            v.span(),
                            field("voting.members"),
                            format!("`{m}` is not a point of this unit"),
                        ),
                    }
                }
                let before = members.len();
                members.sort_unstable();
                members.dedup();
                if members.len() != before {
                    self.err(
                        v.span(),
                        field("voting.members"),
                        "a detector is listed twice".into(),
                    );
                }
            }
            if members.len() < 2 || spec.k < 2 || spec.k > members.len() {
                self.err(
                    v.span(),
                    field("voting.k"),
                    format!(
                        "k = {} must be from 2 to the number of voting gas detectors ({})",
                        spec.k,
                        members.len()
                    ),
                );
                return None;
            }
            Some(VotingRules {
                k: spec.k,
                members,
                priority: spec.priority,
            })
        });
        let correlation = u.correlation.as_ref().and_then(|c| {
            let spec = c.get_ref();
            let mut pick = |named: &Option<String>, kind: PointKind, what: &str| {
                let found = match named {
                    Some(n) => idx_of(n).filter(|(_, p)| p.kind == kind),
                    None => {
                        let mut of_kind =
                            u.point.iter().enumerate().filter(|(_, p)| p.kind == kind);
                        match (of_kind.next(), of_kind.next()) {
                            (Some((i, p)), None) => Some((first + i as PointIdx, p)),
                            _ => None,
                        }
                    }
                };
                match found {
                    Some((i, _)) if rules.get(i as usize).is_some_and(|r| r.roc.is_some()) => {
                        Some(i)
                    }
                    Some((_, p)) => {
                        self.err(
                            c.span(),
                            field(&format!("correlation.{what}")),
                            format!("`{}` needs a rate-of-change rule (`roc`)", p.id.get_ref()),
                        );
                        None
                    }
                    None => {
                        self.err(
                            c.span(),
                            field(&format!("correlation.{what}")),
                            match named {
                                Some(n) => {
                                    format!("`{n}` is not a {} point of this unit", kind.as_str())
                                }
                                None => {
                                    format!("name the {what} point: the unit has not exactly one")
                                }
                            },
                        );
                        None
                    }
                }
            };
            let t = pick(&spec.temperature, PointKind::Temperature, "temperature");
            let p = pick(&spec.pressure, PointKind::Pressure, "pressure");
            if !(spec.window_s.is_finite() && spec.window_s > 0.0 && spec.window_s <= 86_400.0) {
                self.err(
                    c.span(),
                    field("correlation.window_s"),
                    format!(
                        "{} must be more than 0 and at most 86400 seconds",
                        spec.window_s
                    ),
                );
                return None;
            }
            Some(CorrelationRules {
                temperature: t?,
                pressure: p?,
                window_ms: (spec.window_s * 1000.0).round() as i64,
                priority: spec.priority,
            })
        });
        UnitRules {
            state: u.state,
            voting,
            correlation,
            // Filled in once the models are read
            // ([`Checker::multivariates`]).
            multivariate: None,
        }
    }
}
