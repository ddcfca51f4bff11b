//! The catalog: every point the site model knows, with its dense index.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::PointIdx;

/// What a point measures. Decides per-kind defaults (deadband, delays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// Tank or process temperature.
    Temperature,
    /// Liquid level.
    Level,
    /// Tank or line pressure.
    Pressure,
    /// Combustible gas concentration, %LEL.
    CombustibleGas,
    /// Toxic gas concentration, ppm (or mg/m3).
    ToxicGas,
}

impl PointKind {
    /// The snake-case name used in config files and the archive.
    pub fn as_str(self) -> &'static str {
        match self {
            PointKind::Temperature => "temperature",
            PointKind::Level => "level",
            PointKind::Pressure => "pressure",
            PointKind::CombustibleGas => "combustible_gas",
            PointKind::ToxicGas => "toxic_gas",
        }
    }

    /// Every kind, for documentation and error messages.
    pub const ALL: [PointKind; 5] = [
        PointKind::Temperature,
        PointKind::Level,
        PointKind::Pressure,
        PointKind::CombustibleGas,
        PointKind::ToxicGas,
    ];
}

/// Where a point sits in the site and what it measures.
#[derive(Debug, Clone, PartialEq)]
pub struct PointMeta {
    /// Point id, unique in the park, e.g. `T101.LT`.
    pub id: Arc<str>,
    /// Owning enterprise id; only this enterprise's gateways may report it.
    pub enterprise: Arc<str>,
    /// Hazard source id (GB 18218 major hazard source).
    pub hazard_source: Arc<str>,
    /// Unit id (tank, tank farm, process unit).
    pub unit: Arc<str>,
    /// What is measured.
    pub kind: PointKind,
    /// Engineering unit, e.g. `m`, `degC`, `kPa`, `%LEL`, `ppm`.
    pub eng_unit: Arc<str>,
}

impl PointMeta {
    /// Builds a point description from plain strings.
    pub fn new(
        id: &str,
        enterprise: &str,
        hazard_source: &str,
        unit: &str,
        kind: PointKind,
        eng_unit: &str,
    ) -> Self {
        PointMeta {
            id: id.into(),
            enterprise: enterprise.into(),
            hazard_source: hazard_source.into(),
            unit: unit.into(),
            kind,
            eng_unit: eng_unit.into(),
        }
    }
}

/// Every known point, addressable by name or by dense index.
///
/// Indices are assigned in insertion order and never reused, so a reading's
/// [`PointIdx`] stays meaningful for the catalog's whole life.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    points: Vec<PointMeta>,
    by_name: HashMap<Arc<str>, PointIdx>,
    /// Rank of each point in name order, for sorting archive files by point.
    name_rank: Vec<u32>,
}

impl Catalog {
    /// Adds a point and returns its index; an existing name keeps its index
    /// and has its description replaced.
    pub fn insert(&mut self, meta: PointMeta) -> PointIdx {
        let idx = self.put(meta);
        self.rebuild_ranks();
        idx
    }

    /// Adds many points at once (one rank rebuild for all of them).
    pub fn extend(&mut self, metas: impl IntoIterator<Item = PointMeta>) {
        for meta in metas {
            self.put(meta);
        }
        self.rebuild_ranks();
    }

    fn put(&mut self, meta: PointMeta) -> PointIdx {
        if let Some(&idx) = self.by_name.get(&meta.id) {
            self.points[idx as usize] = meta;
            return idx;
        }
        let idx = PointIdx::try_from(self.points.len()).expect("fewer than 2^32 points");
        self.by_name.insert(meta.id.clone(), idx);
        self.points.push(meta);
        idx
    }

    fn rebuild_ranks(&mut self) {
        let mut order: Vec<PointIdx> = (0..self.points.len() as PointIdx).collect();
        order.sort_by(|a, b| {
            self.points[*a as usize]
                .id
                .cmp(&self.points[*b as usize].id)
        });
        self.name_rank = vec![0; self.points.len()];
        for (rank, idx) in order.into_iter().enumerate() {
            self.name_rank[idx as usize] = rank as u32;
        }
    }

    /// The index of a point name, if the point is known.
    pub fn lookup(&self, name: &str) -> Option<PointIdx> {
        self.by_name.get(name).copied()
    }

    /// The description of a point. Panics on an index this catalog did not
    /// hand out, which is a bug, never bad input.
    pub fn meta(&self, idx: PointIdx) -> &PointMeta {
        &self.points[idx as usize]
    }

    /// The description of a point, if the index is known.
    pub fn get(&self, idx: PointIdx) -> Option<&PointMeta> {
        self.points.get(idx as usize)
    }

    /// Rank of the point's name among all names (0 = first in byte order).
    pub fn name_rank(&self, idx: PointIdx) -> u32 {
        self.name_rank[idx as usize]
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no point is known.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// All points with their indices, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (PointIdx, &PointMeta)> {
        self.points
            .iter()
            .enumerate()
            .map(|(i, m)| (i as PointIdx, m))
    }
}
