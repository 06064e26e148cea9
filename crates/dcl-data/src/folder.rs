//! File-backed image data sets, listed where upstream's users already have them.
//!
//! Upstream (continuum and torchvision) reads under `--dataset-dir`:
//!
//! | data set | layout |
//! | --- | --- |
//! | `tinyimagenet` | `TinyImageNet/tiny-imagenet-200/`: `wnids.txt` (the classes, label = line), `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` labelled by `val/val_annotations.txt` (`file \t wnid \t bbox…`) |
//! | `imagenet` | `ImageNet/{train,val}/<wnid>/*.JPEG`: classes = the sorted folder names of `train/` (torchvision's `ImageFolder`) |
//! | `imagenet_blurred` | `ImageNet_blurred/`, the same layout |
//! | `imagenet100` | `ImageNet100/`: continuum's subset lists `train_100.txt` and `val_100.txt` |
//! | `imagenet100small` | `ImageNet100-small/`: upstream's lists `train_100_small.txt` and `val_100_small.txt` |
//!
//! A subset list holds lines `<relative path> <label>`, e.g. `train/n01440764/n01440764_10026.JPEG 0`:
//! continuum's `ImageNet100` joins the path to the folder that holds the list (upstream passes
//! `<dataset-dir>/ImageNet100` as both), so the images live in that folder's `train/` and `val/`,
//! and it takes the labels as written, 0 to 99 in the order of the sorted wnids. Here the labels
//! must run from 0 to the largest without a gap, and class `l` is named after the folder of the
//! first training image of label `l` (its wnid).
//!
//! The class list always comes from the data on disk (class folders, `wnids.txt`, subset lists),
//! so a subset or a small copy of a layout works. Where a folder is found follows [`locate`].
//! Nothing is decoded here: each split is a [`FileList`], listed with one `read_dir` per class
//! folder and sorted for determinism. Deviations from upstream: class folders are not searched
//! recursively; Tiny-ImageNet's training images are the files of `images/`, not the lines of
//! `<wnid>_boxes.txt` (the same files, sorted by name).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::DataError;

/// The training and test splits of a data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits<T> {
    pub train: T,
    /// The test split (upstream's `train=False`: CIFAR's test batch, the `val` folders or lists).
    pub test: T,
}

/// The image files of one split and their labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileList {
    /// One path per image.
    pub files: Vec<PathBuf>,
    /// The label of each file, below `classes.len()`.
    pub labels: Vec<u32>,
    /// The class names (wnids), in label order; the same for both splits.
    pub classes: Vec<String>,
}

/// The file extensions of images, as torchvision's `ImageFolder` (compared without case).
const IMAGE_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// A file-backed data set layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileLayout {
    TinyImageNet,
    ImageNet,
    ImageNetBlurred,
    ImageNet100,
    ImageNet100Small,
}

impl FileLayout {
    /// Every layout.
    pub const ALL: [FileLayout; 5] = [
        FileLayout::TinyImageNet,
        FileLayout::ImageNet,
        FileLayout::ImageNetBlurred,
        FileLayout::ImageNet100,
        FileLayout::ImageNet100Small,
    ];

    /// The data set's name on the command line (`--dataset`), as upstream's.
    pub fn name(self) -> &'static str {
        match self {
            FileLayout::TinyImageNet => "tinyimagenet",
            FileLayout::ImageNet => "imagenet",
            FileLayout::ImageNetBlurred => "imagenet_blurred",
            FileLayout::ImageNet100 => "imagenet100",
            FileLayout::ImageNet100Small => "imagenet100small",
        }
    }

    /// The layout of a command-line name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|layout| layout.name() == name)
    }

    /// The layout's folder under `--dataset-dir`, as upstream puts it.
    pub const fn path(self) -> &'static str {
        match self {
            FileLayout::TinyImageNet => "TinyImageNet/tiny-imagenet-200",
            FileLayout::ImageNet => "ImageNet",
            FileLayout::ImageNetBlurred => "ImageNet_blurred",
            FileLayout::ImageNet100 => "ImageNet100",
            FileLayout::ImageNet100Small => "ImageNet100-small",
        }
    }

    /// Whether `dcl data fetch` can download the data set (the ImageNet family's licence forbids it).
    pub fn fetchable(self) -> bool {
        self == FileLayout::TinyImageNet
    }

    /// The human name of the data set, for messages.
    fn title(self) -> &'static str {
        match self {
            FileLayout::TinyImageNet => "Tiny-ImageNet",
            FileLayout::ImageNet => "ImageNet",
            FileLayout::ImageNetBlurred => "ImageNet (face-blurred)",
            FileLayout::ImageNet100 => "ImageNet100",
            FileLayout::ImageNet100Small => "ImageNet100-small",
        }
    }

    /// Lists both splits of the data set found under `dataset_dir` (see [`locate`]).
    ///
    /// A missing folder or list is a [`DataError::Missing`] (its `dir_hint` left empty for the
    /// caller, who knows `--dataset-dir`) for Tiny-ImageNet, and a [`DataError::ManualDownload`]
    /// saying where to get the data and how to lay it out for the ImageNet family.
    pub fn read(self, dataset_dir: &Path) -> Result<Splits<FileList>, DataError> {
        let Some((_, root)) = locate(dataset_dir, &[self.path()]) else {
            return Err(self.missing("data directory", dataset_dir.join(self.path())));
        };
        match self {
            FileLayout::TinyImageNet => self.read_tiny_imagenet(&root),
            FileLayout::ImageNet | FileLayout::ImageNetBlurred => self.read_class_folders(&root),
            FileLayout::ImageNet100 => self.read_subset_lists(&root, "train_100.txt", "val_100.txt"),
            FileLayout::ImageNet100Small => self.read_subset_lists(&root, "train_100_small.txt", "val_100_small.txt"),
        }
    }

    /// The error for a missing part of the layout: the fetch command, or where to get the data.
    pub fn missing(self, what: &str, path: PathBuf) -> DataError {
        let what = format!("{} {what}", self.title());
        let subset = |lists: &str| {
            format!(
                "{} cannot be downloaded by dcl (ImageNet's licence): put the ImageNet images there as \
                 train/<wnid>/*.JPEG and val/<wnid>/*.JPEG with {lists}",
                self.title()
            )
        };
        let instructions = match self {
            FileLayout::TinyImageNet => {
                return DataError::Missing {
                    what,
                    path,
                    dataset: self.name().to_owned(),
                    dir_hint: String::new(),
                }
            }
            FileLayout::ImageNet | FileLayout::ImageNetBlurred => format!(
                "{} cannot be downloaded by dcl (licence): get it from https://image-net.org/download.php and put \
                 it there as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (validation images sorted into class folders)",
                self.title()
            ),
            FileLayout::ImageNet100 => subset(
                "continuum's subset lists train_100.txt and val_100.txt \
                 (https://github.com/Continvvm/continuum/releases/download/v0.1/)",
            ),
            FileLayout::ImageNet100Small => subset(
                "the subset lists train_100_small.txt and val_100_small.txt (lines `train/<wnid>/<file> <label>`)",
            ),
        };
        DataError::ManualDownload {
            what,
            path,
            instructions,
        }
    }

    /// `wnids.txt`, `train/<wnid>/images/`, `val/images/` + `val/val_annotations.txt`.
    fn read_tiny_imagenet(self, root: &Path) -> Result<Splits<FileList>, DataError> {
        let wnids_path = root.join("wnids.txt");
        let classes = self.read_text(&wnids_path, "class list")?;
        let classes: Vec<String> = classes
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let mut label_of = HashMap::new();
        for (label, wnid) in classes.iter().enumerate() {
            if label_of.insert(wnid.as_str(), label as u32).is_some() {
                return Err(DataError::corrupt(&wnids_path, format!("class {wnid} is listed twice")));
            }
        }
        if classes.is_empty() {
            return Err(DataError::corrupt(&wnids_path, "lists no class"));
        }
        let train_dir = self.existing_dir(root.join("train"), "training folder")?;
        let mut train = FileList::new(&classes);
        for (label, wnid) in classes.iter().enumerate() {
            let folder = train_dir.join(wnid).join("images");
            let files = list_images(&folder).map_err(|e| match e.kind() {
                ErrorKind::NotFound => DataError::corrupt(
                    &folder,
                    format!("not found, but {} names class {wnid}", wnids_path.display()),
                ),
                _ => DataError::io(&folder, e),
            })?;
            train.push_class(&folder, files, label as u32)?;
        }
        let annotations_path = root.join("val").join("val_annotations.txt");
        let annotations = self.read_text(&annotations_path, "validation annotations")?;
        let images = self.existing_dir(root.join("val").join("images"), "validation images folder")?;
        let mut test = FileList::new(&classes);
        for (n, line) in annotations.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let mut fields = line.split_whitespace();
            let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
                return Err(line_error(
                    &annotations_path,
                    n,
                    "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>",
                    line,
                ));
            };
            // As continuum: the images of classes that wnids.txt does not list are left out.
            if let Some(&label) = label_of.get(wnid) {
                test.files.push(images.join(file));
                test.labels.push(label);
            }
        }
        Ok(Splits { train, test })
    }

    /// `train/<class>/*` and `val/<class>/*`, classes sorted by name, the same in both splits.
    fn read_class_folders(self, root: &Path) -> Result<Splits<FileList>, DataError> {
        let train_dir = self.existing_dir(root.join("train"), "training folder")?;
        let val_dir = self.existing_dir(root.join("val"), "validation folder")?;
        let classes = class_folders(&train_dir)?;
        if classes.is_empty() {
            return Err(DataError::corrupt(
                &train_dir,
                "holds no class folder (train/<wnid>/*.JPEG)",
            ));
        }
        let val_classes = class_folders(&val_dir)?;
        if val_classes.is_empty()
            && !list_images(&val_dir)
                .map_err(|e| DataError::io(&val_dir, e))?
                .is_empty()
        {
            return Err(DataError::corrupt(
                &val_dir,
                "holds images but no class folder: sort the validation images into val/<wnid>/ (torchvision's \
                 ImageFolder layout)",
            ));
        }
        if let Some(extra) = val_classes.iter().find(|c| classes.binary_search(c).is_err()) {
            return Err(DataError::corrupt(
                val_dir.join(extra),
                format!(
                    "class folder absent from {}: both splits need the same classes",
                    train_dir.display()
                ),
            ));
        }
        let read_split = |dir: &Path| -> Result<FileList, DataError> {
            let mut list = FileList::new(&classes);
            for (label, class) in classes.iter().enumerate() {
                let folder = dir.join(class);
                let files = list_images(&folder).map_err(|e| match e.kind() {
                    ErrorKind::NotFound => DataError::corrupt(
                        &folder,
                        format!(
                            "not found, but {} has class {class}: both splits need the same classes",
                            train_dir.display()
                        ),
                    ),
                    _ => DataError::io(&folder, e),
                })?;
                list.push_class(&folder, files, label as u32)?;
            }
            Ok(list)
        };
        Ok(Splits {
            train: read_split(&train_dir)?,
            test: read_split(&val_dir)?,
        })
    }

    /// Two subset lists of `<relative path> <label>` lines, paths relative to `root`.
    fn read_subset_lists(self, root: &Path, train_list: &str, val_list: &str) -> Result<Splits<FileList>, DataError> {
        let train_path = root.join(train_list);
        let (files, labels) = self.read_list(root, &train_path)?;
        // The class name of each label: the folder of its first image.
        let mut names = BTreeMap::new();
        for (file, &label) in files.iter().zip(&labels) {
            names.entry(label).or_insert_with(|| {
                let folder = file.parent().and_then(Path::file_name);
                folder.map_or_else(|| label.to_string(), |f| f.to_string_lossy().into_owned())
            });
        }
        if let Some(gap) = names
            .keys()
            .enumerate()
            .find(|&(i, &label)| i as u32 != label)
            .map(|(i, _)| i)
        {
            let largest = names.keys().next_back().copied().unwrap_or_default();
            return Err(DataError::corrupt(
                &train_path,
                format!("no image has label {gap} though labels go up to {largest}: every label from 0 to the largest needs an image"),
            ));
        }
        if names.is_empty() {
            return Err(DataError::corrupt(&train_path, "lists no image"));
        }
        let classes: Vec<String> = names.into_values().collect();
        let val_path = root.join(val_list);
        let (val_files, val_labels) = self.read_list(root, &val_path)?;
        if let Some(position) = val_labels.iter().position(|&l| l as usize >= classes.len()) {
            return Err(DataError::corrupt(
                &val_path,
                format!(
                    "line {}: label {} is out of range: {train_list} has {} classes",
                    position + 1,
                    val_labels[position],
                    classes.len()
                ),
            ));
        }
        Ok(Splits {
            train: FileList {
                files,
                labels,
                classes: classes.clone(),
            },
            test: FileList {
                files: val_files,
                labels: val_labels,
                classes,
            },
        })
    }

    /// The files and labels of a subset list; blank lines are skipped. The folder of every
    /// file must exist (one `stat` per folder), the files themselves are not looked at.
    fn read_list(self, root: &Path, path: &Path) -> Result<(Vec<PathBuf>, Vec<u32>), DataError> {
        let text = self.read_text(path, "subset list")?;
        let mut files: Vec<PathBuf> = Vec::new();
        let mut labels = Vec::new();
        let mut folders = HashSet::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let mut fields = line.split_whitespace();
            let (Some(file), Some(Ok(label))) = (fields.next(), fields.next().map(str::parse::<u32>)) else {
                return Err(line_error(path, n, "<relative path> <label>", line));
            };
            let file = root.join(file);
            let folder = file.parent().unwrap_or(root);
            if !folders.contains(folder) {
                if !folder.is_dir() {
                    return Err(DataError::corrupt(
                        folder,
                        format!(
                            "not found, but line {} of {} lists an image in it",
                            n + 1,
                            path.display()
                        ),
                    ));
                }
                folders.insert(folder.to_owned());
            }
            files.push(file);
            labels.push(label);
        }
        Ok((files, labels))
    }

    /// A text file of the layout, reported missing with the layout's remedy.
    fn read_text(self, path: &Path, what: &str) -> Result<String, DataError> {
        std::fs::read_to_string(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => self.missing(what, path.to_owned()),
            _ => DataError::io(path, e),
        })
    }

    /// `dir`, reported missing with the layout's remedy when it is not a folder.
    fn existing_dir(self, dir: PathBuf, what: &str) -> Result<PathBuf, DataError> {
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(self.missing(what, dir))
        }
    }
}

impl FileList {
    fn new(classes: &[String]) -> Self {
        FileList {
            files: Vec::new(),
            labels: Vec::new(),
            classes: classes.to_vec(),
        }
    }

    /// Adds the images of one class folder; an empty folder is an error.
    fn push_class(&mut self, folder: &Path, files: Vec<PathBuf>, label: u32) -> Result<(), DataError> {
        if files.is_empty() {
            return Err(DataError::corrupt(
                folder,
                format!("empty class: no image file ({})", IMAGE_EXTENSIONS.join(", ")),
            ));
        }
        self.labels.extend(std::iter::repeat_n(label, files.len()));
        self.files.extend(files);
        Ok(())
    }
}

/// A malformed line `n` (from 0) of a text file.
fn line_error(path: &Path, n: usize, expected: &str, line: &str) -> DataError {
    let shown: String = line.chars().take(80).collect();
    DataError::corrupt(path, format!("line {}: expected `{expected}`, found `{shown}`", n + 1))
}

/// The image files directly in `folder`, sorted by name (one `read_dir`, no `stat` per file).
fn list_images(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name();
        let is_image = Path::new(&name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|i| i.eq_ignore_ascii_case(e)));
        if is_image && !entry.file_type()?.is_dir() {
            names.push(name);
        }
    }
    // Names compare faster than paths (compared component by component).
    names.sort_unstable();
    Ok(names.into_iter().map(|name| folder.join(name)).collect())
}

/// The sorted names of the folders in `dir` (symbolic links to folders included).
fn class_folders(dir: &Path) -> Result<Vec<String>, DataError> {
    let io = |e| DataError::io(dir, e);
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let file_type = entry.file_type().map_err(io)?;
        if file_type.is_dir() || (file_type.is_symlink() && entry.path().is_dir()) {
            classes.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    classes.sort_unstable();
    Ok(classes)
}

/// Finds a layout's folder under `dataset_dir`, trying each of `layouts` (paths such as
/// `CIFAR10/cifar-10-batches-py`) at each depth in turn: `dataset_dir/<path>` (upstream's
/// place), then the path without its leading folders (`dataset_dir/cifar-10-batches-py`, as
/// torchvision's `root`), and last `dataset_dir` itself when its name is the path's last
/// folder (`--dataset-dir` pointed at the folder directly). Returns the index of the layout
/// found and its folder.
pub fn locate(dataset_dir: &Path, layouts: &[&str]) -> Option<(usize, PathBuf)> {
    let depth = layouts.iter().map(|l| l.split('/').count()).max().unwrap_or(0);
    for skip in 0..depth {
        for (index, layout) in layouts.iter().enumerate() {
            let parts: Vec<&str> = layout.split('/').collect();
            if let Some(rest) = parts.get(skip..).filter(|rest| !rest.is_empty()) {
                let dir = dataset_dir.join(rest.join("/"));
                if dir.is_dir() {
                    return Some((index, dir));
                }
            }
        }
    }
    let name = dataset_dir.file_name()?.to_str()?;
    let index = layouts.iter().position(|l| l.rsplit('/').next() == Some(name))?;
    dataset_dir.is_dir().then(|| (index, dataset_dir.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_prefers_upstreams_place_then_shorter_paths_then_the_folder_itself() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let layouts = ["CIFAR10/cifar-10-batches-py", "CIFAR10/cifar-10-batches-bin"];
        assert_eq!(locate(root, &layouts), None);
        std::fs::create_dir_all(root.join("cifar-10-batches-py")).unwrap();
        assert_eq!(locate(root, &layouts), Some((0, root.join("cifar-10-batches-py"))));
        std::fs::create_dir_all(root.join("CIFAR10/cifar-10-batches-bin")).unwrap();
        assert_eq!(
            locate(root, &layouts),
            Some((1, root.join("CIFAR10/cifar-10-batches-bin")))
        );
        let direct = root.join("CIFAR10/cifar-10-batches-bin");
        assert_eq!(locate(&direct, &layouts), Some((1, direct.clone())));
        assert_eq!(locate(&root.join("CIFAR10"), &layouts), Some((1, direct)));
        std::fs::create_dir_all(root.join("ImageNet")).unwrap();
        assert_eq!(
            locate(&root.join("ImageNet"), &["ImageNet"]),
            Some((0, root.join("ImageNet")))
        );
        assert_eq!(locate(&root.join("ImageNet"), &["ImageNet_blurred"]), None);
    }

    #[test]
    fn names_round_trip() {
        for layout in FileLayout::ALL {
            assert_eq!(FileLayout::from_name(layout.name()), Some(layout));
        }
        assert_eq!(FileLayout::from_name("cifar10"), None);
    }
}
