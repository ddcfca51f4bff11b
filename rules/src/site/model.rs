//! What the engine runs on: the validated site model, every default
//! filled in (made by [`super::check`] from [`super::spec`]).

use std::sync::Arc;

use hazardwatch_proto::{AlarmKind, Catalog, PointIdx, PointKind, Priority, UnitIdx};

use super::spec::UnitState;
use hazardwatch_proto::Registry;

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

/// Defaults used when neither the point nor `[defaults.KIND]` says otherwise.
///
/// Deadbands follow EEMUA 191's guidance (temperature 1 %, level, pressure
/// and other measurements 2 % of span); delays follow ISA-18.2's typical
/// values (15 s for temperature, 5 s for the others). Gas detection must annunciate at
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
        PointKind::Level | PointKind::Pressure | PointKind::Measurement => KindDefaults {
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
    /// Deviation from learned normal operation, when configured (boxed:
    /// most points have none, and every point's rules are held for as long
    /// as the model runs).
    pub deviation: Option<Box<DeviationRules>>,
    /// The limit alarms latch until reset (gas detection).
    pub latch: bool,
}

/// Every point's rule parameters, by [`PointIdx`], each distinct set held
/// once. A park's points mostly share their kind's defaults and a few sets
/// of limits (every combustible gas detector alarms at the same %LEL), so
/// a point costs 4 bytes here, not the 200 of its own [`PointRules`]; a
/// point with parameters of its own (a learned deviation model) still has
/// them whole.
#[derive(Debug, Clone, Default)]
pub struct PointRulesTable {
    /// The distinct parameter sets.
    sets: Vec<PointRules>,
    /// By point: its set in `sets`.
    of: Vec<u32>,
}

impl PointRulesTable {
    /// A point's parameters.
    pub fn get(&self, point: usize) -> Option<&PointRules> {
        let &set = self.of.get(point)?;
        self.sets.get(set as usize)
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.of.len()
    }

    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }

    /// Number of distinct parameter sets.
    pub fn distinct(&self) -> usize {
        self.sets.len()
    }

    /// Every point's parameters, by point.
    pub fn iter(&self) -> impl Iterator<Item = &PointRules> {
        self.of.iter().map(|&set| &self.sets[set as usize])
    }
}

impl FromIterator<PointRules> for PointRulesTable {
    fn from_iter<I: IntoIterator<Item = PointRules>>(points: I) -> Self {
        let mut table = PointRulesTable::default();
        // Sets by a hash of their cheap fields; equal sets share a bucket,
        // and within one `==` decides.
        let mut buckets: std::collections::HashMap<u64, Vec<u32>> = Default::default();
        for rules in points {
            let bucket = buckets.entry(rules.fingerprint()).or_default();
            let set = match bucket.iter().find(|&&s| table.sets[s as usize] == rules) {
                Some(&s) => s,
                None => {
                    let s = u32::try_from(table.sets.len())
                        .expect("fewer parameter sets than points, and points are u32");
                    let mut rules = rules;
                    rules.limits.shrink_to_fit();
                    table.sets.push(rules);
                    bucket.push(s);
                    s
                }
            };
            table.of.push(set);
        }
        // Held for as long as the model runs: no spare capacity.
        table.sets.shrink_to_fit();
        table.of.shrink_to_fit();
        table
    }
}

impl PointRules {
    /// A hash of the fields that tell parameter sets apart (equal sets
    /// have equal fingerprints; `NaN`s and `-0.0` only cost sharing).
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let f = |x: f64| x.to_bits();
        (f(self.range.0), f(self.range.1), f(self.deadband)).hash(&mut h);
        for l in &self.limits {
            (l.kind.tag(), f(l.value), l.priority as u8).hash(&mut h);
        }
        (
            self.on_delay_ms,
            self.off_delay_ms,
            self.stale_ms,
            self.latch,
        )
            .hash(&mut h);
        self.flatline.map(|r| (r.after_ms, f(r.band))).hash(&mut h);
        self.roc
            .map(|r| (f(r.limit_per_s), r.window_ms))
            .hash(&mut h);
        self.predict
            .map(|r| (r.horizon_ms, r.window_ms))
            .hash(&mut h);
        self.deviation
            .as_ref()
            .map(|d| (f(d.robust.centre), f(d.robust.spread)))
            .hash(&mut h);
        h.finish()
    }
}

/// Validated deviation parameters: the point's learned model and the
/// pre-alarm's persistence and priority.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviationRules {
    /// The learned centre and spread of the grid means.
    pub robust: crate::monitor::Robust,
    /// The CUSUM on the one-step prediction errors of the standardised
    /// grid means.
    pub cusum: crate::monitor::Cusum,
    /// The means' lag-1 autocorrelation.
    pub ar1: crate::monitor::Ar1,
    /// The grid, ms of event time.
    pub grid_ms: i64,
    /// Raised when the CUSUM signals in `k` of the last `n` cells.
    pub k: u32,
    /// The persistence window, grid cells (at most 32).
    pub n: u32,
    /// The pre-alarm's priority.
    pub priority: Priority,
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
            deviation: None,
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
    /// Multivariate monitoring against the unit's learned model, when
    /// configured.
    pub multivariate: Option<Box<MultivariateRules>>,
}

/// Validated multivariate parameters of a unit: its learned PCA model, the
/// points in the model's order, and the pre-alarm's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MultivariateRules {
    /// The model.
    pub pca: crate::monitor::Pca,
    /// The model's variables, as points.
    pub points: Vec<PointIdx>,
    /// The grid, ms of event time.
    pub grid_ms: i64,
    /// Raised when T² or SPE is past its limit in `k` of the last `n` cells.
    pub k: u32,
    /// The persistence window, grid cells (at most 32).
    pub n: u32,
    /// The pre-alarm's priority.
    pub priority: Priority,
    /// A cell with more points than this without a value is not judged (a
    /// quarter of the points; their stale alarms say which are silent).
    pub max_missing: usize,
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
    /// Where it is drawn on the park map.
    pub position: Option<Position>,
    /// Its camera feed's address.
    pub camera: Option<String>,
}

/// The drawing of the site the map is drawn on.
#[derive(Debug, Clone, PartialEq)]
pub struct SitePlan {
    /// The file (checked to exist, of a known image type, at most
    /// [`SitePlan::MAX_BYTES`]).
    pub file: std::path::PathBuf,
    /// Its width and height in position units.
    pub size: (f64, f64),
}

impl SitePlan {
    /// The largest drawing accepted.
    pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

    /// The image types accepted, by extension, with their media types.
    pub const TYPES: [(&'static str, &'static str); 5] = [
        ("svg", "image/svg+xml"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("webp", "image/webp"),
    ];

    /// The media type of the file.
    pub fn media_type(&self) -> &'static str {
        let ext = self
            .file
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Self::TYPES
            .iter()
            .find(|(e, _)| *e == ext)
            .map_or("application/octet-stream", |(_, t)| t)
    }
}

/// A place on the park map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Position {
    /// On the site plan, in its units (y down).
    Plan {
        /// Across.
        x: f64,
        /// Down.
        y: f64,
    },
    /// On the earth, WGS 84 degrees.
    Geo {
        /// Longitude, east.
        lon: f64,
        /// Latitude, north.
        lat: f64,
    },
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
    /// The site plan the map is drawn on, if the park has one.
    pub plan: Option<SitePlan>,
    /// The models of normal operation, if the park names a file of them
    /// (checked to match its points and units).
    pub models: Option<Arc<crate::monitor::Models>>,
    /// Enterprises, in file order.
    pub enterprises: Vec<EnterpriseInfo>,
    /// Every point, by name and index; shared with ingest, the archive
    /// and the alarm hub rather than copied (each copy would cost about
    /// 150 bytes per point).
    pub catalog: Arc<Catalog>,
    /// Rule parameters, indexed by [`PointIdx`]; shared with the engine's
    /// [`crate::rule_set::RuleSet`].
    pub rules: Arc<PointRulesTable>,
    /// Unit rules, indexed by [`UnitIdx`] (the catalog's unit numbering).
    pub units: Vec<UnitRules>,
    /// The gateways allowed to report the points; shared with ingest and
    /// the broker (empty: open mode).
    pub registry: Arc<Registry>,
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
        // Configured per point; this is for a withdrawn rule's clear.
        (_, AlarmKind::Deviation) => Priority::Low,
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
    /// Rule parameters of a point.
    pub fn point_rules(&self, idx: PointIdx) -> &PointRules {
        self.rules
            .get(idx as usize)
            .expect("a point of the catalog has rules")
    }

    /// Number of points.
    pub fn point_count(&self) -> usize {
        self.rules.len()
    }

    /// Every unit of every enterprise's hazard sources, in file order.
    pub fn units(&self) -> impl Iterator<Item = &UnitInfo> {
        self.enterprises
            .iter()
            .flat_map(|e| e.hazard_sources.iter())
            .flat_map(|h| h.units.iter())
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
            .filter(|(i, m)| running.is_live(*i) && self.catalog.lookup(m.id).is_none())
            .map(|(_, m)| m.id.to_string())
            .collect();
        for name in &removed {
            merged.retire(name);
        }
        let added: Vec<String> = self
            .catalog
            .iter()
            .filter(|(_, m)| running.lookup(m.id).is_none())
            .map(|(_, m)| m.id.to_string())
            .collect();
        merged.extend(self.catalog.iter().map(|(_, m)| m.to_meta()));
        // Gateways keep their alarm-source index too; removed ones stay
        // named (their alarms end with the rules that no longer have them).
        for (id, enterprise) in self.catalog.gateways() {
            merged.insert_gateway(id, enterprise);
        }
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
        let rules: PointRulesTable = rules.into_iter().collect();
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
        self.registry = Arc::new(self.registry.renumbered(merged.len(), to_merged));
        self.rules = Arc::new(rules);
        self.units = units;
        self.catalog = Arc::new(merged);
        (added, removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_with_equal_parameters_share_one_set() {
        let limit = |value| Limit {
            kind: AlarmKind::High,
            value,
            priority: Priority::Medium,
        };
        let with = |value, stale_ms| PointRules {
            limits: vec![limit(value)],
            stale_ms,
            ..PointRules::inert()
        };
        let points = [
            with(18.0, Some(60_000)),
            with(18.0, Some(60_000)),
            with(19.0, Some(60_000)),
            with(18.0, None),
            with(18.0, Some(60_000)),
        ];
        let table: PointRulesTable = points.iter().cloned().collect();
        assert_eq!((table.len(), table.distinct()), (5, 3));
        for (p, rules) in points.iter().enumerate() {
            assert_eq!(table.get(p), Some(rules));
        }
        assert!(table.iter().eq(points.iter()));
        assert_eq!(table.get(5), None);
    }
}
