//! `dcl train`: resolve the configuration, load the data, train, write the results.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use dcl_data::{Scenario, ScenarioOptions};
use dcl_dist::Communicator;
use dcl_train::observer::Silent;
use dcl_train::{RunDir, TrainObserver};

use crate::cli::TrainArgs;
use crate::options;
use crate::progress::ProgressDisplay;
use crate::report;

/// The default of `--dataset-dir`.
const DEFAULT_DATASET_DIR: &str = "data";

/// Runs `dcl train` on every rank of `world`. Every user error is detected before training
/// starts; only rank 0 shows progress and writes results.
pub fn run(args: TrainArgs, world: Arc<dyn Communicator>) -> Result<()> {
    let options = options::with_yaml(args.options, args.yaml_config.as_deref(), args.config.as_deref())?;
    let dataset_dir_is_default = options.dataset_dir == Path::new(DEFAULT_DATASET_DIR);
    let mut config = options::resolve(options, default_results_dir)?;
    if config.threads == 0 && world.local_size() > 1 {
        // Ranks sharing a node share its cores.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        config.threads = (cores / world.local_size()).max(1);
    }
    if args.print_config {
        if world.is_root() {
            println!("{}", serde_json::to_string_pretty(&config)?);
        }
        return Ok(());
    }
    RunDir::check_available(&config.results_dir, args.overwrite)?;
    let dataset = dcl_data::catalog::find(&config.dataset)?;
    let data = dataset.load(&config.dataset_dir, dataset_dir_is_default)?;
    let scenario_options = ScenarioOptions {
        concatenate: config.concatenate_tasksets,
        train_limit: config.train_samples,
    };
    let scenario = Scenario::build(&config.scenario, &data, scenario_options, config.seed)
        .map_err(|e| anyhow::anyhow!("--tasksets-config: {e}"))?;

    // Every rank has checked its input; only then does rank 0 create the directory.
    world.barrier();
    let run_dir = if world.is_root() {
        let run_dir = RunDir::create(&config.results_dir, args.overwrite)?;
        run_dir.write_json("config.json", &config)?;
        eprintln!(
            "dcl {}: {} ({}) on {}, {} task(s) x {} epoch(s), {} worker(s); results in {}",
            dcl_train::DCL_VERSION,
            config.model,
            config.agent.name,
            config.dataset,
            scenario.tasks.len(),
            config.epochs,
            world.size(),
            run_dir.path().display()
        );
        Some(run_dir)
    } else {
        None
    };
    let mut display = ProgressDisplay::new(args.quiet, scenario.tasks.len(), config.epochs);
    let observer: &mut dyn TrainObserver = if world.is_root() { &mut display } else { &mut Silent };
    let record = dcl_train::train(&config, &data, &scenario, observer, Arc::clone(&world))?;
    if let Some(run_dir) = run_dir {
        dcl_train::writers::write_all(&run_dir, &record)?;
        report::print_summary(&record.summary(), run_dir.path());
    }
    Ok(())
}

/// `results/<UTC time>-<model>-<dataset>`.
fn default_results_dir(model: &str, dataset: &str) -> PathBuf {
    let time = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    PathBuf::from("results").join(format!("{time}-{model}-{dataset}"))
}
