//! A configuration file's text and path: parsing with positions, and the
//! error that gathers every problem of one file.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A configuration file's text and path, for turning byte spans into
/// `file:line:column` positions.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where the text came from.
    pub path: PathBuf,
    /// The whole file.
    pub text: String,
}

impl Source {
    /// Reads a file.
    pub fn read(path: &Path) -> Result<Source> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Source {
            path: path.to_owned(),
            text,
        })
    }

    /// A file the configuration names, relative to the configuration's
    /// own directory (an absolute path stays as it is).
    pub fn beside(&self, file: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) => dir.join(file),
            None => file.to_owned(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        (line, column)
    }

    /// Parses the text as `T`, turning a TOML or schema error into
    /// [`Error::Parse`] with the position it names.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        toml::from_str(&self.text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| self.line_col(s.start));
            Error::Parse {
                path: self.path.clone(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })
    }

    pub(crate) fn invalid(&self, span: Range<usize>, field: String, message: String) -> Error {
        let (line, column) = self.line_col(span.start);
        Error::Invalid {
            path: self.path.clone(),
            line,
            column,
            field,
            message,
        }
    }
}

/// All validation problems of one file, reported together.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Invalid(pub Vec<Error>);
