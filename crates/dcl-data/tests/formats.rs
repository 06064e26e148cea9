//! The readers of CIFAR-10/100 (both formats), Tiny-ImageNet, ImageNet and the ImageNet100
//! subsets on small files in each real layout, written by `tests/reference/make_layouts.py`
//! (which needs numpy and PIL: the venv of `scripts/setup.sh`, found through `VIRTUAL_ENV`),
//! and their one-line errors on damaged copies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dcl_data::{Cifar, CifarFormat, FileLayout, FileList, InMemorySplit, Splits};

const CLASSES: usize = 3;
const PER_CLASS: usize = 2;

/// Runs the generator once per test binary; returns its output folder (a `--dataset-dir`).
fn layouts() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let venv = std::env::var("VIRTUAL_ENV").unwrap_or_else(|_| {
            panic!("VIRTUAL_ENV is not set: these tests need the venv of scripts/setup.sh (numpy, PIL)")
        });
        let python = Path::new(&venv).join("bin/python");
        assert!(python.exists(), "{} not found: run scripts/setup.sh", python.display());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/make_layouts.py");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dcl-data-layouts");
        let _ = std::fs::remove_dir_all(&dir);
        let output = Command::new(&python)
            .arg(&script)
            .arg(&dir)
            .args(["--classes", &CLASSES.to_string(), "--per-class", &PER_CLASS.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            output.status.success(),
            "{} {} failed ({}): {}",
            python.display(),
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        dir
    })
}

/// A private copy of the layout folder `rel` in a fresh `--dataset-dir`, to damage.
fn copy_of(rel: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&layouts().join(rel), &dir.path().join(rel));
    dir
}

fn error_of<T: std::fmt::Debug>(result: Result<T, dcl_data::DataError>) -> String {
    let message = result.unwrap_err().to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

/// The generator's labels and CIFAR images of split `split` (0 train, 1 test).
fn expected_cifar(split: usize) -> (Vec<u8>, Vec<u32>) {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for j in 0..CLASSES * PER_CLASS {
        let label = j % CLASSES;
        labels.push(label as u32);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    images.push(((67 * label + 101 * c + x + y + 3 * j + 128 * split) % 256) as u8);
                }
            }
        }
    }
    (images, labels)
}

fn check_cifar(splits: &Splits<InMemorySplit>, classes: &[&str]) {
    for (split, set) in [&splits.train, &splits.test].into_iter().enumerate() {
        let (images, labels) = expected_cifar(split);
        assert_eq!(set.labels, labels, "split {split}");
        assert!(set.images == images, "split {split}: the pixels differ");
        assert_eq!(set.classes, classes);
    }
}

#[test]
fn cifar10_both_formats_give_every_byte_and_label() {
    let classes = ["airplane", "automobile", "bird"];
    let python = Cifar::Cifar10.read(layouts()).unwrap();
    assert_eq!(
        Cifar::Cifar10.locate(layouts()),
        Some((CifarFormat::Python, layouts().join("CIFAR10/cifar-10-batches-py")))
    );
    check_cifar(&python, &classes);
    let binary_dir = layouts().join("CIFAR10/cifar-10-batches-bin");
    assert_eq!(
        Cifar::Cifar10.locate(&binary_dir),
        Some((CifarFormat::Binary, binary_dir.clone()))
    );
    assert_eq!(Cifar::Cifar10.read(&binary_dir).unwrap(), python);
}

#[test]
fn cifar100_both_formats_give_the_fine_labels() {
    let classes = ["apple", "aquarium_fish", "baby"];
    let python = Cifar::Cifar100.read(&layouts().join("CIFAR100")).unwrap();
    check_cifar(&python, &classes);
    let binary = Cifar::Cifar100
        .read(&layouts().join("CIFAR100/cifar-100-binary"))
        .unwrap();
    assert_eq!(binary, python);
}

#[test]
fn cifar_is_found_without_its_upstream_parent() {
    let copy = copy_of("CIFAR10/cifar-10-batches-py");
    std::fs::rename(
        copy.path().join("CIFAR10/cifar-10-batches-py"),
        copy.path().join("cifar-10-batches-py"),
    )
    .unwrap();
    check_cifar(
        &Cifar::Cifar10.read(copy.path()).unwrap(),
        &["airplane", "automobile", "bird"],
    );
}

#[test]
fn missing_cifar_names_the_layout_and_the_fetch_command() {
    let empty = tempfile::tempdir().unwrap();
    let message = error_of(Cifar::Cifar10.read(empty.path()));
    assert_eq!(
        message,
        format!(
            "CIFAR-10 data directory (cifar-10-batches-py or cifar-10-batches-bin) not found at {}; run `dcl data \
             fetch cifar10` first",
            empty.path().join("CIFAR10/cifar-10-batches-py").display()
        )
    );
    let copy = copy_of("CIFAR100/cifar-100-python");
    let meta = copy.path().join("CIFAR100/cifar-100-python/meta");
    std::fs::remove_file(&meta).unwrap();
    let message = error_of(Cifar::Cifar100.read(copy.path()));
    assert!(
        message.starts_with(&format!("CIFAR-100 file not found at {}; run", meta.display())),
        "{message}"
    );
}

#[test]
fn damaged_cifar_files_are_named() {
    let copy = copy_of("CIFAR10/cifar-10-batches-bin");
    let dir = copy.path().join("CIFAR10/cifar-10-batches-bin");
    let batch = dir.join("data_batch_1.bin");
    let mut bytes = std::fs::read(&batch).unwrap();
    bytes.pop();
    std::fs::write(&batch, &bytes).unwrap();
    let message = error_of(Cifar::Cifar10.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: truncated: 6145 bytes are 1 records of 3073 bytes and 3072 bytes more",
            batch.display()
        )
    );
    bytes.truncate(3073);
    bytes[0] = 9;
    std::fs::write(&batch, &bytes).unwrap();
    let message = error_of(Cifar::Cifar10.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: label 9 of image 0 is out of range: the class list names 3 classes",
            batch.display()
        )
    );

    let copy = copy_of("CIFAR10/cifar-10-batches-py");
    let dir = copy.path().join("CIFAR10/cifar-10-batches-py");
    // A meta file of one class, as cPickle writes it: {'label_names': ['airplane']}.
    std::fs::write(
        dir.join("batches.meta"),
        b"\x80\x02}q\x00U\x0blabel_namesq\x01]q\x02U\x08airplaneq\x03as.",
    )
    .unwrap();
    let message = error_of(Cifar::Cifar10.read(copy.path()));
    let batch = dir.join("data_batch_1");
    assert_eq!(
        message,
        format!(
            "{}: label 1 of image 1 is out of range: the class list names 1 classes",
            batch.display()
        )
    );
    let test = dir.join("test_batch");
    let bytes = std::fs::read(&test).unwrap();
    std::fs::write(&test, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::copy(
        layouts().join("CIFAR10/cifar-10-batches-py/batches.meta"),
        dir.join("batches.meta"),
    )
    .unwrap();
    let message = error_of(Cifar::Cifar10.read(copy.path()));
    assert!(
        message.starts_with(&format!("{}: not a CIFAR pickle: truncated", test.display())),
        "{message}"
    );
}

fn wnid(class: usize) -> String {
    format!("n{:08}", 1440764 + 7919 * class)
}

/// The files of `files` relative to `root`, as strings.
fn relative(list: &FileList, root: &Path) -> Vec<String> {
    list.files
        .iter()
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

#[test]
fn tiny_imagenet_labels_follow_wnids_txt() {
    let splits = FileLayout::TinyImageNet.read(layouts()).unwrap();
    let root = layouts().join("TinyImageNet/tiny-imagenet-200");
    let wnids: Vec<String> = (0..CLASSES).rev().map(wnid).collect();
    assert_eq!(splits.train.classes, wnids);
    assert_eq!(splits.test.classes, wnids);
    let expected: Vec<String> = (0..CLASSES * PER_CLASS)
        .map(|j| format!("train/{w}/images/{w}_{}.JPEG", j % PER_CLASS, w = wnids[j / PER_CLASS]))
        .collect();
    assert_eq!(relative(&splits.train, &root), expected);
    assert_eq!(splits.train.labels, [0, 0, 1, 1, 2, 2]);
    let expected: Vec<String> = (0..CLASSES * PER_CLASS)
        .map(|j| format!("val/images/val_{j}.JPEG"))
        .collect();
    assert_eq!(relative(&splits.test, &root), expected);
    assert_eq!(splits.test.labels, [0, 1, 2, 0, 1, 2]);
    for file in splits.train.files.iter().chain(&splits.test.files) {
        assert_eq!(
            std::fs::read(file).unwrap()[..2],
            [0xff, 0xd8],
            "{} is no JPEG",
            file.display()
        );
    }
}

#[test]
fn a_shorter_wnids_txt_makes_a_subset() {
    let copy = copy_of("TinyImageNet/tiny-imagenet-200");
    let wnids = copy.path().join("TinyImageNet/tiny-imagenet-200/wnids.txt");
    std::fs::write(&wnids, format!("{}\n{}\n", wnid(0), wnid(2))).unwrap();
    let splits = FileLayout::TinyImageNet.read(copy.path()).unwrap();
    assert_eq!(splits.train.classes, [wnid(0), wnid(2)]);
    assert_eq!(splits.train.labels, [0, 0, 1, 1]);
    // val_j is of the class on line j % 3 of the original wnids.txt: wnid(2), wnid(1), wnid(0).
    assert_eq!(splits.test.labels, [1, 0, 1, 0]);
}

#[test]
fn damaged_tiny_imagenet_is_reported_in_one_line() {
    let empty = tempfile::tempdir().unwrap();
    let message = error_of(FileLayout::TinyImageNet.read(empty.path()));
    assert_eq!(
        message,
        format!(
            "Tiny-ImageNet data directory not found at {}; run `dcl data fetch tinyimagenet` first",
            empty.path().join("TinyImageNet/tiny-imagenet-200").display()
        )
    );
    let copy = copy_of("TinyImageNet/tiny-imagenet-200");
    let root = copy.path().join("TinyImageNet/tiny-imagenet-200");
    let images = root.join("val/images");
    std::fs::rename(&images, root.join("val/elsewhere")).unwrap();
    let message = error_of(FileLayout::TinyImageNet.read(copy.path()));
    assert!(message.starts_with(&format!(
        "Tiny-ImageNet validation images folder not found at {}",
        images.display()
    )));
    std::fs::rename(root.join("val/elsewhere"), &images).unwrap();
    let annotations = root.join("val/val_annotations.txt");
    let mut text = std::fs::read_to_string(&annotations).unwrap();
    text.push_str("val_9.JPEG\n");
    std::fs::write(&annotations, &text).unwrap();
    let message = error_of(FileLayout::TinyImageNet.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: line 7: expected `<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>`, found `val_9.JPEG`",
            annotations.display()
        )
    );
    std::fs::remove_file(&annotations).unwrap();
    let message = error_of(FileLayout::TinyImageNet.read(copy.path()));
    assert!(message.starts_with(&format!(
        "Tiny-ImageNet validation annotations not found at {}",
        annotations.display()
    )));
    let images = root.join("train").join(wnid(1)).join("images");
    for entry in std::fs::read_dir(&images).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let message = error_of(FileLayout::TinyImageNet.read(copy.path()));
    assert!(
        message.starts_with(&format!("{}: empty class", images.display())),
        "{message}"
    );
    std::fs::remove_dir_all(root.join("train").join(wnid(1))).unwrap();
    let message = error_of(FileLayout::TinyImageNet.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: not found, but {} names class {}",
            images.display(),
            root.join("wnids.txt").display(),
            wnid(1)
        )
    );
}

#[test]
fn imagenet_classes_are_the_sorted_training_folders() {
    for (layout, folder) in [
        (FileLayout::ImageNet, "ImageNet"),
        (FileLayout::ImageNetBlurred, "ImageNet_blurred"),
    ] {
        let root = layouts().join(folder);
        // Found under --dataset-dir and when --dataset-dir is the folder itself.
        for dataset_dir in [layouts(), root.as_path()] {
            let splits = layout.read(dataset_dir).unwrap();
            let wnids: Vec<String> = (0..CLASSES).map(wnid).collect();
            assert_eq!(splits.train.classes, wnids);
            let expected: Vec<String> = (0..CLASSES * PER_CLASS)
                .map(|j| format!("train/{w}/{w}_{}.JPEG", j % PER_CLASS, w = wnids[j / PER_CLASS]))
                .collect();
            assert_eq!(relative(&splits.train, &root), expected);
            assert_eq!(splits.train.labels, [0, 0, 1, 1, 2, 2]);
            let expected: Vec<String> = (0..CLASSES * PER_CLASS)
                .map(|j| format!("val/{}/ILSVRC2012_val_{:08}.JPEG", wnids[j / PER_CLASS], j + 1))
                .collect();
            assert_eq!(relative(&splits.test, &root), expected);
            assert_eq!(splits.test.labels, [0, 0, 1, 1, 2, 2]);
        }
    }
}

#[test]
fn damaged_imagenet_is_reported_in_one_line() {
    let empty = tempfile::tempdir().unwrap();
    let message = error_of(FileLayout::ImageNet.read(empty.path()));
    assert_eq!(
        message,
        format!(
            "ImageNet data directory not found at {}; ImageNet cannot be downloaded by dcl (licence): get it from \
             https://image-net.org/download.php and put it there as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG \
             (validation images sorted into class folders)",
            empty.path().join("ImageNet").display()
        )
    );
    let copy = copy_of("ImageNet");
    let root = copy.path().join("ImageNet");
    let val_class = root.join("val").join(wnid(1));
    std::fs::rename(&val_class, root.join("val/n09999999")).unwrap();
    let message = error_of(FileLayout::ImageNet.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: class folder absent from {}: both splits need the same classes",
            root.join("val/n09999999").display(),
            root.join("train").display()
        )
    );
    std::fs::remove_dir_all(root.join("val/n09999999")).unwrap();
    let message = error_of(FileLayout::ImageNet.read(copy.path()));
    assert!(
        message.starts_with(&format!("{}: not found, but", val_class.display())),
        "{message}"
    );
    let train_class = root.join("train").join(wnid(2));
    for entry in std::fs::read_dir(&train_class).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let message = error_of(FileLayout::ImageNet.read(copy.path()));
    assert!(
        message.starts_with(&format!("{}: empty class", train_class.display())),
        "{message}"
    );
    // The official validation archive is flat: its images need sorting into class folders.
    for class in [0, 2] {
        for entry in std::fs::read_dir(root.join("val").join(wnid(class))).unwrap() {
            let entry = entry.unwrap();
            std::fs::rename(entry.path(), root.join("val").join(entry.file_name())).unwrap();
        }
        std::fs::remove_dir(root.join("val").join(wnid(class))).unwrap();
    }
    let message = error_of(FileLayout::ImageNet.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: holds images but no class folder: sort the validation images into val/<wnid>/ (torchvision's \
             ImageFolder layout)",
            root.join("val").display()
        )
    );
}

#[test]
fn imagenet100_subset_lists_pick_their_classes() {
    for (layout, folder, list) in [
        (FileLayout::ImageNet100, "ImageNet100", "train_100.txt"),
        (FileLayout::ImageNet100Small, "ImageNet100-small", "train_100_small.txt"),
    ] {
        let root = layouts().join(folder);
        // The folders hold one class more than the lists name.
        assert!(root.join("train").join(wnid(CLASSES)).is_dir());
        let splits = layout.read(layouts()).unwrap();
        let wnids: Vec<String> = (0..CLASSES).map(wnid).collect();
        assert_eq!(splits.train.classes, wnids);
        assert_eq!(splits.test.classes, wnids);
        let lines = std::fs::read_to_string(root.join(list)).unwrap();
        let listed: Vec<String> = lines.lines().map(|l| l.split(' ').next().unwrap().to_owned()).collect();
        assert_eq!(relative(&splits.train, &root), listed);
        assert_eq!(splits.train.labels, [0, 0, 1, 1, 2, 2]);
        assert_eq!(splits.test.labels, [0, 0, 1, 1, 2, 2]);
        assert!(splits
            .test
            .files
            .iter()
            .all(|f| f.starts_with(root.join("val")) && f.is_file()));
    }
}

#[test]
fn damaged_subset_lists_are_reported_in_one_line() {
    let empty = tempfile::tempdir().unwrap();
    let message = error_of(FileLayout::ImageNet100.read(empty.path()));
    assert!(
        message.starts_with(&format!(
            "ImageNet100 data directory not found at {}; ImageNet100 cannot be downloaded by dcl",
            empty.path().join("ImageNet100").display()
        )),
        "{message}"
    );
    assert!(message.contains("train_100.txt and val_100.txt"), "{message}");
    let copy = copy_of("ImageNet100-small");
    let root = copy.path().join("ImageNet100-small");
    let train = root.join("train_100_small.txt");
    let original = std::fs::read_to_string(&train).unwrap();
    std::fs::write(&train, format!("{original}train/{w}/{w}_0.JPEG zero\n", w = wnid(0))).unwrap();
    let message = error_of(FileLayout::ImageNet100Small.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: line 7: expected `<relative path> <label>`, found `train/{w}/{w}_0.JPEG zero`",
            train.display(),
            w = wnid(0)
        )
    );
    std::fs::write(&train, original.replace(" 2\n", " 5\n")).unwrap();
    let message = error_of(FileLayout::ImageNet100Small.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: no image has label 2 though labels go up to 5: every label from 0 to the largest needs an image",
            train.display()
        )
    );
    std::fs::write(&train, &original).unwrap();
    let folder = root.join("train").join(wnid(1));
    std::fs::rename(&folder, root.join("elsewhere")).unwrap();
    let message = error_of(FileLayout::ImageNet100Small.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: not found, but line 3 of {} lists an image in it",
            folder.display(),
            train.display()
        )
    );
    std::fs::rename(root.join("elsewhere"), &folder).unwrap();
    let val = root.join("val_100_small.txt");
    let text = std::fs::read_to_string(&val).unwrap();
    std::fs::write(&val, text.replacen(" 1\n", " 7\n", 1)).unwrap();
    let message = error_of(FileLayout::ImageNet100Small.read(copy.path()));
    assert_eq!(
        message,
        format!(
            "{}: line 3: label 7 is out of range: train_100_small.txt has 3 classes",
            val.display()
        )
    );
    std::fs::remove_file(&val).unwrap();
    let message = error_of(FileLayout::ImageNet100Small.read(copy.path()));
    assert!(
        message.starts_with(&format!("ImageNet100-small subset list not found at {}", val.display())),
        "{message}"
    );
}
