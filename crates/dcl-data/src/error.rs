//! The one error type of the data crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, fetching or loading data.
///
/// Every variant names the file or data set concerned, so that its `Display` is a
/// complete one-line message for the user.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what its format requires.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A data set's directory or one of its files is missing.
    #[error("{what} not found at {path}; run `dcl data fetch {dataset}{dir_hint}` first")]
    Missing {
        what: String,
        path: PathBuf,
        dataset: String,
        /// ` --dataset-dir DIR` when the directory is not the default one, else empty.
        dir_hint: String,
    },
    /// The name does not belong to any data set of the catalogue.
    #[error("unknown dataset '{name}'; valid datasets: {valid}")]
    UnknownDataset { name: String, valid: String },
    /// A downloaded or unpacked file does not have the expected checksum.
    #[error("{path}: checksum mismatch (md5 {actual}, expected {expected}); the file was deleted")]
    Checksum {
        path: PathBuf,
        actual: String,
        expected: String,
    },
    /// The images cannot be shaped as asked (`--input-size`).
    #[error("{0}")]
    Pipeline(String),
    /// A data set that dcl cannot download (its licence forbids it) is not where its layout puts it.
    #[error("{what} not found at {path}; {instructions}")]
    ManualDownload {
        what: String,
        path: PathBuf,
        /// Where to get the data and how to lay it out.
        instructions: String,
    },
    /// No source of a data set could deliver it.
    #[error("could not fetch {dataset}: {reasons}")]
    Unavailable { dataset: String, reasons: String },
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    /// A content error of the file at `path`.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
