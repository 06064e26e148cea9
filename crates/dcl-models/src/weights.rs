//! Loading a reference state dict (`safetensors.torch.save_file(model.state_dict(), path)`)
//! into a freshly built model.
//!
//! Every variable of the model must be in the file with its shape, and every tensor of the file
//! must be a variable of the model, as PyTorch's strict `load_state_dict`; BatchNorm's
//! `num_batches_tracked` counters are accepted and ignored (dcl does not use them). The
//! classifier layer is the exception: when the file has it for another number of classes, or
//! not at all, it keeps its fresh initialisation and the notice says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{nn, Tensor};

use crate::ModelError;

/// The suffix of the BatchNorm counters of PyTorch state dicts.
const BATCHES_TRACKED: &str = ".num_batches_tracked";

fn error(path: &Path, reason: String) -> ModelError {
    ModelError::Weights {
        path: path.to_path_buf(),
        reason,
    }
}

/// Names for a message: the first few, sorted, and how many more.
fn some_names(mut names: Vec<&str>) -> String {
    const SHOWN: usize = 5;
    names.sort_unstable();
    let more = names.len().saturating_sub(SHOWN);
    let mut listed = names.into_iter().take(SHOWN).collect::<Vec<_>>().join(", ");
    if more > 0 {
        listed.push_str(&format!(" and {more} more"));
    }
    listed
}

/// Copies the tensors of the safetensors file `path` into the variables of `vars`, except the
/// classifier under `head` (e.g. `fc`) when its shape differs; returns a one-line notice.
pub fn load(vars: &nn::VarStore, path: PathBuf, head: &str) -> Result<String, ModelError> {
    let file: HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .map_err(|e| error(&path, e.to_string()))?
        .into_iter()
        .filter(|(name, _)| !name.ends_with(BATCHES_TRACKED))
        .collect();
    let variables = vars.variables();
    let in_head = |name: &str| name.strip_prefix(head).is_some_and(|rest| rest.starts_with('.'));
    let missing: Vec<&str> = variables
        .keys()
        .map(String::as_str)
        .filter(|name| !file.contains_key(*name) && !in_head(name))
        .collect();
    let unexpected: Vec<&str> = file
        .keys()
        .map(String::as_str)
        .filter(|name| !variables.contains_key(*name))
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("missing {}", some_names(missing)));
        }
        if !unexpected.is_empty() {
            problems.push(format!("not in the model: {}", some_names(unexpected)));
        }
        return Err(error(&path, problems.join("; ")));
    }
    let mut kept_head = None;
    for (name, variable) in &variables {
        let Some(value) = file.get(name) else {
            kept_head = Some("it is not in the file".to_owned());
            continue;
        };
        if value.size() != variable.size() {
            if !in_head(name) {
                let reason = format!(
                    "{name} has shape {:?} in the file but {:?} in the model",
                    value.size(),
                    variable.size()
                );
                return Err(error(&path, reason));
            }
            if name.ends_with(".weight") {
                kept_head = Some(format!(
                    "the file has {} classes, the data set {}",
                    value.size()[0],
                    variable.size()[0]
                ));
            }
            continue;
        }
        let mut target = variable.shallow_clone();
        tch::no_grad(|| target.f_copy_(value)).map_err(|e| error(&path, format!("{name}: {e}")))?;
    }
    let mut notice = format!("loaded weights from {}", path.display());
    if let Some(why) = kept_head {
        notice.push_str(&format!("; classifier '{head}' re-initialised ({why})"));
    }
    Ok(notice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build, ModelConfig, ModelInput};
    use serde_json::json;

    fn config(weights: &Path) -> ModelConfig {
        let value = json!({ "weights": weights.to_str().unwrap() });
        ModelConfig::new(value.as_object().unwrap().clone())
    }

    fn input(num_classes: usize) -> ModelInput {
        ModelInput {
            image_shape: [3, 32, 32],
            num_classes,
        }
    }

    #[test]
    fn a_head_of_another_size_is_re_initialised_and_the_rest_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resnet18.safetensors");
        tch::manual_seed(1);
        let saved = nn::VarStore::new(tch::Device::Cpu);
        let reference = build("resnet18", &saved.root(), input(10), &ModelConfig::default()).unwrap();
        saved.save(&file).unwrap();

        tch::manual_seed(2);
        let loaded = nn::VarStore::new(tch::Device::Cpu);
        let built = build("resnet18", &loaded.root(), input(5), &config(&file)).unwrap();
        let notice = built.notice.unwrap();
        assert!(
            notice.ends_with("classifier 'fc' re-initialised (the file has 10 classes, the data set 5)"),
            "{notice}"
        );
        let (saved, loaded) = (saved.variables(), loaded.variables());
        assert!(loaded["layer4.1.bn2.running_var"].equal(&saved["layer4.1.bn2.running_var"]));
        assert!(loaded["conv1.weight"].equal(&saved["conv1.weight"]));
        assert_eq!(loaded["fc.weight"].size(), vec![5, 512]);

        // Same classes: everything loads, the outputs are the saved model's.
        let same = nn::VarStore::new(tch::Device::Cpu);
        let built = build("resnet18", &same.root(), input(10), &config(&file)).unwrap();
        assert!(!built.notice.unwrap().contains("re-initialised"));
        let x = Tensor::rand([2, 3, 32, 32], tch::kind::FLOAT_CPU);
        assert!(built
            .model
            .forward_t(&x, false)
            .equal(&reference.model.forward_t(&x, false)));
    }

    #[test]
    fn other_models_and_channel_counts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resnet18.safetensors");
        let saved = nn::VarStore::new(tch::Device::Cpu);
        build("resnet18", &saved.root(), input(10), &ModelConfig::default()).unwrap();
        saved.save(&file).unwrap();

        let vs = nn::VarStore::new(tch::Device::Cpu);
        let message = build("resnet34", &vs.root(), input(10), &config(&file))
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("missing layer1.2.bn1.bias, layer1.2.bn1.running_mean"),
            "{message}"
        );

        let one_channel = ModelInput {
            image_shape: [1, 32, 32],
            num_classes: 10,
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let message = build("resnet18", &vs.root(), one_channel, &config(&file))
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.ends_with("conv1.weight has shape [64, 3, 7, 7] in the file but [64, 1, 7, 7] in the model"),
            "{message}"
        );

        let vs = nn::VarStore::new(tch::Device::Cpu);
        let absent = dir.path().join("absent.safetensors");
        let message = build("resnet18", &vs.root(), input(10), &config(&absent))
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.starts_with(&format!("weights {}: ", absent.display())),
            "{message}"
        );
    }
}
