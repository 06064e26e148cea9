//! Image files read and decoded on demand: the [`ImageSource`] of the folder layouts.

use crate::{decode, DataError, FileList, Image, ImageSource};

/// The images of a [`FileList`], read from disk and decoded (JPEG, PNG) when asked for.
#[derive(Debug)]
pub struct FileSource {
    list: FileList,
}

impl FileSource {
    /// A source over the files of `list`.
    pub fn new(list: FileList) -> Self {
        FileSource { list }
    }
}

impl ImageSource for FileSource {
    fn len(&self) -> usize {
        self.list.files.len()
    }

    fn labels(&self) -> &[u32] {
        &self.list.labels
    }

    fn fixed_shape(&self) -> Option<[usize; 3]> {
        None
    }

    fn encoded(&self, index: usize) -> Result<Option<Vec<u8>>, DataError> {
        let path = &self.list.files[index];
        std::fs::read(path).map(Some).map_err(|e| DataError::io(path, e))
    }

    fn read(&self, index: usize, out: &mut Image) -> Result<(), DataError> {
        let bytes = self.encoded(index)?.unwrap_or_default();
        decode(&bytes, out).map_err(|e| self.corrupt(index, e))
    }

    fn corrupt(&self, index: usize, error: crate::DecodeError) -> DataError {
        DataError::corrupt(&self.list.files[index], error.to_string())
    }
}
