//! A model with its optimiser: the unit that takes training steps.

use std::sync::Arc;

use dcl_dist::Communicator;
use dcl_models::{Model, ModelConfig, ModelInput};
use tch::nn;
use tch::{Device, Reduction, Tensor};

use crate::agents::{Agent, LossContext, ReplayUse, ReplayedLogits};
use crate::amp::{self, GradScaler, Precision};
use crate::checkpoint;
use crate::optimizer::RegimeOptimizer;
use crate::regime::Hyperparameters;
use crate::TrainError;

/// A model, its variables, their initial values and an optimiser, and the world its
/// gradients are averaged over.
pub struct Learner {
    vars: nn::VarStore,
    model: Model,
    /// What the model was built from (for frozen copies).
    spec: (String, ModelConfig, ModelInput),
    /// The mean gradient on the replayed samples of the current step, for agents that ask.
    reference: Option<Tensor>,
    /// What building the model said (the weights it loaded, a re-initialised head).
    notice: Option<String>,
    /// The variables as initialised, for resets between tasks.
    initial: Vec<(String, Tensor)>,
    optimizer: RegimeOptimizer,
    world: Arc<dyn Communicator>,
    /// Host staging of the flattened gradients: this rank's and the sum over the ranks.
    local_gradients: Vec<f32>,
    summed_gradients: Vec<f32>,
    /// Batches whose gradients make one optimiser step (upstream's `batches_per_allreduce`).
    accumulation: usize,
    /// Batches accumulated since the last optimiser step.
    pending: usize,
    /// All-reduce gradients in half precision (upstream's `--fp16-allreduce`).
    fp16_allreduce: bool,
    /// Half-precision staging: this rank's gradients and their sum.
    local_half: Vec<u16>,
    summed_half: Vec<u16>,
    device: Device,
    /// The precision of the forward pass (`--amp`).
    precision: Precision,
    /// Loss scaling, for float16.
    scaler: Option<GradScaler>,
}

impl Learner {
    /// Builds the model called `model` with `config` on `device` (initialised from
    /// libtorch's global seed, or loaded from the config's weights file; laid out
    /// channels-last) and an optimiser with `settings` over its variables (PyTorch's
    /// defaults for what an [`crate::OptimizerSettings`] does not name). In a world of
    /// several ranks, rank 0's initial values are broadcast to every rank.
    pub fn new(
        model_name: &str,
        config: &ModelConfig,
        input: ModelInput,
        settings: impl Into<Hyperparameters>,
        device: Device,
        world: Arc<dyn Communicator>,
    ) -> Result<Self, TrainError> {
        let vars = nn::VarStore::new(device);
        let dcl_models::Built { model, notice } = dcl_models::build(model_name, &vars.root(), input, config)?;
        dcl_models::layout::use_channels_last(&vars);
        let mut named: Vec<(String, Tensor)> = vars.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        if world.size() > 1 {
            let tensors: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
            let mut values = Vec::new();
            flatten_into(&tensors, &mut values)?;
            world.broadcast(0, &mut values);
            tch::no_grad(|| unflatten(&values, &tensors, 1.0))?;
        }
        let initial = named.into_iter().map(|(name, t)| (name, t.copy())).collect();
        let optimizer = RegimeOptimizer::new(&vars, settings.into())?;
        Ok(Learner {
            vars,
            model,
            spec: (model_name.to_owned(), config.clone(), input),
            reference: None,
            notice,
            initial,
            optimizer,
            world,
            local_gradients: Vec::new(),
            summed_gradients: Vec::new(),
            accumulation: 1,
            pending: 0,
            fp16_allreduce: false,
            local_half: Vec::new(),
            summed_half: Vec::new(),
            device,
            precision: Precision::Fp32,
            scaler: None,
        })
    }

    /// Runs forward passes in `precision` (with loss scaling for float16); refused where the
    /// device cannot.
    pub fn set_precision(&mut self, precision: Precision) -> Result<(), TrainError> {
        precision.check(self.device)?;
        self.precision = precision;
        self.scaler = (precision == Precision::Fp16).then(|| GradScaler::new(self.device));
        Ok(())
    }

    /// Compresses gradients to half precision for the all-reduce (half the bytes).
    pub fn set_fp16_allreduce(&mut self, on: bool) {
        self.fp16_allreduce = on;
    }

    /// Accumulates the gradients of `batches` batches (at least 1) per optimiser step and
    /// all-reduce: a step then follows the mean loss over them, as one batch `batches`
    /// times larger would.
    pub fn set_accumulation(&mut self, batches: usize) {
        self.accumulation = batches.max(1);
    }

    /// A fresh optimiser with `settings`: momentum and other state start from zero.
    pub fn reset_optimizer(&mut self, settings: impl Into<Hyperparameters>) -> Result<(), TrainError> {
        self.optimizer = RegimeOptimizer::new(&self.vars, settings.into())?;
        Ok(())
    }

    /// Moves to `settings`, keeping the optimiser's state unless the kind of optimiser
    /// changes ([`RegimeOptimizer::apply`]).
    pub fn apply(&mut self, settings: impl Into<Hyperparameters>) -> Result<(), TrainError> {
        self.optimizer.apply(&self.vars, settings.into())
    }

    /// Sets the learning rate of the current settings (per-step warm-up).
    pub fn set_lr(&mut self, lr: f64) {
        self.optimizer.set_lr(lr);
    }

    /// Restores every variable to its initial value (upstream's `reset_state_dict`).
    pub fn reset_weights(&mut self) {
        let variables = self.vars.variables();
        tch::no_grad(|| {
            for (name, value) in &self.initial {
                let mut var = variables[name].shallow_clone();
                var.copy_(value);
            }
        });
    }

    /// Trains on a batch of `fresh` samples and the samples `replayed` from the rehearsal
    /// buffer apart from it (if any): the gradient of the mean cross-entropy plus what `agent`
    /// adds, then an optimiser step (after every batch, or every
    /// [`Learner::set_accumulation`] batches). The agent says what replayed samples are for
    /// ([`ReplayUse`]): they join the batch, give a reference gradient, or go through the model
    /// with the batch for the agent's own loss. `mask`, when given, is added to the logits (0
    /// for allowed classes, -inf for the others) before the cross-entropy; `class_weights`,
    /// when given, weighs each sample's cross-entropy by its class (weighted mean).
    pub fn train_step(
        &mut self,
        agent: &mut dyn Agent,
        fresh: (&Tensor, &Tensor),
        replayed: Option<Replayed>,
        mask: Option<&Tensor>,
        class_weights: Option<&Tensor>,
    ) -> Result<StepOutcome, TrainError> {
        let (images, labels) = fresh;
        let use_of_replay = agent.replay_use();
        let (reference, joined) = match (replayed, use_of_replay) {
            (None, _) => (None, None),
            (Some(replayed), ReplayUse::Reference) => (Some(replayed), None),
            (Some(replayed), _) => (None, Some(replayed)),
        };
        if self.pending == 0 {
            self.reference = match reference {
                Some(replayed) => Some(self.mean_gradient(replayed.images, replayed.labels, mask)?),
                None => None,
            };
            self.optimizer.zero_grad();
        }
        let fresh_rows = labels.size()[0];
        let (inputs, all_labels) = match &joined {
            Some(replayed) => (
                Tensor::f_cat(&[images, replayed.images], 0)?,
                Tensor::f_cat(&[labels, replayed.labels], 0)?,
            ),
            None => (images.shallow_clone(), labels.shallow_clone()),
        };
        // Replayed samples with a loss of the agent's own: the cross-entropy is the fresh rows'.
        let apart = joined.as_ref().filter(|_| use_of_replay == ReplayUse::Distill);
        let params = self.trainable();
        let (loss, logits, scored_labels, raw, extra) = amp::autocast(self.precision, self.device, || {
            let raw = self.model.forward_t(&inputs, true);
            let (scored, scored_labels) = match apart {
                Some(_) => (raw.f_narrow(0, 0, fresh_rows)?, labels.shallow_clone()),
                None => (raw.shallow_clone(), all_labels.shallow_clone()),
            };
            let (loss, logits) = masked_loss(&scored, &scored_labels, mask, class_weights)?;
            let replayed_logits = match apart {
                Some(replayed) => Some(ReplayedLogits {
                    logits: raw.f_narrow(0, fresh_rows, raw.size()[0] - fresh_rows)?,
                    labels: replayed.labels,
                    payloads: replayed.payloads,
                }),
                None => None,
            };
            let extra = agent.extra_loss(&LossContext {
                params: &params,
                images: &inputs,
                logits: &raw,
                labels: &all_labels,
                replayed: replayed_logits.as_ref(),
            })?;
            Ok((loss, logits, scored_labels, raw, extra))
        })?;
        let mut objective = match extra {
            Some(extra) => loss.f_add(&extra)?,
            None => loss.shallow_clone(),
        };
        if self.accumulation > 1 {
            objective = objective.f_div_scalar(self.accumulation as f64)?;
        }
        if let Some(scaler) = &self.scaler {
            objective = scaler.scale_loss(&objective)?;
        }
        objective.f_backward()?;
        self.pending += 1;
        if self.pending == self.accumulation {
            self.step(agent)?;
        }
        Ok(StepOutcome {
            loss,
            logits,
            labels: scored_labels,
            fresh_logits: raw
                .f_narrow(0, 0, fresh_rows)?
                .f_detach()?
                .f_to_kind(tch::Kind::Float)?,
        })
    }

    /// Takes the optimiser step of a partly accumulated window (the end of a pass); its
    /// gradients are rescaled to the mean over the batches it holds.
    pub fn flush(&mut self, agent: &mut dyn Agent) -> Result<(), TrainError> {
        if self.pending == 0 {
            return Ok(());
        }
        let scale = self.accumulation as f64 / self.pending as f64;
        if scale != 1.0 {
            tch::no_grad(|| -> Result<(), TrainError> {
                for grad in self.vars.trainable_variables().iter().map(Tensor::grad) {
                    let _ = grad.shallow_clone().f_mul_scalar_(scale)?;
                }
                Ok(())
            })?;
        }
        self.step(agent)
    }

    /// Averages the accumulated gradients over the ranks and takes the optimiser step (with
    /// loss scaling: unscales them first, and skips the step if any is not finite, on every
    /// rank alike since they all hold the same average); the agent adjusts the gradients
    /// before it and sees the parameters after it.
    fn step(&mut self, agent: &mut dyn Agent) -> Result<(), TrainError> {
        if self.world.size() > 1 {
            self.average_gradients()?;
        }
        let params = self.trainable();
        let grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
        let finite = match &mut self.scaler {
            Some(scaler) => scaler.unscale_and_update(&grads)?,
            None => true,
        };
        if finite {
            agent.adjust_gradients(&params, &grads, self.reference.as_ref())?;
            self.optimizer.step();
            agent.after_step(&params)?;
        }
        self.pending = 0;
        Ok(())
    }

    /// The flat mean gradient (over the ranks) of the masked cross-entropy on a batch; the
    /// gradients are zero afterwards.
    fn mean_gradient(&mut self, images: &Tensor, labels: &Tensor, mask: Option<&Tensor>) -> Result<Tensor, TrainError> {
        self.optimizer.zero_grad();
        let (loss, _) = amp::autocast(self.precision, self.device, || {
            masked_loss(&self.model.forward_t(images, true), labels, mask, None)
        })?;
        loss.f_backward()?;
        let grads: Vec<Tensor> = self.vars.trainable_variables().iter().map(Tensor::grad).collect();
        flatten_into(&grads, &mut self.local_gradients)?;
        if self.world.size() > 1 {
            self.summed_gradients.resize(self.local_gradients.len(), 0.0);
            self.world
                .all_reduce_sum_into(&self.local_gradients, &mut self.summed_gradients);
            std::mem::swap(&mut self.local_gradients, &mut self.summed_gradients);
        }
        let scale = 1.0 / self.world.size() as f64;
        let flat = Tensor::from_slice(&self.local_gradients)
            .f_to_device(self.device)?
            .f_mul_scalar(scale)?;
        self.optimizer.zero_grad();
        Ok(flat)
    }

    /// The trainable parameters, in a fixed order.
    pub fn trainable(&self) -> Vec<Tensor> {
        self.vars.trainable_variables()
    }

    /// Where the model lives.
    pub fn device(&self) -> Device {
        self.device
    }

    /// A frozen copy of the model as it is now, for teachers.
    pub fn frozen_copy(&self) -> Result<FrozenModel, TrainError> {
        let (name, config, input) = &self.spec;
        let vars = nn::VarStore::new(self.device);
        let dcl_models::Built { model, .. } = dcl_models::build(name, &vars.root(), *input, config)?;
        let mut frozen = FrozenModel { vars, model };
        let mut weights: Vec<(String, Tensor)> = self.vars.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        frozen.load(&weights.into_iter().map(|(_, t)| t).collect::<Vec<_>>())?;
        Ok(frozen)
    }

    /// The diagonal of the Fisher information of the trainable parameters, estimated on at
    /// most `samples` samples of `batches` (over the ranks, each its share; the mean of every
    /// rank's): the squared gradient of the log-probability of the predicted class among
    /// those `mask` allows, one sample at a time, in evaluation mode.
    pub fn fisher_diagonal(
        &mut self,
        batches: &mut dyn Iterator<Item = Result<(Tensor, Tensor), TrainError>>,
        mask: Option<&Tensor>,
        samples: usize,
        world: &dyn Communicator,
    ) -> Result<Vec<Tensor>, TrainError> {
        let params = self.trainable();
        let mut fisher: Vec<Tensor> = params.iter().map(Tensor::zeros_like).collect();
        let share = samples.div_ceil(world.size());
        let mut seen = 0;
        'batches: for batch in batches {
            let (images, _) = batch?;
            for i in 0..images.size()[0] {
                if seen == share {
                    break 'batches;
                }
                self.optimizer.zero_grad();
                let image = images.f_narrow(0, i, 1)?.f_to_device(self.device)?;
                let logits = self.model.forward_t(&image, false);
                let logits = match mask {
                    Some(mask) => logits.f_add(mask)?,
                    None => logits,
                };
                let predicted = logits.f_argmax(-1, false)?;
                let loss = logits.f_cross_entropy_loss::<Tensor>(&predicted, None, Reduction::Mean, -100, 0.0)?;
                loss.f_backward()?;
                tch::no_grad(|| -> Result<(), TrainError> {
                    for (sum, param) in fisher.iter_mut().zip(&params) {
                        let _ = sum.f_add_(&param.grad().f_square()?)?;
                    }
                    Ok(())
                })?;
                seen += 1;
            }
        }
        self.optimizer.zero_grad();
        let mut counts = [seen as f64];
        world.all_reduce_sum_f64(&mut counts);
        if world.size() > 1 {
            flatten_into(&fisher, &mut self.local_gradients)?;
            self.summed_gradients.resize(self.local_gradients.len(), 0.0);
            self.world
                .all_reduce_sum_into(&self.local_gradients, &mut self.summed_gradients);
            tch::no_grad(|| unflatten(&self.summed_gradients, &fisher, 1.0))?;
        }
        let total = counts[0].max(1.0);
        fisher.iter().map(|f| Ok(f.f_div_scalar(total)?)).collect()
    }

    /// Replaces every gradient by its mean over the ranks (one all-reduce of all of them,
    /// between two preallocated host buffers; the division happens in the copy back).
    fn average_gradients(&mut self) -> Result<(), TrainError> {
        let grads: Vec<Tensor> = self.vars.trainable_variables().iter().map(Tensor::grad).collect();
        flatten_into(&grads, &mut self.local_gradients)?;
        let n = self.local_gradients.len();
        self.summed_gradients.resize(n, 0.0);
        if self.fp16_allreduce {
            self.local_half.clear();
            self.local_half
                .extend(self.local_gradients.iter().map(|&g| half::f16::from_f32(g).to_bits()));
            self.summed_half.resize(n, 0);
            self.world
                .all_reduce_sum_f16_into(&self.local_half, &mut self.summed_half);
            for (out, &bits) in self.summed_gradients.iter_mut().zip(&self.summed_half) {
                *out = half::f16::from_bits(bits).to_f32();
            }
        } else {
            self.world
                .all_reduce_sum_into(&self.local_gradients, &mut self.summed_gradients);
        }
        let scale = 1.0 / self.world.size() as f64;
        tch::no_grad(|| unflatten(&self.summed_gradients, &grads, scale))
    }

    /// What a checkpoint keeps of the learner, as host copies: the variables (weights and
    /// buffers) by name, the optimiser's state and hyper-parameters, the loss scale.
    pub fn snapshot(&self) -> Result<LearnerState, TrainError> {
        let mut weights: Vec<(String, Tensor)> = self.vars.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        let (optimizer, hyper) = self.optimizer.state();
        Ok(LearnerState {
            weights: checkpoint::host_copies(weights)?,
            optimizer: checkpoint::host_copies(optimizer)?,
            hyper,
            loss_scale: self.scaler.as_ref().map(GradScaler::state),
        })
    }

    /// Restores what [`Learner::snapshot`] returned; refuses variables of other names or
    /// shapes than the model's.
    pub fn restore(&mut self, state: &LearnerState) -> Result<(), TrainError> {
        let variables = self.vars.variables();
        if variables.len() != state.weights.len() {
            return Err(TrainError::Config(format!(
                "the checkpoint holds {} variables, the model {}",
                state.weights.len(),
                variables.len()
            )));
        }
        tch::no_grad(|| -> Result<(), TrainError> {
            for (name, value) in &state.weights {
                let Some(var) = variables.get(name) else {
                    return Err(TrainError::Config(format!("the model has no variable '{name}'")));
                };
                if var.size() != value.size() {
                    return Err(TrainError::Config(format!(
                        "variable '{name}' has shape {:?} in the checkpoint, {:?} in the model",
                        value.size(),
                        var.size()
                    )));
                }
                var.shallow_clone().f_copy_(value)?;
            }
            Ok(())
        })?;
        self.optimizer.load_state(&state.optimizer, &state.hyper)?;
        if let (Some(scaler), Some(scale)) = (&mut self.scaler, state.loss_scale) {
            scaler.restore(scale);
        }
        Ok(())
    }

    /// What building the model said, if anything (the weights file it loaded).
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// Tells the model how far training has gone in the task (`epoch / epochs`), for the
    /// regularisers it schedules.
    pub fn set_progress(&self, fraction: f64) {
        self.model.set_progress(fraction);
    }

    /// The logits (float32) of a batch in evaluation mode (dropout off), without gradients.
    pub fn predict(&self, images: &Tensor) -> Result<Tensor, TrainError> {
        let logits =
            tch::no_grad(|| amp::autocast(self.precision, self.device, || Ok(self.model.forward_t(images, false))))?;
        Ok(logits.f_to_kind(tch::Kind::Float)?)
    }

    /// The features (penultimate layer, float32) of a batch in evaluation mode, without
    /// gradients; `None` where the model does not expose them.
    pub fn features(&self, images: &Tensor) -> Result<Option<Tensor>, TrainError> {
        tch::no_grad(|| self.model.features_t(images, false))
            .map(|f| Ok(f.f_to_kind(tch::Kind::Float)?))
            .transpose()
    }

    /// The name of the model, for messages.
    pub fn model_name(&self) -> &str {
        &self.spec.0
    }

    /// The variables, for checks and checkpoints.
    pub fn variables(&self) -> &nn::VarStore {
        &self.vars
    }
}

/// Samples replayed from the rehearsal buffer, apart from a training batch.
pub struct Replayed<'a> {
    pub images: &'a Tensor,
    pub labels: &'a Tensor,
    /// What the buffer stored with them (logits), when the agent stores anything.
    pub payloads: Option<&'a Tensor>,
}

/// What a training step gives back.
pub struct StepOutcome {
    /// The mean cross-entropy of the step.
    pub loss: Tensor,
    /// The (masked) logits of the rows the cross-entropy scored, and their labels.
    pub logits: Tensor,
    pub labels: Tensor,
    /// The unmasked logits of the fresh samples, detached, in float32.
    pub fresh_logits: Tensor,
}

/// A frozen copy of a learner's model ([`Learner::frozen_copy`]).
pub struct FrozenModel {
    vars: nn::VarStore,
    model: Model,
}

impl FrozenModel {
    /// The logits (float32) of a batch in evaluation mode, without gradients.
    pub fn logits(&self, images: &Tensor) -> Result<Tensor, TrainError> {
        let logits = tch::no_grad(|| self.model.forward_t(images, false));
        Ok(logits.f_to_kind(tch::Kind::Float)?)
    }

    /// Its variables, by name order.
    pub fn weights(&self) -> Vec<Tensor> {
        let mut named: Vec<(String, Tensor)> = self.vars.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named.into_iter().map(|(_, t)| t).collect()
    }

    /// Sets its variables, by name order, to `weights`.
    pub fn load(&mut self, weights: &[Tensor]) -> Result<(), TrainError> {
        let own = self.weights();
        if own.len() != weights.len() {
            return Err(TrainError::Config(format!(
                "a frozen model of {} variables given {}",
                own.len(),
                weights.len()
            )));
        }
        tch::no_grad(|| -> Result<(), TrainError> {
            for (var, value) in own.iter().zip(weights) {
                var.shallow_clone().f_copy_(value)?;
            }
            Ok(())
        })?;
        self.vars.freeze();
        Ok(())
    }
}

/// What a checkpoint keeps of a [`Learner`].
pub struct LearnerState {
    pub weights: Vec<(String, Tensor)>,
    pub optimizer: Vec<(String, Tensor)>,
    pub hyper: serde_json::Value,
    pub loss_scale: Option<(f64, i64)>,
}

/// Writes the values of `tensors`, one after the other in logical order, into `out`
/// (reusing its memory).
fn flatten_into(tensors: &[Tensor], out: &mut Vec<f32>) -> Result<(), TrainError> {
    let parts: Vec<Tensor> = tensors.iter().map(|t| t.reshape([-1])).collect();
    let flat = Tensor::f_cat(&parts, 0)?.to_device(Device::Cpu);
    let n = flat.numel();
    out.resize(n, 0.0);
    flat.f_copy_data(out, n)?;
    Ok(())
}

/// Copies consecutive runs of `values`, times `scale`, into `tensors` (the inverse of
/// [`flatten_into`]).
fn unflatten(values: &[f32], tensors: &[Tensor], scale: f64) -> Result<(), TrainError> {
    let mut offset = 0;
    for tensor in tensors {
        let n = tensor.numel();
        let mut source = Tensor::from_slice(&values[offset..offset + n])
            .view(tensor.size().as_slice())
            .to_device(tensor.device());
        if scale != 1.0 {
            source = source.f_mul_scalar(scale)?;
        }
        tensor.shallow_clone().f_copy_(&source)?;
        offset += n;
    }
    Ok(())
}

/// The (class-weighted) mean cross-entropy of `logits` plus `mask`, and the masked logits.
/// A mask is one row over the classes, or a table of one row per label (task-incremental
/// training: row c masks to the classes of the task of class c), indexed by `labels`.
pub fn masked_loss(
    logits: &Tensor,
    labels: &Tensor,
    mask: Option<&Tensor>,
    class_weights: Option<&Tensor>,
) -> Result<(Tensor, Tensor), TrainError> {
    let logits = match mask {
        Some(table) if table.dim() == 2 => logits.f_add(&table.f_index_select(0, labels)?)?,
        Some(mask) => logits.f_add(mask)?,
        None => logits.shallow_clone(),
    };
    let loss = logits.f_cross_entropy_loss(labels, class_weights, Reduction::Mean, -100, 0.0)?;
    Ok((loss, logits))
}

/// An additive logit mask over `num_classes` that keeps only `allowed`.
pub fn class_mask(allowed: &[usize], num_classes: usize, device: Device) -> Tensor {
    let mut values = vec![f32::NEG_INFINITY; num_classes];
    for &c in allowed {
        values[c] = 0.0;
    }
    Tensor::from_slice(&values).to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regime::{OptimizerKind, OptimizerSettings};

    const SGD: OptimizerSettings = OptimizerSettings {
        optimizer: OptimizerKind::Sgd,
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        betas: crate::regime::ADAM_BETAS,
    };
    const INPUT: ModelInput = ModelInput {
        image_shape: [1, 28, 28],
        num_classes: 10,
    };

    fn batch() -> (Tensor, Tensor) {
        (
            Tensor::rand([8, 1, 28, 28], tch::kind::FLOAT_CPU),
            Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 2, 3]),
        )
    }

    /// A learner of `model` on MNIST-shaped input in a world of one.
    fn new_learner(model: &str, settings: OptimizerSettings) -> Learner {
        Learner::new(
            model,
            &ModelConfig::default(),
            INPUT,
            settings,
            Device::Cpu,
            Arc::new(dcl_dist::SingleProcess),
        )
        .unwrap()
    }

    fn snapshot(learner: &Learner) -> Vec<Tensor> {
        let vars = learner.variables().variables();
        let mut names: Vec<_> = vars.keys().cloned().collect();
        names.sort();
        names.iter().map(|n| vars[n].copy()).collect()
    }

    #[test]
    fn reset_weights_restores_the_initial_values() {
        tch::manual_seed(0);
        let mut learner = new_learner("mnistnet", SGD);
        let initial = snapshot(&learner);
        let (x, y) = batch();
        let _ = learner
            .train_step(&mut crate::agents::Plain, (&x, &y), None, None, None)
            .unwrap();
        assert!(
            initial.iter().zip(snapshot(&learner)).any(|(a, b)| !a.equal(&b)),
            "the step changed nothing"
        );
        learner.reset_weights();
        assert!(initial.iter().zip(snapshot(&learner)).all(|(a, b)| a.equal(&b)));
    }

    /// The weights after training on `batches` with `accumulation`, from the learner's
    /// initial weights and a fresh optimiser (so that runs compare whatever else runs).
    fn weights_after(learner: &mut Learner, batches: &[(Tensor, Tensor)], accumulation: usize) -> Vec<Tensor> {
        learner.reset_weights();
        learner.reset_optimizer(SGD).unwrap();
        learner.set_accumulation(accumulation);
        for (x, y) in batches {
            let _ = learner
                .train_step(&mut crate::agents::Plain, (x, y), None, None, None)
                .unwrap();
        }
        learner.flush(&mut crate::agents::Plain).unwrap();
        snapshot(learner)
    }

    fn assert_same(a: &[Tensor], b: &[Tensor], what: &str) {
        for (a, b) in a.iter().zip(b) {
            assert!(a.allclose(b, 1e-5, 1e-6, false), "{what}");
        }
    }

    #[test]
    fn accumulating_two_batches_steps_like_one_batch_twice_as_large() {
        let mut learner = new_learner("mlp", SGD);
        let (x, y) = batch();
        let halves = vec![
            (x.narrow(0, 0, 4), y.narrow(0, 0, 4)),
            (x.narrow(0, 4, 4), y.narrow(0, 4, 4)),
        ];
        let whole = weights_after(&mut learner, &[(x.shallow_clone(), y.shallow_clone())], 1);
        let accumulated = weights_after(&mut learner, &halves, 2);
        assert_same(&whole, &accumulated, "accumulation differs from the larger batch");
        // A window cut short by the end of the pass is the mean over what it holds.
        let alone = weights_after(&mut learner, &halves[..1], 1);
        let flushed = weights_after(&mut learner, &halves[..1], 2);
        assert_same(
            &alone,
            &flushed,
            "a flushed partial window is not the mean over its batches",
        );
        assert!(
            whole.iter().zip(&alone).any(|(a, b)| !a.allclose(b, 1e-5, 1e-6, false)),
            "the batches made no difference"
        );
    }

    #[test]
    fn momentum_never_reaches_adams_betas() {
        let adam = |momentum: f64, betas: (f64, f64)| OptimizerSettings {
            optimizer: OptimizerKind::Adam,
            lr: 0.01,
            momentum,
            weight_decay: 0.0,
            betas,
        };
        let (x, y) = batch();
        // One learner, reset between the runs: no other test's use of libtorch's global RNG
        // can change the initial weights in between.
        let mut learner = new_learner("mlp", adam(0.9, crate::regime::ADAM_BETAS));
        let mut weights = |settings: OptimizerSettings| {
            learner.reset_weights();
            learner.reset_optimizer(settings).unwrap();
            for _ in 0..3 {
                learner.apply(settings).unwrap();
                let _ = learner
                    .train_step(&mut crate::agents::Plain, (&x, &y), None, None, None)
                    .unwrap();
            }
            snapshot(&learner)
        };
        let reference = weights(adam(0.9, crate::regime::ADAM_BETAS));
        assert_same(
            &reference,
            &weights(adam(0.1, crate::regime::ADAM_BETAS)),
            "--momentum changed Adam",
        );
        let other_betas = weights(adam(0.9, (0.5, 0.999)));
        assert!(
            reference
                .iter()
                .zip(&other_betas)
                .any(|(a, b)| !a.allclose(b, 1e-5, 1e-6, false)),
            "betas made no difference"
        );
    }

    #[test]
    fn class_weights_make_a_weighted_mean() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 1.0, 0.5, 0.5]).view([3, 2]);
        let labels = Tensor::from_slice(&[0i64, 1, 1]);
        let value =
            |weights: Option<&Tensor>| f64::try_from(masked_loss(&logits, &labels, None, weights).unwrap().0).unwrap();
        let per_sample = f64::try_from(
            logits
                .cross_entropy_loss::<Tensor>(&labels, None, Reduction::None, -100, 0.0)
                .sum(tch::Kind::Double),
        )
        .unwrap();
        assert!((value(None) - per_sample / 3.0).abs() < 1e-6);
        assert!((value(Some(&Tensor::ones([2], tch::kind::FLOAT_CPU))) - value(None)).abs() < 1e-6);
        // Weights 3 and 1: (3 l0 + l1 + l2) / 5.
        let each = Vec::<f32>::try_from(logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::None, -100, 0.0))
            .unwrap();
        let expected = (3.0 * each[0] + each[1] + each[2]) as f64 / 5.0;
        assert!((value(Some(&Tensor::from_slice(&[3.0f32, 1.0]))) - expected).abs() < 1e-6);
    }

    #[test]
    fn a_mask_keeps_the_loss_on_allowed_classes() {
        tch::manual_seed(0);
        let mut learner = new_learner("mnistnet", SGD);
        let (x, y) = batch();
        let mask = class_mask(&[0, 1, 2, 3], 10, Device::Cpu);
        let logits = learner
            .train_step(&mut crate::agents::Plain, (&x, &y), None, Some(&mask), None)
            .unwrap()
            .logits;
        let predicted = logits.argmax(-1, false);
        assert!(bool::try_from(predicted.lt(4).all()).unwrap(), "a masked class won");
        assert_eq!(f64::try_from(logits.get(0).get(7)).unwrap(), f64::NEG_INFINITY);
    }
}
