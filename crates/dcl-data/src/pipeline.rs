//! What turns a stored image into a network input: the scenario's view of it (a permutation,
//! a rotation), the split's shaping (padding to `--input-size`), then per-channel
//! normalisation into floats.

use crate::scenario::{Resampling, View};
use crate::{DataError, Image, Normalization};

/// The shaping and normalisation of one split's images.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Pad every image with zeros (black) to this side, centred (an odd margin leaves the
    /// extra row and column at the bottom and right), as torchvision's `Pad`.
    pub pad_to: Option<usize>,
    pub normalization: Normalization,
}

/// Per-thread buffers of the pipeline, reused from sample to sample.
#[derive(Debug, Default)]
pub struct Scratch {
    read: Image,
    viewed: Image,
    shaped: Image,
}

impl Scratch {
    /// The buffer a source reads the stored image into.
    pub fn input(&mut self) -> &mut Image {
        &mut self.read
    }
}

impl Pipeline {
    /// The shape of the network inputs made from images of `stored` shape; fails when the
    /// padding would have to shrink them.
    pub fn output_shape(&self, stored: [usize; 3]) -> Result<[usize; 3], String> {
        let [c, h, w] = stored;
        match self.pad_to {
            None => Ok(stored),
            Some(size) if size >= h && size >= w => Ok([c, size, size]),
            Some(size) => Err(format!(
                "--input-size {size} is below the images' {h}x{w}: only padding is available for this data set"
            )),
        }
    }

    /// Appends the network input made of the image in `scratch.input()`, seen through `view`,
    /// to `out`, normalised with `tables` ([`Normalization::lookup_tables`]).
    pub fn extend(
        &self,
        view: &View,
        scratch: &mut Scratch,
        tables: &[[f32; 256]; 3],
        out: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        let Scratch { read, viewed, shaped } = scratch;
        let viewed = match view {
            View::Identity => &*read,
            View::Permutation(permutation) => {
                viewed.shape = read.shape;
                viewed.pixels.clear();
                viewed
                    .pixels
                    .extend(permutation.iter().map(|&i| read.pixels[i as usize]));
                &*viewed
            }
            View::Resampled(resampling) => {
                resample(read, resampling, viewed);
                &*viewed
            }
        };
        let shaped = match self.pad_to {
            Some(size) if viewed.shape[1..] != [size, size] => {
                pad(viewed, size, shaped);
                &*shaped
            }
            _ => viewed,
        };
        let [c, h, w] = shaped.shape;
        for (channel, plane) in shaped.pixels.chunks_exact(h * w).enumerate().take(c) {
            let table = &tables[channel.min(2)];
            out.extend(plane.iter().map(|&b| table[b as usize]));
        }
        Ok(())
    }
}

/// Each channel of `image` resampled through the taps of `resampling`, rounded to bytes
/// (taps outside the image read black), into `out`.
fn resample(image: &Image, resampling: &Resampling, out: &mut Image) {
    let [c, h, w] = image.shape;
    out.reshape([c, h, w]);
    for (source, target) in image.pixels.chunks_exact(h * w).zip(out.pixels.chunks_exact_mut(h * w)) {
        for (value, taps) in target.iter_mut().zip(&resampling.taps) {
            let sum: f32 = taps
                .iter()
                .filter(|(i, _)| *i != Resampling::OUTSIDE)
                .map(|&(i, weight)| weight * source[i as usize] as f32)
                .sum();
            *value = sum.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// `image` padded with zeros to `size` x `size`, centred, into `out`.
fn pad(image: &Image, size: usize, out: &mut Image) {
    let [c, h, w] = image.shape;
    out.reshape([c, size, size]);
    out.pixels.fill(0);
    let (top, left) = ((size - h) / 2, (size - w) / 2);
    for (padded, channel) in out
        .pixels
        .chunks_exact_mut(size * size)
        .zip(image.pixels.chunks_exact(h * w))
    {
        for (y, row) in channel.chunks_exact(w).enumerate() {
            let start = (top + y) * size + left;
            padded[start..start + w].copy_from_slice(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes as they are: mean 0, std 1/255.
    const RAW: Normalization = Normalization::uniform(0.0, 1.0 / 255.0);

    fn run(pipeline: &Pipeline, view: &View, image: Image) -> Vec<f32> {
        let mut scratch = Scratch::default();
        *scratch.input() = image;
        let mut out = Vec::new();
        pipeline
            .extend(view, &mut scratch, &pipeline.normalization.lookup_tables(), &mut out)
            .unwrap();
        out.iter().map(|v| v.round()).collect()
    }

    fn image(pixels: &[u8], shape: [usize; 3]) -> Image {
        Image {
            pixels: pixels.to_vec(),
            shape,
        }
    }

    #[test]
    fn padding_centres_every_channel_and_refuses_to_shrink() {
        let pipeline = Pipeline {
            pad_to: Some(4),
            normalization: RAW,
        };
        #[rustfmt::skip]
        let expected = [
            0.0, 0.0, 0.0, 0.0,  0.0, 1.0, 2.0, 0.0,  0.0, 3.0, 4.0, 0.0,  0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0,  0.0, 5.0, 6.0, 0.0,  0.0, 7.0, 8.0, 0.0,  0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(
            run(&pipeline, &View::Identity, image(&[1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2])),
            expected
        );
        assert_eq!(pipeline.output_shape([2, 2, 2]).unwrap(), [2, 4, 4]);
        let odd = Pipeline {
            pad_to: Some(3),
            ..pipeline.clone()
        };
        assert_eq!(
            run(&odd, &View::Identity, image(&[1, 2, 3, 4], [1, 2, 2]))[..6],
            [1.0, 2.0, 0.0, 3.0, 4.0, 0.0]
        );
        let message = Pipeline {
            pad_to: Some(1),
            ..pipeline
        }
        .output_shape([1, 2, 2])
        .unwrap_err();
        assert!(message.contains("--input-size 1 is below the images' 2x2"), "{message}");
    }

    #[test]
    fn views_apply_before_padding_and_channels_normalise_apart() {
        let pipeline = Pipeline {
            pad_to: None,
            normalization: Normalization {
                mean: [0.0, 1.0, 0.0],
                std: [1.0 / 255.0; 3],
            },
        };
        let permuted = View::Permutation(vec![3, 2, 1, 0, 7, 6, 5, 4]);
        let out = run(&pipeline, &permuted, image(&[1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]));
        assert_eq!(
            out,
            vec![4.0, 3.0, 2.0, 1.0, 8.0 - 255.0, 7.0 - 255.0, 6.0 - 255.0, 5.0 - 255.0]
        );
        // A half-turn of a 2x2 plane is the reversed plane.
        let turned = View::Resampled(Resampling::rotation(2, 2, 180.0));
        assert_eq!(
            run(&pipeline, &turned, image(&[10, 20, 30, 40], [1, 2, 2])),
            vec![40.0, 30.0, 20.0, 10.0]
        );
    }
}
