//! The seam between a split's storage and the loader: where the images of a split come from.

use std::fmt::Debug;

use crate::{DataError, DecodeError, Image};

/// The images and labels of one split of a data set: held in memory (MNIST, CIFAR) or read
/// and decoded from files on demand (image folders). The loader's workers call it from
/// several threads.
pub trait ImageSource: Send + Sync + Debug {
    /// The number of images.
    fn len(&self) -> usize;

    /// Whether the split holds no image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One class label per image.
    fn labels(&self) -> &[u32];

    /// The shape (channels, height, width) every image has, when they all share one.
    fn fixed_shape(&self) -> Option<[usize; 3]>;

    /// Writes image `index` into `out` (reusing its memory).
    fn read(&self, index: usize, out: &mut Image) -> Result<(), DataError>;

    /// The encoded file of image `index` (JPEG, PNG), for sources that hold files: the
    /// pipeline then decodes it at the size its crop needs. `None` for in-memory sources.
    fn encoded(&self, _index: usize) -> Result<Option<Vec<u8>>, DataError> {
        Ok(None)
    }

    /// The error of image `index`'s file, which did not decode.
    fn corrupt(&self, index: usize, error: DecodeError) -> DataError {
        DataError::corrupt(format!("image {index}"), error.to_string())
    }
}
