//! The contract every hazardwatch crate shares.
//!
//! - [`pb`]: the wire types generated from `hazardwatch/v1/*.proto` (prost
//!   messages, tonic clients and servers) and the descriptor set that the
//!   gRPC reflection service serves.
//! - [`reading`]: [`Reading`] and [`Quality`], the unit of telemetry inside the
//!   service. A reading names its point by a dense [`PointIdx`], not a string.
//! - [`catalog`]: [`Catalog`], the table from point name to [`PointIdx`] and
//!   to the point's place in the site (enterprise, hazard source, unit, kind).
//! - [`registry`]: [`Registry`], the gateways allowed to report the
//!   points, which points each reports, and how it authenticates.
//! - [`alarm`]: [`RuleEvent`], what the rule engine emits, with [`AlarmKind`]
//!   and [`Priority`].
//! - [`clock`]: the [`clock::Clock`] every crate asks for "now" (the wall
//!   clock in production, a settable one in tests). It lives here because
//!   every crate shares it and it has no implementation to speak of.
//! - [`order`]: ordering records by dense keys (points, epochs) in linear
//!   time, for the rule engine and the archive.
//!
//! ```
//! use hazardwatch_proto::{Catalog, PointKind, PointMeta, Quality, Reading};
//!
//! let mut catalog = Catalog::default();
//! let idx = catalog.insert(PointMeta::new("T101.LT", "E01", "E01-HS1", "T101", PointKind::Level, "m"));
//! assert_eq!(catalog.lookup("T101.LT"), Some(idx));
//! let r = Reading { point: idx, ts_ms: 1_732_262_400_123, value: 12.34, quality: Quality::Good };
//! assert_eq!(catalog.meta(r.point).enterprise, "E01");
//! ```

pub mod alarm;
pub mod catalog;
pub mod clock;
pub mod order;
pub mod reading;
pub mod registry;

pub use alarm::{AlarmKind, AlarmSource, Priority, RuleEvent};
pub use catalog::{Catalog, PointKind, PointMeta, PointView, UnitMeta};
pub use reading::{ConsoleIdx, PointIdx, Quality, Reading, UnitIdx};
pub use registry::{Credential, GatewayIdx, GatewayInfo, NO_GATEWAY, Registry};

/// Generated protobuf and gRPC types of package `hazardwatch.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("hazardwatch.v1");
    include!(concat!(env!("OUT_DIR"), "/hazardwatch.v1.serde.rs"));

    /// Encoded `FileDescriptorSet` of every `.proto` file, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hazardwatch_descriptor.bin"));
}

/// Generated types of the Sparkplug B payload (`org.eclipse.tahu.protobuf`,
/// see `sparkplug_b/sparkplug_b.proto`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod sparkplug {
    tonic::include_proto!("org.eclipse.tahu.protobuf");
}
