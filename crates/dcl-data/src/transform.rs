//! The image transforms of upstream's `preprocess.py`, as torchvision computes them, with
//! every random choice drawn from a caller-supplied RNG (one per sample: seed, epoch, index).
//!
//! A transform runs in two steps, so that a JPEG can be decoded at a reduced size when its
//! output needs fewer pixels than the file has (the trick of DALI and FFCV), and only over
//! the window that the transform reads:
//! ```ignore
//! let draw = transform.draw(decode::read_shape(&bytes)?, &mut rng);
//! let placement = decode::decode_region(&bytes, transform.min_decode_size(&draw), draw.window, &mut image)?;
//! transform.apply_drawn(&draw, &image, placement, &mut scratch, &mut out);
//! ```
//! [`Transform::apply`] does both on a full-size image; the same RNG gives the same draw
//! either way, and at reduction 1 the same pixels.

use rand::Rng;

use crate::decode::Placement;
use crate::image::Window;
use crate::resize::{resize, Resize};
use crate::Image;

/// One preprocessing pipeline, from a decoded image to the network's input (before the
/// conversion to floats and the normalisation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// The image unchanged.
    Identity,
    /// Zero padding to `size` x `size`, centred (an odd margin leaves the extra row and column
    /// at the bottom and right), as for MNIST at 32; a larger image is centre-cropped instead:
    /// torchvision's `CenterCrop(size)`, which pads and crops so.
    Pad { size: usize },
    /// CIFAR's usual augmentation: zero padding of `padding` on every side and a random crop
    /// back to the input's size (torchvision's `RandomCrop(size, padding)`), then a horizontal
    /// flip with probability 1/2.
    CropFlip { padding: usize },
    /// Training on ImageNet-like sets: torchvision's `RandomResizedCrop(size, scale, ratio)`
    /// (bilinear, antialiased), then `RandomHorizontalFlip()`.
    RandomResizedCrop {
        size: usize,
        /// Bounds of the crop's area, as fractions of the image's.
        scale: (f64, f64),
        /// Bounds of the crop's aspect ratio, width / height.
        ratio: (f64, f64),
    },
    /// Evaluation on ImageNet-like sets: torchvision's `Resize(resize)` (the shorter side to
    /// `resize`, bilinear, antialiased), then `CenterCrop(size)`.
    ResizeCenterCrop { resize: usize, size: usize },
}

/// The random choices and the source window of one application of a [`Transform`], drawn
/// before the image is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// The shape of the full-size image drawn for.
    pub input: [usize; 3],
    /// The window of the full-size image read: the crop of `RandomResizedCrop`, `CropFlip`
    /// and `Pad` (past the image's edges where padded); the whole image otherwise.
    pub window: Window,
    /// Whether the output is mirrored left to right.
    pub flip: bool,
}

impl Transform {
    /// `RandomResizedCrop(size)` with torchvision's defaults: scale (0.08, 1), ratio (3/4, 4/3).
    pub fn random_resized_crop(size: usize) -> Self {
        Transform::RandomResizedCrop {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }

    /// Upstream's evaluation transform: `Resize(int(size * 8 / 7))`, then `CenterCrop(size)`
    /// (256 then 224 for 224; 73 then 64 for 64).
    pub fn resize_center_crop(size: usize) -> Self {
        Transform::ResizeCenterCrop {
            resize: size * 8 / 7,
            size,
        }
    }

    /// The shape of the output for an input of shape `input` (channels, height, width): the
    /// input's channels, and `size` x `size` for all but `Identity` and `CropFlip`, whose
    /// output has the input's size (so a batch needs inputs of one size).
    pub fn output_shape(&self, input: [usize; 3]) -> [usize; 3] {
        match *self {
            Transform::Identity | Transform::CropFlip { .. } => input,
            Transform::Pad { size }
            | Transform::RandomResizedCrop { size, .. }
            | Transform::ResizeCenterCrop { size, .. } => [input[0], size, size],
        }
    }

    /// Draws the random choices for an image of shape `input`, in torchvision's order.
    pub fn draw(&self, input: [usize; 3], rng: &mut impl Rng) -> Draw {
        let [_, height, width] = input;
        let whole = Window {
            top: 0,
            left: 0,
            height,
            width,
        };
        let (window, flip) = match *self {
            Transform::Identity | Transform::ResizeCenterCrop { .. } => (whole, false),
            Transform::Pad { size } => (centred(whole, [size, size]), false),
            Transform::CropFlip { padding } => {
                let padding = padding as i64;
                let top = rng.random_range(-padding..=padding) as isize;
                let left = rng.random_range(-padding..=padding) as isize;
                (Window { top, left, ..whole }, rng.random_bool(0.5))
            }
            Transform::RandomResizedCrop { scale, ratio, .. } => (
                random_resized_crop(height, width, scale, ratio, rng),
                rng.random_bool(0.5),
            ),
        };
        Draw { input, window, flip }
    }

    /// The smallest (height, width) at which the image of `draw` can be decoded without
    /// losing output resolution, for [`decode_region`](crate::decode::decode_region): about
    /// the size at which the crop becomes the output's size for the resizing transforms, the
    /// full size for the others.
    pub fn min_decode_size(&self, draw: &Draw) -> [usize; 2] {
        let [_, height, width] = draw.input;
        let window = draw.window;
        match *self {
            Transform::RandomResizedCrop { size, .. } if window.height > 0 && window.width > 0 => [
                (height * size).div_ceil(window.height),
                (width * size).div_ceil(window.width),
            ],
            Transform::ResizeCenterCrop { resize, .. } => shorter_side_to(resize, height, width),
            _ => [height, width],
        }
    }

    /// Applies the transform as drawn to `image`, the part of the drawn-for image that holds
    /// `draw.window` (clipped to the image), decoded as `placement` says, into `out` (shape
    /// [`output_shape`](Self::output_shape)), with `scratch` for intermediate pixels; reuses
    /// both buffers. The output depends on the pixels of the window only, not on how much
    /// more `image` holds.
    ///
    /// # Panics
    /// If the reduction is not 1 for a transform that does not resize (`Identity`, `Pad`,
    /// `CropFlip`: their [`min_decode_size`](Self::min_decode_size) is the full size).
    pub fn apply_drawn(&self, draw: &Draw, image: &Image, placement: Placement, scratch: &mut Image, out: &mut Image) {
        let Placement { reduction, top, left } = placement;
        // Full-size rows and columns as the image's (fractional ones when reduced).
        let row = |y: f64| y / reduction as f64 - top as f64;
        let column = |x: f64| x / reduction as f64 - left as f64;
        let reduced = |v: usize| v as f64 / reduction as f64;
        let window = draw.window;
        match *self {
            Transform::Identity | Transform::Pad { .. } | Transform::CropFlip { .. } => {
                assert_eq!(reduction, 1, "{self:?} needs the full-size image");
                let shifted = Window {
                    top: window.top - top as isize,
                    left: window.left - left as isize,
                    ..window
                };
                image.copy_window(shifted, out);
            }
            Transform::RandomResizedCrop { size, .. } => {
                let crop = [window.top as usize, window.left as usize, window.height, window.width];
                let spec = Resize {
                    source: [
                        row(crop[0] as f64),
                        column(crop[1] as f64),
                        reduced(crop[2]),
                        reduced(crop[3]),
                    ],
                    ..Resize::crop(crop, [size, size])
                };
                resize(image, &spec, scratch, out);
            }
            Transform::ResizeCenterCrop { resize: shorter, size } => {
                let [_, height, width] = draw.input;
                let resized = shorter_side_to(shorter, height, width);
                let whole = Window {
                    top: 0,
                    left: 0,
                    height: resized[0],
                    width: resized[1],
                };
                let crop = centred(whole, [size, size]);
                let source = [row(0.0), column(0.0), reduced(height), reduced(width)];
                if size <= resized[0] && size <= resized[1] {
                    let keep = [crop.top as usize, crop.left as usize, size, size];
                    resize(
                        image,
                        &Resize {
                            source,
                            size: resized,
                            keep,
                        },
                        scratch,
                        out,
                    );
                } else {
                    // The crop reaches past the resized image: resize all of it, then pad.
                    let spec = Resize {
                        source,
                        ..Resize::whole(image.shape, resized)
                    };
                    resize(image, &spec, scratch, out);
                    out.copy_window(crop, scratch);
                    std::mem::swap(scratch, out);
                }
            }
        }
        if draw.flip {
            out.flip_horizontally();
        }
    }

    /// Draws and applies the transform to a full-size `image`: [`draw`](Self::draw), then
    /// [`apply_drawn`](Self::apply_drawn).
    pub fn apply(&self, image: &Image, rng: &mut impl Rng, scratch: &mut Image, out: &mut Image) {
        let draw = self.draw(image.shape, rng);
        self.apply_drawn(&draw, image, Placement::whole(1), scratch, out);
    }
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a crop of random area and aspect
/// ratio (log-uniform) that fits, at a random place; else the largest central crop whose
/// aspect ratio is within bounds.
fn random_resized_crop(
    height: usize,
    width: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> Window {
    let area = (height * width) as f64;
    let mut uniform = |low: f64, high: f64| low + (high - low) * rng.random::<f64>();
    for _ in 0..10 {
        let target = area * uniform(scale.0, scale.1);
        let aspect = uniform(ratio.0.ln(), ratio.1.ln()).exp();
        let w = (target * aspect).sqrt().round_ties_even();
        let h = (target / aspect).sqrt().round_ties_even();
        if 0.0 < w && w <= width as f64 && 0.0 < h && h <= height as f64 {
            let (h, w) = (h as usize, w as usize);
            return Window {
                top: rng.random_range(0..=height - h) as isize,
                left: rng.random_range(0..=width - w) as isize,
                height: h,
                width: w,
            };
        }
    }
    let (low, high) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let in_ratio = width as f64 / height as f64;
    let (h, w) = if in_ratio < low {
        ((width as f64 / low).round_ties_even() as usize, width)
    } else if in_ratio > high {
        (height, (height as f64 * high).round_ties_even() as usize)
    } else {
        (height, width)
    };
    Window {
        top: ((height - h) / 2) as isize,
        left: ((width - w) / 2) as isize,
        height: h,
        width: w,
    }
}

/// The (height, width) of torchvision's `Resize(shorter)` of a `height` x `width` image: the
/// shorter side becomes `shorter`, the longer one keeps the aspect ratio, rounded down.
fn shorter_side_to(shorter: usize, height: usize, width: usize) -> [usize; 2] {
    let longer = |long: usize, short: usize| (shorter * long).checked_div(short).unwrap_or(0);
    if width <= height {
        [longer(height, width), shorter]
    } else {
        [shorter, longer(width, height)]
    }
}

/// torchvision's `CenterCrop(size)` of `whole` as a window: centred, the offset of a crop
/// rounded half to even (Python's `round`), that of a padding rounded towards the top left.
fn centred(whole: Window, [height, width]: [usize; 2]) -> Window {
    let offset = |length: usize, window: usize| -> isize {
        if window >= length {
            -(((window - length) / 2) as isize)
        } else {
            let margin = length - window;
            (margin / 2 + (margin % 2 == 1 && margin / 2 % 2 == 1) as usize) as isize
        }
    };
    Window {
        top: whole.top + offset(whole.height, height),
        left: whole.left + offset(whole.width, width),
        height,
        width,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A `channels` x `height` x `width` image whose pixel values count from 1.
    fn counting(shape: [usize; 3]) -> Image {
        Image {
            pixels: (1..=shape.iter().product::<usize>()).map(|v| v as u8).collect(),
            shape,
        }
    }

    fn applied(transform: &Transform, image: &Image, draw: &Draw) -> Image {
        let (mut scratch, mut out) = (Image::default(), Image::default());
        transform.apply_drawn(draw, image, Placement::whole(1), &mut scratch, &mut out);
        assert_eq!(out.shape, transform.output_shape(image.shape));
        out
    }

    fn draw_for(image: &Image, top: isize, left: isize, size: [usize; 2], flip: bool) -> Draw {
        let window = Window {
            top,
            left,
            height: size[0],
            width: size[1],
        };
        Draw {
            input: image.shape,
            window,
            flip,
        }
    }

    #[test]
    fn identity_and_pad() {
        let image = counting([2, 2, 2]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let draw = Transform::Identity.draw(image.shape, &mut rng);
        assert_eq!(applied(&Transform::Identity, &image, &draw), image);
        let pad = Transform::Pad { size: 3 };
        let draw = pad.draw(image.shape, &mut rng);
        assert_eq!(
            draw.window,
            draw_for(&image, 0, 0, [3, 3], false).window,
            "the extra row at the bottom"
        );
        assert_eq!(
            applied(&pad, &image, &draw).pixels,
            [1, 2, 0, 3, 4, 0, 0, 0, 0, 5, 6, 0, 7, 8, 0, 0, 0, 0]
        );
        // Larger than the size: centre-cropped, the offset rounded half to even (1.5 -> 2).
        let wide = counting([1, 1, 5]);
        let pad = Transform::Pad { size: 2 };
        let draw = pad.draw(wide.shape, &mut rng);
        assert_eq!(applied(&pad, &wide, &draw).pixels, [3, 4, 0, 0]);
    }

    #[test]
    fn crop_flip_reads_the_padded_window_and_mirrors() {
        let image = counting([1, 2, 2]);
        let transform = Transform::CropFlip { padding: 1 };
        let draw = draw_for(&image, -1, 0, [2, 2], true);
        assert_eq!(applied(&transform, &image, &draw).pixels, [0, 0, 2, 1]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let draws: Vec<Draw> = (0..200).map(|_| transform.draw(image.shape, &mut rng)).collect();
        for offset in -1..=1 {
            assert!(draws.iter().any(|d| d.window.top == offset && d.window.left == -offset));
        }
        assert!(draws
            .iter()
            .all(|d| d.window.top.abs() <= 1 && d.window.left.abs() <= 1));
        assert!(draws.iter().any(|d| d.flip) && draws.iter().any(|d| !d.flip));
    }

    #[test]
    fn random_resized_crop_resizes_the_drawn_crop_and_flips() {
        let image = counting([1, 4, 4]);
        let transform = Transform::random_resized_crop(2);
        let draw = draw_for(&image, 1, 2, [2, 2], true);
        assert_eq!(applied(&transform, &image, &draw).pixels, [8, 7, 12, 11]);
        assert_eq!(transform.min_decode_size(&draw), [4, 4]);
        let quarter = draw_for(&image, 0, 0, [1, 2], false);
        assert_eq!(transform.min_decode_size(&quarter), [8, 4]);
    }

    #[test]
    fn random_resized_crops_respect_their_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let transform = Transform::random_resized_crop(224);
        let (mut ratios, mut areas) = (Vec::new(), Vec::new());
        for _ in 0..2000 {
            let Draw { window: w, .. } = transform.draw([3, 375, 500], &mut rng);
            assert!(w.top >= 0 && w.left >= 0 && w.height > 0 && w.width > 0, "{w:?}");
            assert!(
                w.top as usize + w.height <= 375 && w.left as usize + w.width <= 500,
                "{w:?}"
            );
            let (h, wd) = (w.height as f64, w.width as f64);
            // Rounding moves each side by at most half a pixel.
            assert!(
                (wd + 0.5) / (h - 0.5) >= 0.75 && (wd - 0.5) / (h + 0.5) <= 4.0 / 3.0,
                "{w:?}"
            );
            assert!((h + 0.5) * (wd + 0.5) >= 0.08 * 375.0 * 500.0, "{w:?}");
            ratios.push(wd / h);
            areas.push(h * wd / (375.0 * 500.0));
        }
        let spread = |v: &[f64]| {
            (
                v.iter().cloned().fold(f64::MAX, f64::min),
                v.iter().cloned().fold(0.0, f64::max),
            )
        };
        let (ratio_low, ratio_high) = spread(&ratios);
        let (area_low, area_high) = spread(&areas);
        assert!(ratio_low < 0.8 && ratio_high > 1.25, "ratios {ratio_low}..{ratio_high}");
        assert!(area_low < 0.1 && area_high > 0.9, "areas {area_low}..{area_high}");
        // No crop of a 20 x 1000 strip fits: the central crop of the widest ratio.
        let Draw { window, .. } = transform.draw([3, 20, 1000], &mut rng);
        assert_eq!((window.top, window.left, window.height, window.width), (0, 486, 20, 27));
    }

    #[test]
    fn resize_center_crop_follows_torchvision() {
        assert_eq!(
            Transform::resize_center_crop(224),
            Transform::ResizeCenterCrop { resize: 256, size: 224 }
        );
        assert_eq!(
            Transform::resize_center_crop(64),
            Transform::ResizeCenterCrop { resize: 73, size: 64 }
        );
        assert_eq!(shorter_side_to(256, 375, 500), [256, 341]);
        assert_eq!(shorter_side_to(256, 500, 375), [341, 256]);
        // No resize (the shorter side is 3 already), then a crop at (round(0.5), round(1.5)).
        let image = counting([1, 3, 5]);
        let transform = Transform::ResizeCenterCrop { resize: 3, size: 2 };
        let draw = transform.draw(image.shape, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(transform.min_decode_size(&draw), [3, 5]);
        assert_eq!(applied(&transform, &image, &draw).pixels, [3, 4, 8, 9]);
        // A crop larger than the resized image pads it.
        let transform = Transform::ResizeCenterCrop { resize: 3, size: 4 };
        assert_eq!(
            applied(&transform, &image, &draw).pixels,
            [1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 0, 0, 0, 0]
        );
    }

    #[test]
    fn the_same_rng_gives_the_same_output() {
        let image = counting([3, 30, 40]);
        let run = |seed| {
            let (mut scratch, mut out) = (Image::default(), Image::default());
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            Transform::random_resized_crop(16).apply(&image, &mut rng, &mut scratch, &mut out);
            out
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
