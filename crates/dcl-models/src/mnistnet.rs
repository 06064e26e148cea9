//! Upstream's `mnistnet`: the small convolutional network of PyTorch's MNIST example.
//!
//! conv 1→32 (3x3), max-pool 2, ReLU; conv 32→64 (3x3), dropout2d 0.5, max-pool 2, ReLU;
//! flatten (64·5·5 = 1600); linear 1600→50, ReLU, dropout 0.5; linear 50→classes.

use tch::{nn, Tensor};

use crate::init::{conv2d as conv, linear};
use crate::{Classifier, Model, ModelConfig, ModelError, ModelInput};

/// The input this network is made for: one channel of 28x28 pixels.
const INPUT_SHAPE: [usize; 3] = [1, 28, 28];
const FLAT_FEATURES: i64 = 64 * 5 * 5;

/// The network's layers.
#[derive(Debug)]
pub struct MnistNet {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl MnistNet {
    /// Creates the network's variables under `path`.
    pub fn new(path: &nn::Path, num_classes: usize) -> Self {
        MnistNet {
            conv1: conv(path / "conv1", 1, 32, 3),
            conv2: conv(path / "conv2", 32, 64, 3),
            fc1: linear(path / "fc1", FLAT_FEATURES, 50),
            fc2: linear(path / "fc2", 50, num_classes as i64),
        }
    }
}

impl MnistNet {
    /// The activations of the first fully connected layer (before its dropout).
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv1)
            .max_pool2d_default(2)
            .relu()
            .apply(&self.conv2)
            .feature_dropout(0.5, train)
            .max_pool2d_default(2)
            .relu()
            .flatten(1, -1)
            .apply(&self.fc1)
            .relu()
    }
}

impl nn::ModuleT for MnistNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features(xs, train).dropout(0.5, train).apply(&self.fc2)
    }
}

impl Classifier for MnistNet {
    fn features_t(&self, xs: &Tensor, train: bool) -> Option<Tensor> {
        Some(self.features(xs, train))
    }
}

/// The registry constructor: checks the input shape, then builds the network.
pub fn build(path: &nn::Path, input: ModelInput, _config: &ModelConfig) -> Result<Model, ModelError> {
    if input.image_shape != INPUT_SHAPE {
        let shape = |[c, h, w]: [usize; 3]| format!("{c}x{h}x{w}");
        return Err(ModelError::IncompatibleInput {
            model: "mnistnet",
            needs: shape(INPUT_SHAPE),
            given: shape(input.image_shape),
        });
    }
    Ok(Box::new(MnistNet::new(path, input.num_classes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::ModuleT;

    #[test]
    fn has_upstream_shapes_and_parameter_count() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = MnistNet::new(&vs.root(), 10);
        let logits = net.forward_t(&Tensor::zeros([3, 1, 28, 28], tch::kind::FLOAT_CPU), false);
        assert_eq!(logits.size(), vec![3, 10]);
        let parameters: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        // conv1 320 + conv2 18,496 + fc1 80,050 + fc2 510
        assert_eq!(parameters, 99_376);
    }

    #[test]
    fn rejects_other_image_shapes() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let input = ModelInput {
            image_shape: [3, 32, 32],
            num_classes: 10,
        };
        let message = build(&vs.root(), input, &ModelConfig::default())
            .err()
            .unwrap()
            .to_string();
        assert_eq!(message, "model mnistnet takes 1x28x28 images, not 3x32x32");
    }

    #[test]
    fn dropout_is_active_only_in_training() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = MnistNet::new(&vs.root(), 10);
        let x = Tensor::rand([2, 1, 28, 28], tch::kind::FLOAT_CPU);
        let eval = |n: &MnistNet| n.forward_t(&x, false);
        assert!(eval(&net).equal(&eval(&net)));
        assert!(!net.forward_t(&x, true).equal(&net.forward_t(&x, true)));
    }
}
