//! CIFAR-10 and CIFAR-100 (<https://www.cs.toronto.edu/~kriz/cifar.html>) in both official
//! formats, read whole into memory.
//!
//! | data set | python version (torchvision's) | binary version |
//! | --- | --- | --- |
//! | `cifar10` | `CIFAR10/cifar-10-batches-py/`: `data_batch_1`…`data_batch_5`, `test_batch`, `batches.meta` | `CIFAR10/cifar-10-batches-bin/`: `data_batch_1.bin`…`data_batch_5.bin`, `test_batch.bin`, `batches.meta.txt` |
//! | `cifar100` | `CIFAR100/cifar-100-python/`: `train`, `test`, `meta` | `CIFAR100/cifar-100-binary/`: `train.bin`, `test.bin`, `fine_label_names.txt` |
//!
//! The paths are under `--dataset-dir`, where upstream puts them; the folder is also found
//! without its `CIFAR10/` (`CIFAR100/`) parent, and when `--dataset-dir` is the folder itself
//! (see [`crate::folder::locate`]). The python version wins when both are present.
//!
//! A python batch is a pickled dict (see `pickle`) whose `data` is an N x 3072 uint8 array and
//! whose `labels` (CIFAR-10) or `fine_labels` (CIFAR-100) is a list of N ints; the class names
//! are the `label_names` (`fine_label_names`) of the meta file. A binary record is the label
//! byte (CIFAR-100: the coarse then the fine label byte) followed by the 3072 pixel bytes; the
//! class names are the lines of the text file. Either way an image is 3 planes (R, G, B) of
//! 32 x 32 bytes, kept as they are.

mod pickle;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::folder::{locate, Splits};
use crate::DataError;
use pickle::Value;

/// The images of one split, held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InMemorySplit {
    /// `labels.len()` images of [`InMemorySplit::IMAGE_LEN`] bytes: 3 planes (R, G, B) of 32 x 32.
    pub images: Vec<u8>,
    /// The label of each image, below `classes.len()` (CIFAR-100: the fine label).
    pub labels: Vec<u32>,
    /// The class names, in label order; the same for both splits.
    pub classes: Vec<String>,
}

impl InMemorySplit {
    /// Channels, height and width of every image.
    pub const IMAGE_SHAPE: [usize; 3] = [3, 32, 32];
    /// The bytes of one image.
    pub const IMAGE_LEN: usize = 3 * 32 * 32;
}

/// The two CIFAR data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar {
    Cifar10,
    Cifar100,
}

/// The two official formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarFormat {
    /// The python version: pickled batches, as torchvision reads them.
    Python = 0,
    /// The binary version: fixed-size records.
    Binary = 1,
}

/// The files of one format of one data set.
struct Files {
    format: CifarFormat,
    /// The folder under `--dataset-dir`.
    layout: &'static str,
    train: &'static [&'static str],
    test: &'static str,
    /// The file holding the class names.
    classes: &'static str,
    /// Python: the key of the labels and that of the class names. Binary: the label bytes of a record.
    labels: Labels,
}

enum Labels {
    Pickle { labels: &'static str, names: &'static str },
    Binary { label_bytes: usize },
}

/// The formats of CIFAR-10, indexed by [`CifarFormat`].
const CIFAR10: [Files; 2] = [
    Files {
        format: CifarFormat::Python,
        layout: "CIFAR10/cifar-10-batches-py",
        train: &[
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
        ],
        test: "test_batch",
        classes: "batches.meta",
        labels: Labels::Pickle {
            labels: "labels",
            names: "label_names",
        },
    },
    Files {
        format: CifarFormat::Binary,
        layout: "CIFAR10/cifar-10-batches-bin",
        train: &[
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ],
        test: "test_batch.bin",
        classes: "batches.meta.txt",
        labels: Labels::Binary { label_bytes: 1 },
    },
];

/// The formats of CIFAR-100, indexed by [`CifarFormat`].
const CIFAR100: [Files; 2] = [
    Files {
        format: CifarFormat::Python,
        layout: "CIFAR100/cifar-100-python",
        train: &["train"],
        test: "test",
        classes: "meta",
        labels: Labels::Pickle {
            labels: "fine_labels",
            names: "fine_label_names",
        },
    },
    Files {
        format: CifarFormat::Binary,
        layout: "CIFAR100/cifar-100-binary",
        train: &["train.bin"],
        test: "test.bin",
        classes: "fine_label_names.txt",
        labels: Labels::Binary { label_bytes: 2 },
    },
];

impl Cifar {
    /// The data set's name on the command line (`--dataset`).
    pub fn name(self) -> &'static str {
        match self {
            Cifar::Cifar10 => "cifar10",
            Cifar::Cifar100 => "cifar100",
        }
    }

    /// The data set of a command-line name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Cifar::Cifar10, Cifar::Cifar100].into_iter().find(|c| c.name() == name)
    }

    /// The folder of `format` under `--dataset-dir`, as upstream puts it (`CIFAR10/cifar-10-batches-py`).
    pub const fn path(self, format: CifarFormat) -> &'static str {
        self.formats()[format as usize].layout
    }

    const fn formats(self) -> &'static [Files; 2] {
        match self {
            Cifar::Cifar10 => &CIFAR10,
            Cifar::Cifar100 => &CIFAR100,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Cifar::Cifar10 => "CIFAR-10",
            Cifar::Cifar100 => "CIFAR-100",
        }
    }

    /// The folder and format of the data set under `dataset_dir`, if any.
    pub fn locate(self, dataset_dir: &Path) -> Option<(CifarFormat, PathBuf)> {
        let layouts = self.formats().each_ref().map(|f| f.layout);
        locate(dataset_dir, &layouts).map(|(index, dir)| (self.formats()[index].format, dir))
    }

    /// Reads both splits of the data set found under `dataset_dir`.
    ///
    /// A missing folder or file is a [`DataError::Missing`] naming it, with its `dir_hint` left
    /// empty for the caller, who knows `--dataset-dir`.
    pub fn read(self, dataset_dir: &Path) -> Result<Splits<InMemorySplit>, DataError> {
        let Some((format, dir)) = self.locate(dataset_dir) else {
            let [python, binary] = self
                .formats()
                .each_ref()
                .map(|f| f.layout.rsplit('/').next().unwrap_or(f.layout));
            let what = format!("{} data directory ({python} or {binary})", self.title());
            return Err(self.missing(what, dataset_dir.join(self.path(CifarFormat::Python))));
        };
        let files = &self.formats()[format as usize];
        let classes = self.read_classes(files, &dir)?;
        let read_split = |names: &[&str]| -> Result<InMemorySplit, DataError> {
            let mut split = InMemorySplit {
                images: Vec::new(),
                labels: Vec::new(),
                classes: classes.clone(),
            };
            for name in names {
                let path = dir.join(name);
                let bytes = self.read_file(&path)?;
                match files.labels {
                    Labels::Pickle { labels, .. } => split.push_pickle(&bytes, labels),
                    Labels::Binary { label_bytes } => split.push_records(&bytes, label_bytes),
                }
                .map_err(|reason| DataError::corrupt(&path, reason))?;
            }
            Ok(split)
        };
        Ok(Splits {
            train: read_split(files.train)?,
            test: read_split(&[files.test])?,
        })
    }

    /// The class names of the meta file.
    fn read_classes(self, files: &Files, dir: &Path) -> Result<Vec<String>, DataError> {
        let path = dir.join(files.classes);
        let bytes = self.read_file(&path)?;
        let names = match files.labels {
            Labels::Pickle { names, .. } => pickled_names(&bytes, names),
            Labels::Binary { .. } => Ok(String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()),
        };
        match names {
            Ok(names) if names.is_empty() => Err(DataError::corrupt(path, "names no class")),
            Ok(names) => Ok(names),
            Err(reason) => Err(DataError::corrupt(path, reason)),
        }
    }

    fn read_file(self, path: &Path) -> Result<Vec<u8>, DataError> {
        std::fs::read(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => self.missing(format!("{} file", self.title()), path.to_owned()),
            _ => DataError::io(path, e),
        })
    }

    fn missing(self, what: String, path: PathBuf) -> DataError {
        DataError::Missing {
            what,
            path,
            dataset: self.name().to_owned(),
            dir_hint: String::new(),
        }
    }
}

/// The list of strings under `key` of a pickled meta dict.
fn pickled_names(bytes: &[u8], key: &str) -> Result<Vec<String>, String> {
    let value = pickle::load(bytes).map_err(|e| format!("not a CIFAR pickle: {e}"))?;
    let Some(Value::List(names)) = value.get(key) else {
        return Err(format!("not a CIFAR meta file: no list under '{key}'"));
    };
    names
        .iter()
        .map(|name| {
            name.text()
                .ok_or_else(|| format!("a class name in '{key}' is {}", name.kind()))
        })
        .collect()
}

impl InMemorySplit {
    /// Appends the images of a pickled batch, whose labels are under `key`.
    fn push_pickle(&mut self, bytes: &[u8], key: &str) -> Result<(), String> {
        let value = pickle::load(bytes).map_err(|e| format!("not a CIFAR pickle: {e}"))?;
        if !matches!(value, Value::Dict(_)) {
            return Err(format!(
                "not a CIFAR batch: the pickle holds {}, not a dict",
                value.kind()
            ));
        }
        let data = match value.get("data") {
            Some(Value::Array(data)) => data,
            Some(other) => return Err(format!("'data' is {}, not a numpy array", other.kind())),
            None => return Err("not a CIFAR batch: no 'data'".to_owned()),
        };
        if data.shape.len() != 2 || data.shape[1] != Self::IMAGE_LEN {
            return Err(format!(
                "'data' has shape {:?}, not (N, {})",
                data.shape,
                Self::IMAGE_LEN
            ));
        }
        let Some(Value::List(labels)) = value.get(key) else {
            return Err(format!("not a CIFAR batch: no list under '{key}'"));
        };
        if labels.len() != data.shape[0] {
            return Err(format!("{} labels for {} images", labels.len(), data.shape[0]));
        }
        for (index, label) in labels.iter().enumerate() {
            match label {
                Value::Int(label) => self.push_label(*label, index)?,
                other => return Err(format!("label {index} in '{key}' is {}", other.kind())),
            }
        }
        self.images.extend_from_slice(data.data);
        Ok(())
    }

    /// Appends the records of a binary file: `label_bytes` label bytes (the fine label last), then the image.
    fn push_records(&mut self, bytes: &[u8], label_bytes: usize) -> Result<(), String> {
        let record = label_bytes + Self::IMAGE_LEN;
        let extra = bytes.len() % record;
        if extra > 0 {
            return Err(format!(
                "truncated: {} bytes are {} records of {record} bytes and {extra} bytes more",
                bytes.len(),
                bytes.len() / record,
            ));
        }
        self.images.reserve(bytes.len() / record * Self::IMAGE_LEN);
        for (index, record) in bytes.chunks_exact(record).enumerate() {
            self.push_label(record[label_bytes - 1].into(), index)?;
            self.images.extend_from_slice(&record[label_bytes..]);
        }
        Ok(())
    }

    /// Appends the label of image `index` of a file, checked against the class list.
    fn push_label(&mut self, label: i64, index: usize) -> Result<(), String> {
        match u32::try_from(label) {
            Ok(label) if (label as usize) < self.classes.len() => {
                self.labels.push(label);
                Ok(())
            }
            _ => Err(format!(
                "label {label} of image {index} is out of range: the class list names {} classes",
                self.classes.len()
            )),
        }
    }
}
