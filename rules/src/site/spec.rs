//! What the TOML file says: the site model as written, before validation
//! (see [`super::check`] for what makes it invalid and [`super::model`]
//! for what the engine runs on).

use std::collections::BTreeMap;

use hazardwatch_proto::{PointKind, Priority};
use serde::Deserialize;
use toml::Spanned;

/// The park: the top of the site model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkSpec {
    /// Park id, e.g. `NJCP`.
    pub id: Spanned<String>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The site plan the console's map is drawn on: an SVG, PNG, JPEG or
    /// WebP file (its path relative to this file) and its size in the
    /// units of the hazard sources' `position = { x, y }`.
    #[serde(default)]
    pub plan: Option<Spanned<PlanSpec>>,
    /// The models of normal operation (`hazardwatch learn --out`), relative
    /// to this file.
    #[serde(default)]
    pub models: Option<Spanned<std::path::PathBuf>>,
    /// `deviation = { ... }` for every point the models file has a model
    /// of (a point's own setting wins).
    #[serde(default)]
    pub deviation: Option<Spanned<DeviationSpec>>,
    /// `multivariate = { ... }` for every unit the models file has a
    /// model of (a unit's own setting wins).
    #[serde(default)]
    pub multivariate: Option<Spanned<DeviationSpec>>,
}

/// `[park] plan = { file = "site-plan.svg", width = 1000, height = 600 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// The drawing, relative to the configuration file.
    pub file: std::path::PathBuf,
    /// Its width, in position units.
    pub width: f64,
    /// Its height, in position units.
    pub height: f64,
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
    /// The enterprise's gateways: the registry of devices allowed to
    /// report its points (see [`GatewaySpec`]).
    #[serde(default)]
    pub gateway: Vec<GatewaySpec>,
}

/// One gateway of an enterprise: the device that reports some of its points
/// over MQTT, as `{prefix}/{enterprise}/{id}/...`. Once any gateway is
/// registered, every point of the park must be reported by exactly one, and
/// only registered gateways may connect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// Gateway id: its topic segment, MQTT client id and user name.
    pub id: Spanned<String>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Units whose every point this gateway reports.
    #[serde(default)]
    pub units: Vec<Spanned<String>>,
    /// Single points this gateway reports (besides its `units`).
    #[serde(default)]
    pub points: Vec<Spanned<String>>,
    /// How often the gateway reports each of its points, seconds: the
    /// basis of its data completeness and of its silence timeout.
    pub interval_s: Spanned<f64>,
    /// Silence after which the gateway is offline, seconds (default three
    /// intervals, at least 10 s).
    pub offline_after_s: Option<Spanned<f64>>,
    /// Its password, as an argon2id PHC string (`$argon2id$v=19$...`), made
    /// with `hazardwatch gateway hash-password`. Never the password itself.
    pub password_hash: Option<Spanned<String>>,
    /// The common name (CN) of its client certificate, for mutual TLS.
    pub cert_cn: Option<Spanned<String>>,
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
    /// Where it is drawn on the park map: `{ x = .., y = .. }` on the site
    /// plan, or `{ lon = .., lat = .. }` (WGS 84 degrees). Every hazard
    /// source of a park uses the same one of the two.
    #[serde(default)]
    pub position: Option<Spanned<PositionSpec>>,
    /// Its camera feed (`https://`, `http://` or `rtsp://`), linked from
    /// the console's detail of the hazard source.
    #[serde(default)]
    pub camera: Option<Spanned<String>>,
}

/// A place on the park map as written: `x` and `y` on the site plan, or
/// `lon` and `lat`; exactly one of the pairs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionSpec {
    /// Across the site plan, in its units.
    pub x: Option<f64>,
    /// Down the site plan, in its units.
    pub y: Option<f64>,
    /// Longitude, degrees east.
    pub lon: Option<f64>,
    /// Latitude, degrees north.
    pub lat: Option<f64>,
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
    /// Its points moving unlike its learned normal operation, e.g.
    /// `multivariate = { priority = "medium" }` (needs `[park] models`).
    pub multivariate: Option<Spanned<DeviationSpec>>,
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
    /// Deviation from learned normal operation, e.g. `deviation = {
    /// priority = "low", persistence = [3, 5] }` (needs `[park] models`).
    pub deviation: Option<Spanned<DeviationSpec>>,
}

/// `deviation = { ... }` on a point, and `multivariate = { ... }` on a
/// unit: a pre-alarm judged against a learned model.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviationSpec {
    /// The pre-alarm's priority: `low` (the default) or `medium`.
    pub priority: Option<Priority>,
    /// `[k, n]`: raised when the CUSUM is past its decision interval in k
    /// of the last n grid cells (default `[3, 5]`).
    pub persistence: Option<[u32; 2]>,
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
