//! Operator actions (acknowledge, shelve, comment, unit-state changes) are
//! limited per token: each is one durable journal commit, an fsync, and a
//! client that sends them without pause would delay the alarms committed
//! between them. A token bucket per token allows a burst the size of a
//! flood screen being acknowledged, then a steady rate far above what
//! people do by hand.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Actions a token may take at once.
pub const ACTION_BURST: f64 = 200.0;
/// Actions a token may take per second after the burst.
pub const ACTIONS_PER_S: f64 = 20.0;

/// The buckets, by token name (the names are the configured tokens', so
/// the map is as small as the access list).
#[derive(Debug, Default)]
pub struct ActionLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl ActionLimiter {
    /// Takes one action for `who` at `now_ms`, or says how long to wait.
    pub fn admit(&self, who: &str, now_ms: i64) -> Result<()> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(who.to_owned()).or_insert(Bucket {
            tokens: ACTION_BURST,
            at_ms: now_ms,
        });
        // A clock stepped back refills nothing and takes nothing away.
        let elapsed_s = now_ms.saturating_sub(bucket.at_ms).max(0) as f64 / 1_000.0;
        bucket.tokens = (bucket.tokens + elapsed_s * ACTIONS_PER_S).min(ACTION_BURST);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait_ms = ((1.0 - bucket.tokens) / ACTIONS_PER_S * 1_000.0).ceil() as u64;
        Err(Error::RateLimited {
            who: who.to_owned(),
            retry_after_ms: wait_ms.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate_per_token() {
        let limiter = ActionLimiter::default();
        let burst = ACTION_BURST as usize;
        for _ in 0..burst {
            limiter.admit("console", 1_000).unwrap();
        }
        let err = limiter.admit("console", 1_000).unwrap_err();
        assert!(
            matches!(
                err,
                Error::RateLimited {
                    retry_after_ms: 50,
                    ..
                }
            ),
            "{err:?}"
        );
        // Another token has its own bucket.
        limiter.admit("county", 1_000).unwrap();
        // One second later: twenty more, not twenty-one.
        for _ in 0..ACTIONS_PER_S as usize {
            limiter.admit("console", 2_000).unwrap();
        }
        assert!(limiter.admit("console", 2_000).is_err());
        // A clock stepped back neither refills nor breaks the bucket.
        assert!(limiter.admit("console", 0).is_err());
        limiter.admit("console", 2_050).unwrap();
    }
}
