//! In-memory image data sets: one [`ImageSet`] per split, held as raw bytes.

use std::path::Path;
use std::sync::Arc;

use crate::{idx, DataError};

/// Images and their labels, stored as the unsigned bytes of the files they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// `len() * image_len()` pixel values, image after image.
    pub images: Vec<u8>,
    /// One class label per image, each below the data set's number of classes.
    pub labels: Vec<u8>,
    /// Channels, height, width of every image.
    pub image_shape: [usize; 3],
}

impl ImageSet {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The number of values of one image.
    pub fn image_len(&self) -> usize {
        self.image_shape.iter().product()
    }

    /// The pixel values of image `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[index * n..(index + 1) * n]
    }

    /// The set with every image padded with zeros (black) to `size` x `size`, centred (an odd
    /// margin leaves the extra row and column at the bottom and right), as torchvision's
    /// `Pad`. Fails when the images are larger than that.
    pub fn padded_to(&self, size: usize) -> Result<ImageSet, String> {
        let [c, h, w] = self.image_shape;
        if size < h || size < w {
            return Err(format!(
                "--input-size {size} is below the images' {h}x{w}: only padding is available for this data set"
            ));
        }
        let (top, left) = ((size - h) / 2, (size - w) / 2);
        let mut images = vec![0u8; self.len() * c * size * size];
        for (padded, image) in images
            .chunks_exact_mut(c * size * size)
            .zip(self.images.chunks_exact(c * h * w))
        {
            for (padded, channel) in padded.chunks_exact_mut(size * size).zip(image.chunks_exact(h * w)) {
                for (y, row) in channel.chunks_exact(w).enumerate() {
                    let start = (top + y) * size + left;
                    padded[start..start + w].copy_from_slice(row);
                }
            }
        }
        Ok(ImageSet {
            images,
            labels: self.labels.clone(),
            image_shape: [c, size, size],
        })
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
            labels: labels.data,
            image_shape: [1, images.dims[1], images.dims[2]],
        })
    }
}

/// Per-channel affine normalisation applied when bytes become floats:
/// `((x / 255) - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

impl Normalization {
    /// A table of the normalised value of every byte, so that batch assembly is a lookup.
    pub fn lookup_table(&self) -> [f32; 256] {
        std::array::from_fn(|byte| (byte as f32 / 255.0 - self.mean) / self.std)
    }
}

/// A data set with its training and test splits.
#[derive(Debug, Clone)]
pub struct SplitDataset {
    /// The catalogue name (`mnist`, …).
    pub name: String,
    pub train: Arc<ImageSet>,
    pub test: Arc<ImageSet>,
    pub num_classes: usize,
    pub normalization: Normalization,
}

impl SplitDataset {
    /// Both splits padded to `size` x `size` ([`ImageSet::padded_to`]); the same set when the
    /// images have that size already.
    pub fn with_input_size(self, size: usize) -> Result<Self, String> {
        let [_, h, w] = self.train.image_shape;
        if (h, w) == (size, size) {
            return Ok(self);
        }
        Ok(SplitDataset {
            train: Arc::new(self.train.padded_to(size)?),
            test: Arc::new(self.test.padded_to(size)?),
            ..self
        })
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
    fn padding_centres_every_channel_and_refuses_to_shrink() {
        let set = ImageSet {
            images: vec![1, 2, 3, 4, 5, 6, 7, 8],
            labels: vec![3],
            image_shape: [2, 2, 2],
        };
        let padded = set.padded_to(4).unwrap();
        assert_eq!(padded.image_shape, [2, 4, 4]);
        assert_eq!(padded.labels, vec![3]);
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 0,  0, 1, 2, 0,  0, 3, 4, 0,  0, 0, 0, 0,
            0, 0, 0, 0,  0, 5, 6, 0,  0, 7, 8, 0,  0, 0, 0, 0,
        ];
        assert_eq!(padded.images, expected);
        assert_eq!(set.padded_to(3).unwrap().image(0)[..9], [1, 2, 0, 3, 4, 0, 0, 0, 0]);
        let message = set.padded_to(1).unwrap_err();
        assert!(message.contains("--input-size 1 is below the images' 2x2"), "{message}");
    }

    #[test]
    fn normalisation_maps_bytes_to_minus_one_one() {
        let table = Normalization { mean: 0.5, std: 0.5 }.lookup_table();
        assert_eq!(table[0], -1.0);
        assert_eq!(table[255], 1.0);
        assert!((table[128] - 0.003_921_6).abs() < 1e-6);
    }
}
