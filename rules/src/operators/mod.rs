//! Rule operators. [`event_time`] holds the mechanics every rule shares
//! (epochs, records, timers, the rule trait) and [`per_key`] the operator
//! that applies them (exchange by key, stash by epoch, ordered processing
//! once the frontier passes, event-time timers); each rule is a [`KeyedLogic`] in a file of
//! its own: per point over readings, per unit (voting, correlation) and per
//! console (flood, chattering) over the rule events before them.

pub mod chattering;
pub mod correlation;
pub mod deviation;
pub mod event_time;
pub mod fault;
pub mod flatline;
pub mod flood;
pub mod gateway;
pub mod multivariate;
pub(crate) mod ordering;
pub mod per_key;
pub mod persistence;
pub mod predict;
pub mod rate_of_change;
pub mod slope;
pub mod stale;
mod tables;
pub mod threshold;
pub mod unit_state;
pub mod voting;

pub use chattering::Chattering;
pub use correlation::Correlation;
pub use deviation::Deviation;
pub use event_time::{EachEvent, EndOfInput, Epochs, KeyedLogic, Rare, Routed, Scheduled, Timed};
pub use fault::Fault;
pub use flatline::Flatline;
pub use flood::Flood;
pub use gateway::GatewayOffline;
pub use multivariate::Multivariate;
pub use per_key::{PerKey, Routing};
pub use predict::Predict;
pub use rate_of_change::RateOfChange;
pub use stale::Stale;
pub use threshold::Threshold;
pub use voting::Voting;
