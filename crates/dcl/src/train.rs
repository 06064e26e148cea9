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
    let prepared = agree(&*world, prepare(&args, &*world))?;
    let Prepared {
        config,
        notices,
        default_results_dir,
        data,
        scenario,
    } = prepared;
    let trainer = agree(
        &*world,
        Trainer::new(&config, &data, &scenario, Arc::clone(&world)).map_err(anyhow::Error::from),
    )?;

    let mut display = ProgressDisplay::new(args.quiet, scenario.tasks.len(), config.epochs);
    let mut observer = RunObserver {
        display: world.is_root().then_some(&mut display),
        results: None,
        interrupt,
    };
    if world.is_root() {
        for notice in notices.iter().map(String::as_str).chain(trainer.notice()) {
            dcl_dist::write_line(&format!("note: {notice}"));
        }
        let results = Results::create(&config, default_results_dir, args.overwrite)?;
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
        observer.results = Some(results);
    }
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
    let options::Resolved { config, mut notices } = resolve(args, world)?;
    // A default name is made unique when the directory is created, so only a chosen one can
    // be taken already.
    if world.is_root() && !default_results_dir {
        RunDir::check_available(&config.results_dir, args.overwrite)?;
    }
    let dataset = dcl_data::catalog::find(&config.dataset)?;
    let data = dataset.load(&config.dataset_dir, dataset_dir_is_default)?;
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
        results.write(&results.last, RunStatus::Running, None)?;
        watchdog::spawn(results.dir.path());
        let dir = results.dir.path().to_owned();
        dcl_dist::on_fatal(move |message| {
            let _ = RunDir::open(&dir).settle(RunStatus::Failed, message);
        });
        Ok(results)
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
    interrupt: &'a Interrupt,
}

impl TrainObserver for RunObserver<'_> {
    fn epoch_started(&mut self, task: usize, epoch: usize, num_batches: usize) {
        if let Some(display) = &mut self.display {
            display.epoch_started(task, epoch, num_batches);
        }
    }

    fn batch_finished(&mut self, images: usize, loss: Option<f64>) {
        if let Some(display) = &mut self.display {
            display.batch_finished(images, loss);
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
