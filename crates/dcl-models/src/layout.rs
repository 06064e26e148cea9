//! Memory layout of model parameters.
//!
//! Convolution weights stored channels-last (NHWC strides under the NCHW shape) make
//! libtorch's oneDNN kernels run the whole network channels-last: activations, gradients
//! and optimiser state follow the weights' layout. Measured on mnistnet's training step
//! (batch 64, 2 threads): about 1.5x the images/s of the default layout (BENCHMARKS.md).

use tch::{nn::VarStore, Tensor};

/// The strides of a channels-last tensor of `size` (N, C, H, W).
fn channels_last_strides(size: &[i64]) -> [i64; 4] {
    let [_, c, h, w] = [size[0], size[1], size[2], size[3]];
    [h * w * c, 1, w * c, c]
}

/// Re-lays every 4-D variable of `vars` out channels-last, in place; values are unchanged.
pub fn use_channels_last(vars: &VarStore) {
    tch::no_grad(|| {
        for (_, mut var) in vars.variables() {
            let size = var.size();
            if size.len() != 4 {
                continue;
            }
            let relaid = Tensor::empty_strided(&size, channels_last_strides(&size), (var.kind(), var.device()));
            let mut target = relaid.shallow_clone();
            target.copy_(&var);
            var.set_data(&relaid);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::ModuleT;

    #[test]
    fn weights_keep_their_values_and_get_channels_last_strides() {
        tch::manual_seed(3);
        let vars = VarStore::new(tch::Device::Cpu);
        let net = crate::mnistnet::MnistNet::new(&vars.root(), 10);
        let x = Tensor::rand([2, 1, 28, 28], tch::kind::FLOAT_CPU);
        let before = net.forward_t(&x, false);
        let conv2_before = vars.variables()["conv2.weight"].copy();
        use_channels_last(&vars);
        let conv2 = &vars.variables()["conv2.weight"];
        assert_eq!(conv2.stride(), vec![288, 1, 96, 32]);
        assert_eq!(vars.variables()["conv1.weight"].stride(), vec![9, 1, 3, 1]);
        assert!(conv2.equal(&conv2_before));
        assert!(net.forward_t(&x, false).allclose(&before, 1e-5, 1e-6, false));
    }
}
