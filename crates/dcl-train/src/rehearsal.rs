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

use dcl_buffer::{BufferConfig, Drawn, InsertionPolicy, RehearsalBuffer, SampleLen, StepTimings, TimingStage};
use dcl_data::{HostBatch, Pipeline, Scratch};
use dcl_dist::{BufferService, Communicator};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::checkpoint::CheckpointSteps;
use crate::trainer::host_tensor;
use crate::TrainError;

/// How the buffer's budget is given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferSize {
    /// Percent of the training set, over all workers (upstream's `rehearsal_ratio`).
    Ratio(f64),
    /// Slots per class per worker (upstream's `rehearsal_size`).
    PerClass(usize),
    /// Samples in all, over all workers.
    Total(usize),
}

impl std::fmt::Display for BufferSize {
    /// As the user wrote it: the `--agent-config` key and its value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BufferSize::Ratio(percent) => write!(f, "'rehearsal_ratio': {percent}"),
            BufferSize::PerClass(n) => write!(f, "'rehearsal_size': {n}"),
            BufferSize::Total(n) => write!(f, "'buffer_size': {n}"),
        }
    }
}

impl BufferSize {
    /// The slots of worker `rank` of `workers`, for `train_len` training samples of
    /// `num_classes` classes: a global budget is split evenly over the workers, the first
    /// ranks taking one slot more where it does not divide, so that the workers hold exactly
    /// the budget asked for.
    pub fn worker_capacity(self, train_len: usize, num_classes: usize, rank: usize, workers: usize) -> usize {
        let total = match self {
            BufferSize::PerClass(n) => return n * num_classes,
            BufferSize::Total(n) => n,
            BufferSize::Ratio(percent) => (train_len as f64 * percent / 100.0) as usize,
        };
        total / workers + usize::from(rank < total % workers)
    }
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
    /// What the buffer keeps of a sample.
    #[serde(default)]
    pub store: StoreMode,
}

/// What the buffer keeps of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreMode {
    /// The network input the pipeline made (augmented and normalised floats), replayed as it
    /// was (upstream).
    #[default]
    Tensor,
    /// The sample before the transform (the encoded file, or the 8-bit pixels of an image
    /// held in memory), augmented afresh at every replay.
    Raw,
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

/// Where the representatives of a window of steps came from, over every worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrawCounts {
    /// Representatives drawn from each rank's buffer.
    pub per_rank: Vec<u64>,
    /// Representatives of each class.
    pub per_class: Vec<u64>,
}

impl DrawCounts {
    fn new(ranks: usize, classes: usize) -> Self {
        DrawCounts {
            per_rank: vec![0; ranks],
            per_class: vec![0; classes],
        }
    }

    fn add(&mut self, drawn: &Drawn<u8>) {
        for &rank in &drawn.origins {
            self.per_rank[rank as usize] += 1;
        }
        for &label in &drawn.labels {
            self.per_class[label as usize] += 1;
        }
    }

    fn merge(&mut self, other: &DrawCounts) {
        for (a, b) in self.per_rank.iter_mut().zip(&other.per_rank) {
            *a += b;
        }
        for (a, b) in self.per_class.iter_mut().zip(&other.per_class) {
            *a += b;
        }
    }

    /// The counts summed over the ranks of `world` (a collective call).
    fn summed(&self, world: &dyn Communicator) -> Self {
        let mut values: Vec<f64> = self.per_rank.iter().chain(&self.per_class).map(|&n| n as f64).collect();
        world.all_reduce_sum_f64(&mut values);
        let (ranks, classes) = values.split_at(self.per_rank.len());
        DrawCounts {
            per_rank: ranks.iter().map(|&n| n as u64).collect(),
            per_class: classes.iter().map(|&n| n as u64).collect(),
        }
    }
}

/// The rehearsal of a window of steps (an epoch): timings of this worker, draws of this
/// worker or, [`summed`](RehearsalWindow::summed), of all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RehearsalWindow {
    pub timing: StepTimings,
    pub draws: DrawCounts,
}

impl RehearsalWindow {
    /// This worker's timings and every worker's draws (a collective call).
    pub fn summed(&self, world: &dyn Communicator) -> Self {
        RehearsalWindow {
            timing: self.timing,
            draws: self.draws.summed(world),
        }
    }
}

/// The resolved buffer of a run, as reported in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RehearsalReport {
    #[serde(flatten)]
    pub config: RehearsalConfig,
    /// Slots in all (this worker).
    pub capacity: usize,
    /// Slots per class, were they spread evenly (this worker).
    pub per_class: f64,
    /// Samples stored per class at the end of the run (this worker).
    pub final_class_counts: Vec<usize>,
    /// Slots in all over every worker (the global budget).
    pub world_capacity: usize,
    /// Samples stored per class over every worker at the end of the run.
    pub world_class_counts: Vec<usize>,
    /// The timing breakdown over the whole run (this worker).
    pub timing: StepTimings,
    /// Where the representatives of the whole run came from (every worker).
    pub draws: DrawCounts,
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
    /// Per-class loss weights of the step, when the agent weighs classes.
    pub class_weights: Option<Tensor>,
    /// The buffer as this batch left it, when the step ends with a checkpoint.
    pub snapshot: Option<BufferState>,
    /// What the buffer stored with the representatives (flyweight mode, agents that store).
    pub representative_payloads: Option<Tensor>,
    /// The fresh samples, for the training thread to offer to the buffer after the step, with
    /// the logits it gave them (agents that store logits).
    pub offer: Option<PendingOffer>,
}

/// Fresh samples to offer to the buffer after their step.
pub struct PendingOffer {
    /// The stored form of each sample, one after the other, and its length.
    bytes: Vec<u8>,
    lengths: Vec<u32>,
    labels: Vec<u32>,
}

/// A copy of a worker's rehearsal state as a batch of a pass left it.
pub struct BufferState {
    pub buffer: RehearsalBuffer<u8>,
    /// The pass's rehearsal up to that batch.
    pub window: RehearsalWindow,
}

impl StepBatch {
    /// The batch with every tensor [`staged`](crate::trainer::staged) for `device`.
    pub fn staged(self, device: tch::Device) -> Result<Self, TrainError> {
        use crate::trainer::staged;
        Ok(StepBatch {
            images: staged(self.images, device)?,
            labels: staged(self.labels, device)?,
            fresh: self.fresh,
            representatives: self
                .representatives
                .map(|(images, labels)| Ok::<_, TrainError>((staged(images, device)?, staged(labels, device)?)))
                .transpose()?,
            class_weights: self.class_weights.map(|w| staged(w, device)).transpose()?,
            snapshot: self.snapshot,
            representative_payloads: self.representative_payloads.map(|p| staged(p, device)).transpose()?,
            offer: self.offer,
        })
    }

    /// A minibatch without representatives, as a collate function's result.
    pub fn plain(batch: HostBatch) -> Result<Self, TrainError> {
        let (images, labels) = crate::trainer::tensors_of(&batch)?;
        Ok(StepBatch {
            images,
            labels,
            fresh: batch.labels.len(),
            representatives: None,
            class_weights: None,
            snapshot: None,
            representative_payloads: None,
            offer: None,
        })
    }
}

/// The rehearsal state of a run: the buffer, the service that shares it with the other
/// workers, and the timings of the current window.
pub struct Rehearsal {
    config: RehearsalConfig,
    buffer: Arc<Mutex<RehearsalBuffer<u8>>>,
    service: Box<dyn BufferService>,
    /// The current window, filled by the loader thread.
    window: Arc<Mutex<RehearsalWindow>>,
    total: RehearsalWindow,
    image_shape: [usize; 3],
    /// Floats stored with every sample (the agent's logits); 0: none. With them, the training
    /// thread offers each batch after its step ([`Rehearsal::offer_after_step`]).
    payload_len: usize,
    /// Holds each pass's draws back until the previous batch is in the buffer, when the
    /// training thread offers.
    gate: Arc<StepGate>,
    /// Whether the stream is offered to the buffer (not when its owner curates it).
    stores_stream: bool,
    /// Sets of representatives drawn at each step ([`Rehearsal::draw_sets`]).
    sets: usize,
}

/// The steps whose fresh samples the training thread has offered to the buffer, for the
/// draws of the next step to wait for (so that they see the same buffer at every run).
#[derive(Default)]
struct StepGate {
    /// (Batches of the pass offered, counting those before a resumed pass's first; whether
    /// the pass is over.)
    state: Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
}

impl StepGate {
    /// A new pass that starts at step `first`.
    fn open(&self, first: usize) {
        *self.state.lock().expect("gate lock poisoned") = (first, false);
    }

    /// Waits until the batches before `step` are offered; fails once the pass is over.
    fn wait_for(&self, step: usize) -> Result<(), TrainError> {
        let mut state = self.state.lock().expect("gate lock poisoned");
        while state.0 < step && !state.1 {
            state = self.changed.wait(state).expect("gate lock poisoned");
        }
        match state.1 {
            true => Err(TrainError::Config("the training pass ended".into())),
            false => Ok(()),
        }
    }

    fn offered(&self) {
        self.state.lock().expect("gate lock poisoned").0 += 1;
        self.changed.notify_all();
    }

    fn close(&self) {
        self.state.lock().expect("gate lock poisoned").1 = true;
        self.changed.notify_all();
    }
}

impl Rehearsal {
    /// This worker's buffer, sized for `train_len` training samples of `num_classes` classes
    /// and a budget split over the workers of `world`, served to them with global sampling
    /// (a collective call).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: RehearsalConfig,
        num_classes: usize,
        image_shape: [usize; 3],
        payload_len: usize,
        train_len: usize,
        world: &dyn Communicator,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let (rank, workers) = (world.rank(), world.size());
        let capacity_of = |r: usize| config.size.worker_capacity(train_len, num_classes, r, workers);
        // Every rank checks every rank's share, so that all refuse together.
        if let Some(empty) = (0..workers).find(|&r| capacity_of(r) == 0) {
            let whom = if workers > 1 {
                format!("worker {empty} of {workers}")
            } else {
                "it".to_owned()
            };
            return Err(TrainError::Config(format!(
                "--agent-config: the rehearsal buffer ({}) leaves no slot to {whom}",
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
        let buffer_config = |capacity| BufferConfig {
            capacity,
            num_classes,
            sample_len: match config.store {
                StoreMode::Tensor => SampleLen::Fixed(image_shape.iter().product::<usize>() * size_of::<f32>()),
                StoreMode::Raw => SampleLen::Variable,
            },
            payload_len,
            policy,
            seed: seed ^ 0x5245_4845_4152_5345,
        };
        let refused = |e: dcl_buffer::BufferError| TrainError::Config(format!("--agent-config: {e}"));
        let smallest = (0..workers).map(capacity_of).min().unwrap_or(0);
        buffer_config(smallest).validate().map_err(refused)?;
        let buffer = RehearsalBuffer::new(buffer_config(capacity_of(rank))).map_err(refused)?;
        let buffer = Arc::new(Mutex::new(buffer));
        let service = if config.global_sampling {
            world.serve_buffer(Arc::clone(&buffer))
        } else {
            world.local_buffer(Arc::clone(&buffer))
        };
        let empty = RehearsalWindow {
            timing: StepTimings::default(),
            draws: DrawCounts::new(workers, num_classes),
        };
        Ok(Rehearsal {
            config,
            buffer,
            service,
            window: Arc::new(Mutex::new(empty.clone())),
            total: empty,
            image_shape,
            payload_len,
            gate: Arc::default(),
            stores_stream: true,
            sets: 1,
        })
    }

    /// Whether the loader must hand over each sample's stored form with its batch.
    pub fn needs_records(&self) -> bool {
        self.config.store == StoreMode::Raw
    }

    /// The collate function of a training pass over task `task` that starts at step
    /// `first_step` of the pass: runs on the loader thread. `seed` drives the pass's choice of
    /// which worker's buffer each representative comes from; with raw storage,
    /// representatives go through `pipeline` again, their random choices seeded by
    /// `augment_seed`, the step and their place in the draw. After offering the batch of a
    /// step that `checkpoints` names, it attaches a copy of the buffer to the step's batch.
    pub fn collate(
        &self,
        task: usize,
        seed: u64,
        pipeline: &Pipeline,
        augment_seed: u64,
        first_step: usize,
        checkpoints: Arc<CheckpointSteps>,
    ) -> impl FnMut(HostBatch) -> Result<StepBatch, TrainError> + Send + 'static {
        let buffer = Arc::clone(&self.buffer);
        let mut transport = self.service.client(seed, first_step as u64);
        let window = Arc::clone(&self.window);
        let class_weights = self.config.class_weights;
        let count = if task >= self.config.start_task {
            self.config.num_representatives * self.sets
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
        let mut replay = Replay::new(self.config.store, pipeline.clone(), augment_seed, c * h * w);
        replay.step = first_step as u64;
        let mut step = first_step;
        let payload_len = self.payload_len;
        let offer_later = payload_len > 0;
        let stores_stream = self.stores_stream;
        self.gate.open(first_step);
        let gate = Arc::clone(&self.gate);
        move |fresh: HostBatch| {
            if offer_later {
                gate.wait_for(step)?;
            }
            let mut clock = Stopwatch::new();
            drawn.clear();
            transport.draw(count, before_era, &mut drawn)?;
            clock.lap(TimingStage::Sample);
            let reps = drawn.len();
            let rep_labels: Vec<i64> = drawn.labels.iter().map(|&l| l as i64).collect();
            let rep_images = replay.images(&drawn)?;
            clock.lap(TimingStage::RepresentativesCopy);
            let batch = match mode {
                PipelineMode::Standard => {
                    let n = fresh.labels.len() + reps;
                    let mut images = Vec::with_capacity(n * c * h * w);
                    images.extend_from_slice(&fresh.images);
                    let mut labels = fresh.labels.clone();
                    clock.lap(TimingStage::BatchCopy);
                    images.extend_from_slice(rep_images);
                    labels.extend_from_slice(&rep_labels);
                    let shape = [n as i64, c as i64, h as i64, w as i64];
                    let batch = StepBatch {
                        images: host_tensor(&images, &shape)?,
                        labels: host_tensor(&labels, &[n as i64])?,
                        fresh: fresh.labels.len(),
                        representatives: None,
                        class_weights: None,
                        snapshot: None,
                        representative_payloads: None,
                        offer: None,
                    };
                    clock.lap(TimingStage::RepresentativesCopy);
                    batch
                }
                PipelineMode::Flyweight => {
                    let representatives = if reps > 0 {
                        let shape = [reps as i64, c as i64, h as i64, w as i64];
                        Some((
                            host_tensor(rep_images, &shape)?,
                            host_tensor(&rep_labels, &[reps as i64])?,
                        ))
                    } else {
                        None
                    };
                    clock.lap(TimingStage::RepresentativesCopy);
                    let (images, labels) = crate::trainer::tensors_of(&fresh)?;
                    clock.lap(TimingStage::BatchCopy);
                    StepBatch {
                        images,
                        labels,
                        fresh: fresh.labels.len(),
                        representatives,
                        class_weights: None,
                        snapshot: None,
                        representative_payloads: (payload_len > 0 && reps > 0)
                            .then(|| host_tensor(&drawn.payloads, &[reps as i64, payload_len as i64]))
                            .transpose()?,
                        offer: None,
                    }
                }
            };
            let labels: Vec<u32> = fresh.labels.iter().map(|&l| l as u32).collect();
            let offer = offer_later.then(|| PendingOffer::of(&fresh, labels.clone(), replay.store));
            let (weights, copy) = {
                let mut buffer = buffer.lock().expect("buffer lock poisoned");
                if !offer_later && stores_stream {
                    match replay.store {
                        StoreMode::Tensor => buffer.offer(as_bytes(&fresh.images), &labels, &[])?,
                        StoreMode::Raw => {
                            let records = &fresh.records;
                            buffer.offer_records(&records.bytes, &records.lengths, &labels, &[])?
                        }
                    }
                }
                let weights = class_weights.then(|| inverse_frequency(buffer.seen_per_class()));
                (weights, (!offer_later && checkpoints.at(step)).then(|| buffer.clone()))
            };
            clock.lap(TimingStage::BufferUpdate);
            let mut shared = window.lock().expect("window lock poisoned");
            shared.timing.merge(&clock.timings);
            shared.timing.steps += 1;
            shared.draws.add(&drawn);
            let snapshot = copy.map(|buffer| BufferState {
                buffer,
                window: shared.clone(),
            });
            step += 1;
            Ok(StepBatch {
                class_weights: weights.map(|w| host_tensor(&w, &[w.len() as i64])).transpose()?,
                snapshot,
                offer,
                ..batch
            })
        }
    }

    /// Stops offering the stream to the buffer: its owner curates it
    /// ([`Rehearsal::replace_memory`]).
    pub fn keep_stream_out(&mut self) {
        self.stores_stream = false;
    }

    /// Draws `sets` times `num_representatives` at every step ([`crate::Agent::replay_sets`]).
    pub fn draw_sets(&mut self, sets: usize) {
        self.sets = sets.max(1);
    }

    /// The classes the buffer knows.
    pub fn num_classes(&self) -> usize {
        self.buffer.lock().expect("buffer lock poisoned").config().num_classes
    }

    /// This worker's slots.
    pub fn capacity(&self) -> usize {
        self.buffer.lock().expect("buffer lock poisoned").config().capacity
    }

    /// The samples stored of `class`.
    pub fn class_len(&self, class: usize) -> usize {
        self.buffer.lock().expect("buffer lock poisoned").class_counts()[class]
    }

    /// The stored network inputs of `class`, in the order they were stored (tensor store).
    pub fn class_images(&self, class: usize) -> Result<Tensor, TrainError> {
        self.tensor_store()?;
        let mut drawn = Drawn::default();
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .class_samples(class, &mut drawn);
        self.inputs_of(&drawn)
    }

    /// The network inputs of stored samples (tensor store), one image after the other.
    fn inputs_of(&self, drawn: &Drawn<u8>) -> Result<Tensor, TrainError> {
        let values: Vec<f32> = floats_of(&drawn.samples).collect();
        let [c, h, w] = self.image_shape.map(|d| d as i64);
        host_tensor(&values, &[drawn.len() as i64, c, h, w])
    }

    /// Replaces the buffer's content by `images` (network inputs) of `labels`, in order.
    pub fn replace_memory(&self, images: &Tensor, labels: &[u32]) -> Result<(), TrainError> {
        self.tensor_store()?;
        let values = Vec::<f32>::try_from(images.f_to_device(tch::Device::Cpu)?.f_contiguous()?.f_flatten(0, -1)?)?;
        let len = (self.image_shape.iter().product::<usize>() * size_of::<f32>()) as u32;
        let mut buffer = self.buffer.lock().expect("buffer lock poisoned");
        let payloads = vec![0.0; labels.len() * buffer.config().payload_len];
        buffer.replace_contents(as_bytes(&values), &vec![len; labels.len()], labels, &payloads)?;
        Ok(())
    }

    /// Refuses a buffer of raw samples, for the operations on network inputs.
    fn tensor_store(&self) -> Result<(), TrainError> {
        match self.config.store {
            StoreMode::Tensor => Ok(()),
            StoreMode::Raw => Err(TrainError::Config(
                "--agent-config: this agent keeps its memory as network inputs: drop 'store': 'raw'".into(),
            )),
        }
    }

    /// Whether the training thread offers each batch after its step.
    pub fn offers_after_step(&self) -> bool {
        self.payload_len > 0
    }

    /// Offers a step's fresh samples with the `logits` the model gave them (one row each),
    /// then lets the next step's draws go; with `copy`, returns the buffer as they left it.
    pub fn offer_after_step(
        &self,
        offer: PendingOffer,
        logits: &Tensor,
        copy: bool,
    ) -> Result<Option<BufferState>, TrainError> {
        let payloads = Vec::<f32>::try_from(logits.f_to_device(tch::Device::Cpu)?.f_flatten(0, -1)?)?;
        let state = {
            let mut buffer = self.buffer.lock().expect("buffer lock poisoned");
            offer.offer_to(&mut buffer, &payloads)?;
            copy.then(|| BufferState {
                buffer: buffer.clone(),
                window: self.current_window(),
            })
        };
        self.gate.offered();
        Ok(state)
    }

    /// This worker's memory: every stored sample as a network input, and its label, on
    /// `device` (stored tensors only).
    pub fn memory(&self, device: tch::Device) -> Result<(Tensor, Tensor), TrainError> {
        self.tensor_store()?;
        let mut drawn = Drawn::default();
        {
            let buffer = self.buffer.lock().expect("buffer lock poisoned");
            // Every stored sample, in an order that depends on nothing but the buffer.
            buffer.draw_with(&mut ChaCha8Rng::seed_from_u64(0), buffer.len(), None, &mut drawn);
        }
        let labels: Vec<i64> = drawn.labels.iter().map(|&l| l as i64).collect();
        Ok((
            self.inputs_of(&drawn)?.f_to_device(device)?,
            host_tensor(&labels, &[labels.len() as i64])?.f_to_device(device)?,
        ))
    }

    /// Ends the current pass for its draws (the training thread's pass is over).
    pub fn end_pass(&self) {
        self.gate.close();
    }

    /// A copy of this worker's buffer, with `copy_buffer` (to save in the background: one
    /// copy of its memory), and the totals of the run so far: what a checkpoint keeps of
    /// rehearsal.
    pub fn snapshot(&self, copy_buffer: bool) -> (Option<RehearsalBuffer<u8>>, RehearsalWindow) {
        let buffer = copy_buffer.then(|| self.buffer.lock().expect("buffer lock poisoned").clone());
        (buffer, self.total.clone())
    }

    /// Restores the buffer saved from [`Rehearsal::snapshot`], read from `buffer` (a
    /// checkpoint's file, streamed), and the totals (the service goes on serving the restored
    /// buffer).
    pub fn restore(&mut self, buffer: impl std::io::Read, total: RehearsalWindow) -> Result<(), TrainError> {
        let mut guard = self.buffer.lock().expect("buffer lock poisoned");
        let config = *guard.config();
        *guard = RehearsalBuffer::load(&mut std::io::BufReader::with_capacity(1 << 20, buffer), Some(&config))?;
        self.total = total;
        Ok(())
    }

    /// Ends rehearsal after the last training pass (every worker calls it): returns the
    /// report of the run and stops sharing the buffer.
    pub fn finish(self, world: &dyn Communicator) -> RehearsalReport {
        let report = self.report(world);
        self.service.stop();
        report
    }

    /// Adds the training thread's wait for a minibatch to the current window.
    pub fn add_wait(&self, elapsed: std::time::Duration) {
        self.window
            .lock()
            .expect("window lock poisoned")
            .timing
            .add(TimingStage::Wait, elapsed);
    }

    /// Closes the current window (a pass) and returns it, as this worker saw it.
    pub fn take_window(&mut self) -> RehearsalWindow {
        let mut window = self.window.lock().expect("window lock poisoned");
        let fresh = RehearsalWindow {
            timing: StepTimings::default(),
            draws: DrawCounts::new(window.draws.per_rank.len(), window.draws.per_class.len()),
        };
        std::mem::replace(&mut *window, fresh)
    }

    /// A copy of the current window.
    pub fn current_window(&self) -> RehearsalWindow {
        self.window.lock().expect("window lock poisoned").clone()
    }

    /// The current window, from a resumed pass's part done.
    pub fn set_window(&mut self, window: RehearsalWindow) {
        *self.window.lock().expect("window lock poisoned") = window;
    }

    /// Adds a closed window, its draws summed over the workers, to the run's totals.
    pub fn add_to_total(&mut self, window: &RehearsalWindow) {
        self.total.timing.merge(&window.timing);
        self.total.draws.merge(&window.draws);
    }

    /// The report of the run so far (a collective call: it sums the workers' buffers).
    pub fn report(&self, world: &dyn Communicator) -> RehearsalReport {
        let buffer = self.buffer.lock().expect("buffer lock poisoned");
        let counts = buffer.class_counts();
        let mut world_counts: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
        world.all_reduce_sum_f64(&mut world_counts);
        let capacity = buffer.config().capacity;
        let mut world_capacity = [capacity as f64];
        world.all_reduce_sum_f64(&mut world_capacity);
        RehearsalReport {
            config: self.config.clone(),
            capacity,
            per_class: capacity as f64 / counts.len() as f64,
            final_class_counts: counts,
            world_capacity: world_capacity[0] as usize,
            world_class_counts: world_counts.iter().map(|&c| c as usize).collect(),
            timing: self.total.timing,
            draws: self.total.draws.clone(),
            timing_ms_per_step: self
                .total
                .timing
                .per_step_ms()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }
}

impl PendingOffer {
    /// The stored form of the samples of `fresh`: the network inputs (`Tensor`) or the
    /// records (`Raw`).
    fn of(fresh: &HostBatch, labels: Vec<u32>, store: StoreMode) -> Self {
        match store {
            StoreMode::Tensor => {
                let per_sample = fresh.images.len() / labels.len().max(1) * size_of::<f32>();
                PendingOffer {
                    bytes: as_bytes(&fresh.images).to_vec(),
                    lengths: vec![per_sample as u32; labels.len()],
                    labels,
                }
            }
            StoreMode::Raw => PendingOffer {
                bytes: fresh.records.bytes.clone(),
                lengths: fresh.records.lengths.clone(),
                labels,
            },
        }
    }

    fn offer_to(&self, buffer: &mut RehearsalBuffer<u8>, payloads: &[f32]) -> Result<(), TrainError> {
        Ok(buffer.offer_records(&self.bytes, &self.lengths, &self.labels, payloads)?)
    }
}

/// Per-class loss weights from the samples seen per class: the inverse frequency of each
/// class, normalised so that a stream of balanced classes weighs 1 each; classes not seen yet
/// weigh 1.
fn inverse_frequency(seen: &[u64]) -> Vec<f32> {
    let classes = seen.iter().filter(|&&n| n > 0).count().max(1) as f32;
    let total = seen.iter().sum::<u64>().max(1) as f32;
    seen.iter()
        .map(|&n| if n == 0 { 1.0 } else { total / (classes * n as f32) })
        .collect()
}

/// Turns drawn samples back into network inputs.
struct Replay {
    store: StoreMode,
    pipeline: Pipeline,
    tables: [[f32; 256]; 3],
    scratch: Scratch,
    augment_seed: u64,
    /// Values of one network input.
    input_len: usize,
    /// Draws so far in the pass.
    step: u64,
    images: Vec<f32>,
}

impl Replay {
    fn new(store: StoreMode, pipeline: Pipeline, augment_seed: u64, input_len: usize) -> Self {
        Replay {
            store,
            tables: pipeline.normalization.lookup_tables(),
            pipeline,
            scratch: Scratch::default(),
            augment_seed,
            input_len,
            step: 0,
            images: Vec::new(),
        }
    }

    /// The network inputs of `drawn`, one after the other: stored tensors as they are, raw
    /// samples through the pipeline with fresh random choices.
    fn images(&mut self, drawn: &Drawn<u8>) -> Result<&[f32], TrainError> {
        self.images.clear();
        match self.store {
            StoreMode::Tensor => self.images.extend(floats_of(&drawn.samples)),
            StoreMode::Raw => {
                for (i, record) in drawn.records().enumerate() {
                    let seed = self.augment_seed ^ (self.step << 32 | i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    self.pipeline.extend_from_record(
                        record,
                        &mut rng,
                        &mut self.scratch,
                        &self.tables,
                        &mut self.images,
                    )?;
                }
            }
        }
        self.step += 1;
        if self.images.len() != drawn.len() * self.input_len {
            return Err(TrainError::Config(format!(
                "rehearsal: replayed samples of {} values where the network takes {}: give --input-size",
                self.images.len() / drawn.len().max(1),
                self.input_len
            )));
        }
        Ok(&self.images)
    }
}

/// The values of bytes kept by [`as_bytes`].
fn floats_of(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(size_of::<f32>())
        .map(|b| f32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

/// The bytes of `values` in native order, as the buffer keeps tensors.
fn as_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: any f32 is 4 initialised bytes, and u8 has no alignment requirement.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
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

    use dcl_data::{ImageSet, Loader, LoaderConfig, LoaderSource, Normalization, Pipeline, SampleRef, View};
    use dcl_dist::SingleProcess;

    use super::*;

    /// 200 images of two pixels: (label, sample index); labels 0..10, 20 per class.
    fn tagged_set() -> LoaderSource {
        let labels: Vec<u32> = (0..200).map(|i| i % 10).collect();
        let images = (0..200).flat_map(|i| [(i % 10) as u8, i as u8]).collect();
        LoaderSource {
            set: Arc::new(ImageSet {
                images,
                labels,
                image_shape: [1, 1, 2],
            }),
            views: Arc::new(vec![View::Identity]),
            // Values come out as the bytes themselves.
            pipeline: Pipeline {
                transform: dcl_data::Transform::Identity,
                normalization: Normalization::uniform(0.0, 1.0 / 255.0),
            },
            keep_records: false,
        }
    }

    /// Collates passes over the tagged set for `rehearsal`.
    fn collate(
        rehearsal: &Rehearsal,
        task: usize,
    ) -> impl FnMut(HostBatch) -> Result<StepBatch, TrainError> + Send + 'static {
        rehearsal.collate(task, 0, &tagged_set().pipeline, 0, 0, Default::default())
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
            store: StoreMode::Tensor,
        }
    }

    /// A rehearsal over the tagged set's 10 classes and 200 samples, in a world of one.
    fn new_rehearsal(config: RehearsalConfig, batch_size: usize) -> Result<Rehearsal, TrainError> {
        Rehearsal::new(config, 10, [1, 1, 2], 0, 200, &SingleProcess, batch_size, 7)
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
    /// Per step: the decoded samples, the fresh count and the task.
    type Steps = Vec<(Vec<(i64, i64, i64)>, usize, usize)>;

    fn run(mode: PipelineMode, replay: ReplaySource, batch_size: usize) -> Steps {
        run_storing(StoreMode::Tensor, mode, replay, batch_size)
    }

    /// [`run`], the buffer keeping samples as `store` says.
    fn run_storing(store: StoreMode, mode: PipelineMode, replay: ReplaySource, batch_size: usize) -> Steps {
        let rehearsal = new_rehearsal(
            RehearsalConfig {
                store,
                ..config(mode, replay)
            },
            batch_size,
        )
        .unwrap();
        let source = LoaderSource {
            keep_records: rehearsal.needs_records(),
            ..tagged_set()
        };
        let mut steps = Vec::new();
        for task in 0..2 {
            let samples = refs((0..200u32).filter(|i| (i % 10 < 5) == (task == 0)));
            let loader_config = LoaderConfig {
                batch_size,
                shuffle_seed: Some(task as u64),
                prefetch: 2,
                workers: 0,
                augment_seed: 0,
            };
            for batch in Loader::spawn(source.clone(), samples, loader_config, collate(&rehearsal, task)) {
                let (decoded, fresh) = samples_of(&batch.unwrap().unwrap());
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
    fn raw_storage_replays_the_samples_that_tensor_storage_replays() {
        for mode in MODES {
            // Through the identity transform, a raw sample replays as its tensor did.
            let raw = run_storing(StoreMode::Raw, mode, ReplaySource::PastTasks, 8);
            assert_eq!(raw, run(mode, ReplaySource::PastTasks, 8), "{mode:?}");
            assert!(raw.iter().any(|(s, f, _)| s.len() > *f));
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
                workers: 0,
                augment_seed: 0,
            };
            Loader::spawn(tagged_set(), samples, config, StepBatch::plain)
                .map(|b| samples_of(&b.unwrap().unwrap()).0.iter().map(|s| s.1).collect())
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

    /// A rehearsal storing two floats of "logits" with every sample (flyweight pipeline).
    fn storing_logits() -> Rehearsal {
        let config = config(PipelineMode::Flyweight, ReplaySource::All);
        Rehearsal::new(config, 10, [1, 1, 2], 2, 200, &SingleProcess, 10, 7).unwrap()
    }

    /// A pass of six batches of 10 over the tagged set through `rehearsal`.
    fn six_batches(rehearsal: &Rehearsal) -> Loader<Result<StepBatch, TrainError>> {
        let loader_config = LoaderConfig {
            batch_size: 10,
            shuffle_seed: None,
            prefetch: 2,
            workers: 0,
            augment_seed: 0,
        };
        Loader::spawn(tagged_set(), refs(0..60u32), loader_config, collate(rehearsal, 0))
    }

    #[test]
    fn stored_logits_are_offered_after_their_step_and_travel_with_their_samples() {
        let rehearsal = storing_logits();
        assert!(rehearsal.offers_after_step());
        let mut loader = six_batches(&rehearsal);
        // A failed assertion must not leave the loader waiting for an offer: the pass ends
        // before the loader (declared first) is dropped.
        struct EndPass<'r>(&'r Rehearsal);
        impl Drop for EndPass<'_> {
            fn drop(&mut self) {
                self.0.end_pass();
            }
        }
        let _end_pass = EndPass(&rehearsal);
        let mut replayed = 0;
        for batch in loader.by_ref() {
            let mut batch = batch.unwrap().unwrap();
            // What the buffer gave back: each representative's payload is the "logits" its
            // step stored, (index, 10 · label) of the sample.
            if let (Some((images, labels)), Some(payloads)) = (&batch.representatives, &batch.representative_payloads) {
                let pixels = Vec::<f32>::try_from(images.flatten(0, -1)).unwrap();
                let labels = Vec::<i64>::try_from(labels).unwrap();
                let payloads = Vec::<f32>::try_from(payloads.flatten(0, -1)).unwrap();
                for ((px, label), payload) in pixels.chunks(2).zip(&labels).zip(payloads.chunks(2)) {
                    assert_eq!(payload, [px[1].round(), 10.0 * *label as f32]);
                    replayed += 1;
                }
            }
            let (samples, fresh) = samples_of(&batch);
            let logits: Vec<f32> = samples[..fresh]
                .iter()
                .flat_map(|&(_, index, label)| [index as f32, 10.0 * label as f32])
                .collect();
            let logits = Tensor::from_slice(&logits).view([fresh as i64, 2]);
            let offer = batch.offer.take().expect("the step's samples to offer");
            rehearsal.offer_after_step(offer, &logits, false).unwrap();
        }
        assert!(replayed > 0, "nothing replayed");
        assert_eq!(rehearsal.buffer.lock().unwrap().len(), 40);
    }

    #[test]
    fn a_pass_that_ends_releases_draws_waiting_for_a_step() {
        let rehearsal = storing_logits();
        let mut loader = six_batches(&rehearsal);
        let _first = loader.next().unwrap().unwrap().unwrap();
        // The second batch waits for the first's offer, which never comes: the pass ends.
        rehearsal.end_pass();
        let second = loader.next().unwrap().unwrap();
        assert!(second.is_err());
    }

    #[test]
    fn the_report_tracks_the_buffer_and_timings() {
        let mut rehearsal = new_rehearsal(config(PipelineMode::Standard, ReplaySource::All), 8).unwrap();
        let samples = refs(0..100u32);
        let loader_config = LoaderConfig {
            batch_size: 10,
            shuffle_seed: None,
            prefetch: 2,
            workers: 0,
            augment_seed: 0,
        };
        let steps = Loader::spawn(tagged_set(), samples, loader_config, collate(&rehearsal, 0)).count();
        let window = rehearsal.take_window().summed(&SingleProcess);
        rehearsal.add_to_total(&window);
        assert_eq!(window.timing.steps, steps as u64);
        // 6 representatives per step once the buffer holds 6; the first step draws nothing.
        let drawn: u64 = window.draws.per_rank.iter().sum();
        assert_eq!(window.draws.per_rank.len(), 1);
        assert_eq!(drawn, window.draws.per_class.iter().sum::<u64>());
        assert_eq!(drawn, 6 * (steps as u64 - 1));
        let report = rehearsal.report(&SingleProcess);
        assert_eq!(
            (report.capacity, report.per_class, report.world_capacity),
            (40, 4.0, 40)
        );
        assert_eq!(report.final_class_counts, vec![4; 10]);
        assert_eq!(report.timing.steps, 10);
        assert_eq!(report.draws, window.draws);
    }

    #[test]
    fn class_weights_follow_the_inverse_class_frequency_of_the_stream_up_to_the_step() {
        let weights_of = |class_weights: bool| -> Vec<Option<Vec<f32>>> {
            let config = RehearsalConfig {
                class_weights,
                ..config(PipelineMode::Standard, ReplaySource::All)
            };
            let rehearsal = new_rehearsal(config, 8).unwrap();
            // 20 samples of class 0 (all there are), then 10 of class 1.
            let of_class = |c: u32, n: usize| (0..200u32).filter(move |i| i % 10 == c).take(n);
            let samples = refs(of_class(0, 20).chain(of_class(1, 10)));
            let loader_config = LoaderConfig {
                batch_size: 10,
                shuffle_seed: None,
                prefetch: 2,
                workers: 0,
                augment_seed: 0,
            };
            Loader::spawn(tagged_set(), samples, loader_config, collate(&rehearsal, 0))
                .map(|b| {
                    b.unwrap()
                        .unwrap()
                        .class_weights
                        .map(|w| Vec::<f32>::try_from(w).unwrap())
                })
                .collect()
        };
        assert!(weights_of(false).iter().all(Option::is_none));
        let steps = weights_of(true);
        // Step 1 and 2: class 0 only, which weighs 1; the others are unseen and weigh 1.
        assert_eq!(steps[1].as_ref().unwrap()[..3], [1.0, 1.0, 1.0]);
        // Step 3, whatever the loader's lead: 30 seen over 2 classes: 30 / (2 * 20) = 0.75
        // and 30 / (2 * 10) = 1.5.
        let last = steps[2].as_ref().unwrap();
        assert!(
            (last[0] - 0.75).abs() < 1e-6 && (last[1] - 1.5).abs() < 1e-6,
            "{last:?}"
        );
        assert_eq!(last[2], 1.0, "an unseen class weighs 1");
    }

    #[test]
    fn the_budget_is_split_exactly_over_the_workers_and_an_empty_share_is_refused() {
        let capacities = |size: BufferSize, workers: usize| -> Vec<usize> {
            (0..workers)
                .map(|r| size.worker_capacity(60_000, 10, r, workers))
                .collect()
        };
        assert_eq!(capacities(BufferSize::Total(500), 3), vec![167, 167, 166]);
        assert_eq!(capacities(BufferSize::Total(5), 1), vec![5]);
        assert_eq!(capacities(BufferSize::Ratio(1.0), 7).iter().sum::<usize>(), 600);
        assert_eq!(capacities(BufferSize::PerClass(3), 2), vec![30, 30]);
        assert_eq!(capacities(BufferSize::Total(1), 2), vec![1, 0]);

        let sized = |size: BufferSize, policy: PolicyName| RehearsalConfig {
            size,
            policy,
            ..config(PipelineMode::Standard, ReplaySource::All)
        };
        let five = new_rehearsal(sized(BufferSize::Total(5), PolicyName::Reservoir), 8).unwrap();
        assert_eq!(five.report(&SingleProcess).capacity, 5);
        let err = new_rehearsal(sized(BufferSize::Total(0), PolicyName::Reservoir), 8)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("the rehearsal buffer ('buffer_size': 0) leaves no slot to it"),
            "{err}"
        );
        let err = new_rehearsal(sized(BufferSize::Total(5), PolicyName::Upstream), 8)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("the upstream policy needs a slot per class: 5 slots for 10 classes"),
            "{err}"
        );
    }

    #[test]
    fn stopping_a_pass_early_shuts_the_pipeline_down() {
        let rehearsal = new_rehearsal(config(PipelineMode::Flyweight, ReplaySource::All), 4).unwrap();
        let samples = refs(0..200u32);
        let loader_config = LoaderConfig {
            batch_size: 4,
            shuffle_seed: None,
            prefetch: 1,
            workers: 0,
            augment_seed: 0,
        };
        let mut loader = Loader::spawn(tagged_set(), samples, loader_config, collate(&rehearsal, 0));
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
