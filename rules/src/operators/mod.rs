//! Rule operators. [`event_time`] holds the mechanics every per-point rule
//! shares (stash by epoch, ordered processing once the frontier passes,
//! event-time timers); each rule is a [`PointLogic`] in a file of its own.

pub mod event_time;
pub mod fault;
pub mod flatline;
pub mod health;
pub mod predict;
pub mod rate_of_change;
pub mod slope;
pub mod stale;
pub mod threshold;

pub use event_time::{EndOfInput, Epochs, PerPoint, PointLogic, Scheduled};
pub use fault::Fault;
pub use flatline::Flatline;
pub use health::PointTable;
pub use predict::Predict;
pub use rate_of_change::RateOfChange;
pub use stale::Stale;
pub use threshold::Threshold;
