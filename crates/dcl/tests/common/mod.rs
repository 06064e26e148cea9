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

/// The environment that makes libtorch take the same code path on every x86-64 CPU with AVX2
/// (oneDNN's and ATen's instruction-set caps, MKL's conditional numerical reproducibility),
/// so that end-to-end results do not depend on whether the CPU has AVX-512; empty on a CPU
/// without AVX2 (ATen would not check the cap). Accuracy assertions keep a margin measured
/// over seeds besides. `scripts/test.sh` sets the same for the in-process tests.
pub fn portable_env() -> Vec<(&'static str, &'static str)> {
    if std::arch::is_x86_feature_detected!("avx2") {
        vec![
            ("ONEDNN_MAX_CPU_ISA", "AVX2"),
            ("ATEN_CPU_CAPABILITY", "avx2"),
            ("MKL_CBWR", "AVX2"),
        ]
    } else {
        Vec::new()
    }
}

/// A command for the `dcl` binary with the test environment: the portable code path, and
/// OpenMP threads that sleep when idle (tests run side by side on few cores: threads that
/// spin while waiting starve each other, measured: 8 s for a test file became 115 s).
pub fn dcl_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dcl"));
    command
        .env_remove("DCL_DATASET_DIR")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .envs(portable_env());
    command
}

/// A process's standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A JSON file.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
