//! The resolved configuration of a run, as written to `config.json`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Everything that determines a run. Built once from the command line; nothing
/// downstream reads flags or environment variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: String,
    pub dataset: String,
    /// The directory holding the data set's files.
    pub dataset_dir: PathBuf,
    /// Epochs per task.
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
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
        let finite_non_negative = [
            ("--lr", self.lr),
            ("--momentum", self.momentum),
            ("--weight-decay", self.weight_decay),
        ];
        if let Some((flag, value)) = finite_non_negative
            .iter()
            .find(|(_, v)| !v.is_finite() || *v < 0.0)
        {
            return Err(TrainError::Config(format!("{flag} must be a finite number >= 0, not {value}")));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn example() -> RunConfig {
        RunConfig {
            model: "mnistnet".into(),
            dataset: "mnist".into(),
            dataset_dir: "data/mnist".into(),
            epochs: 1,
            batch_size: 64,
            eval_batch_size: 64,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
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
        let bad_lr = RunConfig { lr: f64::NAN, ..example() };
        assert!(bad_lr.validate().unwrap_err().to_string().contains("--lr must be"));
    }
}
