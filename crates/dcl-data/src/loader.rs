//! The prefetching loader: background threads that shuffle sample indices, assemble
//! normalised minibatches and hand them over in order through a bounded queue, so a training
//! step never waits for data.
//!
//! A coordinator thread emits the batches of a pass in order, each through the caller's
//! `collate` (which must see the stream in order: the rehearsal buffer takes each batch as it
//! comes). With `workers` > 0, a pool of that many threads reads, decodes and transforms the
//! batches in parallel, a few batches ahead; with 0, the coordinator assembles them itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::pipeline::{Pipeline, Records, Scratch};
use crate::scenario::{SampleRef, View};
use crate::{DataError, ImageSource};

/// Where a loader's samples come from: a split, the views its samples refer to, and the
/// pipeline that turns its images into network inputs.
#[derive(Debug, Clone)]
pub struct LoaderSource {
    pub set: Arc<dyn ImageSource>,
    pub views: Arc<Vec<View>>,
    pub pipeline: Pipeline,
    /// Whether batches carry each sample's stored form ([`HostBatch::records`]), for a
    /// rehearsal buffer that stores samples before their transform.
    pub keep_records: bool,
}

impl LoaderSource {
    /// The minibatch of `samples`: their network inputs, labels and shape. The random choices
    /// of sample `s` come from a stream seeded by (`seed`, `s`), so a batch is the same
    /// whichever thread assembles it.
    fn assemble(&self, samples: &[SampleRef], seed: u64, scratch: &mut Scratch) -> Result<HostBatch, DataError> {
        let tables = self.pipeline.normalization.lookup_tables();
        let mut images = Vec::new();
        let mut records = Records::default();
        let mut shape = None;
        for &sample in samples {
            let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(seed, sample));
            let view = &self.views[sample.view as usize];
            self.pipeline.extend(
                &*self.set,
                sample.index as usize,
                view,
                &mut rng,
                scratch,
                &tables,
                &mut images,
                self.keep_records.then_some(&mut records),
            )?;
            let made = scratch.output_shape();
            if shape.is_none() {
                // Room for the whole batch: no copies and fresh pages as it grows.
                images.reserve_exact(images.len() * (samples.len() - 1));
                #[cfg(target_os = "linux")]
                advise_huge_pages(&mut images);
            }
            if *shape.get_or_insert(made) != made {
                return Err(DataError::Pipeline(format!(
                    "images of different sizes in one batch ({made:?} and {:?}): give --input-size",
                    shape.unwrap_or(made)
                )));
            }
        }
        let [c, h, w] = shape.unwrap_or_default();
        let shape = [samples.len(), c, h, w];
        let labels = samples
            .iter()
            .map(|s| self.set.labels()[s.index as usize] as i64)
            .collect();
        Ok(HostBatch {
            images,
            labels,
            shape,
            records,
        })
    }
}

/// Asks Linux to back the spare capacity of `buffer` with transparent huge pages (2 MB), where
/// the system grants them to programs that ask (`madvise` mode, Debian's and Ubuntu's): a batch
/// of 64 inputs of 3x224x224 (38.5 MB, in pages never touched before) then costs about 20
/// page faults instead of about 9,400, which took about a tenth of the loader's time on
/// photographs. Only advice: nothing changes where the system says no.
#[cfg(target_os = "linux")]
fn advise_huge_pages(buffer: &mut Vec<f32>) {
    const HUGE_PAGE: usize = 2 << 20;
    let spare = buffer.spare_capacity_mut().as_mut_ptr_range();
    let (start, end) = (spare.start as usize, spare.end as usize);
    let (first, last) = (start.next_multiple_of(HUGE_PAGE), end / HUGE_PAGE * HUGE_PAGE);
    if first < last {
        // SAFETY: the range lies within the buffer's allocation, which stays put (its
        // capacity is reserved); the advice changes no byte of it.
        unsafe { libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE) };
    }
}

/// The seed of `sample`'s random choices in a pass seeded by `seed` (SplitMix64 mixing).
fn sample_seed(seed: u64, sample: SampleRef) -> u64 {
    let mut z = seed
        .wrapping_add((sample.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add((sample.view as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED69));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
    /// Each sample's stored form, when the source keeps them (else empty).
    pub records: Records,
}

/// How a [`Loader`] walks its indices.
#[derive(Debug, Clone, Copy)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Shuffle the indices with this seed before batching; `None` keeps their order.
    pub shuffle_seed: Option<u64>,
    /// How many collated batches may wait in the queue.
    pub prefetch: usize,
    /// Threads assembling batches besides the coordinator (0: the coordinator alone).
    pub workers: usize,
    /// Seed of the pass's random transforms (crops, flips), mixed with each sample's index.
    pub augment_seed: u64,
}

/// An iterator over the minibatches of one pass over a list of samples, assembled in the
/// background. Each batch goes through `collate` on the coordinator thread, in order, so the
/// consumer receives ready values (tensors, for the trainer). A batch that cannot be
/// assembled (an unreadable or corrupt file) ends the pass with its error.
pub struct Loader<T> {
    receiver: Option<Receiver<Result<T, DataError>>>,
    coordinator: Option<JoinHandle<()>>,
    num_batches: usize,
}

impl<T: Send + 'static> Loader<T> {
    /// Starts the background threads over `samples` of `source`.
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
        let coordinator = std::thread::Builder::new()
            .name("dcl-loader".to_owned())
            .spawn(move || {
                shuffle(&mut samples, config.shuffle_seed);
                let batches: Vec<&[SampleRef]> = samples.chunks(config.batch_size).collect();
                let mut emit = |batch: Result<HostBatch, DataError>| {
                    let failed = batch.is_err();
                    sender.send(batch.map(&mut collate)).is_ok() && !failed
                };
                if config.workers == 0 {
                    let mut scratch = Scratch::default();
                    for batch in &batches {
                        if !emit(source.assemble(batch, config.augment_seed, &mut scratch)) {
                            return;
                        }
                    }
                } else {
                    std::thread::scope(|scope| {
                        run_pool(scope, &source, &batches, config.workers, config.augment_seed, &mut emit)
                    });
                }
            })
            .expect("cannot start the loader thread");
        Loader {
            receiver: Some(receiver),
            coordinator: Some(coordinator),
            num_batches,
        }
    }

    /// The number of batches of the whole pass.
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }
}

/// Assembles `batches` on `workers` threads of `scope` and hands them to `emit` in order,
/// until it returns false. Workers run at most a few batches ahead of `emit`.
fn run_pool<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    source: &'s LoaderSource,
    batches: &'s [&'s [SampleRef]],
    workers: usize,
    seed: u64,
    emit: &mut dyn FnMut(Result<HostBatch, DataError>) -> bool,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (done, assembled): (SyncSender<(usize, Result<HostBatch, DataError>)>, _) = sync_channel(2 * workers);
    for w in 0..workers {
        let (next, stop, done) = (Arc::clone(&next), Arc::clone(&stop), done.clone());
        std::thread::Builder::new()
            .name(format!("dcl-loader-{w}"))
            .spawn_scoped(scope, move || {
                let mut scratch = Scratch::default();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else { return };
                    if done.send((i, source.assemble(batch, seed, &mut scratch))).is_err() {
                        return;
                    }
                }
            })
            .expect("cannot start a loader worker");
    }
    drop(done);
    let mut pending = BTreeMap::new();
    for k in 0..batches.len() {
        while !pending.contains_key(&k) {
            match assembled.recv() {
                Ok((i, batch)) => {
                    pending.insert(i, batch);
                }
                Err(_) => return, // a worker died: its panic surfaces when the scope joins it
            }
        }
        if !emit(pending.remove(&k).expect("batch k is pending")) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Dropping the receiver unblocks workers waiting to hand over a batch.
    drop(assembled);
}

impl<T> Loader<T> {
    /// Waits for the coordinator; re-raises its panic, if any, on the consumer's thread.
    fn join_coordinator(&mut self) {
        if let Some(coordinator) = self.coordinator.take() {
            if let Err(panic) = coordinator.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

impl<T> Iterator for Loader<T> {
    type Item = Result<T, DataError>;

    fn next(&mut self) -> Option<Result<T, DataError>> {
        let next = self.receiver.as_ref()?.recv().ok();
        if next.is_none() {
            // The pass is over or the coordinator died: tell the two apart.
            self.receiver = None;
            self.join_coordinator();
        }
        next
    }
}

impl<T> Drop for Loader<T> {
    fn drop(&mut self) {
        // Closing the queue first unblocks a coordinator waiting to send.
        self.receiver = None;
        self.join_coordinator();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageSet, Normalization};

    /// Ten 1x2x2 images whose pixels all equal their index; label = index % 3.
    fn numbered_set() -> Arc<ImageSet> {
        Arc::new(ImageSet {
            images: (0..10u8).flat_map(|i| [i; 4]).collect(),
            labels: (0..10u32).map(|i| i % 3).collect(),
            image_shape: [1, 2, 2],
        })
    }

    const IDENTITY: Normalization = Normalization::uniform(0.0, 1.0 / 255.0);

    fn source(normalization: Normalization) -> LoaderSource {
        LoaderSource {
            set: numbered_set(),
            views: Arc::new(vec![View::Identity]),
            pipeline: Pipeline {
                transform: crate::Transform::Identity,
                normalization,
            },
            keep_records: false,
        }
    }

    /// The batches of a pass, which must all assemble.
    fn all<T: Send + 'static>(loader: Loader<T>) -> Vec<T> {
        loader.map(|b| b.unwrap()).collect()
    }

    fn refs(indices: impl IntoIterator<Item = u32>) -> Vec<SampleRef> {
        indices.into_iter().map(|index| SampleRef { index, view: 0 }).collect()
    }

    fn config(shuffle_seed: Option<u64>) -> LoaderConfig {
        LoaderConfig {
            batch_size: 4,
            shuffle_seed,
            prefetch: 2,
            workers: 0,
            augment_seed: 0,
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
        let batches = all(loader);
        assert_eq!(batches[0].shape, [4, 1, 2, 2]);
        assert_eq!(batches[1].shape, [2, 1, 2, 2]);
        assert_eq!(sample_ids(&batches), vec![9, 1, 5, 0, 2, 7]);
        assert_eq!(batches[0].labels, vec![0, 1, 2, 0]);
        assert_eq!(batches[1].labels, vec![2, 1]);
    }

    #[test]
    fn shuffling_is_a_seeded_permutation() {
        let run = |seed| -> Vec<usize> {
            sample_ids(&all(Loader::spawn(
                source(IDENTITY),
                refs(0..10),
                config(Some(seed)),
                |b| b,
            )))
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
        let whole: Vec<usize> = sample_ids(&all(Loader::spawn(
            source(IDENTITY),
            samples.clone(),
            config(Some(3)),
            |b| b,
        )));
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
        let half = Normalization::uniform(0.5, 0.5);
        let batch = Loader::spawn(source(half), refs([3]), config(None), |b| b)
            .next()
            .unwrap()
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
            ..source(IDENTITY)
        };
        let samples = vec![SampleRef { index: 0, view: 0 }, SampleRef { index: 0, view: 1 }];
        let batch = Loader::spawn(source, samples, config(None), |b| b)
            .next()
            .unwrap()
            .unwrap();
        let pixels: Vec<f32> = batch.images.iter().map(|v| v.round()).collect();
        assert_eq!(pixels, vec![10.0, 20.0, 30.0, 40.0, 40.0, 10.0, 30.0, 20.0]);
        assert_eq!(batch.labels, vec![1, 1]);
    }

    #[test]
    fn a_pool_of_workers_delivers_the_same_batches_in_the_same_order() {
        let alone = all(Loader::spawn(source(IDENTITY), refs(0..10), config(Some(5)), |b| b));
        for workers in [1, 2, 3, 7] {
            let pooled = all(Loader::spawn(
                source(IDENTITY),
                refs(0..10),
                LoaderConfig {
                    batch_size: 3,
                    workers,
                    ..config(Some(5))
                },
                |b| b,
            ));
            assert_eq!(sample_ids(&pooled), sample_ids(&alone), "{workers} workers");
            assert_eq!(pooled.len(), 4);
        }
    }

    /// A source whose image 5 cannot be read.
    #[derive(Debug)]
    struct Broken(ImageSet);

    impl ImageSource for Broken {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn labels(&self) -> &[u32] {
            self.0.labels()
        }
        fn fixed_shape(&self) -> Option<[usize; 3]> {
            self.0.fixed_shape()
        }
        fn read(&self, index: usize, out: &mut crate::Image) -> Result<(), DataError> {
            if index == 5 {
                return Err(DataError::corrupt("images/5.jpg", "truncated JPEG data"));
            }
            self.0.read(index, out)
        }
    }

    #[test]
    fn an_unreadable_image_ends_the_pass_with_its_error_in_order() {
        for workers in [0, 2] {
            let source = LoaderSource {
                set: Arc::new(Broken((*numbered_set()).clone())),
                ..source(IDENTITY)
            };
            let config = LoaderConfig {
                batch_size: 2,
                workers,
                ..config(None)
            };
            let items: Vec<_> = Loader::spawn(source, refs(0..10), config, |b| b).collect();
            assert_eq!(items.len(), 3, "{workers} workers: batches 0 and 1, then the error");
            assert!(items[..2].iter().all(Result::is_ok));
            let error = items[2].as_ref().unwrap_err().to_string();
            assert_eq!(error, "images/5.jpg: truncated JPEG data");
        }
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
                workers: 0,
                augment_seed: 0,
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
