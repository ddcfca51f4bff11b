//! k of the last n: the persistence of the learned rules' pre-alarms
//! (deviation, multivariate). A condition is raised when its test failed in
//! `k` of the last `n` samples and returns to normal when it failed in none
//! of them, so a single odd sample neither raises nor clears it.

/// The last samples' outcomes and whether the condition is active.
#[derive(Debug, Default, Clone, Copy)]
pub struct Persistence {
    /// Whether the test failed in each of the last samples, newest in bit 0.
    signals: u32,
    active: bool,
}

impl Persistence {
    /// Records one sample (`signal`: its test failed) against `k` of the
    /// last `n` (n at most 32); the condition's new state when it changes.
    pub fn push(&mut self, signal: bool, k: u32, n: u32) -> Option<bool> {
        let window = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
        self.signals = ((self.signals << 1) | u32::from(signal)) & window;
        let signalled = self.signals.count_ones();
        if !self.active && signalled >= k {
            self.active = true;
            Some(true)
        } else if self.active && signalled == 0 {
            self.active = false;
            Some(false)
        } else {
            None
        }
    }

    /// The condition was active when the service stopped: as if it had
    /// signalled throughout, so it clears after a whole window of quiet
    /// samples, not at the first one.
    pub fn restore(&mut self) {
        self.active = true;
        self.signals = u32::MAX;
    }

    /// Whether the condition is active.
    pub fn active(&self) -> bool {
        self.active
    }

    /// The condition's active flag, for a rule that ends it by other means
    /// (`event_time::withdraw` on a reload).
    pub fn active_mut(&mut self) -> &mut bool {
        &mut self.active
    }
}

#[cfg(test)]
mod tests {
    use super::Persistence;

    #[test]
    fn raised_at_k_of_n_and_cleared_after_n_quiet_samples() {
        let mut p = Persistence::default();
        let seen: Vec<Option<bool>> = [
            true, false, true, true, true, false, false, false, false, false,
        ]
        .into_iter()
        .map(|s| p.push(s, 3, 5))
        .collect();
        assert_eq!(
            seen,
            [
                None,
                None,
                None,
                Some(true),
                None,
                None,
                None,
                None,
                None,
                Some(false)
            ]
        );
        let mut p = Persistence::default();
        p.restore();
        assert!(p.active());
        let quiet: Vec<Option<bool>> = (0..5).map(|_| p.push(false, 3, 5)).collect();
        assert_eq!(quiet, [None, None, None, None, Some(false)]);
    }
}
