//! What turns a stored image into a network input: the scenario's view of it (a permutation,
//! a rotation), the split's transform (upstream's preprocessing: padding, crops, flips,
//! resizing), then per-channel normalisation into floats. Random choices come from the
//! caller's per-sample RNG.
//!
//! Images of file-backed sources are decoded at the reduced size their crop needs (JPEG's
//! DCT-domain scaling), and only over the window the transform reads, both drawn before
//! decoding.

use rand::Rng;

use crate::scenario::{Resampling, View};
use crate::{decode_region, read_shape, DataError, Image, ImageSource, Normalization, Transform};

/// The transform and normalisation of one split's images.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub transform: Transform,
    pub normalization: Normalization,
}

/// Per-thread buffers of the pipeline, reused from sample to sample.
#[derive(Debug, Default)]
pub struct Scratch {
    read: Image,
    viewed: Image,
    resized: Image,
    shaped: Image,
}

impl Scratch {
    /// The shape of the last network input made.
    pub fn output_shape(&self) -> [usize; 3] {
        self.shaped.shape
    }
}

impl Pipeline {
    /// The shape of the network inputs made of images of `stored` shape.
    pub fn output_shape(&self, stored: [usize; 3]) -> [usize; 3] {
        self.transform.output_shape(stored)
    }

    /// Appends the network input made of image `index` of `source`, seen through `view`, to
    /// `out`, normalised with `tables` ([`Normalization::lookup_tables`]); `rng` makes the
    /// transform's random choices.
    #[allow(clippy::too_many_arguments)]
    pub fn extend(
        &self,
        source: &dyn ImageSource,
        index: usize,
        view: &View,
        rng: &mut impl Rng,
        scratch: &mut Scratch,
        tables: &[[f32; 256]; 3],
        out: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        let Scratch {
            read,
            viewed,
            resized,
            shaped,
        } = scratch;
        match source.encoded(index)? {
            Some(bytes) => {
                let corrupt = |e| source.corrupt(index, e);
                let draw = self.transform.draw(read_shape(&bytes).map_err(corrupt)?, rng);
                let min_size = self.transform.min_decode_size(&draw);
                let placement = decode_region(&bytes, min_size, draw.window, read).map_err(corrupt)?;
                self.transform.apply_drawn(&draw, read, placement, resized, shaped);
            }
            None => {
                source.read(index, read)?;
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
                self.transform.apply(viewed, rng, resized, shaped);
            }
        }
        let plane = shaped.plane_len();
        for (channel, values) in shaped.pixels.chunks_exact(plane).enumerate() {
            let table = &tables[channel.min(2)];
            out.extend(values.iter().map(|&b| table[b as usize]));
        }
        Ok(())
    }
}

/// Each channel of `image` resampled through the taps of `resampling`, rounded to bytes
/// (taps outside the image read black), into `out`.
fn resample(image: &Image, resampling: &Resampling, out: &mut Image) {
    out.reshape(image.shape);
    let plane = image.plane_len();
    for (source, target) in image.pixels.chunks_exact(plane).zip(out.pixels.chunks_exact_mut(plane)) {
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::ImageSet;

    /// Bytes as they are: mean 0, std 1/255.
    const RAW: Normalization = Normalization::uniform(0.0, 1.0 / 255.0);

    fn run(pipeline: &Pipeline, view: &View, pixels: &[u8], shape: [usize; 3]) -> Vec<f32> {
        let set = ImageSet {
            images: pixels.to_vec(),
            labels: vec![0],
            image_shape: shape,
        };
        let mut out = Vec::new();
        let tables = pipeline.normalization.lookup_tables();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        pipeline
            .extend(&set, 0, view, &mut rng, &mut Scratch::default(), &tables, &mut out)
            .unwrap();
        out.iter().map(|v| v.round()).collect()
    }

    #[test]
    fn padding_centres_every_channel() {
        let pipeline = Pipeline {
            transform: Transform::Pad { size: 4 },
            normalization: RAW,
        };
        #[rustfmt::skip]
        let expected = [
            0.0, 0.0, 0.0, 0.0,  0.0, 1.0, 2.0, 0.0,  0.0, 3.0, 4.0, 0.0,  0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0,  0.0, 5.0, 6.0, 0.0,  0.0, 7.0, 8.0, 0.0,  0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(
            run(&pipeline, &View::Identity, &[1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]),
            expected
        );
        assert_eq!(pipeline.output_shape([2, 2, 2]), [2, 4, 4]);
    }

    #[test]
    fn views_apply_before_the_transform_and_channels_normalise_apart() {
        let pipeline = Pipeline {
            transform: Transform::Identity,
            normalization: Normalization {
                mean: [0.0, 1.0, 0.0],
                std: [1.0 / 255.0; 3],
            },
        };
        let permuted = View::Permutation(vec![3, 2, 1, 0, 7, 6, 5, 4]);
        let out = run(&pipeline, &permuted, &[1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]);
        assert_eq!(
            out,
            vec![4.0, 3.0, 2.0, 1.0, 8.0 - 255.0, 7.0 - 255.0, 6.0 - 255.0, 5.0 - 255.0]
        );
        // A half-turn of a 2x2 plane is the reversed plane.
        let turned = View::Resampled(Resampling::rotation(2, 2, 180.0));
        assert_eq!(
            run(&pipeline, &turned, &[10, 20, 30, 40], [1, 2, 2]),
            vec![40.0, 30.0, 20.0, 10.0]
        );
        // Padded after the view: the view's indices are the stored image's.
        let padded = Pipeline {
            transform: Transform::Pad { size: 4 },
            ..pipeline
        };
        assert_eq!(run(&padded, &turned, &[10, 20, 30, 40], [1, 2, 2])[5..7], [40.0, 30.0]);
    }
}
