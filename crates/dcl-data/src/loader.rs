//! The prefetching loader: a background thread that shuffles sample indices, assembles
//! normalised minibatches and hands them over through a bounded queue, so a training step
//! never waits for data.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::scenario::{Resampling, SampleRef, View};
use crate::{ImageSet, Normalization};

/// Where a loader's samples come from: a split, the views its samples refer to, and the
/// normalisation of its pixels.
#[derive(Debug, Clone)]
pub struct LoaderSource {
    pub set: Arc<ImageSet>,
    pub views: Arc<Vec<View>>,
    pub normalization: Normalization,
}

impl LoaderSource {
    /// Appends the normalised values of `sample` to `out`, through its view.
    fn extend_with(&self, sample: SampleRef, table: &[f32; 256], out: &mut Vec<f32>) {
        let image = self.set.image(sample.index as usize);
        match &self.views[sample.view as usize] {
            View::Identity => out.extend(image.iter().map(|&b| table[b as usize])),
            View::Permutation(p) => out.extend(p.iter().map(|&i| table[image[i as usize] as usize])),
            View::Resampled(resampling) => {
                let plane = resampling.taps.len();
                for channel in image.chunks(plane) {
                    out.extend(resampling.taps.iter().map(|taps| {
                        taps.iter()
                            .map(|&(i, w)| {
                                let byte = if i == Resampling::OUTSIDE {
                                    0
                                } else {
                                    channel[i as usize]
                                };
                                w * table[byte as usize]
                            })
                            .sum::<f32>()
                    }));
                }
            }
        }
    }
}

/// Shuffles `samples` with `seed` (the one shuffle of every pass, whoever splits it);
/// `None` keeps their order.
fn shuffle(samples: &mut [SampleRef], seed: Option<u64>) {
    if let Some(seed) = seed {
        samples.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    }
}

/// This rank's share of one pass over `samples` (PyTorch's `DistributedSampler`): the list is
/// shuffled with `shuffle_seed` (the same on every rank), padded by repeating its start to a
/// multiple of `size` when `pad` (so that every rank takes as many steps), and rank `rank`
/// takes every `size`-th sample from position `rank`. With one rank: the shuffled list.
pub fn shard(samples: &[SampleRef], shuffle_seed: Option<u64>, rank: usize, size: usize, pad: bool) -> Vec<SampleRef> {
    let mut all = samples.to_vec();
    shuffle(&mut all, shuffle_seed);
    if size <= 1 {
        return all;
    }
    if pad && !all.is_empty() {
        let missing = (size - all.len() % size) % size;
        for i in 0..missing {
            all.push(all[i % all.len()]);
        }
    }
    all.into_iter().skip(rank).step_by(size).collect()
}

/// A minibatch in host memory: normalised images and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// `shape.iter().product()` values, image after image.
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
    /// Batch size, channels, height, width.
    pub shape: [usize; 4],
}

/// How a [`Loader`] walks its indices.
#[derive(Debug, Clone, Copy)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Shuffle the indices with this seed before batching; `None` keeps their order.
    pub shuffle_seed: Option<u64>,
    /// How many assembled batches may wait in the queue.
    pub prefetch: usize,
}

/// An iterator over the minibatches of one pass over a list of samples, assembled on a
/// background thread. Each batch goes through `collate` on that thread, so the consumer
/// receives ready values (tensors, for the trainer).
pub struct Loader<T> {
    receiver: Option<Receiver<T>>,
    worker: Option<JoinHandle<()>>,
    num_batches: usize,
}

impl<T: Send + 'static> Loader<T> {
    /// Starts the background thread over `samples` of `source`.
    ///
    /// # Panics
    /// If `config.batch_size` is zero or a sample is out of range of `source`.
    pub fn spawn<F>(source: LoaderSource, mut samples: Vec<SampleRef>, config: LoaderConfig, mut collate: F) -> Self
    where
        F: FnMut(HostBatch) -> T + Send + 'static,
    {
        assert!(config.batch_size > 0, "batch size must be positive");
        assert!(
            samples
                .iter()
                .all(|s| (s.index as usize) < source.set.len() && (s.view as usize) < source.views.len()),
            "sample out of range"
        );
        let num_batches = samples.len().div_ceil(config.batch_size);
        let (sender, receiver) = sync_channel(config.prefetch.max(1));
        let worker = std::thread::Builder::new()
            .name("dcl-loader".to_owned())
            .spawn(move || {
                shuffle(&mut samples, config.shuffle_seed);
                let table = source.normalization.lookup_table();
                let [c, h, w] = source.set.image_shape;
                for chunk in samples.chunks(config.batch_size) {
                    let mut images = Vec::with_capacity(chunk.len() * source.set.image_len());
                    for &sample in chunk {
                        source.extend_with(sample, &table, &mut images);
                    }
                    let batch = HostBatch {
                        images,
                        labels: chunk
                            .iter()
                            .map(|s| source.set.labels[s.index as usize] as i64)
                            .collect(),
                        shape: [chunk.len(), c, h, w],
                    };
                    if sender.send(collate(batch)).is_err() {
                        return; // the consumer stopped early
                    }
                }
            })
            .expect("cannot start the loader thread");
        Loader {
            receiver: Some(receiver),
            worker: Some(worker),
            num_batches,
        }
    }

    /// The number of batches of the whole pass.
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }
}

impl<T> Loader<T> {
    /// Waits for the worker; re-raises its panic, if any, on the consumer's thread.
    fn join_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            if let Err(panic) = worker.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

impl<T> Iterator for Loader<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let next = self.receiver.as_ref()?.recv().ok();
        if next.is_none() {
            // The pass is over or the worker died: tell the two apart.
            self.receiver = None;
            self.join_worker();
        }
        next
    }
}

impl<T> Drop for Loader<T> {
    fn drop(&mut self) {
        // Closing the queue first unblocks a worker waiting to send.
        self.receiver = None;
        self.join_worker();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten 1x2x2 images whose pixels all equal their index; label = index % 3.
    fn numbered_set() -> Arc<ImageSet> {
        Arc::new(ImageSet {
            images: (0..10u8).flat_map(|i| [i; 4]).collect(),
            labels: (0..10u8).map(|i| i % 3).collect(),
            image_shape: [1, 2, 2],
        })
    }

    const IDENTITY: Normalization = Normalization {
        mean: 0.0,
        std: 1.0 / 255.0,
    };

    fn source(normalization: Normalization) -> LoaderSource {
        LoaderSource {
            set: numbered_set(),
            views: Arc::new(vec![View::Identity]),
            normalization,
        }
    }

    fn refs(indices: impl IntoIterator<Item = u32>) -> Vec<SampleRef> {
        indices.into_iter().map(|index| SampleRef { index, view: 0 }).collect()
    }

    fn config(shuffle_seed: Option<u64>) -> LoaderConfig {
        LoaderConfig {
            batch_size: 4,
            shuffle_seed,
            prefetch: 2,
        }
    }

    fn sample_ids(batches: &[HostBatch]) -> Vec<usize> {
        batches
            .iter()
            .flat_map(|b| b.images.chunks(4).map(|px| px[0].round() as usize))
            .collect()
    }

    #[test]
    fn batches_follow_the_indices_with_a_short_last_batch() {
        let loader = Loader::spawn(source(IDENTITY), refs([9, 1, 5, 0, 2, 7]), config(None), |b| b);
        assert_eq!(loader.num_batches(), 2);
        let batches: Vec<_> = loader.collect();
        assert_eq!(batches[0].shape, [4, 1, 2, 2]);
        assert_eq!(batches[1].shape, [2, 1, 2, 2]);
        assert_eq!(sample_ids(&batches), vec![9, 1, 5, 0, 2, 7]);
        assert_eq!(batches[0].labels, vec![0, 1, 2, 0]);
        assert_eq!(batches[1].labels, vec![2, 1]);
    }

    #[test]
    fn shuffling_is_a_seeded_permutation() {
        let run = |seed| -> Vec<usize> {
            sample_ids(&Loader::spawn(source(IDENTITY), refs(0..10), config(Some(seed)), |b| b).collect::<Vec<_>>())
        };
        let first = run(7);
        assert_eq!(first, run(7), "same seed, same order");
        assert_ne!(first, run(8), "another seed, another order");
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn shards_are_disjoint_equal_and_cover_the_pass() {
        let samples = refs(0..10);
        let one = shard(&samples, Some(3), 0, 1, true);
        let whole: Vec<usize> =
            sample_ids(&Loader::spawn(source(IDENTITY), samples.clone(), config(Some(3)), |b| b).collect::<Vec<_>>());
        assert_eq!(
            one.iter().map(|s| s.index as usize).collect::<Vec<_>>(),
            whole,
            "one rank: the loader's own shuffle"
        );
        let parts: Vec<Vec<SampleRef>> = (0..3).map(|r| shard(&samples, Some(3), r, 3, true)).collect();
        assert!(parts.iter().all(|p| p.len() == 4), "padded to equal shares");
        let mut seen: Vec<u32> = parts.iter().flatten().map(|s| s.index).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let unpadded: usize = (0..3).map(|r| shard(&samples, None, r, 3, false).len()).sum();
        assert_eq!(unpadded, 10, "without padding every sample once");
    }

    #[test]
    fn normalises_through_the_table() {
        let half = Normalization { mean: 0.5, std: 0.5 };
        let batch = Loader::spawn(source(half), refs([3]), config(None), |b| b)
            .next()
            .unwrap();
        assert_eq!(batch.images, vec![(3.0 / 255.0 - 0.5) / 0.5; 4]);
    }

    #[test]
    fn permuted_views_reorder_pixels() {
        let set = Arc::new(ImageSet {
            images: vec![10, 20, 30, 40],
            labels: vec![1],
            image_shape: [1, 2, 2],
        });
        let source = LoaderSource {
            set,
            views: Arc::new(vec![View::Identity, View::Permutation(vec![3, 0, 2, 1])]),
            normalization: IDENTITY,
        };
        let samples = vec![SampleRef { index: 0, view: 0 }, SampleRef { index: 0, view: 1 }];
        let batch = Loader::spawn(source, samples, config(None), |b| b).next().unwrap();
        let pixels: Vec<f32> = batch.images.iter().map(|v| v.round()).collect();
        assert_eq!(pixels, vec![10.0, 20.0, 30.0, 40.0, 40.0, 10.0, 30.0, 20.0]);
        assert_eq!(batch.labels, vec![1, 1]);
    }

    #[test]
    fn dropping_early_stops_the_worker() {
        let mut loader = Loader::spawn(
            source(IDENTITY),
            refs(0..10),
            LoaderConfig {
                batch_size: 1,
                shuffle_seed: None,
                prefetch: 1,
            },
            |b| b,
        );
        assert!(loader.next().is_some());
        drop(loader); // must not hang on the blocked worker
    }

    #[test]
    #[should_panic(expected = "collate failed")]
    fn a_worker_panic_reaches_the_consumer() {
        let loader = Loader::spawn(source(IDENTITY), refs(0..10), config(None), |_| -> HostBatch {
            panic!("collate failed")
        });
        let _ = loader.count();
    }
}
