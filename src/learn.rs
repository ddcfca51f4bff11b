//! `hazardwatch learn`: models of normal operation fitted from the archive
//! (issue 17), for the deviation and multivariate rules.
//!
//! The readings of the period (good quality only: faults, markers and
//! substitutes say nothing about the process) are averaged onto a grid in
//! event time (`--grid-s`, 60 s by default), which is also what the rules
//! judge: a mean over a minute is far less noisy and far less
//! autocorrelated than 1 Hz samples. Then, for every point with at least
//! [`MIN_SAMPLES`] grid means, its robust centre and spread, the lag-1
//! autocorrelation of its means, and a CUSUM of their prediction errors
//! tuned to one false alarm per `--arl` grid samples; for every unit with
//! two or more such points, a PCA model of its standardised points over
//! the grid cells where all of them have a mean, with T² and SPE limits at
//! `--confidence`. What could not be fitted is listed with the reason.
//!
//! Memory: one running sum per point and grid cell of the period (about 40
//! bytes each): a week of 10,000 points on a one-minute grid is about 4 GB,
//! so fit long periods of big parks on a coarser grid or by enterprise.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use hazardwatch_proto::{PointIdx, Quality};
use hazardwatch_rules::SiteModel;
use hazardwatch_rules::monitor::{Ar1, Cusum, Models, Pca, PointModel, Robust, Trained, UnitModel};
use hazardwatch_storage::reader::{self, Range};

use crate::config::Config;

/// Grid means a point needs before its centre and spread mean anything.
pub const MIN_SAMPLES: usize = 30;

/// The CUSUM's reference value, in standard deviations: tuned to detect a
/// shift of one standard deviation of the grid means fastest.
pub const CUSUM_K: f64 = 0.5;

/// How to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Grid, seconds.
    pub grid_s: u64,
    /// In-control average run length of each point's CUSUM, grid samples.
    pub arl0: f64,
    /// Share of the standardised variance a unit's components explain.
    pub variance: f64,
    /// Confidence of the T² and SPE limits.
    pub confidence: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grid_s: 60,
            // 30 days of one-minute means between false alarms per point.
            arl0: 43_200.0,
            variance: 0.9,
            confidence: 0.99,
        }
    }
}

impl Options {
    /// Checks the options, naming the flag that is wrong.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=Models::MAX_GRID_S).contains(&self.grid_s),
            "--grid-s {}: from 1 to {}",
            self.grid_s,
            Models::MAX_GRID_S
        );
        anyhow::ensure!(
            self.arl0.is_finite() && self.arl0 >= 10.0,
            "--arl {}: at least 10 grid samples",
            self.arl0
        );
        anyhow::ensure!(
            self.variance > 0.0 && self.variance < 1.0,
            "--variance {}: between 0 and 1",
            self.variance
        );
        anyhow::ensure!(
            self.confidence >= 0.5 && self.confidence < 1.0,
            "--confidence {}: from 0.5 to below 1",
            self.confidence
        );
        Ok(())
    }
}

/// Fits the models of `site`'s points and units from the readings in
/// `range` of the archives under `roots`; `progress` shows a bar on a
/// terminal. `config` names the configuration in the result.
pub fn learn(
    roots: &[&Path],
    range: &Range,
    site: &SiteModel,
    options: &Options,
    config: &str,
    progress: bool,
) -> anyhow::Result<Models> {
    options.validate()?;
    let (Some(from_ms), Some(to_ms)) = (range.from_ms, range.to_ms) else {
        anyhow::bail!("a training period needs both --from and --to");
    };
    let plan = reader::plan_all(roots, range).context("reading the archive")?;
    let bar = crate::replay::progress_bar(plan.rows(), progress);
    let grid_ms = options.grid_s as i64 * 1000;
    let mut cells: HashMap<(PointIdx, i64), (f64, u32)> = HashMap::new();
    let mut readings = 0u64;
    for part in &plan.parts {
        let point = |name: &str| site.catalog.lookup(name);
        reader::read_part(part, range, point, |r| {
            if r.quality != Quality::Good || !r.value.is_finite() {
                return;
            }
            let cell = cells
                .entry((r.key, r.ts_ms.div_euclid(grid_ms)))
                .or_default();
            cell.0 += r.value;
            cell.1 += 1;
            readings += 1;
        })?;
        bar.inc(part.rows);
    }
    bar.finish_and_clear();

    // Each point's grid means, in time order.
    let mut series: HashMap<PointIdx, BTreeMap<i64, f64>> = HashMap::new();
    for ((p, cell), (sum, n)) in cells {
        series
            .entry(p)
            .or_default()
            .insert(cell, sum / f64::from(n));
    }
    let cusum = Cusum::for_arl(CUSUM_K, options.arl0);
    let mut models = Models {
        format: Models::FORMAT.to_owned(),
        version: Models::VERSION,
        trained: Trained {
            from_ms,
            to_ms,
            park: site.park_id.clone(),
            config: config.to_owned(),
            readings,
        },
        grid_s: options.grid_s,
        arl0: options.arl0,
        points: BTreeMap::new(),
        units: BTreeMap::new(),
        skipped: BTreeMap::new(),
    };
    let mut fitted: HashMap<PointIdx, Robust> = HashMap::new();
    for (p, meta) in site.catalog.iter() {
        let means = series.get(&p);
        let n = means.map_or(0, BTreeMap::len);
        if n < MIN_SAMPLES {
            models.skipped.insert(
                meta.id.to_string(),
                format!("{n} grid means in the period: at least {MIN_SAMPLES} are needed"),
            );
            continue;
        }
        let mut values: Vec<f64> = means
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        let Some(robust) = Robust::of(&mut values) else {
            models
                .skipped
                .insert(meta.id.to_string(), "it does not vary in the period".into());
            continue;
        };
        fitted.insert(p, robust);
        // Consecutive cells only: a gap says nothing of one minute's pull
        // on the next.
        let ar1 = Ar1::fit(means.into_iter().flat_map(|m| {
            m.iter()
                .zip(m.iter().skip(1))
                .filter(|((c0, _), (c1, _))| *c1 - *c0 == 1)
                .map(|((_, v0), (_, v1))| (robust.standardise(*v0), robust.standardise(*v1)))
        }));
        models.points.insert(
            meta.id.to_string(),
            PointModel {
                kind: meta.kind.as_str().to_owned(),
                eng_unit: meta.eng_unit.to_string(),
                samples: n as u64,
                robust,
                cusum,
                ar1,
            },
        );
    }
    for unit in site.units() {
        let points: Vec<PointIdx> = unit
            .points
            .iter()
            .copied()
            .filter(|p| fitted.contains_key(p))
            .collect();
        if points.len() < 2 {
            if unit.points.len() >= 2 {
                models.skipped.insert(
                    unit.id.clone(),
                    format!(
                        "{} of its {} points could be fitted: a unit model needs two",
                        points.len(),
                        unit.points.len()
                    ),
                );
            }
            continue;
        }
        let rows = complete_rows(&points, &series);
        match Pca::fit(&rows, options.variance, options.confidence) {
            Ok(pca) => {
                let names = points
                    .iter()
                    .map(|&p| site.catalog.meta(p).id.to_string())
                    .collect();
                models
                    .units
                    .insert(unit.id.clone(), UnitModel { points: names, pca });
            }
            Err(e) => {
                models.skipped.insert(unit.id.clone(), e.to_string());
            }
        }
    }
    Ok(models)
}

/// The grid cells where every one of `points` has a mean, as rows.
fn complete_rows(
    points: &[PointIdx],
    series: &HashMap<PointIdx, BTreeMap<i64, f64>>,
) -> Vec<Vec<f64>> {
    let Some(first) = points.first().and_then(|p| series.get(p)) else {
        return Vec::new();
    };
    first
        .keys()
        .filter_map(|cell| {
            points
                .iter()
                .map(|p| series.get(p).and_then(|s| s.get(cell)).copied())
                .collect::<Option<Vec<f64>>>()
        })
        .collect()
}

/// Writes `models` to `path` as JSON, atomically (a temporary file renamed
/// over it).
pub fn write(path: &Path, models: &Models) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(models)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `hazardwatch learn`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LearnCommand {
    /// The archive root (the service's `DATA/archive`); repeated, the
    /// archives of a cluster's processes read as one.
    #[arg(long, required = true)]
    pub archive: Vec<PathBuf>,
    /// The configuration whose points and units are modelled.
    #[arg(long)]
    pub config: PathBuf,
    /// Start of the period of normal operation (inclusive): RFC 3339 or
    /// Unix ms.
    #[arg(long)]
    pub from: String,
    /// End of the period (exclusive).
    #[arg(long)]
    pub to: String,
    /// Where to write the models (JSON).
    #[arg(long)]
    pub out: PathBuf,
    /// Grid the readings are averaged onto, seconds.
    #[arg(long, default_value_t = 60)]
    pub grid_s: u64,
    /// Grid samples between false alarms of one point's CUSUM, in control.
    #[arg(long, default_value_t = 43_200.0)]
    pub arl: f64,
    /// Share of a unit's standardised variance its components explain.
    #[arg(long, default_value_t = 0.9)]
    pub variance: f64,
    /// Confidence of the T² and SPE limits.
    #[arg(long, default_value_t = 0.99)]
    pub confidence: f64,
}

/// Runs `hazardwatch learn`: fits, writes, prints what was fitted and what
/// was not.
pub fn command(a: LearnCommand) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    crate::replay::check_archive_roots(&a.archive)?;
    let config = Config::load(&a.config)?;
    let range = Range {
        from_ms: Some(crate::replay::parse_time("--from", &a.from)?),
        to_ms: Some(crate::replay::parse_time("--to", &a.to)?),
        ..Range::default()
    };
    if let (Some(f), Some(t)) = (range.from_ms, range.to_ms) {
        anyhow::ensure!(f < t, "--from must be before --to");
    }
    let options = Options {
        grid_s: a.grid_s,
        arl0: a.arl,
        variance: a.variance,
        confidence: a.confidence,
    };
    let roots: Vec<&Path> = a.archive.iter().map(PathBuf::as_path).collect();
    let models = learn(
        &roots,
        &range,
        &config.site,
        &options,
        &a.config.display().to_string(),
        std::io::stderr().is_terminal(),
    )?;
    write(&a.out, &models)?;
    println!(
        "{} readings; {} points and {} units modelled, {} skipped; written to {}",
        models.trained.readings,
        models.points.len(),
        models.units.len(),
        models.skipped.len(),
        a.out.display()
    );
    for (unit, m) in &models.units {
        println!(
            "  {unit}: {} points, {} component{} ({:.0} % of the variance), {} samples, T² limit {:.2}, SPE limit {:.2}",
            m.points.len(),
            m.pca.loadings.len(),
            if m.pca.loadings.len() == 1 { "" } else { "s" },
            100.0 * m.pca.explained,
            m.pca.rows,
            m.pca.t2_limit,
            m.pca.spe_limit
        );
    }
    for (what, why) in &models.skipped {
        println!("  skipped {what}: {why}");
    }
    Ok(())
}
