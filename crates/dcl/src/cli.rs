//! The command line: upstream's flags for `train`, plus dcl's own subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "dcl", version, about = "Distributed continual learning with a distributed rehearsal buffer")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model on a data set (upstream's `python main.py` flags).
    Train(Box<TrainArgs>),
    /// Manage data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Measure performance.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// The flags of `dcl train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[arg(long, help = format!("Model to train: {}", dcl_models::model_names()))]
    pub model: String,
    #[arg(long, default_value = "mnist", help = format!("Data set: {}", dcl_data::catalog::dataset_names()))]
    pub dataset: String,
    /// Directory holding one folder per data set (`<DIR>/mnist/…`).
    #[arg(long, env = "DCL_DATASET_DIR", default_value = "data")]
    pub dataset_dir: PathBuf,
    /// Epochs per task.
    #[arg(long, default_value_t = 25)]
    pub epochs: usize,
    /// Training minibatch size (per worker).
    #[arg(long, short = 'b', default_value_t = 64)]
    pub batch_size: usize,
    /// Evaluation minibatch size [default: the training batch size].
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    /// Learning rate of SGD.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Random seed of initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Intra-op CPU threads of libtorch [default: libtorch's choice, one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Train on the first N training samples only (quick experiments, smoke tests).
    #[arg(long, value_name = "N")]
    pub train_samples: Option<usize>,
    /// Show the training loss every N batches.
    #[arg(long, default_value_t = 10)]
    pub log_interval: usize,
    /// Directory of this run's results [default: results/<UTC time>-<model>-<dataset>].
    #[arg(long, visible_alias = "save-dir", value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// Replace the results of an earlier run in the same directory.
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bars: one line per epoch (for logs and CI).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download a data set and verify its checksums.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[arg(help = format!("Data set to fetch: {}", dcl_data::catalog::dataset_names()))]
    pub dataset: String,
    /// Directory holding one folder per data set; the files go to `<DIR>/<dataset>/`.
    #[arg(long, env = "DCL_DATASET_DIR", default_value = "data")]
    pub dataset_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time the bare training step of a model on synthetic data (no data pipeline).
    Step(StepArgs),
}

#[derive(Debug, Args)]
pub struct StepArgs {
    #[arg(long, default_value = "mnistnet")]
    pub model: String,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Intra-op CPU threads of libtorch.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Untimed steps before measuring.
    #[arg(long, default_value_t = 30)]
    pub warmup: usize,
    /// Timed steps per repeat.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Repeats; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}
