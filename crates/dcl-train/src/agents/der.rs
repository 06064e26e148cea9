//! Dark experience replay (Buzzega et al. 2020): the buffer stores every offered sample with
//! the logits the model gave it when it was trained on; replayed samples go through the model
//! with the batch, and their logits are pulled towards the stored ones (mean squared error,
//! weighted by `alpha`). DER++ adds the cross-entropy of the replayed samples' labels,
//! weighted by `beta` (on the same replayed samples, where Buzzega et al. draw a second set).

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use super::{Agent, LossContext, ReplayUse};
use crate::TrainError;

/// The settings of DER and DER++.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerConfig {
    /// The weight of the logit matching.
    pub alpha: f64,
    /// The weight of the replayed labels' cross-entropy (0: DER).
    pub beta: f64,
}

pub struct Der {
    config: DerConfig,
}

impl Der {
    pub fn new(config: DerConfig) -> Self {
        Der { config }
    }
}

impl Agent for Der {
    fn replay_use(&self) -> ReplayUse {
        ReplayUse::Distill
    }

    fn payload_len(&self, num_classes: usize) -> usize {
        num_classes
    }

    fn extra_loss(&mut self, step: &LossContext) -> Result<Option<Tensor>, TrainError> {
        let Some(replayed) = step.replayed else {
            return Ok(None);
        };
        if replayed.logits.size()[0] == 0 {
            return Ok(None);
        }
        let stored = replayed
            .payloads
            .ok_or_else(|| TrainError::Config("DER replayed samples without their stored logits".into()))?;
        let logits = replayed.logits.f_to_kind(Kind::Float)?;
        let mut loss = logits
            .f_mse_loss(stored, Reduction::Mean)?
            .f_mul_scalar(self.config.alpha)?;
        if self.config.beta > 0.0 {
            let labels = logits.f_cross_entropy_loss::<Tensor>(replayed.labels, None, Reduction::Mean, -100, 0.0)?;
            loss = loss.f_add(&labels.f_mul_scalar(self.config.beta)?)?;
        }
        Ok(Some(loss))
    }
}
