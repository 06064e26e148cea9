//! Upstream's optimiser regime of each model, used when the user gives no `--optimizer-regime`.
//!
//! `L` is the base learning rate (`--lr`); the LR scaling with the number of workers
//! (`--lr-scaling`, `--warmup-epochs`) applies on top, as for every regime.
//!
//! - `resnet18`: SGD, momentum 0.875, weight decay 3.0517578125e-5; the LR from 0 up to L over
//!   epochs 0-5, step by step; L x 0.1 and weight decay 0 from epoch 30, L x 0.01 from 45,
//!   L x 0.001 from 80.
//! - `resnet34`, `resnet50`, `resnet101`, `resnet152`: upstream's `resnet50`: SGD, momentum 0.9,
//!   weight decay 5e-5; L x 0.1 from epoch 18, L x 0.01 from 23, L x 0.001 from 30 (upstream's
//!   warm-up from L to L x workers is dcl's `--lr-scaling linear`).
//! - `efficientnetv2`: RMSprop, alpha 0.9, momentum 0.9, eps 1e-8 (PyTorch's: upstream passes
//!   none), weight decay 1e-5 except on biases and normalisation weights; the LR at 1e-6 during
//!   the warm-up, then L x 0.97^round(epoch / 2.4) ([`crate::schedule::Decay::Exponential`]).
//! - `convnext`: AdamW, weight decay 0.05, eps 1e-8, L = 4e-3 unless `--lr` is given; the LR
//!   from 0 up to L during the warm-up, step by step, then a cosine down to `lr_min` at the end
//!   of the task's epochs.
//!
//! The warm-up of `efficientnetv2` and `convnext` lasts `--warmup-epochs` epochs: upstream's
//! models read the `warmup_epochs` of its command line too. In data-parallel runs the LR
//! scaling's factor grows from 1 to the number of workers over the same epochs (upstream holds
//! efficientnetv2's 1e-6 x workers, and ramps convnext's LR to L x workers directly).
//! Upstream's `efficientnetv2` exempts biases and normalisation weights from weight decay after
//! its warm-up only; here from the start, which the warm-up's LR of 1e-6 makes immaterial.
//! Given explicitly, `--momentum` and `--weight-decay` replace the model's values at epoch 0;
//! the later entries (resnet18's weight decay 0 from epoch 30) stay.

use crate::regime::{OptimizerKind, OptimizerSettings, Regime, RegimeEntry, ADAM_BETAS};
use crate::schedule::{DecayKind, Warmup};
use crate::TrainError;

/// `--lr`'s default.
pub const DEFAULT_LR: f64 = 0.01;
/// `--momentum`'s default.
pub const DEFAULT_MOMENTUM: f64 = 0.9;
/// `--weight-decay`'s default.
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.0;
/// convnext's base learning rate when `--lr` is not given (upstream's, ConvNeXt's).
pub const CONVNEXT_LR: f64 = 4e-3;
/// Where convnext's cosine ends without a model-config `lr_min` (upstream's README,
/// ConvNeXt's `min_lr`).
pub const CONVNEXT_LR_MIN: f64 = 1e-6;

/// The optimiser flags a regime builds on, each `None` where the user did not give it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BaseFlags {
    /// `--lr`.
    pub lr: Option<f64>,
    /// `--momentum`.
    pub momentum: Option<f64>,
    /// `--weight-decay`.
    pub weight_decay: Option<f64>,
    /// `--warmup-epochs`: also the warm-up of efficientnetv2 and convnext.
    pub warmup_epochs: f64,
}

impl BaseFlags {
    /// SGD at the flags, their defaults where not given: the first entry of a
    /// `--optimizer-regime` and the regime of the models without one of their own.
    pub fn settings(&self) -> OptimizerSettings {
        self.or(OptimizerKind::Sgd, DEFAULT_LR, DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY)
    }

    /// `optimizer` at the flags given, the other values where not.
    fn or(&self, optimizer: OptimizerKind, lr: f64, momentum: f64, weight_decay: f64) -> OptimizerSettings {
        OptimizerSettings {
            optimizer,
            lr: self.lr.unwrap_or(lr),
            momentum: self.momentum.unwrap_or(momentum),
            weight_decay: self.weight_decay.unwrap_or(weight_decay),
            betas: ADAM_BETAS,
        }
    }
}

/// The regime of `model` when the user gives no `--optimizer-regime` (module documentation):
/// upstream's for the ResNets, efficientnetv2 and convnext, the flags alone for the others.
/// `lr_min` is convnext's model-config key (default [`CONVNEXT_LR_MIN`]); other models ignore
/// it. Fails on flag values no regime can use, naming them.
pub fn default_regime(model: &str, flags: &BaseFlags, lr_min: Option<f64>) -> Result<Regime, TrainError> {
    use OptimizerKind::{AdamW, RmsProp, Sgd};
    let lr = flags.lr.unwrap_or(DEFAULT_LR);
    let (base, entries) = match model {
        "resnet18" => (
            flags.or(Sgd, DEFAULT_LR, 0.875, 3.0517578125e-5),
            vec![
                RegimeEntry {
                    warmup_epochs: Some(5.0),
                    ..RegimeEntry::default()
                },
                RegimeEntry {
                    weight_decay: Some(0.0),
                    ..step(30, lr * 0.1)
                },
                step(45, lr * 0.01),
                step(80, lr * 0.001),
            ],
        ),
        "resnet34" | "resnet50" | "resnet101" | "resnet152" => (
            flags.or(Sgd, DEFAULT_LR, 0.9, 5e-5),
            vec![step(18, lr * 0.1), step(23, lr * 0.01), step(30, lr * 0.001)],
        ),
        "efficientnetv2" => (
            flags.or(RmsProp, DEFAULT_LR, 0.9, 1e-5),
            vec![RegimeEntry {
                alpha: Some(0.9),
                no_decay_on_norm_and_bias: Some(true),
                warmup_epochs: Some(flags.warmup_epochs),
                warmup: Some(Warmup::Constant),
                warmup_lr: Some(1e-6),
                decay: Some(DecayKind::Exponential),
                gamma: Some(0.97),
                every: Some(2.4),
                ..RegimeEntry::default()
            }],
        ),
        "convnext" => (
            flags.or(AdamW, CONVNEXT_LR, DEFAULT_MOMENTUM, 0.05),
            vec![RegimeEntry {
                eps: Some(1e-8),
                warmup_epochs: Some(flags.warmup_epochs),
                decay: Some(DecayKind::Cosine),
                lr_min: Some(lr_min.unwrap_or(CONVNEXT_LR_MIN)),
                ..RegimeEntry::default()
            }],
        ),
        _ => (flags.settings(), Vec::new()),
    };
    Regime::new(base, entries)
}

/// The entry setting the learning rate to `lr` from `epoch` on.
fn step(epoch: usize, lr: f64) -> RegimeEntry {
    RegimeEntry {
        epoch,
        lr: Some(lr),
        ..RegimeEntry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCHS: usize = 90;

    fn regime(model: &str, flags: BaseFlags) -> Regime {
        default_regime(model, &flags, None).unwrap()
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= 1e-12 * expected.abs().max(1e-9),
            "{what}: {actual} against {expected}"
        );
    }

    #[test]
    fn resnet18_ramps_up_over_five_epochs_then_steps_down() {
        let regime = regime("resnet18", BaseFlags::default());
        for (epoch, lr) in [
            (0.0, 0.0),
            (2.5, 0.005),
            (5.0, 0.01),
            (29.0, 0.01),
            (30.0, 0.001),
            (45.0, 0.0001),
            (80.0, 0.00001),
        ] {
            assert_close(regime.lr_at(epoch, EPOCHS), lr, &format!("lr at epoch {epoch}"));
        }
        let settings = |epoch| regime.settings_at(epoch).settings;
        assert_eq!(settings(0).optimizer, OptimizerKind::Sgd);
        assert_eq!(settings(0).momentum, 0.875);
        assert_eq!(settings(29).weight_decay, 3.0517578125e-5);
        assert_eq!(settings(30).weight_decay, 0.0);
        assert_eq!(settings(89).weight_decay, 0.0);
    }

    #[test]
    fn the_larger_resnets_follow_upstreams_resnet50() {
        let resnet50 = regime("resnet50", BaseFlags::default());
        for other in ["resnet34", "resnet101", "resnet152"] {
            assert_eq!(regime(other, BaseFlags::default()), resnet50);
        }
        for (epoch, lr) in [
            (0.0, 0.01),
            (17.9, 0.01),
            (18.0, 0.001),
            (23.0, 0.0001),
            (30.0, 0.00001),
        ] {
            assert_close(resnet50.lr_at(epoch, EPOCHS), lr, &format!("lr at epoch {epoch}"));
        }
        let settings = resnet50.settings_at(0).settings;
        assert_eq!((settings.momentum, settings.weight_decay), (0.9, 5e-5));
    }

    #[test]
    fn efficientnetv2_holds_1e_6_during_the_warm_up_then_decays_as_upstream() {
        let flags = BaseFlags {
            warmup_epochs: 2.0,
            ..BaseFlags::default()
        };
        let regime = regime("efficientnetv2", flags);
        assert_eq!(regime.lr_at(0.0, EPOCHS), 1e-6);
        assert_eq!(regime.lr_at(1.99, EPOCHS), 1e-6);
        // Python: 0.01 * 0.97 ** round(epoch / 2.4)
        for (epoch, lr) in [(2.0, 0.0097), (5.5, 0.009409), (6.0, 0.009409), (7.0, 0.00912673)] {
            assert_close(regime.lr_at(epoch, EPOCHS), lr, &format!("lr at epoch {epoch}"));
        }
        let h = regime.settings_at(0);
        assert_eq!(h.settings.optimizer, OptimizerKind::RmsProp);
        assert_eq!((h.settings.momentum, h.settings.weight_decay), (0.9, 1e-5));
        assert_eq!((h.details.alpha, h.details.eps), (0.9, 1e-8));
        assert!(h.details.no_decay_on_norm_and_bias);
    }

    #[test]
    fn convnext_warms_up_per_step_then_anneals_to_lr_min() {
        let flags = BaseFlags {
            warmup_epochs: 1.0,
            ..BaseFlags::default()
        };
        let regime = regime("convnext", flags);
        assert_close(regime.lr_at(0.25, 11), 1e-3, "a quarter into the warm-up");
        assert_close(regime.lr_at(1.0, 11), 4e-3, "the end of the warm-up");
        assert_close(regime.lr_at(6.0, 11), (4e-3 + 1e-6) / 2.0, "half way down the cosine");
        assert_close(regime.lr_at(11.0, 11), 1e-6, "the end of the task");
        let h = regime.settings_at(0);
        assert_eq!(h.settings.optimizer, OptimizerKind::AdamW);
        assert_eq!((h.settings.weight_decay, h.details.eps), (0.05, 1e-8));
        let lower = default_regime("convnext", &flags, Some(1e-4)).unwrap();
        assert_close(lower.lr_at(11.0, 11), 1e-4, "the model config's lr_min");
        let explicit = default_regime(
            "convnext",
            &BaseFlags {
                lr: Some(1e-3),
                ..flags
            },
            None,
        )
        .unwrap();
        assert_close(explicit.lr_at(1.0, 11), 1e-3, "--lr");
    }

    #[test]
    fn explicit_flags_replace_the_models_values_at_epoch_0() {
        let flags = BaseFlags {
            lr: Some(0.1),
            momentum: Some(0.5),
            weight_decay: Some(1e-4),
            warmup_epochs: 1.0,
        };
        let regime = regime("resnet18", flags);
        let (first, late) = (regime.settings_at(0).settings, regime.settings_at(30).settings);
        assert_eq!((first.momentum, first.weight_decay), (0.5, 1e-4));
        assert_eq!((late.momentum, late.weight_decay), (0.5, 0.0));
        assert_close(regime.lr_at(30.0, EPOCHS), 0.01, "lr at epoch 30");
    }

    #[test]
    fn other_models_run_on_the_flags() {
        let flags = BaseFlags {
            lr: Some(0.05),
            ..BaseFlags::default()
        };
        let regime = regime("mnistnet", flags);
        assert_eq!(regime, Regime::new(flags.settings(), Vec::new()).unwrap());
        assert_eq!(regime.settings_at(0).settings.momentum, DEFAULT_MOMENTUM);
        assert_eq!(regime.lr_at(3.5, 5), 0.05);
    }

    #[test]
    fn bad_values_are_named() {
        let error = default_regime("convnext", &BaseFlags::default(), Some(-1.0)).unwrap_err();
        assert!(error
            .to_string()
            .contains("'lr_min' at epoch 0 must be a finite number >= 0, not -1"));
    }
}
