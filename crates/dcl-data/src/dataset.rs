//! Data sets: an [`ImageSource`] per split (in-memory [`ImageSet`]s for MNIST-like sets),
//! their per-channel normalisation, and the [`SplitDataset`] that holds both splits.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::Kind;
use crate::{idx, DataError, Image, ImageSource, Pipeline, Transform};

/// Images of one shape and their labels, held in memory as the bytes of their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// `len() * image_len()` pixel values, image after image (planar).
    pub images: Vec<u8>,
    /// One class label per image, each below the data set's number of classes.
    pub labels: Vec<u32>,
    /// Channels, height, width of every image.
    pub image_shape: [usize; 3],
}

impl ImageSource for ImageSet {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn labels(&self) -> &[u32] {
        &self.labels
    }

    fn fixed_shape(&self) -> Option<[usize; 3]> {
        Some(self.image_shape)
    }

    fn read(&self, index: usize, out: &mut Image) -> Result<(), DataError> {
        out.shape = self.image_shape;
        out.pixels.clear();
        out.pixels.extend_from_slice(self.image(index));
        Ok(())
    }
}

impl ImageSet {
    /// The number of values of one image.
    pub fn image_len(&self) -> usize {
        self.image_shape.iter().product()
    }

    /// The pixel values of image `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[index * n..(index + 1) * n]
    }

    /// Reads a pair of IDX files: images of rank 3 (count, rows, columns) and labels of
    /// rank 1, checking that they agree and that every label is below `num_classes`.
    pub fn read_idx_pair(images_path: &Path, labels_path: &Path, num_classes: usize) -> Result<Self, DataError> {
        let images = idx::read(images_path, 3)?;
        let labels = idx::read(labels_path, 1)?;
        if images.dims[0] != labels.dims[0] {
            return Err(DataError::corrupt(
                labels_path,
                format!(
                    "holds {} labels but {} holds {} images",
                    labels.dims[0],
                    images_path.display(),
                    images.dims[0]
                ),
            ));
        }
        if let Some((position, &label)) = labels.data.iter().enumerate().find(|(_, &l)| l as usize >= num_classes) {
            return Err(DataError::corrupt(
                labels_path,
                format!("label {label} of sample {position} is out of range (the data set has {num_classes} classes)"),
            ));
        }
        Ok(ImageSet {
            images: images.data,
            labels: labels.data.into_iter().map(u32::from).collect(),
            image_shape: [1, images.dims[1], images.dims[2]],
        })
    }
}

/// Per-channel affine normalisation applied when bytes become floats:
/// `((x / 255) - mean[c]) / std[c]` for channel `c` (one-channel images use the first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// The same normalisation for every channel.
    pub const fn uniform(mean: f32, std: f32) -> Self {
        Normalization {
            mean: [mean; 3],
            std: [std; 3],
        }
    }

    /// ImageNet's statistics, which upstream applies to every data set but MNIST.
    pub const IMAGENET: Normalization = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// Per channel, a table of the normalised value of every byte, so that batch assembly is
    /// a lookup.
    pub fn lookup_tables(&self) -> [[f32; 256]; 3] {
        std::array::from_fn(|c| std::array::from_fn(|byte| (byte as f32 / 255.0 - self.mean[c]) / self.std[c]))
    }
}

/// A data set with its training and test splits.
#[derive(Debug, Clone)]
pub struct SplitDataset {
    /// The catalogue name (`mnist`, …).
    pub name: String,
    pub train: Arc<dyn ImageSource>,
    pub test: Arc<dyn ImageSource>,
    pub num_classes: usize,
    pub normalization: Normalization,
    /// What its images are, and so how they are preprocessed.
    pub kind: Kind,
    /// The side of its network inputs unless `--input-size` says otherwise.
    pub input_size: usize,
}

/// Augmentation of the training images beyond what the data set's kind brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augment {
    /// None (upstream trains CIFAR without augmentation).
    #[default]
    None,
    /// A random crop after zero padding of 4 and a horizontal flip (the usual CIFAR recipe).
    CropFlip,
}

impl SplitDataset {
    /// The shape of every image of both splits, when they share one.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        self.train.fixed_shape().filter(|&s| self.test.fixed_shape() == Some(s))
    }

    /// The training and test pipelines of upstream's preprocessing at `input_size` (the data
    /// set's own by default): small images padded or centre-cropped to it (`augment` adding
    /// CIFAR's crop and flip to training), photographs through RandomResizedCrop and a flip
    /// for training, Resize(size · 8/7) and CenterCrop for evaluation.
    pub fn pipelines(&self, input_size: Option<usize>, augment: Augment) -> Result<[Pipeline; 2], String> {
        let size = input_size.unwrap_or(self.input_size);
        let (train, test) = match self.kind {
            Kind::Small => {
                let stored = self.image_shape().map(|[_, h, w]| (h, w));
                let fit = if stored == Some((size, size)) {
                    Transform::Identity
                } else {
                    Transform::Pad { size }
                };
                let train = match (augment, fit) {
                    (Augment::None, fit) => fit,
                    (Augment::CropFlip, Transform::Identity) => Transform::CropFlip { padding: 4 },
                    (Augment::CropFlip, _) => {
                        return Err(format!(
                            "--augment crop_flip works at the images' own size; leave out --input-size {size}"
                        ))
                    }
                };
                (train, fit)
            }
            Kind::Photo => {
                if augment != Augment::None {
                    return Err(format!(
                        "--augment applies to small images; {} trains with random crops",
                        self.name
                    ));
                }
                (
                    Transform::random_resized_crop(size),
                    Transform::resize_center_crop(size),
                )
            }
        };
        let pipeline = |transform| Pipeline {
            transform,
            normalization: self.normalization,
        };
        Ok([pipeline(train), pipeline(test)])
    }

    /// The shape of the network inputs `pipeline` makes of this data set's images.
    pub fn input_shape(&self, pipeline: &Pipeline) -> [usize; 3] {
        // Decoded files are RGB; their size does not matter to the resizing transforms.
        let stored = self.image_shape().unwrap_or([3, self.input_size, self.input_size]);
        pipeline.output_shape(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, dims: &[usize], data: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, idx::encode(dims, data)).unwrap();
        path
    }

    #[test]
    fn reads_a_consistent_pair() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..3 * 2 * 2).map(|v| v as u8).collect();
        let images = write(dir.path(), "img", &[3, 2, 2], &pixels);
        let labels = write(dir.path(), "lbl", &[3], &[2, 0, 1]);
        let set = ImageSet::read_idx_pair(&images, &labels, 3).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.image_shape, [1, 2, 2]);
        assert_eq!(set.image(1), &[4, 5, 6, 7]);
        assert_eq!(set.labels, vec![2, 0, 1]);
    }

    #[test]
    fn rejects_a_count_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let images = write(dir.path(), "img", &[3, 1, 1], &[0, 1, 2]);
        let labels = write(dir.path(), "lbl", &[2], &[0, 1]);
        let message = ImageSet::read_idx_pair(&images, &labels, 10).unwrap_err().to_string();
        assert!(message.contains("lbl: holds 2 labels but"), "{message}");
        assert!(message.contains("holds 3 images"), "{message}");
    }

    #[test]
    fn rejects_labels_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let images = write(dir.path(), "img", &[2, 1, 1], &[0, 1]);
        let labels = write(dir.path(), "lbl", &[2], &[9, 10]);
        let message = ImageSet::read_idx_pair(&images, &labels, 10).unwrap_err().to_string();
        assert!(message.contains("label 10 of sample 1 is out of range"), "{message}");
    }

    #[test]
    fn reports_a_missing_file_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing-here");
        let message = ImageSet::read_idx_pair(&missing, &missing, 10).unwrap_err().to_string();
        assert!(message.contains("nothing-here"), "{message}");
    }

    #[test]
    fn normalisation_maps_bytes_channel_by_channel() {
        let tables = Normalization::uniform(0.5, 0.5).lookup_tables();
        assert_eq!(tables[0][0], -1.0);
        assert_eq!(tables[2][255], 1.0);
        assert!((tables[1][128] - 0.003_921_6).abs() < 1e-6);
        let imagenet = Normalization::IMAGENET.lookup_tables();
        assert!((imagenet[1][0] - (-0.456 / 0.224)).abs() < 1e-6);
        assert!((imagenet[2][255] - (1.0 - 0.406) / 0.225).abs() < 1e-5);
    }
}
