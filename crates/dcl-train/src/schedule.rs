//! The learning rate within a regime entry: a warm-up over its first epochs, then a decay.
//!
//! Every function here is pure: the learning rate of a step depends on the schedule, the
//! step's fractional epoch within the task and the number of epochs per task only.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// How the learning rate moves during a warm-up (regime key `warmup`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warmup {
    /// From `warmup_lr` up to `lr`, step by step (timm's and ConvNeXt's warm-up).
    #[default]
    Linear,
    /// `warmup_lr` throughout (upstream's EfficientNetV2 warm-up).
    Constant,
}

/// The decays a regime entry can name (regime key `decay`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayKind {
    #[default]
    Constant,
    Exponential,
    Cosine,
}

/// What the learning rate does after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decay {
    /// `lr` until the next entry.
    Constant,
    /// `lr x gamma^round(e / every)`, with `e` the whole epochs since the entry began (its
    /// warm-up included) and `round` Python's (half to even): upstream's EfficientNetV2 rule
    /// `lr * 0.97 ** round(epoch / 2.4)`, applied at epoch boundaries. timm's and
    /// TensorFlow's step decays floor instead, which decays half a period later.
    Exponential { gamma: f64, every: f64 },
    /// Half a cosine, step by step, from `lr` at the end of the warm-up down to `lr_min` at the
    /// end of the task's epochs (ConvNeXt's schedule; PyTorch's `CosineAnnealingLR` after a
    /// `LinearLR` warm-up in a `SequentialLR`).
    Cosine { lr_min: f64 },
}

/// The learning rate of a regime entry from its epoch on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The epoch of the task the schedule starts at (its entry's).
    pub start: usize,
    /// The learning rate after the warm-up, before any decay.
    pub lr: f64,
    /// Epochs of warm-up (fractional allowed; 0: none).
    pub warmup_epochs: f64,
    /// The learning rate the warm-up starts from.
    pub warmup_lr: f64,
    pub warmup: Warmup,
    pub decay: Decay,
}

impl Schedule {
    /// The learning rate at `progress` (fractional) epochs into a task of `epochs_per_task`
    /// epochs, for a progress from the schedule's start on.
    pub fn lr_at(&self, progress: f64, epochs_per_task: usize) -> f64 {
        let since_start = progress - self.start as f64;
        if since_start < self.warmup_epochs {
            return match self.warmup {
                Warmup::Linear => self.warmup_lr + (self.lr - self.warmup_lr) * since_start / self.warmup_epochs,
                Warmup::Constant => self.warmup_lr,
            };
        }
        match self.decay {
            Decay::Constant => self.lr,
            Decay::Exponential { gamma, every } => {
                self.lr * gamma.powf((since_start.floor() / every).round_ties_even())
            }
            Decay::Cosine { lr_min } => {
                let span = epochs_per_task as f64 - self.start as f64 - self.warmup_epochs;
                let done = if span > 0.0 {
                    ((since_start - self.warmup_epochs) / span).min(1.0)
                } else {
                    1.0
                };
                lr_min + (self.lr - lr_min) * (1.0 + (PI * done).cos()) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS_PER_EPOCH: usize = 4;

    /// The learning rate of every step of `epochs` epochs of 4 steps.
    fn per_step(schedule: &Schedule, epochs: usize) -> Vec<f64> {
        (0..epochs * STEPS_PER_EPOCH)
            .map(|step| schedule.lr_at(step as f64 / STEPS_PER_EPOCH as f64, epochs))
            .collect()
    }

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (step, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-12 * e.abs().max(1e-3),
                "step {step}: {a} against {e}"
            );
        }
    }

    fn schedule(warmup_epochs: f64, decay: Decay) -> Schedule {
        Schedule {
            start: 0,
            lr: 0.1,
            warmup_epochs,
            warmup_lr: 0.01,
            warmup: Warmup::Linear,
            decay,
        }
    }

    // The expected values are PyTorch 2.11's, 4 steps per epoch, from an SGD optimiser at
    // lr 0.1 (`s` is the scheduler, stepped after every step, or after every epoch for D):
    //   A: s = LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=8); 4 epochs
    //   B: s = CosineAnnealingLR(o, T_max=12, eta_min=0.001); 3 epochs
    //   C: s = SequentialLR(o, [LinearLR(o, start_factor=0.1, total_iters=4),
    //          CosineAnnealingLR(o, T_max=12, eta_min=0.001)], milestones=[4]); 4 epochs
    //   D: s = ExponentialLR(o, gamma=0.9), stepped per epoch; 4 epochs
    // each value `o.param_groups[0]['lr']` before the step.

    #[test]
    fn a_linear_warm_up_matches_pytorchs_linear_lr() {
        let expected = [
            0.010000000000000002,
            0.021250000000000005,
            0.03250000000000001,
            0.04375000000000001,
            0.055000000000000014,
            0.06625000000000002,
            0.07750000000000001,
            0.08875000000000002,
        ];
        let actual = per_step(&schedule(2.0, Decay::Constant), 4);
        assert_close(&actual[..8], &expected);
        assert_close(&actual[8..], &[0.1; 8]);
    }

    const COSINE_FROM_01_TO_0001_IN_12_STEPS: [f64; 12] = [
        0.1,
        0.09831332840130888,
        0.09336825748732973,
        0.0855017856687341,
        0.07525000000000001,
        0.06331154273257479,
        0.05050000000000001,
        0.037688457267425236,
        0.025750000000000016,
        0.015498214331265903,
        0.007631742512670285,
        0.0026866715986911243,
    ];

    #[test]
    fn a_cosine_matches_pytorchs_cosine_annealing_lr() {
        let actual = per_step(&schedule(0.0, Decay::Cosine { lr_min: 0.001 }), 3);
        assert_close(&actual, &COSINE_FROM_01_TO_0001_IN_12_STEPS);
    }

    #[test]
    fn a_warm_up_then_a_cosine_matches_pytorchs_sequential_lr() {
        let actual = per_step(&schedule(1.0, Decay::Cosine { lr_min: 0.001 }), 4);
        assert_close(
            &actual[..4],
            &[
                0.010000000000000002,
                0.03250000000000001,
                0.055000000000000014,
                0.07750000000000003,
            ],
        );
        assert_close(&actual[4..], &COSINE_FROM_01_TO_0001_IN_12_STEPS);
    }

    #[test]
    fn an_exponential_decay_matches_pytorchs_exponential_lr_per_epoch() {
        let decay = Decay::Exponential { gamma: 0.9, every: 1.0 };
        let expected: Vec<f64> = [0.1, 0.09000000000000001, 0.08100000000000002, 0.07290000000000002]
            .iter()
            .flat_map(|&lr| [lr; STEPS_PER_EPOCH])
            .collect();
        assert_close(&per_step(&schedule(0.0, decay), 4), &expected);
    }

    #[test]
    fn upstreams_efficientnet_decay_rounds_half_to_even() {
        // Python: [0.97 ** round(e / 2.4) for e in range(12)] (round(6 / 2.4) = round(2.5) = 2).
        let expected = [
            1.0,
            1.0,
            0.97,
            0.97,
            0.9409,
            0.9409,
            0.9409,
            0.912673,
            0.912673,
            0.8852928099999999,
            0.8852928099999999,
            0.8587340256999999,
        ];
        let decay = Schedule {
            lr: 1.0,
            ..schedule(
                0.0,
                Decay::Exponential {
                    gamma: 0.97,
                    every: 2.4,
                },
            )
        };
        let actual: Vec<f64> = (0..12).map(|e| decay.lr_at(e as f64 + 0.5, 12)).collect();
        assert_close(&actual, &expected);
    }

    #[test]
    fn a_constant_warm_up_holds_its_rate_and_the_decay_counts_from_the_entry() {
        let held = Schedule {
            start: 2,
            warmup: Warmup::Constant,
            warmup_lr: 1e-6,
            ..schedule(1.5, Decay::Exponential { gamma: 0.5, every: 1.0 })
        };
        assert_eq!(held.lr_at(2.0, 10), 1e-6);
        assert_eq!(held.lr_at(3.4, 10), 1e-6);
        // 1.5 epochs in: past the warm-up, in the entry's second epoch.
        assert_close(&[held.lr_at(3.5, 10), held.lr_at(4.0, 10)], &[0.05, 0.025]);
    }
}
