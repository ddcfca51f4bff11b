//! The site model: park > enterprise > hazard source > unit > point, with
//! each point's instrument range, alarm limits and rule parameters.
//!
//! Two layers: the `*Spec` structs are the TOML file as written (serde,
//! `deny_unknown_fields`, spans kept for error messages); [`SiteModel`] is the
//! validated model the engine runs on, with every default filled in.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hazardwatch_proto::{AlarmKind, Catalog, PointIdx, PointKind, PointMeta, Priority, UnitIdx};
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};

/// The park: the top of the site model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkSpec {
    /// Park id, e.g. `NJCP`.
    pub id: Spanned<String>,
    /// Display name.
    #[serde(default)]
    pub name: String,
}

/// One enterprise of the park. Its id is the `{enterprise}` topic segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseSpec {
    /// Enterprise id; letters, digits, `_` and `-`.
    pub id: Spanned<String>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The enterprise's major hazard sources.
    #[serde(default)]
    pub hazard_source: Vec<HazardSourceSpec>,
}

/// A major hazard source (GB 18218), graded 1 (most severe) to 4.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HazardSourceSpec {
    /// Hazard source id, unique in the park.
    pub id: Spanned<String>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// GB 18218 grade, 1 to 4, when given by hand. With `substance`
    /// entries the grade is computed; a hand grade must then agree.
    #[serde(default)]
    pub grade: Option<Spanned<u8>>,
    /// GB 18218 correction factor α for the people exposed outside the
    /// plant: 0.5 (nobody) to 2.0 (100 or more). Default 1.0.
    #[serde(default)]
    pub alpha: Option<Spanned<f64>>,
    /// The dangerous substances held, for R = α · Σ βᵢ · qᵢ / Qᵢ.
    #[serde(default)]
    pub substance: Vec<Spanned<SubstanceSpec>>,
    /// Tanks, tank farms and process units of this hazard source.
    #[serde(default)]
    pub unit: Vec<UnitSpec>,
}

/// One dangerous substance of a hazard source (GB 18218-2018).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubstanceSpec {
    /// Its name, e.g. `benzene`.
    pub name: String,
    /// The greatest quantity held, tonnes (q).
    pub quantity_t: f64,
    /// Its critical quantity from GB 18218 tables 1 and 2, tonnes (Q).
    pub critical_t: f64,
    /// Its correction factor β from GB 18218 table 3 (1 for most
    /// flammables, up to 20 for the most toxic gases). Default 1.
    #[serde(default = "one")]
    pub beta: f64,
}

fn one() -> f64 {
    1.0
}

/// The GB 18218-2018 grade for a risk value R: 1 when R ≥ 100, 2 from 50,
/// 3 from 10, else 4.
pub fn grade_of(r: f64) -> u8 {
    if r >= 100.0 {
        1
    } else if r >= 50.0 {
        2
    } else if r >= 10.0 {
        3
    } else {
        4
    }
}

/// A unit: a tank, a tank farm or a process unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSpec {
    /// Unit id, unique in the park, e.g. `T101`.
    pub id: Spanned<String>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Operating state; a stopped unit or one under overhaul has its alarms
    /// suppressed by design (default `running`).
    #[serde(default)]
    pub state: UnitState,
    /// k-of-N voting of the unit's gas detectors, e.g.
    /// `voting = { k = 2 }`.
    pub voting: Option<Spanned<VotingSpec>>,
    /// Temperature and pressure rising together, e.g.
    /// `correlation = { window_s = 300 }`.
    pub correlation: Option<Spanned<CorrelationSpec>>,
    /// The unit's measured points.
    #[serde(default)]
    pub point: Vec<PointSpec>,
}

/// Operating state of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    /// In operation: alarms annunciate.
    #[default]
    Running,
    /// Shut down: alarms are suppressed by design.
    Stopped,
    /// Under maintenance: alarms are suppressed by design.
    Overhaul,
    /// Trial production: alarms annunciate.
    Trial,
}

impl UnitState {
    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Running => "running",
            UnitState::Stopped => "stopped",
            UnitState::Overhaul => "overhaul",
            UnitState::Trial => "trial",
        }
    }

    /// True when the unit's alarms are suppressed by design.
    pub fn suppresses(self) -> bool {
        matches!(self, UnitState::Stopped | UnitState::Overhaul)
    }
}

/// `voting = { ... }` on a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VotingSpec {
    /// How many detectors at the first level confirm a leak (at least 2).
    pub k: usize,
    /// The voting detectors (default: every gas point of the unit with a
    /// first level `h`).
    #[serde(default)]
    pub members: Vec<String>,
    /// Priority of the unit alarm (default `high`).
    #[serde(default = "high")]
    pub priority: Priority,
}

fn high() -> Priority {
    Priority::High
}

/// `correlation = { ... }` on a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationSpec {
    /// The temperature point (default: the unit's only temperature point).
    pub temperature: Option<String>,
    /// The pressure point (default: the unit's only pressure point).
    pub pressure: Option<String>,
    /// Both must start rising within this many seconds of each other
    /// (default 300).
    #[serde(default = "default_correlation_window")]
    pub window_s: f64,
    /// Priority of the unit alarm (default `high`).
    #[serde(default = "high")]
    pub priority: Priority,
}

fn default_correlation_window() -> f64 {
    300.0
}

/// One measured point and its alarm configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    /// Point id, unique in the park, e.g. `T101.LT`.
    pub id: Spanned<String>,
    /// What is measured.
    pub kind: PointKind,
    /// Engineering unit, e.g. `m`, `degC`, `kPa`, `%LEL`, `ppm`.
    pub eng_unit: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Instrument range `[low, high]`; readings outside are sensor faults.
    pub range: Spanned<[f64; 2]>,
    /// High-high limit.
    pub hh: Option<Spanned<f64>>,
    /// High limit.
    pub h: Option<Spanned<f64>>,
    /// Low limit.
    pub l: Option<Spanned<f64>>,
    /// Low-low limit.
    pub ll: Option<Spanned<f64>>,
    /// Deadband in engineering units (overrides `deadband_pct`).
    pub deadband: Option<Spanned<f64>>,
    /// Deadband in percent of the instrument span.
    pub deadband_pct: Option<Spanned<f64>>,
    /// Seconds a limit must be exceeded before the alarm is raised.
    pub on_delay_s: Option<Spanned<f64>>,
    /// Seconds a limit must be clear before the alarm returns to normal.
    pub off_delay_s: Option<Spanned<f64>>,
    /// Communication loss: seconds without a reading before the point is
    /// stale (0 turns it off).
    pub stale_s: Option<Spanned<f64>>,
    /// Frozen sensor: seconds the value may stay within `flatline_band`
    /// before a flatline alarm (absent: no flatline check).
    pub flatline_s: Option<Spanned<f64>>,
    /// Largest change that still counts as "unchanged", engineering units
    /// (default 0: exactly the same value).
    pub flatline_band: Option<Spanned<f64>>,
    /// Toxic gas: the occupational exposure limit in the point's unit; its
    /// alarm levels are checked against it (GB/T 50493).
    pub oel: Option<Spanned<f64>>,
    /// Gas detectors: the H and HH alarms latch until an operator resets
    /// them (default true for gas points; only gas points may latch).
    pub latch: Option<Spanned<bool>>,
    /// Rate-of-change alarm, e.g. `roc = { limit_per_min = 0.5, window_s = 60 }`.
    pub roc: Option<Spanned<RocSpec>>,
    /// Predicted-limit early warning, e.g. `predict = { horizon_s = 600 }`.
    pub predict: Option<Spanned<PredictSpec>>,
}

/// `roc = { ... }` on a point.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RocSpec {
    /// Alarm when the value changes faster than this, engineering units per
    /// minute (rising or falling).
    pub limit_per_min: f64,
    /// Window of the least-squares slope, seconds (default 60).
    #[serde(default = "default_roc_window")]
    pub window_s: f64,
}

fn default_roc_window() -> f64 {
    60.0
}

/// `predict = { ... }` on a point.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictSpec {
    /// Warn when the trend reaches HH (or LL) within this many seconds.
    pub horizon_s: f64,
    /// Window of the least-squares slope, seconds (default 120).
    #[serde(default = "default_predict_window")]
    pub window_s: f64,
}

fn default_predict_window() -> f64 {
    120.0
}

/// Validated flatline parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlatlineRules {
    /// How long the value may stay unchanged, ms.
    pub after_ms: i64,
    /// Largest change that counts as unchanged.
    pub band: f64,
}

/// Validated rate-of-change parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocRules {
    /// Limit, engineering units per second.
    pub limit_per_s: f64,
    /// Slope window, ms.
    pub window_ms: i64,
}

/// Validated predicted-limit parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictRules {
    /// Horizon, ms.
    pub horizon_ms: i64,
    /// Slope window, ms.
    pub window_ms: i64,
}

/// Per-kind defaults, overridable in the `[defaults.KIND]` tables.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSpec {
    /// Deadband in percent of the instrument span.
    pub deadband_pct: Option<f64>,
    /// On-delay in seconds.
    pub on_delay_s: Option<f64>,
    /// Off-delay in seconds.
    pub off_delay_s: Option<f64>,
    /// Seconds without a reading before a point is stale (0: off).
    pub stale_s: Option<f64>,
}

/// The site-model part of a configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// The park.
    pub park: ParkSpec,
    /// Per-kind defaults.
    #[serde(default)]
    pub defaults: BTreeMap<String, Spanned<DefaultsSpec>>,
    /// The enterprises.
    #[serde(default)]
    pub enterprise: Vec<EnterpriseSpec>,
}

/// Defaults used when neither the point nor `[defaults.KIND]` says otherwise.
///
/// Deadbands follow EEMUA 191's guidance (temperature 1 %, level and pressure
/// 2 % of span); delays follow ISA-18.2's typical values (15 s for
/// temperature, 5 s for level and pressure). Gas detection must annunciate at
/// once (GB/T 50493), so gas points have no on-delay. Every point is stale
/// after 60 s without a reading.
pub fn builtin_defaults(kind: PointKind) -> KindDefaults {
    match kind {
        PointKind::Temperature => KindDefaults {
            deadband_pct: 1.0,
            on_delay_s: 15.0,
            off_delay_s: 15.0,
            stale_s: DEFAULT_STALE_S,
        },
        PointKind::Level | PointKind::Pressure => KindDefaults {
            deadband_pct: 2.0,
            on_delay_s: 5.0,
            off_delay_s: 5.0,
            stale_s: DEFAULT_STALE_S,
        },
        PointKind::CombustibleGas | PointKind::ToxicGas => KindDefaults {
            deadband_pct: 2.0,
            on_delay_s: 0.0,
            off_delay_s: 5.0,
            stale_s: DEFAULT_STALE_S,
        },
    }
}

/// Seconds without a reading before a point is stale, unless configured.
pub const DEFAULT_STALE_S: f64 = 60.0;

/// Resolved per-kind defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KindDefaults {
    /// Deadband, percent of span.
    pub deadband_pct: f64,
    /// On-delay, seconds.
    pub on_delay_s: f64,
    /// Off-delay, seconds.
    pub off_delay_s: f64,
    /// Stale after this many seconds without a reading (0: off).
    pub stale_s: f64,
}

/// One alarm limit of a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Which limit.
    pub kind: AlarmKind,
    /// The limit value, engineering units.
    pub value: f64,
    /// Priority of the alarm it raises.
    pub priority: Priority,
}

impl Limit {
    /// True for HH and H: the alarm is raised above the limit.
    pub fn is_high(&self) -> bool {
        matches!(self.kind, AlarmKind::HighHigh | AlarmKind::High)
    }
}

/// The validated rule parameters of one point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRules {
    /// Instrument range.
    pub range: (f64, f64),
    /// Configured limits (HH, H, L, LL order; absent ones omitted).
    pub limits: Vec<Limit>,
    /// Deadband in engineering units.
    pub deadband: f64,
    /// On-delay, ms of event time.
    pub on_delay_ms: i64,
    /// Off-delay, ms of event time.
    pub off_delay_ms: i64,
    /// Stale after this long without a reading, ms (None: off).
    pub stale_ms: Option<i64>,
    /// Flatline check, when configured.
    pub flatline: Option<FlatlineRules>,
    /// Rate-of-change alarm, when configured.
    pub roc: Option<RocRules>,
    /// Predicted HH/LL early warning, when configured.
    pub predict: Option<PredictRules>,
    /// The limit alarms latch until reset (gas detection).
    pub latch: bool,
}

impl PointRules {
    /// True for the rules of a point removed from the site model.
    pub fn is_inert(&self) -> bool {
        *self == Self::inert()
    }

    /// The rules of a point removed from the site model: nothing to judge.
    pub fn inert() -> Self {
        PointRules {
            range: (f64::NEG_INFINITY, f64::INFINITY),
            limits: Vec::new(),
            deadband: 0.0,
            on_delay_ms: 0,
            off_delay_ms: 0,
            stale_ms: None,
            flatline: None,
            roc: None,
            predict: None,
            latch: false,
        }
    }
}

/// Validated voting parameters of a unit.
#[derive(Debug, Clone, PartialEq)]
pub struct VotingRules {
    /// Detectors at the first level that confirm a leak.
    pub k: usize,
    /// The voting detectors.
    pub members: Vec<PointIdx>,
    /// Priority of the unit alarm.
    pub priority: Priority,
}

/// Validated correlation parameters of a unit.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationRules {
    /// The temperature point.
    pub temperature: PointIdx,
    /// The pressure point.
    pub pressure: PointIdx,
    /// Largest gap between the two rises, ms.
    pub window_ms: i64,
    /// Priority of the unit alarm.
    pub priority: Priority,
}

/// The validated rules of one unit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitRules {
    /// Operating state.
    pub state: UnitState,
    /// Voting, when configured.
    pub voting: Option<VotingRules>,
    /// Correlation, when configured.
    pub correlation: Option<CorrelationRules>,
}

/// A unit in the validated model.
#[derive(Debug, Clone)]
pub struct UnitInfo {
    /// Unit id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its points.
    pub points: Vec<PointIdx>,
}

/// A hazard source in the validated model.
#[derive(Debug, Clone)]
pub struct HazardSourceInfo {
    /// Hazard source id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// GB 18218 grade, 1 to 4.
    pub grade: u8,
    /// R = α · Σ βᵢ · qᵢ / Qᵢ when computed from substances.
    pub r_value: Option<f64>,
    /// Its units.
    pub units: Vec<UnitInfo>,
}

/// An enterprise in the validated model.
#[derive(Debug, Clone)]
pub struct EnterpriseInfo {
    /// Enterprise id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its hazard sources.
    pub hazard_sources: Vec<HazardSourceInfo>,
}

/// The validated site model.
#[derive(Debug, Clone)]
pub struct SiteModel {
    /// Park id.
    pub park_id: String,
    /// Park name.
    pub park_name: String,
    /// Enterprises, in file order.
    pub enterprises: Vec<EnterpriseInfo>,
    /// Every point, by name and index; shared with ingest, the archive
    /// and the alarm hub rather than copied (each copy would cost about
    /// 150 bytes per point).
    pub catalog: Arc<Catalog>,
    /// Rule parameters, indexed by [`PointIdx`]; shared with the engine's
    /// [`crate::rule_set::RuleSet`].
    pub rules: Arc<Vec<PointRules>>,
    /// Unit rules, indexed by [`UnitIdx`] (the catalog's unit numbering).
    pub units: Vec<UnitRules>,
}

/// A configuration file's text and path, for turning byte spans into
/// `file:line:column` positions.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where the text came from.
    pub path: PathBuf,
    /// The whole file.
    pub text: String,
}

impl Source {
    /// Reads a file.
    pub fn read(path: &Path) -> Result<Source> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Source {
            path: path.to_owned(),
            text,
        })
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        (line, column)
    }

    /// Parses the text as `T`, turning a TOML or schema error into
    /// [`Error::Parse`] with the position it names.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        toml::from_str(&self.text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| self.line_col(s.start));
            Error::Parse {
                path: self.path.clone(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })
    }

    fn invalid(&self, span: Range<usize>, field: String, message: String) -> Error {
        let (line, column) = self.line_col(span.start);
        Error::Invalid {
            path: self.path.clone(),
            line,
            column,
            field,
            message,
        }
    }
}

/// All validation problems of one file, reported together.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Invalid(pub Vec<Error>);

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

struct Checker<'a> {
    src: &'a Source,
    errors: Vec<Error>,
    ids: HashSet<String>,
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
        self.errors.push(self.src.invalid(span, field, message));
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

    fn point(&mut self, p: &PointSpec, defaults: &BTreeMap<PointKind, KindDefaults>) -> PointRules {
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
        }
    }
}

impl Checker<'_> {
    /// Checks a unit's voting and correlation against its points (`first`
    /// is the index of its first point).
    fn unit(&mut self, u: &UnitSpec, first: PointIdx, rules: &[PointRules]) -> UnitRules {
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

/// Priority of an alarm when the config does not set one: gas detection's
/// second level is critical and its first high; process HH/LL are high and
/// H/L medium; rate-of-change alarms and predicted-limit early warnings are
/// medium (they come before a limit, with time to act); sensor health
/// (fault, stale, flatline) is high on gas detectors and low (stale:
/// medium) elsewhere.
pub fn default_priority(point: PointKind, kind: AlarmKind) -> Priority {
    let gas = matches!(point, PointKind::CombustibleGas | PointKind::ToxicGas);
    match (gas, kind) {
        (
            _,
            AlarmKind::RateOfChange | AlarmKind::PredictedHighHigh | AlarmKind::PredictedLowLow,
        ) => Priority::Medium,
        // A gas detector that cannot be trusted is lost protection.
        (true, AlarmKind::Fault | AlarmKind::Stale | AlarmKind::Flatline) => Priority::High,
        (false, AlarmKind::Stale) => Priority::Medium,
        (false, AlarmKind::Fault | AlarmKind::Flatline) => Priority::Low,
        (true, AlarmKind::HighHigh) => Priority::Critical,
        (true, _) => Priority::High,
        (false, AlarmKind::HighHigh | AlarmKind::LowLow) => Priority::High,
        (false, _) => Priority::Medium,
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
            ids: HashSet::new(),
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
                    units.push(UnitInfo {
                        id: u.id.get_ref().clone(),
                        name: u.name.clone(),
                        points,
                    });
                }
                hazard_sources.push(HazardSourceInfo {
                    id: hs.id.get_ref().clone(),
                    name: hs.name.clone(),
                    grade,
                    r_value,
                    units,
                });
            }
            enterprises.push(EnterpriseInfo {
                id: e.id.get_ref().clone(),
                name: e.name.clone(),
                hazard_sources,
            });
        }
        if !c.errors.is_empty() {
            return Err(Invalid(c.errors));
        }
        let mut catalog = Catalog::default();
        catalog.extend(metas);
        // Units without points have no index and no alarms.
        let mut units = vec![UnitRules::default(); catalog.unit_count()];
        for (id, r) in unit_rules {
            if let Some(u) = catalog.unit_lookup(&id) {
                units[u as usize] = r;
            }
        }
        // Held for as long as the model runs: no spare capacity.
        for r in &mut rules {
            r.limits.shrink_to_fit();
        }
        rules.shrink_to_fit();
        Ok(SiteModel {
            park_id: spec.park.id.get_ref().clone(),
            park_name: spec.park.name.clone(),
            enterprises,
            catalog: Arc::new(catalog),
            rules: Arc::new(rules),
            units,
        })
    }

    /// Rule parameters of a point.
    pub fn point_rules(&self, idx: PointIdx) -> &PointRules {
        &self.rules[idx as usize]
    }

    /// Number of points.
    pub fn point_count(&self) -> usize {
        self.rules.len()
    }

    /// Renumbers this (reloaded) model onto the catalog of the model that
    /// is running, so every point and unit keeps the index the engine, the
    /// archive and the alarms know it by: points still present keep theirs,
    /// new ones are appended, removed ones are retired (no longer accepted,
    /// no rules, still named). Returns the names of added and removed points.
    pub fn rebase(&mut self, running: &Catalog) -> (Vec<String>, Vec<String>) {
        let mut merged = running.clone();
        let removed: Vec<String> = running
            .iter()
            .filter(|(i, m)| running.is_live(*i) && self.catalog.lookup(&m.id).is_none())
            .map(|(_, m)| m.id.to_string())
            .collect();
        for name in &removed {
            merged.retire(name);
        }
        let added: Vec<String> = self
            .catalog
            .iter()
            .filter(|(_, m)| running.lookup(&m.id).is_none())
            .map(|(_, m)| m.id.to_string())
            .collect();
        merged.extend(self.catalog.iter().map(|(_, m)| m.clone()));
        let to_merged = |p: PointIdx| -> PointIdx {
            let name = &self.catalog.meta(p).id;
            merged
                .lookup(name)
                .expect("every point of the model was just added")
        };
        let mut rules = vec![PointRules::inert(); merged.len()];
        for (p, r) in self.rules.iter().enumerate() {
            rules[to_merged(p as PointIdx) as usize] = r.clone();
        }
        let mut units = vec![UnitRules::default(); merged.unit_count()];
        for (u, r) in self.units.iter().enumerate() {
            let id = &self.catalog.unit(u as UnitIdx).id;
            let Some(m) = merged.unit_lookup(id) else {
                continue;
            };
            let mut r = r.clone();
            if let Some(v) = &mut r.voting {
                v.members = v.members.iter().map(|&p| to_merged(p)).collect();
            }
            if let Some(c) = &mut r.correlation {
                c.temperature = to_merged(c.temperature);
                c.pressure = to_merged(c.pressure);
            }
            units[m as usize] = r;
        }
        for e in &mut self.enterprises {
            for hs in &mut e.hazard_sources {
                for u in &mut hs.units {
                    u.points = u.points.iter().map(|&p| to_merged(p)).collect();
                }
            }
        }
        self.rules = Arc::new(rules);
        self.units = units;
        self.catalog = Arc::new(merged);
        (added, removed)
    }
}
