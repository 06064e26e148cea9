//! Property tests of the readers: random and mutated files in every format never panic or
//! hang; they read, or fail with a one-line error.
//!
//! The valid files the mutations start from are generated in their real formats: IDX here,
//! CIFAR (both formats) and ImageNet-100's subset lists by
//! tests/reference/make_layouts.py with the setup venv's Python.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dcl_data::{idx, Cifar, DataError, FileLayout};
use proptest::prelude::*;

/// An error as the user sees it: one line.
fn assert_one_line(error: &DataError) {
    let text = error.to_string();
    assert!(!text.contains('\n'), "a multi-line error: {text}");
    assert!(!text.is_empty());
}

/// Valid layouts (2 classes, 2 images per class and split), generated once for all tests.
fn layouts() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dcl-damaged-files-{}", std::process::id()));
        let venv = std::env::var("VIRTUAL_ENV").expect("VIRTUAL_ENV is not set: run scripts/setup.sh");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/make_layouts.py");
        let output = Command::new(Path::new(&venv).join("bin/python"))
            .arg(script)
            .arg(&dir)
            .args([
                "--classes",
                "2",
                "--per-class",
                "2",
                "--only",
                "cifar10,imagenet100small",
            ])
            .output()
            .expect("the venv's python runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        // Unharmed, they read: the mutations start from valid files.
        Cifar::Cifar10.read(&dir).expect("the generated CIFAR-10 reads");
        FileLayout::from_name("imagenet100small")
            .unwrap()
            .read(&dir)
            .expect("the generated ImageNet-100 subset reads");
        dir
    })
}

/// `bytes` with `edits` applied: (position as a fraction of the length, new byte), and cut
/// to `keep` of its length.
fn mutate(bytes: &[u8], edits: &[(f64, u8)], keep: f64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        for &(at, value) in edits {
            let i = ((at * out.len() as f64) as usize).min(out.len() - 1);
            out[i] = value;
        }
    }
    out.truncate((keep * out.len() as f64).ceil() as usize);
    out
}

/// A copy of the layout folder `name` in a fresh directory, with `file` (relative to it)
/// replaced by `bytes`; reads it with `read`.
fn read_with<T>(name: &str, file: &str, bytes: &[u8], read: impl FnOnce(&Path) -> Result<T, DataError>) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&layouts().join(name), &dir.path().join(name));
    std::fs::write(dir.path().join(name).join(file), bytes).unwrap();
    if let Err(error) = read(dir.path()) {
        assert_one_line(&error);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn edits() -> impl Strategy<Value = Vec<(f64, u8)>> {
    prop::collection::vec((0.0..1.0f64, any::<u8>()), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn idx_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64), rank in 1usize..4) {
        if let Err(error) = idx::parse(&bytes, rank, Path::new("random")) {
            assert_one_line(&error);
        }
    }

    #[test]
    fn idx_mutated_files(edits in edits(), keep in 0.0..=1.0f64, rank in 1usize..4) {
        let valid = idx::encode(&[3, 2, 2], &(0..12).collect::<Vec<u8>>());
        if let Err(error) = idx::parse(&mutate(&valid, &edits, keep), rank, Path::new("mutated")) {
            assert_one_line(&error);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn cifar_mutated_pickled_batches(edits in edits(), keep in 0.0..=1.0f64, meta: bool) {
        let file = if meta { "cifar-10-batches-py/batches.meta" } else { "cifar-10-batches-py/data_batch_1" };
        let valid = std::fs::read(layouts().join("CIFAR10").join(file)).unwrap();
        read_with("CIFAR10", file, &mutate(&valid, &edits, keep), |dir| Cifar::Cifar10.read(dir));
    }

    #[test]
    fn cifar_mutated_binary_batches(edits in edits(), keep in 0.0..=1.0f64) {
        let file = "cifar-10-batches-bin/data_batch_1.bin";
        let valid = std::fs::read(layouts().join("CIFAR10").join(file)).unwrap();
        // Without the pickled version, the binary one is read.
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&layouts().join("CIFAR10/cifar-10-batches-bin"), &dir.path().join("CIFAR10/cifar-10-batches-bin"));
        std::fs::write(dir.path().join("CIFAR10").join(file), mutate(&valid, &edits, keep)).unwrap();
        if let Err(error) = Cifar::Cifar10.read(dir.path()) {
            assert_one_line(&error);
        }
    }

    #[test]
    fn imagenet100_subset_lists_with_random_lines(lines in prop::collection::vec("[ -~]{0,40}", 0..6), edits in edits()) {
        let layout = FileLayout::from_name("imagenet100small").unwrap();
        let valid = std::fs::read(layouts().join("ImageNet100-small/train_100_small.txt")).unwrap();
        let mut text = mutate(&valid, &edits, 1.0);
        for line in &lines {
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        read_with("ImageNet100-small", "train_100_small.txt", &text, |dir| layout.read(dir));
    }
}
