//! Decoding a rectangle of a JPEG image: the binding of `region.c`, a shim over libjpeg's
//! `jpeg_crop_scanline` and `jpeg_skip_scanlines` compiled against the system's `jpeglib.h`
//! (by `build.rs`), so that no libjpeg structure is laid out by hand here.

use std::ffi::{c_char, c_int, CStr};

use super::{fatal, DecodeError};
use crate::Image;

extern "C" {
    fn dcl_jpeg_decode_region(
        data: *const u8,
        len: usize,
        reduction: c_int,
        top: usize,
        left: usize,
        height: usize,
        width: usize,
        out: *mut u8,
        out_len: usize,
        message: *mut c_char,
        message_len: usize,
    ) -> c_int;
}

/// `dcl_jpeg_decode_region`'s return values.
const OK: c_int = 0;
const TRUNCATED: c_int = 1;

/// Decodes the rectangle `rect` (top, left, height, width, not empty) of the JPEG image in
/// `bytes`, a grayscale, YCbCr or RGB one, decoded at `1 / reduction` of its size (`rect` in
/// those pixels), into `out` as RGB planes: the pixels of the whole decode, cropped.
pub(super) fn decode_rect(
    bytes: &[u8],
    reduction: usize,
    rect: [usize; 4],
    out: &mut Image,
) -> Result<(), DecodeError> {
    let [top, left, height, width] = rect;
    out.reshape([3, height, width]);
    let mut message = [0 as c_char; 256];
    // SAFETY: `bytes` and `out.pixels` are valid for their lengths, `message` for its own;
    // the shim writes no more than it is given and keeps no pointer.
    let status = unsafe {
        dcl_jpeg_decode_region(
            bytes.as_ptr(),
            bytes.len(),
            reduction as c_int,
            top,
            left,
            height,
            width,
            out.pixels.as_mut_ptr(),
            out.pixels.len(),
            message.as_mut_ptr(),
            message.len(),
        )
    };
    match status {
        OK => Ok(()),
        TRUNCATED => Err(DecodeError::Truncated("JPEG")),
        _ => {
            // SAFETY: on an error the shim wrote a NUL-terminated message within the buffer.
            let reason = unsafe { CStr::from_ptr(message.as_ptr()) };
            Err(fatal(reason.to_string_lossy().into_owned(), bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::c_ulong;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use turbojpeg_sys as tj;

    use super::super::{decode_region, planarise, Decompressor};
    use super::*;
    use crate::Window;

    /// A `height` x `width` JPEG of gradients and noise encoded by TurboJPEG with `subsampling`
    /// (grayscale for `TJSAMP_GRAY`) and `flags`.
    fn encoded([height, width]: [usize; 2], subsampling: tj::TJSAMP, flags: u32) -> Vec<u8> {
        let gray = subsampling == tj::TJSAMP_TJSAMP_GRAY;
        let channels = if gray { 1 } else { 3 };
        let mut rng = ChaCha8Rng::seed_from_u64((height * 1000 + width) as u64);
        let pixels: Vec<u8> = (0..height * width * channels)
            .map(|i| {
                let (y, x, c) = (i / channels / width, i / channels % width, i % channels);
                ((y * 5 + x * (3 + c)) % 200) as u8 + rng.random_range(0..56)
            })
            .collect();
        let pixel_format = if gray { tj::TJPF_TJPF_GRAY } else { tj::TJPF_TJPF_RGB };
        let (mut jpeg, mut len): (*mut u8, c_ulong) = (std::ptr::null_mut(), 0);
        // SAFETY: the handle is checked; `pixels` holds height x width pixels of the format;
        // TurboJPEG allocates the output, which is copied, then freed.
        unsafe {
            let handle = tj::tjInitCompress();
            assert!(!handle.is_null());
            let status = tj::tjCompress2(
                handle,
                pixels.as_ptr(),
                width as c_int,
                0,
                height as c_int,
                pixel_format,
                &mut jpeg,
                &mut len,
                subsampling as c_int,
                90,
                flags as c_int,
            );
            assert_eq!(status, 0);
            let bytes = std::slice::from_raw_parts(jpeg, len as usize).to_vec();
            tj::tjFree(jpeg);
            tj::tjDestroy(handle);
            bytes
        }
    }

    /// The whole image at `1 / reduction` of its size, decoded as before region decoding:
    /// TurboJPEG, then planar.
    fn whole(bytes: &[u8], reduction: usize) -> Image {
        let mut decompressor = Decompressor::new().unwrap();
        let header = decompressor.header(bytes).unwrap();
        let size = header.size.map(|v| v.div_ceil(reduction));
        let gray = header.colorspace == tj::TJCS_TJCS_GRAY;
        let (format, stride) = if gray {
            (tj::TJPF_TJPF_GRAY, 1)
        } else {
            (tj::TJPF_TJPF_RGB, 3)
        };
        let mut buffer = vec![0; size[0] * size[1] * stride];
        decompressor.decompress(bytes, size, format, &mut buffer).unwrap();
        let mut image = Image::default();
        planarise(&buffer, stride, size, &mut image, |p| {
            [p[0], p[stride / 2], p[stride - 1]]
        });
        image
    }

    /// Every window of `size` starting at every `step`-th row and column (two heights and
    /// widths each: one to the far edges, one varied), region-decoded at every reduction,
    /// against the whole decode: the rectangle is the one the window touches, its pixels the
    /// whole decode's.
    fn check_every_window(bytes: &[u8], [height, width]: [usize; 2], step: usize) {
        let mut part = Image::default();
        for reduction in [1, 2, 4, 8] {
            let reference = whole(bytes, reduction);
            let min_size = [height, width].map(|v| v.div_ceil(reduction));
            for (top, left) in (0..height)
                .step_by(step)
                .flat_map(|t| (0..width).step_by(step).map(move |l| (t, l)))
            {
                let varied = [
                    1 + (top * 7 + left * 13) % (height - top),
                    1 + (top * 11 + left * 5) % (width - left),
                ];
                for [h, w] in [varied, [height - top, width - left]] {
                    let window = Window {
                        top: top as isize,
                        left: left as isize,
                        height: h,
                        width: w,
                    };
                    let placement = decode_region(bytes, min_size, window, &mut part).unwrap();
                    let what = format!("{height}x{width} at 1/{reduction}, {window:?}");
                    let touched = [
                        top / reduction,
                        left / reduction,
                        (top + h).div_ceil(reduction) - top / reduction,
                        (left + w).div_ceil(reduction) - left / reduction,
                    ];
                    let rect = [placement.top, placement.left, part.shape[1], part.shape[2]];
                    assert_eq!((placement.reduction, rect), (reduction, touched), "{what}");
                    let mut expected = Image::default();
                    reference.copy_window(
                        Window {
                            top: placement.top as isize,
                            left: placement.left as isize,
                            height: part.shape[1],
                            width: part.shape[2],
                        },
                        &mut expected,
                    );
                    assert!(part == expected, "{what}: pixels differ from the whole decode's");
                }
            }
        }
    }

    #[test]
    fn regions_are_the_whole_decode_cropped() {
        use tj::{TJSAMP_TJSAMP_411, TJSAMP_TJSAMP_420, TJSAMP_TJSAMP_422, TJSAMP_TJSAMP_440, TJSAMP_TJSAMP_444};
        let progressive = tj::TJFLAG_PROGRESSIVE;
        for (size, subsampling, flags) in [
            ([37, 53], TJSAMP_TJSAMP_420, 0),
            ([37, 53], TJSAMP_TJSAMP_444, 0),
            ([37, 53], TJSAMP_TJSAMP_422, 0),
            ([37, 53], TJSAMP_TJSAMP_440, 0),
            ([37, 53], TJSAMP_TJSAMP_411, 0),
            ([37, 53], tj::TJSAMP_TJSAMP_GRAY, 0),
            ([37, 53], TJSAMP_TJSAMP_420, progressive),
            ([37, 53], tj::TJSAMP_TJSAMP_GRAY, progressive),
            ([5, 9], TJSAMP_TJSAMP_420, 0),
            ([1, 17], TJSAMP_TJSAMP_420, 0),
            ([96, 128], TJSAMP_TJSAMP_420, 0),
        ] {
            let step = if size[0] > 40 { 5 } else { 1 };
            check_every_window(&encoded(size, subsampling, flags), size, step);
        }
    }

    #[test]
    fn damaged_files_give_one_line_errors_whatever_the_window() {
        let bytes = encoded([96, 128], tj::TJSAMP_TJSAMP_420, 0);
        let corner = Window {
            top: 0,
            left: 0,
            height: 8,
            width: 8,
        };
        let mut image = Image::default();
        for cut in [bytes.len() - 2, bytes.len() * 3 / 4, bytes.len() / 2] {
            let error = decode_region(&bytes[..cut], [96, 128], corner, &mut image).unwrap_err();
            assert_eq!(error.to_string(), "truncated JPEG data", "cut at {cut}");
        }
        // Cut below the window too: single-scan files are decoded to the end unless complete.
        // The second scan's spectral selection (Ss) past the last coefficient: libjpeg fails
        // on it in `jpeg_start_decompress`, after the header.
        let mut corrupt = encoded([96, 128], tj::TJSAMP_TJSAMP_420, tj::TJFLAG_PROGRESSIVE);
        let scan = corrupt
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w == &[0xFF, 0xDA])
            .nth(1)
            .unwrap()
            .0;
        let components = corrupt[scan + 4] as usize;
        corrupt[scan + 5 + 2 * components] = 70;
        let message = decode_region(&corrupt, [96, 128], corner, &mut image)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("corrupt JPEG data: Invalid progressive parameters Ss=70"),
            "{message}"
        );
    }
}
