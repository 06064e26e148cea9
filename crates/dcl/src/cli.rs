//! The command line: upstream's flags for `train`, plus dcl's own subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::options::TrainOptions;

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

/// The flags of `dcl train`: upstream's options plus dcl's own.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub options: TrainOptions,
    /// YAML file of named option sections; its values override the command line.
    #[arg(long, value_name = "FILE")]
    pub yaml_config: Option<PathBuf>,
    /// Section of --yaml-config to use.
    #[arg(long, value_name = "NAME")]
    pub config: Option<String>,
    /// Print the resolved configuration as JSON and exit without training.
    #[arg(long)]
    pub print_config: bool,
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
