//! Elastic weight consolidation (Kirkpatrick et al. 2017) and online EWC (Schwarz et al.
//! 2018): after every task, the diagonal of the Fisher information of the parameters is
//! estimated on the task's training samples; later tasks pay `lambda / 2 · Σ F (θ − θ*)²` for
//! moving the parameters away from their values θ* at the end of the task. Offline EWC keeps
//! one penalty per past task; online EWC one, its Fisher decayed by `gamma` at every task.
//!
//! The Fisher is the mean over `fisher_samples` samples (this rank's share of them, averaged
//! over the ranks) of the squared gradient of the log-probability of the class the model
//! predicts, among the classes seen so far, in evaluation mode.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{copies, named, quadratic_penalty, take_named, Agent, LossContext, TaskEnd};
use crate::learner::Learner;
use crate::TrainError;

/// The settings of EWC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EwcConfig {
    /// The strength of the penalty.
    pub lambda: f64,
    /// Online EWC's decay of the Fisher at every task; `None`: offline EWC.
    pub gamma: Option<f64>,
    /// Training samples per task that estimate the Fisher.
    pub fisher_samples: usize,
}

/// One consolidated task (or, online, all of them): θ* and the Fisher.
struct Anchor {
    params: Vec<Tensor>,
    fisher: Vec<Tensor>,
}

pub struct Ewc {
    config: EwcConfig,
    anchors: Vec<Anchor>,
}

impl Ewc {
    pub fn new(config: EwcConfig) -> Self {
        Ewc {
            config,
            anchors: Vec::new(),
        }
    }
}

impl Agent for Ewc {
    fn extra_loss(&mut self, step: &LossContext) -> Result<Option<Tensor>, TrainError> {
        let mut total: Option<Tensor> = None;
        for anchor in &self.anchors {
            let term = quadratic_penalty(step.params, &anchor.params, &anchor.fisher)?;
            total = Some(match total {
                Some(sum) => sum.f_add(&term)?,
                None => term,
            });
        }
        total.map(|t| Ok(t.f_mul_scalar(self.config.lambda / 2.0)?)).transpose()
    }

    fn end_task(&mut self, task: TaskEnd) -> Result<(), TrainError> {
        let fisher =
            task.learner
                .fisher_diagonal(task.batches, task.seen_classes, self.config.fisher_samples, task.world)?;
        let params = copies(&task.learner.trainable());
        match (self.config.gamma, self.anchors.first_mut()) {
            (Some(gamma), Some(anchor)) => {
                for (old, new) in anchor.fisher.iter_mut().zip(&fisher) {
                    *old = old.f_mul_scalar(gamma)?.f_add(new)?;
                }
                anchor.params = params;
            }
            _ => self.anchors.push(Anchor { params, fisher }),
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>, TrainError> {
        let mut state = Vec::new();
        for (t, anchor) in self.anchors.iter().enumerate() {
            state.extend(named(&format!("ewc.{t}.params"), &anchor.params)?);
            state.extend(named(&format!("ewc.{t}.fisher"), &anchor.fisher)?);
        }
        Ok(state)
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>, learner: &Learner) -> Result<(), TrainError> {
        let device = learner.device();
        self.anchors.clear();
        for t in 0.. {
            let params = take_named(&state, &format!("ewc.{t}.params"), device)?;
            if params.is_empty() {
                break;
            }
            let fisher = take_named(&state, &format!("ewc.{t}.fisher"), device)?;
            self.anchors.push(Anchor { params, fisher });
        }
        Ok(())
    }
}
