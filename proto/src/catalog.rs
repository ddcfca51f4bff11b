//! The catalog: every point the site model knows, with its dense index.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use serde::{Deserialize, Serialize};

use crate::{AlarmSource, ConsoleIdx, GatewayIdx, PointIdx, UnitIdx};

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
    /// Any other process measurement, in its configured engineering unit
    /// and range: a flow, a valve position, a cooling-water temperature, a
    /// compressor's power. What a unit's statistical model needs beside
    /// its tank's temperature, level and pressure; limits are optional.
    Measurement,
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
            PointKind::Measurement => "measurement",
        }
    }

    /// Every kind, for documentation and error messages.
    pub const ALL: [PointKind; 6] = [
        PointKind::Temperature,
        PointKind::Level,
        PointKind::Pressure,
        PointKind::CombustibleGas,
        PointKind::ToxicGas,
        PointKind::Measurement,
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

/// A point as the catalog describes it: [`PointMeta`]'s fields, borrowed
/// from the catalog's compact tables (its id from one string of all ids,
/// its place from its unit's description).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointView<'a> {
    /// Point id, unique in the park, e.g. `T101.LT`.
    pub id: &'a str,
    /// Owning enterprise id.
    pub enterprise: &'a str,
    /// Hazard source id.
    pub hazard_source: &'a str,
    /// Unit id.
    pub unit: &'a str,
    /// What is measured.
    pub kind: PointKind,
    /// Engineering unit.
    pub eng_unit: &'a str,
}

impl PointView<'_> {
    /// An owned copy, to insert into another catalog.
    pub fn to_meta(&self) -> PointMeta {
        PointMeta::new(
            self.id,
            self.enterprise,
            self.hazard_source,
            self.unit,
            self.kind,
            self.eng_unit,
        )
    }
}

/// A unit (tank, tank farm, process unit): the source of voting and
/// correlation alarms.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitMeta {
    /// Unit id, unique in the park.
    pub id: Arc<str>,
    /// Owning enterprise.
    pub enterprise: Arc<str>,
    /// Hazard source it belongs to.
    pub hazard_source: Arc<str>,
    /// The enterprise's console.
    pub console: ConsoleIdx,
}

/// Every known point, addressable by name or by dense index, with the units
/// and enterprise consoles the points belong to.
///
/// Indices are assigned in insertion order and never reused, so a reading's
/// [`PointIdx`] stays meaningful for the catalog's whole life. Units and
/// consoles (one per enterprise) are numbered as their first point arrives.
///
/// A point costs its id's bytes and about 25 more: ids are held in one
/// string, the rest in a column per field, and the name index holds point
/// indices only (a million points, each with its own strings and hash
/// entry, cost about 150 bytes each and scattered the heap).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Every point's id, one after another.
    names: String,
    /// By point: where its id ends in `names` (it starts where the one
    /// before it ends).
    name_ends: Vec<u32>,
    /// By point: what it measures.
    kinds: Vec<PointKind>,
    /// By point: its engineering unit, in `eng_units`.
    eng_unit_of: Vec<u32>,
    /// The engineering units named, each once.
    eng_units: Vec<Arc<str>>,
    eng_unit_by_name: HashMap<Arc<str>, u32>,
    /// Live points by id: their indices, found by hashing the id in
    /// `names` (with `hasher`: keyed, as ids come from gateways).
    by_name: HashTable<PointIdx>,
    hasher: RandomState,
    /// Rank of each point in name order, for sorting archive files by point.
    name_rank: Vec<u32>,
    /// Unit of each point.
    point_unit: Vec<UnitIdx>,
    units: Vec<UnitMeta>,
    unit_by_name: HashMap<Arc<str>, UnitIdx>,
    /// Enterprise id of each console.
    consoles: Vec<Arc<str>>,
    console_by_name: HashMap<Arc<str>, ConsoleIdx>,
    /// Registered gateways as alarm sources (`{gateway}/OFFLINE`): id and
    /// enterprise, numbered in the order they were first registered and
    /// kept when a reload removes them, like points.
    gateways: Vec<(Arc<str>, Arc<str>)>,
    gateway_by_name: HashMap<Arc<str>, GatewayIdx>,
    /// Points removed from the site model by a reload: still described
    /// (their archived readings and alarms keep their names), no longer
    /// looked up, and given their old index back if they return.
    retired: HashMap<Arc<str>, PointIdx>,
    /// The enterprise, hazard source and unit strings, each held once and
    /// shared by every unit that names it.
    strings: HashSet<Arc<str>>,
}

impl Catalog {
    /// Adds a point and returns its index; an existing name keeps its index
    /// and has its description replaced. A unit is in one enterprise and
    /// hazard source (the site model's ids are unique in the park): the
    /// latest point that names it places it for all its points.
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
        // Held for as long as the model runs: no spare capacity.
        self.names.shrink_to_fit();
        self.name_ends.shrink_to_fit();
        self.kinds.shrink_to_fit();
        self.eng_unit_of.shrink_to_fit();
        self.point_unit.shrink_to_fit();
        let hasher = &self.hasher;
        let (names, ends) = (&self.names, &self.name_ends);
        self.by_name
            .shrink_to_fit(|&p| hasher.hash_one(name_of(names, ends, p)));
        self.rebuild_ranks();
    }

    /// The shared copy of `s`.
    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        match self.strings.get(&**s) {
            Some(shared) => shared.clone(),
            None => {
                self.strings.insert(s.clone());
                s.clone()
            }
        }
    }

    /// The live point named `name`.
    fn find(&self, name: &str) -> Option<PointIdx> {
        let (names, ends) = (&self.names, &self.name_ends);
        self.by_name
            .find(self.hasher.hash_one(name), |&p| {
                name_of(names, ends, p) == name
            })
            .copied()
    }

    /// Makes point `idx` findable by its id.
    fn index_name(&mut self, idx: PointIdx) {
        let hasher = &self.hasher;
        let (names, ends) = (&self.names, &self.name_ends);
        let hash = hasher.hash_one(name_of(names, ends, idx));
        self.by_name
            .insert_unique(hash, idx, |&p| hasher.hash_one(name_of(names, ends, p)));
    }

    fn put(&mut self, mut meta: PointMeta) -> PointIdx {
        meta.enterprise = self.intern(&meta.enterprise);
        meta.hazard_source = self.intern(&meta.hazard_source);
        meta.unit = self.intern(&meta.unit);
        let unit = self.unit_for(&meta);
        let eng_unit = match self.eng_unit_by_name.get(&meta.eng_unit) {
            Some(&e) => e,
            None => {
                let e = u32::try_from(self.eng_units.len()).expect("fewer than 2^32 units");
                self.eng_units.push(meta.eng_unit.clone());
                self.eng_unit_by_name.insert(meta.eng_unit.clone(), e);
                e
            }
        };
        if let Some(idx) = self.retired.remove(&meta.id) {
            self.index_name(idx);
        }
        if let Some(idx) = self.find(&meta.id) {
            let i = idx as usize;
            self.kinds[i] = meta.kind;
            self.eng_unit_of[i] = eng_unit;
            self.point_unit[i] = unit;
            return idx;
        }
        let idx = PointIdx::try_from(self.name_ends.len()).expect("fewer than 2^32 points");
        self.names.push_str(&meta.id);
        self.name_ends
            .push(u32::try_from(self.names.len()).expect("point ids of fewer than 4 GiB in all"));
        self.kinds.push(meta.kind);
        self.eng_unit_of.push(eng_unit);
        self.point_unit.push(unit);
        self.index_name(idx);
        idx
    }

    /// The index of the point's unit (and of its enterprise's console),
    /// numbering them when new.
    fn unit_for(&mut self, meta: &PointMeta) -> UnitIdx {
        let console = match self.console_by_name.get(&meta.enterprise) {
            Some(&c) => c,
            None => {
                let c = self.consoles.len() as ConsoleIdx;
                self.consoles.push(meta.enterprise.clone());
                self.console_by_name.insert(meta.enterprise.clone(), c);
                c
            }
        };
        let unit = UnitMeta {
            id: meta.unit.clone(),
            enterprise: meta.enterprise.clone(),
            hazard_source: meta.hazard_source.clone(),
            console,
        };
        match self.unit_by_name.get(&meta.unit) {
            Some(&u) => {
                self.units[u as usize] = unit;
                u
            }
            None => {
                let u = self.units.len() as UnitIdx;
                self.unit_by_name.insert(meta.unit.clone(), u);
                self.units.push(unit);
                u
            }
        }
    }

    fn rebuild_ranks(&mut self) {
        let mut order: Vec<PointIdx> = (0..self.len() as PointIdx).collect();
        order.sort_by_key(|&p| self.name(p));
        self.name_rank = vec![0; self.len()];
        for (rank, idx) in order.into_iter().enumerate() {
            self.name_rank[idx as usize] = rank as u32;
        }
    }

    /// Retires a point (see [`Catalog`]'s `retired`): [`Catalog::lookup`] no
    /// longer finds it, [`Catalog::meta`] still describes it.
    pub fn retire(&mut self, name: &str) {
        let (names, ends) = (&self.names, &self.name_ends);
        let found = self.by_name.find_entry(self.hasher.hash_one(name), |&p| {
            name_of(names, ends, p) == name
        });
        if let Ok(entry) = found {
            let (idx, _) = entry.remove();
            self.retired.insert(Arc::from(name), idx);
        }
    }

    /// True when the point is in the site model (not retired).
    pub fn is_live(&self, idx: PointIdx) -> bool {
        (idx as usize) < self.len() && self.find(self.name(idx)) == Some(idx)
    }

    /// The index of a point name, if the point is known.
    pub fn lookup(&self, name: &str) -> Option<PointIdx> {
        self.find(name)
    }

    /// A point's id. Panics on an index this catalog did not hand out.
    fn name(&self, idx: PointIdx) -> &str {
        name_of(&self.names, &self.name_ends, idx)
    }

    /// The description of a point. Panics on an index this catalog did not
    /// hand out, which is a bug, never bad input.
    pub fn meta(&self, idx: PointIdx) -> PointView<'_> {
        let i = idx as usize;
        let unit = &self.units[self.point_unit[i] as usize];
        PointView {
            id: self.name(idx),
            enterprise: &unit.enterprise,
            hazard_source: &unit.hazard_source,
            unit: &unit.id,
            kind: self.kinds[i],
            eng_unit: &self.eng_units[self.eng_unit_of[i] as usize],
        }
    }

    /// The shared id of a point's enterprise, if the index is known.
    pub fn enterprise_of(&self, idx: PointIdx) -> Option<&Arc<str>> {
        let unit = self.point_unit.get(idx as usize)?;
        Some(&self.units[*unit as usize].enterprise)
    }

    /// The description of a point, if the index is known.
    pub fn get(&self, idx: PointIdx) -> Option<PointView<'_>> {
        ((idx as usize) < self.len()).then(|| self.meta(idx))
    }

    /// Rank of the point's name among all names (0 = first in byte order).
    pub fn name_rank(&self, idx: PointIdx) -> u32 {
        self.name_rank[idx as usize]
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.name_ends.len()
    }

    /// True when no point is known.
    pub fn is_empty(&self) -> bool {
        self.name_ends.is_empty()
    }

    /// The unit a point belongs to.
    pub fn unit_of(&self, idx: PointIdx) -> UnitIdx {
        self.point_unit[idx as usize]
    }

    /// The index of a unit id.
    pub fn unit_lookup(&self, id: &str) -> Option<UnitIdx> {
        self.unit_by_name.get(id).copied()
    }

    /// The description of a unit. Panics on an index this catalog did not
    /// hand out.
    pub fn unit(&self, idx: UnitIdx) -> &UnitMeta {
        &self.units[idx as usize]
    }

    /// Adds a gateway as an alarm source and returns its index; a known id
    /// keeps its index (and takes `enterprise`).
    pub fn insert_gateway(&mut self, id: &str, enterprise: &str) -> GatewayIdx {
        let enterprise = self.intern(&Arc::from(enterprise));
        if let Some(&g) = self.gateway_by_name.get(id) {
            self.gateways[g as usize].1 = enterprise;
            return g;
        }
        let g = self.gateways.len() as GatewayIdx;
        let id: Arc<str> = Arc::from(id);
        self.gateways.push((id.clone(), enterprise));
        self.gateway_by_name.insert(id, g);
        g
    }

    /// A gateway's index as an alarm source.
    pub fn gateway_lookup(&self, id: &str) -> Option<GatewayIdx> {
        self.gateway_by_name.get(id).copied()
    }

    /// Gateways known as alarm sources, in index order: (id, enterprise).
    pub fn gateways(&self) -> impl Iterator<Item = (&str, &str)> {
        self.gateways.iter().map(|(id, e)| (&**id, &**e))
    }

    /// Number of gateways known as alarm sources.
    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    /// Number of units.
    pub fn unit_count(&self) -> usize {
        self.units.len()
    }

    /// The index of an enterprise's console.
    pub fn console_lookup(&self, enterprise: &str) -> Option<ConsoleIdx> {
        self.console_by_name.get(enterprise).copied()
    }

    /// The id of an alarm source: the point, unit or enterprise id.
    pub fn source_id(&self, source: AlarmSource) -> &str {
        match source {
            AlarmSource::Point(p) => self.name(p),
            AlarmSource::Unit(u) => &self.unit(u).id,
            AlarmSource::Console(c) => &self.consoles[c as usize],
            AlarmSource::Gateway(g) => &self.gateways[g as usize].0,
        }
    }

    /// Where an alarm source sits: (enterprise, hazard source, unit, point),
    /// empty strings for the levels below the source.
    pub fn source_place(&self, source: AlarmSource) -> [&str; 4] {
        match source {
            AlarmSource::Point(p) => {
                let m = self.meta(p);
                [m.enterprise, m.hazard_source, m.unit, m.id]
            }
            AlarmSource::Unit(u) => {
                let m = self.unit(u);
                [&m.enterprise, &m.hazard_source, &m.id, ""]
            }
            AlarmSource::Console(c) => [&self.consoles[c as usize], "", "", ""],
            AlarmSource::Gateway(g) => [&self.gateways[g as usize].1, "", "", ""],
        }
    }

    /// Parses a source id: a point id (retired ones too: their alarms can
    /// still be acknowledged), else a unit id, else an enterprise id.
    pub fn source_lookup(&self, id: &str) -> Option<AlarmSource> {
        self.lookup(id)
            .or_else(|| self.retired.get(id).copied())
            .map(AlarmSource::Point)
            .or_else(|| self.unit_lookup(id).map(AlarmSource::Unit))
            .or_else(|| self.gateway_lookup(id).map(AlarmSource::Gateway))
            .or_else(|| self.console_lookup(id).map(AlarmSource::Console))
    }

    /// All points with their indices, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (PointIdx, PointView<'_>)> {
        (0..self.len() as PointIdx).map(|p| (p, self.meta(p)))
    }
}

/// Point `idx`'s id in `names` (see [`Catalog`]).
fn name_of<'a>(names: &'a str, ends: &[u32], idx: PointIdx) -> &'a str {
    let i = idx as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &names[start..ends[i] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: &str, unit: &str, kind: PointKind, eng_unit: &str) -> PointMeta {
        PointMeta::new(id, "E1", "HS1", unit, kind, eng_unit)
    }

    #[test]
    fn points_are_found_by_id_and_described_from_their_columns_and_unit() {
        let mut c = Catalog::default();
        c.extend([
            point("T2.LT", "T2", PointKind::Level, "m"),
            point("T1.TE", "T1", PointKind::Temperature, "degC"),
            point("T1.LT", "T1", PointKind::Level, "m"),
        ]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.lookup("T1.TE"), Some(1));
        assert_eq!(c.lookup("T1"), None);
        assert_eq!(c.lookup(""), None);
        let m = c.meta(1);
        assert_eq!(
            (
                m.id,
                m.enterprise,
                m.hazard_source,
                m.unit,
                m.kind,
                m.eng_unit
            ),
            ("T1.TE", "E1", "HS1", "T1", PointKind::Temperature, "degC")
        );
        assert_eq!(c.get(3), None);
        // Ranks in byte order of the ids.
        assert_eq!([c.name_rank(0), c.name_rank(1), c.name_rank(2)], [2, 1, 0]);
        assert_eq!(c.unit_of(0), 0);
        assert_eq!(c.unit_of(2), c.unit_of(1));
        assert_eq!(
            c.source_place(AlarmSource::Point(2)),
            ["E1", "HS1", "T1", "T1.LT"]
        );
        // A known id keeps its index and takes the new description.
        assert_eq!(
            c.insert(point("T1.TE", "T1", PointKind::Pressure, "kPa")),
            1
        );
        assert_eq!(
            (c.meta(1).kind, c.meta(1).eng_unit),
            (PointKind::Pressure, "kPa")
        );
        assert_eq!(
            c.meta(0).to_meta(),
            point("T2.LT", "T2", PointKind::Level, "m")
        );
    }

    #[test]
    fn a_retired_point_is_described_but_not_found_and_returns_with_its_index() {
        let mut c = Catalog::default();
        for i in 0..1000 {
            c.insert(point(&format!("P{i}"), "U", PointKind::Level, "m"));
        }
        c.retire("P500");
        assert_eq!(c.lookup("P500"), None);
        assert!(!c.is_live(500) && c.is_live(501));
        assert_eq!(c.meta(500).id, "P500");
        assert_eq!(c.source_lookup("P500"), Some(AlarmSource::Point(500)));
        assert_eq!(c.insert(point("P1000", "U", PointKind::Level, "m")), 1000);
        assert_eq!(c.insert(point("P500", "U", PointKind::Level, "m")), 500);
        assert!(c.is_live(500));
        assert!((0..1001).all(|i| c.lookup(&format!("P{i}")) == Some(i)));
        // A copy finds the same points (its hash keys came with it).
        let copy = c.clone();
        assert_eq!(copy.lookup("P999"), Some(999));
    }
}
