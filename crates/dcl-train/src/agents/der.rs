//! Dark experience replay (Buzzega et al. 2020): the buffer stores every offered sample with
//! the logits the model gave it when it was trained on; replayed samples go through the model
//! with the batch, and their logits are pulled towards the stored ones (mean squared error,
//! weighted by `alpha`). DER++ adds the cross-entropy of replayed samples' labels, weighted by
//! `beta`, on a second set of `num_representatives` as Buzzega et al. (drawn with the first,
//! so the two sets share no sample, where theirs are independent draws).

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

    fn replay_sets(&self) -> usize {
        if self.config.beta > 0.0 {
            2
        } else {
            1
        }
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
        if self.config.beta == 0.0 {
            return Ok(Some(
                logits
                    .f_mse_loss(stored, Reduction::Mean)?
                    .f_mul_scalar(self.config.alpha)?,
            ));
        }
        // DER++: even rows are the logit set, odd rows the label set (`replay_sets`).
        let rows = logits.size()[0];
        let set = |first: i64| Tensor::f_arange_start_step(first, rows, 2, (Kind::Int64, logits.device()));
        let (matched, labelled) = (set(0)?, set(1)?);
        let mut loss = logits
            .f_index_select(0, &matched)?
            .f_mse_loss(&stored.f_index_select(0, &matched)?, Reduction::Mean)?
            .f_mul_scalar(self.config.alpha)?;
        if labelled.size()[0] > 0 {
            let labels = logits.f_index_select(0, &labelled)?.f_cross_entropy_loss::<Tensor>(
                &replayed.labels.f_index_select(0, &labelled)?,
                None,
                Reduction::Mean,
                -100,
                0.0,
            )?;
            loss = loss.f_add(&labels.f_mul_scalar(self.config.beta)?)?;
        }
        Ok(Some(loss))
    }
}
