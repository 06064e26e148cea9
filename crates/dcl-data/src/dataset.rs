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
    fn normalisation_maps_bytes_to_minus_one_one() {
        let table = Normalization { mean: 0.5, std: 0.5 }.lookup_table();
        assert_eq!(table[0], -1.0);
        assert_eq!(table[255], 1.0);
        assert!((table[128] - 0.003_921_6).abs() < 1e-6);
    }
}
