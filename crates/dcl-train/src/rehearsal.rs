//! Rehearsal (agent `er`, upstream's `nil` family): every training minibatch of fresh
//! samples is augmented with representatives drawn from the rehearsal buffer, and the
//! fresh samples are then offered to the buffer.
//!
//! The work runs on the loader's background thread, in the order of the stream: draw the
//! representatives (from the buffer as it is before the batch is offered), assemble, offer
//! the fresh samples. The training step never waits for it unless the step is faster than
//! the pipeline, and every fresh batch is trained in its own step.
//!
//! Pipeline modes, as upstream's:
//! - `standard`: the background thread assembles the whole augmented minibatch (fresh and
//!   representatives in one tensor). Upstream's version also trained fresh samples one step
//!   late, an artefact of its synchronous data loader that dcl's asynchronous loader does
//!   not need.
//! - `flyweight` (upstream's `cat` variant): only the representatives come from the
//!   background; the training thread concatenates them to the fresh batch.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use dcl_buffer::{BufferConfig, Drawn, InsertionPolicy, RehearsalBuffer, StepTimings, TimingStage};
use dcl_data::HostBatch;
use dcl_dist::{BufferService, Communicator, SingleProcess};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::trainer::host_tensor;
use crate::TrainError;

/// How the buffer's budget is given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferSize {
    /// Percent of the training set, split evenly over classes and workers (upstream's
    /// `rehearsal_ratio`).
    Ratio(f64),
    /// Slots per class per worker (upstream's `rehearsal_size`).
    PerClass(usize),
    /// Samples in all, over all workers.
    Total(usize),
}

/// The insertion policies by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyName {
    Upstream,
    Reservoir,
    ClassBalanced,
}

/// Where the augmented minibatch is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineMode {
    Standard,
    Flyweight,
}

/// The configuration of rehearsal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RehearsalConfig {
    pub size: BufferSize,
    pub policy: PolicyName,
    /// C of the upstream policy.
    pub num_candidates: usize,
    /// R: representatives per minibatch.
    pub num_representatives: usize,
    pub mode: PipelineMode,
    /// The first task (from 0) whose minibatches are augmented.
    pub start_task: usize,
    /// Draw over every worker's buffer (data-parallel runs) rather than the local one.
    pub global_sampling: bool,
    /// Which stored samples representatives are drawn from.
    pub replay: ReplaySource,
    /// Weigh each sample's loss by the inverse frequency of its class in the stream so far
    /// (upstream's per-class weights; off by default, as upstream found them to collapse on
    /// ImageNet).
    pub class_weights: bool,
}

/// Which stored samples representatives are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaySource {
    /// Everything stored, the current task's samples included (upstream).
    All,
    /// Samples of earlier tasks only: every representative rehearses the past.
    PastTasks,
}

/// The resolved buffer of a run, as reported in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RehearsalReport {
    #[serde(flatten)]
    pub config: RehearsalConfig,
    /// Slots in all (this worker).
    pub capacity: usize,
    pub per_class: usize,
    /// Samples stored per class at the end of the run (this worker).
    pub final_class_counts: Vec<usize>,
    /// Slots in all over every worker (the global budget).
    pub world_capacity: usize,
    /// Samples stored per class over every worker at the end of the run.
    pub world_class_counts: Vec<usize>,
    /// The timing breakdown over the whole run.
    pub timing: StepTimings,
    /// Its mean per step, in milliseconds.
    pub timing_ms_per_step: std::collections::BTreeMap<String, f64>,
}

/// A training minibatch: fresh samples and, in flyweight mode, representatives apart.
pub struct StepBatch {
    /// The fresh samples, followed by the representatives in standard mode.
    pub images: Tensor,
    pub labels: Tensor,
    /// The number of fresh samples.
    pub fresh: usize,
    /// The representatives, in flyweight mode.
    pub representatives: Option<(Tensor, Tensor)>,
}

impl StepBatch {
    /// A minibatch without representatives, as a collate function's result.
    pub fn plain(batch: HostBatch) -> Result<Self, TrainError> {
        let (images, labels) = crate::trainer::tensors_of(&batch);
        Ok(StepBatch {
            images,
            labels,
            fresh: batch.labels.len(),
            representatives: None,
        })
    }
}

/// The rehearsal state of a run: the buffer, the service that shares it with the other
/// workers, and the timings of the current window.
pub struct Rehearsal {
    config: RehearsalConfig,
    buffer: Arc<Mutex<RehearsalBuffer<f32>>>,
    service: Box<dyn BufferService>,
    timings: Arc<Mutex<StepTimings>>,
    total: StepTimings,
    per_class: usize,
    image_shape: [usize; 3],
}

impl Rehearsal {
    /// This worker's buffer, sized for `train_len` training samples of `num_classes` classes
    /// and a budget split over the workers of `world`, served to them with global sampling
    /// (a collective call).
    pub fn new(
        config: RehearsalConfig,
        num_classes: usize,
        image_shape: [usize; 3],
        train_len: usize,
        world: &dyn Communicator,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let workers = world.size();
        let per_class = match config.size {
            BufferSize::Ratio(percent) => {
                (train_len as f64 * percent / 100.0 / num_classes as f64 / workers as f64) as usize
            }
            BufferSize::PerClass(n) => n,
            BufferSize::Total(n) => n / num_classes / workers,
        };
        if per_class == 0 {
            return Err(TrainError::Config(format!(
                "--agent-config: the rehearsal buffer ({:?}) leaves no slot per class ({num_classes} classes, {workers} worker(s))",
                config.size
            )));
        }
        let policy = match config.policy {
            PolicyName::Upstream => InsertionPolicy::Upstream {
                candidates: config.num_candidates,
                batch_size,
            },
            PolicyName::Reservoir => InsertionPolicy::Reservoir,
            PolicyName::ClassBalanced => InsertionPolicy::ClassBalanced,
        };
        let buffer = RehearsalBuffer::new(BufferConfig {
            capacity: per_class * num_classes,
            num_classes,
            sample_len: image_shape.iter().product(),
            payload_len: 0,
            policy,
            seed: seed ^ 0x5245_4845_4152_5345,
        })
        .map_err(|e| TrainError::Config(format!("--agent-config: {e}")))?;
        let buffer = Arc::new(Mutex::new(buffer));
        let service = if config.global_sampling {
            world.serve_buffer(Arc::clone(&buffer))
        } else {
            SingleProcess.serve_buffer(Arc::clone(&buffer))
        };
        Ok(Rehearsal {
            config,
            buffer,
            service,
            timings: Arc::default(),
            total: StepTimings::default(),
            per_class,
            image_shape,
        })
    }

    /// The collate function of a training pass over task `task`: runs on the loader thread.
    /// `seed` drives the pass's choice of which worker's buffer each representative comes from.
    pub fn collate(
        &self,
        task: usize,
        seed: u64,
    ) -> impl FnMut(HostBatch) -> Result<StepBatch, TrainError> + Send + 'static {
        let buffer = Arc::clone(&self.buffer);
        let mut transport = self.service.client(seed);
        let timings = Arc::clone(&self.timings);
        let count = if task >= self.config.start_task {
            self.config.num_representatives
        } else {
            0
        };
        let mode = self.config.mode;
        let before_era = match self.config.replay {
            ReplaySource::All => None,
            ReplaySource::PastTasks => Some(task as u32),
        };
        buffer.lock().expect("buffer lock poisoned").begin_era(task as u32);
        let [c, h, w] = self.image_shape;
        let mut drawn = Drawn::default();
        move |fresh: HostBatch| {
            let mut clock = Stopwatch::new();
            drawn.clear();
            transport.draw(count, before_era, &mut drawn)?;
            clock.lap(TimingStage::Sample);
            let reps = drawn.len();
            let rep_labels: Vec<i64> = drawn.labels.iter().map(|&l| l as i64).collect();
            let batch = match mode {
                PipelineMode::Standard => {
                    let n = fresh.labels.len() + reps;
                    let mut images = Vec::with_capacity(n * c * h * w);
                    images.extend_from_slice(&fresh.images);
                    let mut labels = fresh.labels.clone();
                    clock.lap(TimingStage::BatchCopy);
                    images.extend_from_slice(&drawn.samples);
                    labels.extend_from_slice(&rep_labels);
                    let shape = [n as i64, c as i64, h as i64, w as i64];
                    let batch = StepBatch {
                        images: host_tensor(&images, &shape),
                        labels: host_tensor(&labels, &[n as i64]),
                        fresh: fresh.labels.len(),
                        representatives: None,
                    };
                    clock.lap(TimingStage::RepresentativesCopy);
                    batch
                }
                PipelineMode::Flyweight => {
                    let representatives = (reps > 0).then(|| {
                        let shape = [reps as i64, c as i64, h as i64, w as i64];
                        (
                            host_tensor(&drawn.samples, &shape),
                            host_tensor(&rep_labels, &[reps as i64]),
                        )
                    });
                    clock.lap(TimingStage::RepresentativesCopy);
                    let (images, labels) = crate::trainer::tensors_of(&fresh);
                    clock.lap(TimingStage::BatchCopy);
                    StepBatch {
                        images,
                        labels,
                        fresh: fresh.labels.len(),
                        representatives,
                    }
                }
            };
            let labels: Vec<u32> = fresh.labels.iter().map(|&l| l as u32).collect();
            buffer
                .lock()
                .expect("buffer lock poisoned")
                .offer(&fresh.images, &labels, &[])
                .expect("the loader's samples fit the buffer");
            clock.lap(TimingStage::BufferUpdate);
            let mut shared = timings.lock().expect("timing lock poisoned");
            shared.merge(&clock.timings);
            shared.steps += 1;
            Ok(batch)
        }
    }

    /// Ends rehearsal after the last training pass (every worker calls it): returns the
    /// report of the run and stops sharing the buffer.
    pub fn finish(self, world: &dyn Communicator) -> RehearsalReport {
        let report = self.report(world);
        self.service.stop();
        report
    }

    /// The per-class loss weights of the next step, when enabled: the inverse frequency of
    /// each class among the samples offered so far, normalised so that a stream of balanced
    /// classes weighs 1 each; classes not seen yet weigh 1.
    pub fn class_weights(&self) -> Option<Tensor> {
        if !self.config.class_weights {
            return None;
        }
        let buffer = self.buffer.lock().expect("buffer lock poisoned");
        let seen = buffer.seen_per_class();
        let classes = seen.iter().filter(|&&n| n > 0).count().max(1) as f32;
        let total = seen.iter().sum::<u64>().max(1) as f32;
        let weights: Vec<f32> = seen
            .iter()
            .map(|&n| if n == 0 { 1.0 } else { total / (classes * n as f32) })
            .collect();
        Some(Tensor::from_slice(&weights))
    }

    /// Adds the training thread's wait for a minibatch to the current window.
    pub fn add_wait(&self, elapsed: std::time::Duration) {
        self.timings
            .lock()
            .expect("timing lock poisoned")
            .add(TimingStage::Wait, elapsed);
    }

    /// Closes the current timing window (a pass) and returns it.
    pub fn take_window(&mut self) -> StepTimings {
        let window = std::mem::take(&mut *self.timings.lock().expect("timing lock poisoned"));
        self.total.merge(&window);
        window
    }

    /// The report of the run so far (a collective call: it sums the workers' buffers).
    pub fn report(&self, world: &dyn Communicator) -> RehearsalReport {
        let buffer = self.buffer.lock().expect("buffer lock poisoned");
        let counts = buffer.class_counts();
        let mut world_counts: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
        world.all_reduce_sum_f64(&mut world_counts);
        RehearsalReport {
            config: self.config.clone(),
            capacity: buffer.config().capacity,
            per_class: self.per_class,
            final_class_counts: counts,
            world_capacity: buffer.config().capacity * world.size(),
            world_class_counts: world_counts.iter().map(|&c| c as usize).collect(),
            timing: self.total,
            timing_ms_per_step: self
                .total
                .per_step_ms()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }
}

/// Measures consecutive stages.
struct Stopwatch {
    last: Instant,
    timings: StepTimings,
}

impl Stopwatch {
    fn new() -> Self {
        Stopwatch {
            last: Instant::now(),
            timings: StepTimings::default(),
        }
    }

    fn lap(&mut self, stage: TimingStage) {
        let now = Instant::now();
        self.timings.add(stage, now - self.last);
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use dcl_data::{ImageSet, Loader, LoaderConfig, LoaderSource, Normalization, SampleRef, View};

    use super::*;

    /// 200 images of two pixels: (label, sample index); labels 0..10, 20 per class.
    fn tagged_set() -> LoaderSource {
        let labels: Vec<u8> = (0..200).map(|i| (i % 10) as u8).collect();
        let images = (0..200).flat_map(|i| [(i % 10) as u8, i as u8]).collect();
        LoaderSource {
            set: Arc::new(ImageSet {
                images,
                labels,
                image_shape: [1, 1, 2],
            }),
            views: Arc::new(vec![View::Identity]),
            // Values come out as the bytes themselves.
            normalization: Normalization {
                mean: 0.0,
                std: 1.0 / 255.0,
            },
        }
    }

    fn config(mode: PipelineMode, replay: ReplaySource) -> RehearsalConfig {
        RehearsalConfig {
            size: BufferSize::Total(40),
            policy: PolicyName::ClassBalanced,
            num_candidates: 8,
            num_representatives: 6,
            mode,
            start_task: 0,
            global_sampling: true,
            replay,
            class_weights: false,
        }
    }

    /// A rehearsal over the tagged set's 10 classes and 200 samples, in a world of one.
    fn new_rehearsal(config: RehearsalConfig, batch_size: usize) -> Result<Rehearsal, TrainError> {
        Rehearsal::new(config, 10, [1, 1, 2], 200, &SingleProcess, batch_size, 7)
    }

    /// Samples `indices` of the tagged set, as they are.
    fn refs(indices: impl IntoIterator<Item = u32>) -> Vec<SampleRef> {
        indices.into_iter().map(|index| SampleRef { index, view: 0 }).collect()
    }

    /// (label pixel, index pixel, label) of every sample of a step, fresh ones first.
    fn samples_of(batch: &StepBatch) -> (Vec<(i64, i64, i64)>, usize) {
        let decode = |images: &Tensor, labels: &Tensor| -> Vec<(i64, i64, i64)> {
            let values = Vec::<f32>::try_from(images.flatten(0, -1)).unwrap();
            let labels = Vec::<i64>::try_from(labels).unwrap();
            values
                .chunks(2)
                .zip(labels)
                .map(|(px, l)| (px[0].round() as i64, px[1].round() as i64, l))
                .collect()
        };
        let mut all = decode(&batch.images, &batch.labels);
        if let Some((images, labels)) = &batch.representatives {
            all.extend(decode(images, labels));
        }
        (all, batch.fresh)
    }

    /// Runs tasks of classes {0..5} then {5..10} through the pipeline; returns per step the
    /// decoded samples, the fresh count and the task.
    fn run(mode: PipelineMode, replay: ReplaySource, batch_size: usize) -> Vec<(Vec<(i64, i64, i64)>, usize, usize)> {
        let source = tagged_set();
        let rehearsal = new_rehearsal(config(mode, replay), batch_size).unwrap();
        let mut steps = Vec::new();
        for task in 0..2 {
            let samples = refs((0..200u32).filter(|i| (i % 10 < 5) == (task == 0)));
            let loader_config = LoaderConfig {
                batch_size,
                shuffle_seed: Some(task as u64),
                prefetch: 2,
            };
            for batch in Loader::spawn(source.clone(), samples, loader_config, rehearsal.collate(task, 0)) {
                let (decoded, fresh) = samples_of(&batch.unwrap());
                steps.push((decoded, fresh, task));
            }
        }
        steps
    }

    const MODES: [PipelineMode; 2] = [PipelineMode::Standard, PipelineMode::Flyweight];

    #[test]
    fn the_pipeline_never_mixes_samples_labels_or_batches() {
        for mode in MODES {
            for replay in [ReplaySource::All, ReplaySource::PastTasks] {
                let steps = run(mode, replay, 8);
                assert!(
                    steps.iter().any(|(s, fresh, _)| s.len() > *fresh),
                    "no representatives at all"
                );
                for (samples, fresh, _) in &steps {
                    for &(label_pixel, index_pixel, label) in samples {
                        assert_eq!(label_pixel, label, "{mode:?}: pixels and label disagree");
                        assert_eq!(index_pixel % 10, label, "{mode:?}: a sample was torn");
                    }
                    let fresh_ids: HashSet<i64> = samples[..*fresh].iter().map(|s| s.1).collect();
                    let rep_ids: HashSet<i64> = samples[*fresh..].iter().map(|s| s.1).collect();
                    assert_eq!(rep_ids.len(), samples.len() - fresh, "duplicate representatives");
                    assert!(
                        fresh_ids.is_disjoint(&rep_ids),
                        "a representative came from its own batch"
                    );
                }
            }
        }
    }

    #[test]
    fn fresh_samples_train_in_their_own_step_in_both_modes() {
        let plain: Vec<Vec<i64>> = {
            let samples = refs((0..200u32).filter(|i| i % 10 < 5));
            let config = LoaderConfig {
                batch_size: 8,
                shuffle_seed: Some(0),
                prefetch: 2,
            };
            Loader::spawn(tagged_set(), samples, config, StepBatch::plain)
                .map(|b| samples_of(&b.unwrap()).0.iter().map(|s| s.1).collect())
                .collect()
        };
        for mode in MODES {
            let steps = run(mode, ReplaySource::All, 8);
            let fresh: Vec<Vec<i64>> = steps
                .iter()
                .filter(|s| s.2 == 0)
                .map(|(s, f, _)| s[..*f].iter().map(|x| x.1).collect())
                .collect();
            assert_eq!(
                fresh, plain,
                "{mode:?}: fresh samples are not those of the step's own loader batch"
            );
        }
    }

    #[test]
    fn past_task_replay_draws_only_earlier_tasks_and_starts_with_the_second_task() {
        let steps = run(PipelineMode::Standard, ReplaySource::PastTasks, 8);
        for (samples, fresh, task) in &steps {
            let reps = &samples[*fresh..];
            if *task == 0 {
                assert!(reps.is_empty(), "representatives during the first task");
            } else {
                assert_eq!(reps.len(), 6);
                assert!(reps.iter().all(|s| s.2 < 5), "a representative of the current task");
            }
        }
        let all = run(PipelineMode::Standard, ReplaySource::All, 8);
        assert!(
            all.iter()
                .filter(|s| s.2 == 1)
                .any(|(s, f, _)| s[*f..].iter().any(|x| x.2 >= 5)),
            "replay 'all' draws the current task too"
        );
        assert!(
            all.first().is_some_and(|(s, f, _)| s.len() == *f),
            "the very first step has nothing to draw from"
        );
    }

    #[test]
    fn the_report_tracks_the_buffer_and_timings() {
        let mut rehearsal = new_rehearsal(config(PipelineMode::Standard, ReplaySource::All), 8).unwrap();
        let samples = refs(0..100u32);
        let loader_config = LoaderConfig {
            batch_size: 10,
            shuffle_seed: None,
            prefetch: 2,
        };
        let steps = Loader::spawn(tagged_set(), samples, loader_config, rehearsal.collate(0, 0)).count();
        let window = rehearsal.take_window();
        assert_eq!(window.steps, steps as u64);
        let report = rehearsal.report(&SingleProcess);
        assert_eq!((report.capacity, report.per_class, report.world_capacity), (40, 4, 40));
        assert_eq!(report.final_class_counts, vec![4; 10]);
        assert_eq!(report.timing.steps, 10);
    }

    #[test]
    fn class_weights_follow_the_inverse_class_frequency_of_the_stream() {
        let off = new_rehearsal(config(PipelineMode::Standard, ReplaySource::All), 8).unwrap();
        assert!(off.class_weights().is_none());
        let on = RehearsalConfig {
            class_weights: true,
            ..config(PipelineMode::Standard, ReplaySource::All)
        };
        let rehearsal = new_rehearsal(on, 8).unwrap();
        // 20 samples of class 0 (all there are), 10 of class 1: class 1 weighs twice as much.
        let of_class = |c: u32, n: usize| (0..200u32).filter(move |i| i % 10 == c).take(n);
        let samples = refs(of_class(0, 20).chain(of_class(1, 10)));
        let loader_config = LoaderConfig {
            batch_size: 8,
            shuffle_seed: None,
            prefetch: 2,
        };
        let _ = Loader::spawn(tagged_set(), samples, loader_config, rehearsal.collate(0, 0)).count();
        let weights = Vec::<f32>::try_from(rehearsal.class_weights().unwrap()).unwrap();
        // 30 seen over 2 classes: 30 / (2 * 20) = 0.75 and 30 / (2 * 10) = 1.5.
        assert!(
            (weights[0] - 0.75).abs() < 1e-6 && (weights[1] - 1.5).abs() < 1e-6,
            "{weights:?}"
        );
        assert_eq!(weights[2], 1.0, "an unseen class weighs 1");
    }

    #[test]
    fn a_buffer_without_slots_is_refused() {
        let tiny = RehearsalConfig {
            size: BufferSize::Total(5),
            ..config(PipelineMode::Standard, ReplaySource::All)
        };
        let err = new_rehearsal(tiny, 8).err().unwrap().to_string();
        assert!(err.contains("leaves no slot per class"), "{err}");
    }

    #[test]
    fn stopping_a_pass_early_shuts_the_pipeline_down() {
        let rehearsal = new_rehearsal(config(PipelineMode::Flyweight, ReplaySource::All), 4).unwrap();
        let samples = refs(0..200u32);
        let loader_config = LoaderConfig {
            batch_size: 4,
            shuffle_seed: None,
            prefetch: 1,
        };
        let mut loader = Loader::spawn(tagged_set(), samples, loader_config, rehearsal.collate(0, 0));
        assert!(loader.next().is_some());
        drop(loader); // joins the loader thread; must not hang
        assert!(
            rehearsal
                .report(&SingleProcess)
                .final_class_counts
                .iter()
                .sum::<usize>()
                <= 40
        );
    }
}
