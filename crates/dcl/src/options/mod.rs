//! The options of `dcl train`: upstream's flags (also settable from a YAML section), and
//! their resolution into the typed [`RunConfig`] that the library crates run on.

mod agent;
pub mod literal;
mod tasksets;
mod yaml;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use dcl_train::{BaseFlags, LrScaling, Regime, RegimeEntry, RunConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn dict_flag(text: &str) -> Result<Map<String, Value>, String> {
    literal::parse_dict(text)
}

fn augment_flag(text: &str) -> Result<dcl_data::Augment, String> {
    match text {
        "none" => Ok(dcl_data::Augment::None),
        "crop_flip" => Ok(dcl_data::Augment::CropFlip),
        _ => Err("expected none or crop_flip".into()),
    }
}

fn lr_scaling_flag(text: &str) -> Result<LrScaling, String> {
    match text {
        "linear" => Ok(LrScaling::Linear),
        "none" => Ok(LrScaling::None),
        _ => Err("expected linear or none".into()),
    }
}

fn list_flag(text: &str) -> Result<Value, String> {
    match literal::parse(text)? {
        list @ Value::Array(_) => Ok(list),
        other => Err(format!("expected a list like [{{'epoch': 0, 'lr': 0.1}}], not {other}")),
    }
}

/// Upstream's options, under upstream's names. The same struct reads the command line
/// (clap) and a YAML section (serde), so both spell every option alike.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    #[arg(long, help = format!("Model to train: {}", dcl_models::model_names()))]
    pub model: Option<String>,
    /// Model-specific parameters, as a Python dict literal (`dcl models` lists each model's keys).
    #[arg(long, value_parser = dict_flag, default_value = "{}", hide_default_value = true)]
    pub model_config: Map<String, Value>,
    /// Where to train: auto (a CUDA device when there is one), cpu, cuda (under MPI, the GPU of
    /// the rank's local rank) or cuda:N.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(dcl_train::DeviceChoice))]
    pub device: dcl_train::DeviceChoice,
    /// Mixed precision: autocast the forward pass to bf16 (`--amp` alone) or fp16 (with dynamic
    /// loss scaling; CUDA only); off by default. Weights and optimiser state stay fp32.
    #[arg(long, value_name = "PRECISION", num_args = 0..=1, default_value = "off", default_missing_value = "bf16",
          value_parser = clap::value_parser!(dcl_train::Precision))]
    pub amp: dcl_train::Precision,
    /// Augmentation of the training images: none (upstream's, for CIFAR), crop_flip (a random
    /// crop after zero padding of 4 and a horizontal flip).
    #[arg(long, default_value = "none", value_parser = augment_flag)]
    pub augment: dcl_data::Augment,
    /// The side of the network inputs: small images are padded (or centre-cropped) to it,
    /// photographs cropped (default: the data set's, 224 for ImageNet, 64 for Tiny-ImageNet).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub input_size: Option<u32>,
    /// Agent: base (fine-tuning) or er (rehearsal; upstream's nil, nil_cpp, nil_cpp_cat, nil_local).
    #[arg(long, default_value = "base")]
    pub agent: String,
    /// Agent-specific parameters: "{'reset_state_dict': True}" resets the weights before each task.
    #[arg(long, value_parser = dict_flag, default_value = "{}", hide_default_value = true)]
    pub agent_config: Map<String, Value>,
    /// Scenario, e.g. "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}" (README).
    #[arg(long, value_parser = dict_flag, default_value = "{}", hide_default_value = true)]
    pub tasksets_config: Map<String, Value>,
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
    /// Base learning rate (first entry of the optimiser regime; convnext's default: 0.004) [default: 0.01]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Momentum (SGD, RMSprop) [default: 0.9, or the model's regime's]
    #[arg(long)]
    pub momentum: Option<f64>,
    /// L2 weight decay [default: 0, or the model's regime's]
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Optimiser settings per epoch of each task, replacing the model's regime: a list of dicts
    /// with 'epoch' and any of 'optimizer' (SGD, Adam, AdamW, RMSprop), 'lr', 'momentum',
    /// 'weight_decay', a warm-up, a decay and more (README: Optimiser regimes).
    #[arg(long, value_parser = list_flag)]
    pub optimizer_regime: Option<Value>,
    /// Learning-rate scaling with the number of workers: linear (upstream's: lr x workers) or none.
    #[arg(long, default_value = "linear", value_parser = lr_scaling_flag)]
    pub lr_scaling: LrScaling,
    /// Epochs of each task over which the scaled learning rate is reached, step by step
    /// (no effect with one worker).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_epochs: f64,
    /// Restrict the training loss to the classes seen so far.
    #[arg(long)]
    pub use_mask: bool,
    /// Random seed of initialisation, class order, splits, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Intra-op CPU threads of libtorch [default: the node's cores divided by its workers].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Threads decoding and augmenting images besides the loader's own [default: the cores the
    /// training threads leave free].
    #[arg(long, value_name = "N")]
    pub dataloader_workers: Option<usize>,
    /// Train on the first N training samples only (quick experiments, smoke tests).
    #[arg(long, value_name = "N")]
    pub train_samples: Option<usize>,
    /// Evaluate on the first N test samples only (quick experiments, smoke tests).
    #[arg(long, value_name = "N")]
    pub test_samples: Option<usize>,
    /// Input normalisation: `dataset` (the data set's own), `none` (pixels in [0, 1], as
    /// torchvision's ToTensor alone) or `MEAN,STD` for every channel.
    #[arg(long, value_name = "dataset|none|MEAN,STD")]
    pub normalize: Option<String>,
    /// Show the training loss every N batches.
    #[arg(long, default_value_t = 10)]
    pub log_interval: usize,
    /// Directory of this run's results [default: results/<UTC time>-<model>-<dataset>].
    #[arg(long, visible_alias = "save-dir", value_name = "DIR")]
    #[serde(alias = "save_dir")]
    pub results_dir: Option<PathBuf>,
    /// Start from the weights of a checkpoint: a dcl checkpoint directory, or a safetensors
    /// state dict (as `--model-config "{'weights': FILE}"`). To continue a run, see --resume.
    #[arg(long, value_name = "FILE")]
    pub load_checkpoint: Option<PathBuf>,
    /// Keep every epoch's checkpoint (under RESULTS/checkpoints), not only the latest two.
    #[arg(long)]
    pub save_all_checkpoints: bool,
    /// Also checkpoint every N training steps (a multiple of --batches-per-allreduce), besides
    /// the end of every epoch and a stop by a signal.
    #[arg(long, value_name = "N")]
    pub checkpoint_every_steps: Option<usize>,
    /// Compress gradients to fp16 for the all-reduce (data-parallel runs; half the bytes).
    #[arg(long)]
    pub fp16_allreduce: bool,
    /// Batches whose gradients are accumulated per optimiser step and all-reduce.
    #[arg(long, default_value_t = 1)]
    pub batches_per_allreduce: usize,
}

/// Deserialises `map` into `T`, naming the offending key in errors.
pub(crate) fn typed<T: DeserializeOwned>(map: &Map<String, Value>, what: &str) -> Result<T> {
    serde_path_to_error::deserialize(Value::Object(map.clone())).map_err(|e| {
        let path = e.path().to_string();
        let inner = plain_words(&e.into_inner().to_string());
        // An unknown key's message names it already.
        if path == "." || path.is_empty() || inner.starts_with("unknown field") {
            anyhow!("{what}: {inner}")
        } else {
            anyhow!("{what}: '{path}': {inner}")
        }
    })
}

/// A deserialisation message with Rust's type names in the words of a configuration.
pub(crate) fn plain_words(message: &str) -> String {
    [
        ("expected usize", "expected a whole number >= 0"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected True or False"),
        ("floating point", "number"),
    ]
    .iter()
    .fold(message.to_owned(), |text, (rust, plain)| text.replace(rust, plain))
}

/// Applies the YAML section, if any, to the command-line options.
pub fn with_yaml(options: TrainOptions, yaml_config: Option<&Path>, section: Option<&str>) -> Result<TrainOptions> {
    let Some(path) = yaml_config else {
        if let Some(name) = section {
            bail!("--config {name} needs --yaml-config FILE");
        }
        return Ok(options);
    };
    let Value::Object(mut merged) = serde_json::to_value(&options)? else {
        unreachable!("options serialise to a map");
    };
    yaml::overlay(&mut merged, &yaml::load_section(path, section)?)?;
    typed(&merged, &format!("{}", path.display()))
}

/// A resolved configuration and the notices about it to show the user.
pub struct Resolved {
    pub config: RunConfig,
    pub notices: Vec<String>,
}

/// Resolves the options into the configuration of a run; `results_dir` names the default
/// results directory from the model and data set names.
/// The `(mean, std)` of `--normalize` (`None` for `dataset`: the data set's own).
fn parse_normalization(text: &str) -> Result<Option<(f32, f32)>> {
    match text.trim() {
        "dataset" => return Ok(None),
        "none" => return Ok(Some((0.0, 1.0))),
        _ => {}
    }
    let numbers: Vec<f32> = text
        .split(',')
        .map(|n| n.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("--normalize: expected dataset, none or MEAN,STD, not '{text}'"))?;
    match numbers[..] {
        [mean, std] if mean.is_finite() && std.is_finite() && std > 0.0 => Ok(Some((mean, std))),
        [_, _] => bail!("--normalize: the mean must be finite and the std a positive number, not '{text}'"),
        _ => bail!("--normalize: expected dataset, none or MEAN,STD, not '{text}'"),
    }
}

pub fn resolve(options: TrainOptions, results_dir: impl FnOnce(&str, &str) -> PathBuf) -> Result<Resolved> {
    let model = options
        .model
        .ok_or_else(|| anyhow!("--model is required (valid models: {})", dcl_models::model_names()))?;
    dcl_models::find(&model)?;
    let mut model_config = options.model_config;
    if let Some(path) = &options.load_checkpoint {
        if model_config.contains_key("weights") {
            bail!("--load-checkpoint and --model-config's 'weights' both name weights: give one");
        }
        // A dcl checkpoint directory holds its weights in model.safetensors.
        let file = if path.is_dir() {
            path.join("model.safetensors")
        } else {
            path.clone()
        };
        model_config.insert("weights".into(), Value::String(file.to_string_lossy().into_owned()));
    }
    // Upstream's convnext reads the end of its cosine schedule from the model config.
    let lr_min = match model_config.remove("lr_min") {
        None => None,
        Some(value) => {
            if model != "convnext" || options.optimizer_regime.is_some() {
                bail!(
                    "--model-config: 'lr_min' sets the end of convnext's default cosine schedule; with another model \
                     or --optimizer-regime, give it in the regime's entries"
                );
            }
            Some(
                value
                    .as_f64()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| anyhow!("--model-config: 'lr_min' must be a number >= 0, not {value}"))?,
            )
        }
    };
    dcl_models::check_config(&model, &dcl_models::ModelConfig::new(model_config.clone()))
        .map_err(|e| anyhow!("--{e}"))?;
    let dataset = dcl_data::catalog::find(&options.dataset)?;
    let (agent, notice) = agent::parse(&options.agent, &options.agent_config)?;
    let (scenario, concatenate_tasksets) = tasksets::parse(&options.tasksets_config)?;

    for (flag, value) in [
        ("--lr", options.lr),
        ("--momentum", options.momentum),
        ("--weight-decay", options.weight_decay),
    ] {
        if let Some(value) = value.filter(|v| !v.is_finite() || *v < 0.0) {
            bail!("{flag} must be a finite number >= 0, not {value}");
        }
    }
    let flags = BaseFlags {
        lr: options.lr,
        momentum: options.momentum,
        weight_decay: options.weight_decay,
        warmup_epochs: options.warmup_epochs,
    };
    let optimizer_regime = match options.optimizer_regime {
        None => dcl_train::default_regime(&model, &flags, lr_min)?,
        Some(Value::Array(list)) => {
            let entries: Vec<RegimeEntry> = serde_path_to_error::deserialize(Value::Array(list)).map_err(|e| {
                anyhow!(
                    "--optimizer-regime: '{}': {}",
                    e.path(),
                    plain_words(&e.inner().to_string())
                )
            })?;
            Regime::new(flags.settings(), entries)?
        }
        Some(other) => bail!("--optimizer-regime: expected a list of dicts, not {other}"),
    };
    let config = RunConfig {
        results_dir: options.results_dir.unwrap_or_else(|| results_dir(&model, dataset.name)),
        model_config,
        device: options.device,
        augment: options.augment,
        input_size: options.input_size.map(|n| n as usize),
        dataset_dir: options.dataset_dir,
        agent,
        dataset: dataset.name.to_owned(),
        model,
        scenario,
        concatenate_tasksets,
        epochs: options.epochs,
        batch_size: options.batch_size,
        eval_batch_size: options.eval_batch_size.unwrap_or(options.batch_size),
        optimizer_regime,
        lr_scaling: options.lr_scaling,
        warmup_epochs: options.warmup_epochs,
        batches_per_allreduce: options.batches_per_allreduce,
        fp16_allreduce: options.fp16_allreduce,
        amp: options.amp,
        save_all_checkpoints: options.save_all_checkpoints,
        checkpoint_every_steps: options.checkpoint_every_steps,
        use_mask: options.use_mask,
        seed: options.seed,
        threads: options.threads.map_or(0, |n| n as usize),
        dataloader_workers: options.dataloader_workers.unwrap_or(0),
        train_samples: options.train_samples,
        test_samples: options.test_samples,
        normalization: options
            .normalize
            .as_deref()
            .map(parse_normalization)
            .transpose()?
            .flatten(),
        log_interval: options.log_interval,
    };
    config.validate()?;
    Ok(Resolved {
        config,
        notices: notice.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use dcl_data::ScenarioSpec;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: TrainOptions,
    }

    fn options(args: &[&str]) -> TrainOptions {
        let mut argv = vec!["dcl"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().options
    }

    fn parse_map(text: &str) -> Map<String, Value> {
        literal::parse_dict(text).unwrap()
    }

    fn resolved(args: &[&str]) -> Result<RunConfig> {
        resolve(options(args), |_, _| PathBuf::from("results/test")).map(|r| r.config)
    }

    #[test]
    fn the_upstream_readme_command_lines_resolve() {
        let config = resolved(&[
            "--model",
            "mnistnet",
            "--dataset",
            "mnist",
            "--tasksets-config",
            "{'scenario': 'class', 'initial_increment': 5, 'increment': 5}",
        ])
        .unwrap();
        assert!(matches!(
            config.scenario,
            ScenarioSpec::Classes {
                initial_increment: 5,
                increment: 5,
                ..
            }
        ));
        let scratch = resolved(&[
            "--model",
            "mnistnet",
            "--dataset-dir",
            "data",
            "--agent-config",
            "{'reset_state_dict': True}",
            "--tasksets-config",
            "{'scenario': 'class', 'initial_increment': 5, 'increment': 5, 'concatenate_tasksets': True}",
        ])
        .unwrap();
        assert!(scratch.agent.reset_state_dict && scratch.concatenate_tasksets);
        assert_eq!(scratch.epochs, 25);
        assert_eq!(scratch.dataset_dir, PathBuf::from("data"));
    }

    #[test]
    fn bad_options_are_named() {
        let err = |args: &[&str]| resolved(args).unwrap_err().to_string();
        assert!(err(&[]).starts_with("--model is required"));
        assert!(
            err(&["--model", "mnistnet", "--agent", "gem"]).starts_with("unknown agent 'gem'; valid agents: base, er")
        );
        assert!(err(&["--model", "mnistnet", "--agent-config", "{'reset': True}"])
            .starts_with("--agent-config: unknown field `reset`"));
        assert_eq!(
            err(&["--model", "mnistnet", "--model-config", "{'colour': 1}"]),
            "--model-config: unknown key 'colour' for mnistnet; valid keys: weights"
        );
        assert!(err(&[
            "--model",
            "mnistnet",
            "--load-checkpoint",
            "x.safetensors",
            "--model-config",
            "{'weights': 'y.safetensors'}"
        ])
        .contains("--load-checkpoint and --model-config's 'weights' both name weights"));
        assert_eq!(
            err(&["--model", "mnistnet", "--batches-per-allreduce", "0"]),
            "invalid configuration: --batches-per-allreduce must be at least 1"
        );
        assert_eq!(
            err(&["--model", "mnistnet", "--lr=-1"]),
            "--lr must be a finite number >= 0, not -1"
        );
        assert_eq!(err(&["--model", "mnistnet", "--optimizer-regime", "[{'epoch': 0, 'optimizer': 'LBFGS'}]"]),
            "--optimizer-regime: '[0].optimizer': unknown variant `LBFGS`, expected one of `SGD`, `Adam`, `AdamW`, `RMSprop`");
    }

    #[test]
    fn convnext_takes_upstreams_lr_min_for_its_cosine_and_no_other_model_does() {
        let config = resolved(&[
            "--model",
            "convnext",
            "--model-config",
            "{'lr_min': 1e-5, 'variant': 'tiny'}",
        ])
        .unwrap();
        assert_eq!(
            config.model_config,
            parse_map("{'variant': 'tiny'}"),
            "lr_min is the regime's"
        );
        // At the end of a task's epochs the cosine has reached lr_min (x the world size, 1 here).
        let end = config.optimizer_regime.lr_at(config.epochs as f64, config.epochs);
        assert!((end - 1e-5).abs() < 1e-12, "{end}");
        let err = |args: &[&str]| resolved(args).unwrap_err().to_string();
        assert!(
            err(&["--model", "resnet18", "--model-config", "{'lr_min': 1e-5}"]).contains("convnext's default cosine")
        );
        assert!(err(&["--model", "convnext", "--model-config", "{'lr_min': 'low'}"]).contains("must be a number >= 0"));
    }

    #[test]
    fn the_regime_builds_on_the_flags() {
        let config = resolved(&[
            "--model",
            "mnistnet",
            "--lr",
            "0.05",
            "--optimizer-regime",
            "[{'epoch': 2, 'lr': 0.005}]",
        ])
        .unwrap();
        assert_eq!(config.optimizer_regime.settings_at(0).settings.lr, 0.05);
        assert_eq!(config.optimizer_regime.settings_at(2).settings.lr, 0.005);
        assert_eq!(config.optimizer_regime.settings_at(2).settings.momentum, 0.9);
    }

    #[test]
    fn models_carry_their_regime_unless_one_is_given() {
        let momentum = |args: &[&str]| {
            resolved(args)
                .unwrap()
                .optimizer_regime
                .settings_at(0)
                .settings
                .momentum
        };
        assert_eq!(momentum(&["--model", "resnet18"]), 0.875);
        assert_eq!(momentum(&["--model", "resnet18", "--momentum", "0.8"]), 0.8);
        assert_eq!(
            momentum(&["--model", "resnet18", "--optimizer-regime", "[{'epoch': 1}]"]),
            0.9
        );
        assert_eq!(momentum(&["--model", "mnistnet"]), 0.9);
    }

    #[test]
    fn yaml_sections_override_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "split:\n  epochs: 3\n  tasksets_config:\n    increment: 2\n  agent_config: {reset_state_dict: true}\n",
        )
        .unwrap();
        let cli = options(&[
            "--model",
            "mnistnet",
            "--epochs",
            "9",
            "--tasksets-config",
            "{'scenario': 'task', 'increment': 5}",
        ]);
        let merged = with_yaml(cli, Some(&path), Some("split")).unwrap();
        let config = resolve(merged, |_, _| PathBuf::from("r")).unwrap().config;
        assert_eq!(config.epochs, 3);
        assert!(config.agent.reset_state_dict);
        assert!(matches!(
            config.scenario,
            ScenarioSpec::Classes {
                increment: 2,
                initial_increment: 2,
                task_identity: dcl_data::TaskIdentity::Known,
                ..
            }
        ));

        std::fs::write(&path, "bad:\n  batchsize: 3\n").unwrap();
        let cli = options(&["--model", "mnistnet"]);
        let err = with_yaml(cli, Some(&path), Some("bad")).unwrap_err().to_string();
        assert!(err.contains("unknown field `batchsize`"), "{err}");
    }
}
