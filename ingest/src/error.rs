//! Errors of the ingest crate.

use std::path::PathBuf;

/// What can go wrong in ingest (bad messages are not errors: they are
/// quarantined; these are failures of ingest itself).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong; the message names it.
    #[error("mqtt config: {0}")]
    Config(String),
    /// The embedded broker did not come up.
    #[error("embedded MQTT broker on {addr}: {reason}")]
    Broker {
        /// Where it should listen.
        addr: String,
        /// Why it failed.
        reason: String,
    },
    /// The quarantine file could not be written.
    #[error("quarantine {path}: {source}")]
    Quarantine {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result alias of the ingest crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
