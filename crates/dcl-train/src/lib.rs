//! Training for dcl: the task/epoch loop, evaluation, the metrics of a run, and the
//! files a run leaves in its results directory.

pub mod agents;
pub mod amp;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod guard;
pub mod learner;
pub mod metrics;
pub mod model_regimes;
pub mod observer;
pub mod optimizer;
pub mod regime;
pub mod rehearsal;
pub mod results;
pub mod schedule;
mod shim;
pub mod tensorboard;
pub mod trainer;
pub mod writers;

pub use amp::Precision;
pub use config::{AgentConfig, LrScaling, RunConfig};
pub use device::DeviceChoice;
pub use error::TrainError;
pub use learner::Learner;
pub use metrics::{EpochRecord, EvalRecord, Figures, RunRecord, Summary};
pub use model_regimes::{default_regime, BaseFlags};
pub use observer::TrainObserver;
pub use regime::{Hyperparameters, OptimizerDetails, OptimizerKind, OptimizerSettings, Regime, RegimeEntry};
pub use rehearsal::{BufferSize, DrawCounts, PipelineMode, PolicyName, RehearsalConfig, ReplaySource, StoreMode};
pub use results::{RunDir, RunIdentity, RunStatus};
pub use trainer::{train, Trainer};
pub use writers::SummaryFile;

/// The version of dcl, recorded in every run's summary.
pub const DCL_VERSION: &str = env!("CARGO_PKG_VERSION");
