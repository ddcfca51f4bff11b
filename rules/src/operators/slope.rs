//! Least-squares slope over a sliding event-time window, shared by the
//! trend rules (rate of change, predicted time to limit).

use std::collections::VecDeque;

/// The readings of one point inside the window, oldest first.
#[derive(Debug, Default, Clone)]
pub struct SlopeWindow {
    points: VecDeque<(i64, f64)>,
}

/// A straight line fitted to the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Slope, engineering units per second.
    pub per_s: f64,
    /// The line's value at the newest reading's time (less noisy than the
    /// reading itself).
    pub value_now: f64,
}

/// Fewest readings a fit is made from.
pub const MIN_POINTS: usize = 3;

impl SlopeWindow {
    /// Adds a reading (in event-time order) and drops those older than
    /// `window_ms` before it.
    pub fn push(&mut self, ts_ms: i64, value: f64, window_ms: i64) {
        self.points.push_back((ts_ms, value));
        while let Some(&(t, _)) = self.points.front() {
            if ts_ms - t > window_ms {
                self.points.pop_front();
            } else {
                break;
            }
        }
    }

    /// The fitted line, once the window holds at least [`MIN_POINTS`]
    /// readings spanning at least half of `window_ms` (a slope from two
    /// close readings is noise, not a trend).
    pub fn fit(&self, window_ms: i64) -> Option<Fit> {
        let n = self.points.len();
        let (&(first, _), &(last, _)) = (self.points.front()?, self.points.back()?);
        if n < MIN_POINTS || (last - first) * 2 < window_ms {
            return None;
        }
        // Times in seconds relative to the newest reading, centred: keeps
        // the sums small and the fit well conditioned.
        let nf = n as f64;
        let (mut st, mut sv) = (0.0, 0.0);
        for &(t, v) in &self.points {
            st += (t - last) as f64 / 1000.0;
            sv += v;
        }
        let (mt, mv) = (st / nf, sv / nf);
        let (mut stt, mut stv) = (0.0, 0.0);
        for &(t, v) in &self.points {
            let dt = (t - last) as f64 / 1000.0 - mt;
            stt += dt * dt;
            stv += dt * (v - mv);
        }
        if stt <= 0.0 {
            return None;
        }
        let per_s = stv / stt;
        Some(Fit {
            per_s,
            // The line at t = 0 (the newest reading).
            value_now: mv - per_s * mt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_straight_line_and_needs_enough_span() {
        let mut w = SlopeWindow::default();
        for i in 0..10 {
            w.push(i * 1000, 5.0 + 0.5 * i as f64, 60_000);
        }
        // 9 s of data in a 60 s window: not enough span yet.
        assert!(w.fit(60_000).is_none());
        let f = w.fit(10_000).unwrap();
        assert!((f.per_s - 0.5).abs() < 1e-12);
        assert!((f.value_now - 9.5).abs() < 1e-9);
    }

    #[test]
    fn old_readings_leave_the_window() {
        let mut w = SlopeWindow::default();
        for i in 0..100 {
            // Flat, then a ramp for the last 10 s.
            let v = if i < 90 { 1.0 } else { 1.0 + (i - 89) as f64 };
            w.push(i * 1000, v, 9_000);
        }
        let f = w.fit(9_000).unwrap();
        assert!((f.per_s - 1.0).abs() < 1e-9, "{f:?}");
    }
}
