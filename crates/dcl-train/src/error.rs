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
    /// A libtorch failure, as one line (see [`crate::guard`]).
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("out of memory in {what} ({detail}); try a smaller --batch-size (or --eval-batch-size)")]
    OutOfMemory { what: String, detail: String },
    /// SIGINT or SIGTERM (or a peer's) stopped the run between two steps.
    #[error("interrupted")]
    Interrupted,
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

impl From<tch::TchError> for TrainError {
    fn from(error: tch::TchError) -> Self {
        crate::guard::torch_error("a tensor operation", &error.to_string())
    }
}
