//! Both passes of the resize several outputs at a time with SSE2 (every x86-64 CPU has it).
//! The horizontal pass, for outputs that read at most [`GROUP`] pixels: each output's pixels
//! and weights multiplied and added pairwise (`pmaddwd`) into a vector of its own, four such
//! vectors summed across at once, then rounded, shifted and saturated to bytes together. The
//! vertical pass: eight columns of two rows interleaved, multiplied by the two rows' weights
//! and added the same way. Integer arithmetic, so the values are the scalar passes'.

use std::arch::x86_64::*;

use super::GROUP;

/// Writes the outputs of `out` by fours, as [`filter_row`](super::filter_row) defines them
/// for a span of [`GROUP`] weights per output, and returns how many it wrote (`out.len()`
/// rounded down to a multiple of 4).
pub(super) fn filter_by_fours(row: &[u8], firsts: &[usize], weights: &[i16], precision: u32, out: &mut [u8]) -> usize {
    let quads = out
        .chunks_exact_mut(4)
        .zip(firsts.chunks_exact(4))
        .zip(weights.chunks_exact(4 * GROUP));
    let mut done = 0;
    // SAFETY: SSE2 is part of x86-64; each load reads an array of its size: GROUP pixels
    // (8 bytes), GROUP weights (16 bytes).
    unsafe {
        let zero = _mm_setzero_si128();
        let half = _mm_set1_epi32(1 << precision >> 1);
        let shift = _mm_cvtsi32_si128(precision as i32);
        for ((values, firsts), weights) in quads {
            let mut sums = [zero; 4];
            for ((sum, &first), weights) in sums.iter_mut().zip(firsts).zip(weights.chunks_exact(GROUP)) {
                let pixels: &[u8; GROUP] = row[first..].first_chunk().expect("the row is padded by a span");
                let pixels = _mm_unpacklo_epi8(_mm_loadl_epi64(pixels.as_ptr().cast()), zero);
                *sum = _mm_madd_epi16(pixels, _mm_loadu_si128(weights.as_ptr().cast()));
            }
            // Summed across: a0+a2 b0+b2 a1+a3 b1+b3 and alike for c, d, then the halves.
            let ab = _mm_add_epi32(
                _mm_unpacklo_epi32(sums[0], sums[1]),
                _mm_unpackhi_epi32(sums[0], sums[1]),
            );
            let cd = _mm_add_epi32(
                _mm_unpacklo_epi32(sums[2], sums[3]),
                _mm_unpackhi_epi32(sums[2], sums[3]),
            );
            let totals = _mm_add_epi32(_mm_unpacklo_epi64(ab, cd), _mm_unpackhi_epi64(ab, cd));
            // Never negative: saturating to i16 then u8 is `min(255)`.
            let narrowed = _mm_sra_epi32(_mm_add_epi32(totals, half), shift);
            let bytes = _mm_packus_epi16(_mm_packs_epi32(narrowed, zero), zero);
            values.copy_from_slice(&_mm_cvtsi128_si32(bytes).to_le_bytes());
            done += 4;
        }
    }
    done
}

/// Writes the outputs of `out` by eights, as [`blend_rows`](super::blend_rows) defines them,
/// and returns how many it wrote (`out.len()` rounded down to a multiple of 8): the rows'
/// pixels by pairs, interleaved, multiplied by a pair of weights and added (`pmaddwd`).
pub(super) fn blend_by_eights(sources: &[u8], weights: &[i16], precision: u32, out: &mut [u8]) -> usize {
    let width = out.len();
    let mut done = 0;
    // SAFETY: SSE2 is part of x86-64; each load reads an array of 8 bytes.
    unsafe {
        let zero = _mm_setzero_si128();
        let half = _mm_set1_epi32(1 << precision >> 1);
        let shift = _mm_cvtsi32_si128(precision as i32);
        let load = |row: usize, x: usize| {
            let pixels: &[u8; 8] = sources[row * width + x..]
                .first_chunk()
                .expect("rows of `width` pixels");
            _mm_loadl_epi64(pixels.as_ptr().cast())
        };
        for (x, values) in (0..).step_by(8).zip(out.chunks_exact_mut(8)) {
            let (mut low, mut high) = (zero, zero);
            for (pair, w) in weights.chunks(2).enumerate() {
                let (first, second, w) = match *w {
                    [w0, w1] => (load(2 * pair, x), load(2 * pair + 1, x), [w0, w1]),
                    _ => (load(2 * pair, x), zero, [w[0], 0]),
                };
                // i16 lanes: first[0] second[0] first[1] second[1] …; i32 lanes: w0 w1.
                let both = _mm_unpacklo_epi8(first, second);
                let w = _mm_set1_epi32(w[0] as u16 as i32 | (w[1] as i32) << 16);
                low = _mm_add_epi32(low, _mm_madd_epi16(_mm_unpacklo_epi8(both, zero), w));
                high = _mm_add_epi32(high, _mm_madd_epi16(_mm_unpackhi_epi8(both, zero), w));
            }
            // Never negative: saturating to i16 then u8 is `min(255)`.
            let low = _mm_sra_epi32(_mm_add_epi32(low, half), shift);
            let high = _mm_sra_epi32(_mm_add_epi32(high, half), shift);
            let bytes = _mm_packus_epi16(_mm_packs_epi32(low, high), zero);
            values.copy_from_slice(&_mm_cvtsi128_si64(bytes).to_le_bytes());
            done += 8;
        }
    }
    done
}
