//! Helpers shared by the end-to-end tests (each test file uses its own subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// The directory holding `mnist/`: `$DCL_DATASET_DIR` or the checkout's `data/`.
pub fn dataset_dir() -> PathBuf {
    let dir = std::env::var_os("DCL_DATASET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"));
    assert!(
        dir.join("mnist/train-images-idx3-ubyte").is_file(),
        "MNIST is not in {}: run scripts/setup.sh (or dcl data fetch mnist)",
        dir.display()
    );
    dir
}

/// A process's standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A JSON file.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
