//! The site model: park > enterprise > hazard source > unit > point, with
//! each point's instrument range, alarm limits and rule parameters.
//!
//! The rooms, one per question:
//!
//! - [`spec`]: what the TOML file says: the `*Spec` structs (serde,
//!   `deny_unknown_fields`, spans kept for error messages).
//! - [`model`]: what the engine runs on: [`SiteModel`], validated, with
//!   every default filled in.
//! - [`check`]: what makes a file invalid: [`SiteModel::parse`] and
//!   [`SiteModel::from_spec`] turn a spec into a model or report every
//!   problem, each naming file, line, column and field.
//! - [`source`]: a file's text and path, and its positions.
//!
//! Everything is re-exported here, so `hazardwatch_rules::site::X` names
//! any of them.

pub mod check;
pub mod model;
pub mod source;
pub mod spec;

pub use hazardwatch_proto::registry::{Credential, GatewayIdx, GatewayInfo, NO_GATEWAY, Registry};
pub use model::*;
pub use source::*;
pub use spec::*;
