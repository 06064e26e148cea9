//! A model with its optimizer: the unit that takes training steps.

use dcl_models::{Model, ModelInput};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Reduction, Tensor};

use crate::TrainError;

/// The optimiser settings of a learner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdSettings {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

/// A model, its variables and its optimiser.
pub struct Learner {
    /// Keeps the model's variables alive; the optimiser updates them.
    _vars: nn::VarStore,
    model: Model,
    optimizer: nn::Optimizer,
}

impl Learner {
    /// Builds the model called `model` on `device` (initialised from libtorch's global
    /// seed, laid out channels-last) and an SGD optimiser over its variables.
    pub fn new(model: &str, input: ModelInput, sgd: SgdSettings, device: Device) -> Result<Self, TrainError> {
        let vars = nn::VarStore::new(device);
        let model = dcl_models::build(model, &vars.root(), input)?;
        dcl_models::layout::use_channels_last(&vars);
        let optimizer = nn::Sgd {
            momentum: sgd.momentum,
            dampening: 0.0,
            wd: sgd.weight_decay,
            nesterov: false,
        }
        .build(&vars, sgd.lr)?;
        Ok(Learner { _vars: vars, model, optimizer })
    }

    /// One SGD step on the mean cross-entropy of a batch; returns the loss and the logits.
    pub fn train_step(&mut self, images: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor), TrainError> {
        let logits = self.model.forward_t(images, true);
        let loss = logits.f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)?;
        self.optimizer.backward_step(&loss);
        Ok((loss, logits))
    }

    /// The logits of a batch in evaluation mode (dropout off), without gradients.
    pub fn predict(&self, images: &Tensor) -> Tensor {
        tch::no_grad(|| self.model.forward_t(images, false))
    }
}
