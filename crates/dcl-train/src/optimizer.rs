//! The optimiser of a learner: PyTorch's SGD, Adam, AdamW and RMSprop over libtorch's tensor
//! operations (module `rules`), built and updated from a regime's hyper-parameters, with weight
//! decay per variable group. Its state (momentum buffers, moment estimates, step counts) is
//! ours, so that a checkpoint can save and restore it exactly ([`RegimeOptimizer::state`],
//! [`RegimeOptimizer::load_state`]).
//!
//! Changing hyper-parameters ([`RegimeOptimizer::apply`]) keeps the state as PyTorch does when
//! a `param_group`'s values change: every value but the kind (SGD, Adam, AdamW, RMSprop) takes
//! effect at the next step over the existing state, betas, eps, alpha, Nesterov and dampening
//! included; a new kind starts from a fresh state.

mod rules;
mod state;

use std::collections::{HashMap, HashSet};
use std::sync::PoisonError;

use dcl_models::NO_DECAY_GROUP;
use serde::{Deserialize, Serialize};
use tch::{nn, TchError, Tensor};

use crate::regime::{Hyperparameters, OptimizerDetails, OptimizerKind, OptimizerSettings};
use crate::TrainError;
use state::{Buffer, ParamState};

/// An optimiser, the hyper-parameters it runs with and its state per trainable variable.
pub struct RegimeOptimizer {
    /// The trainable variables when the optimiser was built, sorted by name.
    params: Vec<Param>,
    current: Hyperparameters,
}

/// A trainable variable and what the optimiser keeps for it.
struct Param {
    /// Its name in the variable store.
    name: String,
    tensor: Tensor,
    /// Whether it is in [`NO_DECAY_GROUP`].
    no_decay_group: bool,
    state: ParamState,
}

impl RegimeOptimizer {
    /// A fresh optimiser with `h` over the trainable variables of `vars` (those it holds now:
    /// tch's optimiser also took variables added later, which no model here adds): its state
    /// (momentum, moment estimates) is empty until their first step. Refuses the values
    /// PyTorch's constructors refuse.
    pub fn new(vars: &nn::VarStore, h: Hyperparameters) -> Result<Self, TrainError> {
        check(&h)?;
        Ok(RegimeOptimizer {
            params: trainable_variables(vars),
            current: h,
        })
    }

    /// Moves to `next`: over the current state within the same kind of optimiser (module
    /// documentation), with a fresh optimiser over `vars` for another kind. Momentum applies to
    /// SGD and RMSprop only.
    pub fn apply(&mut self, vars: &nn::VarStore, next: Hyperparameters) -> Result<(), TrainError> {
        if next.settings.optimizer == self.current.settings.optimizer {
            self.current = next;
        } else {
            *self = RegimeOptimizer::new(vars, next)?;
        }
        Ok(())
    }

    /// Sets the learning rate (per-step schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.current.settings.lr = lr;
    }

    /// Sets the gradients of the variables to none (PyTorch's `zero_grad()`): the next
    /// backward pass stores its gradients rather than adding them to zeros.
    pub fn zero_grad(&mut self) {
        for param in &self.params {
            rules::clear_gradient(&param.tensor);
        }
    }

    /// Updates the variables that have a gradient; those without one (PyTorch's `grad is
    /// None`) keep their value and state.
    ///
    /// # Panics
    /// When libtorch fails (out of memory, say), as tch's optimiser did; the training step
    /// runs under [`crate::guard`], which reports it as an error.
    pub fn step(&mut self) {
        self.try_step().expect("the optimiser step");
    }

    fn try_step(&mut self) -> Result<(), TchError> {
        let h = self.current;
        tch::no_grad(|| {
            for param in &mut self.params {
                let grad = param.tensor.f_grad()?;
                if grad.defined() {
                    let weight_decay = weight_decay(&h, param.no_decay_group);
                    rules::update(&mut param.tensor, &grad, &mut param.state, &h, weight_decay)?;
                }
            }
            Ok(())
        })
    }

    /// Every state tensor under a stable name, `"<variable name>.<buffer>"` (e.g.
    /// `"layer1.0.conv1.weight.momentum_buffer"`, `"fc.weight.exp_avg"`, `"fc.weight.step"`),
    /// by variable name, then buffer; and the hyper-parameters with the variables' names, as
    /// JSON. The buffers are PyTorch's: SGD's `momentum_buffer`; Adam's and AdamW's `step`,
    /// `exp_avg`, `exp_avg_sq`; RMSprop's `step`, `square_avg`, `momentum_buffer`; a variable
    /// has them once it has taken a step (a step count is a float32 scalar, as PyTorch's).
    /// The tensors are on the optimiser's device: the buffers themselves, which the next step
    /// changes (copy them before).
    pub fn state(&self) -> (Vec<(String, Tensor)>, serde_json::Value) {
        let kind = self.current.settings.optimizer;
        let tensors = self
            .params
            .iter()
            .flat_map(|param| {
                let saved = param.state.saved(kind, param.tensor.device());
                saved
                    .into_iter()
                    .map(|(buffer, tensor)| (format!("{}.{}", param.name, buffer.name()), tensor))
            })
            .collect();
        let hyper = SavedHyperparameters::new(&self.current, self.params.iter().map(|p| p.name.clone()).collect());
        let hyper = serde_json::to_value(hyper).expect("the hyper-parameters are plain numbers and names");
        (tensors, hyper)
    }

    /// Restores what [`RegimeOptimizer::state`] returned (the tensors may be on any device):
    /// the state and the hyper-parameters, as PyTorch's `load_state_dict`. Refuses, with the
    /// first mismatch and before changing anything, a state of another kind of optimiser or
    /// other variables, an entry it cannot place and a variable's incomplete state.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], hyper: &serde_json::Value) -> Result<(), TrainError> {
        let refuse = |what: String| TrainError::Config(format!("optimizer state: {what}"));
        let saved = SavedHyperparameters::deserialize(hyper).map_err(|e| refuse(format!("hyper-parameters: {e}")))?;
        let kind = self.current.settings.optimizer;
        if saved.settings.optimizer != kind {
            return Err(refuse(format!(
                "saved from {}, not {}",
                name(saved.settings.optimizer),
                name(kind)
            )));
        }
        let next = saved.hyperparameters();
        check(&next)?;
        self.check_variables(&saved.variables).map_err(refuse)?;
        let states = self.load_entries(tensors).map_err(refuse)?;
        for (param, state) in self.params.iter_mut().zip(states) {
            param.state = state;
        }
        self.current = next;
        Ok(())
    }

    /// Refuses saved variables other than the optimiser's.
    fn check_variables(&self, saved: &[String]) -> Result<(), String> {
        let saved: HashSet<&str> = saved.iter().map(String::as_str).collect();
        let ours: HashSet<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        if let Some(param) = self.params.iter().find(|p| !saved.contains(p.name.as_str())) {
            return Err(format!("saved without the variable '{}'", param.name));
        }
        match saved.iter().find(|name| !ours.contains(*name)) {
            Some(name) => Err(format!("saved with a variable '{name}' that this model does not have")),
            None => Ok(()),
        }
    }

    /// The state of every variable from `tensors`, checked.
    fn load_entries(&self, tensors: &[(String, Tensor)]) -> Result<Vec<ParamState>, String> {
        let index: HashMap<&str, usize> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let kind = self.current.settings.optimizer;
        let mut states: Vec<ParamState> = self.params.iter().map(|_| ParamState::default()).collect();
        for (name, tensor) in tensors {
            let place = name.rsplit_once('.').and_then(|(variable, buffer)| {
                let buffer = Buffer::of(kind).iter().find(|b| b.name() == buffer)?;
                Some((*index.get(variable)?, *buffer))
            });
            let Some((i, buffer)) = place else {
                return Err(format!(
                    "'{name}' is no state of {} over these variables",
                    self::name(kind)
                ));
            };
            states[i]
                .load(buffer, tensor, &self.params[i].tensor)
                .map_err(|e| format!("'{name}': {e}"))?;
        }
        for (param, state) in self.params.iter().zip(&states) {
            if !Buffer::of(kind).iter().any(|&b| state.holds(b)) {
                continue;
            }
            if let Some(missing) = Buffer::required(kind).iter().find(|&&b| !state.holds(b)) {
                return Err(format!("'{}.{}' is missing", param.name, missing.name()));
            }
        }
        Ok(states)
    }
}

/// The name of `kind` in regimes and PyTorch.
fn name(kind: OptimizerKind) -> &'static str {
    match kind {
        OptimizerKind::Sgd => "SGD",
        OptimizerKind::Adam => "Adam",
        OptimizerKind::AdamW => "AdamW",
        OptimizerKind::RmsProp => "RMSprop",
    }
}

/// The weight decay of a variable in the no-decay group or not.
fn weight_decay(h: &Hyperparameters, no_decay_group: bool) -> f64 {
    if no_decay_group && h.details.no_decay_on_norm_and_bias {
        0.0
    } else {
        h.settings.weight_decay
    }
}

/// The checks of PyTorch's constructors (torch/optim/*.py's `__init__`).
fn check(h: &Hyperparameters) -> Result<(), TrainError> {
    let (s, d) = (h.settings, h.details);
    let values = [
        ("lr", s.lr),
        ("momentum", s.momentum),
        ("weight_decay", s.weight_decay),
        ("eps", d.eps),
        ("alpha", d.alpha),
        ("dampening", d.dampening),
    ];
    if let Some((name, value)) = values.iter().find(|(_, v)| v.is_nan() || *v < 0.0) {
        return Err(TrainError::Config(format!(
            "optimizer: '{name}' must be >= 0, not {value}"
        )));
    }
    let (beta1, beta2) = s.betas;
    if ![beta1, beta2].iter().all(|b| (0.0..1.0).contains(b)) {
        return Err(TrainError::Config(format!(
            "optimizer: 'betas' must be in [0, 1), not ({beta1}, {beta2})"
        )));
    }
    if s.optimizer == OptimizerKind::Sgd && d.nesterov && (s.momentum <= 0.0 || d.dampening != 0.0) {
        return Err(TrainError::Config(
            "optimizer: Nesterov momentum needs a momentum above 0 and dampening 0".to_owned(),
        ));
    }
    Ok(())
}

/// The trainable variables of `vars` with elements (nothing to update in the others), sorted
/// by name; a variable under two names counts once, under the first.
fn trainable_variables(vars: &nn::VarStore) -> Vec<Param> {
    let variables = vars.variables_.lock().unwrap_or_else(PoisonError::into_inner);
    // The store lists trainable variables (with their groups) apart from the names: the
    // tensors' data tell them apart.
    let mut groups: HashMap<usize, usize> = variables
        .trainable_variables
        .iter()
        .filter(|var| var.tensor.numel() > 0)
        .map(|var| (var.tensor.data_ptr() as usize, var.group))
        .collect();
    let mut named: Vec<(&String, &Tensor)> = variables.named_variables.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named
        .into_iter()
        .filter(|(_, tensor)| tensor.numel() > 0)
        .filter_map(|(name, tensor)| {
            let group = groups.remove(&(tensor.data_ptr() as usize))?;
            Some(Param {
                name: name.clone(),
                tensor: tensor.shallow_clone(),
                no_decay_group: group == NO_DECAY_GROUP,
                state: ParamState::default(),
            })
        })
        .collect()
}

/// The hyper-parameters of [`RegimeOptimizer::state`], with the variables' names.
#[derive(Serialize, Deserialize)]
struct SavedHyperparameters {
    #[serde(flatten)]
    settings: OptimizerSettings,
    eps: f64,
    alpha: f64,
    nesterov: bool,
    dampening: f64,
    no_decay_on_norm_and_bias: bool,
    /// The optimiser's variables, sorted.
    variables: Vec<String>,
}

impl SavedHyperparameters {
    fn new(h: &Hyperparameters, variables: Vec<String>) -> Self {
        let d = h.details;
        SavedHyperparameters {
            settings: h.settings,
            eps: d.eps,
            alpha: d.alpha,
            nesterov: d.nesterov,
            dampening: d.dampening,
            no_decay_on_norm_and_bias: d.no_decay_on_norm_and_bias,
            variables,
        }
    }

    fn hyperparameters(&self) -> Hyperparameters {
        Hyperparameters {
            settings: self.settings,
            details: OptimizerDetails {
                eps: self.eps,
                alpha: self.alpha,
                nesterov: self.nesterov,
                dampening: self.dampening,
                no_decay_on_norm_and_bias: self.no_decay_on_norm_and_bias,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regime::ADAM_BETAS;
    use dcl_models::DECAY_GROUP;
    use serde_json::{json, Value};
    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use tch::Device;

    /// A weight (decay group) and a bias (no-decay group) after 3 steps on a fixed problem,
    /// `((x w - y)^2).mean() + ((b - c)^2).sum()`, from fixed initial values.
    fn three_steps(h: Hyperparameters) -> (Vec<f32>, Vec<f32>) {
        let vars = nn::VarStore::new(Device::Cpu);
        let root = vars.root();
        let w0 = Tensor::from_slice(&[0.3f32, -0.2, 0.1, 0.05, 0.4, -0.3]).view([2, 3]);
        let w = root.set_group(DECAY_GROUP).var_copy("w", &w0);
        let b = root
            .set_group(NO_DECAY_GROUP)
            .var_copy("b", &Tensor::from_slice(&[0.1f32, -0.2, 0.3]));
        let x = Tensor::from_slice(&[1.0f32, -2.0, 0.5, 3.0, -1.5, 0.25, 2.0, 1.0]).view([4, 2]);
        let y = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.5, 2.0, 0.0, -1.0, 1.0, 1.5, 0.0, -0.5, 2.0]).view([4, 3]);
        let c = Tensor::from_slice(&[1.0f32, -1.0, 0.5]);
        let mut optimizer = RegimeOptimizer::new(&vars, h).unwrap();
        for _ in 0..3 {
            optimizer.zero_grad();
            let loss = (x.mm(&w) - &y).square().mean(None) + (&b - &c).square().sum(None);
            loss.backward();
            optimizer.step();
        }
        let values = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        (values(&w), values(&b))
    }

    fn hyperparameters(
        optimizer: OptimizerKind,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
        details: OptimizerDetails,
    ) -> Hyperparameters {
        Hyperparameters {
            settings: OptimizerSettings {
                optimizer,
                lr,
                momentum,
                weight_decay,
                betas: ADAM_BETAS,
            },
            details,
        }
    }

    fn exempt() -> OptimizerDetails {
        OptimizerDetails {
            no_decay_on_norm_and_bias: true,
            ..OptimizerDetails::default()
        }
    }

    /// `actual` (float32) within 2e-6 of PyTorch's `expected` (printed to 8 decimals).
    fn assert_close(actual: &[f32], expected: &[f64], what: &str) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!(
                (f64::from(*a) - e).abs() <= 2e-6,
                "{what}: {actual:?} against PyTorch's {expected:?}"
            );
        }
    }

    // The expected values are PyTorch 2.11's: the same problem in float32, the optimiser
    // over the groups [{'params': [w]}, {'params': [b]}] (with the second group's
    // 'weight_decay' set to 0 for the exempt cases), 3 times zero_grad, backward, step.

    #[test]
    fn each_optimizer_steps_as_pytorchs() {
        let cases = [
            (
                "SGD(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)",
                hyperparameters(
                    OptimizerKind::Sgd,
                    0.1,
                    0.9,
                    0.01,
                    OptimizerDetails {
                        dampening: 0.1,
                        ..OptimizerDetails::default()
                    },
                ),
                [0.33626804, -0.23544231, 0.11606339, -0.08114529, 0.42427999, 0.31855339],
                [0.90999877, -0.91949868, 0.47874907],
            ),
            (
                "SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), b exempt",
                hyperparameters(
                    OptimizerKind::Sgd,
                    0.1,
                    0.9,
                    0.01,
                    OptimizerDetails {
                        nesterov: true,
                        ..exempt()
                    },
                ),
                [0.35187557, -0.247942, 0.10504713, -0.10570704, 0.42958853, 0.42944187],
                [1.09751678, -1.0866816, 0.5216704],
            ),
            (
                "RMSprop(lr=0.01, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=0.01), b exempt",
                hyperparameters(
                    OptimizerKind::RmsProp,
                    0.01,
                    0.9,
                    0.01,
                    OptimizerDetails {
                        alpha: 0.9,
                        eps: 1e-3,
                        ..exempt()
                    },
                ),
                [0.40845186, -0.30757427, 0.17476436, -0.08312036, 0.4480243, -0.15455206],
                [0.24658127, -0.34633195, 0.4386673],
            ),
            (
                "Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.01)",
                Hyperparameters {
                    settings: OptimizerSettings {
                        betas: (0.8, 0.99),
                        ..hyperparameters(OptimizerKind::Adam, 0.01, 0.0, 0.01, OptimizerDetails::default()).settings
                    },
                    details: OptimizerDetails {
                        eps: 1e-3,
                        ..OptimizerDetails::default()
                    },
                },
                [0.3290993, -0.22912629, 0.12831695, 0.02027939, 0.42701787, -0.27005807],
                [0.12996082, -0.22995576, 0.329808],
            ),
            (
                "AdamW(lr=0.01, eps=1e-3, weight_decay=0.05), b exempt",
                hyperparameters(
                    OptimizerKind::AdamW,
                    0.01,
                    0.0,
                    0.05,
                    OptimizerDetails { eps: 1e-3, ..exempt() },
                ),
                [0.32884812, -0.2290034, 0.12851074, 0.02014429, 0.42729732, -0.26960573],
                [0.12997198, -0.22996835, 0.32986131],
            ),
        ];
        for (what, h, w, b) in cases {
            let (actual_w, actual_b) = three_steps(h);
            assert_close(&actual_w, &w, what);
            assert_close(&actual_b, &b, what);
        }
    }

    #[test]
    fn the_exempt_group_moves_as_without_decay_the_other_as_with() {
        let sgd =
            |weight_decay, details| three_steps(hyperparameters(OptimizerKind::Sgd, 0.1, 0.9, weight_decay, details));
        let (decayed_w, decayed_b) = sgd(0.5, OptimizerDetails::default());
        let (plain_w, plain_b) = sgd(0.0, OptimizerDetails::default());
        let (exempt_w, exempt_b) = sgd(0.5, exempt());
        assert_eq!(exempt_w, decayed_w);
        assert_eq!(exempt_b, plain_b);
        assert_ne!(decayed_b, plain_b);
        assert_ne!(decayed_w, plain_w);
        // PyTorch: SGD(lr=0.1, momentum=0.9, weight_decay=0.5), b's group at weight_decay 0.
        assert_close(
            &exempt_w,
            &[0.2661249, -0.18684459, 0.09027543, -0.08930732, 0.33850843, 0.3763718],
            "w",
        );
        assert_close(&exempt_b, &[0.94419998, -0.95039994, 0.4876], "b");
    }

    /// The problem of the trajectories: `w` (decay group), `b` (no-decay group) and `u` (decay
    /// group, in the loss at [`Problem::U_STEPS`] only: at the other steps it has no gradient,
    /// which PyTorch's optimisers skip), from fixed initial values. Its twin for PyTorch is
    /// tests/reference/optimizer_trajectories.py, which takes the values from
    /// [`Problem::json`].
    struct Problem {
        vars: nn::VarStore,
        w: Tensor,
        b: Tensor,
        u: Tensor,
    }

    impl Problem {
        const W: [f32; 6] = [0.3, -0.2, 0.1, 0.05, 0.4, -0.3];
        const B: [f32; 3] = [0.1, -0.2, 0.3];
        const U: [f32; 2] = [0.5, -0.5];
        const X: [f32; 8] = [1.0, -2.0, 0.5, 3.0, -1.5, 0.25, 2.0, 1.0];
        const Y: [f32; 12] = [1.0, 0.0, -1.0, 0.5, 2.0, 0.0, -1.0, 1.0, 1.5, 0.0, -0.5, 2.0];
        const C: [f32; 3] = [1.0, -1.0, 0.5];
        const D: [f32; 2] = [-1.0, 2.0];
        const U_STEPS: [usize; 3] = [0, 2, 4];

        fn new() -> Self {
            let vars = nn::VarStore::new(Device::Cpu);
            let root = vars.root();
            let decay = root.set_group(DECAY_GROUP);
            let w = decay.var_copy("w", &Tensor::from_slice(&Self::W).view([2, 3]));
            let u = decay.var_copy("u", &Tensor::from_slice(&Self::U));
            let b = root
                .set_group(NO_DECAY_GROUP)
                .var_copy("b", &Tensor::from_slice(&Self::B));
            Problem { vars, w, b, u }
        }

        /// A problem whose variables hold `other`'s values.
        fn copy_of(other: &Problem) -> Self {
            let problem = Problem::new();
            tch::no_grad(|| {
                for (mine, theirs) in [(&problem.w, &other.w), (&problem.b, &other.b), (&problem.u, &other.u)] {
                    mine.shallow_clone().copy_(theirs);
                }
            });
            problem
        }

        /// Step `step` of the training: zero_grad, backward, step.
        fn step(&self, optimizer: &mut RegimeOptimizer, step: usize) {
            let x = Tensor::from_slice(&Self::X).view([4, 2]);
            let y = Tensor::from_slice(&Self::Y).view([4, 3]);
            let mut loss =
                (x.mm(&self.w) - y).square().mean(None) + (&self.b - Tensor::from_slice(&Self::C)).square().sum(None);
            if Self::U_STEPS.contains(&step) {
                loss += (&self.u - Tensor::from_slice(&Self::D)).square().sum(None);
            }
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
        }

        /// The values of w, b and u, flattened.
        fn values(&self) -> Vec<f32> {
            [&self.w, &self.b, &self.u]
                .iter()
                .flat_map(|t| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap())
                .collect()
        }

        fn json() -> Value {
            json!({
                "w": Self::W.chunks(3).collect::<Vec<_>>(),
                "b": Self::B,
                "u": Self::U,
                "x": Self::X.chunks(2).collect::<Vec<_>>(),
                "y": Self::Y.chunks(3).collect::<Vec<_>>(),
                "c": Self::C,
                "d": Self::D,
                "u_steps": Self::U_STEPS,
            })
        }
    }

    /// The values after every step of 5, from `first`, with `then` applied before step 3.
    fn trajectory(first: Hyperparameters, then: Hyperparameters) -> Vec<Vec<f32>> {
        let problem = Problem::new();
        let mut optimizer = RegimeOptimizer::new(&problem.vars, first).unwrap();
        (0..5)
            .map(|step| {
                if step == 3 {
                    optimizer.apply(&problem.vars, then).unwrap();
                }
                problem.step(&mut optimizer, step);
                problem.values()
            })
            .collect()
    }

    /// PyTorch's trajectories of `cases` (first, then), from the reference script run by the
    /// venv's python.
    fn pytorch_trajectories(cases: &[(&str, Hyperparameters, Hyperparameters)]) -> Vec<Vec<Vec<f64>>> {
        let hyper = |h| RegimeOptimizer::new(&Problem::new().vars, h).unwrap().state().1;
        let cases: Vec<Value> = cases
            .iter()
            .map(|&(_, first, then)| json!({"first": hyper(first), "then": hyper(then), "switch": 3, "steps": 5}))
            .collect();
        let request = json!({"problem": Problem::json(), "cases": cases});
        let venv = std::env::var("VIRTUAL_ENV").expect("VIRTUAL_ENV is not set: run scripts/setup.sh");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/optimizer_trajectories.py");
        let mut child = Command::new(Path::new(&venv).join("bin/python"))
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the venv's python runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn with(h: Hyperparameters, change: impl FnOnce(&mut OptimizerSettings, &mut OptimizerDetails)) -> Hyperparameters {
        let mut h = h;
        change(&mut h.settings, &mut h.details);
        h
    }

    #[test]
    fn trajectories_with_changes_midway_are_pytorchs() {
        let sgd = hyperparameters(
            OptimizerKind::Sgd,
            0.1,
            0.9,
            0.01,
            OptimizerDetails {
                dampening: 0.1,
                ..OptimizerDetails::default()
            },
        );
        let nesterov = with(sgd, |_, d| {
            *d = OptimizerDetails {
                nesterov: true,
                ..exempt()
            }
        });
        let plain = with(sgd, |s, d| (s.momentum, d.dampening) = (0.0, 0.0));
        let adam = with(sgd, |s, d| {
            (s.optimizer, s.lr, s.betas, s.weight_decay) = (OptimizerKind::Adam, 0.01, (0.8, 0.99), 0.01);
            *d = OptimizerDetails {
                eps: 1e-3,
                ..OptimizerDetails::default()
            };
        });
        let adam_w = with(adam, |s, d| {
            (s.optimizer, s.weight_decay, d.no_decay_on_norm_and_bias) = (OptimizerKind::AdamW, 0.05, true)
        });
        let rms_prop = hyperparameters(
            OptimizerKind::RmsProp,
            0.01,
            0.9,
            0.01,
            OptimizerDetails {
                alpha: 0.9,
                eps: 1e-3,
                ..exempt()
            },
        );
        let cases = [
            (
                "SGD, dampening",
                sgd,
                with(sgd, |s, d| {
                    (s.lr, s.momentum, s.weight_decay, d.dampening) = (0.05, 0.5, 0.02, 0.3)
                }),
            ),
            (
                "SGD, Nesterov",
                nesterov,
                with(nesterov, |s, d| {
                    (s.lr, s.momentum, d.nesterov, d.no_decay_on_norm_and_bias) = (0.02, 0.8, false, false)
                }),
            ),
            (
                "SGD, momentum from step 3",
                plain,
                with(plain, |s, d| (s.momentum, d.nesterov) = (0.9, true)),
            ),
            (
                "Adam",
                adam,
                with(adam, |s, d| {
                    (s.lr, s.betas, s.weight_decay, d.eps) = (0.02, ADAM_BETAS, 0.05, 1e-8)
                }),
            ),
            (
                "AdamW",
                adam_w,
                with(adam_w, |s, d| {
                    (s.lr, s.betas, s.weight_decay, d.no_decay_on_norm_and_bias) = (0.005, (0.5, 0.9), 0.1, false)
                }),
            ),
            (
                "RMSprop, momentum",
                rms_prop,
                with(rms_prop, |s, d| {
                    (s.lr, s.momentum, d.alpha, d.eps) = (0.005, 0.5, 0.99, 1e-8)
                }),
            ),
            (
                "RMSprop",
                with(rms_prop, |s, _| s.momentum = 0.0),
                with(rms_prop, |s, d| (s.momentum, s.weight_decay, d.alpha) = (0.0, 0.1, 0.8)),
            ),
        ];
        let expected = pytorch_trajectories(&cases);
        for ((what, first, then), expected) in cases.iter().zip(expected) {
            let actual = trajectory(*first, *then);
            for (step, (actual, expected)) in actual.iter().zip(&expected).enumerate() {
                // The same libtorch runs both: float32 values equal to the bit (well within 1e-6).
                let same = actual.iter().zip(expected).all(|(a, e)| *e as f32 == *a);
                assert!(same, "{what}, step {step}: {actual:?} against PyTorch's {expected:?}");
            }
        }
    }

    fn adam() -> Hyperparameters {
        hyperparameters(
            OptimizerKind::Adam,
            0.01,
            0.0,
            0.01,
            OptimizerDetails { eps: 1e-3, ..exempt() },
        )
    }

    #[test]
    fn state_names_each_buffer_after_its_variable() {
        let problem = Problem::new();
        let mut optimizer = RegimeOptimizer::new(&problem.vars, adam()).unwrap();
        assert!(optimizer.state().0.is_empty());
        problem.step(&mut optimizer, 1);
        let (tensors, hyper) = optimizer.state();
        let names: Vec<&str> = tensors.iter().map(|(name, _)| name.as_str()).collect();
        // u had no gradient.
        assert_eq!(
            names,
            [
                "b.step",
                "b.exp_avg",
                "b.exp_avg_sq",
                "w.step",
                "w.exp_avg",
                "w.exp_avg_sq"
            ]
        );
        assert_eq!(tensors[0].1.size(), Vec::<i64>::new());
        assert_eq!(f64::try_from(&tensors[0].1).unwrap(), 1.0);
        assert_eq!(tensors[4].1.size(), [2, 3]);
        assert_eq!(hyper["optimizer"], "Adam");
        assert_eq!(hyper["eps"], 1e-3);
        assert_eq!(hyper["variables"], json!(["b", "u", "w"]));
    }

    #[test]
    fn a_restored_state_continues_bitwise_as_the_uninterrupted_run() {
        let sgd = hyperparameters(
            OptimizerKind::Sgd,
            0.1,
            0.9,
            0.01,
            OptimizerDetails {
                nesterov: true,
                ..exempt()
            },
        );
        let rms_prop = hyperparameters(
            OptimizerKind::RmsProp,
            0.01,
            0.9,
            0.01,
            OptimizerDetails { alpha: 0.9, ..exempt() },
        );
        let adam_w = Hyperparameters {
            settings: OptimizerSettings {
                optimizer: OptimizerKind::AdamW,
                lr: 0.1f64.sqrt() / 7.0,
                ..adam().settings
            },
            ..adam()
        };
        for h in [sgd, adam(), adam_w, rms_prop] {
            let run = Problem::new();
            let mut optimizer = RegimeOptimizer::new(&run.vars, h).unwrap();
            for step in 0..3 {
                run.step(&mut optimizer, step);
            }
            // What a checkpoint keeps: copies on the host, the hyper-parameters as text.
            let (tensors, hyper) = optimizer.state();
            let saved: Vec<(String, Tensor)> = tensors
                .iter()
                .map(|(name, t)| (name.clone(), t.to_device(Device::Cpu).copy()))
                .collect();
            let hyper: Value = serde_json::from_str(&hyper.to_string()).unwrap();
            let resumed = Problem::copy_of(&run);
            let other_settings = with(h, |s, d| {
                (s.lr, s.momentum, s.weight_decay, d.eps) = (0.5, 0.3, 0.0, 0.1)
            });
            let mut restored = RegimeOptimizer::new(&resumed.vars, other_settings).unwrap();
            restored.load_state(&saved, &hyper).unwrap();
            for step in 3..6 {
                run.step(&mut optimizer, step);
                resumed.step(&mut restored, step);
            }
            assert_eq!(run.values(), resumed.values(), "{:?}", h.settings.optimizer);
        }
    }

    #[test]
    fn load_state_refuses_a_mismatch_naming_it() {
        let problem = Problem::new();
        let mut optimizer = RegimeOptimizer::new(&problem.vars, adam()).unwrap();
        problem.step(&mut optimizer, 0);
        let (tensors, hyper) = optimizer.state();
        let refusal = |tensors: &[(String, Tensor)], hyper: &Value, h: Hyperparameters| {
            let fresh = Problem::new();
            let mut optimizer = RegimeOptimizer::new(&fresh.vars, h).unwrap();
            let error = match optimizer.load_state(tensors, hyper) {
                Err(TrainError::Config(message)) => message,
                other => panic!("{other:?}"),
            };
            assert!(optimizer.state().0.is_empty(), "a refused state was loaded in part");
            error
        };
        let but = |name: &str, replacement: Option<Tensor>| -> Vec<(String, Tensor)> {
            let kept = tensors
                .iter()
                .filter(|(n, _)| n != name)
                .map(|(n, t)| (n.clone(), t.shallow_clone()));
            kept.chain(replacement.map(|t| (name.to_owned(), t))).collect()
        };
        let sgd = with(adam(), |s, _| s.optimizer = OptimizerKind::Sgd);
        assert!(refusal(&tensors, &hyper, sgd).contains("saved from Adam, not SGD"));
        assert!(refusal(&but("w.exp_avg_sq", None), &hyper, adam()).contains("'w.exp_avg_sq' is missing"));
        let wrong_shape = refusal(
            &but("w.exp_avg", Some(Tensor::zeros([3], tch::kind::FLOAT_CPU))),
            &hyper,
            adam(),
        );
        assert!(wrong_shape.contains("'w.exp_avg'"), "{wrong_shape}");
        let unknown = refusal(
            &but("v.exp_avg", Some(Tensor::zeros([3], tch::kind::FLOAT_CPU))),
            &hyper,
            adam(),
        );
        assert!(unknown.contains("'v.exp_avg' is no state of Adam"), "{unknown}");
        let momentum = refusal(
            &but("w.momentum_buffer", Some(Tensor::zeros([2, 3], tch::kind::FLOAT_CPU))),
            &hyper,
            adam(),
        );
        assert!(momentum.contains("'w.momentum_buffer'"), "{momentum}");
        let half_step = refusal(&but("w.step", Some(Tensor::from(0.5f32))), &hyper, adam());
        assert!(half_step.contains("'w.step'"), "{half_step}");
        let mut other_variables = hyper.clone();
        other_variables["variables"] = json!(["b", "v", "w"]);
        assert!(refusal(&tensors, &other_variables, adam()).contains("without the variable 'u'"));
        // The same state loads.
        let fresh = Problem::new();
        RegimeOptimizer::new(&fresh.vars, adam())
            .unwrap()
            .load_state(&tensors, &hyper)
            .unwrap();
    }

    #[test]
    fn hyper_parameters_come_back_exactly_from_json_text() {
        // serde_json's default parsing reads this number back one unit in the last place off.
        let h = with(adam(), |s, _| s.lr = 0.994_141_423_413_993_5);
        let problem = Problem::new();
        let (_, hyper) = RegimeOptimizer::new(&problem.vars, h).unwrap().state();
        let mut restored = RegimeOptimizer::new(&problem.vars, adam()).unwrap();
        restored
            .load_state(&[], &serde_json::from_str(&hyper.to_string()).unwrap())
            .unwrap();
        assert_eq!(restored.current, h);
    }

    #[test]
    fn applying_settings_keeps_the_state_within_a_kind() {
        let problem = Problem::new();
        let sgd = hyperparameters(OptimizerKind::Sgd, 0.1, 0.9, 0.0, OptimizerDetails::default());
        let mut optimizer = RegimeOptimizer::new(&problem.vars, sgd).unwrap();
        problem.step(&mut optimizer, 0);
        let before: Vec<(String, Tensor)> = optimizer.state().0.into_iter().map(|(n, t)| (n, t.copy())).collect();
        let nesterov = with(sgd, |s, d| {
            (s.lr, d.nesterov, d.dampening, d.no_decay_on_norm_and_bias) = (0.01, true, 0.0, true)
        });
        optimizer.apply(&problem.vars, nesterov).unwrap();
        let after = optimizer.state().0;
        assert_eq!(before.len(), 3);
        assert!(before.iter().zip(&after).all(|(a, b)| a.0 == b.0 && a.1.equal(&b.1)));
        optimizer
            .apply(&problem.vars, with(sgd, |s, _| s.optimizer = OptimizerKind::RmsProp))
            .unwrap();
        assert!(optimizer.state().0.is_empty());
    }

    #[test]
    fn settings_pytorch_refuses_are_refused() {
        let vars = nn::VarStore::new(Device::Cpu);
        let sgd = hyperparameters(OptimizerKind::Sgd, 0.1, 0.0, 0.0, OptimizerDetails::default());
        let refused = |h| match RegimeOptimizer::new(&vars, h) {
            Err(TrainError::Config(message)) => message,
            _ => panic!("accepted"),
        };
        assert!(refused(with(sgd, |_, d| d.nesterov = true)).contains("Nesterov"));
        assert!(refused(with(sgd, |s, _| s.lr = -0.1)).contains("'lr' must be >= 0, not -0.1"));
        assert!(refused(with(sgd, |s, _| s.betas = (0.9, 1.0))).contains("'betas'"));
    }
}
