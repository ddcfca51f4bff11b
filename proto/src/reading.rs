//! Readings: one measured value of one point at one event time.

use serde::{Deserialize, Serialize};

use crate::pb;

/// Dense index of a point in the [`crate::Catalog`]. Readings carry this
/// instead of the point's name so the dataflow moves 24-byte `Copy` records.
pub type PointIdx = u32;

/// Dense index of a unit in the [`crate::Catalog`].
pub type UnitIdx = u32;

/// Dense index of an enterprise's console in the [`crate::Catalog`].
pub type ConsoleIdx = u32;

/// Quality of a measurement, as the gateway judged it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum Quality {
    /// A valid measurement.
    #[default]
    Good,
    /// Usable with caution (e.g. sensor in calibration drift).
    Uncertain,
    /// Not a measurement of the process (sensor fault, wire break).
    Bad,
    /// Not a measurement at all: the point's gateway announced it went
    /// offline (its MQTT `status` topic, usually the last will). Made by the
    /// service, never accepted from a gateway; the value is NaN. Archived
    /// like any reading so that replay sees the same communication loss.
    Offline,
    /// Not a measurement at all: the service began expecting the point here
    /// (at its start, or when a reload added the point), so a point never
    /// heard from goes stale `stale_s` later like one that fell silent.
    /// Made by the service, never accepted from a gateway; the value is
    /// NaN; archived so that replay expects the point from the same time.
    Expected,
}

impl Quality {
    /// Every quality, as archived.
    pub const ALL: [Quality; 5] = [
        Quality::Good,
        Quality::Uncertain,
        Quality::Bad,
        Quality::Offline,
        Quality::Expected,
    ];

    /// The lower-case name used in JSON payloads and the archive.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Uncertain => "uncertain",
            Quality::Bad => "bad",
            Quality::Offline => "offline",
            Quality::Expected => "expected",
        }
    }

    /// True for a measurement of the process that the limit and trend rules
    /// may judge (good or uncertain); false for bad quality and offline
    /// markers.
    ///
    /// Markers ([`Quality::Offline`], [`Quality::Expected`]) are the
    /// service's own and carry no value.
    pub fn is_process_value(self) -> bool {
        matches!(self, Quality::Good | Quality::Uncertain)
    }

    /// True for the service's own markers ([`Quality::Offline`],
    /// [`Quality::Expected`]): rows that are not measurements.
    pub fn is_marker(self) -> bool {
        matches!(self, Quality::Offline | Quality::Expected)
    }

    /// Parses the JSON name (`good`, `uncertain`, `bad`), case-insensitively.
    /// `offline` is not accepted: only the service makes offline markers.
    pub fn parse(s: &str) -> Option<Quality> {
        if s.eq_ignore_ascii_case("good") {
            Some(Quality::Good)
        } else if s.eq_ignore_ascii_case("uncertain") {
            Some(Quality::Uncertain)
        } else if s.eq_ignore_ascii_case("bad") {
            Some(Quality::Bad)
        } else {
            None
        }
    }
}

impl From<pb::Quality> for Quality {
    fn from(q: pb::Quality) -> Self {
        match q {
            pb::Quality::Unspecified | pb::Quality::Good => Quality::Good,
            pb::Quality::Uncertain => Quality::Uncertain,
            pb::Quality::Bad => Quality::Bad,
            // Only the service makes offline markers: decoding refuses
            // this one from a gateway (see `Quality::parse`).
            pb::Quality::Offline => Quality::Offline,
            pb::Quality::Expected => Quality::Expected,
        }
    }
}

impl From<Quality> for pb::Quality {
    fn from(q: Quality) -> Self {
        match q {
            Quality::Good => pb::Quality::Good,
            Quality::Uncertain => pb::Quality::Uncertain,
            Quality::Bad => pb::Quality::Bad,
            Quality::Offline => pb::Quality::Offline,
            Quality::Expected => pb::Quality::Expected,
        }
    }
}

/// One validated measurement inside the service.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The point, as an index into the catalog.
    pub point: PointIdx,
    /// Event time: the gateway's timestamp, Unix milliseconds.
    pub ts_ms: i64,
    /// Value in the point's engineering unit; finite, except NaN in
    /// [`Quality::Offline`] markers.
    pub value: f64,
    /// The gateway's quality flag.
    pub quality: Quality,
}

impl Reading {
    /// A total order used wherever readings must be processed in a
    /// deterministic order: point, event time, then value bits and quality
    /// (so even two readings of one point at one millisecond have one order).
    pub fn order_key(&self) -> (PointIdx, i64, u64, Quality) {
        (self.point, self.ts_ms, self.value.to_bits(), self.quality)
    }
}
