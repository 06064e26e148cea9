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
use crate::{decode_region, read_shape, DataError, DecodeError, Image, ImageSource, Normalization, Transform};

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
    /// An encoded file, decoded.
    decoded: Image,
    resized: Image,
    shaped: Image,
}

impl Scratch {
    /// The shape of the last network input made.
    pub fn output_shape(&self) -> [usize; 3] {
        self.shaped.shape
    }
}

/// Samples in their stored form, before the split's transform (what a rehearsal buffer keeps
/// with `'store': 'raw'`): one record per sample, the records one after the other.
///
/// A record is a tag byte, then: for an encoded file (tag 1), the file's bytes; for pixels
/// (tag 0; images held in memory, seen through the scenario's view), the channels, height and
/// width as little-endian u32 and the planar 8-bit pixels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub bytes: Vec<u8>,
    /// The length of each record.
    pub lengths: Vec<u32>,
}

const PIXELS: u8 = 0;
const ENCODED: u8 = 1;

impl Records {
    /// The number of records.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    fn push(&mut self, stored: &Stored) {
        let start = self.bytes.len();
        match stored {
            Stored::Encoded(bytes) => {
                self.bytes.push(ENCODED);
                self.bytes.extend_from_slice(bytes);
            }
            Stored::Pixels(image) => {
                self.bytes.push(PIXELS);
                for dim in image.shape {
                    self.bytes.extend_from_slice(&(dim as u32).to_le_bytes());
                }
                self.bytes.extend_from_slice(&image.pixels);
            }
        }
        self.lengths.push((self.bytes.len() - start) as u32);
    }
}

/// An image before the split's transform.
enum Stored<'a> {
    /// A file to decode (JPEG, PNG).
    Encoded(&'a [u8]),
    /// Pixels seen through the scenario's view.
    Pixels(&'a Image),
}

impl<'a> Stored<'a> {
    /// Reads a record written by [`Records`], its pixels (if any) into `pixels`.
    fn parse(record: &'a [u8], pixels: &'a mut Image) -> Result<Self, String> {
        match record.split_first() {
            Some((&ENCODED, bytes)) => Ok(Stored::Encoded(bytes)),
            Some((&PIXELS, rest)) if rest.len() >= 12 => {
                let (dims, values) = rest.split_at(12);
                let dim = |i: usize| u32::from_le_bytes(dims[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize;
                let shape = [dim(0), dim(1), dim(2)];
                if shape.iter().product::<usize>() != values.len() {
                    return Err(format!("{} pixels for an image of shape {shape:?}", values.len()));
                }
                pixels.shape = shape;
                pixels.pixels.clear();
                pixels.pixels.extend_from_slice(values);
                Ok(Stored::Pixels(pixels))
            }
            _ => Err("not a stored sample".to_owned()),
        }
    }
}

impl Pipeline {
    /// The shape of the network inputs made of images of `stored` shape.
    pub fn output_shape(&self, stored: [usize; 3]) -> [usize; 3] {
        self.transform.output_shape(stored)
    }

    /// Appends the network input made of image `index` of `source`, seen through `view`, to
    /// `out`, normalised with `tables` ([`Normalization::lookup_tables`]); `rng` makes the
    /// transform's random choices. With `records`, also appends the image's stored form.
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
        records: Option<&mut Records>,
    ) -> Result<(), DataError> {
        let Scratch {
            read,
            viewed,
            decoded,
            resized,
            shaped,
        } = scratch;
        let encoded = source.encoded(index)?;
        let stored = match &encoded {
            Some(bytes) => Stored::Encoded(bytes),
            None => {
                source.read(index, read)?;
                Stored::Pixels(apply_view(read, view, viewed))
            }
        };
        if let Some(records) = records {
            records.push(&stored);
        }
        self.shape(&stored, rng, decoded, resized, shaped)
            .map_err(|e| source.corrupt(index, e))?;
        normalize(shaped, tables, out);
        Ok(())
    }

    /// Appends the network input made of a record of [`Records`] to `out`, as
    /// [`Pipeline::extend`] does with the image itself: a replayed sample gets the random
    /// choices of `rng`, not those it had when it was stored.
    pub fn extend_from_record(
        &self,
        record: &[u8],
        rng: &mut impl Rng,
        scratch: &mut Scratch,
        tables: &[[f32; 256]; 3],
        out: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        let Scratch {
            read,
            decoded,
            resized,
            shaped,
            ..
        } = scratch;
        let corrupt = |reason: String| DataError::corrupt("a stored sample", reason);
        let stored = Stored::parse(record, read).map_err(corrupt)?;
        self.shape(&stored, rng, decoded, resized, shaped)
            .map_err(|e| corrupt(e.to_string()))?;
        normalize(shaped, tables, out);
        Ok(())
    }

    /// Runs the transform on `stored` into `shaped`; an encoded file is decoded at the
    /// reduced size its crop needs and only over the window it reads, drawn before decoding.
    fn shape(
        &self,
        stored: &Stored,
        rng: &mut impl Rng,
        decoded: &mut Image,
        resized: &mut Image,
        shaped: &mut Image,
    ) -> Result<(), DecodeError> {
        match stored {
            Stored::Encoded(bytes) => {
                let draw = self.transform.draw(read_shape(bytes)?, rng);
                let placement = decode_region(bytes, self.transform.min_decode_size(&draw), draw.window, decoded)?;
                self.transform.apply_drawn(&draw, decoded, placement, resized, shaped);
                Ok(())
            }
            Stored::Pixels(image) => {
                self.transform.apply(image, rng, resized, shaped);
                Ok(())
            }
        }
    }
}

/// `image` seen through `view`: itself, or its pixels permuted or resampled into `viewed`.
fn apply_view<'a>(image: &'a Image, view: &View, viewed: &'a mut Image) -> &'a Image {
    match view {
        View::Identity => image,
        View::Permutation(permutation) => {
            viewed.shape = image.shape;
            viewed.pixels.clear();
            viewed
                .pixels
                .extend(permutation.iter().map(|&i| image.pixels[i as usize]));
            viewed
        }
        View::Resampled(resampling) => {
            resample(image, resampling, viewed);
            viewed
        }
    }
}

/// Appends the pixels of `image` to `out`, each channel through its table of
/// [`Normalization::lookup_tables`].
fn normalize(image: &Image, tables: &[[f32; 256]; 3], out: &mut Vec<f32>) {
    let plane = image.plane_len();
    for (channel, values) in image.pixels.chunks_exact(plane).enumerate() {
        let table = &tables[channel.min(2)];
        out.extend(values.iter().map(|&b| table[b as usize]));
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
            .extend(
                &set,
                0,
                view,
                &mut rng,
                &mut Scratch::default(),
                &tables,
                &mut out,
                None,
            )
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

    #[test]
    fn a_record_replays_the_viewed_image_with_the_random_choices_of_its_replay() {
        let set = ImageSet {
            images: (0..2 * 2 * 6 * 6).map(|v| v as u8).collect(),
            labels: vec![0, 1],
            image_shape: [2, 6, 6],
        };
        let pipeline = Pipeline {
            transform: Transform::CropFlip { padding: 2 },
            normalization: RAW,
        };
        let tables = pipeline.normalization.lookup_tables();
        let view = View::Resampled(Resampling::rotation(6, 6, 90.0));
        let mut scratch = Scratch::default();
        let (mut direct, mut records) = (Vec::new(), Records::default());
        for index in 0..2 {
            let mut rng = ChaCha8Rng::seed_from_u64(index as u64);
            pipeline
                .extend(
                    &set,
                    index,
                    &view,
                    &mut rng,
                    &mut scratch,
                    &tables,
                    &mut direct,
                    Some(&mut records),
                )
                .unwrap();
        }
        assert_eq!(records.len(), 2);
        assert_eq!(records.lengths, vec![1 + 12 + 72; 2], "tag, shape, pixels");
        // The same random choices make the same inputs; others, others.
        let replay = |seed: u64| {
            let mut out = Vec::new();
            let mut start = 0;
            for (index, &len) in records.lengths.iter().enumerate() {
                let record = &records.bytes[start..start + len as usize];
                start += len as usize;
                let mut rng = ChaCha8Rng::seed_from_u64(seed + index as u64);
                pipeline
                    .extend_from_record(record, &mut rng, &mut Scratch::default(), &tables, &mut out)
                    .unwrap();
            }
            out
        };
        assert_eq!(replay(0), direct);
        assert!((1..5).any(|seed| replay(seed * 10) != direct), "fresh crops and flips");
        let error = pipeline
            .extend_from_record(
                &[0, 1, 2],
                &mut ChaCha8Rng::seed_from_u64(0),
                &mut scratch,
                &tables,
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(error.to_string().contains("a stored sample"), "{error}");
    }
}
