//! What the rule engine emits: alarm condition changes on points, units,
//! enterprise consoles and gateways.

use serde::{Deserialize, Serialize};

use crate::{ConsoleIdx, GatewayIdx, PointIdx, UnitIdx, pb};

/// What an alarm is about: a point (limits, trends, sensor health), a unit
/// (voting, correlation), an enterprise's console (alarm flood) or a
/// registered gateway (offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlarmSource {
    /// One measured point.
    Point(PointIdx),
    /// A tank, tank farm or process unit.
    Unit(UnitIdx),
    /// An enterprise's control-room console.
    Console(ConsoleIdx),
    /// A registered gateway (its index among the catalog's gateways).
    Gateway(GatewayIdx),
}

/// The condition an alarm stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlarmKind {
    /// Above the high-high limit.
    HighHigh,
    /// Above the high limit.
    High,
    /// Below the low limit.
    Low,
    /// Below the low-low limit.
    LowLow,
    /// Changing faster than the configured rate.
    RateOfChange,
    /// Early warning: the trend reaches HH within the horizon.
    PredictedHighHigh,
    /// Early warning: the trend reaches LL within the horizon.
    PredictedLowLow,
    /// Sensor fault: bad quality or outside the instrument range.
    Fault,
    /// Communication loss: no reading for the configured time.
    Stale,
    /// Frozen sensor: value unchanged for the configured time.
    Flatline,
    /// Unit: k of its N gas detectors are at the first alarm level (a
    /// confirmed leak).
    Voting,
    /// Unit: temperature and pressure rising beyond their rate limits
    /// together (runaway reaction or heating).
    Correlation,
    /// Console: an alarm flood (EEMUA 191: more than 10 alarms in 10
    /// minutes, over when under 5).
    Flood,
    /// Point or unit: its alarms are chattering (3 or more raises in a
    /// minute).
    Chattering,
    /// Gateway: offline (silent beyond its `offline_after_s`, or its last
    /// will): every point it reports is unmonitored.
    Offline,
    /// Early warning: the point has drifted from its learned normal
    /// operation (`deviation` on a point, a model from `hazardwatch learn`).
    Deviation,
    /// Unit: early warning, its points move unlike its learned normal
    /// operation (`multivariate` on a unit: T² or SPE of its PCA model).
    Multivariate,
}

impl AlarmKind {
    /// Short tag used in alarm ids and on screen: `HH`, `H`, `L`, `LL`,
    /// `ROC` (rate of change), `PHH`/`PLL` (predicted HH/LL), `FAULT`,
    /// `STALE`, `FLAT`, on units and consoles `VOTE`, `CORR`, `FLOOD`,
    /// `CHAT`, and on gateways `OFFLINE`; `DEV` (deviation from normal
    /// operation) on points, `MV` (multivariate) on units.
    pub fn tag(self) -> &'static str {
        match self {
            AlarmKind::HighHigh => "HH",
            AlarmKind::High => "H",
            AlarmKind::Low => "L",
            AlarmKind::LowLow => "LL",
            AlarmKind::RateOfChange => "ROC",
            AlarmKind::PredictedHighHigh => "PHH",
            AlarmKind::PredictedLowLow => "PLL",
            AlarmKind::Fault => "FAULT",
            AlarmKind::Stale => "STALE",
            AlarmKind::Flatline => "FLAT",
            AlarmKind::Voting => "VOTE",
            AlarmKind::Correlation => "CORR",
            AlarmKind::Flood => "FLOOD",
            AlarmKind::Chattering => "CHAT",
            AlarmKind::Offline => "OFFLINE",
            AlarmKind::Deviation => "DEV",
            AlarmKind::Multivariate => "MV",
        }
    }

    /// False for the alarm-system conditions (flood, chattering) that are
    /// reported for information and need no acknowledgement.
    pub fn needs_ack(self) -> bool {
        !matches!(self, AlarmKind::Flood | AlarmKind::Chattering)
    }

    /// Parses a tag as produced by [`AlarmKind::tag`].
    pub fn from_tag(tag: &str) -> Option<AlarmKind> {
        match tag {
            "HH" => Some(AlarmKind::HighHigh),
            "H" => Some(AlarmKind::High),
            "L" => Some(AlarmKind::Low),
            "LL" => Some(AlarmKind::LowLow),
            "ROC" => Some(AlarmKind::RateOfChange),
            "PHH" => Some(AlarmKind::PredictedHighHigh),
            "PLL" => Some(AlarmKind::PredictedLowLow),
            "FAULT" => Some(AlarmKind::Fault),
            "STALE" => Some(AlarmKind::Stale),
            "FLAT" => Some(AlarmKind::Flatline),
            "VOTE" => Some(AlarmKind::Voting),
            "CORR" => Some(AlarmKind::Correlation),
            "FLOOD" => Some(AlarmKind::Flood),
            "CHAT" => Some(AlarmKind::Chattering),
            "OFFLINE" => Some(AlarmKind::Offline),
            "DEV" => Some(AlarmKind::Deviation),
            "MV" => Some(AlarmKind::Multivariate),
            _ => None,
        }
    }
}

impl From<AlarmKind> for pb::AlarmKind {
    fn from(k: AlarmKind) -> Self {
        match k {
            AlarmKind::HighHigh => pb::AlarmKind::HighHigh,
            AlarmKind::High => pb::AlarmKind::High,
            AlarmKind::Low => pb::AlarmKind::Low,
            AlarmKind::LowLow => pb::AlarmKind::LowLow,
            AlarmKind::RateOfChange => pb::AlarmKind::RateOfChange,
            AlarmKind::PredictedHighHigh => pb::AlarmKind::PredictedHighHigh,
            AlarmKind::PredictedLowLow => pb::AlarmKind::PredictedLowLow,
            AlarmKind::Fault => pb::AlarmKind::Fault,
            AlarmKind::Stale => pb::AlarmKind::Stale,
            AlarmKind::Flatline => pb::AlarmKind::Flatline,
            AlarmKind::Voting => pb::AlarmKind::Voting,
            AlarmKind::Correlation => pb::AlarmKind::Correlation,
            AlarmKind::Flood => pb::AlarmKind::Flood,
            AlarmKind::Chattering => pb::AlarmKind::Chattering,
            AlarmKind::Offline => pb::AlarmKind::Offline,
            AlarmKind::Deviation => pb::AlarmKind::Deviation,
            AlarmKind::Multivariate => pb::AlarmKind::Multivariate,
        }
    }
}

/// Alarm priority (ISA-18.2): what response the operator owes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Advisory; respond within the shift.
    Low,
    /// Respond within minutes.
    #[default]
    Medium,
    /// Respond at once.
    High,
    /// Immediate danger to life or plant.
    Critical,
}

impl Priority {
    /// Lower-case name, as in config files and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

impl From<Priority> for pb::Priority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Low => pb::Priority::Low,
            Priority::Medium => pb::Priority::Medium,
            Priority::High => pb::Priority::High,
            Priority::Critical => pb::Priority::Critical,
        }
    }
}

impl From<pb::Priority> for Option<Priority> {
    /// `Unspecified` maps to `None` (no minimum).
    fn from(p: pb::Priority) -> Self {
        match p {
            pb::Priority::Unspecified => None,
            pb::Priority::Low => Some(Priority::Low),
            pb::Priority::Medium => Some(Priority::Medium),
            pb::Priority::High => Some(Priority::High),
            pb::Priority::Critical => Some(Priority::Critical),
        }
    }
}

/// A change of an alarm condition, decided by the rule engine in event time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuleEvent {
    /// What the condition is about.
    pub source: AlarmSource,
    /// Which condition.
    pub kind: AlarmKind,
    /// True when the condition became active, false when it returned to normal.
    pub active: bool,
    /// Event time of the change, Unix ms (the reading's time, or the time an
    /// on/off delay ran out).
    pub ts_ms: i64,
    /// The value that decided the change.
    pub value: f64,
    /// The limit involved.
    pub limit: f64,
    /// Priority configured for this condition.
    pub priority: Priority,
    /// For predicted-limit warnings: when the trend reaches the limit (ms).
    pub predicted_ms: Option<i64>,
    /// A latching alarm (gas detection): once raised it stays until an
    /// operator resets it, even after the condition clears.
    pub latch: bool,
    /// Suppressed by design: the source's unit is stopped or under overhaul.
    /// Evaluated and recorded, not annunciated.
    pub suppressed: bool,
    /// Judged after the fact: from readings that arrived later than the
    /// lateness bound (a gateway's buffered readings after an outage).
    pub backfilled: bool,
    /// For multivariate warnings: the points contributing most, largest
    /// first.
    pub contributors: [Option<PointIdx>; 2],
}

impl RuleEvent {
    /// An event with no predicted time, not latching, not suppressed.
    pub fn new(
        source: AlarmSource,
        kind: AlarmKind,
        active: bool,
        ts_ms: i64,
        value: f64,
        limit: f64,
        priority: Priority,
    ) -> Self {
        RuleEvent {
            source,
            kind,
            active,
            ts_ms,
            value,
            limit,
            priority,
            predicted_ms: None,
            latch: false,
            suppressed: false,
            backfilled: false,
            contributors: [None; 2],
        }
    }

    /// A total order for deterministic output: event time, source, kind,
    /// then raise before clear.
    pub fn order_key(&self) -> (i64, AlarmSource, AlarmKind, bool) {
        (self.ts_ms, self.source, self.kind, !self.active)
    }

    /// The point, for events about a point.
    pub fn point(&self) -> Option<PointIdx> {
        match self.source {
            AlarmSource::Point(p) => Some(p),
            _ => None,
        }
    }
}
