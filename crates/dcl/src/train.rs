//! `dcl train`: resolve the configuration, load the data, train, write the results.

use std::path::{Path, PathBuf};

use anyhow::Result;
use dcl_data::{Scenario, ScenarioOptions};
use dcl_train::RunDir;

use crate::cli::TrainArgs;
use crate::options;
use crate::progress::ProgressDisplay;
use crate::report;

/// The default of `--dataset-dir`.
const DEFAULT_DATASET_DIR: &str = "data";

/// Runs `dcl train`. Every user error is detected before training starts.
pub fn run(args: TrainArgs) -> Result<()> {
    let options = options::with_yaml(args.options, args.yaml_config.as_deref(), args.config.as_deref())?;
    let dataset_dir_is_default = options.dataset_dir == Path::new(DEFAULT_DATASET_DIR);
    let config = options::resolve(options, default_results_dir)?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&config)?);
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

    let run_dir = RunDir::create(&config.results_dir, args.overwrite)?;
    run_dir.write_json("config.json", &config)?;
    eprintln!(
        "dcl {}: {} ({}) on {}, {} task(s) x {} epoch(s); results in {}",
        dcl_train::DCL_VERSION,
        config.model,
        config.agent.name,
        config.dataset,
        scenario.tasks.len(),
        config.epochs,
        run_dir.path().display()
    );
    let mut display = ProgressDisplay::new(args.quiet, scenario.tasks.len(), config.epochs);
    let record = dcl_train::train(&config, &data, &scenario, &mut display)?;
    dcl_train::writers::write_all(&run_dir, &record)?;
    report::print_summary(&record.summary(), run_dir.path());
    Ok(())
}

/// `results/<UTC time>-<model>-<dataset>`.
fn default_results_dir(model: &str, dataset: &str) -> PathBuf {
    let time = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    PathBuf::from("results").join(format!("{time}-{model}-{dataset}"))
}
