//! Optimiser regimes: upstream's `optimizer_regime`, a list of settings that take effect
//! at given epochs of every task (the regime restarts with each task).
//!
//! `[{'epoch': 0, 'optimizer': 'SGD', 'lr': 0.01, 'momentum': 0.9}, {'epoch': 10, 'lr': 0.001}]`
//! trains each task with SGD at 0.01, then at 0.001 from its epoch 10 on.
//!
//! The keys of an entry are of two kinds:
//! - the optimiser's (`optimizer`, `momentum`, `weight_decay`, `betas`, `eps`, `alpha`,
//!   `nesterov`, `dampening`, `no_decay_on_norm_and_bias`) hold from their entry on, until a
//!   later entry names them again;
//! - the learning rate's (`lr`, `warmup_epochs`, `warmup_lr`, `warmup`, `decay`, `gamma`,
//!   `every`, `lr_min`) change together: an entry naming any of them starts a new
//!   [`Schedule`] at its epoch, with the `lr` in force unless it names one and the keys it
//!   does not name at their defaults (no warm-up, constant rate); an entry naming none of them
//!   keeps the running schedule.

use serde::{Deserialize, Serialize};

use crate::schedule::{Decay, DecayKind, Schedule, Warmup};
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

/// One entry of a regime: the settings it changes from `epoch` on (module documentation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Adam's, AdamW's and RMSprop's term added to the denominator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// RMSprop's smoothing constant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// SGD's Nesterov momentum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// SGD's dampening of the momentum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    /// No weight decay on the biases, normalisation weights and layer scales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_decay_on_norm_and_bias: Option<bool>,
    /// Epochs of warm-up at the start of this entry's schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<f64>,
    /// The learning rate the warm-up starts from (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_lr: Option<f64>,
    /// How the warm-up goes (default linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Warmup>,
    /// The decay after the warm-up (default constant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<DecayKind>,
    /// The exponential decay's factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// Epochs per factor `gamma` of the exponential decay (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<f64>,
    /// Where the cosine decay ends (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_min: Option<f64>,
}

/// The optimiser settings every regime names (its first entry's, from the flags).
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

/// The optimiser settings a regime names only where they differ from PyTorch's defaults
/// ([`OptimizerDetails::default`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerDetails {
    /// Adam's, AdamW's and RMSprop's term added to the denominator.
    pub eps: f64,
    /// RMSprop's smoothing constant.
    pub alpha: f64,
    /// SGD's Nesterov momentum.
    pub nesterov: bool,
    /// SGD's dampening of the momentum.
    pub dampening: f64,
    /// No weight decay on the variables of [`dcl_models::NO_DECAY_GROUP`] (biases,
    /// normalisation weights, layer scales).
    pub no_decay_on_norm_and_bias: bool,
}

impl Default for OptimizerDetails {
    /// PyTorch's defaults (eps 1e-8, alpha 0.99, no Nesterov, dampening 0), decay on every
    /// variable.
    fn default() -> Self {
        OptimizerDetails {
            eps: 1e-8,
            alpha: 0.99,
            nesterov: false,
            dampening: 0.0,
            no_decay_on_norm_and_bias: false,
        }
    }
}

/// The complete optimiser settings in force at an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyperparameters {
    pub settings: OptimizerSettings,
    pub details: OptimizerDetails,
}

impl From<OptimizerSettings> for Hyperparameters {
    /// `settings` with PyTorch's defaults for the rest.
    fn from(settings: OptimizerSettings) -> Self {
        Hyperparameters {
            settings,
            details: OptimizerDetails::default(),
        }
    }
}

impl From<OptimizerSettings> for RegimeEntry {
    /// The entry at epoch 0 naming `settings`.
    fn from(s: OptimizerSettings) -> Self {
        RegimeEntry {
            optimizer: Some(s.optimizer),
            lr: Some(s.lr),
            momentum: Some(s.momentum),
            weight_decay: Some(s.weight_decay),
            betas: Some(s.betas),
            ..RegimeEntry::default()
        }
    }
}

impl RegimeEntry {
    /// Whether the entry names a key of the learning rate's schedule.
    fn names_schedule(&self) -> bool {
        self.lr.is_some()
            || self.warmup_epochs.is_some()
            || self.warmup_lr.is_some()
            || self.warmup.is_some()
            || self.decay.is_some()
            || self.gamma.is_some()
            || self.every.is_some()
            || self.lr_min.is_some()
    }

    /// Applies a later entry: the optimiser's keys it names, and its schedule if it names one
    /// (module documentation).
    fn overlay(&mut self, later: &RegimeEntry) {
        self.optimizer = later.optimizer.or(self.optimizer);
        self.momentum = later.momentum.or(self.momentum);
        self.weight_decay = later.weight_decay.or(self.weight_decay);
        self.betas = later.betas.or(self.betas);
        self.eps = later.eps.or(self.eps);
        self.alpha = later.alpha.or(self.alpha);
        self.nesterov = later.nesterov.or(self.nesterov);
        self.dampening = later.dampening.or(self.dampening);
        self.no_decay_on_norm_and_bias = later.no_decay_on_norm_and_bias.or(self.no_decay_on_norm_and_bias);
        if later.names_schedule() {
            *self = RegimeEntry {
                epoch: self.epoch,
                lr: later.lr.or(self.lr),
                warmup_epochs: later.warmup_epochs,
                warmup_lr: later.warmup_lr,
                warmup: later.warmup,
                decay: later.decay,
                gamma: later.gamma,
                every: later.every,
                lr_min: later.lr_min,
                ..self.clone()
            };
        }
    }

    /// Keys that need another in the same entry.
    fn check_companions(&self) -> Result<(), TrainError> {
        let exponential = self.decay == Some(DecayKind::Exponential);
        let cosine = self.decay == Some(DecayKind::Cosine);
        let warm = self.warmup_epochs.is_some();
        let rules = [
            ("gamma", self.gamma.is_some(), exponential, "'decay': 'exponential'"),
            ("every", self.every.is_some(), exponential, "'decay': 'exponential'"),
            ("lr_min", self.lr_min.is_some(), cosine, "'decay': 'cosine'"),
            ("warmup_lr", self.warmup_lr.is_some(), warm, "'warmup_epochs'"),
            ("warmup", self.warmup.is_some(), warm, "'warmup_epochs'"),
            ("decay", exponential, self.gamma.is_some(), "'gamma'"),
        ];
        match rules.iter().find(|(_, given, companion, _)| *given && !*companion) {
            Some((key, _, _, needs)) => Err(TrainError::Config(format!(
                "optimizer_regime: '{key}' at epoch {} needs {needs} in the same entry",
                self.epoch
            ))),
            None => Ok(()),
        }
    }

    /// The values of a resolved entry (the state at an epoch) that no optimiser can use.
    fn check_values(&self, epoch: usize) -> Result<(), TrainError> {
        let bad = |key: &str, rule: &str, value: String| {
            Err(TrainError::Config(format!(
                "optimizer_regime: '{key}' at epoch {epoch} must be {rule}, not {value}"
            )))
        };
        let numbers = [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
            ("eps", self.eps),
            ("alpha", self.alpha),
            ("dampening", self.dampening),
            ("warmup_epochs", self.warmup_epochs),
            ("warmup_lr", self.warmup_lr),
            ("gamma", self.gamma),
            ("lr_min", self.lr_min),
        ];
        for (key, value) in numbers {
            if let Some(value) = value.filter(|v| !v.is_finite() || *v < 0.0) {
                return bad(key, "a finite number >= 0", value.to_string());
            }
        }
        if let Some(every) = self.every.filter(|v| !v.is_finite() || *v <= 0.0) {
            return bad("every", "a finite number > 0", every.to_string());
        }
        if let Some((beta1, beta2)) = self
            .betas
            .filter(|&(beta1, beta2)| ![beta1, beta2].iter().all(|b| (0.0..1.0).contains(b)))
        {
            return bad("betas", "two numbers in [0, 1)", format!("({beta1}, {beta2})"));
        }
        let h = self.hyperparameters();
        let (s, d) = (h.settings, h.details);
        if s.optimizer == OptimizerKind::Sgd && d.nesterov && (s.momentum <= 0.0 || d.dampening != 0.0) {
            return Err(TrainError::Config(format!(
                "optimizer_regime: 'nesterov' at epoch {epoch} needs a 'momentum' above 0 and 'dampening' 0"
            )));
        }
        Ok(())
    }

    /// The hyper-parameters of a resolved entry.
    fn hyperparameters(&self) -> Hyperparameters {
        const COMPLETE: &str = "the first entry of a regime names the optimiser settings";
        let defaults = OptimizerDetails::default();
        Hyperparameters {
            settings: OptimizerSettings {
                optimizer: self.optimizer.expect(COMPLETE),
                lr: self.lr.expect(COMPLETE),
                momentum: self.momentum.expect(COMPLETE),
                weight_decay: self.weight_decay.expect(COMPLETE),
                betas: self.betas.expect(COMPLETE),
            },
            details: OptimizerDetails {
                eps: self.eps.unwrap_or(defaults.eps),
                alpha: self.alpha.unwrap_or(defaults.alpha),
                nesterov: self.nesterov.unwrap_or(defaults.nesterov),
                dampening: self.dampening.unwrap_or(defaults.dampening),
                no_decay_on_norm_and_bias: self
                    .no_decay_on_norm_and_bias
                    .unwrap_or(defaults.no_decay_on_norm_and_bias),
            },
        }
    }

    /// The schedule of a resolved entry whose schedule started at epoch `start`.
    fn schedule(&self, start: usize) -> Schedule {
        Schedule {
            start,
            lr: self.hyperparameters().settings.lr,
            warmup_epochs: self.warmup_epochs.unwrap_or(0.0),
            warmup_lr: self.warmup_lr.unwrap_or(0.0),
            warmup: self.warmup.unwrap_or_default(),
            decay: match self.decay.unwrap_or_default() {
                DecayKind::Constant => Decay::Constant,
                DecayKind::Exponential => Decay::Exponential {
                    gamma: self
                        .gamma
                        .expect("Regime::new checks that 'gamma' comes with an exponential decay"),
                    every: self.every.unwrap_or(1.0),
                },
                DecayKind::Cosine => Decay::Cosine {
                    lr_min: self.lr_min.unwrap_or(0.0),
                },
            },
        }
    }
}

/// A validated regime: entries sorted by epoch, the first at epoch 0 and complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Regime(Vec<RegimeEntry>);

impl Regime {
    /// A regime of `entries` on top of `base` (the `--lr`, `--momentum`, `--weight-decay`
    /// flags, with SGD): an entry overrides only the keys it names (module documentation).
    pub fn new(base: OptimizerSettings, mut entries: Vec<RegimeEntry>) -> Result<Self, TrainError> {
        entries.sort_by_key(|e| e.epoch);
        if let Some(pair) = entries.windows(2).find(|w| w[0].epoch == w[1].epoch) {
            return Err(TrainError::Config(format!(
                "optimizer_regime: two entries for epoch {}",
                pair[0].epoch
            )));
        }
        let mut resolved = vec![RegimeEntry::from(base)];
        for entry in entries {
            entry.check_companions()?;
            if entry.epoch == 0 {
                resolved[0].overlay(&entry);
            } else {
                resolved.push(entry);
            }
        }
        let regime = Regime(resolved);
        for entry in &regime.0 {
            regime.state_at(entry.epoch).0.check_values(entry.epoch)?;
        }
        Ok(regime)
    }

    /// The entries in force at `epoch` of a task, merged, and the epoch its schedule started at.
    fn state_at(&self, epoch: usize) -> (RegimeEntry, usize) {
        let mut state = self.0[0].clone();
        let mut start = 0;
        for entry in self.0.iter().skip(1).take_while(|e| e.epoch <= epoch) {
            if entry.names_schedule() {
                start = entry.epoch;
            }
            state.overlay(entry);
        }
        (state, start)
    }

    /// The optimiser settings in force at `epoch` of a task (`lr`: the schedule's rate after
    /// its warm-up, before decay; [`Regime::lr_at`] is the rate of a step).
    pub fn settings_at(&self, epoch: usize) -> Hyperparameters {
        self.state_at(epoch).0.hyperparameters()
    }

    /// The learning-rate schedule in force at `epoch` of a task.
    pub fn schedule_at(&self, epoch: usize) -> Schedule {
        let (state, start) = self.state_at(epoch);
        state.schedule(start)
    }

    /// The learning rate at `progress` (fractional) epochs into a task of `epochs_per_task`
    /// epochs, before any scaling with the number of workers.
    pub fn lr_at(&self, progress: f64, epochs_per_task: usize) -> f64 {
        self.schedule_at(progress as usize).lr_at(progress, epochs_per_task)
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

    fn regime(json: &str) -> Regime {
        Regime::new(BASE, entries(json)).unwrap()
    }

    fn error(json: &str) -> String {
        Regime::new(BASE, entries(json)).unwrap_err().to_string()
    }

    #[test]
    fn entries_override_the_flags_from_their_epoch_on() {
        let regime = regime(r#"[{"epoch": 2, "lr": 0.001}, {"epoch": 0, "optimizer": "Adam"}]"#);
        assert_eq!(
            regime.settings_at(0).settings,
            OptimizerSettings {
                optimizer: OptimizerKind::Adam,
                ..BASE
            }
        );
        assert_eq!(regime.settings_at(1).settings.lr, 0.01);
        assert_eq!(
            regime.settings_at(2).settings,
            OptimizerSettings {
                optimizer: OptimizerKind::Adam,
                lr: 0.001,
                ..BASE
            }
        );
        assert_eq!(regime.settings_at(99).settings.lr, 0.001);
        assert_eq!(regime.lr_at(1.5, 5), 0.01);
        assert_eq!(regime.lr_at(2.0, 5), 0.001);
    }

    #[test]
    fn the_flags_alone_make_a_one_entry_regime() {
        let regime = Regime::new(BASE, vec![]).unwrap();
        assert_eq!(regime.settings_at(5), Hyperparameters::from(BASE));
        assert_eq!(regime.lr_at(3.7, 5), 0.01);
    }

    #[test]
    fn optimizer_keys_hold_until_named_again() {
        let regime = regime(
            r#"[{"epoch": 0, "optimizer": "RMSprop", "alpha": 0.9, "eps": 0.001, "no_decay_on_norm_and_bias": true},
                {"epoch": 3, "eps": 0.01}, {"epoch": 5, "no_decay_on_norm_and_bias": false}]"#,
        );
        let details = |epoch| regime.settings_at(epoch).details;
        assert_eq!((details(0).alpha, details(0).eps), (0.9, 0.001));
        assert_eq!((details(4).alpha, details(4).eps), (0.9, 0.01));
        assert!(details(4).no_decay_on_norm_and_bias && !details(5).no_decay_on_norm_and_bias);
        assert_eq!(details(9).dampening, 0.0);
        assert!(!details(9).nesterov);
    }

    #[test]
    fn an_entry_naming_the_learning_rate_starts_a_new_schedule() {
        let regime = regime(
            r#"[{"epoch": 0, "warmup_epochs": 2, "decay": "cosine", "lr_min": 0.001},
                {"epoch": 4, "weight_decay": 0.1},
                {"epoch": 6, "lr": 0.005},
                {"epoch": 8, "decay": "exponential", "gamma": 0.5}]"#,
        );
        // The flags' lr, warmed up from 0, then the cosine over epochs 2-10.
        assert_eq!(regime.lr_at(1.0, 10), 0.005);
        assert_eq!(
            regime.schedule_at(5),
            regime.schedule_at(0),
            "weight decay kept the schedule"
        );
        assert!((regime.lr_at(5.0, 10) - regime.schedule_at(0).lr_at(5.0, 10)).abs() < 1e-15);
        assert_eq!(regime.lr_at(6.5, 10), 0.005, "no warm-up, no decay");
        // The lr in force, decayed from the entry's epoch.
        assert_eq!(regime.lr_at(8.0, 10), 0.005);
        assert_eq!(regime.lr_at(9.0, 10), 0.0025);
    }

    #[test]
    fn bad_regimes_are_rejected() {
        let unknown = serde_json::from_str::<Vec<RegimeEntry>>(r#"[{"epoch": 0, "learning_rate": 1}]"#);
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `learning_rate`"));
        let decay = serde_json::from_str::<Vec<RegimeEntry>>(r#"[{"epoch": 0, "decay": "linear"}]"#);
        assert!(decay.unwrap_err().to_string().contains("unknown variant `linear`"));
        assert!(error(r#"[{"epoch": 3}, {"epoch": 3}]"#).contains("two entries for epoch 3"));
        assert!(error(r#"[{"epoch": 1, "lr": -1}]"#).contains("'lr' at epoch 1 must be a finite number >= 0, not -1"));
        assert!(
            error(r#"[{"epoch": 1, "decay": "exponential", "gamma": 0.5, "every": 0}]"#)
                .contains("'every' at epoch 1 must be a finite number > 0, not 0")
        );
        assert!(error(r#"[{"epoch": 2, "gamma": 0.5}]"#)
            .contains("'gamma' at epoch 2 needs 'decay': 'exponential' in the same entry"));
        assert!(error(r#"[{"epoch": 2, "decay": "exponential"}]"#)
            .contains("'decay' at epoch 2 needs 'gamma' in the same entry"));
        assert!(error(r#"[{"epoch": 0, "lr_min": 0.1}]"#).contains("'lr_min' at epoch 0 needs 'decay': 'cosine'"));
        assert!(error(r#"[{"epoch": 0, "warmup_lr": 0.1}]"#).contains("'warmup_lr' at epoch 0 needs 'warmup_epochs'"));
        assert!(error(r#"[{"epoch": 0, "nesterov": true, "dampening": 0.1}]"#)
            .contains("'nesterov' at epoch 0 needs a 'momentum' above 0 and 'dampening' 0"));
        assert!(error(r#"[{"epoch": 0, "betas": [0.9, 1.5]}]"#)
            .contains("'betas' at epoch 0 must be two numbers in [0, 1), not (0.9, 1.5)"));
    }
}
