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

/// A quiet `dcl train` of Split-MNIST (5 tasks of 2 classes) on the first images of the test
/// data set, 2 threads, into a results directory: each test names what differs.
pub struct SplitMnist<'a> {
    pub model: &'a str,
    pub agent: &'a str,
    pub agent_config: &'a str,
    /// `class` or `task`.
    pub scenario: &'a str,
    pub epochs: &'a str,
    pub seed: &'a str,
    pub train_samples: &'a str,
    pub test_samples: &'a str,
}

impl Default for SplitMnist<'_> {
    fn default() -> Self {
        SplitMnist {
            model: "mlp",
            agent: "base",
            agent_config: "{}",
            scenario: "class",
            epochs: "2",
            seed: "1",
            train_samples: "3000",
            test_samples: "1000",
        }
    }
}

impl SplitMnist<'_> {
    /// The command, writing into `results`.
    pub fn command(&self, results: &Path) -> std::process::Command {
        let mut command = dcl_command();
        command
            .args(["train", "--quiet", "--threads", "2", "--model", self.model])
            .args(["--epochs", self.epochs, "--seed", self.seed])
            .args([
                "--train-samples",
                self.train_samples,
                "--test-samples",
                self.test_samples,
            ])
            .args(["--agent", self.agent, "--agent-config", self.agent_config])
            .arg("--tasksets-config")
            .arg(format!(
                "{{'scenario': '{}', 'initial_increment': 2, 'increment': 2}}",
                self.scenario
            ))
            .arg("--dataset-dir")
            .arg(dataset_dir())
            .arg("--results-dir")
            .arg(results);
        command
    }
}
