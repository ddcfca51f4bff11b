//! `[park] models`: the models of normal operation a `learn` run wrote,
//! checked against the site they are used in (issue 17).

use std::sync::Arc;

use super::*;
use crate::monitor::Models;
use crate::site::model::{DeviationRules, MultivariateRules};
use crate::site::spec::DeviationSpec;
use hazardwatch_proto::Priority;

/// The largest models file read (a park of a million points with a model
/// each is about 300 MB; this bound is far above any real file and keeps a
/// mistaken path from filling memory).
pub(super) const MAX_MODELS_BYTES: u64 = 1 << 30;

impl Checker<'_> {
    /// Reads the models file the park names and checks that it was fitted
    /// for this park and these points: the same park id, every modelled
    /// point still there with the kind and unit it was fitted with, every
    /// modelled unit still there with the points it was fitted on.
    pub(super) fn models(
        &mut self,
        spec: &SiteSpec,
        metas: &[PointMeta],
        enterprises: &[EnterpriseInfo],
    ) -> Option<Arc<Models>> {
        let m = spec.park.models.as_ref()?;
        let span = m.span();
        let file = self.src.beside(m.get_ref());
        let field = "park: models".to_owned();
        let shown = file.display().to_string();
        let text = match std::fs::metadata(&file) {
            Ok(meta) if meta.len() > MAX_MODELS_BYTES => Err(format!(
                "{shown} is {} bytes: at most {MAX_MODELS_BYTES}",
                meta.len()
            )),
            Ok(_) => std::fs::read_to_string(&file).map_err(|e| format!("{shown}: {e}")),
            Err(e) => Err(format!("{shown}: {e}")),
        };
        let models = text.and_then(|t| {
            serde_json::from_str::<Models>(&t)
                .map_err(|e| format!("{shown} is not a models file (hazardwatch learn --out): {e}"))
        });
        let models = match models {
            Ok(m) => m,
            Err(why) => {
                self.err(span, field, why);
                return None;
            }
        };
        let mut wrong = Vec::new();
        if let Err(why) = models.check() {
            wrong.push(why);
        }
        if models.format != Models::FORMAT || models.version != Models::VERSION {
            wrong.push(format!(
                "it is {} version {}; this build reads {} version {}",
                models.format,
                models.version,
                Models::FORMAT,
                Models::VERSION
            ));
        }
        if &models.trained.park != spec.park.id.get_ref() {
            wrong.push(format!(
                "it was fitted for park {}, not {}",
                models.trained.park,
                spec.park.id.get_ref()
            ));
        }
        let by_id: std::collections::HashMap<&str, &PointMeta> =
            metas.iter().map(|m| (&*m.id, m)).collect();
        for (id, p) in &models.points {
            match by_id.get(id.as_str()) {
                None => wrong.push(format!("point {id} is not in the park")),
                Some(m) if m.kind.as_str() != p.kind || *m.eng_unit != *p.eng_unit => {
                    wrong.push(format!(
                        "point {id} was fitted as {} in {}; it is {} in {} now",
                        p.kind,
                        p.eng_unit,
                        m.kind.as_str(),
                        m.eng_unit
                    ))
                }
                Some(_) => {}
            }
        }
        let units: std::collections::HashMap<&str, _> = enterprises
            .iter()
            .flat_map(|e| e.hazard_sources.iter())
            .flat_map(|h| h.units.iter())
            .map(|u| (u.id.as_str(), u))
            .collect();
        for (id, u) in &models.units {
            let Some(unit) = units.get(id.as_str()) else {
                wrong.push(format!("unit {id} is not in the park"));
                continue;
            };
            let here: Vec<&str> = unit
                .points
                .iter()
                .filter_map(|&p| metas.get(p as usize).map(|m| &*m.id))
                .collect();
            if let Some(p) = u.points.iter().find(|p| !here.contains(&p.as_str())) {
                wrong.push(format!(
                    "unit {id}'s model uses {p}, which is not one of its points"
                ));
            }
        }
        if wrong.is_empty() {
            Some(Arc::new(models))
        } else {
            // The first few, and how many more: a file for another park
            // would otherwise list every point.
            let more = wrong.len().saturating_sub(5);
            wrong.truncate(5);
            let mut message = format!(
                "{shown} does not match this configuration: {}",
                wrong.join("; ")
            );
            if more > 0 {
                message.push_str(&format!("; and {more} more"));
            }
            message.push_str(" (fit again with hazardwatch learn)");
            self.err(span, field, message);
            None
        }
    }

    /// Gives each point with `deviation` its learned model, its
    /// persistence and priority, in `rules` (indexed like the points in
    /// file order): a point without a model in the park's models file is
    /// refused, saying where the model would come from. `[park] deviation`
    /// gives it to every point with a model and no setting of its own.
    pub(super) fn deviations(
        &mut self,
        spec: &SiteSpec,
        models: Option<&Models>,
        rules: &mut [PointRules],
    ) {
        let points = spec
            .enterprise
            .iter()
            .flat_map(|e| e.hazard_source.iter())
            .flat_map(|h| h.unit.iter())
            .flat_map(|u| u.point.iter());
        let park = self.park_default(spec.park.deviation.as_ref(), models, "deviation");
        for (p, r) in points.zip(rules.iter_mut()) {
            let id = p.id.get_ref();
            let field = format!("point {id}: deviation");
            let modelled = models.is_some_and(|m| m.points.contains_key(id));
            let Some((span, (priority, k, n))) =
                self.settings(p.deviation.as_ref(), park, modelled, &field)
            else {
                continue;
            };
            let model = model_of(models, |m| &m.points, id, "point");
            match model {
                Ok(m) => {
                    r.deviation = Some(Box::new(DeviationRules {
                        robust: m.robust,
                        cusum: m.cusum,
                        ar1: m.ar1,
                        grid_ms: models.map_or(60_000, |all| all.grid_s as i64 * 1000),
                        k,
                        n,
                        priority,
                    }))
                }
                Err(why) => self.err(span, field, why),
            }
        }
    }

    /// A point's or unit's learned-rule settings and where they are
    /// written: its own (`own`, checked), else the park's (`park`, checked
    /// already) if it is `modelled`, else none.
    fn settings(
        &mut self,
        own: Option<&Spanned<DeviationSpec>>,
        park: Option<(Priority, u32, u32)>,
        modelled: bool,
        field: &str,
    ) -> Option<(std::ops::Range<usize>, (Priority, u32, u32))> {
        match (own, park) {
            (Some(d), _) => self.pre_alarm(d, field).map(|s| (d.span(), s)),
            (None, Some(s)) if modelled => Some((0..0, s)),
            _ => None,
        }
    }

    /// The settings of `[park] deviation` or `[park] multivariate`
    /// (`rule`), checked once; refused without `[park] models`.
    fn park_default(
        &mut self,
        d: Option<&Spanned<DeviationSpec>>,
        models: Option<&Models>,
        rule: &str,
    ) -> Option<(Priority, u32, u32)> {
        let d = d?;
        let field = format!("park: {rule}");
        if models.is_none() {
            self.err(
                d.span(),
                field,
                "applies the models of [park] models, which names none".into(),
            );
            return None;
        }
        self.pre_alarm(d, &field)
    }

    /// A learned rule's pre-alarm settings: its priority (low, the
    /// default, or medium) and persistence `[k, n]` (default `[3, 5]`).
    fn pre_alarm(
        &mut self,
        d: &Spanned<DeviationSpec>,
        field: &str,
    ) -> Option<(Priority, u32, u32)> {
        let v = d.get_ref();
        let priority = v.priority.unwrap_or(Priority::Low);
        if !matches!(priority, Priority::Low | Priority::Medium) {
            self.err(
                d.span(),
                field.to_owned(),
                format!(
                    "priority {}: a learned rule raises a pre-alarm, low or medium",
                    priority.as_str()
                ),
            );
            return None;
        }
        let [k, n] = v.persistence.unwrap_or([3, 5]);
        if !(1 <= k && k <= n && n <= 32) {
            self.err(
                d.span(),
                field.to_owned(),
                format!("persistence [{k}, {n}]: k of the last n cells, 1 <= k <= n <= 32"),
            );
            return None;
        }
        Some((priority, k, n))
    }

    /// Gives each unit with `multivariate` its learned model, in
    /// `unit_rules` (the units in file order, by id): a unit without a
    /// model in the park's models file is refused, saying why.
    pub(super) fn multivariates(
        &mut self,
        spec: &SiteSpec,
        models: Option<&Models>,
        metas: &[PointMeta],
        unit_rules: &mut [(String, UnitRules)],
    ) {
        let units = spec
            .enterprise
            .iter()
            .flat_map(|e| e.hazard_source.iter())
            .flat_map(|h| h.unit.iter());
        let index: std::collections::HashMap<&str, PointIdx> = metas
            .iter()
            .enumerate()
            .map(|(i, m)| (&*m.id, i as PointIdx))
            .collect();
        let park = self.park_default(spec.park.multivariate.as_ref(), models, "multivariate");
        for (u, (_, r)) in units.zip(unit_rules.iter_mut()) {
            let id = u.id.get_ref();
            let field = format!("unit {id}: multivariate");
            let modelled = models.is_some_and(|m| m.units.contains_key(id));
            let Some((span, (priority, k, n))) =
                self.settings(u.multivariate.as_ref(), park, modelled, &field)
            else {
                continue;
            };
            let model = model_of(models, |m| &m.units, id, "unit");
            let model = match model {
                Ok(m) => m,
                Err(why) => {
                    self.err(span, field, why);
                    continue;
                }
            };
            // The models check has made sure every model point is the unit's.
            let points: Option<Vec<PointIdx>> = model
                .points
                .iter()
                .map(|p| index.get(p.as_str()).copied())
                .collect();
            let Some(points) = points else { continue };
            r.multivariate = Some(Box::new(MultivariateRules {
                pca: model.pca.clone(),
                max_missing: points.len() / 4,
                points,
                grid_ms: models.map_or(60_000, |all| all.grid_s as i64 * 1000),
                k,
                n,
                priority,
            }));
        }
    }
}

/// The learned model of point or unit `id` (`what`) for a rule that needs
/// it, or why there is none.
fn model_of<'m, T>(
    models: Option<&'m Models>,
    pick: impl Fn(&'m Models) -> &'m std::collections::BTreeMap<String, T>,
    id: &str,
    what: &str,
) -> Result<&'m T, String> {
    let Some(m) = models else {
        return Err(format!(
            "needs the {what}'s model: name the file `hazardwatch learn` wrote in [park] models"
        ));
    };
    pick(m).get(id).ok_or_else(|| match m.skipped.get(id) {
        Some(why) => format!("the models file has no model of {id}: {why}"),
        None => format!("the models file has no model of {id} (fit again with hazardwatch learn)"),
    })
}
