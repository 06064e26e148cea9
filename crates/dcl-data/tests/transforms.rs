//! Decoding, resizing and the transforms against their references: PIL's decoding and
//! torchvision's resizes and crops (v2, uint8 tensors) of generated images, computed by
//! `reference/transforms.py`. Needs the venv of `scripts/setup.sh` (`VIRTUAL_ENV`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dcl_data::{
    decode, decode_scaled, read_shape, resize, DataError, Draw, Image, ImageSource, Normalization, Pipeline, Placement,
    Resize, Transform, View, Window,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// The largest difference allowed with torchvision's resizes, on 0..=255 (measured: 0).
const TOLERANCE: u8 = 1;

/// Runs the reference script once per test binary; returns its output folder.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let venv = std::env::var("VIRTUAL_ENV")
            .unwrap_or_else(|_| panic!("VIRTUAL_ENV is not set: these tests need the venv with torch and torchvision"));
        let python = Path::new(&venv).join("bin/python");
        assert!(python.exists(), "{} not found: run scripts/setup.sh", python.display());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/transforms.py");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dcl-data-transforms");
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

/// The manifest's cases of operation `op`.
fn cases(op: &str) -> Vec<Value> {
    let path = reference_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let cases: Vec<Value> = all.into_iter().filter(|c| c["op"] == op).collect();
    assert!(!cases.is_empty(), "no {op} case in the manifest");
    cases
}

fn read(name: &Value) -> Vec<u8> {
    let path = reference_dir().join(name.as_str().unwrap());
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shape(value: &Value) -> [usize; 3] {
    let v: Vec<usize> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    [v[0], v[1], v[2]]
}

fn usize_of(value: &Value) -> usize {
    value.as_u64().unwrap() as usize
}

/// The case's raw input image and raw reference output.
fn images(case: &Value) -> (Image, Image) {
    let input = Image {
        pixels: read(&case["input"]),
        shape: shape(&case["input_shape"]),
    };
    let expected = Image {
        pixels: read(&case["output"]),
        shape: shape(&case["output_shape"]),
    };
    (input, expected)
}

/// The largest difference between two images of one shape.
fn max_diff(what: &str, actual: &Image, expected: &Image) -> u8 {
    assert_eq!(actual.shape, expected.shape, "{what}: shapes differ");
    actual
        .pixels
        .iter()
        .zip(&expected.pixels)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0)
}

fn decoded(bytes: &[u8]) -> Image {
    let mut image = Image::default();
    decode(bytes, &mut image).unwrap();
    image
}

#[test]
fn decoding_matches_pil_exactly() {
    for case in cases("decode") {
        let bytes = read(&case["input"]);
        let image = decoded(&bytes);
        let expected = Image {
            pixels: read(&case["output"]),
            shape: shape(&case["output_shape"]),
        };
        assert_eq!(read_shape(&bytes).unwrap(), expected.shape);
        assert_eq!(
            max_diff(case["input"].as_str().unwrap(), &image, &expected),
            0,
            "{}",
            case["input"]
        );
    }
}

#[test]
fn reduced_decoding_matches_pil_draft_mode_exactly() {
    for case in cases("decode_scaled") {
        let bytes = read(&case["input"]);
        let reduction = usize_of(&case["reduction"]);
        let [_, height, width] = read_shape(&bytes).unwrap();
        let min_size = [height / reduction, width / reduction];
        let mut image = Image::default();
        assert_eq!(decode_scaled(&bytes, min_size, &mut image), Ok(reduction));
        let expected = Image {
            pixels: read(&case["output"]),
            shape: shape(&case["output_shape"]),
        };
        let what = format!("{} at 1/{reduction}", case["input"]);
        assert_eq!(max_diff(&what, &image, &expected), 0, "{what}");
    }
    let mut pixel = Image::default();
    let reduction = decode_scaled(&read(&Value::from("pixel.jpg")), [1, 1], &mut pixel);
    assert_eq!(
        (reduction, pixel.shape),
        (Ok(1), [3, 1, 1]),
        "no reduction changes a 1x1 image"
    );
}

#[test]
fn damaged_files_give_one_line_errors() {
    let bytes = read(&Value::from("baseline.jpg"));
    let mut image = Image::default();
    for cut in [bytes.len() - 2, bytes.len() / 2, 700, 40] {
        let error = decode(&bytes[..cut], &mut image).unwrap_err();
        assert_eq!(error.to_string(), "truncated JPEG data", "cut at {cut}");
    }
    // A sample precision of 9 bits in the frame header (marker FF C0: length, precision, ...).
    let mut corrupt = bytes.clone();
    let frame = corrupt.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    corrupt[frame + 4] = 9;
    let message = decode(&corrupt, &mut image).unwrap_err().to_string();
    assert_eq!(message, "corrupt JPEG data: Unsupported JPEG data precision 9");
}

#[test]
fn resizing_matches_torchvision() {
    let (mut scratch, mut out) = (Image::default(), Image::default());
    let (mut worst, mut worst_pil) = (0, 0);
    for case in cases("resize") {
        let (input, expected) = images(&case);
        let size = [usize_of(&case["size"][0]), usize_of(&case["size"][1])];
        resize(&input, &Resize::whole(input.shape, size), &mut scratch, &mut out);
        let what = format!("{} {:?} -> {size:?}", case["input"], input.shape);
        worst = worst.max(max_diff(&what, &out, &expected));
        let pil = Image {
            pixels: read(&case["pil"]),
            shape: expected.shape,
        };
        worst_pil = worst_pil.max(max_diff(&what, &out, &pil));
    }
    eprintln!("resize: max abs difference {worst} with torchvision, {worst_pil} with PIL");
    assert!(worst <= TOLERANCE, "max abs difference {worst} with torchvision");
}

#[test]
fn random_resized_crop_geometry_matches_torchvision() {
    let (mut scratch, mut out) = (Image::default(), Image::default());
    for case in cases("resized_crop") {
        let (input, expected) = images(&case);
        let window: Vec<usize> = case["window"].as_array().unwrap().iter().map(usize_of).collect();
        let draw = Draw {
            input: input.shape,
            window: Window {
                top: window[0] as isize,
                left: window[1] as isize,
                height: window[2],
                width: window[3],
            },
            flip: case["flip"].as_bool().unwrap(),
        };
        let transform = Transform::random_resized_crop(usize_of(&case["size"]));
        transform.apply_drawn(&draw, &input, Placement::whole(1), &mut scratch, &mut out);
        let diff = max_diff(&format!("{draw:?}"), &out, &expected);
        assert!(diff <= TOLERANCE, "{draw:?}: max abs difference {diff}");
    }
}

#[test]
fn evaluation_transform_matches_torchvision() {
    let (mut scratch, mut out) = (Image::default(), Image::default());
    for case in cases("resize_center_crop") {
        let (input, expected) = images(&case);
        let transform = Transform::ResizeCenterCrop {
            resize: usize_of(&case["resize"]),
            size: usize_of(&case["size"]),
        };
        transform.apply(&input, &mut ChaCha8Rng::seed_from_u64(0), &mut scratch, &mut out);
        let diff = max_diff(&format!("{transform:?}"), &out, &expected);
        assert!(
            diff <= TOLERANCE,
            "{transform:?} of {:?}: max abs difference {diff}",
            input.shape
        );
    }
}

/// Decoding at a reduced size for a small output changes the pixels only slightly: the
/// DCT-domain reduction replaces part of the antialiasing filter (mean abs difference 1.2 to
/// 2.4 on these noisy images).
#[test]
fn reduced_decodes_give_nearly_the_same_outputs() {
    let bytes = read(&Value::from("baseline.jpg"));
    let full = decoded(&bytes);
    let (mut scratch, mut reduced, mut expected, mut out) =
        (Image::default(), Image::default(), Image::default(), Image::default());
    let mut reductions = Vec::new();
    for (seed, transform) in [Transform::random_resized_crop(64), Transform::resize_center_crop(64)]
        .into_iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        let mut rng = ChaCha8Rng::seed_from_u64(seed as u64);
        let draw = transform.draw(read_shape(&bytes).unwrap(), &mut rng);
        let reduction = decode_scaled(&bytes, transform.min_decode_size(&draw), &mut reduced).unwrap();
        transform.apply_drawn(&draw, &reduced, Placement::whole(reduction), &mut scratch, &mut out);
        transform.apply_drawn(&draw, &full, Placement::whole(1), &mut scratch, &mut expected);
        assert_eq!(out.shape, expected.shape);
        let total: u64 = out
            .pixels
            .iter()
            .zip(&expected.pixels)
            .map(|(a, b)| a.abs_diff(*b) as u64)
            .sum();
        let mean = total as f64 / out.pixels.len() as f64;
        assert!(
            mean < 3.0,
            "{transform:?} {draw:?} at 1/{reduction}: mean abs difference {mean:.2}"
        );
        reductions.push(reduction);
    }
    assert!(
        reductions.iter().any(|&r| r > 1),
        "no draw was decoded reduced: {reductions:?}"
    );
}

/// Encoded files in memory: a file-backed source, whose images the pipeline decodes itself.
#[derive(Debug)]
struct Files {
    files: Vec<Vec<u8>>,
    labels: Vec<u32>,
}

impl ImageSource for Files {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn labels(&self) -> &[u32] {
        &self.labels
    }

    fn fixed_shape(&self) -> Option<[usize; 3]> {
        None
    }

    fn read(&self, index: usize, out: &mut Image) -> Result<(), DataError> {
        decode(&self.files[index], out).map_err(|e| self.corrupt(index, e))
    }

    fn encoded(&self, index: usize) -> Result<Option<Vec<u8>>, DataError> {
        Ok(Some(self.files[index].clone()))
    }
}

/// The pipeline decodes only the window that each draw reads (and at a reduced size where
/// it can): its outputs are those of decoding the whole file at that size, for the same draws.
#[test]
fn region_decoding_leaves_the_pipelines_outputs_unchanged() {
    let names = [
        "baseline.jpg",
        "progressive.jpg",
        "gray.jpg",
        "full-chroma.jpg",
        "cmyk.jpg",
        "rgb.png",
    ];
    let source = Files {
        files: names.iter().map(|&name| read(&Value::from(name))).collect(),
        labels: vec![0; names.len()],
    };
    let (mut scratch, mut whole, mut resized, mut expected) = Default::default();
    let mut out = Vec::new();
    for transform in [
        Transform::random_resized_crop(224),
        Transform::random_resized_crop(64),
        Transform::random_resized_crop(16),
        Transform::resize_center_crop(64),
        Transform::CropFlip { padding: 4 },
        Transform::Pad { size: 40 },
        Transform::Identity,
    ] {
        // Bytes as they are: mean 0, std 1/255.
        let pipeline = Pipeline {
            transform,
            normalization: Normalization::uniform(0.0, 1.0 / 255.0),
        };
        let tables = pipeline.normalization.lookup_tables();
        for (index, bytes) in source.files.iter().enumerate() {
            for seed in 0..8 {
                out.clear();
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                pipeline
                    .extend(
                        &source,
                        index,
                        &View::Identity,
                        &mut rng,
                        &mut scratch,
                        &tables,
                        &mut out,
                        None,
                    )
                    .unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let draw = transform.draw(read_shape(bytes).unwrap(), &mut rng);
                let reduction = decode_scaled(bytes, transform.min_decode_size(&draw), &mut whole).unwrap();
                transform.apply_drawn(&draw, &whole, Placement::whole(reduction), &mut resized, &mut expected);
                let what = format!("{} {transform:?} {draw:?}", names[index]);
                assert_eq!(scratch.output_shape(), expected.shape, "{what}");
                let same = out.iter().zip(&expected.pixels).all(|(&v, &p)| v.round() == p as f32);
                assert!(same && out.len() == expected.pixels.len(), "{what}: outputs differ");
            }
        }
    }
}
