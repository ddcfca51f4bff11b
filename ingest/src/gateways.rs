//! Which gateway reported each point last: when a gateway announces it is
//! offline (its last will, a Sparkplug death), the service marks those
//! points [`Quality::Offline`] at once. Bounded whatever gateway names the
//! topics carry.

use std::collections::HashMap;

use hazardwatch_proto::{PointIdx, Quality, Reading};

use crate::decode::GatewayStatus;

/// Which gateway reported each point last, for its offline markers.
#[derive(Debug, Default)]
pub struct Gateways {
    /// Gateway numbers by enterprise, then gateway id.
    ids: HashMap<String, HashMap<String, u32>>,
    /// By point index, the number of the gateway that reported it last
    /// ([`NO_GATEWAY`]: none yet): one array write per reading.
    owner: Vec<u32>,
    /// Gateways numbered so far.
    known: u32,
}

/// [`Gateways::owner`] of a point no gateway has reported.
const NO_GATEWAY: u32 = u32::MAX;

impl Gateways {
    /// Notes the points of a gateway's accepted readings (no allocation
    /// once the gateway is known and the points fit).
    pub fn reported(&mut self, enterprise: &str, gateway: &str, readings: &[Reading]) {
        let Some(top) = readings.iter().map(|r| r.point).max() else {
            return;
        };
        // Bounded whatever names topics carry: past the limit, names that
        // no longer report any point are forgotten (a name's point moves
        // to whichever gateway reported it last).
        if self.known as usize > self.owner.len().max(top as usize + 1) * 2 + 1024 {
            self.forget_idle();
        }
        let by_gateway = match self.ids.get_mut(enterprise) {
            Some(g) => g,
            None => self.ids.entry(enterprise.to_owned()).or_default(),
        };
        let id = match by_gateway.get(gateway) {
            Some(&id) => id,
            None => {
                self.known += 1;
                *by_gateway
                    .entry(gateway.to_owned())
                    .or_insert(self.known - 1)
            }
        };
        if self.owner.len() <= top as usize {
            self.owner.resize(top as usize + 1, NO_GATEWAY);
        }
        for r in readings {
            self.owner[r.point as usize] = id;
        }
    }

    /// Forgets the gateway names that report no point now, keeping the
    /// numbers of the others.
    fn forget_idle(&mut self) {
        let live: std::collections::HashSet<u32> = self
            .owner
            .iter()
            .copied()
            .filter(|&o| o != NO_GATEWAY)
            .collect();
        for by_gateway in self.ids.values_mut() {
            by_gateway.retain(|_, id| live.contains(id));
        }
        self.ids.retain(|_, g| !g.is_empty());
        self.known = self.ids.values().map(|g| g.len() as u32).sum();
        // Renumber densely so `known` stays a bound on the numbers in use.
        let mut next = 0u32;
        let mut renumber = HashMap::new();
        for by_gateway in self.ids.values_mut() {
            for id in by_gateway.values_mut() {
                renumber.insert(*id, next);
                *id = next;
                next += 1;
            }
        }
        for o in &mut self.owner {
            if let Some(&n) = renumber.get(o) {
                *o = n;
            }
        }
    }

    /// The number of gateway names remembered.
    pub fn remembered(&self) -> usize {
        self.ids.values().map(HashMap::len).sum()
    }

    /// Handles a status message: for `offline`, the markers for every point
    /// the gateway reported last, at `now_ms`.
    /// `registered`: the gateway's points in the registry, when gateways
    /// are registered (then those are marked, reported yet or not).
    pub fn status(
        &self,
        enterprise: &str,
        gateway: &str,
        status: GatewayStatus,
        now_ms: i64,
        registered: Option<&[PointIdx]>,
    ) -> Vec<Reading> {
        let label = match status {
            GatewayStatus::Online => "online",
            GatewayStatus::Offline => "offline",
        };
        metrics::counter!("hazardwatch_gateway_status_total", "status" => label).increment(1);
        let id = self
            .ids
            .get(enterprise)
            .and_then(|g| g.get(gateway))
            .copied();
        // A status message is rare: a scan of the points is fine here.
        let points: Vec<PointIdx> = match (registered, id) {
            (Some(points), _) => points.to_vec(),
            (None, Some(id)) => (0..self.owner.len() as PointIdx)
                .filter(|&p| self.owner[p as usize] == id)
                .collect(),
            (None, None) => Vec::new(),
        };
        tracing::info!(
            enterprise,
            gateway,
            status = label,
            points = points.len(),
            "gateway status"
        );
        match status {
            GatewayStatus::Offline => points
                .into_iter()
                .map(|point| Reading {
                    point,
                    ts_ms: now_ms,
                    value: f64::NAN,
                    quality: Quality::Offline,
                })
                .collect(),
            GatewayStatus::Online => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offline_gateway_marks_the_points_it_reported_last() {
        let r = |point| Reading {
            point,
            ts_ms: 1,
            value: 1.0,
            quality: Quality::Good,
        };
        let mut g = Gateways::default();
        g.reported("E01", "A", &[r(0), r(5)]);
        g.reported("E01", "B", &[r(2)]);
        // Point 5 moved to gateway B (a rewired transmitter).
        g.reported("E01", "B", &[r(5)]);
        let marked = |gw| -> Vec<PointIdx> {
            g.status("E01", gw, GatewayStatus::Offline, 9, None)
                .iter()
                .map(|m| m.point)
                .collect()
        };
        assert_eq!(marked("A"), [0]);
        assert_eq!(marked("B"), [2, 5]);
        assert!(marked("C").is_empty());
        assert!(
            g.status("E01", "A", GatewayStatus::Online, 9, None)
                .is_empty()
        );
        let m = &g.status("E01", "B", GatewayStatus::Offline, 9, None)[0];
        assert_eq!((m.ts_ms, m.quality), (9, Quality::Offline));
        assert!(m.value.is_nan());
        // With a registry, a gateway's last will marks every point it is
        // registered for, reported yet or not.
        let marked: Vec<PointIdx> = g
            .status("E01", "C", GatewayStatus::Offline, 9, Some(&[3, 4]))
            .iter()
            .map(|m| m.point)
            .collect();
        assert_eq!(marked, [3, 4]);
    }

    #[test]
    fn gateway_names_churned_through_topics_do_not_pile_up() {
        let r = |point| Reading {
            point,
            ts_ms: 1,
            value: 1.0,
            quality: Quality::Good,
        };
        let mut g = Gateways::default();
        g.reported("E01", "B", &[r(2), r(5)]);
        for i in 0..100_000 {
            g.reported("E01", &format!("X{i}"), &[r(7)]);
        }
        assert!(g.remembered() < 2_000, "{}", g.remembered());
        let marked = |gw| -> Vec<PointIdx> {
            g.status("E01", gw, GatewayStatus::Offline, 9, None)
                .iter()
                .map(|m| m.point)
                .collect()
        };
        assert_eq!(marked("X99999"), [7]);
        assert_eq!(marked("B"), [2, 5]);
    }
}
