//! The one error type of the library. Every variant names the file, line,
//! column or field it is about, so that an operator can act on the message
//! alone.

use std::path::PathBuf;

/// Library result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in anomalyd's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The I/O error is part of the message and deliberately not a
    /// `source`: a report that prints the chain (`{:#}`) would otherwise
    /// say it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A problem in an input CSV file, pinned to a line (1-based, header is
    /// line 1) and, where there is one, a column.
    #[error("{path}:{line}{}: {reason}", column.as_ref().map(|c| format!(" column '{c}'")).unwrap_or_default())]
    Data {
        path: PathBuf,
        line: u64,
        column: Option<String>,
        reason: String,
    },

    /// A labels file entry that cannot be meant as written, named by its
    /// series key.
    #[error("{path}: series '{series}': {reason}")]
    Labels {
        path: PathBuf,
        series: String,
        reason: String,
    },

    /// A command-line or config value that cannot work, named by its flag or
    /// field.
    #[error("invalid {field}: {reason}")]
    Config { field: String, reason: String },

    /// Training data too short to cut one training window from. Its own
    /// variant because callers treat it apart from other bad settings:
    /// `train` then goes without its coarse model, `eval` skips the series.
    #[error(
        "invalid --window: no training windows of length {window} fit in {rows} rows ({detail})"
    )]
    TooFewRows {
        window: usize,
        rows: usize,
        detail: String,
    },

    /// A model artifact that cannot be loaded as it is.
    #[error("model artifact {path}: {reason}")]
    Artifact { path: PathBuf, reason: String },

    /// Data that does not fit the model it is scored with.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// The tensor backend refused an operation (device lost, dtype mismatch).
    #[error("tensor backend: {0}")]
    Backend(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause: source,
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn artifact(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Artifact {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A short, bounded label for metrics and logs (never contains data).
    pub fn kind_label(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Data { .. } | Self::Labels { .. } => "data",
            Self::Config { .. } | Self::TooFewRows { .. } => "config",
            Self::Artifact { .. } => "artifact",
            Self::Shape(_) => "shape",
            Self::Backend(_) => "backend",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_say_their_cause_once_in_a_chain() {
        let error = anyhow::Error::from(Error::io(
            "/data/x.csv",
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
        let chain = format!("{error:#}");
        assert_eq!(chain, "/data/x.csv: no such file");
    }
}
