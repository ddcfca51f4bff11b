//! The alarm service of hazardwatch: what happens to a rule's finding from
//! the moment it is an alarm until it is closed, and who may see it.
//!
//! - [`table`]: the ISA-18.2 alarm table: each alarm's state, driven by
//!   rule events and operator actions (acknowledge, shelve, reset, out of
//!   service, disposal), with a sequence number on every transition.
//! - [`hub`]: the table behind one lock with the durable journal and the
//!   live broadcast: numbering, journaling, fan-out, catch-up, filters.
//! - [`wire`]: the table's records as wire messages, with their text.
//! - [`text`]: alarm messages as templates with parameters, in English and
//!   Chinese.
//! - [`escalation`]: closed-loop disposal and escalation chains.
//! - [`risk`]: live risk colours from GB 18218 grades and alarms.
//! - [`eemua`]: alarm-system performance (EEMUA 191) from the journal.
//! - [`access`]: bearer tokens, roles and scopes of callers.
//! - [`error`]: why a request was refused, for the edges to map to their
//!   status codes.
//!
//! This crate knows the rules' site model and the storage's journal, and no
//! transport: the gRPC and HTTP edges live in the binary and turn an
//! [`Error`] into their own status.
//!
//! ```
//! use std::sync::Arc;
//! use hazardwatch_alarms::{AlarmHub, EscalationPolicy, RiskModel};
//! use hazardwatch_proto::{AlarmKind, AlarmSource, Priority, RuleEvent, pb};
//! use hazardwatch_rules::{SiteModel, Source};
//!
//! let text = r#"
//! park = { id = "P" }
//! [[enterprise]]
//! id = "E01"
//! [[enterprise.hazard_source]]
//! id = "HS1"
//! grade = 2
//! [[enterprise.hazard_source.unit]]
//! id = "T101"
//! [[enterprise.hazard_source.unit.point]]
//! id = "T101.LT"
//! kind = "level"
//! eng_unit = "m"
//! range = [0.0, 20.0]
//! hh = 19.0
//! "#;
//! let site = SiteModel::parse(&Source { path: "park.toml".into(), text: text.into() }).unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let journal = hazardwatch_storage::AlarmJournal::open(&dir.path().join("alarms.redb")).unwrap();
//! let (hub, _) = AlarmHub::open(
//!     site.catalog.clone(),
//!     journal,
//!     EscalationPolicy::default(),
//!     RiskModel::from_site(&site),
//!     0,
//! )
//! .unwrap();
//! let point = site.catalog.lookup("T101.LT").unwrap();
//! let raised = RuleEvent::new(
//!     AlarmSource::Point(point), AlarmKind::HighHigh, true, 1_000, 19.3, 19.0, Priority::High,
//! );
//! let events = hub.apply(&[raised]);
//! assert_eq!(events[0].alarm_id, "T101.LT/HH");
//! assert_eq!(events[0].state, pb::AlarmState::UnackedActive as i32);
//! // Numbered 1; its hazard source's risk colour changed with it (event 2).
//! assert_eq!(events[0].seq, 1);
//! assert_eq!(hub.last_seq(), 2);
//! // Its message, in English and (from its template) in Chinese.
//! use hazardwatch_alarms::{text::Lang, wire::message};
//! assert_eq!(events[0].message, "T101.LT level HH 19.300 m (limit 19.000)");
//! assert_eq!(message(&events[0], Lang::Zh), "T101.LT 液位 HH 报警:19.300 m(限值 19.000)");
//! ```

pub mod access;
pub mod eemua;
pub mod error;
pub mod escalation;
pub mod hub;
pub mod rate;
pub mod risk;
pub mod table;
pub mod text;
pub mod wire;

pub use access::{Access, AccessConfig, Caller, Level, Role, Scope, TokensFile};
pub use error::{Error, Result};
pub use escalation::{EscalationPolicy, EscalationSpec};
pub use hub::{Action, AlarmHub, Filter, Restored, Watch};
pub use risk::RiskModel;
