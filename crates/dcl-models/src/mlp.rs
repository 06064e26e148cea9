//! A multi-layer perceptron: flatten, linear → 256, ReLU, linear → classes. No dropout, so
//! its training is a deterministic function of its data and initial weights (the
//! data-parallel equivalence tests rely on it).

use tch::{nn, Tensor};

use crate::init::linear;
use crate::{Classifier, Model, ModelConfig, ModelError, ModelInput};

const HIDDEN: i64 = 256;

/// The network's layers.
#[derive(Debug)]
pub struct Mlp {
    hidden: nn::Linear,
    output: nn::Linear,
}

impl nn::ModuleT for Mlp {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.flatten(1, -1).apply(&self.hidden).relu().apply(&self.output)
    }
}

impl Classifier for Mlp {}

/// The registry constructor: any image shape.
pub fn build(path: &nn::Path, input: ModelInput, _config: &ModelConfig) -> Result<Model, ModelError> {
    let features = input.image_shape.iter().product::<usize>() as i64;
    Ok(Box::new(Mlp {
        hidden: linear(path / "hidden", features, HIDDEN),
        output: linear(path / "output", HIDDEN, input.num_classes as i64),
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
}
