//! How early the learned rules warn, and how often they warn for nothing
//! (issue 17): the whole path an engineer takes, on simulated history.
//!
//! 1. A period of normal operation is simulated into an archive
//!    ([`crate::sim::write_archive`]) and `learn` fits models on it.
//! 2. The configuration is given the models with `[park] models`,
//!    `deviation = {}` and `multivariate = {}` (every modelled point and
//!    unit, with the defaults).
//! 3. Another period of normal operation (another seed) is replayed: every
//!    learned warning in it is a false one.
//! 4. The slow incidents of the simulator are replayed, once per seed:
//!    per incident, the first learned warning on its unit (a `DEV` of one
//!    of its points or its `MV`) after the incident began, the first limit
//!    alarm (H, HH, L or LL of one of its points), and the minutes between.

use std::collections::BTreeMap;
use std::path::Path;

use hazardwatch_proto::{AlarmKind, AlarmSource, RuleEvent};
use hazardwatch_rules::{EngineConfig, SiteModel};
use hazardwatch_storage::reader::Range;

use crate::config::Config;
use crate::learn::{self, Options};
use crate::sim::{self, SimOptions};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Hours of normal operation to learn from.
    pub learn_h: u64,
    /// Hours of normal operation to count false warnings in.
    pub normal_h: u64,
    /// Seeds of the incident runs (one run each).
    pub seeds: Vec<u64>,
    /// Rule engine workers.
    pub workers: usize,
    /// Show progress bars.
    pub progress: bool,
}

/// Simulated time starts here: 2026-01-01T00:00:00Z.
const T0_MS: i64 = 1_767_225_600_000;

/// The incidents start this long into their run (normal operation first).
const LEAD_IN_S: u64 = 3600;

/// An incident run lasts this long: the slow incidents and their recovery.
const INCIDENT_RUN_S: u64 = 10 * 3600;

/// One incident in one run.
#[derive(Debug, Clone)]
pub struct IncidentOutcome {
    /// Its name.
    pub name: &'static str,
    /// The unit it happens in.
    pub unit: String,
    /// The run's seed.
    pub seed: u64,
    /// When it began, Unix ms.
    pub start_ms: i64,
    /// The first learned warning after it began: time and alarm id.
    pub warning: Option<(i64, String)>,
    /// The first limit alarm after it began: time and alarm id.
    pub limit: Option<(i64, String)>,
}

impl IncidentOutcome {
    /// Minutes between the first learned warning and the first limit
    /// alarm (negative: the limit came first).
    pub fn lead_min(&self) -> Option<f64> {
        match (&self.warning, &self.limit) {
            (Some((w, _)), Some((l, _))) => Some((l - w) as f64 / 60_000.0),
            _ => None,
        }
    }
}

/// The learned warnings of a normal period.
#[derive(Debug, Clone, Default)]
pub struct NormalOutcome {
    /// Hours replayed.
    pub hours: f64,
    /// Units with a model.
    pub units: usize,
    /// Points with a model.
    pub points: usize,
    /// Learned warnings raised, by alarm id.
    pub warnings: BTreeMap<String, u64>,
    /// Warnings per unit (a point's counted with its unit), by unit id.
    pub by_unit: BTreeMap<String, u64>,
    /// Other alarms raised (limits, trends, ...): the simulator keeps
    /// normal operation inside every limit, so none are expected.
    pub other: u64,
}

impl NormalOutcome {
    /// Learned warnings, all units.
    pub fn total(&self) -> u64 {
        self.warnings.values().sum()
    }

    /// Learned warnings per 10 minutes per modelled unit, on average.
    pub fn per_10min_per_unit(&self) -> f64 {
        self.total() as f64 / (self.hours * 6.0) / self.units.max(1) as f64
    }

    /// The unit with most warnings and its rate per 10 minutes.
    pub fn worst_unit(&self) -> Option<(&str, f64)> {
        self.by_unit
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(u, n)| (u.as_str(), *n as f64 / (self.hours * 6.0)))
    }
}

/// The evaluation's results.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Normal operation.
    pub normal: NormalOutcome,
    /// Each incident of each run.
    pub incidents: Vec<IncidentOutcome>,
}

/// Runs the evaluation (see the module docs) in `dir`, on the park of the
/// configuration `config_text`.
pub fn evaluate(dir: &Path, config_text: &str, setup: &Setup) -> anyhow::Result<Outcome> {
    let plain = dir.join("park.toml");
    std::fs::write(&plain, config_text)?;
    let config = Config::load(&plain)?;
    let site = &config.site;
    let engine = EngineConfig {
        workers: setup.workers,
        ..config.settings.engine.clone()
    };
    let archive = &config.settings.archive;
    let normal = |seed: u64| SimOptions {
        seed,
        incidents: false,
        ..SimOptions::default()
    };
    let hour_ms = 3_600_000i64;

    // 1. Learn from normal operation.
    let learn_root = dir.join("learn");
    let learn_s = setup.learn_h * 3600;
    sim::write_archive(
        site,
        &normal(1),
        &learn_root,
        T0_MS,
        learn_s,
        archive,
        setup.progress,
    )?;
    let range = Range {
        from_ms: Some(T0_MS),
        to_ms: Some(T0_MS + setup.learn_h as i64 * hour_ms),
        ..Range::default()
    };
    let models = learn::learn(
        &[learn_root.as_path()],
        &range,
        site,
        &Options::default(),
        &plain.display().to_string(),
        setup.progress,
    )?;
    learn::write(&dir.join("models.json"), &models)?;

    // 2. The configuration with the learned rules everywhere.
    let learned_path = dir.join("park-learned.toml");
    std::fs::write(
        &learned_path,
        with_learned_rules(config_text, "models.json")?,
    )?;
    let learned = Config::load(&learned_path)?;

    // 3. False warnings in normal operation.
    let normal_root = dir.join("normal");
    let normal_start = T0_MS + (setup.learn_h as i64 + 24) * hour_ms;
    let normal_s = setup.normal_h * 3600;
    sim::write_archive(
        site,
        &normal(2),
        &normal_root,
        normal_start,
        normal_s,
        archive,
        setup.progress,
    )?;
    let events = replay(&normal_root, &learned.site, &engine, setup.progress)?;
    let mut outcome = NormalOutcome {
        hours: setup.normal_h as f64,
        units: models.units.len(),
        points: models.points.len(),
        ..NormalOutcome::default()
    };
    for e in events.iter().filter(|e| e.active) {
        if is_learned(e.kind) {
            let id = crate::replay::alarm_id(&learned.site.catalog, e);
            *outcome.warnings.entry(id).or_default() += 1;
            *outcome
                .by_unit
                .entry(unit_of(&learned.site, e.source))
                .or_default() += 1;
        } else {
            outcome.other += 1;
        }
    }

    // 4. The slow incidents, once per seed.
    let mut incidents = Vec::new();
    for (i, &seed) in setup.seeds.iter().enumerate() {
        let root = dir.join(format!("incidents-{seed}"));
        let start = normal_start + (setup.normal_h as i64 + 24 * (i as i64 + 1)) * hour_ms;
        let options = SimOptions {
            seed,
            incidents: false,
            slow_incidents: true,
            incident_start_s: LEAD_IN_S as f64,
            ..SimOptions::default()
        };
        sim::write_archive(
            site,
            &options,
            &root,
            start,
            INCIDENT_RUN_S,
            archive,
            setup.progress,
        )?;
        let events = replay(&root, &learned.site, &engine, setup.progress)?;
        incidents.extend(judge(&learned.site, &options, start, seed, &events));
    }
    Ok(Outcome {
        normal: outcome,
        incidents,
    })
}

/// `config_text` with `[park] models = "MODELS"`, `deviation = {}` and
/// `multivariate = {}`: the learned rules on every modelled point and
/// unit, with their defaults.
pub fn with_learned_rules(config_text: &str, models: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(config_text.len() + 100);
    let mut found = false;
    for line in config_text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[park]" {
            found = true;
            out.push_str(&format!(
                "models = {models:?}\ndeviation = {{}}\nmultivariate = {{}}\n"
            ));
        }
    }
    anyhow::ensure!(found, "the configuration has no [park] table");
    Ok(out)
}

/// The rule events of a replay of the archive at `root`.
fn replay(
    root: &Path,
    site: &SiteModel,
    engine: &EngineConfig,
    progress: bool,
) -> anyhow::Result<Vec<RuleEvent>> {
    Ok(crate::replay::replay(root, &Range::default(), site, None, engine, progress)?.events)
}

/// Deviation and multivariate warnings.
fn is_learned(kind: AlarmKind) -> bool {
    matches!(kind, AlarmKind::Deviation | AlarmKind::Multivariate)
}

/// Limit alarms.
fn is_limit(kind: AlarmKind) -> bool {
    matches!(
        kind,
        AlarmKind::High | AlarmKind::HighHigh | AlarmKind::Low | AlarmKind::LowLow
    )
}

/// The unit id of a point or unit alarm's source.
fn unit_of(site: &SiteModel, source: AlarmSource) -> String {
    let unit = match source {
        AlarmSource::Point(p) => site.catalog.get(p).map(|m| m.unit.to_string()),
        AlarmSource::Unit(_) => Some(site.catalog.source_id(source).to_string()),
        _ => None,
    };
    unit.unwrap_or_default()
}

/// Each incident of a run and what the rules raised about its unit.
fn judge(
    site: &SiteModel,
    options: &SimOptions,
    start_ms: i64,
    seed: u64,
    events: &[RuleEvent],
) -> Vec<IncidentOutcome> {
    let simulator = sim::Simulator::new(site, options);
    let mut seen: Vec<(&'static str, String, i64)> = Vec::new();
    for inc in simulator.incidents() {
        let Some(p) = site.catalog.lookup(&inc.point) else {
            continue;
        };
        let unit = site.catalog.meta(p).unit.to_string();
        let begun = start_ms + (inc.start_s * 1000.0) as i64;
        if !seen.iter().any(|(n, u, _)| *n == inc.name && *u == unit) {
            seen.push((inc.name, unit, begun));
        }
    }
    seen.into_iter()
        .map(|(name, unit, begun)| {
            let first = |pick: fn(AlarmKind) -> bool| {
                events
                    .iter()
                    .filter(|e| e.active && e.ts_ms >= begun && pick(e.kind))
                    .filter(|e| unit_of(site, e.source) == unit)
                    .min_by_key(|e| e.ts_ms)
                    .map(|e| (e.ts_ms, crate::replay::alarm_id(&site.catalog, e)))
            };
            let (warning, limit) = (first(is_learned), first(is_limit));
            IncidentOutcome {
                name,
                unit,
                seed,
                start_ms: begun,
                warning,
                limit,
            }
        })
        .collect()
}

/// The evaluation as a table, for people.
pub fn report(outcome: &Outcome) -> String {
    let n = &outcome.normal;
    let mut s = format!(
        "normal operation, {:.0} h, {} units and {} points modelled: {} learned warnings ({:.3} per 10 min per unit; target at most 1), {} other alarms\n",
        n.hours,
        n.units,
        n.points,
        n.total(),
        n.per_10min_per_unit(),
        n.other
    );
    if let Some((unit, rate)) = n.worst_unit() {
        s.push_str(&format!(
            "  most in one unit: {unit}, {rate:.3} per 10 min\n"
        ));
    }
    for (id, count) in &n.warnings {
        s.push_str(&format!("  {id}: {count}\n"));
    }
    s.push_str("incident | unit | seed | first learned warning (min in) | first limit alarm (min in) | warned earlier by (min)\n");
    s.push_str("--- | --- | --- | --- | --- | ---\n");
    let at = |x: &Option<(i64, String)>, begun: i64| match x {
        Some((t, id)) => format!("{id} ({:.1})", (t - begun) as f64 / 60_000.0),
        None => "none".into(),
    };
    for i in &outcome.incidents {
        s.push_str(&format!(
            "{} | {} | {} | {} | {} | {}\n",
            i.name,
            i.unit,
            i.seed,
            at(&i.warning, i.start_ms),
            at(&i.limit, i.start_ms),
            i.lead_min().map_or("-".into(), |m| format!("{m:.1}"))
        ));
    }
    s
}
