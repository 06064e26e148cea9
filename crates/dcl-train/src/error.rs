//! The error type of training.

use std::path::PathBuf;

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] dcl_data::DataError),
    #[error(transparent)]
    Model(#[from] dcl_models::ModelError),
    #[error(transparent)]
    Buffer(#[from] dcl_buffer::BufferError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("results directory {path} already exists; choose another --results-dir or pass --overwrite")]
    RunDirExists { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Config(String),
}
