//! The gateway registry: which device may report which points, how often,
//! and how it proves who it is. Like the [`crate::Catalog`], one table
//! shared by ingest, the broker and the rules; the site model's checks
//! (`hazardwatch_rules::site::check`) build it from the
//! `[[enterprise.gateway]]` entries.
//!
//! An empty registry is the open mode of a service on loopback: any client
//! may publish for any gateway of the topic's enterprise. Once a gateway is
//! registered, every point belongs to exactly one gateway.

use std::collections::HashMap;

use crate::PointIdx;

/// Index of a gateway in [`Registry::gateways`].
pub type GatewayIdx = u32;

/// [`Registry::owner`] of a point that no gateway reports (open mode, or a
/// point added by a reload before its gateway).
pub const NO_GATEWAY: GatewayIdx = GatewayIdx::MAX;

/// How a gateway proves who it is. At least one of the two is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Its password as an argon2id PHC string.
    pub password_hash: Option<String>,
    /// The common name of its client certificate (mutual TLS).
    pub cert_cn: Option<String>,
}

/// One registered gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayInfo {
    /// Gateway id: topic segment, MQTT client id and user name.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its enterprise.
    pub enterprise: String,
    /// The points it reports.
    pub points: Vec<PointIdx>,
    /// Expected reporting interval of each point, ms.
    pub interval_ms: i64,
    /// Silence after which it is offline, ms.
    pub offline_after_ms: i64,
    /// How it authenticates.
    pub credential: Credential,
}

/// The registered gateways, with the lookups ingest and the broker need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    gateways: Vec<GatewayInfo>,
    /// By point index: its gateway ([`NO_GATEWAY`]: none).
    owner: Vec<GatewayIdx>,
    by_id: HashMap<String, GatewayIdx>,
    by_cert_cn: HashMap<String, GatewayIdx>,
}

impl Registry {
    /// A registry of `gateways` over a catalog of `points` points. Ids and
    /// certificate names are unique and points are owned at most once
    /// (checked with the site model; a later entry would win).
    pub fn new(gateways: Vec<GatewayInfo>, points: usize) -> Registry {
        let mut owner = vec![NO_GATEWAY; points];
        let mut by_id = HashMap::with_capacity(gateways.len());
        let mut by_cert_cn = HashMap::new();
        for (i, g) in gateways.iter().enumerate() {
            let i = i as GatewayIdx;
            for &p in &g.points {
                if let Some(o) = owner.get_mut(p as usize) {
                    *o = i;
                }
            }
            by_id.insert(g.id.clone(), i);
            if let Some(cn) = &g.credential.cert_cn {
                by_cert_cn.insert(cn.clone(), i);
            }
        }
        Registry {
            gateways,
            owner,
            by_id,
            by_cert_cn,
        }
    }

    /// True when no gateway is registered (open mode).
    pub fn is_open(&self) -> bool {
        self.gateways.is_empty()
    }

    /// The gateways, in file order.
    pub fn gateways(&self) -> &[GatewayInfo] {
        &self.gateways
    }

    /// Number of gateways (indices run from 0 to this).
    pub fn len(&self) -> usize {
        self.gateways.len()
    }

    /// True when no gateway is registered (see [`Registry::is_open`]).
    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// A gateway by index; panics on an index this registry did not give
    /// out (see [`Registry::get`]).
    pub fn gateway(&self, idx: GatewayIdx) -> &GatewayInfo {
        &self.gateways[idx as usize]
    }

    /// A gateway by index, if there is one.
    pub fn get(&self, idx: GatewayIdx) -> Option<&GatewayInfo> {
        self.gateways.get(idx as usize)
    }

    /// A gateway by id.
    pub fn lookup(&self, id: &str) -> Option<GatewayIdx> {
        self.by_id.get(id).copied()
    }

    /// The gateway whose client certificate has common name `cn`.
    pub fn by_cert_cn(&self, cn: &str) -> Option<GatewayIdx> {
        self.by_cert_cn.get(cn).copied()
    }

    /// The gateway that reports `point` ([`NO_GATEWAY`]: none).
    pub fn owner(&self, point: PointIdx) -> GatewayIdx {
        self.owner
            .get(point as usize)
            .copied()
            .unwrap_or(NO_GATEWAY)
    }

    /// This registry with every point index passed through `map` (the
    /// model was renumbered onto a running catalog of `points` points).
    pub fn renumbered(&self, points: usize, map: impl Fn(PointIdx) -> PointIdx) -> Registry {
        let gateways = self
            .gateways
            .iter()
            .map(|g| GatewayInfo {
                points: g.points.iter().map(|&p| map(p)).collect(),
                ..g.clone()
            })
            .collect();
        Registry::new(gateways, points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(id: &str, points: Vec<PointIdx>, cn: Option<&str>) -> GatewayInfo {
        GatewayInfo {
            id: id.into(),
            name: String::new(),
            enterprise: "E".into(),
            points,
            interval_ms: 1000,
            offline_after_ms: 10_000,
            credential: Credential {
                password_hash: None,
                cert_cn: cn.map(Into::into),
            },
        }
    }

    #[test]
    fn lookups_by_point_id_and_certificate() {
        let r = Registry::new(
            vec![
                gw("A", vec![0, 2], Some("a.example")),
                gw("B", vec![1], None),
            ],
            4,
        );
        assert!(!r.is_open());
        assert_eq!(r.owner(0), 0);
        assert_eq!(r.owner(1), 1);
        assert_eq!(r.owner(3), NO_GATEWAY);
        assert_eq!(r.owner(99), NO_GATEWAY);
        assert_eq!(r.lookup("B"), Some(1));
        assert_eq!(r.lookup("C"), None);
        assert_eq!(r.by_cert_cn("a.example"), Some(0));
        let moved = r.renumbered(6, |p| p + 3);
        assert_eq!(moved.owner(3), 0);
        assert_eq!(moved.owner(5), 0);
        assert_eq!(moved.owner(0), NO_GATEWAY);
        assert!(Registry::default().is_open());
    }
}
