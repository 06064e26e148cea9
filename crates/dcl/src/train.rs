//! `dcl train`: resolve the configuration, load the data, train, write the results.
//!
//! Everything that can be checked is checked on every rank before rank 0 creates the
//! results directory, so that a refused run leaves nothing behind. From then on the results
//! are written after every evaluation with the run's state; the run ends `complete`,
//! `failed` (with the error), or `interrupted` (a signal, or a process killed outright: see
//! [`crate::watchdog`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use dcl_data::{Scenario, ScenarioOptions, SplitDataset};
use dcl_dist::Communicator;
use dcl_train::{
    EpochRecord, RunConfig, RunDir, RunIdentity, RunRecord, RunStatus, TrainError, TrainObserver, Trainer,
};

use crate::cli::TrainArgs;
use crate::progress::ProgressDisplay;
use crate::signals::{self, Interrupt};
use crate::{options, report, watchdog};

/// The default of `--dataset-dir`.
const DEFAULT_DATASET_DIR: &str = "data";

/// How a run ended, where every rank knows it (no rank waits for another).
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// A check failed on some rank before training; this rank reports it.
    #[error("{0}")]
    Refused(String),
    /// A check failed on another rank, which reports it.
    #[error("another rank reported the error")]
    Reported,
    /// A signal stopped the run; `message` says where its results are.
    #[error("{message}")]
    Interrupted { signal: i32, message: String },
}

impl Stopped {
    /// The exit code of the process.
    pub fn exit_code(&self) -> i32 {
        match self {
            Stopped::Refused(_) | Stopped::Reported => 1,
            Stopped::Interrupted { signal, .. } => signals::exit_code(*signal),
        }
    }
}

/// Everything a run needs before its model is built.
struct Prepared {
    config: RunConfig,
    notices: Vec<String>,
    default_results_dir: bool,
    data: SplitDataset,
    scenario: Scenario,
}

/// Runs `dcl train` on every rank of `world`; only rank 0 shows progress and writes results.
pub fn run(args: TrainArgs, world: Arc<dyn Communicator>, interrupt: &Interrupt) -> Result<()> {
    world.set_timeout(Duration::from_secs_f64(args.comm_timeout));
    if args.print_config {
        let resolved = resolve(&args, &*world)?;
        if world.is_root() {
            println!("{}", serde_json::to_string_pretty(&resolved.config)?);
        }
        return Ok(());
    }
    let prepared = match &args.resume {
        Some(dir) => prepare_resume(&args, dir, &*world),
        None => prepare(&args, &*world),
    };
    let Prepared {
        config,
        notices,
        default_results_dir,
        data,
        scenario,
    } = agree(&*world, prepared)?;
    let mut trainer = agree(
        &*world,
        Trainer::new(&config, &data, &scenario, Arc::clone(&world)).map_err(anyhow::Error::from),
    )?;
    let resumed = match &args.resume {
        Some(dir) => agree(&*world, resume(&mut trainer, dir, &*world))?,
        None => None,
    };
    // Where rank 0 writes the results (a default name gets its final form there).
    let mut results_dir = config.results_dir.clone();

    let mut display = ProgressDisplay::new(args.quiet, scenario.tasks.len(), config.epochs);
    let mut observer = RunObserver {
        display: world.is_root().then_some(&mut display),
        results: None,
        board: None,
        interrupt,
    };
    if world.is_root() {
        for notice in notices.iter().map(String::as_str).chain(trainer.notice()) {
            dcl_dist::write_line(&format!("note: {notice}"));
        }
        let results = match &args.resume {
            Some(_) => Results::reopen(&config, resumed.as_ref().map(|(r, _)| r.clone()).unwrap_or_default())?,
            None => Results::create(&config, default_results_dir, args.overwrite)?,
        };
        if let Some((_, at)) = &resumed {
            let (task, epoch) = (at.task + 1, at.epoch + 1);
            let when = match at.step {
                Some(step) => format!("at task {task} epoch {epoch} after its step {step}"),
                None => format!("after task {task} epoch {epoch}"),
            };
            dcl_dist::write_line(&format!("note: resuming {when}, from the run's last checkpoint"));
        }
        dcl_dist::write_line(&format!(
            "dcl {}: {} ({}) on {}, {} task(s) x {} epoch(s), {} worker(s) on {}; results in {}",
            dcl_train::DCL_VERSION,
            config.model,
            config.agent.name,
            config.dataset,
            scenario.tasks.len(),
            config.epochs,
            world.size(),
            match trainer.device() {
                tch::Device::Cuda(index) => format!("cuda:{index}"),
                _ => "cpu".to_owned(),
            },
            results.dir.path().display()
        ));
        results_dir = results.dir.path().to_owned();
        if args.tensorboard {
            let steps_before = resumed.as_ref().map_or(0, |(record, _)| {
                record
                    .epochs
                    .iter()
                    .map(|e| e.train_images.div_ceil(config.batch_size * world.size()) as u64)
                    .sum()
            });
            observer.board = Board::create(&results_dir.join("tensorboard"), steps_before);
        }
        observer.results = Some(results);
    }
    // Every rank writes its part of each checkpoint into the directory rank 0 created.
    let results_dir = broadcast_path(&*world, &results_dir);
    trainer.save_checkpoints(&results_dir, config.save_all_checkpoints);
    let outcome = trainer.run(&mut observer);
    let results = observer.results.take();
    match outcome {
        Ok(record) => {
            if let Some(results) = results {
                results.write(&record, RunStatus::Complete, None)?;
                report::print_summary(&record.summary(), results.dir.path());
            }
            Ok(())
        }
        Err(TrainError::Interrupted) => {
            let signal = interrupt.signal().unwrap_or(libc::SIGTERM);
            let why = format!("interrupted by {}", signals::name(signal));
            let message = match results {
                Some(results) => {
                    let completed = results.settle(RunStatus::Interrupted, &why)?;
                    format!(
                        "{why} after {completed} of {} task(s); partial results in {} (status: interrupted)",
                        scenario.tasks.len(),
                        results.dir.path().display()
                    )
                }
                None => why,
            };
            Err(Stopped::Interrupted { signal, message }.into())
        }
        Err(error) => {
            if let Some(results) = results {
                results.settle(RunStatus::Failed, &error.to_string())?;
            }
            Err(error.into())
        }
    }
}

/// Resolves the options (with the YAML section) into the run's configuration.
fn resolve(args: &TrainArgs, world: &dyn Communicator) -> Result<options::Resolved> {
    let options = options::with_yaml(
        args.options.clone(),
        args.yaml_config.as_deref(),
        args.config.as_deref(),
    )?;
    let mut resolved = options::resolve(options, default_results_dir)?;
    let config = &mut resolved.config;
    // Ranks sharing a node share its cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) / world.local_size();
    if config.threads == 0 {
        // Alone on a node, libtorch's own choice.
        config.threads = if world.local_size() > 1 {
            cores.max(1)
        } else {
            tch::get_num_threads().max(1) as usize
        };
    }
    // The loader's workers take the cores the training threads leave.
    config.dataloader_workers = args
        .options
        .dataloader_workers
        .unwrap_or_else(|| cores.saturating_sub(config.threads));
    Ok(resolved)
}

/// Resolves the configuration and loads and splits the data: every check that needs no
/// model.
fn prepare(args: &TrainArgs, world: &dyn Communicator) -> Result<Prepared> {
    let dataset_dir_is_default = args.options.dataset_dir == Path::new(DEFAULT_DATASET_DIR);
    let default_results_dir = args.options.results_dir.is_none();
    let options::Resolved { config, notices } = resolve(args, world)?;
    // A default name is made unique when the directory is created, so only a chosen one can
    // be taken already.
    if world.is_root() && !default_results_dir {
        RunDir::check_available(&config.results_dir, args.overwrite)?;
    }
    load(config, notices, default_results_dir, dataset_dir_is_default, world)
}

/// Loads and splits the data of `config`.
fn load(
    config: RunConfig,
    mut notices: Vec<String>,
    default_results_dir: bool,
    dataset_dir_is_default: bool,
    world: &dyn Communicator,
) -> Result<Prepared> {
    let dataset = dcl_data::catalog::find(&config.dataset)?;
    let mut data = dataset.load(&config.dataset_dir, dataset_dir_is_default)?;
    if let Some((mean, std)) = config.normalization {
        data.normalization = dcl_data::Normalization::uniform(mean, std);
    }
    let scenario_options = ScenarioOptions {
        concatenate: config.concatenate_tasksets,
        train_limit: config.train_samples,
        test_limit: config.test_samples,
    };
    let scenario = Scenario::build(&config.scenario, &data, scenario_options, config.seed)
        .map_err(|e| anyhow!("--tasksets-config: {e}"))?;
    let largest = scenario.tasks.iter().map(|t| t.train.len()).max().unwrap_or(0);
    let per_worker = largest.div_ceil(world.size());
    if config.batch_size > per_worker {
        notices.push(format!(
            "--batch-size {} exceeds the {per_worker} training samples of the largest task{}: every epoch is one batch",
            config.batch_size,
            if world.size() > 1 { " per worker" } else { "" }
        ));
    }
    Ok(Prepared {
        config,
        notices,
        default_results_dir,
        data,
        scenario,
    })
}

/// The configuration of the run in `dir` (its `config.json`) and its data, to resume it.
/// Every setting comes from there but where the data set lies (`--dataset-dir`, which does
/// not change the run); other run options are refused.
fn prepare_resume(args: &TrainArgs, dir: &Path, world: &dyn Communicator) -> Result<Prepared> {
    let given = serde_json::to_value(&args.options)?;
    let defaults = serde_json::to_value(crate::cli::default_train_options())?;
    let extra: Vec<String> = match (&given, &defaults) {
        (serde_json::Value::Object(given), serde_json::Value::Object(defaults)) => given
            .iter()
            .filter(|(key, value)| *key != "dataset_dir" && defaults.get(*key) != Some(value))
            .map(|(key, _)| format!("--{}", key.replace('_', "-")))
            .collect(),
        _ => Vec::new(),
    };
    if !extra.is_empty() || args.yaml_config.is_some() {
        return Err(anyhow!(
            "--resume continues the run in {} with the settings of its config.json; drop {}",
            dir.display(),
            if extra.is_empty() {
                "--yaml-config".to_owned()
            } else {
                extra.join(", ")
            }
        ));
    }
    if world.is_root() {
        if let Some(pid) = RunDir::open(dir).live_process() {
            return Err(anyhow!(
                "--resume {}: the run is still going (process {pid}); stop it first",
                dir.display()
            ));
        }
    }
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow!(
            "--resume {}: no run to resume there ({}: {e})",
            dir.display(),
            path.display()
        )
    })?;
    let mut config: RunConfig = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "--resume: {} is not the configuration of a dcl run: {e}",
            path.display()
        )
    })?;
    config.results_dir = dir.to_owned();
    if given.get("dataset_dir") != defaults.get("dataset_dir") {
        config.dataset_dir = args.options.dataset_dir.clone();
    }
    load(config, Vec::new(), false, false, world)
}

/// Continues `trainer` from the latest checkpoint of the run in `dir`, if it wrote one;
/// returns the record it had then and where it stands.
fn resume(
    trainer: &mut Trainer,
    dir: &Path,
    world: &dyn Communicator,
) -> Result<Option<(RunRecord, dcl_train::checkpoint::Position)>> {
    if world.is_root() {
        dcl_train::checkpoint::remove_unfinished(dir)?;
    }
    world.barrier();
    let Some(checkpoint) = dcl_train::checkpoint::latest(dir, world.rank(), world.size())? else {
        return Ok(None);
    };
    let (record, position) = (checkpoint.state.record.clone(), checkpoint.state.position);
    trainer.resume(checkpoint)?;
    Ok(Some((record, position)))
}

/// Rank 0's `path` on every rank (a collective call).
fn broadcast_path(world: &dyn Communicator, path: &Path) -> PathBuf {
    if world.size() == 1 {
        return path.to_owned();
    }
    let bytes = path.as_os_str().as_encoded_bytes();
    let mut length = [bytes.len() as f32];
    world.broadcast(0, &mut length);
    let mut values: Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
    values.resize(length[0] as usize, 0.0);
    world.broadcast(0, &mut values);
    let bytes: Vec<u8> = values.iter().map(|&v| v as u8).collect();
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

/// Makes every rank agree on whether a step succeeded everywhere (a collective call). The
/// first failed rank's error is returned there (named by its rank beyond rank 0), the other
/// ranks stop with [`Stopped::Reported`], so that the error is printed once.
fn agree<T>(world: &dyn Communicator, result: Result<T>) -> Result<T> {
    if world.size() == 1 {
        return result;
    }
    let failed = world.all_gather(u64::from(result.is_err()));
    match (result, failed.iter().position(|&f| f == 1)) {
        (Ok(value), None) => Ok(value),
        (Err(error), Some(first)) if first == world.rank() => Err(Stopped::Refused(if first == 0 {
            format!("{error:#}")
        } else {
            format!("rank {first}: {error:#}")
        })
        .into()),
        _ => Err(Stopped::Reported.into()),
    }
}

/// `results/<UTC time>-<model>-<dataset>`.
fn default_results_dir(model: &str, dataset: &str) -> PathBuf {
    let time = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    PathBuf::from("results").join(format!("{time}-{model}-{dataset}"))
}

/// The results of a run in progress (rank 0).
struct Results {
    dir: RunDir,
    identity: RunIdentity,
    /// The record as last written.
    last: RunRecord,
}

impl Results {
    /// Creates the results directory (a fresh one for a default name), writes `config.json`
    /// and a `running` summary, and starts the watchdog.
    fn create(config: &RunConfig, default_name: bool, overwrite: bool) -> Result<Self> {
        let dir = if default_name {
            RunDir::create_unique(&config.results_dir)?
        } else {
            RunDir::create(&config.results_dir, overwrite)?
        };
        let mut config = config.clone();
        config.results_dir = dir.path().to_owned();
        let text = serde_json::to_string_pretty(&config)?;
        dir.write("config.json", format!("{text}\n").as_bytes())?;
        let results = Results {
            identity: RunIdentity::new(&text, config.seed),
            last: RunRecord {
                epochs_per_task: config.epochs,
                ..Default::default()
            },
            dir,
        };
        results.start()?;
        Ok(results)
    }

    /// Takes over the results directory of a run to resume (its `config.json` stays), writes
    /// its `record` so far as `running`, and starts the watchdog.
    fn reopen(config: &RunConfig, record: RunRecord) -> Result<Self> {
        let dir = RunDir::open(&config.results_dir);
        let text = std::fs::read_to_string(dir.path().join("config.json"))?;
        let results = Results {
            identity: RunIdentity::new(&text, config.seed),
            last: RunRecord {
                epochs_per_task: config.epochs,
                ..record
            },
            dir,
        };
        results.start()?;
        Ok(results)
    }

    /// Writes the `running` summary, starts the watchdog and marks the run failed on a
    /// fatal error.
    fn start(&self) -> Result<()> {
        self.write(&self.last, RunStatus::Running, None)?;
        watchdog::spawn(self.dir.path());
        let dir = self.dir.path().to_owned();
        dcl_dist::on_fatal(move |message| {
            let _ = RunDir::open(&dir).settle(RunStatus::Failed, message);
        });
        Ok(())
    }

    fn write(&self, record: &RunRecord, status: RunStatus, error: Option<&str>) -> Result<(), TrainError> {
        dcl_train::writers::write_all(&self.dir, record, status, error, &self.identity)
    }

    /// Writes the last record with its final `status`; returns its completed tasks.
    fn settle(&self, status: RunStatus, error: &str) -> Result<usize, TrainError> {
        self.write(&self.last, status, Some(error))?;
        Ok(self.last.completed_tasks())
    }
}

/// What a rank's run reports to: the progress display and the results (rank 0), and the
/// signals that stop it.
struct RunObserver<'a> {
    display: Option<&'a mut ProgressDisplay>,
    results: Option<Results>,
    /// TensorBoard's event file (rank 0, with `--tensorboard true`).
    board: Option<Board>,
    interrupt: &'a Interrupt,
}

/// The scalars of a run in a TensorBoard event file, against the run's training steps.
struct Board {
    writer: dcl_train::tensorboard::EventWriter,
    /// Training steps so far (of every task and epoch).
    step: u64,
}

impl Board {
    /// A new event file in `dir` for a run `steps_before` steps in (resumed); `None`, with a
    /// warning, when it cannot be created (the run goes on without it).
    fn create(dir: &Path, steps_before: u64) -> Option<Self> {
        match dcl_train::tensorboard::EventWriter::create(dir) {
            Ok(writer) => Some(Board {
                writer,
                step: steps_before,
            }),
            Err(e) => {
                dcl_dist::write_line(&format!("warning: no TensorBoard events ({}: {e})", dir.display()));
                None
            }
        }
    }

    /// Writes `values` at the current step; false (after a warning) when it cannot.
    fn write(&mut self, values: &[(&str, f64)]) -> bool {
        match self.writer.scalars(self.step, values) {
            Ok(()) => true,
            Err(e) => {
                dcl_dist::write_line(&format!(
                    "warning: TensorBoard events stop ({}: {e})",
                    self.writer.path().display()
                ));
                false
            }
        }
    }

    /// The scalars of an epoch: training loss, top-1 and throughput, every evaluated task's
    /// top-1 (and task-IL top-1) and their mean, the rehearsal timings per step.
    fn epoch(&mut self, record: &EpochRecord) -> bool {
        let mut named: Vec<(String, f64)> = vec![
            ("train/epoch_loss".into(), record.train_loss),
            ("train/epoch_top1".into(), record.train_top1),
            ("train/images_per_second".into(), record.images_per_second),
        ];
        if let Some(lr) = record.lr {
            named.push(("train/lr".into(), lr));
        }
        for eval in &record.eval {
            named.push((format!("test/task_{}/top1", eval.task + 1), eval.top1));
            if let Some(task_il) = eval.top1_task_il {
                named.push((format!("test/task_{}/top1_task_il", eval.task + 1), task_il));
            }
        }
        let mean = record.eval.iter().map(|e| e.top1).sum::<f64>() / record.eval.len().max(1) as f64;
        named.push(("test/mean_top1".into(), mean));
        if let Some(timing) = &record.rehearsal_timing {
            for (stage, ms) in timing.per_step_ms() {
                named.push((format!("rehearsal/{}_ms_per_step", stage.replace(' ', "_")), ms));
            }
        }
        let values: Vec<(&str, f64)> = named.iter().map(|(t, v)| (t.as_str(), *v)).collect();
        self.write(&values)
    }
}

impl TrainObserver for RunObserver<'_> {
    fn epoch_started(&mut self, task: usize, epoch: usize, num_batches: usize) {
        if let Some(display) = &mut self.display {
            display.epoch_started(task, epoch, num_batches);
        }
    }

    fn epoch_resumed(&mut self, batches_done: usize) {
        if let Some(display) = &mut self.display {
            display.epoch_resumed(batches_done);
        }
        if let Some(board) = &mut self.board {
            board.step += batches_done as u64;
        }
    }

    fn batch_finished(&mut self, images: usize, loss: Option<f64>) {
        if let Some(display) = &mut self.display {
            display.batch_finished(images, loss);
        }
        if let Some(board) = &mut self.board {
            board.step += 1;
            if let Some(loss) = loss {
                if !board.write(&[("train/loss", loss)]) {
                    self.board = None;
                }
            }
        }
    }

    fn evaluation_started(&mut self, num_tasks: usize) {
        if let Some(display) = &mut self.display {
            display.evaluation_started(num_tasks);
        }
    }

    fn epoch_finished(&mut self, record: &EpochRecord) {
        if let Some(display) = &mut self.display {
            display.epoch_finished(record);
        }
        if self.board.as_mut().is_some_and(|board| !board.epoch(record)) {
            self.board = None;
        }
    }

    fn evaluated(&mut self, record: &RunRecord) -> Result<(), TrainError> {
        if let Some(results) = &mut self.results {
            results.last = record.clone();
            results.write(record, RunStatus::Running, None)?;
        }
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        self.interrupt.signal().is_some()
    }
}
