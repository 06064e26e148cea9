//! torchvision's ResNets (`resnet18` … `resnet152`, v1.5: the stride of a bottleneck sits on
//! its 3x3 convolution), with torchvision's names and initialisation (`zero_init_residual`
//! false).
//!
//! Model-config `{'stem': 'cifar'}` replaces the ImageNet stem (7x7 stride-2 convolution and
//! 3x3 stride-2 max-pool, a 4x reduction) by a 3x3 stride-1 convolution without max-pool, as
//! CIFAR ResNets do: for inputs of 32x32 or so, the ImageNet stem leaves 1x1 feature maps in
//! the last stage. Any input size of at least 1x1 runs.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::blocks::{Conv, ConvBn};
use crate::config::{Choice, ConfigKey};
use crate::{init, Classifier, Model, ModelConfig, ModelError, ModelInput};

/// The stem: `imagenet` (torchvision's) or `cifar` (3x3 stride 1, no max-pool).
pub const STEM: Choice = Choice {
    name: "stem",
    values: &["imagenet", "cifar"],
    default: "imagenet",
};

/// The model-config keys of the ResNets.
pub const KEYS: &[&dyn ConfigKey] = &[&STEM];

/// A ResNet depth: its residual block and the number of blocks of each of the four stages.
pub struct Depth {
    bottleneck: bool,
    blocks: [usize; 4],
}

pub const RESNET18: Depth = Depth {
    bottleneck: false,
    blocks: [2, 2, 2, 2],
};
pub const RESNET34: Depth = Depth {
    bottleneck: false,
    blocks: [3, 4, 6, 3],
};
pub const RESNET50: Depth = Depth {
    bottleneck: true,
    blocks: [3, 4, 6, 3],
};
pub const RESNET101: Depth = Depth {
    bottleneck: true,
    blocks: [3, 4, 23, 3],
};
pub const RESNET152: Depth = Depth {
    bottleneck: true,
    blocks: [3, 8, 36, 3],
};

/// A residual block: `BasicBlock` (two 3x3 convolutions) or `Bottleneck` (1x1, 3x3, 1x1 to
/// four times the width); ReLU after each convolution but the last, then after the sum.
#[derive(Debug)]
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn new(path: &nn::Path, c_in: i64, width: i64, stride: i64, bottleneck: bool) -> (Self, i64) {
        let shapes = if bottleneck {
            vec![
                Conv::new(c_in, width, 1, 1),
                Conv::new(width, width, 3, stride),
                Conv::new(width, 4 * width, 1, 1),
            ]
        } else {
            vec![Conv::new(c_in, width, 3, stride), Conv::new(width, width, 3, 1)]
        };
        let c_out = shapes[shapes.len() - 1].c_out;
        let convs = shapes
            .into_iter()
            .enumerate()
            .map(|(i, shape)| ConvBn::new(path / format!("conv{}", i + 1), path / format!("bn{}", i + 1), shape))
            .collect();
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let path = path / "downsample";
            ConvBn::new(&path / 0, &path / 1, Conv::new(c_in, c_out, 1, stride))
        });
        (Block { convs, downsample }, c_out)
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        // In place where torchvision is (`ReLU(inplace=True)`, `out += identity`): the
        // BatchNorm outputs they overwrite are not needed for the backward pass.
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, conv) in self.convs.iter().enumerate() {
            ys = conv.forward_t(&ys, train);
            if i < last {
                ys = ys.relu_();
            }
        }
        let shortcut = match &self.downsample {
            Some(downsample) => downsample.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        ys += shortcut;
        ys.relu_()
    }
}

/// A ResNet.
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBn,
    max_pool: bool,
    blocks: Vec<Block>,
    fc: nn::Linear,
}

impl ResNet {
    /// Creates the network's variables under `path`: `channels` input channels, torchvision's
    /// stem unless `cifar_stem`.
    pub fn new(path: &nn::Path, depth: &Depth, channels: i64, num_classes: i64, cifar_stem: bool) -> Self {
        let stem_shape = if cifar_stem {
            Conv::new(channels, 64, 3, 1)
        } else {
            Conv::new(channels, 64, 7, 2)
        };
        let stem = ConvBn::new(path / "conv1", path / "bn1", stem_shape);
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, &count) in depth.blocks.iter().enumerate() {
            let layer = path / format!("layer{}", stage + 1);
            let width = 64 << stage;
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let (block, c_out) = Block::new(&(&layer / i), c_in, width, stride, depth.bottleneck);
                blocks.push(block);
                c_in = c_out;
            }
        }
        ResNet {
            stem,
            max_pool: !cifar_stem,
            blocks,
            fc: init::linear(path / "fc", c_in, num_classes),
        }
    }
}

impl ResNet {
    /// The globally pooled output of the last stage: what `fc` reads.
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.stem.forward_t(xs, train).relu_();
        if self.max_pool {
            ys = ys.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features(xs, train).apply(&self.fc)
    }
}

impl Classifier for ResNet {
    fn features_t(&self, xs: &Tensor, train: bool) -> Option<Tensor> {
        Some(self.features(xs, train))
    }
}

/// The registry constructor of the ResNet of `depth`.
pub fn build(path: &nn::Path, input: ModelInput, config: &ModelConfig, depth: &Depth) -> Result<Model, ModelError> {
    let cifar_stem = STEM.get(config)? == "cifar";
    let [channels, _, _] = input.image_shape;
    Ok(Box::new(ResNet::new(
        path,
        depth,
        channels as i64,
        input.num_classes as i64,
        cifar_stem,
    )))
}
