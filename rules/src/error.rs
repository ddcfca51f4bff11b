//! Errors of the rules crate.

use std::path::PathBuf;

/// Everything that can go wrong loading a site model or running the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The site model file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown field,
    /// wrong type, unknown kind). The message names line and column.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's explanation.
        message: String,
    },
    /// A value is well-formed but wrong (limit outside range, HH below H,
    /// duplicate id ...).
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// The field, qualified by the point or unit it belongs to, e.g.
        /// `point T101.LT: hh`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// More problems than are listed, counted.
    #[error("{path}: and {count} more problems like those above")]
    More {
        /// The file.
        path: PathBuf,
        /// Problems not listed.
        count: usize,
    },
    /// A service setting (`[engine]`) is out of its range.
    #[error("{field}: {message}")]
    Setting {
        /// The field, e.g. `engine.workers`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The timely dataflow could not start.
    #[error("rule engine: {0}")]
    Engine(String),
}

/// Result alias of the rules crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
