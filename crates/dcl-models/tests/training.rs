//! The image models train (the loss on a fixed tiny batch decreases over a few steps), their
//! drop path acts in training only, and small inputs are refused with the minimum named.

use dcl_models::{Built, Model, ModelConfig, ModelInput};
use serde_json::json;
use tch::nn::{self, OptimizerConfig};
use tch::Tensor;

const CLASSES: usize = 4;
const LR: f64 = 1e-4;

fn build(name: &str, config: serde_json::Value, shape: [usize; 3]) -> (nn::VarStore, Model) {
    let vars = nn::VarStore::new(tch::Device::Cpu);
    let input = ModelInput {
        image_shape: shape,
        num_classes: CLASSES,
    };
    let config = ModelConfig::new(config.as_object().unwrap().clone());
    let Built { model, .. } = dcl_models::build(name, &vars.root(), input, &config).unwrap();
    (vars, model)
}

/// Takes `steps` Adam steps on one batch of 8 images; returns the first and last losses.
fn train(name: &str, config: serde_json::Value, shape: [usize; 3], steps: usize) -> (f64, f64) {
    tch::manual_seed(0);
    let (vars, model) = build(name, config, shape);
    dcl_models::layout::use_channels_last(&vars);
    let [c, h, w] = shape.map(|d| d as i64);
    let images = Tensor::randn([8, c, h, w], tch::kind::FLOAT_CPU);
    let labels = Tensor::arange(8, tch::kind::INT64_CPU).remainder(CLASSES as i64);
    let mut optimizer = nn::Adam::default().build(&vars, LR).unwrap();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let loss = model.forward_t(&images, true).cross_entropy_for_logits(&labels);
        optimizer.backward_step(&loss);
        losses.push(loss.double_value(&[]));
    }
    eprintln!("{name}: losses {losses:.3?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{name}: {losses:?}");
    (losses[0], losses[steps - 1])
}

#[test]
fn resnet18_learns_a_tiny_batch() {
    let (first, last) = train("resnet18", json!({"stem": "cifar"}), [1, 16, 16], 5);
    assert!(last < 0.5 * first, "{first} → {last}");
}

#[test]
fn efficientnetv2_learns_a_tiny_batch() {
    // At 32x32 the last stages see 1x1 maps: BatchNorm over 8 values makes the loss erratic
    // (timm's too).
    let (first, last) = train("efficientnetv2", json!({"variant": "s"}), [3, 64, 64], 5);
    assert!(last < 0.5 * first, "{first} → {last}");
}

#[test]
fn convnext_learns_a_tiny_batch() {
    let (first, last) = train("convnext", json!({"variant": "tiny", "drop_rate": 0.0}), [3, 32, 32], 5);
    assert!(last < 0.5 * first, "{first} → {last}");
}

/// With drop path 0, two training-mode forwards agree; at 0.5 they differ from it and from
/// each other, while evaluation is unchanged.
fn drop_path_acts_in_training_only(name: &str, config: serde_json::Value) {
    tch::manual_seed(0);
    let (_vars, model) = build(name, config, [3, 32, 32]);
    let x = Tensor::randn([4, 3, 32, 32], tch::kind::FLOAT_CPU);
    let forward = |train| tch::no_grad(|| model.forward_t(&x, train));
    let train = forward(true);
    assert!(
        forward(true).equal(&train),
        "{name}: training is deterministic without drop path"
    );
    let eval = forward(false);
    model.set_drop_path_rate(0.5);
    assert!(forward(false).equal(&eval), "{name}: drop path acted in evaluation");
    let dropped = forward(true);
    assert!(!dropped.equal(&train), "{name}: drop path changed nothing");
    assert!(!dropped.equal(&forward(true)), "{name}: drop path is not random");
}

#[test]
fn efficientnetv2_drop_path_acts_in_training_only() {
    drop_path_acts_in_training_only("efficientnetv2", json!({"variant": "s"}));
}

#[test]
fn convnext_drop_path_acts_in_training_only() {
    drop_path_acts_in_training_only("convnext", json!({"variant": "tiny", "drop_rate": 0.0}));
}

#[test]
fn inputs_below_the_minimum_are_refused_with_it() {
    let vars = nn::VarStore::new(tch::Device::Cpu);
    let input = ModelInput {
        image_shape: [3, 32, 31],
        num_classes: CLASSES,
    };
    let message = dcl_models::build("convnext", &vars.root(), input, &ModelConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        message,
        "model convnext needs images of at least 32x32 pixels, not 32x31"
    );
    // ResNets and EfficientNetV2 pad every convolution: any size runs.
    for (name, config) in [("resnet18", json!({})), ("efficientnetv2", json!({"variant": "s"}))] {
        let (_vars, model) = build(name, config, [3, 1, 1]);
        let logits = tch::no_grad(|| model.forward_t(&Tensor::ones([2, 3, 1, 1], tch::kind::FLOAT_CPU), true));
        assert_eq!(logits.size(), vec![2, CLASSES as i64]);
        assert_eq!(logits.isfinite().all().int64_value(&[]), 1);
    }
}

#[test]
fn efficientnetv2_drop_path_starts_at_zero_and_rises_with_training_progress() {
    tch::manual_seed(0);
    let (_vars, model) = build("efficientnetv2", json!({"variant": "s"}), [3, 32, 32]);
    let x = Tensor::randn([4, 3, 32, 32], tch::kind::FLOAT_CPU);
    let forward = || tch::no_grad(|| model.forward_t(&x, true));
    // Upstream's schedule: 0.2 · epoch / epochs; at the first epoch, no drop path at all.
    model.set_progress(0.0);
    assert!(forward().equal(&forward()), "drop path acted at the first epoch");
    model.set_progress(0.9);
    assert!(!forward().equal(&forward()), "drop path did not rise with training");
}
