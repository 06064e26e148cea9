//! The command line: upstream's flags for `train`, plus dcl's own subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::options::TrainOptions;

#[derive(Debug, Parser)]
#[command(
    name = "dcl",
    version,
    about = "Distributed continual learning with a distributed rehearsal buffer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model on a data set (upstream's `python main.py` flags).
    #[command(allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
    /// Manage data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// List the models, their --model-config keys and their parameter counts.
    Models(ModelsArgs),
    /// Measure performance.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// An HTML page comparing runs side by side (and every plot as SVG).
    Report(ReportArgs),
    /// Reproduce the comparisons of published continual-learning papers.
    #[command(subcommand)]
    Reproduce(ReproduceCommand),
    /// The watchdog of a run's results (started by `dcl train`, not by hand).
    #[command(hide = true)]
    Watch { dir: PathBuf },
}

/// The flags of `dcl report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The results directories of the runs.
    #[arg(value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Where the page (index.html) and the plots go.
    #[arg(long, short = 'o', default_value = "report", value_name = "DIR")]
    pub output: PathBuf,
}

/// The comparisons `dcl reproduce` runs.
#[derive(Debug, Subcommand)]
pub enum ReproduceCommand {
    /// van de Ven et al. (2022), "Three types of incremental learning": Split-MNIST, every method.
    ThreeTypes(ThreeTypesArgs),
    /// Buzzega et al. (2020) / Mammoth: Seq-MNIST class-IL, online, buffers of 200 and 500.
    SeqMnist(SeqMnistArgs),
}

/// The flags every comparison of `dcl reproduce` takes.
#[derive(Debug, Args)]
pub struct ComparisonArgs {
    /// Seeds per method and setting (0, 1, …).
    #[arg(long, default_value_t = 5)]
    pub seeds: usize,
    /// A reduced variant (fewer images, fewer epochs) that checks the whole comparison end to
    /// end in a minute.
    #[arg(long)]
    pub quick: bool,
    /// The methods to run, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// The data set: mnist or fashion-mnist.
    #[arg(long, default_value = "mnist")]
    pub dataset: String,
    /// Where the data sets are [default: as dcl train].
    #[arg(long, value_name = "DIR")]
    pub dataset_dir: Option<PathBuf>,
    /// Where every run's results and the tables go [default: results/<comparison>].
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// Intra-op threads of each run [default: 2 for three-types, 1 for seq-mnist].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Runs at once (each a `dcl train` process of --threads threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
}

/// The flags of `dcl reproduce three-types`.
#[derive(Debug, Args)]
pub struct ThreeTypesArgs {
    /// The scenarios: task, domain, class or all.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    #[command(flatten)]
    pub comparison: ComparisonArgs,
}

/// The flags of `dcl reproduce seq-mnist`.
#[derive(Debug, Args)]
pub struct SeqMnistArgs {
    /// The buffer sizes of the methods that store samples, comma-separated (Mammoth tunes 200,
    /// 500 and 5120; other sizes take the settings of the nearest).
    #[arg(long, value_delimiter = ',', default_value = "200,500")]
    pub buffers: Vec<usize>,
    #[command(flatten)]
    pub comparison: ComparisonArgs,
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
    /// Continue the run whose results are in DIR from its last checkpoint, with the settings
    /// of its config.json (the same number of workers).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// No progress bars: one line per epoch (for logs and CI).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Write TensorBoard event files under RESULTS/tensorboard as training goes (`false`: none).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub tensorboard: bool,
    /// Data-parallel runs: seconds any collective or remote draw may make no progress before
    /// the job ends with an error naming the rank(s) that stopped answering.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0, value_parser = positive_seconds)]
    pub comm_timeout: f64,
}

/// The options of `dcl train` as they are when none is given.
pub fn default_train_options() -> TrainOptions {
    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        options: TrainOptions,
    }
    Probe::try_parse_from(["dcl"]).expect("no option is required").options
}

/// An image shape written `CxHxW` (`3x32x32`).
pub fn image_shape(text: &str) -> Result<[usize; 3], String> {
    let dims: Vec<usize> = text.split('x').filter_map(|d| d.parse().ok()).collect();
    match dims[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 && text.split('x').count() == 3 => Ok([c, h, w]),
        _ => Err(format!("expected an image shape like 3x32x32, not '{text}'")),
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Ok(seconds),
        _ => Err(format!("expected a number of seconds > 0, not '{text}'")),
    }
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Classes of the classifier.
    #[arg(long, default_value_t = 1000)]
    pub num_classes: usize,
    /// Input shape, CxHxW.
    #[arg(long, default_value = "3x224x224", value_parser = image_shape)]
    pub input: [usize; 3],
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
    /// Time the rehearsal buffer's insertion and sampling on synthetic samples.
    Buffer(BufferArgs),
    /// Time training steps with rehearsal (B fresh + R representatives) against plain steps
    /// of B+R samples, alternating, on MNIST.
    Rehearsal(RehearsalArgs),
    /// Time the loader: whole passes over a data set's training images through its training
    /// pipeline (decoding, crops, flips, normalisation), without training.
    Loader(LoaderArgs),
    /// Under mpirun: draw representatives over every rank's buffer (global sampling) and
    /// locally; report rates, and with --check verify uniformity, duplicates and integrity.
    Sampling(SamplingArgs),
    /// Under mpirun: dcl's gradient all-reduce (mean) against a bare MPI all-reduce.
    Allreduce(AllreduceArgs),
    /// Time a checkpoint of a model (after a few steps: with optimiser state) and a full
    /// rehearsal buffer: the training thread's snapshot, the background write, the size.
    Checkpoint(CheckpointArgs),
    /// Time the training step of every agent (method) against er's, on MNIST-shaped batches.
    Agents(AgentsArgs),
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[arg(long, default_value = "resnet50")]
    pub model: String,
    /// Input shape CxHxW (also the buffer's sample shape).
    #[arg(long, default_value = "3x224x224", value_parser = image_shape)]
    pub input: [usize; 3],
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    /// Samples in the (full) buffer, stored as tensors.
    #[arg(long, default_value_t = 10_000)]
    pub buffer: usize,
    /// Where to write the checkpoint (a results directory; created, then removed).
    #[arg(long, default_value = "bench-checkpoint")]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct AllreduceArgs {
    /// Floats per all-reduce (11.2 M: a ResNet-18's gradients).
    #[arg(long, default_value_t = 11_200_000)]
    pub floats: usize,
    /// Timed all-reduces per side and round.
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Rounds alternating the two sides.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

#[derive(Debug, Args)]
pub struct LoaderArgs {
    /// The data set.
    #[arg(long, default_value = "imagenet")]
    pub dataset: String,
    /// Directory holding the data sets (as `dcl train --dataset-dir`).
    #[arg(long, env = "DCL_DATASET_DIR", default_value = "data")]
    pub dataset_dir: PathBuf,
    /// The side of the network inputs [default: the data set's].
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Augmentation of small images: none or crop_flip.
    #[arg(long, default_value = "none", value_parser = ["none", "crop_flip"])]
    pub augment: String,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Threads decoding and transforming, besides the loader's own.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Timed passes (after one untimed); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
}

#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Representatives per draw.
    #[arg(long, default_value_t = 64)]
    pub representatives: usize,
    /// Draws per rank.
    #[arg(long, default_value_t = 2000)]
    pub draws: usize,
    /// Samples in rank r's buffer: (r + 1) x this.
    #[arg(long, default_value_t = 100)]
    pub fill: usize,
    /// Bytes of each sample beyond its 5-byte header (784: MNIST-sized); samples differ in
    /// length by up to 2 bytes, as encoded files do.
    #[arg(long, default_value_t = 784)]
    pub sample_len: usize,
    /// Fail unless every rank's share is within 10 % of its share of the samples, no draw
    /// repeats a sample, every sample arrives intact with its rank of origin, and the first
    /// draw already reaches every rank's buffer.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct RehearsalArgs {
    /// B: fresh samples per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Where the steps run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = clap::value_parser!(dcl_train::DeviceChoice))]
    pub device: dcl_train::DeviceChoice,
    /// R: representatives per step.
    #[arg(long, default_value_t = 64)]
    pub representatives: usize,
    /// Pipeline mode of the rehearsal steps: standard or flyweight.
    #[arg(long, default_value = "standard", value_parser = ["standard", "flyweight"])]
    pub mode: String,
    /// Timed steps per round and side.
    #[arg(long, default_value_t = 150)]
    pub steps: usize,
    /// Rounds; each runs the rehearsal side then the plain side.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Intra-op CPU threads of libtorch.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Directory holding `mnist/`.
    #[arg(long, env = "DCL_DATASET_DIR", default_value = "data")]
    pub dataset_dir: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct BufferArgs {
    /// Sample shape: mnist (1x28x28) or cifar (3x32x32).
    #[arg(long, default_value = "mnist", value_parser = ["mnist", "cifar"])]
    pub shape: String,
    /// Insertion policy: upstream, reservoir, class_balanced.
    #[arg(long, default_value = "class_balanced", value_parser = ["upstream", "reservoir", "class_balanced"])]
    pub policy: String,
    /// Buffer slots in all.
    #[arg(long, default_value_t = 5000)]
    pub capacity: usize,
    /// Samples offered per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Representatives drawn per batch.
    #[arg(long, default_value_t = 64)]
    pub representatives: usize,
    /// Batches per repeat (the first half of the first repeat fills the buffer).
    #[arg(long, default_value_t = 2000)]
    pub batches: usize,
    /// Repeats; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The flags of `dcl bench agents`.
#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// Fresh samples per step (and as many replayed, for the agents that replay).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Intra-op CPU threads of libtorch.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Timed steps per agent and round.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Rounds (every agent once per round, after a warm-up round); the median is reported.
    #[arg(long, default_value_t = 7)]
    pub repeats: usize,
}

/// The flags of `dcl bench step`.
#[derive(Debug, Args)]
pub struct StepArgs {
    #[arg(long, default_value = "mnistnet")]
    pub model: String,
    /// Model parameters, as a Python dict literal (`--model-config "{'variant': 's'}"`).
    #[arg(long, value_parser = crate::options::literal::parse_dict, default_value = "{}")]
    pub model_config: serde_json::Map<String, serde_json::Value>,
    /// Input shape, CxHxW.
    #[arg(long, default_value = "1x28x28", value_parser = image_shape)]
    pub input: [usize; 3],
    /// Classes of the classifier.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(dcl_train::DeviceChoice))]
    pub device: dcl_train::DeviceChoice,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Mixed precision, as `dcl train --amp`: off, bf16 or fp16.
    #[arg(long, default_value = "off", value_parser = clap::value_parser!(dcl_train::Precision))]
    pub amp: dcl_train::Precision,
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
