//! The rules in force: every point's and unit's parameters in one immutable
//! [`RuleSet`], and the [`RuleBook`] of rule sets by the epoch from which
//! each applies, which is how a reloaded site model takes effect at one
//! event time on every worker and operator.

use std::sync::{Arc, RwLock};

use hazardwatch_proto::{
    AlarmKind, AlarmSource, ConsoleIdx, GatewayIdx, NO_GATEWAY, PointIdx, PointKind, RuleEvent,
    UnitIdx,
};

use crate::site::{PointRules, PointRulesTable, SiteModel, UnitRules, default_priority};

/// Per-point and per-unit rules, indexed by the catalog's numbering.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Rule parameters by point.
    pub points: std::sync::Arc<PointRulesTable>,
    /// What each point measures.
    pub kinds: Vec<PointKind>,
    /// Unit of each point.
    pub unit_of: Vec<UnitIdx>,
    /// Rules by unit.
    pub units: Vec<UnitRules>,
    /// Console of each unit.
    pub console_of_unit: Vec<ConsoleIdx>,
    /// Gateway (catalog index) of each point; [`NO_GATEWAY`]: none.
    pub gateway_of: Vec<GatewayIdx>,
    /// By catalog gateway index: its `offline_after` (ms) and its
    /// enterprise's console, while it is registered.
    pub gateways: Vec<Option<(i64, Option<ConsoleIdx>)>>,
}

impl RuleSet {
    /// The rules of a validated site model.
    pub fn from_model(model: &SiteModel) -> RuleSet {
        let c = &model.catalog;
        RuleSet {
            points: model.rules.clone(),
            kinds: c.iter().map(|(_, m)| m.kind).collect(),
            unit_of: c.iter().map(|(p, _)| c.unit_of(p)).collect(),
            units: model.units.clone(),
            console_of_unit: (0..c.unit_count() as UnitIdx)
                .map(|u| c.unit(u).console)
                .collect(),
            gateway_of: (0..model.point_count() as PointIdx)
                .map(|p| {
                    let g = model.registry.owner(p);
                    if g == NO_GATEWAY {
                        return NO_GATEWAY;
                    }
                    c.gateway_lookup(&model.registry.gateway(g).id)
                        .unwrap_or(NO_GATEWAY)
                })
                .collect(),
            gateways: {
                let mut by_index = vec![None; c.gateway_count()];
                for g in model.registry.gateways() {
                    if let Some(k) = c.gateway_lookup(&g.id) {
                        by_index[k as usize] =
                            Some((g.offline_after_ms, c.console_lookup(&g.enterprise)));
                    }
                }
                by_index
            },
        }
    }

    /// The registered gateway that reports `point`.
    pub fn gateway_of(&self, point: PointIdx) -> Option<GatewayIdx> {
        self.gateway_of
            .get(point as usize)
            .copied()
            .filter(|&g| g != NO_GATEWAY)
    }

    /// A registered gateway's silence before it is offline, ms.
    pub fn offline_after(&self, gateway: GatewayIdx) -> Option<i64> {
        self.gateways
            .get(gateway as usize)
            .copied()
            .flatten()
            .map(|(after, _)| after)
    }

    /// A point's parameters.
    pub fn point(&self, point: PointIdx) -> Option<&PointRules> {
        self.points.get(point as usize)
    }

    /// A unit's rules.
    pub fn unit(&self, unit: UnitIdx) -> Option<&UnitRules> {
        self.units.get(unit as usize)
    }

    /// The unit an alarm source belongs to (none for a console).
    pub fn unit_of(&self, source: AlarmSource) -> Option<UnitIdx> {
        match source {
            AlarmSource::Point(p) => self.unit_of.get(p as usize).copied(),
            AlarmSource::Unit(u) => Some(u),
            AlarmSource::Console(_) | AlarmSource::Gateway(_) => None,
        }
    }

    /// The console an alarm source reports to.
    pub fn console_of(&self, source: AlarmSource) -> Option<ConsoleIdx> {
        match source {
            AlarmSource::Console(c) => Some(c),
            AlarmSource::Gateway(g) => self.gateways.get(g as usize).copied().flatten()?.1,
            other => self
                .unit_of(other)
                .and_then(|u| self.console_of_unit.get(u as usize).copied()),
        }
    }

    /// True when the source's unit is stopped or under overhaul.
    pub fn suppressed(&self, source: AlarmSource) -> bool {
        self.unit_of(source)
            .and_then(|u| self.unit(u))
            .is_some_and(|u| u.state.suppresses())
    }

    /// An event of `kind` on `point`, with the default priority for it.
    pub fn event(
        &self,
        point: PointIdx,
        kind: AlarmKind,
        active: bool,
        ts_ms: i64,
        value: f64,
        limit: f64,
    ) -> RuleEvent {
        let point_kind = self
            .kinds
            .get(point as usize)
            .copied()
            .unwrap_or(PointKind::Level);
        RuleEvent::new(
            AlarmSource::Point(point),
            kind,
            active,
            ts_ms,
            value,
            limit,
            default_priority(point_kind, kind),
        )
    }
}

/// The rule sets by the epoch from which each applies, shared by every
/// worker. The engine's feeder adds a set at its current watermark epoch:
/// no operator has finished that epoch yet (its input is still open), so
/// every reading from that epoch on is judged by the new rules and every
/// earlier one by the old.
#[derive(Debug, Clone)]
pub struct RuleBook(Arc<RwLock<Vec<Edition>>>);

/// A rule set and the epoch from which it applies.
pub type Edition = (u64, Arc<RuleSet>);

impl RuleBook {
    /// A book whose first set applies from the beginning of time.
    pub fn new(rules: RuleSet) -> Self {
        RuleBook(Arc::new(RwLock::new(vec![(0, Arc::new(rules))])))
    }

    /// The rules in force at `epoch`.
    pub fn at(&self, epoch: u64) -> Arc<RuleSet> {
        self.edition(epoch).1
    }

    /// The rules in force at `epoch` and the epoch from which they apply.
    pub fn edition(&self, epoch: u64) -> Edition {
        let sets = self.0.read().unwrap_or_else(|p| p.into_inner());
        let i = sets.partition_point(|(from, _)| *from <= epoch);
        // The first set applies from epoch 0, so i >= 1.
        sets[i.saturating_sub(1)].clone()
    }

    /// The first epoch after `from` at which other rules take effect.
    pub fn next_edition(&self, from: u64) -> Option<u64> {
        let sets = self.0.read().unwrap_or_else(|p| p.into_inner());
        sets.iter().map(|(f, _)| *f).find(|&f| f > from)
    }

    /// Makes `rules` apply from `epoch` on (replacing any set that starts
    /// later, which cannot have been used yet).
    pub fn publish(&self, epoch: u64, rules: RuleSet) {
        let mut sets = self.0.write().unwrap_or_else(|p| p.into_inner());
        sets.retain(|(from, _)| *from < epoch);
        sets.push((epoch, Arc::new(rules)));
    }
}
