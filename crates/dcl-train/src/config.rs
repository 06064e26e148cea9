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
}

/// Everything that determines a run. Built once from the command line and the YAML file;
/// nothing downstream reads flags or environment variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: String,
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
    /// Restrict the training loss to the classes seen so far.
    pub use_mask: bool,
    pub seed: u64,
    /// Intra-op threads of libtorch; 0 keeps libtorch's default.
    pub threads: usize,
    /// Train on the first N training samples only.
    pub train_samples: Option<usize>,
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
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(TrainError::Config(format!("{flag} must be at least 1")));
        }
        if self.train_samples == Some(0) {
            return Err(TrainError::Config("--train-samples must be at least 1".into()));
        }
        let task_incremental = matches!(
            self.scenario,
            ScenarioSpec::Classes { task_identity: dcl_data::TaskIdentity::Known, .. }
        );
        if self.agent.rehearsal.is_some() && task_incremental {
            return Err(TrainError::Config(format!(
                "agent {} does not support task-incremental scenarios yet (representatives of other tasks would need masks of their own)",
                self.agent.name
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::regime::{OptimizerKind, OptimizerSettings};

    pub fn example() -> RunConfig {
        let sgd = OptimizerSettings { optimizer: OptimizerKind::Sgd, lr: 0.01, momentum: 0.9, weight_decay: 0.0 };
        RunConfig {
            model: "mnistnet".into(),
            agent: AgentConfig { name: "base".into(), reset_state_dict: false, rehearsal: None },
            dataset: "mnist".into(),
            dataset_dir: "data/mnist".into(),
            scenario: ScenarioSpec::Single,
            concatenate_tasksets: false,
            epochs: 1,
            batch_size: 64,
            eval_batch_size: 64,
            optimizer_regime: Regime::new(sgd, vec![]).unwrap(),
            use_mask: false,
            seed: 42,
            threads: 0,
            train_samples: None,
            log_interval: 10,
            results_dir: "results/x".into(),
        }
    }

    #[test]
    fn validation_names_the_offending_option() {
        assert!(example().validate().is_ok());
        let zero_batch = RunConfig { batch_size: 0, ..example() };
        assert_eq!(
            zero_batch.validate().unwrap_err().to_string(),
            "invalid configuration: --batch-size must be at least 1"
        );
    }
}
