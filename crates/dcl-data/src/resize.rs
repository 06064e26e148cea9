//! Bilinear resizing with antialiasing, pixel for pixel as torchvision's
//! `resize(..., antialias=True)` on uint8 tensors on the CPU (torch's
//! `_upsample_bilinear2d_aa` uint8 kernels, themselves Pillow-SIMD's): separable, a
//! horizontal pass then a vertical pass through an 8-bit intermediate, the triangle filter
//! stretched by the downscaling factor and renormalised at the edges, its weights in 16-bit
//! fixed point with torch's precision and rounding.

use std::cell::RefCell;
use std::ops::Range;

use crate::Image;

#[cfg(target_arch = "x86_64")]
mod sse2;

/// What to resize: a region of the source, the size it becomes, and the part of the result
/// written out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resize {
    /// The source region: top, left, height, width, in source pixels; fractional for the
    /// regions of a reduced decode. The filter reads no pixel outside the smallest integer
    /// window holding it, as torchvision reads none outside a crop.
    pub source: [f64; 4],
    /// The height and width the region is resized to.
    pub size: [usize; 2],
    /// The part of the resized region written out: top, left, height, width, within `size`
    /// (all of it, or a crop of it computed without the rest).
    pub keep: [usize; 4],
}

impl Resize {
    /// All of an image of `shape` (channels, height, width) resized to `size` (height, width).
    pub fn whole(shape: [usize; 3], size: [usize; 2]) -> Self {
        Resize::crop([0, 0, shape[1], shape[2]], size)
    }

    /// The crop `region` (top, left, height, width) of an image resized to `size`: torchvision's
    /// `resized_crop`.
    pub fn crop(region: [usize; 4], size: [usize; 2]) -> Self {
        Resize {
            source: region.map(|v| v as f64),
            size,
            keep: [0, 0, size[0], size[1]],
        }
    }
}

/// Resizes `src` as `spec` says into `out` (shape: `src`'s channels, `keep`'s height and
/// width), with `scratch` for the intermediate; reuses all buffers.
///
/// # Panics
/// If `keep` reaches past `size`.
pub fn resize(src: &Image, spec: &Resize, scratch: &mut Image, out: &mut Image) {
    let [top, left, height, width] = spec.keep;
    assert!(
        top + height <= spec.size[0] && left + width <= spec.size[1],
        "resize: keep {:?} reaches past the size {:?}",
        spec.keep,
        spec.size
    );
    if height == 0 || width == 0 {
        out.reshape([src.shape[0], height, width]);
        return;
    }
    thread_local! {
        static RESAMPLER: RefCell<Resampler> = RefCell::default();
    }
    RESAMPLER.with_borrow_mut(|resampler| {
        let [_, source_height, source_width] = src.shape;
        let [y, x, h, w] = spec.source;
        resampler
            .rows
            .compute(source_height, y, h, spec.size[0], top..top + height);
        resampler
            .columns
            .compute(source_width, x, w, spec.size[1], left..left + width);
        resampler.run(src, scratch, out);
    });
}

/// The reusable state of resizes on one thread: both axes' taps, a padded source row and a
/// row of sums.
#[derive(Debug, Default)]
struct Resampler {
    rows: Axis,
    columns: Axis,
    row: Vec<u8>,
    sums: Vec<i32>,
}

/// The horizontal pass reads pixels and weights by groups of this many: one `pmaddwd` on x86.
const GROUP: usize = 8;

impl Resampler {
    fn run(&mut self, src: &Image, scratch: &mut Image, out: &mut Image) {
        let [channels, _, source_width] = src.shape;
        let (rows, columns) = (&self.rows, &self.columns);
        let width = columns.kept.len();
        // The source rows that the kept output rows read.
        let needed = rows
            .kept
            .clone()
            .map(|i| rows.first[i]..rows.first[i] + rows.counts[i])
            .filter(|range| !range.is_empty())
            .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
            .unwrap_or(0..0);
        scratch.reshape([channels, needed.len(), width]);
        // The row's window, then zeros for the groups that reach past it.
        self.row.clear();
        self.row.resize(columns.window + columns.span, 0);
        for c in 0..channels {
            let plane = src.plane(c);
            let inter = scratch.plane_mut(c);
            for (r, row_out) in needed.clone().zip(inter.chunks_exact_mut(width.max(1))) {
                let start = (rows.origin + r) * source_width + columns.origin;
                self.row[..columns.window].copy_from_slice(&plane[start..start + columns.window]);
                filter_row(columns, &self.row, row_out);
            }
        }
        out.reshape([channels, rows.kept.len(), width]);
        for c in 0..channels {
            let inter = scratch.plane(c);
            let plane = out.plane_mut(c);
            for (row_out, i) in plane.chunks_exact_mut(width.max(1)).zip(rows.kept.clone()) {
                let count = rows.counts[i];
                let sources = match count {
                    0 => &[][..],
                    _ => &inter[(rows.first[i] - needed.start) * width..][..count * width],
                };
                blend_rows(rows, sources, &rows.weights(i)[..count], &mut self.sums, row_out);
            }
        }
    }
}

/// One row of the vertical pass: `out[x]` is the sum over `k` of `weights[k]` times pixel `x`
/// of row `k` of `sources` (`weights.len()` rows of `out.len()` pixels), narrowed as `rows`
/// narrows. Eight at a time with SSE2 on x86-64, the rest one at a time through `sums`.
fn blend_rows(rows: &Axis, sources: &[u8], weights: &[i16], sums: &mut Vec<i32>, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    let done = sse2::blend_by_eights(sources, weights, rows.precision, out);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    blend_scalar(rows, sources, weights, done, sums, out);
}

/// [`blend_rows`] one output at a time, from output `from` on.
fn blend_scalar(rows: &Axis, sources: &[u8], weights: &[i16], from: usize, sums: &mut Vec<i32>, out: &mut [u8]) {
    let width = out.len();
    sums.clear();
    sums.resize(width - from, 0);
    for (k, &w) in weights.iter().enumerate() {
        for (sum, &p) in sums.iter_mut().zip(&sources[k * width + from..(k + 1) * width]) {
            *sum += p as i32 * w as i32;
        }
    }
    for (value, &sum) in out[from..].iter_mut().zip(sums.iter()) {
        *value = rows.narrow(sum);
    }
}

/// One row of the horizontal pass: `out[i]` is output `columns.kept.start + i` of `row` (the
/// window of a source row, then at least `span` zeros). Four at a time with SSE2 on x86-64
/// when they read at most [`GROUP`] pixels each (downscaling by at most 3, or upscaling), the
/// rest one at a time.
fn filter_row(columns: &Axis, row: &[u8], out: &mut [u8]) {
    let firsts = &columns.first[columns.kept.clone()];
    let weights = &columns.fixed[columns.kept.start * columns.span..];
    #[cfg(target_arch = "x86_64")]
    let done = if columns.span == GROUP {
        sse2::filter_by_fours(row, firsts, weights, columns.precision, out)
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    let span = columns.span;
    filter_scalar(columns, row, &firsts[done..], &weights[done * span..], &mut out[done..]);
}

/// [`filter_row`] one output at a time: `out[i]` from the pixels of `row` from `firsts[i]`
/// and weights `i` of `weights`.
fn filter_scalar(columns: &Axis, row: &[u8], firsts: &[usize], weights: &[i16], out: &mut [u8]) {
    let span = columns.span;
    for ((value, &first), weights) in out.iter_mut().zip(firsts).zip(weights.chunks_exact(span)) {
        let pixels = row[first..first + span].chunks_exact(GROUP);
        let sum = pixels.zip(weights.chunks_exact(GROUP)).map(dot).sum();
        *value = columns.narrow(sum);
    }
}

/// The dot product of [`GROUP`] pixels and weights.
#[inline]
fn dot((pixels, weights): (&[u8], &[i16])) -> i32 {
    let products = |(p, w): (&[u8; GROUP], &[i16; GROUP])| (0..GROUP).map(|k| p[k] as i16 as i32 * w[k] as i32).sum();
    pixels.first_chunk().zip(weights.first_chunk()).map_or(0, products)
}

/// The taps of one axis: for every output index, the source pixels it reads and their weights.
#[derive(Debug, Default)]
struct Axis {
    /// The first source pixel of the window read.
    origin: usize,
    /// The window's length.
    window: usize,
    /// The output indices computed.
    kept: Range<usize>,
    /// Per output index, the first pixel read (from `origin`) and how many.
    first: Vec<usize>,
    counts: Vec<usize>,
    /// Per output index, `span` weights scaled by `2^precision`: torch's, then zeros.
    fixed: Vec<i16>,
    /// A whole number of groups of weights, at least as many as the most pixels read.
    span: usize,
    /// torch's weights as floats, `taps` per output index.
    float: Vec<f64>,
    precision: u32,
}

impl Axis {
    /// The taps mapping `output` indices onto the span `[start, start + length)` of an axis of
    /// `input` source pixels (torch's `_compute_index_ranges_int16_weights` when the span is
    /// the whole axis), for the outputs `kept`.
    fn compute(&mut self, input: usize, start: f64, length: f64, output: usize, kept: Range<usize>) {
        self.origin = (start.floor().max(0.0) as usize).min(input);
        self.window = ((start + length).ceil().max(0.0) as usize).clamp(self.origin, input) - self.origin;
        self.kept = kept;
        let start = start - self.origin as f64;
        let scale = length / output as f64;
        let (support, inverse) = if scale >= 1.0 { (scale, 1.0 / scale) } else { (1.0, 1.0) };
        let taps = support.ceil() as usize * 2 + 1;
        self.first.clear();
        self.counts.clear();
        self.float.clear();
        self.float.resize(output * taps, 0.0);
        let mut max = 0.0f64;
        for (i, weights) in self.float.chunks_exact_mut(taps).enumerate() {
            let center = start + scale * (i as f64 + 0.5);
            let first = ((center - support + 0.5) as i64).max(0);
            let count = (((center + support + 0.5) as i64).min(self.window as i64) - first).clamp(0, taps as i64);
            let weights = &mut weights[..count as usize];
            for (j, weight) in weights.iter_mut().enumerate() {
                *weight = triangle(((j as i64 + first) as f64 - center + 0.5) * inverse);
            }
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                for weight in weights.iter_mut() {
                    *weight /= total;
                    max = max.max(*weight);
                }
            }
            // An output reading nothing starts at the window's end.
            self.first.push(if count > 0 { first as usize } else { self.window });
            self.counts.push(count as usize);
        }
        // The largest precision at which the largest weight still fits in 15 bits.
        self.precision = (0..22)
            .find(|p| (0.5 + max * f64::from(1 << (p + 1))) as i32 >= 1 << 15)
            .unwrap_or(22);
        let unit = f64::from(1 << self.precision);
        self.span = taps.div_ceil(GROUP) * GROUP;
        self.fixed.clear();
        self.fixed.resize(output * self.span, 0);
        for (fixed, float) in self
            .fixed
            .chunks_exact_mut(self.span)
            .zip(self.float.chunks_exact(taps))
        {
            // Rounded half away from zero, as torch; the weights are never negative.
            for (fixed, w) in fixed.iter_mut().zip(float) {
                *fixed = (0.5 + w * unit) as i16;
            }
        }
    }

    /// The fixed-point weights of output `i`: `span` of them, zero past those it reads.
    fn weights(&self, i: usize) -> &[i16] {
        &self.fixed[i * self.span..(i + 1) * self.span]
    }

    /// A fixed-point sum (never negative: so are the weights) back to a byte: rounded,
    /// saturated.
    #[inline]
    fn narrow(&self, sum: i32) -> u8 {
        ((sum + (1 << self.precision >> 1)) >> self.precision).min(255) as u8
    }
}

/// The bilinear (triangle) filter.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resized(src: &Image, spec: &Resize) -> Image {
        let (mut scratch, mut out) = (Image::default(), Image::default());
        resize(src, spec, &mut scratch, &mut out);
        out
    }

    fn counting_image() -> Image {
        Image {
            pixels: vec![1, 2, 3, 4],
            shape: [1, 2, 2],
        }
    }

    #[test]
    fn same_size_is_a_copy_and_halving_averages_pairs() {
        let src = Image {
            pixels: (0..24).map(|v| v * 10).collect(),
            shape: [2, 3, 4],
        };
        assert_eq!(resized(&src, &Resize::whole(src.shape, [3, 4])), src);
        // 4 -> 2 columns: each output averages two columns, plus a quarter of each neighbour
        // (support 2, weights 1/8, 3/8, 3/8, 1/8; renormalised at the edges: 3/7, 3/7, 1/7).
        let row = Image {
            pixels: vec![0, 70, 140, 210],
            shape: [1, 1, 4],
        };
        assert_eq!(resized(&row, &Resize::whole(row.shape, [1, 2])).pixels, vec![50, 160]);
    }

    #[test]
    fn upscaling_interpolates_and_keep_crops() {
        let src = Image {
            pixels: vec![0, 100],
            shape: [1, 1, 2],
        };
        let whole = resized(&src, &Resize::whole(src.shape, [1, 4]));
        assert_eq!(whole.pixels, vec![0, 25, 75, 100]);
        let spec = Resize {
            keep: [0, 1, 1, 2],
            ..Resize::whole(src.shape, [1, 4])
        };
        assert_eq!(resized(&src, &spec).pixels, vec![25, 75]);
    }

    #[test]
    fn a_crop_reads_nothing_outside_it() {
        let src = Image {
            pixels: vec![255, 10, 20, 255],
            shape: [1, 1, 4],
        };
        assert_eq!(resized(&src, &Resize::crop([0, 1, 1, 2], [1, 1])).pixels, vec![15]);
        let fractional = Resize {
            source: [0.0, 1.5, 1.0, 1.0],
            ..Resize::crop([0, 1, 1, 2], [1, 1])
        };
        assert_eq!(resized(&src, &fractional).pixels, vec![15], "window [1, 3)");
    }

    #[test]
    fn the_horizontal_pass_by_fours_equals_it_one_at_a_time() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        // Downscaling (span 8, then wider), the same size, upscaling; some outputs not kept.
        for (input, output) in [
            (300, 224),
            (500, 223),
            (672, 224),
            (900, 224),
            (224, 224),
            (50, 97),
            (37, 5),
        ] {
            let mut columns = Axis::default();
            columns.compute(input, 0.0, input as f64, output, output / 5..output);
            let mut row: Vec<u8> = (0..columns.window).map(|_| rng.random()).collect();
            for bright in [false, true] {
                if bright {
                    row.fill(255);
                }
                row.resize(columns.window + columns.span, 0);
                let mut by_fours = vec![0; columns.kept.len()];
                let mut one_at_a_time = by_fours.clone();
                filter_row(&columns, &row, &mut by_fours);
                let weights = &columns.fixed[columns.kept.start * columns.span..];
                filter_scalar(
                    &columns,
                    &row,
                    &columns.first[columns.kept.clone()],
                    weights,
                    &mut one_at_a_time,
                );
                assert_eq!(by_fours, one_at_a_time, "{input} -> {output}, bright: {bright}");
                row.truncate(columns.window);
            }
        }
    }

    #[test]
    fn the_vertical_pass_by_eights_equals_it_one_at_a_time() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut sums = Vec::new();
        // Odd and even numbers of taps, widths with and without a remainder of 8.
        for (input, output, width) in [(300, 224, 224), (500, 223, 61), (900, 224, 7), (50, 97, 16), (37, 5, 3)] {
            let mut rows = Axis::default();
            rows.compute(input, 0.0, input as f64, output, 0..output);
            let pixels: Vec<u8> = (0..input * width).map(|_| rng.random()).collect();
            for bright in [pixels, vec![255; input * width]] {
                for i in 0..output {
                    let (first, count) = (rows.first[i], rows.counts[i]);
                    let sources = &bright[first * width..(first + count) * width];
                    let weights = &rows.weights(i)[..count];
                    let (mut by_eights, mut one_at_a_time) = (vec![0; width], vec![0; width]);
                    blend_rows(&rows, sources, weights, &mut sums, &mut by_eights);
                    blend_scalar(&rows, sources, weights, 0, &mut sums, &mut one_at_a_time);
                    assert_eq!(by_eights, one_at_a_time, "{input} -> {output}, output {i}");
                }
            }
        }
    }

    #[test]
    fn empty_sources_and_outputs() {
        let src = Image {
            pixels: vec![],
            shape: [3, 0, 5],
        };
        let out = resized(&src, &Resize::whole(src.shape, [2, 2]));
        assert_eq!((out.shape, out.pixels), ([3, 2, 2], vec![0; 12]));
        let nothing = resized(&counting_image(), &Resize::whole([1, 2, 2], [0, 3]));
        assert_eq!((nothing.shape, nothing.pixels.len()), ([1, 0, 3], 0));
    }
}
