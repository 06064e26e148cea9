//! Building blocks shared by the model families: a bias-free convolution followed by
//! BatchNorm (ResNet, EfficientNet) and stochastic depth (EfficientNet, ConvNeXt).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

/// The shape of a square-kernel convolution; padding is `(kernel - 1) / 2` (torchvision's and
/// timm's symmetric padding for odd kernels, none for 1x1).
#[derive(Debug, Clone, Copy)]
pub struct Conv {
    pub c_in: i64,
    pub c_out: i64,
    pub kernel: i64,
    pub stride: i64,
    pub groups: i64,
}

impl Conv {
    /// A dense convolution (one group).
    pub fn new(c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Self {
        Conv {
            c_in,
            c_out,
            kernel,
            stride,
            groups: 1,
        }
    }

    /// A bias-free convolution initialised N(0, 2 / fan_out) with fan_out = k·k·c_out / groups:
    /// torchvision ResNet's `kaiming_normal_(mode='fan_out', nonlinearity='relu')` (one group)
    /// and timm's `_init_weight_goog` alike.
    pub fn build(self, path: nn::Path) -> nn::Conv2D {
        let fan_out = self.kernel * self.kernel * self.c_out / self.groups;
        let config = nn::ConvConfig {
            stride: self.stride,
            padding: (self.kernel - 1) / 2,
            groups: self.groups,
            bias: false,
            ws_init: Init::Randn {
                mean: 0.0,
                stdev: (2.0 / fan_out as f64).sqrt(),
            },
            ..Default::default()
        };
        nn::conv2d(path, self.c_in, self.c_out, self.kernel, config)
    }
}

/// A BatchNorm as PyTorch's `nn.BatchNorm2d` (eps 1e-5, momentum 0.1, weight 1, bias 0).
pub fn batch_norm(path: nn::Path, channels: i64) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        ws_init: Init::Const(1.0),
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(path, channels, config)
}

/// A convolution and the BatchNorm that follows it (named separately, as the references do).
#[derive(Debug)]
pub struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn {
    /// Creates the convolution under `conv` and the BatchNorm under `bn`.
    pub fn new(conv: nn::Path, bn: nn::Path, shape: Conv) -> Self {
        ConvBn {
            conv: shape.build(conv),
            bn: batch_norm(bn, shape.c_out),
        }
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train)
    }
}

/// A drop path rate shared by all blocks of a model and changeable while it trains.
#[derive(Debug, Clone, Default)]
pub struct DropRate(Arc<AtomicU64>);

impl DropRate {
    /// A shared rate starting at `rate`.
    pub fn new(rate: f64) -> Self {
        DropRate(Arc::new(AtomicU64::new(rate.to_bits())))
    }

    /// Sets the rate of the deepest block.
    pub fn set(&self, rate: f64) {
        self.0.store(rate.to_bits(), Ordering::Relaxed);
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Stochastic depth (timm's `DropPath`): in training, zeroes a residual branch for a random
/// subset of the samples and scales the others by 1 / keep; the identity in evaluation.
#[derive(Debug)]
pub struct DropPath {
    rate: DropRate,
    /// This block's share of the shared rate (its depth fraction).
    share: f64,
}

impl DropPath {
    /// A drop path with `share` times the shared `rate`.
    pub fn new(rate: &DropRate, share: f64) -> Self {
        DropPath {
            rate: rate.clone(),
            share,
        }
    }

    /// Applies the drop path to a residual branch `xs`.
    pub fn forward_t(&self, xs: Tensor, train: bool) -> Tensor {
        let rate = self.rate.get() * self.share;
        if !train || rate <= 0.0 {
            return xs;
        }
        let keep = 1.0 - rate;
        let mut shape = vec![1; xs.dim()];
        shape[0] = xs.size()[0];
        let mask = Tensor::empty(&shape, (xs.kind(), xs.device())).bernoulli_float_(keep) / keep;
        xs * mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_path_drops_whole_samples_in_training_only() {
        tch::manual_seed(0);
        let rate = DropRate::new(0.0);
        let drop = DropPath::new(&rate, 0.5);
        let x = Tensor::ones([64, 2, 3, 3], tch::kind::FLOAT_CPU);
        assert!(drop.forward_t(x.shallow_clone(), true).equal(&x));
        rate.set(0.8);
        assert!(drop.forward_t(x.shallow_clone(), false).equal(&x));
        let y = drop.forward_t(x.shallow_clone(), true);
        // rate 0.8 x share 0.5: samples are all 0 or all 1 / 0.6
        let per_sample = y.amax([1, 2, 3], false);
        assert!(y.amin([1, 2, 3], false).equal(&per_sample));
        let kept = per_sample.gt(0.0).sum(tch::Kind::Float).double_value(&[]);
        assert!((10.0..=54.0).contains(&kept), "{kept} of 64 kept");
        assert!((per_sample.max().double_value(&[]) - 1.0 / 0.6).abs() < 1e-6);
    }
}
