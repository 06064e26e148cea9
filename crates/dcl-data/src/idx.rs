//! The IDX format of MNIST-style data sets (<http://yann.lecun.com/exdb/mnist/>).
//!
//! A file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), one
//! big-endian `u32` per dimension, then the values in row-major order. dcl reads unsigned
//! byte files (type code 0x08): images of rank 3 and labels of rank 1.

use std::path::Path;

use crate::DataError;

/// The type code of unsigned bytes, the only one MNIST-style files use.
const TYPE_U8: u8 = 0x08;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The values, row-major; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Parses an IDX array of unsigned bytes with exactly `rank` dimensions.
///
/// `path` only names the file in error messages.
pub fn parse(bytes: &[u8], rank: usize, path: &Path) -> Result<IdxArray, DataError> {
    let corrupt = |reason: String| DataError::corrupt(path, format!("not a valid IDX file: {reason}"));
    if bytes.len() < 4 {
        return Err(corrupt(format!(
            "{} bytes, shorter than the 4-byte header",
            bytes.len()
        )));
    }
    if bytes[..2] == [0x1f, 0x8b] {
        return Err(DataError::corrupt(
            path,
            "gzip-compressed (it starts with gzip's magic bytes 1f 8b): decompress it first (`gunzip -k`) or fetch \
             it again with `dcl data fetch`",
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(corrupt(format!(
            "wrong magic number 0x{:02x}{:02x}{:02x}{:02x} (expected 0x0000{:02x}{:02x})",
            bytes[0], bytes[1], bytes[2], bytes[3], TYPE_U8, rank
        )));
    }
    if bytes[2] != TYPE_U8 {
        return Err(corrupt(format!(
            "value type 0x{:02x} is not unsigned bytes (0x08)",
            bytes[2]
        )));
    }
    if bytes[3] as usize != rank {
        return Err(corrupt(format!("{} dimensions where {rank} are expected", bytes[3])));
    }
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        return Err(corrupt(format!(
            "truncated header ({} bytes, expected {header_len})",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| corrupt(format!("dimensions {dims:?} overflow")))?;
    let actual = bytes.len() - header_len;
    if actual != expected {
        let what = if actual < expected {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(corrupt(format!(
            "{what}: dimensions {dims:?} need {expected} bytes of data, the file has {actual}"
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Reads an IDX file of unsigned bytes with exactly `rank` dimensions.
pub fn read(path: &Path, rank: usize) -> Result<IdxArray, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse(&bytes, rank, path)
}

/// Encodes `data` with dimensions `dims` as an IDX file of unsigned bytes.
///
/// The inverse of [`parse`]; used to write real-format files in tests and tools.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, TYPE_U8, dims.len() as u8]);
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("images.idx")
    }

    #[test]
    fn parses_a_valid_image_file() {
        let data: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        let array = parse(&encode(&[2, 3, 4], &data), 3, path()).unwrap();
        assert_eq!(array.dims, vec![2, 3, 4]);
        assert_eq!(array.data, data);
    }

    #[test]
    fn parses_a_valid_label_file() {
        let array = parse(&encode(&[3], &[7, 0, 9]), 1, path()).unwrap();
        assert_eq!(array.dims, vec![3]);
        assert_eq!(array.data, vec![7, 0, 9]);
    }

    fn error_of(bytes: &[u8], rank: usize) -> String {
        parse(bytes, rank, path()).unwrap_err().to_string()
    }

    #[test]
    fn rejects_truncated_data_and_names_the_file() {
        let mut bytes = encode(&[2, 2, 2], &[1; 8]);
        bytes.pop();
        let message = error_of(&bytes, 3);
        assert!(message.starts_with("images.idx: "), "{message}");
        assert!(message.contains("truncated"), "{message}");
        assert!(message.contains("need 8 bytes"), "{message}");
    }

    #[test]
    fn rejects_a_truncated_header() {
        let bytes = encode(&[2, 2, 2], &[1; 8]);
        assert!(error_of(&bytes[..9], 3).contains("truncated header"));
        assert!(error_of(&bytes[..3], 3).contains("shorter than the 4-byte header"));
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode(&[2], &[1, 2]);
        bytes.push(3);
        assert!(error_of(&bytes, 1).contains("trailing bytes"));
    }

    #[test]
    fn rejects_a_wrong_magic_number() {
        let mut bytes = encode(&[2], &[1, 2]);
        bytes[0] = 0x1f; // a gzip file starts with 0x1f8b
        assert!(error_of(&bytes, 1).contains("wrong magic number 0x1f00"));
    }

    #[test]
    fn says_that_a_gzip_file_is_compressed() {
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&encode(&[2], &[1, 2])).unwrap();
        let message = error_of(&gzip.finish().unwrap(), 1);
        assert!(message.starts_with("images.idx: gzip-compressed"), "{message}");
        assert!(message.contains("gunzip -k"), "{message}");
    }

    #[test]
    fn rejects_other_value_types_and_ranks() {
        let mut bytes = encode(&[2], &[1, 2]);
        bytes[2] = 0x0d; // float
        assert!(error_of(&bytes, 1).contains("value type 0x0d"));
        let labels = encode(&[2], &[1, 2]);
        assert!(error_of(&labels, 3).contains("1 dimensions where 3 are expected"));
    }
}
