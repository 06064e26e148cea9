//! Parameter initialisation matching PyTorch's defaults, so that dcl's models start from
//! the same distribution as upstream's.

use tch::nn::{self, init::FanInOut, init::NonLinearity, init::NormalOrUniform, Init};

/// PyTorch's default weight initialisation of `nn.Linear` and `nn.ConvNd`:
/// Kaiming-uniform with `a = sqrt(5)`, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub const TORCH_DEFAULT_WEIGHT: Init = Init::Kaiming {
    dist: NormalOrUniform::Uniform,
    fan: FanInOut::FanIn,
    // gain sqrt(2 / (1 + a^2)) with a = sqrt(5)
    non_linearity: NonLinearity::ExplicitGain(0.577_350_269_189_625_8),
};

/// PyTorch's default bias initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn torch_default_bias(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A linear layer initialised as PyTorch's `nn.Linear`.
pub fn linear(path: nn::Path, d_in: i64, d_out: i64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: TORCH_DEFAULT_WEIGHT,
        bs_init: Some(torch_default_bias(d_in)),
        bias: true,
    };
    nn::linear(path, d_in, d_out, config)
}

/// A square-kernel 2-D convolution initialised as PyTorch's `nn.Conv2d`.
pub fn conv2d(path: nn::Path, c_in: i64, c_out: i64, kernel: i64) -> nn::Conv2D {
    let config = nn::ConvConfig {
        ws_init: TORCH_DEFAULT_WEIGHT,
        bs_init: torch_default_bias(c_in * kernel * kernel),
        ..Default::default()
    };
    nn::conv2d(path, c_in, c_out, kernel, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_and_biases_stay_within_one_over_sqrt_fan_in() {
        tch::manual_seed(0);
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let fan_in = 400;
        let w = vs.root().var("w", &[50, fan_in], TORCH_DEFAULT_WEIGHT);
        let b = vs.root().var("b", &[50], torch_default_bias(fan_in));
        let bound = 1.0 / (fan_in as f64).sqrt();
        for t in [&w, &b] {
            let max = t.abs().max().double_value(&[]);
            assert!(max <= bound, "{max} > {bound}");
            assert!(max > 0.9 * bound, "{max} is far below {bound}: not the PyTorch range");
        }
    }
}
