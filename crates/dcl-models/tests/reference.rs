//! Equality with the reference implementations (torchvision, timm): `reference/models.py`
//! saves each reference model's state dict, an input and the reference's outputs; the dcl
//! model loads the state dict through the `weights` model-config key and must give the same
//! eval-mode output, train-mode output and BatchNorm statistics after that train-mode forward
//! (max abs difference at most 1e-4 of the reference's max abs value), in the default and
//! the channels-last layout. Needs the venv of `scripts/setup.sh` (`VIRTUAL_ENV`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dcl_models::{ModelConfig, ModelInput};
use serde_json::{Map, Value};
use tch::nn;
use tch::Tensor;

/// Largest difference allowed, relative to the reference's largest magnitude.
const TOLERANCE: f64 = 1e-4;

/// Runs the reference script once per test binary; returns its output folder.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let venv = std::env::var("VIRTUAL_ENV").unwrap_or_else(|_| {
            panic!("VIRTUAL_ENV is not set: these tests need the venv with torch, torchvision, timm and safetensors")
        });
        let python = Path::new(&venv).join("bin/python");
        assert!(python.exists(), "{} not found: run scripts/setup.sh", python.display());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/models.py");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dcl-models-reference");
        let status = Command::new(&python)
            .arg(&script)
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            status.success(),
            "{} {} failed: {status}",
            python.display(),
            script.display()
        );
        dir
    })
}

fn read_json(name: &str) -> Value {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn config_of(spec: &Value) -> Map<String, Value> {
    spec["config"].as_object().cloned().unwrap_or_default()
}

fn input_of(spec: &Value) -> ModelInput {
    let shape: Vec<usize> = spec["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    ModelInput {
        image_shape: [shape[0], shape[1], shape[2]],
        num_classes: spec["classes"].as_u64().unwrap() as usize,
    }
}

/// max |actual - expected| / max |expected|, asserted within [`TOLERANCE`].
fn assert_close(what: &str, actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.size(), expected.size(), "{what}: shapes differ");
    let scale = expected.abs().max().double_value(&[]).max(f64::MIN_POSITIVE);
    let relative = (actual - expected).abs().max().double_value(&[]) / scale;
    assert!(
        relative <= TOLERANCE,
        "{what}: max diff {relative:.3e} of the output scale {scale:.3e}"
    );
    relative
}

/// Checks one case of `cases.json`; prints the worst relative differences.
fn check(case: &str) {
    let dir = reference_dir();
    let spec = &read_json("cases.json")[case];
    let mut config = config_of(spec);
    let weights = dir.join(format!("{case}.weights.safetensors"));
    config.insert("weights".into(), Value::String(weights.to_string_lossy().into_owned()));
    let io: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join(format!("{case}.io.safetensors")))
        .unwrap()
        .into_iter()
        .collect();

    let vars = nn::VarStore::new(tch::Device::Cpu);
    let model_name = spec["model"].as_str().unwrap();
    let built = dcl_models::build(model_name, &vars.root(), input_of(spec), &ModelConfig::new(config)).unwrap();
    let model = built.model;
    let x = &io["input"];
    let eval = || tch::no_grad(|| model.forward_t(x, false));

    let eval_diff = assert_close(&format!("{case} eval"), &eval(), &io["eval"]);
    let train_diff = assert_close(
        &format!("{case} train"),
        &tch::no_grad(|| model.forward_t(x, true)),
        &io["train"],
    );
    let variables = vars.variables();
    let mut stats_diff: f64 = 0.0;
    for (name, expected) in io.iter().filter_map(|(k, v)| Some((k.strip_prefix("stats.")?, v))) {
        let actual = variables
            .get(name)
            .unwrap_or_else(|| panic!("{case}: no variable {name}"));
        stats_diff = stats_diff.max(assert_close(&format!("{case} {name}"), actual, expected));
    }
    let before = eval();
    dcl_models::layout::use_channels_last(&vars);
    let layout_diff = assert_close(&format!("{case} channels-last eval"), &eval(), &before);
    eprintln!(
        "{case}: max diff / output scale: eval {eval_diff:.2e}, train {train_diff:.2e}, \
         BatchNorm statistics {stats_diff:.2e}, channels-last vs default {layout_diff:.2e}"
    );
}

#[test]
fn resnet18_matches_torchvision() {
    check("resnet18");
}

#[test]
fn resnet50_matches_torchvision() {
    check("resnet50");
}

#[test]
fn resnet18_cifar_stem_on_one_channel_matches_torchvision() {
    check("resnet18_cifar_1ch");
}

#[test]
fn efficientnetv2_s_matches_timm() {
    check("efficientnetv2_s");
}

#[test]
fn convnext_tiny_matches_timm() {
    check("convnext_tiny");
}

#[test]
fn parameter_counts_match_the_references() {
    for spec in read_json("counts.json").as_array().unwrap() {
        let model = spec["model"].as_str().unwrap();
        let config = ModelConfig::new(config_of(spec));
        let count = dcl_models::parameter_count(model, input_of(spec), &config).unwrap();
        assert_eq!(Some(count), spec["count"].as_i64(), "{spec}");
    }
}
