//! Agents: what differs between continual-learning methods, behind one trait.
//!
//! The trainer's loop is method-free: every step it hands the learner the batch (fresh
//! samples, and replayed ones from the rehearsal buffer when the run has one) and the agent.
//! The agent decides whether replayed samples join the batch (rehearsal) or serve as a
//! reference (A-GEM), adds its terms to the loss (EWC, SI, LwF), adjusts the gradients between
//! their all-reduce and the optimiser step (A-GEM, SI's bookkeeping), and consolidates at the
//! end of every task. Everything it keeps is named tensors, saved with every checkpoint.
//!
//! Adding a method: one file here, one line in [`build`].

mod agem;
mod der;
mod ewc;
mod gdumb;
mod icarl;
mod lwf;
mod si;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use dcl_dist::Communicator;

use crate::learner::Learner;
use crate::TrainError;

/// The method of an agent and its settings (`--agent-config` keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    /// Cross-entropy on the batch as it comes (`base`; `er`, whose batches hold replayed
    /// samples).
    #[default]
    Plain,
    /// Elastic weight consolidation (Kirkpatrick et al. 2017); online EWC (Schwarz et al.
    /// 2018) with `online`.
    Ewc(ewc::EwcConfig),
    /// Synaptic intelligence (Zenke et al. 2017).
    Si(si::SiConfig),
    /// Learning without forgetting (Li & Hoiem 2017).
    Lwf(lwf::LwfConfig),
    /// Averaged gradient episodic memory (Chaudhry et al. 2019).
    Agem,
    /// Dark experience replay, DER and DER++ (Buzzega et al. 2020).
    Der(der::DerConfig),
    /// GDumb (Prabhu et al. 2020).
    Gdumb(gdumb::GdumbConfig),
    /// iCaRL (Rebuffi et al. 2017).
    Icarl(icarl::IcarlConfig),
}

pub use der::DerConfig;
pub use ewc::EwcConfig;
pub use gdumb::GdumbConfig;
pub use icarl::IcarlConfig;
pub use lwf::LwfConfig;
pub use si::SiConfig;

/// How an agent uses the samples replayed from the rehearsal buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayUse {
    /// They join the training batch.
    Train,
    /// They make a reference gradient, apart from the batch ([`Agent::adjust_gradients`]).
    Reference,
    /// They go through the model with the batch; their loss is the agent's
    /// ([`LossContext::replayed`]), the cross-entropy the fresh samples'.
    Distill,
}

/// The model's outputs on replayed samples, with what the buffer stored of them.
pub struct ReplayedLogits<'a> {
    pub logits: Tensor,
    pub labels: &'a Tensor,
    /// The stored payloads (logits at insertion), one row per sample.
    pub payloads: Option<&'a Tensor>,
}

/// A training step as the agent sees it when adding to the loss.
pub struct LossContext<'a> {
    /// The model's trainable parameters, in a fixed order.
    pub params: &'a [Tensor],
    pub images: &'a Tensor,
    /// The model's logits on `images` (before any mask).
    pub logits: &'a Tensor,
    pub labels: &'a Tensor,
    /// The replayed samples' part, for agents that train on them with a loss of their own.
    pub replayed: Option<&'a ReplayedLogits<'a>>,
}

/// The end of a task's training, as the agent sees it.
pub struct TaskEnd<'a> {
    pub learner: &'a mut Learner,
    /// The task's training samples, as (images, labels) batches of this rank's shard.
    pub batches: &'a mut dyn Iterator<Item = Result<(Tensor, Tensor), TrainError>>,
    /// The logit mask of the classes trained on so far, if not all.
    pub seen_classes: Option<&'a Tensor>,
    pub world: &'a dyn Communicator,
    /// The run's rehearsal buffer, for agents that curate it.
    pub memory: Option<&'a crate::rehearsal::Rehearsal>,
}

/// An evaluation about to happen, for agents that train the model for it.
pub struct Retrain<'a> {
    pub learner: &'a mut Learner,
    /// This rank's memory: every stored sample (network inputs) and its label, on the device.
    pub memory: (Tensor, Tensor),
    pub batch_size: usize,
    /// The logit mask of the classes seen so far, if not all.
    pub mask: Option<&'a Tensor>,
    /// The optimiser settings a task starts with.
    pub settings: crate::regime::Hyperparameters,
    /// Seeds the retraining's random choices.
    pub seed: u64,
    pub world: &'a dyn Communicator,
}

/// A continual-learning method.
pub trait Agent: Send {
    /// How replayed samples are used.
    fn replay_use(&self) -> ReplayUse {
        ReplayUse::Train
    }

    /// Sets of `num_representatives` replayed per step (DER++: one for the stored logits, one
    /// for the labels): one draw of `sets` times as many, without duplicates, whose row i the
    /// agent takes as set i mod `sets` (a draw's rows come in random order within each
    /// worker's share, so each set is a random part of every share).
    fn replay_sets(&self) -> usize {
        1
    }

    /// Floats the agent stores with every sample it offers the rehearsal buffer (its logits
    /// over `num_classes`, for DER); 0: none.
    fn payload_len(&self, _num_classes: usize) -> usize {
        0
    }

    /// Whether the stream's samples are offered to the rehearsal buffer (iCaRL curates it at
    /// the ends of tasks instead).
    fn stores_stream(&self) -> bool {
        true
    }

    /// Scores for evaluation instead of the model's logits (iCaRL's nearest mean of
    /// exemplars); `None`: the logits.
    fn classify(&self, _learner: &Learner, _images: &Tensor) -> Result<Option<Tensor>, TrainError> {
        Ok(None)
    }

    /// Whether the model trains on the stream (GDumb: the stream only fills the memory).
    fn trains_on_stream(&self) -> bool {
        true
    }

    /// Before every evaluation (GDumb: training from scratch on the memory).
    fn before_evaluation(&mut self, _retrain: Retrain) -> Result<(), TrainError> {
        Ok(())
    }

    /// A term added to the step's loss, if any.
    fn extra_loss(&mut self, _step: &LossContext) -> Result<Option<Tensor>, TrainError> {
        Ok(None)
    }

    /// Adjusts `grads` of the trainable `params` (averaged over the ranks and unscaled)
    /// before the optimiser step; `reference` is the flat mean gradient on the replayed
    /// samples, for agents that ask for it ([`ReplayUse::Reference`]).
    fn adjust_gradients(
        &mut self,
        _params: &[Tensor],
        _grads: &[Tensor],
        _reference: Option<&Tensor>,
    ) -> Result<(), TrainError> {
        Ok(())
    }

    /// After the optimiser step, with the updated parameters.
    fn after_step(&mut self, _params: &[Tensor]) -> Result<(), TrainError> {
        Ok(())
    }

    /// After a task's last training pass, before its evaluation.
    fn end_task(&mut self, _task: TaskEnd) -> Result<(), TrainError> {
        Ok(())
    }

    /// Everything the agent keeps, as named host tensors (for checkpoints).
    fn state(&self) -> Result<Vec<(String, Tensor)>, TrainError> {
        Ok(Vec::new())
    }

    /// Restores what [`Agent::state`] returned, for `learner`.
    fn load_state(&mut self, state: Vec<(String, Tensor)>, _learner: &Learner) -> Result<(), TrainError> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => Err(TrainError::Config(format!(
                "the checkpoint holds agent state ('{name}') this agent does not keep"
            ))),
        }
    }
}

/// The plain agent (`base`, `er`): the loss is the batch's cross-entropy.
pub struct Plain;

impl Agent for Plain {}

/// The agent of `method`.
pub fn build(method: &Method) -> Box<dyn Agent> {
    match method {
        Method::Plain => Box::new(Plain),
        Method::Ewc(config) => Box::new(ewc::Ewc::new(config.clone())),
        Method::Si(config) => Box::new(si::Si::new(config.clone())),
        Method::Lwf(config) => Box::new(lwf::Lwf::new(config.clone())),
        Method::Agem => Box::new(agem::Agem),
        Method::Der(config) => Box::new(der::Der::new(config.clone())),
        Method::Gdumb(config) => Box::new(gdumb::Gdumb::new(config.clone())),
        Method::Icarl(config) => Box::new(icarl::Icarl::new(config.clone())),
    }
}

/// Host copies of `tensors` named `prefix.I`.
fn named(prefix: &str, tensors: &[Tensor]) -> Result<Vec<(String, Tensor)>, TrainError> {
    tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Ok((
                format!("{prefix}.{i}"),
                t.f_to_device(tch::Device::Cpu)?.f_contiguous()?,
            ))
        })
        .collect()
}

/// The tensors named `prefix.0`, `prefix.1`, … of `state`, in order, on `device`.
fn take_named(state: &[(String, Tensor)], prefix: &str, device: tch::Device) -> Result<Vec<Tensor>, TrainError> {
    let mut found: Vec<(usize, Tensor)> = state
        .iter()
        .filter_map(|(name, t)| {
            let index = name.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
            Some((index, t.shallow_clone()))
        })
        .collect();
    found.sort_by_key(|(i, _)| *i);
    if found.iter().enumerate().any(|(i, (j, _))| i != *j) {
        return Err(TrainError::Config(format!(
            "the checkpoint's agent state '{prefix}' has gaps"
        )));
    }
    found.into_iter().map(|(_, t)| Ok(t.f_to_device(device)?)).collect()
}

/// Σ weight·(param − anchor)² over the parameters.
fn quadratic_penalty(params: &[Tensor], anchors: &[Tensor], weights: &[Tensor]) -> Result<Tensor, TrainError> {
    let mut total: Option<Tensor> = None;
    for ((param, anchor), weight) in params.iter().zip(anchors).zip(weights) {
        let term = param
            .f_sub(anchor)?
            .f_square()?
            .f_mul(weight)?
            .f_sum(tch::Kind::Float)?;
        total = Some(match total {
            Some(sum) => sum.f_add(&term)?,
            None => term,
        });
    }
    total.ok_or_else(|| TrainError::Config("the model has no trainable parameters".into()))
}

/// Detached copies of `tensors`.
fn copies(tensors: &[Tensor]) -> Vec<Tensor> {
    tensors.iter().map(|t| t.detach().copy()).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dcl_models::{ModelConfig, ModelInput};
    use tch::{Device, Kind};

    use super::*;
    use crate::regime::{OptimizerKind, OptimizerSettings};

    /// Adam, as van de Ven et al.'s protocol (plain SGD would diverge on stiff penalties).
    const ADAM: OptimizerSettings = OptimizerSettings {
        optimizer: OptimizerKind::Adam,
        lr: 0.001,
        momentum: 0.0,
        weight_decay: 0.0,
        betas: crate::regime::ADAM_BETAS,
    };

    fn learner() -> Learner {
        tch::manual_seed(0);
        let input = ModelInput {
            image_shape: [1, 28, 28],
            num_classes: 10,
        };
        let world = Arc::new(dcl_dist::SingleProcess);
        Learner::new("mlp", &ModelConfig::default(), input, ADAM, Device::Cpu, world).unwrap()
    }

    /// A task: 4 seeded batches of 16 random images of classes `first` and `first + 1`.
    fn task(first: i64, seed: i64) -> Vec<(Tensor, Tensor)> {
        tch::manual_seed(seed);
        (0..4)
            .map(|_| {
                let labels = Tensor::randint(2, [16], (Kind::Int64, Device::Cpu)) + first;
                let images =
                    Tensor::rand([16, 1, 28, 28], (Kind::Float, Device::Cpu)) + labels.view([16, 1, 1, 1]) * 0.1;
                (images, labels)
            })
            .collect()
    }

    fn train(learner: &mut Learner, agent: &mut dyn Agent, batches: &[(Tensor, Tensor)]) {
        for _ in 0..5 {
            for (images, labels) in batches {
                let _step = learner.train_step(agent, (images, labels), None, None, None).unwrap();
            }
        }
    }

    fn end_task(learner: &mut Learner, agent: &mut dyn Agent, batches: &[(Tensor, Tensor)]) {
        let mut iter = batches.iter().map(|(i, l)| Ok((i.copy(), l.copy())));
        agent
            .end_task(TaskEnd {
                learner,
                batches: &mut iter,
                seen_classes: None,
                world: &dcl_dist::SingleProcess,
                memory: None,
            })
            .unwrap();
    }

    /// The agent's penalty after a second task trained with it (`trained`), or with the plain
    /// agent (the agent only consolidating the first task).
    fn penalty_after_second_task(agent: &mut dyn Agent, trained: bool) -> f64 {
        let (first, second) = (task(0, 1), task(2, 2));
        let mut learner = learner();
        train(&mut learner, agent, &first);
        end_task(&mut learner, agent, &first);
        if trained {
            train(&mut learner, agent, &second);
        } else {
            train(&mut learner, &mut Plain, &second);
        }
        let params = learner.trainable();
        let (images, labels) = &second[0];
        let step = LossContext {
            params: &params,
            images,
            logits: &Tensor::zeros([16, 10], (Kind::Float, Device::Cpu)),
            labels,
            replayed: None,
        };
        agent.extra_loss(&step).unwrap().unwrap().double_value(&[])
    }

    #[test]
    fn ewc_holds_the_parameters_of_a_past_task_and_keeps_its_anchor_across_a_checkpoint() {
        let config = EwcConfig {
            lambda: 10000.0,
            gamma: None,
            fisher_samples: 32,
        };
        // The penalty measures the moves of the parameters the first task's Fisher weighs.
        let free = penalty_after_second_task(&mut ewc::Ewc::new(config.clone()), false);
        let mut ewc = ewc::Ewc::new(config.clone());
        let held = penalty_after_second_task(&mut ewc, true);
        assert!(held < 0.2 * free, "EWC penalty {held} vs {free} without it");
        // Its state restores the same penalty.
        let state = ewc.state().unwrap();
        assert!(
            state.iter().any(|(n, _)| n == "ewc.0.fisher.0"),
            "{:?}",
            state.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        let learner = learner();
        let mut restored = ewc::Ewc::new(config);
        restored.load_state(state, &learner).unwrap();
        let params = learner.trainable();
        let (images, labels) = &task(0, 3)[0];
        let step = LossContext {
            params: &params,
            images,
            logits: &Tensor::zeros([16, 10], (Kind::Float, Device::Cpu)),
            labels,
            replayed: None,
        };
        let a = ewc.extra_loss(&step).unwrap().unwrap().double_value(&[]);
        let b = restored.extra_loss(&step).unwrap().unwrap().double_value(&[]);
        assert!(a > 0.0 && a == b, "{a} vs {b}");
    }

    #[test]
    fn online_ewc_keeps_one_anchor_over_tasks() {
        let mut ewc = ewc::Ewc::new(EwcConfig {
            lambda: 10000.0,
            gamma: Some(0.5),
            fisher_samples: 8,
        });
        let mut learner = learner();
        for t in 0..3 {
            let batches = task(2 * t, t);
            train(&mut learner, &mut ewc, &batches);
            end_task(&mut learner, &mut ewc, &batches);
        }
        let names: Vec<String> = ewc.state().unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(names.iter().all(|n| n.starts_with("ewc.0.")), "{names:?}");
    }

    #[test]
    fn si_holds_the_parameters_that_mattered_to_a_past_task() {
        let config = SiConfig {
            c: 10000.0,
            epsilon: 0.1,
        };
        let free = penalty_after_second_task(&mut si::Si::new(config.clone()), false);
        let mut si = si::Si::new(config);
        let held = penalty_after_second_task(&mut si, true);
        assert!(held < 0.2 * free, "SI penalty {held} vs {free} without it");
        let state = si.state().unwrap();
        let importance: f64 = state
            .iter()
            .filter(|(n, _)| n.starts_with("si.importance."))
            .map(|(_, t)| t.sum(Kind::Double).double_value(&[]))
            .sum();
        assert!(importance > 0.0, "no importance after a task: {importance}");
    }

    #[test]
    fn lwf_keeps_the_outputs_of_the_previous_model_on_new_data() {
        let (first, second) = (task(0, 1), task(2, 2));
        let mut gaps = Vec::new();
        for alpha in [0.0, 50.0] {
            let mut lwf = lwf::Lwf::new(LwfConfig {
                alpha,
                temperature: 2.0,
            });
            let mut learner = learner();
            train(&mut learner, &mut lwf, &first);
            end_task(&mut learner, &mut lwf, &first);
            let teacher = learner.frozen_copy().unwrap();
            train(&mut learner, &mut lwf, &second);
            let (images, _) = &second[0];
            let old = teacher.logits(images).unwrap().softmax(-1, Kind::Float);
            let new = learner.predict(images).unwrap().softmax(-1, Kind::Float);
            gaps.push((old - new).abs().sum(Kind::Double).double_value(&[]));
        }
        assert!(
            gaps[1] < 0.5 * gaps[0],
            "output change with distillation {} vs without {}",
            gaps[1],
            gaps[0]
        );
    }

    #[test]
    fn der_pulls_replayed_logits_to_the_stored_ones_and_derpp_adds_their_labels() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 2.0]).view([2, 2]);
        let stored = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let labels = Tensor::from_slice(&[0i64, 1]);
        let loss_of = |alpha: f64, beta: f64, payloads: &Tensor| {
            let replayed = ReplayedLogits {
                logits: logits.shallow_clone(),
                labels: &labels,
                payloads: Some(payloads),
            };
            let step = LossContext {
                params: &[],
                images: &logits,
                logits: &logits,
                labels: &labels,
                replayed: Some(&replayed),
            };
            der::Der::new(DerConfig { alpha, beta })
                .extra_loss(&step)
                .unwrap()
                .unwrap()
                .double_value(&[])
        };
        // MSE over the 4 values: (1 + 0 + 0 + 1) / 4.
        assert!((loss_of(1.0, 0.0, &stored) - 0.5).abs() < 1e-6);
        assert!(
            loss_of(1.0, 0.0, &logits).abs() < 1e-6,
            "stored logits reached: no loss"
        );
        // DER++ replays two sets, interleaved: row 0 for the logits, row 1 for the labels. Its
        // logit term is the MSE of row 0, (1 + 0) / 2, plus beta times the cross-entropy of
        // row 1's softmax(0, 2) at its label 1: ln(1 + e^-2).
        let cross_entropy = (1.0 + (-2.0f64).exp()).ln();
        assert!((loss_of(1.0, 2.0, &stored) - (0.5 + 2.0 * cross_entropy)).abs() < 1e-5);
        let second_row_far = Tensor::from_slice(&[2.0f32, 0.0, 100.0, 100.0]).view([2, 2]);
        assert!(
            (loss_of(1.0, 2.0, &second_row_far) - 2.0 * cross_entropy).abs() < 1e-5,
            "the label set's stored logits play no part"
        );
        assert!(loss_of(1.0, 0.0, &second_row_far) > 1000.0, "DER matches every row");
    }

    #[test]
    fn agem_projects_a_gradient_that_opposes_the_reference_and_leaves_others() {
        let grads = [Tensor::from_slice(&[1.0f32, 0.0]), Tensor::from_slice(&[-1.0f32])];
        let reference = Tensor::from_slice(&[0.0f32, 1.0, 1.0]);
        agem::Agem.adjust_gradients(&[], &grads, Some(&reference)).unwrap();
        // g = (1, 0, -1), g·r = -1, r·r = 2: g - (-1/2) r = (1, 0.5, -0.5).
        assert_eq!(Vec::<f32>::try_from(&grads[0]).unwrap(), vec![1.0, 0.5]);
        assert_eq!(Vec::<f32>::try_from(&grads[1]).unwrap(), vec![-0.5]);
        let aligned = [Tensor::from_slice(&[1.0f32, 2.0, 3.0])];
        agem::Agem.adjust_gradients(&[], &aligned, Some(&reference)).unwrap();
        assert_eq!(Vec::<f32>::try_from(&aligned[0]).unwrap(), vec![1.0, 2.0, 3.0]);
    }
}
