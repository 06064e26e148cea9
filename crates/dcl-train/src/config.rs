//! The resolved configuration of a run, as written to `config.json`.

use std::path::PathBuf;

use dcl_data::ScenarioSpec;
use serde::{Deserialize, Serialize};

use crate::regime::Regime;
use crate::TrainError;

/// The agent: how a learner uses what it saw before. `base` is plain fine-tuning; upstream's
/// baselines are `base` with different configurations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// The agent's name (`base`).
    pub name: String,
    /// Reset the weights to their initial values before each task after the first.
    pub reset_state_dict: bool,
    /// The rehearsal buffer and pipeline, for rehearsal agents (`er`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<crate::rehearsal::RehearsalConfig>,
    /// The method and its settings.
    #[serde(default)]
    pub method: crate::agents::Method,
}

/// How the learning rate grows with the number of workers (Goyal et al., 2017).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrScaling {
    /// The regime's learning rates times the number of workers (upstream's rule).
    Linear,
    /// The regime's learning rates as they are.
    None,
}

impl LrScaling {
    /// The learning-rate factor at `progress` epochs into a task, for `workers` workers,
    /// warming up linearly from 1 over `warmup_epochs`.
    pub fn factor(self, workers: usize, progress: f64, warmup_epochs: f64) -> f64 {
        let peak = match self {
            LrScaling::Linear => workers as f64,
            LrScaling::None => 1.0,
        };
        if warmup_epochs <= 0.0 || progress >= warmup_epochs {
            peak
        } else {
            1.0 + (peak - 1.0) * progress / warmup_epochs
        }
    }
}

/// Everything that determines a run. Built once from the command line and the YAML file;
/// nothing downstream reads flags or environment variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: String,
    /// The model's `--model-config` keys (regime keys such as `lr_min` excluded).
    #[serde(default)]
    pub model_config: serde_json::Map<String, serde_json::Value>,
    /// Where the tensors live (`--device`).
    #[serde(default)]
    pub device: crate::DeviceChoice,
    /// Augmentation of the training images beyond the data set's own (`--augment`).
    #[serde(default)]
    pub augment: dcl_data::Augment,
    /// The side of the network inputs, if not the data set's (`--input-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<usize>,
    pub agent: AgentConfig,
    pub dataset: String,
    /// The directory holding the data set's files.
    pub dataset_dir: PathBuf,
    /// How the data set is cut into tasks.
    pub scenario: ScenarioSpec,
    /// Train task t on the training samples of tasks 0..=t.
    pub concatenate_tasksets: bool,
    /// Epochs per task.
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    /// Optimiser settings per epoch of a task; restarted, with fresh optimiser state, at
    /// every task.
    pub optimizer_regime: Regime,
    /// How the learning rate grows with the number of workers.
    pub lr_scaling: LrScaling,
    /// Epochs (of each task) over which the scaled learning rate is reached, step by step.
    pub warmup_epochs: f64,
    /// Batches whose gradients are accumulated per optimiser step and all-reduce.
    pub batches_per_allreduce: usize,
    /// All-reduce gradients in half precision.
    pub fp16_allreduce: bool,
    /// Mixed precision of the forward pass (`--amp`).
    #[serde(default)]
    pub amp: crate::Precision,
    /// Keep every epoch's checkpoint, not only the latest two.
    #[serde(default)]
    pub save_all_checkpoints: bool,
    /// Also checkpoint every N training steps of the run (batches; each pass's count rounded
    /// up to whole optimiser steps under `batches_per_allreduce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_steps: Option<usize>,
    /// Restrict the training loss to the classes seen so far.
    pub use_mask: bool,
    pub seed: u64,
    /// Intra-op threads of libtorch; 0 keeps libtorch's default.
    pub threads: usize,
    /// Threads decoding and transforming images besides the loader's own (0: the loader alone).
    #[serde(default)]
    pub dataloader_workers: usize,
    /// Train on the first N training samples only.
    pub train_samples: Option<usize>,
    /// Evaluate on the first N test samples only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_samples: Option<usize>,
    /// The inputs' `(mean, std)` for every channel, in place of the data set's normalisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<(f32, f32)>,
    /// Report the training loss every N batches.
    pub log_interval: usize,
    /// Where the run's files go.
    pub results_dir: PathBuf,
}

impl RunConfig {
    /// Rejects values no run can use, naming the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        let positive = [
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--eval-batch-size", self.eval_batch_size),
            ("--log-interval", self.log_interval),
            ("--batches-per-allreduce", self.batches_per_allreduce),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(TrainError::Config(format!("{flag} must be at least 1")));
        }
        if !self.warmup_epochs.is_finite() || self.warmup_epochs < 0.0 {
            return Err(TrainError::Config(format!(
                "--warmup-epochs must be a number >= 0, not {}",
                self.warmup_epochs
            )));
        }
        if self.train_samples == Some(0) {
            return Err(TrainError::Config("--train-samples must be at least 1".into()));
        }
        if self.test_samples == Some(0) {
            return Err(TrainError::Config("--test-samples must be at least 1".into()));
        }
        if let Some(every) = self.checkpoint_every_steps {
            if every == 0 || every % self.batches_per_allreduce != 0 {
                return Err(TrainError::Config(format!(
                    "--checkpoint-every-steps must be a positive multiple of --batches-per-allreduce ({}), not {every}",
                    self.batches_per_allreduce
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::regime::{OptimizerKind, OptimizerSettings};

    pub fn example() -> RunConfig {
        let sgd = OptimizerSettings {
            optimizer: OptimizerKind::Sgd,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            betas: crate::regime::ADAM_BETAS,
        };
        RunConfig {
            model: "mnistnet".into(),
            model_config: Default::default(),
            device: Default::default(),
            augment: Default::default(),
            input_size: None,
            agent: AgentConfig {
                name: "base".into(),
                reset_state_dict: false,
                rehearsal: None,
                method: Default::default(),
            },
            dataset: "mnist".into(),
            dataset_dir: "data/mnist".into(),
            scenario: ScenarioSpec::Single,
            concatenate_tasksets: false,
            epochs: 1,
            batch_size: 64,
            eval_batch_size: 64,
            optimizer_regime: Regime::new(sgd, vec![]).unwrap(),
            lr_scaling: LrScaling::Linear,
            warmup_epochs: 0.0,
            batches_per_allreduce: 1,
            fp16_allreduce: false,
            amp: crate::Precision::Fp32,
            save_all_checkpoints: false,
            checkpoint_every_steps: None,
            use_mask: false,
            seed: 42,
            threads: 0,
            dataloader_workers: 0,
            train_samples: None,
            normalization: None,
            test_samples: None,
            log_interval: 10,
            results_dir: "results/x".into(),
        }
    }

    #[test]
    fn linear_scaling_warms_up_to_the_number_of_workers() {
        assert_eq!(LrScaling::Linear.factor(1, 0.0, 2.0), 1.0);
        assert_eq!(LrScaling::Linear.factor(4, 0.0, 0.0), 4.0);
        assert_eq!(LrScaling::Linear.factor(4, 0.0, 2.0), 1.0);
        assert_eq!(LrScaling::Linear.factor(4, 1.0, 2.0), 2.5);
        assert_eq!(LrScaling::Linear.factor(4, 3.0, 2.0), 4.0);
        assert_eq!(LrScaling::None.factor(4, 3.0, 2.0), 1.0);
    }

    #[test]
    fn validation_names_the_offending_option() {
        assert!(example().validate().is_ok());
        let zero_batch = RunConfig {
            batch_size: 0,
            ..example()
        };
        assert_eq!(
            zero_batch.validate().unwrap_err().to_string(),
            "invalid configuration: --batch-size must be at least 1"
        );
    }
}
