//! Synaptic intelligence (Zenke et al. 2017): every parameter's contribution to the decrease
//! of the loss is tracked along the training trajectory (ω += −g·Δθ at every step); at the end
//! of a task it becomes an importance Ω += ω / ((Δθ of the task)² + ξ), and later tasks pay
//! `c · Σ Ω (θ − θ*)²`.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{copies, named, quadratic_penalty, take_named, Agent, LossContext, TaskEnd};
use crate::learner::Learner;
use crate::TrainError;

/// The settings of SI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiConfig {
    /// The strength of the penalty.
    pub c: f64,
    /// The damping ξ of the importance.
    pub epsilon: f64,
}

pub struct Si {
    config: SiConfig,
    /// The parameters at the start of the current task.
    start: Vec<Tensor>,
    /// The path integral of the current task.
    omega: Vec<Tensor>,
    /// The consolidated importance and anchor, after the first task.
    importance: Vec<Tensor>,
    anchor: Vec<Tensor>,
    /// The gradients and parameters just before the optimiser step.
    before: Option<(Vec<Tensor>, Vec<Tensor>)>,
}

impl Si {
    pub fn new(config: SiConfig) -> Self {
        Si {
            config,
            start: Vec::new(),
            omega: Vec::new(),
            importance: Vec::new(),
            anchor: Vec::new(),
            before: None,
        }
    }
}

impl Agent for Si {
    fn extra_loss(&mut self, step: &LossContext) -> Result<Option<Tensor>, TrainError> {
        if self.start.is_empty() {
            self.start = copies(step.params);
            self.omega = step.params.iter().map(|p| p.detach().zeros_like()).collect();
        }
        if self.importance.is_empty() {
            return Ok(None);
        }
        let penalty = quadratic_penalty(step.params, &self.anchor, &self.importance)?;
        Ok(Some(penalty.f_mul_scalar(self.config.c)?))
    }

    fn adjust_gradients(
        &mut self,
        params: &[Tensor],
        grads: &[Tensor],
        _reference: Option<&Tensor>,
    ) -> Result<(), TrainError> {
        self.before = Some((copies(grads), copies(params)));
        Ok(())
    }

    fn after_step(&mut self, params: &[Tensor]) -> Result<(), TrainError> {
        let Some((grads, previous)) = self.before.take() else {
            return Ok(());
        };
        tch::no_grad(|| {
            for ((omega, grad), (param, old)) in self.omega.iter_mut().zip(&grads).zip(params.iter().zip(&previous)) {
                let _ = omega.f_sub_(&grad.f_mul(&param.detach().f_sub(old)?)?)?;
            }
            Ok(())
        })
    }

    fn end_task(&mut self, task: TaskEnd) -> Result<(), TrainError> {
        let params = copies(&task.learner.trainable());
        if self.start.is_empty() {
            return Ok(());
        }
        if self.importance.is_empty() {
            self.importance = params.iter().map(|p| p.detach().zeros_like()).collect();
        }
        for (((importance, omega), param), start) in self
            .importance
            .iter_mut()
            .zip(&self.omega)
            .zip(&params)
            .zip(&self.start)
        {
            let moved = param.f_sub(start)?.f_square()?.f_add_scalar(self.config.epsilon)?;
            let _ = importance.f_add_(&omega.f_div(&moved)?)?;
        }
        for omega in &mut self.omega {
            let _ = omega.f_zero_()?;
        }
        self.anchor = copies(&params);
        self.start = params;
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>, TrainError> {
        let mut state = named("si.start", &self.start)?;
        state.extend(named("si.omega", &self.omega)?);
        state.extend(named("si.importance", &self.importance)?);
        state.extend(named("si.anchor", &self.anchor)?);
        Ok(state)
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>, learner: &Learner) -> Result<(), TrainError> {
        let device = learner.device();
        self.start = take_named(&state, "si.start", device)?;
        self.omega = take_named(&state, "si.omega", device)?;
        self.importance = take_named(&state, "si.importance", device)?;
        self.anchor = take_named(&state, "si.anchor", device)?;
        Ok(())
    }
}
