//! The optimiser of a learner: libtorch's SGD, Adam, AdamW or RMSprop (PyTorch's algorithms),
//! built and updated from a regime's hyper-parameters, with weight decay per variable group.

use std::sync::PoisonError;

use dcl_models::NO_DECAY_GROUP;
use tch::nn::{self, OptimizerConfig};

use crate::regime::{Hyperparameters, OptimizerKind};
use crate::TrainError;

/// A libtorch optimiser and the hyper-parameters it runs with.
pub struct RegimeOptimizer {
    inner: nn::Optimizer,
    current: Hyperparameters,
    /// Whether some trainable variable is in [`NO_DECAY_GROUP`] (libtorch has the group then only).
    has_no_decay_group: bool,
}

impl RegimeOptimizer {
    /// A fresh optimiser with `h` over the trainable variables of `vars`: its state (momentum,
    /// moment estimates) starts from zero.
    pub fn new(vars: &nn::VarStore, h: Hyperparameters) -> Result<Self, TrainError> {
        let (s, d) = (h.settings, h.details);
        let inner = match s.optimizer {
            OptimizerKind::Sgd => nn::Sgd {
                momentum: s.momentum,
                dampening: d.dampening,
                wd: s.weight_decay,
                nesterov: d.nesterov,
            }
            .build(vars, s.lr)?,
            OptimizerKind::Adam => nn::Adam {
                beta1: s.betas.0,
                beta2: s.betas.1,
                wd: s.weight_decay,
                eps: d.eps,
                amsgrad: false,
            }
            .build(vars, s.lr)?,
            OptimizerKind::AdamW => nn::AdamW {
                beta1: s.betas.0,
                beta2: s.betas.1,
                wd: s.weight_decay,
                eps: d.eps,
                amsgrad: false,
            }
            .build(vars, s.lr)?,
            OptimizerKind::RmsProp => nn::RmsProp {
                alpha: d.alpha,
                eps: d.eps,
                wd: s.weight_decay,
                momentum: s.momentum,
                centered: false,
            }
            .build(vars, s.lr)?,
        };
        let has_no_decay_group = vars
            .variables_
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .trainable_variables
            .iter()
            .any(|var| var.group == NO_DECAY_GROUP);
        let mut optimizer = RegimeOptimizer {
            inner,
            current: h,
            has_no_decay_group,
        };
        optimizer.set_weight_decay();
        Ok(optimizer)
    }

    /// Moves to `next` keeping the optimiser's state, or with a fresh optimiser over `vars` when
    /// the kind changes or a setting that libtorch takes at construction only (betas, eps,
    /// alpha, nesterov, dampening of the optimiser in use). Momentum applies to SGD and RMSprop
    /// only.
    pub fn apply(&mut self, vars: &nn::VarStore, next: Hyperparameters) -> Result<(), TrainError> {
        if self.needs_new_optimizer(&next) {
            *self = RegimeOptimizer::new(vars, next)?;
            return Ok(());
        }
        self.inner.set_lr(next.settings.lr);
        if !matches!(next.settings.optimizer, OptimizerKind::Adam | OptimizerKind::AdamW) {
            // tch's set_momentum is Adam's beta1: never call it for Adam.
            self.inner.set_momentum(next.settings.momentum);
        }
        self.current = next;
        self.set_weight_decay();
        Ok(())
    }

    fn needs_new_optimizer(&self, next: &Hyperparameters) -> bool {
        let (s, d) = (self.current.settings, self.current.details);
        let (ns, nd) = (next.settings, next.details);
        s.optimizer != ns.optimizer
            || match ns.optimizer {
                OptimizerKind::Sgd => d.nesterov != nd.nesterov || d.dampening != nd.dampening,
                OptimizerKind::Adam | OptimizerKind::AdamW => s.betas != ns.betas || d.eps != nd.eps,
                OptimizerKind::RmsProp => d.alpha != nd.alpha || d.eps != nd.eps,
            }
    }

    /// The current weight decay on every group, but [`NO_DECAY_GROUP`] when exempt.
    fn set_weight_decay(&mut self) {
        self.inner.set_weight_decay(self.current.settings.weight_decay);
        if self.current.details.no_decay_on_norm_and_bias && self.has_no_decay_group {
            self.inner.set_weight_decay_group(NO_DECAY_GROUP, 0.0);
        }
    }

    /// Sets the learning rate of every group (per-step schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.inner.set_lr(lr);
    }

    /// Zeroes the gradients of the variables.
    pub fn zero_grad(&mut self) {
        self.inner.zero_grad();
    }

    /// Updates the variables from their gradients.
    pub fn step(&mut self) {
        self.inner.step();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regime::{OptimizerDetails, OptimizerSettings, ADAM_BETAS};
    use dcl_models::DECAY_GROUP;
    use tch::{Device, Tensor};

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

    #[test]
    fn applying_settings_keeps_the_state_unless_libtorch_needs_a_new_optimizer() {
        let vars = nn::VarStore::new(Device::Cpu);
        let _ = vars.root().var("w", &[2], nn::Init::Const(1.0));
        let sgd = hyperparameters(OptimizerKind::Sgd, 0.1, 0.9, 0.0, OptimizerDetails::default());
        let mut optimizer = RegimeOptimizer::new(&vars, sgd).unwrap();
        let lower = Hyperparameters {
            settings: OptimizerSettings {
                lr: 0.01,
                ..sgd.settings
            },
            details: exempt(),
        };
        assert!(!optimizer.needs_new_optimizer(&lower));
        // No variable in the no-decay group: the exemption has nothing to do.
        optimizer.apply(&vars, lower).unwrap();
        let nesterov = Hyperparameters {
            details: OptimizerDetails {
                nesterov: true,
                ..sgd.details
            },
            ..sgd
        };
        assert!(optimizer.needs_new_optimizer(&nesterov));
        let rms_prop = hyperparameters(OptimizerKind::RmsProp, 0.1, 0.9, 0.0, OptimizerDetails::default());
        assert!(optimizer.needs_new_optimizer(&rms_prop));
    }
}
