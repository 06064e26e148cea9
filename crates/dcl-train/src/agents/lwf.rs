//! Learning without forgetting (Li & Hoiem 2017): at the end of every task the model is
//! frozen as a teacher; on later tasks, the student's outputs for the classes the teacher had
//! seen are distilled towards the teacher's on the current batch (soft targets at
//! `temperature`, the KL divergence scaled by its square), weighted by `alpha`.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{named, take_named, Agent, LossContext, TaskEnd};
use crate::learner::{FrozenModel, Learner};
use crate::TrainError;

/// The settings of LwF.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LwfConfig {
    /// The weight of the distillation term.
    pub alpha: f64,
    /// The temperature of the soft targets.
    pub temperature: f64,
}

pub struct Lwf {
    config: LwfConfig,
    teacher: Option<FrozenModel>,
    /// The logit mask of the classes the teacher had seen (none: all).
    teacher_classes: Option<Tensor>,
}

impl Lwf {
    pub fn new(config: LwfConfig) -> Self {
        Lwf {
            config,
            teacher: None,
            teacher_classes: None,
        }
    }
}

impl Agent for Lwf {
    fn extra_loss(&mut self, step: &LossContext) -> Result<Option<Tensor>, TrainError> {
        let Some(teacher) = &self.teacher else {
            return Ok(None);
        };
        let t = self.config.temperature;
        let mask = |logits: Tensor| -> Result<Tensor, TrainError> {
            Ok(match &self.teacher_classes {
                // Masked classes get a large negative logit rather than -inf, so that the
                // divergence stays finite (their probability is 0 on both sides).
                Some(mask) => logits.f_add(&mask.f_clamp_min(-1e4)?)?,
                None => logits,
            })
        };
        let targets = mask(teacher.logits(step.images)?)?
            .f_div_scalar(t)?
            .f_softmax(-1, Kind::Float)?;
        let student = mask(step.logits.f_to_kind(Kind::Float)?)?
            .f_div_scalar(t)?
            .f_log_softmax(-1, Kind::Float)?;
        // KL(targets ‖ student), summed over classes, averaged over the batch.
        let divergence = targets
            .f_mul(&targets.f_clamp_min(1e-12)?.f_log()?.f_sub(&student)?)?
            .f_sum_dim_intlist(-1, false, Kind::Float)?
            .f_mean(Kind::Float)?;
        Ok(Some(divergence.f_mul_scalar(self.config.alpha * t * t)?))
    }

    fn end_task(&mut self, task: TaskEnd) -> Result<(), TrainError> {
        self.teacher = Some(task.learner.frozen_copy()?);
        self.teacher_classes = task.seen_classes.map(Tensor::copy);
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>, TrainError> {
        let Some(teacher) = &self.teacher else {
            return Ok(Vec::new());
        };
        let mut state = named("lwf.teacher", &teacher.weights())?;
        if let Some(mask) = &self.teacher_classes {
            state.extend(named("lwf.classes", std::slice::from_ref(mask))?);
        }
        Ok(state)
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>, learner: &Learner) -> Result<(), TrainError> {
        let weights = take_named(&state, "lwf.teacher", learner.device())?;
        if weights.is_empty() {
            return Ok(());
        }
        let mut teacher = learner.frozen_copy()?;
        teacher.load(&weights)?;
        self.teacher = Some(teacher);
        self.teacher_classes = take_named(&state, "lwf.classes", learner.device())?.pop();
        Ok(())
    }
}
