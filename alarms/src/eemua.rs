//! Alarm-system performance of an enterprise console (EEMUA 191), from the
//! journal's events: the alarm rate per 10 minutes (average and peak), time
//! in flood, standing and chattering alarms, the top bad actors and the
//! priority distribution.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use hazardwatch_proto::pb;

/// EEMUA 191's window for alarm rates.
pub const WINDOW_MS: i64 = 10 * 60_000;

/// An alarm active this long at the end of the range is standing.
pub const STANDING_MS: i64 = 24 * 3_600_000;

/// How far before the range the events are read to know which alarms were
/// already active (and so may be standing) when it began.
pub const LOOKBACK_MS: i64 = 7 * 24 * 3_600_000;

const FLOOD: i32 = pb::AlarmKind::Flood as i32;
const CHATTERING: i32 = pb::AlarmKind::Chattering as i32;

fn is(e: &pb::AlarmEvent, t: pb::Transition) -> bool {
    e.transition == t as i32
}

/// The statistics of `[from_ms, to_ms)` from one enterprise's events in
/// time order, starting up to [`LOOKBACK_MS`] before `from_ms`.
pub fn report(
    enterprise: &str,
    from_ms: i64,
    to_ms: i64,
    events: impl IntoIterator<Item = pb::AlarmEvent>,
) -> pb::StatsResponse {
    let mut report = Report::new(from_ms, to_ms);
    for e in events {
        if !report.add(&e) {
            break;
        }
    }
    report.finish(enterprise)
}

/// The statistics, taking the events one at a time: memory grows with the
/// number of distinct alarms and the raises of the busiest 10 minutes, not
/// with the range.
#[derive(Debug)]
pub struct Report {
    from_ms: i64,
    to_ms: i64,
    raises: u64,
    /// Raise times of the last 10 minutes, for the peak.
    window: VecDeque<i64>,
    peak: usize,
    peak_start: i64,
    by_alarm: BTreeMap<String, u64>,
    by_priority: BTreeMap<i32, u64>,
    chattering: BTreeSet<String>,
    /// Condition active since, by alarm id.
    active: BTreeMap<String, i64>,
    flood_since: Option<i64>,
    flood_ms: i64,
}

impl Report {
    /// An empty report of `[from_ms, to_ms)`.
    pub fn new(from_ms: i64, to_ms: i64) -> Report {
        Report {
            from_ms,
            to_ms,
            raises: 0,
            window: VecDeque::new(),
            peak: 0,
            peak_start: from_ms,
            by_alarm: BTreeMap::new(),
            by_priority: BTreeMap::new(),
            chattering: BTreeSet::new(),
            active: BTreeMap::new(),
            flood_since: None,
            flood_ms: 0,
        }
    }

    /// Takes the next event (in time order); `false` once the events are
    /// past the range (the rest need not be read).
    pub fn add(&mut self, e: &pb::AlarmEvent) -> bool {
        let t = e.event_time_ms;
        if t >= self.to_ms {
            return false;
        }
        let raised = is(e, pb::Transition::Raised);
        let cleared = is(e, pb::Transition::Cleared);
        if raised {
            self.active.entry(e.alarm_id.clone()).or_insert(t);
        } else if cleared {
            self.active.remove(&e.alarm_id);
        }
        if e.kind == FLOOD {
            if raised {
                self.flood_since = Some(t.max(self.from_ms));
            } else if cleared && let Some(since) = self.flood_since.take() {
                self.flood_ms += t.saturating_sub(since).max(0);
            }
        }
        if t < self.from_ms || !raised {
            return true;
        }
        if e.kind == CHATTERING {
            self.chattering.insert(
                e.alarm_id
                    .rsplit_once('/')
                    .map_or(e.alarm_id.clone(), |(s, _)| s.to_owned()),
            );
            return true;
        }
        let annunciated =
            e.kind != FLOOD && !e.suppressed && e.shelved_until_ms == 0 && !e.out_of_service;
        if annunciated {
            self.raises += 1;
            *self.by_alarm.entry(e.alarm_id.clone()).or_default() += 1;
            *self.by_priority.entry(e.priority).or_default() += 1;
            // The busiest 10 minutes: a window sliding over the raise times.
            self.window.push_back(t);
            while self.window.front().is_some_and(|&lo| t - lo >= WINDOW_MS) {
                self.window.pop_front();
            }
            if self.window.len() > self.peak {
                self.peak = self.window.len();
                self.peak_start = self.window.front().copied().unwrap_or(t);
            }
        }
        true
    }

    /// The statistics of the events taken.
    pub fn finish(self, enterprise: &str) -> pb::StatsResponse {
        let (from_ms, to_ms) = (self.from_ms, self.to_ms);
        let mut flood_ms = self.flood_ms;
        if let Some(since) = self.flood_since {
            flood_ms += to_ms.saturating_sub(since).max(0);
        }
        // Times come from the request: saturate rather than overflow.
        let span = to_ms.saturating_sub(from_ms).max(1);
        let mut bad: Vec<(String, u64)> = self.by_alarm.into_iter().collect();
        bad.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        bad.truncate(10);
        pb::StatsResponse {
            enterprise: enterprise.to_owned(),
            from_ms,
            to_ms,
            raises: self.raises,
            per_10min_average: self.raises as f64 * WINDOW_MS as f64 / span as f64,
            per_10min_peak: self.peak as u64,
            peak_window_start_ms: self.peak_start,
            flood_ms,
            flood_fraction: flood_ms as f64 / span as f64,
            standing: self
                .active
                .into_iter()
                .filter(|(id, since)| {
                    to_ms.saturating_sub(*since) >= STANDING_MS && !id.ends_with("/FLOOD")
                })
                .map(|(id, _)| id)
                .collect(),
            chattering: self.chattering.into_iter().collect(),
            bad_actors: bad
                .into_iter()
                .map(|(alarm_id, raises)| pb::BadActor { alarm_id, raises })
                .collect(),
            priorities: self
                .by_priority
                .into_iter()
                .map(|(priority, raises)| pb::PriorityCount { priority, raises })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, t: i64, transition: pb::Transition, kind: pb::AlarmKind) -> pb::AlarmEvent {
        pb::AlarmEvent {
            alarm_id: id.into(),
            event_time_ms: t,
            transition: transition as i32,
            kind: kind as i32,
            priority: pb::Priority::Medium as i32,
            ..Default::default()
        }
    }

    #[test]
    fn rates_floods_standing_chattering_and_bad_actors() {
        use pb::AlarmKind::{Chattering, Flood, High};
        use pb::Transition::{Cleared, Raised};
        const H: i64 = 3_600_000;
        let day = 24 * H;
        let from = 10 * day;
        let mut events = vec![
            // Raised two days before the range and never cleared: standing.
            ev("T1.LT/H", from - 2 * day, Raised, High),
            // Raised before, cleared inside: not standing, not counted.
            ev("T2.LT/H", from - H, Raised, High),
            ev("T2.LT/H", from + 1, Cleared, High),
        ];
        // 12 raises of P1 in 5 minutes from +1 h: a peak of 12.
        for i in 0..12 {
            events.push(ev("P1/H", from + H + i * 25_000, Raised, High));
            events.push(ev("P1/H", from + H + i * 25_000 + 1_000, Cleared, High));
        }
        events.push(ev("P1/CHAT", from + H + 60_000, Raised, Chattering));
        events.push(ev("E01/FLOOD", from + H + 250_000, Raised, Flood));
        events.push(ev("E01/FLOOD", from + H + 850_000, Cleared, Flood));
        events.push(ev("P2/H", from + 2 * H, Raised, High));
        events.sort_by_key(|e| e.event_time_ms);
        let s = report("E01", from, from + day, events);
        assert_eq!(s.raises, 13);
        assert_eq!(s.per_10min_peak, 12);
        assert_eq!(s.peak_window_start_ms, from + H);
        assert!((s.per_10min_average - 13.0 / 144.0).abs() < 1e-9);
        assert_eq!(s.flood_ms, 600_000);
        assert_eq!(s.standing, ["T1.LT/H"]);
        assert_eq!(s.chattering, ["P1"]);
        assert_eq!(s.bad_actors[0].alarm_id, "P1/H");
        assert_eq!(s.bad_actors[0].raises, 12);
        assert_eq!(s.priorities.len(), 1);
        assert_eq!(s.priorities[0].raises, 13);
    }

    #[test]
    fn extreme_ranges_from_a_request_do_not_overflow() {
        let s = report("E01", i64::MIN, i64::MAX, Vec::new());
        assert_eq!(s.raises, 0);
        assert_eq!(s.flood_fraction, 0.0);
    }
}
