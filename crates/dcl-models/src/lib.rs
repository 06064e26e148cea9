//! The neural networks of dcl, on tch, and the registry that builds them by name.
//!
//! Adding a model is one module and one [`MODELS`] entry.

pub mod init;
pub mod layout;
pub mod mlp;
pub mod mnistnet;

use tch::nn;

/// A classifier: images in, one logit per class out.
pub type Model = Box<dyn nn::ModuleT + Send>;

/// What a model needs to know about the data it classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInput {
    /// Channels, height, width.
    pub image_shape: [usize; 3],
    pub num_classes: usize,
}

/// A registry entry: a name and its constructor.
pub struct ModelEntry {
    pub name: &'static str,
    /// Builds the model's variables under `path`; fails when the input does not fit.
    pub build: fn(&nn::Path, ModelInput) -> Result<Model, ModelError>,
}

/// The models dcl can build.
pub const MODELS: &[ModelEntry] = &[
    ModelEntry {
        name: "mnistnet",
        build: mnistnet::build,
    },
    ModelEntry {
        name: "mlp",
        build: mlp::build,
    },
];

/// Why a model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model '{name}'; valid models: {valid}")]
    Unknown { name: String, valid: String },
    #[error("model {model} does not accept {input}")]
    IncompatibleInput { model: &'static str, input: String },
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

/// Builds the model called `name` under `path`.
pub fn build(name: &str, path: &nn::Path, input: ModelInput) -> Result<Model, ModelError> {
    (find(name)?.build)(path, input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_models_list_the_valid_ones() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let input = ModelInput {
            image_shape: [1, 28, 28],
            num_classes: 10,
        };
        let message = build("resnet1000", &vs.root(), input).err().unwrap().to_string();
        assert_eq!(message, "unknown model 'resnet1000'; valid models: mnistnet, mlp");
    }
}
