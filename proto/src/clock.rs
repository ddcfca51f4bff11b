//! The one clock: every part of hazardwatch that needs "now" asks a
//! [`Clock`] it was given, never the system directly, so that tests can
//! set time where they want it (shelf expiry, escalation deadlines, stale
//! points, retention, the live watermark).
//!
//! ```
//! use hazardwatch_proto::clock::{Clock, SettableClock};
//!
//! let clock = SettableClock::new(1_000);
//! clock.advance(500);
//! assert_eq!(clock.now_ms(), 1_500);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// A clock shared by the parts of one service.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock: production's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

impl WallClock {
    /// The wall clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(WallClock)
    }
}

/// A clock that stands still until it is set or advanced: tests' clock.
#[derive(Debug, Default)]
pub struct SettableClock(AtomicI64);

impl SettableClock {
    /// A clock standing at `now_ms`.
    pub fn new(now_ms: i64) -> SettableClock {
        SettableClock(AtomicI64::new(now_ms))
    }

    /// Sets the time.
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time on by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for SettableClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// An RFC 3339 UTC time stamp with milliseconds (`2026-11-23T09:40:01.123Z`)
/// of a Unix-ms time, for records that people read.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
