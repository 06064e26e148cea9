//! Decoding JPEG and PNG files into [`Image`]s.
//!
//! The output always has three channels (RGB), as torchvision's `ImageFolder` loads images
//! (`PIL.Image.convert('RGB')`): grayscale is replicated, alpha dropped, palettes expanded
//! and CMYK converted as PIL converts it.
//!
//! JPEG goes through libjpeg-turbo, the decoder PIL uses, so the pixels are PIL's: its
//! TurboJPEG API reads headers and decodes CMYK files; grayscale, YCbCr and RGB files go
//! through its libjpeg API (a C shim, `decode/region.c`), which decodes only the rectangle a
//! transform reads ([`decode_region`]). Both decode at 1/2, 1/4 or 1/8 of the size in the
//! DCT domain ([`decode_scaled`]), much faster than decoding whole and resizing. PNG goes
//! through the `png` crate.

use std::cell::RefCell;
use std::ffi::{c_int, c_ulong, CStr};

use turbojpeg_sys as tj;

use crate::{Image, Window};

mod region;

/// Why bytes could not be decoded. `Display` is one line without the file's name, for the
/// caller to prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes start like neither format; holds their first bytes in hexadecimal.
    #[error("not a JPEG or PNG file (starts with {0})")]
    UnknownFormat(String),
    /// The data ends before the image does.
    #[error("truncated {0} data")]
    Truncated(&'static str),
    /// The data breaks the format; `reason` is the decoder's message.
    #[error("corrupt {format} data: {reason}")]
    Corrupt { format: &'static str, reason: String },
    /// A valid file this decoder does not handle.
    #[error("unsupported {format} file: {reason}")]
    Unsupported { format: &'static str, reason: String },
}

/// The largest image decoded, in pixels: PIL's decompression-bomb limit, so that a corrupt
/// header cannot ask for gigabytes.
pub const MAX_PIXELS: usize = 2 * 89_478_485;

/// The shape every decoded image of `bytes` has (3, height, width), read from the header only.
pub fn read_shape(bytes: &[u8]) -> Result<[usize; 3], DecodeError> {
    let [height, width] = match Format::of(bytes)? {
        Format::Jpeg => Decompressor::new()?.header(bytes)?.size,
        Format::Png => {
            let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let info = decoder.read_header_info().map_err(png_error)?;
            [info.height as usize, info.width as usize]
        }
    };
    Ok([3, height, width])
}

/// Decodes a JPEG or PNG file into `out` (3 channels), reusing its buffer.
pub fn decode(bytes: &[u8], out: &mut Image) -> Result<(), DecodeError> {
    decode_scaled(bytes, [usize::MAX; 2], out).map(drop)
}

/// Decodes a JPEG file at the largest reduction among 8, 4 and 2 (in the DCT domain) whose
/// output is still at least `min_size` (height, width) and smaller than the image, or whole
/// when none is; a PNG file whole. Returns the reduction `r`: the output is `ceil(height / r) x ceil(width / r)`, its
/// pixel `(y, x)` covering the source pixels `[r y, r (y + 1)) x [r x, r (x + 1))`.
pub fn decode_scaled(bytes: &[u8], min_size: [usize; 2], out: &mut Image) -> Result<usize, DecodeError> {
    let everything = Window {
        top: 0,
        left: 0,
        height: usize::MAX,
        width: usize::MAX,
    };
    decode_region(bytes, min_size, everything, out).map(|placement| placement.reduction)
}

/// Where a decoded image lies in the image that the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The image was decoded at `1 / reduction` of its size, as [`decode_scaled`] says.
    pub reduction: usize,
    /// The decoded pixel (0, 0) is pixel (`top`, `left`) of the image at that size.
    pub top: usize,
    pub left: usize,
}

impl Placement {
    /// All of an image, decoded at `1 / reduction` of its size.
    pub fn whole(reduction: usize) -> Self {
        Placement {
            reduction,
            top: 0,
            left: 0,
        }
    }
}

/// Decodes the part of a JPEG or PNG file that `window` (in the full-size image's pixels,
/// clipped to the image) needs, reduced as [`decode_scaled`] reduces, into `out`; returns
/// where `out` lies in the image. Grayscale, YCbCr and RGB JPEG files are decoded only over
/// the reduced pixels that the window touches (rows `floor(top / r)` to `ceil(bottom / r)`,
/// columns alike), bit for bit as the same pixels of the whole decode; others whole.
///
/// The decoder stops after the window's last row only when the file ends with its
/// end-of-image marker: a file that does not is decoded to its last row, so that a truncated
/// file is reported whatever the window. (Below the window, a complete single-scan file can
/// only hold entropy-coded data, whose damage libjpeg reports as warnings, ignored anyway.)
pub fn decode_region(
    bytes: &[u8],
    min_size: [usize; 2],
    window: Window,
    out: &mut Image,
) -> Result<Placement, DecodeError> {
    thread_local! {
        /// The decoder's interleaved output, before it becomes planar.
        static INTERLEAVED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    INTERLEAVED.with_borrow_mut(|buffer| match Format::of(bytes)? {
        Format::Jpeg => decode_jpeg(bytes, min_size, window, buffer, out),
        Format::Png => decode_png(bytes, buffer, out).map(|()| Placement::whole(1)),
    })
}

/// The formats recognised, by their first bytes.
#[derive(Debug, Clone, Copy)]
enum Format {
    Jpeg,
    Png,
}

impl Format {
    fn of(bytes: &[u8]) -> Result<Format, DecodeError> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Ok(Format::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Ok(Format::Png)
        } else if bytes.is_empty() {
            Err(DecodeError::UnknownFormat("nothing: the file is empty".to_owned()))
        } else {
            let start: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(DecodeError::UnknownFormat(start.join(" ")))
        }
    }
}

/// Reductions libjpeg-turbo makes in the DCT domain, largest first.
const REDUCTIONS: [usize; 4] = [8, 4, 2, 1];

fn decode_jpeg(
    bytes: &[u8],
    min_size: [usize; 2],
    window: Window,
    buffer: &mut Vec<u8>,
    out: &mut Image,
) -> Result<Placement, DecodeError> {
    let mut decompressor = Decompressor::new()?;
    let header = decompressor.header(bytes)?;
    let [height, width] = header.size;
    let reduced = |r: usize| [height.div_ceil(r), width.div_ceil(r)];
    // The largest reduction big enough that changes the size (none does for 1-pixel images).
    let reduction = REDUCTIONS
        .into_iter()
        .find(|&r| {
            let size = reduced(r);
            size[0] >= min_size[0] && size[1] >= min_size[1] && (r == 1 || size != [height, width])
        })
        .unwrap_or(1);
    if let tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK = header.colorspace {
        let size = reduced(reduction);
        buffer.resize(size[0] * size[1] * 4, 0);
        decompressor.decompress(bytes, size, tj::TJPF_TJPF_CMYK, buffer)?;
        planarise(buffer, 4, size, out, cmyk_to_rgb);
        return Ok(Placement::whole(reduction));
    }
    let [top, left, rows, columns] = covering(window, header.size, reduction);
    // To its last row unless the file ends as a complete one does (see `decode_region`).
    let rows = if bytes.ends_with(&END_OF_IMAGE) {
        rows
    } else {
        reduced(reduction)[0] - top
    };
    region::decode_rect(bytes, reduction, [top, left, rows, columns], out)?;
    Ok(Placement { reduction, top, left })
}

/// The marker that ends a JPEG file.
const END_OF_IMAGE: [u8; 2] = [0xFF, 0xD9];

/// The rectangle (top, left, height, width) of the image of `size` (height, width) decoded
/// at `1 / reduction` of it whose pixels `window` touches, the window clipped to the image;
/// all of it when the window lies outside the image.
fn covering(window: Window, size: [usize; 2], reduction: usize) -> [usize; 4] {
    let span = |start: isize, length: usize, full: usize| {
        let clip = |v: isize| v.clamp(0, full as isize) as usize;
        let (first, end) = (clip(start), clip(start.saturating_add_unsigned(length)));
        (first / reduction, end.div_ceil(reduction))
    };
    let (top, bottom) = span(window.top, window.height, size[0]);
    let (left, right) = span(window.left, window.width, size[1]);
    if top < bottom && left < right {
        [top, left, bottom - top, right - left]
    } else {
        [0, 0, size[0].div_ceil(reduction), size[1].div_ceil(reduction)]
    }
}

/// PIL's conversion of a CMYK JPEG pixel, as read by libjpeg (Adobe's inverted convention),
/// to RGB: PIL inverts the values (`CMYK;I`), then `convert('RGB')` computes
/// `(255 - k) - c (255 - k) / 255` with its rounded division by 255.
fn cmyk_to_rgb(pixel: &[u8]) -> [u8; 3] {
    let not_k = pixel[3] as u32;
    let channel = |raw: u8| {
        let product = (255 - raw as u32) * not_k + 128;
        (not_k - ((product >> 8) + product) / 256) as u8
    };
    [channel(pixel[0]), channel(pixel[1]), channel(pixel[2])]
}

fn decode_png(bytes: &[u8], buffer: &mut Vec<u8>, out: &mut Image) -> Result<(), DecodeError> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(png_error)?;
    let info = reader.info();
    check_size("PNG", [info.height as usize, info.width as usize])?;
    let length = reader.output_buffer_size().ok_or_else(|| DecodeError::Unsupported {
        format: "PNG",
        reason: "too large".to_owned(),
    })?;
    buffer.resize(length, 0);
    let frame = reader.next_frame(buffer).map_err(png_error)?;
    let size = [frame.height as usize, frame.width as usize];
    let pixels = &buffer[..frame.buffer_size()];
    match frame.color_type.samples() {
        1 | 2 => planarise(pixels, frame.color_type.samples(), size, out, |p| [p[0]; 3]),
        samples => planarise(pixels, samples, size, out, |p| [p[0], p[1], p[2]]),
    }
    Ok(())
}

fn png_error(error: png::DecodingError) -> DecodeError {
    match error {
        png::DecodingError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated("PNG")
        }
        png::DecodingError::LimitsExceeded => DecodeError::Unsupported {
            format: "PNG",
            reason: "too large".to_owned(),
        },
        other => DecodeError::Corrupt {
            format: "PNG",
            reason: other.to_string(),
        },
    }
}

/// Refuses images of more than [`MAX_PIXELS`] pixels.
fn check_size(format: &'static str, [height, width]: [usize; 2]) -> Result<(), DecodeError> {
    if height.saturating_mul(width) > MAX_PIXELS {
        return Err(DecodeError::Unsupported {
            format,
            reason: format!("{width}x{height} pixels exceed the limit of {MAX_PIXELS}"),
        });
    }
    Ok(())
}

/// Writes the interleaved `pixels` (`stride` bytes each, `size` = height, width) into `out` as
/// three planes, each pixel's values given by `rgb`.
fn planarise(pixels: &[u8], stride: usize, size: [usize; 2], out: &mut Image, rgb: impl Fn(&[u8]) -> [u8; 3]) {
    out.reshape([3, size[0], size[1]]);
    let (red, rest) = out.pixels.split_at_mut(size[0] * size[1]);
    let (green, blue) = rest.split_at_mut(red.len());
    for (i, pixel) in pixels.chunks_exact(stride).enumerate() {
        [red[i], green[i], blue[i]] = rgb(pixel);
    }
}

/// What a JPEG header tells.
struct JpegHeader {
    /// Height, width.
    size: [usize; 2],
    /// A `TJCS` value.
    colorspace: tj::TJCS,
}

/// A TurboJPEG decompression handle.
struct Decompressor(tj::tjhandle);

impl Decompressor {
    fn new() -> Result<Self, DecodeError> {
        // SAFETY: no precondition; a null handle is the failure, checked here.
        let handle = unsafe { tj::tjInitDecompress() };
        if handle.is_null() {
            return Err(DecodeError::Unsupported {
                format: "JPEG",
                reason: "libjpeg-turbo cannot start a decompressor".to_owned(),
            });
        }
        Ok(Decompressor(handle))
    }

    fn header(&mut self, bytes: &[u8]) -> Result<JpegHeader, DecodeError> {
        let (mut width, mut height, mut subsampling, mut colorspace): (c_int, c_int, c_int, c_int) = (0, 0, 0, 0);
        // SAFETY: the handle is live, the buffer and its length agree, the outputs are writable.
        let status = unsafe {
            tj::tjDecompressHeader3(
                self.0,
                bytes.as_ptr(),
                bytes.len() as c_ulong,
                &mut width,
                &mut height,
                &mut subsampling,
                &mut colorspace,
            )
        };
        if status != 0 {
            return Err(fatal(self.message(), bytes));
        }
        if height <= 0 || width <= 0 {
            // A stream of tables only, or one cut before its frame header.
            return Err(fatal("the data holds no image".to_owned(), bytes));
        }
        let size = [height as usize, width as usize];
        check_size("JPEG", size)?;
        Ok(JpegHeader {
            size,
            colorspace: colorspace as tj::TJCS,
        })
    }

    /// Decodes `bytes` into `buffer`, which holds exactly `size` pixels of `pixel_format`:
    /// libjpeg-turbo picks the DCT scaling that yields that size. Warnings other than the data
    /// ending early are ignored, as PIL ignores them.
    fn decompress(
        &mut self,
        bytes: &[u8],
        size: [usize; 2],
        pixel_format: tj::TJPF,
        buffer: &mut [u8],
    ) -> Result<(), DecodeError> {
        // SAFETY: the handle is live; `buffer` holds `size[0]` rows of `size[1]` pixels of
        // `pixel_format` (pitch 0: packed rows), and the decoder writes no more than that.
        let status = unsafe {
            tj::tjDecompress2(
                self.0,
                bytes.as_ptr(),
                bytes.len() as c_ulong,
                buffer.as_mut_ptr(),
                size[1] as c_int,
                0,
                size[0] as c_int,
                pixel_format,
                0,
            )
        };
        if status == 0 {
            return Ok(());
        }
        // SAFETY: the handle is live.
        let warning = unsafe { tj::tjGetErrorCode(self.0) } == tj::TJERR_TJERR_WARNING as c_int;
        let reason = self.message();
        if reason.starts_with("Premature end of JPEG file") {
            Err(DecodeError::Truncated("JPEG"))
        } else if warning {
            Ok(())
        } else {
            Err(fatal(reason, bytes))
        }
    }

    /// The handle's last message.
    fn message(&self) -> String {
        // SAFETY: the handle is live; TurboJPEG returns a NUL-terminated string it owns.
        unsafe { CStr::from_ptr(tj::tjGetErrorStr2(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
}

/// A fatal libjpeg error: truncation when the file lacks its end marker, else corruption.
fn fatal(reason: String, bytes: &[u8]) -> DecodeError {
    if bytes.ends_with(&END_OF_IMAGE) {
        DecodeError::Corrupt { format: "JPEG", reason }
    } else {
        DecodeError::Truncated("JPEG")
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle is live and never used again.
        unsafe { tj::tjDestroy(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(
        color: png::ColorType,
        depth: png::BitDepth,
        size: [u32; 2],
        data: &[u8],
        palette: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, size[1], size[0]);
        encoder.set_color(color);
        encoder.set_depth(depth);
        if let Some(palette) = palette {
            encoder.set_palette(palette.to_vec());
        }
        encoder.write_header().unwrap().write_image_data(data).unwrap();
        bytes
    }

    fn decoded(bytes: &[u8]) -> Image {
        let mut image = Image::default();
        assert_eq!(decode_scaled(bytes, [1, 1], &mut image), Ok(1), "PNG is never reduced");
        assert_eq!(read_shape(bytes).unwrap(), image.shape);
        image
    }

    #[test]
    fn png_colour_types_become_rgb_planes() {
        use png::{BitDepth::*, ColorType::*};
        let rgb = decoded(&png(Rgb, Eight, [1, 2], &[1, 2, 3, 4, 5, 6], None));
        assert_eq!((rgb.shape, rgb.pixels), ([3, 1, 2], vec![1, 4, 2, 5, 3, 6]));
        let rgba = decoded(&png(Rgba, Eight, [2, 1], &[1, 2, 3, 9, 4, 5, 6, 9], None));
        assert_eq!((rgba.shape, rgba.pixels), ([3, 2, 1], vec![1, 4, 2, 5, 3, 6]));
        let gray = decoded(&png(Grayscale, Eight, [1, 2], &[7, 8], None));
        assert_eq!(gray.pixels, vec![7, 8, 7, 8, 7, 8]);
        let gray_alpha = decoded(&png(GrayscaleAlpha, Eight, [1, 2], &[7, 0, 8, 255], None));
        assert_eq!(gray_alpha.pixels, vec![7, 8, 7, 8, 7, 8]);
        let palette = [10, 11, 12, 20, 21, 22];
        let indexed = decoded(&png(Indexed, Two, [1, 3], &[0b01_00_01_00], Some(&palette)));
        assert_eq!(indexed.pixels, vec![20, 10, 20, 21, 11, 21, 22, 12, 22]);
        let deep = decoded(&png(Rgb, Sixteen, [1, 1], &[1, 99, 2, 99, 3, 99], None));
        assert_eq!(deep.pixels, vec![1, 2, 3], "16-bit samples keep their high byte");
    }

    #[test]
    fn errors_are_one_line() {
        let mut image = Image::default();
        let mut message = |bytes: &[u8]| decode(bytes, &mut image).unwrap_err().to_string();
        assert_eq!(
            message(b"<html>hello"),
            "not a JPEG or PNG file (starts with 3c 68 74 6d 6c 3e 68 65)"
        );
        assert_eq!(
            message(b""),
            "not a JPEG or PNG file (starts with nothing: the file is empty)"
        );
        let bytes = png(png::ColorType::Rgb, png::BitDepth::Eight, [4, 4], &[5; 48], None);
        assert_eq!(message(&bytes[..bytes.len() - 20]), "truncated PNG data");
        assert_eq!(message(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16]), "truncated JPEG data");
        let mut corrupt = bytes.clone();
        corrupt[20] ^= 0xFF;
        assert!(
            message(&corrupt).starts_with("corrupt PNG data: "),
            "{}",
            message(&corrupt)
        );
    }

    #[test]
    fn cmyk_converts_as_pil() {
        // PIL: c' = 255 - c, nk = 255 - k' = k, value = nk - round(c' nk / 255).
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb(&[128, 0, 255, 200]), [100, 0, 200]);
        assert_eq!(cmyk_to_rgb(&[9, 9, 9, 0]), [0, 0, 0]);
    }
}
