//! Gateway health as regulators grade it: the online rate (在线率, the
//! share of time a gateway was reporting) and data completeness (readings
//! received over readings expected from its registered points and
//! interval), per gateway since the service started, rolled up per
//! enterprise and for the park.
//!
//! A gateway is online from each message it sends until its
//! `offline_after` passes without another, or until it announces `offline`
//! (its last will). Times are the service's receive times (the wall
//! clock): these are figures about the link, not about event time.

use std::sync::{Arc, Mutex};

use hazardwatch_proto::{GatewayIdx, Registry};

/// One gateway's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayReport {
    /// Gateway id.
    pub id: String,
    /// Its enterprise.
    pub enterprise: String,
    /// Reporting now.
    pub online: bool,
    /// Share of the time since the service started that it was online, 0-1.
    pub online_ratio: f64,
    /// Readings received over readings expected, 0-1 (capped: a gateway
    /// reporting faster than registered is complete, not more).
    pub completeness: f64,
    /// Readings received.
    pub received: u64,
    /// Readings expected: its points times the elapsed time over its
    /// interval.
    pub expected: u64,
    /// When its last message arrived, Unix ms.
    pub last_ms: Option<i64>,
}

/// Figures rolled up over several gateways (an enterprise, the park).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rollup {
    /// Gateways counted.
    pub gateways: u32,
    /// Of them, online now.
    pub online: u32,
    /// Mean online ratio of the gateways.
    pub online_ratio: f64,
    /// Readings received over readings expected, summed over the gateways.
    pub completeness: f64,
}

impl Rollup {
    /// Rolls up `reports`.
    pub fn of<'a>(reports: impl IntoIterator<Item = &'a GatewayReport>) -> Rollup {
        let (mut n, mut online, mut ratio, mut received, mut expected) =
            (0u32, 0u32, 0.0, 0u64, 0u64);
        for r in reports {
            n += 1;
            online += u32::from(r.online);
            ratio += r.online_ratio;
            received += r.received.min(r.expected);
            expected += r.expected;
        }
        Rollup {
            gateways: n,
            online,
            online_ratio: if n == 0 { 0.0 } else { ratio / f64::from(n) },
            completeness: if expected == 0 {
                0.0
            } else {
                received as f64 / expected as f64
            },
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Track {
    received: u64,
    last_ms: Option<i64>,
    /// Online time of the closed spans.
    covered_ms: i64,
    /// The open span of online time: from its first message to its last
    /// message plus `offline_after` (or an `offline` status).
    span: Option<(i64, i64)>,
}

#[derive(Debug)]
struct State {
    started_ms: i64,
    registry: Arc<Registry>,
    /// By gateway index of `registry`.
    tracks: Vec<Track>,
}

/// The health of every registered gateway; shared by ingest (which feeds
/// it) and the edges (which report it).
#[derive(Debug)]
pub struct GatewayHealth(Mutex<State>);

impl GatewayHealth {
    /// Health tracking of `registry`'s gateways from `now_ms`.
    pub fn new(registry: Arc<Registry>, now_ms: i64) -> GatewayHealth {
        let tracks = vec![Track::default(); registry.len()];
        GatewayHealth(Mutex::new(State {
            started_ms: now_ms,
            registry,
            tracks,
        }))
    }

    /// Since when the figures count (the service's start), Unix ms.
    pub fn since_ms(&self) -> i64 {
        self.state().started_ms
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reloaded registry: gateways keep their figures by id; new ones
    /// start from nothing (their window is still the service's).
    pub fn set_registry(&self, registry: Arc<Registry>) {
        let mut st = self.state();
        let old = std::mem::take(&mut st.tracks);
        let mut tracks = vec![Track::default(); registry.len()];
        for (g, t) in st.registry.gateways().iter().zip(old) {
            if let Some(j) = registry.lookup(&g.id) {
                tracks[j as usize] = t;
            }
        }
        st.registry = registry;
        st.tracks = tracks;
    }

    /// Gateway `g` sent a message with `readings` accepted readings at
    /// `now_ms`: it is online.
    pub fn message(&self, g: GatewayIdx, readings: usize, now_ms: i64) {
        let mut st = self.state();
        let Some(after) = st.registry.get(g).map(|g| g.offline_after_ms) else {
            return;
        };
        let Some(t) = st.tracks.get_mut(g as usize) else {
            return;
        };
        t.received += readings as u64;
        t.last_ms = Some(t.last_ms.map_or(now_ms, |l| l.max(now_ms)));
        t.span = Some(match t.span {
            Some((start, end)) if now_ms <= end => (start, end.max(now_ms + after)),
            Some((start, end)) => {
                t.covered_ms += end - start;
                (now_ms, now_ms + after)
            }
            None => (now_ms, now_ms + after),
        });
    }

    /// Gateway `g` announced `offline` at `now_ms`: its online time ends.
    pub fn offline(&self, g: GatewayIdx, now_ms: i64) {
        let mut st = self.state();
        if let Some(t) = st.tracks.get_mut(g as usize)
            && let Some((start, end)) = t.span
        {
            t.span = Some((start, end.min(now_ms).max(start)));
        }
    }

    /// Every gateway's figures at `now_ms`.
    pub fn report(&self, now_ms: i64) -> Vec<GatewayReport> {
        let st = self.state();
        let window = (now_ms - st.started_ms).max(1);
        st.registry
            .gateways()
            .iter()
            .zip(&st.tracks)
            .map(|(g, t)| {
                let open = t
                    .span
                    .map_or(0, |(start, end)| (end.min(now_ms) - start).max(0));
                let online_ms = (t.covered_ms + open).min(window);
                let expected =
                    (g.points.len() as u64).saturating_mul((window / g.interval_ms.max(1)) as u64);
                GatewayReport {
                    id: g.id.clone(),
                    enterprise: g.enterprise.clone(),
                    online: t.span.is_some_and(|(_, end)| end > now_ms),
                    online_ratio: online_ms as f64 / window as f64,
                    completeness: if expected == 0 {
                        0.0
                    } else {
                        (t.received as f64 / expected as f64).min(1.0)
                    },
                    received: t.received,
                    expected,
                    last_ms: t.last_ms,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hazardwatch_proto::{Credential, GatewayInfo};

    fn registry(ids: &[&str]) -> Arc<Registry> {
        let gateways = ids
            .iter()
            .enumerate()
            .map(|(i, id)| GatewayInfo {
                id: (*id).into(),
                name: String::new(),
                enterprise: if i == 0 { "E01" } else { "E02" }.into(),
                points: vec![2 * i as u32, 2 * i as u32 + 1],
                interval_ms: 1000,
                offline_after_ms: 3000,
                credential: Credential {
                    password_hash: None,
                    cert_cn: Some((*id).into()),
                },
            })
            .collect();
        Arc::new(Registry::new(gateways, 2 * ids.len()))
    }

    #[test]
    fn reporting_at_half_the_interval_is_half_complete_and_always_online() {
        let h = GatewayHealth::new(registry(&["GW1"]), 0);
        // Every 2 s instead of every 1 s, both points each time, for 100 s.
        for t in (0..100).step_by(2) {
            h.message(0, 2, t * 1000);
        }
        let r = &h.report(100_000)[0];
        assert_eq!((r.received, r.expected), (100, 200));
        assert!((r.completeness - 0.5).abs() < 1e-9, "{r:?}");
        assert!(
            (r.online_ratio - 1.0).abs() < 1e-9,
            "silences of 2 s are under 3 s: {r:?}"
        );
        assert!(r.online);
    }

    #[test]
    fn silence_and_a_last_will_count_as_offline() {
        let h = GatewayHealth::new(registry(&["GW1", "GW2"]), 0);
        // GW1: reports 0-9 s, silent until 50 s, reports 50-59 s, then its
        // last will at 60 s. Online: 0-12 s (9 s + 3 s) and 50-60 s.
        for t in 0..10 {
            h.message(0, 2, t * 1000);
        }
        for t in 50..60 {
            h.message(0, 2, t * 1000);
        }
        h.offline(0, 60_000);
        let reports = h.report(100_000);
        let gw1 = &reports[0];
        assert!((gw1.online_ratio - 0.22).abs() < 1e-9, "{gw1:?}");
        assert!(!gw1.online);
        assert!((gw1.completeness - 0.2).abs() < 1e-9, "{gw1:?}");
        // GW2 never reported.
        assert_eq!(
            (reports[1].online_ratio, reports[1].completeness),
            (0.0, 0.0)
        );
        let park = Rollup::of(&reports);
        assert_eq!((park.gateways, park.online), (2, 0));
        assert!((park.online_ratio - 0.11).abs() < 1e-9);
        assert!((park.completeness - 0.1).abs() < 1e-9);
    }

    #[test]
    fn a_reload_keeps_each_gateways_figures_by_id() {
        let h = GatewayHealth::new(registry(&["GW1", "GW2"]), 0);
        h.message(1, 2, 0);
        h.set_registry(registry(&["GW2", "GW3"]));
        let reports = h.report(1000);
        assert_eq!(reports[0].id, "GW2");
        assert_eq!(reports[0].received, 2);
        assert_eq!(reports[1].received, 0);
    }
}
