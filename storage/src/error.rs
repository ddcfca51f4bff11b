//! Errors of the storage crate.

use std::path::PathBuf;

/// What can go wrong writing or reading the archive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed on the named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Parquet encoding or decoding failed for the named file.
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The parquet error.
        source: parquet::errors::ParquetError,
    },
    /// Building an Arrow batch failed (a bug: the schema is ours).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The alarm journal failed: the database could not be opened, read or
    /// written, or holds something that does not decode.
    #[error("{path}: alarm journal: {message}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The write-ahead log holds a whole, checksummed record that does not
    /// decode: written by something else, or a bug. Never silently skipped.
    #[error("{path}: write-ahead log: {message}")]
    Wal {
        /// The segment.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The archive's transaction record is unreadable or names a file
    /// that is gone.
    #[error("{path}: archive transaction: {message}")]
    Txn {
        /// The record.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An archive file does not hold what the archive's schema says.
    #[error("{path}: {message}")]
    Archive {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting is out of range.
    #[error("archive config: {0}")]
    Config(String),
}

/// Result alias of the storage crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names the file of a Parquet (or Arrow, while reading it) error.
pub(crate) fn parquet<E: Into<parquet::errors::ParquetError>>(
    path: impl Into<PathBuf>,
) -> impl FnOnce(E) -> Error {
    let path = path.into();
    move |e| Error::Parquet {
        path,
        source: e.into(),
    }
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
