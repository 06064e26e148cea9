//! Optimiser regimes: upstream's `optimizer_regime`, a list of settings that take effect
//! at given epochs of every task (the regime restarts with each task).
//!
//! `[{'epoch': 0, 'optimizer': 'SGD', 'lr': 0.01, 'momentum': 0.9}, {'epoch': 10, 'lr': 0.001}]`
//! trains each task with SGD at 0.01, then at 0.001 from its epoch 10 on.

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The optimisers a regime can name (upstream's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerKind {
    #[serde(rename = "SGD")]
    Sgd,
    Adam,
    AdamW,
    #[serde(rename = "RMSprop")]
    RmsProp,
}

/// One entry of a regime: the settings it changes from `epoch` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegimeEntry {
    pub epoch: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Adam's and AdamW's (beta1, beta2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<(f64, f64)>,
}

/// The complete optimiser settings in force at an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSettings {
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// SGD's and RMSprop's momentum (Adam's moments are `betas`).
    pub momentum: f64,
    pub weight_decay: f64,
    /// Adam's and AdamW's (beta1, beta2).
    pub betas: (f64, f64),
}

/// PyTorch's default betas of Adam and AdamW.
pub const ADAM_BETAS: (f64, f64) = (0.9, 0.999);

/// A validated regime: entries sorted by epoch, the first at epoch 0 and complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Regime(Vec<RegimeEntry>);

impl Regime {
    /// A regime of `entries` on top of `base` (the `--lr`, `--momentum`, `--weight-decay`
    /// flags, with SGD): an entry overrides only the keys it names.
    pub fn new(base: OptimizerSettings, mut entries: Vec<RegimeEntry>) -> Result<Self, TrainError> {
        entries.sort_by_key(|e| e.epoch);
        if let Some(pair) = entries.windows(2).find(|w| w[0].epoch == w[1].epoch) {
            return Err(TrainError::Config(format!(
                "optimizer_regime: two entries for epoch {}",
                pair[0].epoch
            )));
        }
        let first = RegimeEntry {
            epoch: 0,
            optimizer: Some(base.optimizer),
            lr: Some(base.lr),
            momentum: Some(base.momentum),
            weight_decay: Some(base.weight_decay),
            betas: Some(base.betas),
        };
        let mut resolved = vec![first];
        for entry in entries {
            if entry.epoch == 0 {
                let head = &mut resolved[0];
                head.optimizer = entry.optimizer.or(head.optimizer);
                head.lr = entry.lr.or(head.lr);
                head.momentum = entry.momentum.or(head.momentum);
                head.weight_decay = entry.weight_decay.or(head.weight_decay);
                head.betas = entry.betas.or(head.betas);
            } else {
                resolved.push(entry);
            }
        }
        let regime = Regime(resolved);
        for entry in &regime.0 {
            let settings = regime.settings_at(entry.epoch);
            for (key, value) in [
                ("lr", settings.lr),
                ("momentum", settings.momentum),
                ("weight_decay", settings.weight_decay),
            ] {
                if !value.is_finite() || value < 0.0 {
                    return Err(TrainError::Config(format!(
                        "optimizer_regime: '{key}' at epoch {} must be a finite number >= 0, not {value}",
                        entry.epoch
                    )));
                }
            }
            let (beta1, beta2) = settings.betas;
            if ![beta1, beta2].iter().all(|b| (0.0..1.0).contains(b)) {
                return Err(TrainError::Config(format!(
                    "optimizer_regime: 'betas' at epoch {} must be two numbers in [0, 1), not ({beta1}, {beta2})",
                    entry.epoch
                )));
            }
        }
        Ok(regime)
    }

    /// The settings in force at `epoch` of a task.
    pub fn settings_at(&self, epoch: usize) -> OptimizerSettings {
        let head = &self.0[0];
        let mut settings = OptimizerSettings {
            optimizer: head.optimizer.expect("the first entry is complete"),
            lr: head.lr.expect("the first entry is complete"),
            momentum: head.momentum.expect("the first entry is complete"),
            weight_decay: head.weight_decay.expect("the first entry is complete"),
            betas: head.betas.expect("the first entry is complete"),
        };
        for entry in self.0.iter().skip(1).take_while(|e| e.epoch <= epoch) {
            settings.optimizer = entry.optimizer.unwrap_or(settings.optimizer);
            settings.lr = entry.lr.unwrap_or(settings.lr);
            settings.momentum = entry.momentum.unwrap_or(settings.momentum);
            settings.weight_decay = entry.weight_decay.unwrap_or(settings.weight_decay);
            settings.betas = entry.betas.unwrap_or(settings.betas);
        }
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: OptimizerSettings = OptimizerSettings {
        optimizer: OptimizerKind::Sgd,
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 0.0,
        betas: ADAM_BETAS,
    };

    fn entries(json: &str) -> Vec<RegimeEntry> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn entries_override_the_flags_from_their_epoch_on() {
        let regime = Regime::new(
            BASE,
            entries(r#"[{"epoch": 2, "lr": 0.001}, {"epoch": 0, "optimizer": "Adam"}]"#),
        )
        .unwrap();
        assert_eq!(
            regime.settings_at(0),
            OptimizerSettings {
                optimizer: OptimizerKind::Adam,
                ..BASE
            }
        );
        assert_eq!(regime.settings_at(1).lr, 0.01);
        assert_eq!(
            regime.settings_at(2),
            OptimizerSettings {
                optimizer: OptimizerKind::Adam,
                lr: 0.001,
                ..BASE
            }
        );
        assert_eq!(regime.settings_at(99).lr, 0.001);
    }

    #[test]
    fn the_flags_alone_make_a_one_entry_regime() {
        let regime = Regime::new(BASE, vec![]).unwrap();
        assert_eq!(regime.settings_at(5), BASE);
    }

    #[test]
    fn bad_regimes_are_rejected() {
        let unknown = serde_json::from_str::<Vec<RegimeEntry>>(r#"[{"epoch": 0, "learning_rate": 1}]"#);
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `learning_rate`"));
        let twice = Regime::new(BASE, entries(r#"[{"epoch": 3}, {"epoch": 3}]"#)).unwrap_err();
        assert!(twice.to_string().contains("two entries for epoch 3"));
        let negative = Regime::new(BASE, entries(r#"[{"epoch": 1, "lr": -1}]"#)).unwrap_err();
        assert!(negative.to_string().contains("'lr' at epoch 1"));
    }
}
