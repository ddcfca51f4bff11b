//! Live event time: how far the rules may judge, learned from how each
//! gateway's readings arrive.
//!
//! A reading can be judged once every reading before it is in. The
//! configured `engine.lateness_ms` is the bound: event time is never held
//! further behind the clock than that (an older reading is late: archived,
//! and judged by the backfill). Within the bound, the feeder learns from
//! each gateway (its MQTT topic's enterprise and gateway) two figures, as
//! maxima over the last [`WINDOW_MS`]:
//!
//! - its **disorder** `d`: how far a reading's time stamp has fallen behind
//!   the newest one the gateway sent before it. Nothing older than its
//!   newest reading less `d` is still to come from it;
//! - its **delay** `a`: how long after its time stamp a reading arrived
//!   (network, batching, the gateway's clock). Nothing older than the
//!   newest receipt time less `a` is still to come from it, even while it
//!   is silent.
//!
//! Messages reach the feeder in the order they were received, so once it
//! has taken the message received at `R`, a gateway can still send only
//! readings from `max(newest - d, R - a)` on. Event time advances to the
//! least of that over the gateways heard in the window, and never past `R`
//! (the service's own markers are stamped with receipt times).
//!
//! Disorder is the gateway's own habit: none seen is taken as none, and any
//! other gets a quarter more and [`ORDER_HEADROOM_MS`]. Delay is what a
//! network hiccup lengthens, and gets half more and [`DELAY_HEADROOM_MS`].
//! (In a busy park the newest readings decide and the delay barely
//! matters; where gateways report every second or so, it is what event
//! time waits for.) A reading later than all that is late like one past the
//! lateness: archived, and judged by the backfill; the
//! `hazardwatch_readings_late_total` counter says how often.
//!
//! A gateway is held to the full lateness for its first [`WARMUP_MS`] and
//! [`WARMUP_MESSAGES`], so one never seen (or restarted) learns before it
//! is trusted. Messages from no known gateway (the write-ahead log's, at
//! start) are judged before live time starts. With `engine.watermark =
//! "fixed"`, event time is the clock less the lateness, as before this was
//! learned.

use std::collections::HashMap;

use hazardwatch_proto::Reading;
use hazardwatch_rules::WatermarkPolicy as Policy;

/// How long a figure is remembered: the largest disorder and delay of the
/// last ten minutes.
pub const WINDOW_MS: i64 = 600_000;
/// Buckets of the window (a minute each).
const BUCKETS: usize = 10;
/// How long a gateway is heard, and how many of its messages, before its
/// figures are trusted.
pub const WARMUP_MS: i64 = 10_000;
/// See [`WARMUP_MS`].
pub const WARMUP_MESSAGES: u32 = 20;
/// Added to a learned disorder other than none, with a quarter of it (time
/// stamps are whole milliseconds).
pub const ORDER_HEADROOM_MS: i64 = 2;
/// Added to a learned delay, with half of it.
pub const DELAY_HEADROOM_MS: i64 = 10;
/// Gateways tracked at most; past it, the one silent longest is forgotten.
pub const MAX_SOURCES: usize = 16_384;

/// The largest value seen in the last [`WINDOW_MS`], kept in a-minute
/// buckets.
#[derive(Debug, Clone, Copy, Default)]
struct WindowMax {
    /// (minute, largest value in it); minute 0 means empty.
    buckets: [(i64, i64); BUCKETS],
}

impl WindowMax {
    fn minute(now_ms: i64) -> i64 {
        now_ms.div_euclid(WINDOW_MS / BUCKETS as i64) + 1
    }

    fn observe(&mut self, now_ms: i64, value: i64) {
        let m = Self::minute(now_ms);
        let slot = &mut self.buckets[m.rem_euclid(BUCKETS as i64) as usize];
        if slot.0 == m {
            slot.1 = slot.1.max(value);
        } else if slot.0 < m {
            *slot = (m, value);
        }
    }

    fn max(&self, now_ms: i64) -> i64 {
        let m = Self::minute(now_ms);
        self.buckets
            .iter()
            .filter(|(b, _)| *b > m - BUCKETS as i64)
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0)
    }
}

/// What is known of one gateway.
#[derive(Debug, Clone)]
struct Source {
    /// Receipt time of its first message since it was (last) tracked.
    first_ms: i64,
    /// Receipt time of its latest message.
    last_ms: i64,
    /// Its messages so far (up to [`WARMUP_MESSAGES`]).
    messages: u32,
    /// Its newest time stamp.
    newest_ts: i64,
    disorder: WindowMax,
    delay: WindowMax,
    /// `disorder` and `delay` as of the last sweep or since (a figure only
    /// falls when a minute leaves the window, so between sweeps these are
    /// at least the truth: event time waits a little longer, never less).
    disorder_ms: i64,
    delay_ms: i64,
}

/// Live event time (see the module docs).
#[derive(Debug)]
pub struct Watermark {
    policy: Policy,
    lateness_ms: i64,
    /// Receipt time of the newest message taken (`R`).
    received_ms: i64,
    sources: HashMap<u64, Source>,
    /// The clock's second of the last sweep (silent gateways forgotten,
    /// figures brought up to date).
    swept_s: i64,
    /// The last answer of [`Watermark::at`] and the clock time it was for.
    last: Option<(i64, i64)>,
}

impl Watermark {
    /// Event time bounded by `lateness_ms`, advancing by `policy`.
    pub fn new(policy: Policy, lateness_ms: i64) -> Watermark {
        Watermark {
            policy,
            lateness_ms,
            received_ms: i64::MIN,
            sources: HashMap::new(),
            swept_s: i64::MIN,
            last: None,
        }
    }

    /// Learns from a message of gateway `source` (0: unknown, learns
    /// nothing but its receipt time) received at `received_ms`. Call after
    /// its readings were sent to the rules.
    pub fn observe(&mut self, source: u64, readings: &[Reading], received_ms: i64) {
        self.received_ms = self.received_ms.max(received_ms);
        if self.policy == Policy::Fixed || source == 0 || readings.is_empty() {
            return;
        }
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.forget_oldest();
        }
        let s = self.sources.entry(source).or_insert_with(|| Source {
            first_ms: received_ms,
            last_ms: received_ms,
            messages: 0,
            newest_ts: i64::MIN,
            disorder: WindowMax::default(),
            delay: WindowMax::default(),
            disorder_ms: 0,
            delay_ms: 0,
        });
        s.last_ms = s.last_ms.max(received_ms);
        s.messages = (s.messages + 1).min(WARMUP_MESSAGES);
        let (mut disorder, mut oldest) = (0i64, i64::MAX);
        for r in readings {
            if r.ts_ms < s.newest_ts {
                disorder = disorder.max(s.newest_ts.saturating_sub(r.ts_ms));
            }
            s.newest_ts = s.newest_ts.max(r.ts_ms);
            oldest = oldest.min(r.ts_ms);
        }
        let delay = received_ms.saturating_sub(oldest).max(0);
        s.disorder.observe(received_ms, disorder);
        s.delay.observe(received_ms, delay);
        s.disorder_ms = s.disorder_ms.max(disorder);
        s.delay_ms = s.delay_ms.max(delay);
    }

    fn forget_oldest(&mut self) {
        if let Some(&k) = self
            .sources
            .iter()
            .min_by_key(|(_, s)| s.last_ms)
            .map(|(k, _)| k)
        {
            self.sources.remove(&k);
        }
    }

    /// How far event time may advance at clock time `now_ms`.
    pub fn at(&mut self, now_ms: i64) -> i64 {
        let floor = now_ms.saturating_sub(self.lateness_ms);
        if self.policy == Policy::Fixed {
            return floor;
        }
        if now_ms.div_euclid(1000) != self.swept_s {
            self.sweep(now_ms);
        }
        let (r, bound) = (self.received_ms, self.lateness_ms);
        // A gateway never seen out of order is taken at its word: a
        // reading stamped like its newest is still in time.
        let order = |d: i64| match d {
            0 => 0,
            d => (d + d / 4 + ORDER_HEADROOM_MS).min(bound),
        };
        let delay = |a: i64| (a + a / 2 + DELAY_HEADROOM_MS).min(bound);
        let least = self
            .sources
            .values()
            .map(|s| {
                if now_ms.saturating_sub(s.first_ms) < WARMUP_MS || s.messages < WARMUP_MESSAGES {
                    return r.saturating_sub(bound);
                }
                let by_order = s.newest_ts.saturating_sub(order(s.disorder_ms));
                let by_delay = r.saturating_sub(delay(s.delay_ms));
                by_order.max(by_delay)
            })
            .min()
            .unwrap_or(r);
        let answer = floor.max(least.min(r));
        self.last = Some((now_ms, answer));
        answer
    }

    /// [`Watermark::at`], but asked again within the same millisecond it
    /// gives the same answer: it looks at every gateway, so a feeder that
    /// asks after every message does so at most a thousand times a second.
    /// (What was learned meanwhile counts from the next millisecond, or
    /// the next call of [`Watermark::at`].)
    pub fn at_most_once_a_ms(&mut self, now_ms: i64) -> i64 {
        match self.last {
            Some((at, answer)) if at == now_ms && self.policy == Policy::Learned => answer,
            _ => self.at(now_ms),
        }
    }

    /// Forgets the gateways silent for the window and brings the others'
    /// figures up to date.
    fn sweep(&mut self, now_ms: i64) {
        self.swept_s = now_ms.div_euclid(1000);
        self.sources.retain(|_, s| {
            s.disorder_ms = s.disorder.max(now_ms);
            s.delay_ms = s.delay.max(now_ms);
            now_ms.saturating_sub(s.last_ms) < WINDOW_MS
        });
    }
}

#[cfg(test)]
mod tests {
    use hazardwatch_proto::Quality;

    use super::*;

    const T0: i64 = 1_800_000_000_000;
    const LATENESS: i64 = 2_000;

    fn at(ts_ms: i64) -> Reading {
        Reading {
            point: 0,
            ts_ms,
            value: 1.0,
            quality: Quality::Good,
        }
    }

    /// Gateway `g` sends a reading stamped `age` ms before its receipt at
    /// `now`, every `every` ms from `from` to `to`.
    fn steady(w: &mut Watermark, g: u64, from: i64, to: i64, every: i64, age: i64) {
        let mut t = from;
        while t < to {
            w.observe(g, &[at(t - age)], t);
            t += every;
        }
    }

    #[test]
    fn fixed_is_the_clock_less_the_lateness() {
        let mut w = Watermark::new(Policy::Fixed, LATENESS);
        steady(&mut w, 1, T0, T0 + 120_000, 10, 0);
        assert_eq!(w.at(T0 + 120_000), T0 + 120_000 - LATENESS);
    }

    #[test]
    fn a_gateway_is_held_to_the_lateness_until_it_has_been_heard_for_the_warmup() {
        let mut w = Watermark::new(Policy::Learned, LATENESS);
        steady(&mut w, 1, T0, T0 + 9_000, 10, 1);
        assert_eq!(w.at(T0 + 9_000), T0 + 9_000 - LATENESS);
        steady(&mut w, 1, T0 + 9_000, T0 + 61_000, 10, 1);
        // In order, 1 ms old on arrival: judged up to its newest reading
        // (now - 10 - 1); by its delay, only up to the newest receipt time
        // less 1 + 0 + 10.
        let now = T0 + 61_000;
        assert_eq!(w.at(now), now - 11);
        // One that reports every 5 s has sent 12 messages in a minute: not
        // yet enough to be trusted.
        steady(&mut w, 2, T0, T0 + 60_000, 5_000, 0);
        assert_eq!(w.at(now), now - LATENESS);
    }

    #[test]
    fn the_slowest_gateway_sets_the_pace_and_a_new_one_holds_it_back_while_it_learns() {
        let mut w = Watermark::new(Policy::Learned, LATENESS);
        steady(&mut w, 1, T0, T0 + 70_000, 10, 0);
        // Gateway 2 sends every second, its readings 300 ms old on arrival.
        steady(&mut w, 2, T0, T0 + 70_000, 1_000, 300);
        let now = T0 + 70_000;
        // Its newest reading is from 70 s - 1 s - 300 ms; by delay, nothing
        // older than R - (300 + 150 + 10) can still come from it.
        let r = now - 10;
        assert_eq!(w.at(now), r - 460);
        // A third gateway appears: back to the lateness bound for its warmup.
        w.observe(3, &[at(now)], now);
        assert_eq!(w.at(now + 1), now + 1 - LATENESS);
        steady(&mut w, 3, now, now + 61_000, 10, 0);
        steady(&mut w, 1, now, now + 61_000, 10, 0);
        steady(&mut w, 2, now, now + 61_000, 1_000, 300);
        assert!(w.at(now + 61_000) > now + 61_000 - 500);
    }

    #[test]
    fn disorder_seen_is_allowed_for_and_the_figures_never_pass_the_lateness() {
        let mut w = Watermark::new(Policy::Learned, LATENESS);
        let mut t = T0;
        // Each message: a reading now and one 40 ms old (out of order).
        while t < T0 + 61_000 {
            w.observe(1, &[at(t), at(t - 40)], t);
            t += 10;
        }
        let newest = t - 10;
        // Disorder 40 + 10 + 2: newest - 52 (by its delay, 40 + 20 + 10:
        // further back).
        assert_eq!(w.at(t), newest - 52);
        // A gateway 10 s behind is held to the lateness, not 12.5 s.
        steady(&mut w, 2, T0, T0 + 61_000, 100, 10_000);
        assert_eq!(w.at(t), t - LATENESS);
    }

    #[test]
    fn never_past_the_newest_receipt_time_and_silent_gateways_are_forgotten() {
        let mut w = Watermark::new(Policy::Learned, LATENESS);
        // A gateway whose clock runs 500 ms ahead of ours.
        steady(&mut w, 1, T0, T0 + 61_000, 10, -500);
        let r = T0 + 61_000 - 10;
        assert_eq!(w.at(T0 + 61_000), r);
        // Silent for the window: it no longer holds time back, and a new
        // message starts its warmup again.
        let later = T0 + 61_000 + WINDOW_MS;
        assert_eq!(w.at(later), later - LATENESS);
        assert!(w.sources.is_empty());
    }

    #[test]
    fn figures_are_the_largest_of_the_last_ten_minutes() {
        let mut m = WindowMax::default();
        m.observe(T0, 500);
        m.observe(T0 + 60_000, 20);
        assert_eq!(m.max(T0 + 60_000), 500);
        assert_eq!(m.max(T0 + WINDOW_MS - 1), 500);
        assert_eq!(m.max(T0 + WINDOW_MS), 20);
        assert_eq!(m.max(T0 + 2 * WINDOW_MS), 0);
    }

    #[test]
    fn asked_within_a_millisecond_the_answer_stays_until_asked_afresh() {
        let mut w = Watermark::new(Policy::Learned, LATENESS);
        steady(&mut w, 1, T0, T0 + 61_000, 10, 0);
        let now = T0 + 61_000;
        assert_eq!(w.at_most_once_a_ms(now), now - 10);
        // A new gateway holds time back, from the next millisecond on, or
        // when asked afresh.
        w.observe(2, &[at(now)], now);
        assert_eq!(w.at_most_once_a_ms(now), now - 10);
        assert_eq!(w.at_most_once_a_ms(now + 1), now + 1 - LATENESS);
        assert_eq!(w.at(now), now - LATENESS);
    }

    #[test]
    fn the_number_of_gateways_tracked_is_bounded() {
        let mut w = Watermark::new(Policy::Learned, LATENESS);
        for g in 1..=(MAX_SOURCES as u64 + 10) {
            w.observe(g, &[at(T0)], T0 + g as i64);
        }
        assert_eq!(w.sources.len(), MAX_SOURCES);
        assert!(!w.sources.contains_key(&1));
    }
}
