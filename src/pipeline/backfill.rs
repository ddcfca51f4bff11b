//! Backfill: readings that arrive later than the lateness bound (a
//! gateway's store-and-forward buffer after an outage, a slow clock, a
//! broker backlog) are still judged, in event time, by the same rules.
//!
//! The feeder sends every late reading within `[backfill] horizon_s` of the
//! clock here (and archives it as judged). Late readings gather into an
//! *episode* until none has come for `idle_ms`; the episode is then judged
//! on its own: the same rules over its readings in event-time order, from a
//! fresh rule state (rules whose windows reach back before the episode's
//! first reading, such as on-delays and slopes, see only its readings).
//! The alarms it raises and clears go to the alarm hub at their true event
//! times, flagged `backfilled`, once. A condition still active at the
//! episode's last reading is cleared there ("end of the backfilled data"):
//! from then on the live rules judge the point, and raise it again if it
//! is still beyond its limit. Communication alarms (stale, gateway
//! offline) and the console's flood and chattering are left to the live
//! rules: they are about the link and the console as they were.
//!
//! Readings beyond the horizon are archived flagged `late`, never judged,
//! and recorded with why in `DATA/quarantine/not_judged.jsonl` (bounded and
//! rotated like the quarantine).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use hazardwatch_alarms::AlarmHub;
use hazardwatch_ingest::Quarantine;
use hazardwatch_ingest::decode::{RejectKind, Rejection};
use hazardwatch_proto::{AlarmKind, Reading, RuleEvent};
use hazardwatch_rules::{EngineConfig, evaluate};
use serde::Deserialize;

use super::Counters;
use crate::live_site::LiveSite;

/// Batches waiting for the backfill thread.
pub const BACKFILL_QUEUE: usize = 256;

/// Readings of one episode at most; a longer backlog is judged in parts.
const MAX_EPISODE: usize = 5_000_000;

/// `[backfill]` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillConfig {
    /// Late readings at most this old (seconds behind the clock) are
    /// judged; older ones are archived, flagged, not judged. 0: none.
    pub horizon_s: u64,
    /// An episode of late readings is judged once none has come for this
    /// long, ms.
    pub idle_ms: u64,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        BackfillConfig {
            horizon_s: 7 * 86_400,
            idle_ms: 1_000,
        }
    }
}

impl BackfillConfig {
    /// Checks the settings, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.horizon_s > 90 * 86_400 {
            return Err(format!(
                "backfill.horizon_s: {} is more than 90 days",
                self.horizon_s
            ));
        }
        if !(10..=60_000).contains(&self.idle_ms) {
            return Err(format!(
                "backfill.idle_ms: {} must be from 10 to 60000",
                self.idle_ms
            ));
        }
        Ok(())
    }

    /// The oldest event time still judged at `now_ms`; `None`: backfill
    /// is off.
    pub fn oldest_judged(&self, now_ms: i64) -> Option<i64> {
        (self.horizon_s > 0).then(|| now_ms - self.horizon_s as i64 * 1000)
    }
}

/// What the feeder sends the backfill thread.
pub enum BackfillMsg {
    /// Late readings to judge.
    Late(Vec<Reading>),
    /// Late readings beyond the horizon: archived, not judged.
    TooOld {
        /// How many.
        readings: usize,
        /// Their oldest and newest event times, Unix ms.
        span: (i64, i64),
        /// When they arrived, Unix ms.
        received_ms: i64,
    },
}

/// Rule kinds the backfill leaves to the live rules.
fn live_only(kind: AlarmKind) -> bool {
    matches!(
        kind,
        AlarmKind::Stale | AlarmKind::Offline | AlarmKind::Flood | AlarmKind::Chattering
    )
}

/// Judges one episode: the backfilled alarm events, in order, ending every
/// condition still active at the episode's last reading.
pub fn judge(
    site: &hazardwatch_rules::SiteModel,
    epoch_ms: u64,
    readings: &mut Vec<Reading>,
) -> anyhow::Result<Vec<RuleEvent>> {
    readings.sort_by_key(Reading::order_key);
    readings.dedup_by(|a, b| {
        a.point == b.point && a.ts_ms == b.ts_ms && a.value.to_bits() == b.value.to_bits()
    });
    let Some(last_ts) = readings.iter().map(|r| r.ts_ms).max() else {
        return Ok(Vec::new());
    };
    let config = EngineConfig {
        workers: 1,
        epoch_ms,
        lateness_ms: 0,
        ..EngineConfig::default()
    };
    // An episode is a finite history: judged in epochs of a second at
    // least, with the same results and less cost.
    let config = EngineConfig {
        epoch_ms: config.history_epoch_ms(),
        ..config
    };
    let mut events: Vec<RuleEvent> = evaluate(site, &config, [readings.as_slice()], last_ts + 1)?
        .into_iter()
        .filter(|e| !live_only(e.kind))
        .collect();
    // Conditions active at the end: cleared there, with the point's last
    // backfilled value; the live rules take over.
    let mut active: BTreeMap<_, RuleEvent> = BTreeMap::new();
    for e in &events {
        if e.active {
            active.insert((e.source, e.kind), *e);
        } else {
            active.remove(&(e.source, e.kind));
        }
    }
    let last_value = |e: &RuleEvent| {
        e.point()
            .and_then(|p| readings.iter().rev().find(|r| r.point == p))
            .map_or(e.value, |r| r.value)
    };
    for e in active.into_values() {
        events.push(RuleEvent {
            active: false,
            ts_ms: last_ts.max(e.ts_ms),
            value: last_value(&e),
            ..e
        });
    }
    for e in &mut events {
        e.backfilled = true;
    }
    events.sort_by_key(RuleEvent::order_key);
    Ok(events)
}

/// The backfill thread: gathers late readings into episodes and judges
/// each once it is idle, until the feeder hangs up.
#[allow(clippy::too_many_arguments)]
pub fn backfill_loop(
    rx: Receiver<BackfillMsg>,
    site: LiveSite,
    hub: Arc<AlarmHub>,
    epoch_ms: u64,
    config: BackfillConfig,
    mut not_judged: Quarantine,
    counters: Arc<Counters>,
) {
    let idle = Duration::from_millis(config.idle_ms);
    let mut pending: Vec<Reading> = Vec::new();
    // Judges the episode and lets its memory go: an episode may hold up to
    // MAX_EPISODE readings, and a buffer kept at that capacity would hold
    // hundreds of MiB for good after one long outage's backfill.
    let run = |pending: &mut Vec<Reading>| {
        let mut episode = std::mem::take(pending);
        let n = episode.len() as u64;
        match judge(&site.snapshot(), epoch_ms, &mut episode) {
            Ok(events) => {
                let out = hub.apply(&events);
                counters.readings_backfilled.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("hazardwatch_readings_backfilled_total").increment(n);
                tracing::info!(
                    readings = n,
                    alarm_events = out.len(),
                    "backfill: late readings judged"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, readings = n, "backfill: cannot judge late readings")
            }
        }
    };
    loop {
        match rx.recv_timeout(idle) {
            Ok(BackfillMsg::Late(readings)) => {
                pending.extend(readings);
                if pending.len() >= MAX_EPISODE {
                    run(&mut pending);
                }
            }
            Ok(BackfillMsg::TooOld {
                readings,
                span,
                received_ms,
            }) => {
                let why = Rejection {
                    kind: RejectKind::BeyondHorizon,
                    reason: format!(
                        "{readings} readings from {} to {} ms, received at {received_ms} ms: older than the backfill horizon ({} s): archived flagged late, not judged",
                        span.0, span.1, config.horizon_s
                    ),
                };
                if let Err(e) = not_judged.record("(backfill)", b"", &[why]) {
                    tracing::error!(error = %e, readings, "cannot record readings not judged");
                }
                // Counted once recorded: whoever sees the count finds the
                // record.
                counters
                    .readings_not_judged
                    .fetch_add(readings as u64, Ordering::Relaxed);
                metrics::counter!("hazardwatch_readings_not_judged_total")
                    .increment(readings as u64);
            }
            Err(RecvTimeoutError::Timeout) => {
                if !pending.is_empty() {
                    run(&mut pending);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if !pending.is_empty() {
                    run(&mut pending);
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use hazardwatch_proto::Quality;

    #[test]
    fn an_episode_ends_its_open_conditions_at_its_last_reading() {
        let site = crate::test_park::site(&[("stale_s", "5")]);
        let at = |s: i64, v: f64| Reading {
            point: 0,
            ts_ms: s * 1000,
            value: v,
            quality: Quality::Good,
        };
        // Above H from 20 s to the end (a 30 s silence inside: no stale).
        let mut readings = vec![at(10, 5.0), at(20, 18.5), at(60, 18.7), at(50, 18.6)];
        let events = judge(&site, 100, &mut readings).unwrap();
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.kind.tag(), e.active, e.ts_ms, e.value, e.backfilled))
            .collect();
        assert_eq!(
            seen,
            [
                ("H", true, 20_000, 18.5, true),
                ("H", false, 60_000, 18.7, true)
            ]
        );
    }
}
