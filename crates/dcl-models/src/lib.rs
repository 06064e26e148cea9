//! The neural networks of dcl, on tch, and the registry that builds them by name.
//!
//! Adding a model is one module and one [`MODELS`] entry.
//!
//! Variables are named as the reference implementation's `state_dict()` keys (torchvision for
//! the ResNets, timm for EfficientNetV2 and ConvNeXt), so a reference state dict saved with
//! `safetensors.torch.save_file(model.state_dict(), path)` loads through the model-config key
//! `weights` ([`weights`]). Trainable variables of at most one dimension (biases, normalisation
//! weights, layer scales) are in the optimiser group [`NO_DECAY_GROUP`], all others in
//! [`DECAY_GROUP`], so a regime can exempt the former from weight decay with
//! `optimizer.set_weight_decay_group(NO_DECAY_GROUP, 0.0)`.

pub mod blocks;
pub mod config;
pub mod convnext;
pub mod efficientnet;
pub mod init;
pub mod layout;
pub mod mlp;
pub mod mnistnet;
pub mod resnet;
pub mod weights;

use std::path::PathBuf;

use tch::{nn, Tensor};

pub use config::{ConfigKey, ModelConfig};

/// A classifier: images in, one logit per class out.
///
/// `set_drop_path_rate` takes `&self` (the rate sits behind interior mutability) so that a
/// training loop can raise it between epochs while it holds the model shared.
pub trait Classifier: nn::ModuleT {
    /// Sets the stochastic-depth (drop path) rate of the last block; earlier blocks get a
    /// share of it growing linearly with depth, as timm's. Models without drop path ignore it.
    fn set_drop_path_rate(&self, _rate: f64) {}
    /// Follows training: `fraction` is the share of a task's epochs done (`epoch / epochs`,
    /// 0 at its first epoch). Models that schedule a regulariser over training set it here
    /// (EfficientNetV2 raises its drop path rate linearly, as upstream does); others ignore it.
    fn set_progress(&self, _fraction: f64) {}
    /// The representation the classifier head reads (the penultimate layer), for agents that
    /// classify by it (iCaRL's nearest mean of exemplars); `None` where a model does not expose
    /// it.
    fn features_t(&self, _xs: &Tensor, _train: bool) -> Option<Tensor> {
        None
    }
}

/// A classifier built by the registry.
pub type Model = Box<dyn Classifier>;

/// The optimiser group of the variables with weight decay (convolution and linear weights).
pub const DECAY_GROUP: usize = 0;
/// The optimiser group of the 0- and 1-dimensional variables: biases, normalisation weights,
/// layer scales (timm's rule for parameters exempt from weight decay).
pub const NO_DECAY_GROUP: usize = 1;

/// What a model needs to know about the data it classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInput {
    /// Channels, height, width.
    pub image_shape: [usize; 3],
    pub num_classes: usize,
}

/// A registry entry: a name, the model-config keys it reads and its constructor.
pub struct ModelEntry {
    pub name: &'static str,
    /// The model-config keys the model reads, besides [`config::WEIGHTS`] which every model takes.
    pub keys: &'static [&'static dyn ConfigKey],
    /// The state-dict prefix of the classifier layer, re-initialised when a weights file was
    /// saved for another number of classes.
    pub head: &'static str,
    /// Builds the model's variables under `path`; fails when the input or the config does not fit.
    pub build: fn(&nn::Path, ModelInput, &ModelConfig) -> Result<Model, ModelError>,
}

/// The models dcl can build.
pub const MODELS: &[ModelEntry] = &[
    ModelEntry {
        name: "mnistnet",
        keys: &[],
        head: "fc2",
        build: mnistnet::build,
    },
    ModelEntry {
        name: "mlp",
        keys: mlp::KEYS,
        head: "output",
        build: mlp::build,
    },
    ModelEntry {
        name: "resnet18",
        keys: resnet::KEYS,
        head: "fc",
        build: |path, input, config| resnet::build(path, input, config, &resnet::RESNET18),
    },
    ModelEntry {
        name: "resnet34",
        keys: resnet::KEYS,
        head: "fc",
        build: |path, input, config| resnet::build(path, input, config, &resnet::RESNET34),
    },
    ModelEntry {
        name: "resnet50",
        keys: resnet::KEYS,
        head: "fc",
        build: |path, input, config| resnet::build(path, input, config, &resnet::RESNET50),
    },
    ModelEntry {
        name: "resnet101",
        keys: resnet::KEYS,
        head: "fc",
        build: |path, input, config| resnet::build(path, input, config, &resnet::RESNET101),
    },
    ModelEntry {
        name: "resnet152",
        keys: resnet::KEYS,
        head: "fc",
        build: |path, input, config| resnet::build(path, input, config, &resnet::RESNET152),
    },
    ModelEntry {
        name: "efficientnetv2",
        keys: efficientnet::KEYS,
        head: "classifier",
        build: efficientnet::build,
    },
    ModelEntry {
        name: "convnext",
        keys: convnext::KEYS,
        head: "head.fc",
        build: convnext::build,
    },
];

/// Why a model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model '{name}'; valid models: {valid}")]
    Unknown { name: String, valid: String },
    #[error("model {model} takes {needs} images, not {given}")]
    IncompatibleInput {
        model: &'static str,
        needs: String,
        given: String,
    },
    #[error("model {model} needs images of at least {min}x{min} pixels, not {height}x{width}")]
    InputTooSmall {
        model: &'static str,
        min: usize,
        height: usize,
        width: usize,
    },
    #[error("model-config: unknown key '{key}' for {model}; valid keys: {valid}")]
    UnknownKey { model: String, key: String, valid: String },
    #[error("model-config: bad value {value} for '{key}' (expected {expected})")]
    BadValue {
        key: String,
        value: String,
        expected: String,
    },
    #[error("weights {}: {reason}", path.display())]
    Weights { path: PathBuf, reason: String },
}

/// A model freshly built by [`build`], with a one-line notice about the weights it loaded.
#[derive(Debug)]
pub struct Built {
    pub model: Model,
    /// Set when a weights file was loaded: what was loaded and which head was re-initialised.
    pub notice: Option<String>,
}

/// The comma-separated names of the registry, for messages.
pub fn model_names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// Looks a model up by its command-line name.
pub fn find(name: &str) -> Result<&'static ModelEntry, ModelError> {
    MODELS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ModelError::Unknown {
            name: name.to_owned(),
            valid: model_names(),
        })
}

/// Checks the model-config keys and values of the model called `name` without building it.
pub fn check_config(name: &str, config: &ModelConfig) -> Result<&'static ModelEntry, ModelError> {
    let entry = find(name)?;
    config.check(entry)?;
    Ok(entry)
}

/// Builds the model called `name` under `path`, loading the model-config's `weights` file if
/// any.
///
/// The variables are first created in a private store, so that a weights file is matched
/// against the complete list of the model's variables, then added to `path`'s store (the same
/// tensors) with their optimiser group ([`DECAY_GROUP`] or [`NO_DECAY_GROUP`]).
pub fn build(name: &str, path: &nn::Path, input: ModelInput, config: &ModelConfig) -> Result<Built, ModelError> {
    let entry = check_config(name, config)?;
    let staging = nn::VarStore::new(path.device());
    let model = (entry.build)(&staging.root(), input, config)?;
    let notice = match config::WEIGHTS.get(config)? {
        Some(file) => Some(weights::load(&staging, file, entry.head)?),
        None => None,
    };
    adopt(path, &staging);
    Ok(Built { model, notice })
}

/// Adds the variables of `staging` to `path`'s store under the same names.
fn adopt(path: &nn::Path, staging: &nn::VarStore) {
    let mut named: Vec<(String, tch::Tensor)> = staging.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, tensor) in named {
        let (prefix, leaf) = name.rsplit_once('.').unwrap_or(("", &name));
        let group = if tensor.dim() <= 1 { NO_DECAY_GROUP } else { DECAY_GROUP };
        let parent = prefix
            .split('.')
            .filter(|c| !c.is_empty())
            .fold(path.set_group(group), |p, c| p.sub(c));
        let trainable = tensor.requires_grad();
        // `add` returns another handle on the same tensor, which the model already holds.
        let _ = parent.add(leaf, tensor, trainable);
    }
}

/// The number of trainable parameters of the model called `name` for `input`, as PyTorch's
/// `sum(p.numel() for p in model.parameters())` (buffers such as BatchNorm statistics excluded).
pub fn parameter_count(name: &str, input: ModelInput, config: &ModelConfig) -> Result<i64, ModelError> {
    let entry = check_config(name, config)?;
    let vars = nn::VarStore::new(tch::Device::Cpu);
    tch::no_grad(|| (entry.build)(&vars.root(), input, config))?;
    Ok(vars.trainable_variables().iter().map(|t| t.numel() as i64).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(image_shape: [usize; 3], num_classes: usize) -> ModelInput {
        ModelInput {
            image_shape,
            num_classes,
        }
    }

    #[test]
    fn every_model_exposes_the_features_its_head_reads() {
        for entry in MODELS {
            let shape = if entry.name == "mnistnet" {
                [1, 28, 28]
            } else {
                [3, 64, 64]
            };
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = build(entry.name, &vs.root(), input(shape, 7), &ModelConfig::default())
                .unwrap()
                .model;
            let x = Tensor::rand(
                [2, shape[0] as i64, shape[1] as i64, shape[2] as i64],
                tch::kind::FLOAT_CPU,
            );
            let features = net
                .features_t(&x, false)
                .unwrap_or_else(|| panic!("{}: no features", entry.name));
            let vars = vs.variables();
            let (weight, bias) = (
                &vars[&format!("{}.weight", entry.head)],
                &vars[&format!("{}.bias", entry.head)],
            );
            let logits = features.matmul(&weight.tr()) + bias;
            assert!(
                logits.allclose(&net.forward_t(&x, false), 1e-4, 1e-4, false),
                "{}: the head of the features is not the model's output",
                entry.name
            );
        }
    }

    #[test]
    fn unknown_models_list_the_valid_ones() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let message = build(
            "resnet1000",
            &vs.root(),
            input([1, 28, 28], 10),
            &ModelConfig::default(),
        )
        .err()
        .unwrap()
        .to_string();
        assert_eq!(
            message,
            "unknown model 'resnet1000'; valid models: mnistnet, mlp, resnet18, resnet34, resnet50, resnet101, \
             resnet152, efficientnetv2, convnext"
        );
    }

    #[test]
    fn parameter_counts_equal_the_references() {
        let count = |name: &str, config: &str| {
            let map = serde_json::from_str(config).unwrap();
            parameter_count(name, input([3, 224, 224], 1000), &ModelConfig::new(map)).unwrap()
        };
        // The counts of issue 9; tests/reference.rs checks every variant against torchvision and timm.
        assert_eq!(count("resnet18", "{}"), 11_689_512);
        assert_eq!(count("resnet50", "{}"), 25_557_032);
        assert_eq!(count("convnext", "{}"), 88_591_464);
        assert_eq!(count("efficientnetv2", r#"{"variant": "s"}"#), 21_458_488);
    }

    #[test]
    fn variables_join_the_callers_store_with_their_decay_group() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let built = build(
            "resnet18",
            &(vs.root() / "net"),
            input([3, 32, 32], 10),
            &ModelConfig::default(),
        )
        .unwrap();
        assert!(built.notice.is_none());
        let variables = vs.variables();
        assert_eq!(variables["net.conv1.weight"].size(), vec![64, 3, 7, 7]);
        assert!(!variables["net.bn1.running_mean"].requires_grad());
        let groups = vs.variables_.lock().unwrap();
        let (mut decayed, mut exempt) = (0, 0);
        for var in &groups.trainable_variables {
            match var.group {
                DECAY_GROUP => decayed += var.tensor.numel(),
                _ => exempt += var.tensor.numel(),
            }
        }
        // fc.bias (10) + 20 BatchNorms' weights and biases (2 * 4800)
        assert_eq!(exempt, 10 + 2 * 4800);
        assert_eq!(decayed + exempt, 11_181_642);
    }
}
