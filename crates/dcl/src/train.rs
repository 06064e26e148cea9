//! `dcl train`: resolve the configuration, load the data, train, write the results.

use std::path::{Path, PathBuf};

use anyhow::Result;
use dcl_data::Scenario;
use dcl_train::{RunConfig, RunDir};

use crate::cli::TrainArgs;
use crate::progress::ProgressDisplay;
use crate::report;

/// The default of `--dataset-dir`.
const DEFAULT_DATASET_DIR: &str = "data";

/// Runs `dcl train`. Every user error is detected before training starts.
pub fn run(args: TrainArgs) -> Result<()> {
    let dataset = dcl_data::catalog::find(&args.dataset)?;
    dcl_models::find(&args.model)?;
    let config = RunConfig {
        results_dir: args
            .results_dir
            .clone()
            .unwrap_or_else(|| default_results_dir(&args.model, &args.dataset)),
        dataset_dir: args.dataset_dir.join(dataset.name),
        model: args.model,
        dataset: args.dataset,
        epochs: args.epochs,
        batch_size: args.batch_size,
        eval_batch_size: args.eval_batch_size.unwrap_or(args.batch_size),
        lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        seed: args.seed,
        threads: args.threads.unwrap_or(0),
        train_samples: args.train_samples,
        log_interval: args.log_interval,
    };
    config.validate()?;
    RunDir::check_available(&config.results_dir, args.overwrite)?;
    let data = dataset.load(&config.dataset_dir, args.dataset_dir == Path::new(DEFAULT_DATASET_DIR))?;
    let scenario = Scenario::single_task(&data, config.train_samples);

    let run_dir = RunDir::create(&config.results_dir, args.overwrite)?;
    run_dir.write_json("config.json", &config)?;
    eprintln!(
        "dcl {}: {} on {} ({} training / {} test images), {} task(s) x {} epoch(s); results in {}",
        dcl_train::DCL_VERSION,
        config.model,
        config.dataset,
        scenario.tasks.iter().map(|t| t.train.len()).sum::<usize>(),
        data.test.len(),
        scenario.tasks.len(),
        config.epochs,
        run_dir.path().display()
    );
    let mut display = ProgressDisplay::new(args.quiet, scenario.tasks.len(), config.epochs);
    let record = dcl_train::train(&config, &data, &scenario, &mut display)?;
    let summary = record.summary();
    run_dir.write_json("summary.json", &summary)?;
    report::print_summary(&summary, run_dir.path());
    Ok(())
}

/// `results/<UTC time>-<model>-<dataset>`.
fn default_results_dir(model: &str, dataset: &str) -> PathBuf {
    let time = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    PathBuf::from("results").join(format!("{time}-{model}-{dataset}"))
}
