//! timm's ConvNeXt (`convnext_tiny`, `_small`, `_base`, `_large`; upstream trains `_base`
//! with `drop_rate=0.5`), with timm's names and initialisation.
//!
//! Patchify stem (4x4 stride 4, LayerNorm), four stages of blocks (7x7 depthwise convolution,
//! LayerNorm, MLP 4x with GELU, layer scale initialised to 1e-6, drop path) with a LayerNorm and
//! 2x2 stride-2 convolution between stages, then average pooling, LayerNorm, dropout
//! (`drop_rate`, default 0.5 as upstream) and the classifier. Block `i` of `n` drops its
//! branch with probability `rate · i / (n - 1)` (timm's `linspace`), `rate` starting at
//! `drop_path_rate` (default 0, as timm's). The unpadded stem and downsampling convolutions
//! need inputs of at least 32x32.
//!
//! timm initialises convolutions and linear layers with `trunc_normal_(std=0.02)`, truncated at
//! ±2 (absolute, 100 standard deviations): a plain N(0, 0.02²) here.

use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

use crate::blocks::{DropPath, DropRate};
use crate::config::{Choice, ConfigKey, Rate};
use crate::{Classifier, Model, ModelConfig, ModelError, ModelInput};

/// timm's variant: `convnext_tiny`, `_small`, `_base` or `_large`.
pub const VARIANT: Choice = Choice {
    name: "variant",
    values: &["tiny", "small", "base", "large"],
    default: "base",
};
/// Dropout before the classifier (upstream's 0.5).
pub const DROP_RATE: Rate = Rate {
    name: "drop_rate",
    default: 0.5,
};
/// The initial stochastic-depth rate of the deepest block.
pub const DROP_PATH_RATE: Rate = Rate {
    name: "drop_path_rate",
    default: 0.0,
};

/// The model-config keys of ConvNeXt.
pub const KEYS: &[&dyn ConfigKey] = &[&VARIANT, &DROP_RATE, &DROP_PATH_RATE];

/// The smallest input side: the stem divides by 4 and each of three downsamplings by 2,
/// without padding.
pub const MIN_SIZE: usize = 32;

const EPS: f64 = 1e-6;
const LAYER_SCALE_INIT: f64 = 1e-6;
const INIT: Init = Init::Randn { mean: 0.0, stdev: 0.02 };

/// Blocks and channels of each stage.
fn stages(variant: &str) -> ([usize; 4], [i64; 4]) {
    match variant {
        "tiny" => ([3, 3, 9, 3], [96, 192, 384, 768]),
        "small" => ([3, 3, 27, 3], [96, 192, 384, 768]),
        "large" => ([3, 3, 27, 3], [192, 384, 768, 1536]),
        _ => ([3, 3, 27, 3], [128, 256, 512, 1024]),
    }
}

/// A convolution with bias, initialised as timm's ConvNeXt; `config` gives its stride, padding
/// and groups.
fn conv(path: nn::Path, c_in: i64, c_out: i64, kernel: i64, config: nn::ConvConfig) -> nn::Conv2D {
    let config = nn::ConvConfig {
        ws_init: INIT,
        bs_init: Init::Const(0.0),
        ..config
    };
    nn::conv2d(path, c_in, c_out, kernel, config)
}

/// A convolution over non-overlapping `size`x`size` patches (the stem and the downsamplings).
fn patchify(path: nn::Path, c_in: i64, c_out: i64, size: i64) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride: size,
        ..Default::default()
    };
    conv(path, c_in, c_out, size, config)
}

fn linear(path: nn::Path, d_in: i64, d_out: i64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: INIT,
        bs_init: Some(Init::Const(0.0)),
        bias: true,
    };
    nn::linear(path, d_in, d_out, config)
}

fn layer_norm(path: nn::Path, channels: i64) -> nn::LayerNorm {
    let config = nn::LayerNormConfig {
        eps: EPS,
        ..Default::default()
    };
    nn::layer_norm(path, vec![channels], config)
}

/// timm's `LayerNorm2d`: a LayerNorm over the channels of an NCHW tensor.
#[derive(Debug)]
struct LayerNorm2d(nn::LayerNorm);

impl LayerNorm2d {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.permute([0, 2, 3, 1]).apply(&self.0).permute([0, 3, 1, 2])
    }
}

/// A ConvNeXt block (timm's `ConvNeXtBlock` with its default linear MLP on NHWC).
#[derive(Debug)]
struct Block {
    conv_dw: nn::Conv2D,
    norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    gamma: Tensor,
    drop_path: DropPath,
}

impl Block {
    fn new(path: &nn::Path, channels: i64, drop_path: DropPath) -> Self {
        let mlp = path / "mlp";
        let depthwise = nn::ConvConfig {
            padding: 3,
            groups: channels,
            ..Default::default()
        };
        Block {
            conv_dw: conv(path / "conv_dw", channels, channels, 7, depthwise),
            norm: layer_norm(path / "norm", channels),
            fc1: linear(&mlp / "fc1", channels, 4 * channels),
            fc2: linear(&mlp / "fc2", 4 * channels, channels),
            gamma: path.var("gamma", &[channels], Init::Const(LAYER_SCALE_INIT)),
            drop_path,
        }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply(&self.conv_dw)
            .permute([0, 2, 3, 1])
            .apply(&self.norm)
            .apply(&self.fc1)
            .gelu("none")
            .apply(&self.fc2)
            .permute([0, 3, 1, 2])
            * self.gamma.reshape([1, -1, 1, 1]);
        self.drop_path.forward_t(ys, train) + xs
    }
}

/// A stage: its downsampling (LayerNorm, then 2x2 stride-2 convolution; none in the first
/// stage) and its blocks.
#[derive(Debug)]
struct Stage {
    downsample: Option<(LayerNorm2d, nn::Conv2D)>,
    blocks: Vec<Block>,
}

/// A ConvNeXt.
#[derive(Debug)]
pub struct ConvNeXt {
    stem_conv: nn::Conv2D,
    stem_norm: LayerNorm2d,
    stages: Vec<Stage>,
    head_norm: LayerNorm2d,
    drop_rate: f64,
    fc: nn::Linear,
    drop_path_rate: DropRate,
}

impl ConvNeXt {
    /// Creates the network's variables under `path` for `variant` (`tiny`, `small`, `base` or
    /// `large`).
    pub fn new(path: &nn::Path, variant: &str, input: ModelInput, drop_rate: f64, drop_path_rate: f64) -> Self {
        let (depths, dims) = stages(variant);
        let drop_path_rate = DropRate::new(drop_path_rate);
        let stem_path = path / "stem";
        let channels = input.image_shape[0] as i64;
        let stem_conv = patchify(&stem_path / 0, channels, dims[0], 4);
        let stem_norm = LayerNorm2d(layer_norm(&stem_path / 1, dims[0]));
        let last = (depths.iter().sum::<usize>() - 1).max(1) as f64;
        let mut index = 0;
        let mut stages = Vec::new();
        for (s, (&depth, &dim)) in depths.iter().zip(&dims).enumerate() {
            let stage_path = path / "stages" / s;
            let downsample = (s > 0).then(|| {
                let ds = &stage_path / "downsample";
                (
                    LayerNorm2d(layer_norm(&ds / 0, dims[s - 1])),
                    patchify(&ds / 1, dims[s - 1], dim, 2),
                )
            });
            let blocks = (0..depth)
                .map(|b| {
                    let drop_path = DropPath::new(&drop_path_rate, index as f64 / last);
                    index += 1;
                    Block::new(&(&stage_path / "blocks" / b), dim, drop_path)
                })
                .collect();
            stages.push(Stage { downsample, blocks });
        }
        let head = path / "head";
        ConvNeXt {
            stem_conv,
            stem_norm,
            stages,
            head_norm: LayerNorm2d(layer_norm(&head / "norm", dims[3])),
            drop_rate,
            fc: linear(&head / "fc", dims[3], input.num_classes as i64),
            drop_path_rate,
        }
    }
}

impl ConvNeXt {
    /// The pooled, normalised output of the last stage: what the head's dropout and `fc` read.
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.stem_norm.forward(&xs.apply(&self.stem_conv));
        for stage in &self.stages {
            if let Some((norm, conv)) = &stage.downsample {
                ys = norm.forward(&ys).apply(conv);
            }
            for block in &stage.blocks {
                ys = block.forward_t(&ys, train);
            }
        }
        self.head_norm.forward(&ys.adaptive_avg_pool2d([1, 1])).flatten(1, -1)
    }
}

impl ModuleT for ConvNeXt {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features(xs, train).dropout(self.drop_rate, train).apply(&self.fc)
    }
}

impl Classifier for ConvNeXt {
    fn set_drop_path_rate(&self, rate: f64) {
        self.drop_path_rate.set(rate);
    }

    fn features_t(&self, xs: &Tensor, train: bool) -> Option<Tensor> {
        Some(self.features(xs, train))
    }
}

/// The registry constructor: checks the input size, then builds the network.
pub fn build(path: &nn::Path, input: ModelInput, config: &ModelConfig) -> Result<Model, ModelError> {
    let [_, height, width] = input.image_shape;
    if height.min(width) < MIN_SIZE {
        return Err(ModelError::InputTooSmall {
            model: "convnext",
            min: MIN_SIZE,
            height,
            width,
        });
    }
    Ok(Box::new(ConvNeXt::new(
        path,
        VARIANT.get(config)?,
        input,
        DROP_RATE.get(config)?,
        DROP_PATH_RATE.get(config)?,
    )))
}
