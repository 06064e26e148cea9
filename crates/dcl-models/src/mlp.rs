//! A multi-layer perceptron: flatten, `layers` × (linear → `units`, ReLU), linear → classes
//! (by default one hidden layer of 256; van de Ven et al.'s Split-MNIST network is
//! `{'layers': 2, 'units': 400}`). No dropout, so its training is a deterministic function of
//! its data and initial weights (the data-parallel equivalence tests rely on it).

use tch::{nn, Tensor};

use crate::config::{ConfigKey, Count};
use crate::init::linear;
use crate::{Classifier, Model, ModelConfig, ModelError, ModelInput};

/// The number of hidden layers.
const LAYERS: Count = Count {
    name: "layers",
    default: 1,
    min: 1,
    max: 16,
};
/// The width of every hidden layer.
const UNITS: Count = Count {
    name: "units",
    default: 256,
    min: 1,
    max: 1 << 16,
};
/// The keys of the model config.
pub const KEYS: &[&dyn ConfigKey] = &[&LAYERS, &UNITS];

/// The network's layers.
#[derive(Debug)]
pub struct Mlp {
    /// Named `hidden`, `hidden2`, `hidden3`, …
    hidden: Vec<nn::Linear>,
    output: nn::Linear,
}

impl Mlp {
    /// The last hidden layer's activations.
    fn features(&self, xs: &Tensor) -> Tensor {
        self.hidden
            .iter()
            .fold(xs.flatten(1, -1), |x, layer| x.apply(layer).relu())
    }
}

impl nn::ModuleT for Mlp {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        self.features(xs).apply(&self.output)
    }
}

impl Classifier for Mlp {
    fn features_t(&self, xs: &Tensor, _train: bool) -> Option<Tensor> {
        Some(self.features(xs))
    }
}

/// The registry constructor: any image shape.
pub fn build(path: &nn::Path, input: ModelInput, config: &ModelConfig) -> Result<Model, ModelError> {
    let (layers, units) = (LAYERS.get(config)?, UNITS.get(config)? as i64);
    let mut width = input.image_shape.iter().product::<usize>() as i64;
    let hidden = (0..layers)
        .map(|i| {
            let name = if i == 0 {
                "hidden".to_owned()
            } else {
                format!("hidden{}", i + 1)
            };
            let layer = linear(path / name.as_str(), width, units);
            width = units;
            layer
        })
        .collect();
    Ok(Box::new(Mlp {
        hidden,
        output: linear(path / "output", width, input.num_classes as i64),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_images_to_class_logits_deterministically() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = build(
            &vs.root(),
            ModelInput {
                image_shape: [3, 4, 4],
                num_classes: 5,
            },
            &ModelConfig::default(),
        )
        .unwrap();
        let x = Tensor::rand([2, 3, 4, 4], tch::kind::FLOAT_CPU);
        let logits = net.forward_t(&x, true);
        assert_eq!(logits.size(), vec![2, 5]);
        assert!(logits.equal(&net.forward_t(&x, true)), "training mode is deterministic");
    }

    #[test]
    fn layers_and_units_shape_the_network_as_van_de_ven_et_al() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let config = ModelConfig::new(serde_json::from_str(r#"{"layers": 2, "units": 400}"#).unwrap());
        let input = ModelInput {
            image_shape: [1, 28, 28],
            num_classes: 10,
        };
        let _net = build(&vs.root(), input, &config).unwrap();
        let mut shapes: Vec<(String, Vec<i64>)> = vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
        shapes.sort();
        assert_eq!(
            shapes,
            vec![
                ("hidden.bias".to_owned(), vec![400]),
                ("hidden.weight".to_owned(), vec![400, 784]),
                ("hidden2.bias".to_owned(), vec![400]),
                ("hidden2.weight".to_owned(), vec![400, 400]),
                ("output.bias".to_owned(), vec![10]),
                ("output.weight".to_owned(), vec![10, 400]),
            ]
        );
        // 784·400 + 400 + 400·400 + 400 + 400·10 + 10, as the paper's network.
        assert_eq!(
            shapes.iter().map(|(_, s)| s.iter().product::<i64>()).sum::<i64>(),
            478_410
        );
        let bad = ModelConfig::new(serde_json::from_str(r#"{"layers": 0}"#).unwrap());
        assert!(build(&vs.root(), input, &bad).is_err());
    }
}
