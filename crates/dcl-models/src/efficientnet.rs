//! timm's EfficientNetV2 (`efficientnetv2_s`, `_m`, `_l`; upstream trains `_m`), with timm's
//! names and initialisation (`_init_weight_goog`).
//!
//! Stem (3x3 stride 2, BatchNorm, SiLU), stages of FusedMBConv / MBConv blocks, a 1x1 head
//! convolution to 1280 features, average pooling, dropout (`drop_rate`, 0 as timm's default)
//! and the classifier. Stochastic depth: block `i` of `n` drops its residual branch with
//! probability `rate · i / n` (timm's rule), `rate` raised linearly over the epochs of each
//! task from 0 towards `drop_path_rate` (0.2, upstream's schedule: `rate · epoch / epochs`,
//! through [`Classifier::set_progress`]). Every convolution pads, so any input size of at
//! least 1x1 runs.

use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

use crate::blocks::{Conv, ConvBn, DropPath, DropRate};
use crate::config::{Choice, ConfigKey, Rate};
use crate::{Classifier, Model, ModelConfig, ModelError, ModelInput};

/// timm's variant: `efficientnetv2_s`, `_m` or `_l`.
pub const VARIANT: Choice = Choice {
    name: "variant",
    values: &["s", "m", "l"],
    default: "m",
};
/// Dropout before the classifier.
pub const DROP_RATE: Rate = Rate {
    name: "drop_rate",
    default: 0.0,
};
/// The stochastic-depth rate of the deepest block that the schedule raises towards (upstream's
/// 0.2; timm's default is 0).
pub const DROP_PATH_RATE: Rate = Rate {
    name: "drop_path_rate",
    default: 0.2,
};

/// The model-config keys of EfficientNetV2.
pub const KEYS: &[&dyn ConfigKey] = &[&VARIANT, &DROP_RATE, &DROP_PATH_RATE];

/// The kind of a stage's blocks (timm's block-string prefixes).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `cn`: 3x3 convolution, BatchNorm, SiLU (`ConvBnAct`).
    ConvBnAct,
    /// `er`: FusedMBConv, a 3x3 expansion convolution then a 1x1 projection (`EdgeResidual`).
    Fused,
    /// `ir`: MBConv, 1x1 expansion, 3x3 depthwise, squeeze-excite, 1x1 projection
    /// (`InvertedResidual`).
    Inverted,
}

/// One stage of timm's architecture definition, e.g. `ir_r6_k3_s2_e4_c128_se0.25`.
struct Stage {
    kind: Kind,
    repeats: usize,
    stride: i64,
    expansion: f64,
    c_out: i64,
}

const fn stage(kind: Kind, repeats: usize, stride: i64, expansion: f64, c_out: i64) -> Stage {
    Stage {
        kind,
        repeats,
        stride,
        expansion,
        c_out,
    }
}

use Kind::{ConvBnAct as CN, Fused as ER, Inverted as IR};

/// `_gen_efficientnetv2_s`: stem 24.
const SMALL: &[Stage] = &[
    stage(CN, 2, 1, 1.0, 24),
    stage(ER, 4, 2, 4.0, 48),
    stage(ER, 4, 2, 4.0, 64),
    stage(IR, 6, 2, 4.0, 128),
    stage(IR, 9, 1, 6.0, 160),
    stage(IR, 15, 2, 6.0, 256),
];
/// `_gen_efficientnetv2_m`: stem 24.
const MEDIUM: &[Stage] = &[
    stage(CN, 3, 1, 1.0, 24),
    stage(ER, 5, 2, 4.0, 48),
    stage(ER, 5, 2, 4.0, 80),
    stage(IR, 7, 2, 4.0, 160),
    stage(IR, 14, 1, 6.0, 176),
    stage(IR, 18, 2, 6.0, 304),
    stage(IR, 5, 1, 6.0, 512),
];
/// `_gen_efficientnetv2_l`: stem 32.
const LARGE: &[Stage] = &[
    stage(CN, 4, 1, 1.0, 32),
    stage(ER, 7, 2, 4.0, 64),
    stage(ER, 7, 2, 4.0, 96),
    stage(IR, 10, 2, 4.0, 192),
    stage(IR, 19, 1, 6.0, 224),
    stage(IR, 25, 2, 6.0, 384),
    stage(IR, 7, 1, 6.0, 640),
];

/// Features of the head convolution.
const NUM_FEATURES: i64 = 1280;
/// Squeeze-excite ratio of the MBConv blocks, relative to the block's input channels.
const SE_RATIO: f64 = 0.25;

/// timm's `make_divisible(v, 8)`: the nearest multiple of 8, at least 8, and not below 0.9 v.
fn make_divisible(v: f64) -> i64 {
    let rounded = (((v + 4.0) as i64) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * v {
        rounded + 8
    } else {
        rounded
    }
}

/// A 1x1 convolution with bias, initialised as timm's `_init_weight_goog` (bias 0).
fn conv_with_bias(path: nn::Path, c_in: i64, c_out: i64) -> nn::Conv2D {
    let config = nn::ConvConfig {
        ws_init: Init::Randn {
            mean: 0.0,
            stdev: (2.0 / c_out as f64).sqrt(),
        },
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(path, c_in, c_out, 1, config)
}

/// timm's `SqueezeExcite`: channel gates from the spatial mean (reduce, SiLU, expand, sigmoid).
#[derive(Debug)]
struct SqueezeExcite {
    conv_reduce: nn::Conv2D,
    conv_expand: nn::Conv2D,
}

impl SqueezeExcite {
    fn new(path: &nn::Path, channels: i64, reduced: i64) -> Self {
        SqueezeExcite {
            conv_reduce: conv_with_bias(path / "conv_reduce", channels, reduced),
            conv_expand: conv_with_bias(path / "conv_expand", reduced, channels),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let gates = xs
            .mean_dim([2i64, 3].as_slice(), true, None)
            .apply(&self.conv_reduce)
            .silu()
            .apply(&self.conv_expand)
            .sigmoid();
        xs * gates
    }
}

/// A block: convolutions with BatchNorm (SiLU after all but the projection of the residual
/// kinds), squeeze-excite before the last convolution of an MBConv, and a residual connection
/// with drop path when the shape is kept.
#[derive(Debug)]
struct Block {
    /// Each convolution with whether SiLU follows it.
    convs: Vec<(ConvBn, bool)>,
    se: Option<SqueezeExcite>,
    residual: Option<DropPath>,
}

impl Block {
    fn new(path: &nn::Path, c_in: i64, stage: &Stage, stride: i64, drop_path: DropPath) -> Self {
        let c_out = stage.c_out;
        let mid = make_divisible(c_in as f64 * stage.expansion);
        let conv_bn = |conv: &str, bn: &str, shape: Conv, act: bool| (ConvBn::new(path / conv, path / bn, shape), act);
        let (convs, se) = match stage.kind {
            Kind::ConvBnAct => (
                vec![conv_bn("conv", "bn1", Conv::new(c_in, c_out, 3, stride), true)],
                None,
            ),
            Kind::Fused => (
                vec![
                    conv_bn("conv_exp", "bn1", Conv::new(c_in, mid, 3, stride), true),
                    conv_bn("conv_pwl", "bn2", Conv::new(mid, c_out, 1, 1), false),
                ],
                None,
            ),
            Kind::Inverted => {
                let depthwise = Conv {
                    groups: mid,
                    ..Conv::new(mid, mid, 3, stride)
                };
                let reduced = (mid as f64 * (SE_RATIO / stage.expansion)).round() as i64;
                (
                    vec![
                        conv_bn("conv_pw", "bn1", Conv::new(c_in, mid, 1, 1), true),
                        conv_bn("conv_dw", "bn2", depthwise, true),
                        conv_bn("conv_pwl", "bn3", Conv::new(mid, c_out, 1, 1), false),
                    ],
                    Some(SqueezeExcite::new(&(path / "se"), mid, reduced)),
                )
            }
        };
        let residual = (stride == 1 && c_in == c_out).then_some(drop_path);
        Block { convs, se, residual }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, (conv, act)) in self.convs.iter().enumerate() {
            if i == last {
                if let Some(se) = &self.se {
                    ys = se.forward(&ys);
                }
            }
            ys = conv.forward_t(&ys, train);
            if *act {
                ys = ys.silu();
            }
        }
        match &self.residual {
            Some(drop_path) => drop_path.forward_t(ys, train) + xs,
            None => ys,
        }
    }
}

/// An EfficientNetV2.
#[derive(Debug)]
pub struct EfficientNet {
    stem: ConvBn,
    blocks: Vec<Block>,
    head: ConvBn,
    drop_rate: f64,
    classifier: nn::Linear,
    /// The rate in force (0 until training progresses).
    drop_path_rate: DropRate,
    /// The rate the schedule raises towards.
    final_drop_path_rate: f64,
}

impl EfficientNet {
    /// Creates the network's variables under `path` for `variant` (`s`, `m` or `l`); its drop
    /// path starts at 0 and [`Classifier::set_progress`] raises it towards `drop_path_rate`.
    pub fn new(path: &nn::Path, variant: &str, input: ModelInput, drop_rate: f64, drop_path_rate: f64) -> Self {
        let final_drop_path_rate = drop_path_rate;
        let (stages, stem_size) = match variant {
            "s" => (SMALL, 24),
            "l" => (LARGE, 32),
            _ => (MEDIUM, 24),
        };
        let drop_path_rate = DropRate::new(0.0);
        let stem = ConvBn::new(
            path / "conv_stem",
            path / "bn1",
            Conv::new(input.image_shape[0] as i64, stem_size, 3, 2),
        );
        let total: usize = stages.iter().map(|s| s.repeats).sum();
        let mut blocks = Vec::with_capacity(total);
        let mut c_in = stem_size;
        for (s, stage) in stages.iter().enumerate() {
            for i in 0..stage.repeats {
                let stride = if i == 0 { stage.stride } else { 1 };
                let drop_path = DropPath::new(&drop_path_rate, blocks.len() as f64 / total as f64);
                let block_path = path / "blocks" / s / i;
                blocks.push(Block::new(&block_path, c_in, stage, stride, drop_path));
                c_in = stage.c_out;
            }
        }
        let head = ConvBn::new(path / "conv_head", path / "bn2", Conv::new(c_in, NUM_FEATURES, 1, 1));
        let num_classes = input.num_classes as i64;
        let bound = 1.0 / (num_classes as f64).sqrt();
        let classifier = nn::linear(
            path / "classifier",
            NUM_FEATURES,
            num_classes,
            nn::LinearConfig {
                ws_init: Init::Uniform { lo: -bound, up: bound },
                bs_init: Some(Init::Const(0.0)),
                bias: true,
            },
        );
        EfficientNet {
            stem,
            blocks,
            head,
            drop_rate,
            classifier,
            drop_path_rate,
            final_drop_path_rate,
        }
    }
}

impl EfficientNet {
    /// The pooled output of the head convolution: what the dropout and `classifier` read.
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.stem.forward_t(xs, train).silu();
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        self.head
            .forward_t(&ys, train)
            .silu()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
    }
}

impl ModuleT for EfficientNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features(xs, train)
            .dropout(self.drop_rate, train)
            .apply(&self.classifier)
    }
}

impl Classifier for EfficientNet {
    fn set_drop_path_rate(&self, rate: f64) {
        self.drop_path_rate.set(rate);
    }

    fn set_progress(&self, fraction: f64) {
        self.set_drop_path_rate(self.final_drop_path_rate * fraction);
    }

    fn features_t(&self, xs: &Tensor, train: bool) -> Option<Tensor> {
        Some(self.features(xs, train))
    }
}

/// The registry constructor.
pub fn build(path: &nn::Path, input: ModelInput, config: &ModelConfig) -> Result<Model, ModelError> {
    Ok(Box::new(EfficientNet::new(
        path,
        VARIANT.get(config)?,
        input,
        DROP_RATE.get(config)?,
        DROP_PATH_RATE.get(config)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_as_timm() {
        assert_eq!(make_divisible(24.0 * 4.0), 96);
        assert_eq!(make_divisible(3.0), 8);
        assert_eq!(make_divisible(20.0), 24);
        assert_eq!(make_divisible(12.0), 16);
        assert_eq!(make_divisible(36.0), 40);
    }
}
