//! The training loop: tasks in sequence, epochs within a task, evaluation on every task
//! seen so far after each epoch.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dcl_data::{
    shard, HostBatch, Loader, LoaderConfig, LoaderSource, Pipeline, SampleRef, Scenario, SplitDataset, TaskIdentity,
};
use dcl_dist::Communicator;
use dcl_models::ModelInput;
use tch::{Device, Kind, Reduction, Tensor};

use crate::agents::{self, Agent, Retrain, TaskEnd};
use crate::checkpoint::{self, CheckpointSteps, Checkpointer, Loaded, PassProgress, Position, Snapshot};
use crate::guard::guarded;
use crate::learner::{class_mask, Learner};
use crate::learner::{LearnerState, Replayed, StepOutcome};
use crate::rehearsal::{BufferState, Rehearsal, RehearsalWindow, StepBatch};
use crate::{EpochRecord, EvalRecord, RunConfig, RunRecord, TrainError, TrainObserver};

/// Batches assembled ahead of the training step.
const PREFETCH_BATCHES: usize = 4;

/// The (images, labels) tensors of a host batch; runs on the loader thread.
pub fn tensors_of(batch: &HostBatch) -> Result<(Tensor, Tensor), TrainError> {
    let shape = batch.shape.map(|d| d as i64);
    let images = host_tensor(&batch.images, &shape)?;
    let labels = host_tensor(&batch.labels, &[batch.labels.len() as i64])?;
    Ok((images, labels))
}

/// A new CPU tensor of `shape` holding a copy of `values`.
///
/// Unlike `Tensor::from_slice`, which zero-fills through libtorch's intra-op thread pool
/// before copying, this issues no parallel libtorch operation. A loader thread that ran
/// one would start a second OpenMP team whose spinning threads steal the cores of the
/// training step: measured on mnistnet, 4.4 ms steps became 6-7 ms. Memory that cannot be had
/// is an error (the loader thread must not panic).
pub fn host_tensor<T: tch::kind::Element>(values: &[T], shape: &[i64]) -> Result<Tensor, TrainError> {
    let tensor = Tensor::f_empty(shape, (T::KIND, Device::Cpu))
        .map_err(|e| crate::guard::torch_error("the loader", &e.to_string()))?;
    assert_eq!(
        tensor.numel(),
        values.len(),
        "shape {shape:?} does not hold {} values",
        values.len()
    );
    // SAFETY: `tensor` is a fresh, contiguous CPU tensor of `values.len()` elements of
    // type T that nothing else references yet.
    unsafe {
        std::ptr::copy_nonoverlapping(values.as_ptr(), tensor.data_ptr() as *mut T, values.len());
    }
    Ok(tensor)
}

/// `tensor` in page-locked host memory when it is bound for a CUDA `device`, so that its copy
/// there runs asynchronously (the training thread queues the step behind it at once); as it is
/// otherwise. Runs on the loader thread.
pub fn staged(tensor: Tensor, device: Device) -> Result<Tensor, TrainError> {
    if device.is_cuda() {
        crate::device::pinned(&tensor)
    } else {
        Ok(tensor)
    }
}

/// A host tensor on `device`: asynchronously from [`staged`] memory.
fn on_device(tensor: &Tensor, device: Device) -> Result<Tensor, TrainError> {
    Ok(tensor.f_to_device_(device, tensor.kind(), true, false)?)
}

/// A seed for one (task, epoch) pass, derived from the run's seed (SplitMix64 mixing),
/// so every pass has its own reproducible shuffle.
pub fn pass_seed(seed: u64, task: usize, epoch: usize) -> u64 {
    let mut z = seed
        .wrapping_add((task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add((epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED69));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a resumed run stands: its checkpoint's position, its record then and, within an
/// epoch, this rank's part of the epoch's pass.
struct Resumed {
    position: Position,
    record: RunRecord,
    pass: Option<PassProgress>,
}

/// A run ready to train: the model, its optimiser and the rehearsal buffer are built, so
/// every check that needs them has passed (call it before creating a results directory).
pub struct Trainer<'a> {
    config: &'a RunConfig,
    /// Where the model, the batches and the metrics live.
    device: Device,
    /// How the training and the test images become network inputs.
    pipelines: [Pipeline; 2],
    data: &'a SplitDataset,
    scenario: &'a Scenario,
    world: Arc<dyn Communicator>,
    learner: Learner,
    /// The method: its loss terms, gradient adjustments and task-end consolidation.
    agent: Box<dyn Agent>,
    rehearsal: Option<Rehearsal>,
    masks: Masks,
    /// The model's outputs: the data set's classes, or the scenario's labels.
    num_classes: usize,
    /// Writes a checkpoint after every epoch, when set.
    checkpointer: Option<Checkpointer>,
    /// Where a resumed run stands.
    resumed: Option<Resumed>,
}

impl<'a> Trainer<'a> {
    /// Builds the run's learner and rehearsal buffer (collective calls: every rank of `world`
    /// makes them, and every check that can fail here fails alike on every rank).
    pub fn new(
        config: &'a RunConfig,
        data: &'a SplitDataset,
        scenario: &'a Scenario,
        world: Arc<dyn Communicator>,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        if config.threads > 0 {
            tch::set_num_threads(config.threads as i32);
        }
        tch::manual_seed(config.seed as i64);
        let device = config.device.resolve_here(world.local_rank())?;
        let [train_pipeline, test_pipeline] = data
            .pipelines(config.input_size, config.augment)
            .map_err(TrainError::Config)?;
        let image_shape = data.input_shape(&train_pipeline);
        let num_classes = scenario.num_outputs(data.num_classes);
        let input = ModelInput {
            image_shape,
            num_classes,
        };
        let mut learner = Learner::new(
            &config.model,
            &dcl_models::ModelConfig::new(config.model_config.clone()),
            input,
            config.optimizer_regime.settings_at(0),
            device,
            Arc::clone(&world),
        )?;
        learner.set_accumulation(config.batches_per_allreduce);
        learner.set_fp16_allreduce(config.fp16_allreduce);
        learner.set_precision(config.amp)?;
        let agent = agents::build(&config.agent.method);
        let mut rehearsal = match &config.agent.rehearsal {
            Some(rehearsal_config) => {
                let train_len = config
                    .train_samples
                    .map_or(data.train.len(), |n| n.min(data.train.len()));
                // Each rank's buffer gets its own stream of random choices.
                let seed = config.seed.wrapping_add(world.rank() as u64);
                Some(Rehearsal::new(
                    rehearsal_config.clone(),
                    num_classes,
                    image_shape,
                    agent.payload_len(num_classes),
                    train_len,
                    &*world,
                    config.batch_size,
                    seed,
                )?)
            }
            None => None,
        };
        if let Some(rehearsal) = rehearsal.as_mut() {
            if !agent.stores_stream() {
                rehearsal.keep_stream_out();
            }
            rehearsal.draw_sets(agent.replay_sets());
        }
        Ok(Trainer {
            config,
            device,
            pipelines: [train_pipeline, test_pipeline],
            data,
            scenario,
            masks: Masks::new(scenario, config.use_mask, num_classes, device),
            num_classes,
            world,
            learner,
            agent,
            rehearsal,
            checkpointer: None,
            resumed: None,
        })
    }

    /// Writes a checkpoint into `results_dir/checkpoints` after every epoch (each rank its
    /// part), keeping the latest two, or every one with `keep_all`.
    pub fn save_checkpoints(&mut self, results_dir: &Path, keep_all: bool) {
        self.checkpointer = Some(Checkpointer::new(
            results_dir,
            self.world.rank(),
            self.world.size(),
            keep_all,
        ));
    }

    /// Continues the run from `checkpoint`: [`Trainer::run`] then starts with the epoch after
    /// the checkpoint's, from its weights, optimiser state, buffers and record.
    pub fn resume(&mut self, checkpoint: Loaded) -> Result<(), TrainError> {
        let Loaded {
            state,
            weights,
            optimizer,
            buffer,
            progress,
            agent,
            ..
        } = checkpoint;
        self.learner.restore(&LearnerState {
            weights,
            optimizer,
            hyper: state.optimizer,
            loss_scale: state.loss_scale,
        })?;
        self.agent.load_state(agent, &self.learner)?;
        match (&mut self.rehearsal, buffer, state.rehearsal) {
            (Some(rehearsal), Some(buffer), Some(total)) => rehearsal.restore(buffer, total)?,
            (None, None, None) => {}
            _ => {
                return Err(TrainError::Config(
                    "the checkpoint's rehearsal state does not match the run's agent".to_owned(),
                ))
            }
        }
        self.resumed = Some(Resumed {
            position: state.position,
            record: state.record,
            pass: progress,
        });
        Ok(())
    }

    /// Where this rank trains.
    pub fn device(&self) -> Device {
        self.device
    }

    /// What building the model said (the weights file it loaded), to show the user.
    pub fn notice(&self) -> Option<&str> {
        self.learner.notice()
    }

    /// Trains on the tasks of the scenario in order and returns the record of the run. Same
    /// seed and configuration give the same record on one CPU worker (but for timings).
    ///
    /// Before every task the optimiser state and the regime restart (upstream's behaviour),
    /// and with `reset_state_dict` the weights return to their initial values. After every
    /// epoch the model is evaluated on the test samples of every task seen so far, and the
    /// observer gets the record so far ([`TrainObserver::evaluated`]): when the run fails or
    /// is interrupted ([`TrainError::Interrupted`], between two steps, when the observer asks
    /// on any rank), what it last got is the run's partial result.
    ///
    /// In a world of several ranks (data parallelism), every rank runs this with the same
    /// configuration: each trains on its own shard of every pass, gradients are averaged
    /// every step, evaluation is sharded too, and every figure of the record is the global one.
    pub fn run(mut self, observer: &mut dyn TrainObserver) -> Result<RunRecord, TrainError> {
        let outcome = self.run_epochs(observer);
        // Complete the checkpoint being written (every rank stops at the same point when
        // interrupted; after another error, a world of several ranks leaves it unfinished).
        if let Some(checkpointer) = &mut self.checkpointer {
            if outcome.is_ok() || self.world.size() == 1 || matches!(outcome, Err(TrainError::Interrupted)) {
                checkpointer.finish(&*self.world)?;
            }
        }
        let mut record = outcome?;
        record.rehearsal = self.rehearsal.map(|r| r.finish(&*self.world));
        Ok(record)
    }

    /// The epochs of [`Trainer::run`].
    fn run_epochs(&mut self, observer: &mut dyn TrainObserver) -> Result<RunRecord, TrainError> {
        let (config, world) = (self.config, Arc::clone(&self.world));
        let (rank, size) = (world.rank(), world.size());
        let [train_pipeline, test_pipeline] = self.pipelines.clone();
        let train_source = LoaderSource {
            set: Arc::clone(&self.data.train),
            views: Arc::clone(&self.scenario.views),
            pipeline: train_pipeline,
            keep_records: self.rehearsal.as_ref().is_some_and(Rehearsal::needs_records),
        };
        let test_source = LoaderSource {
            set: Arc::clone(&self.data.test),
            views: Arc::clone(&self.scenario.views),
            pipeline: test_pipeline,
            keep_records: false,
        };
        let regime = &config.optimizer_regime;
        let started = Instant::now();
        // Where to start: within the resumed checkpoint's epoch, after it, or at the beginning.
        let (first, mut record, mut resumed_pass) = match self.resumed.take() {
            Some(Resumed { position, record, pass }) => {
                let first = match position.step {
                    Some(_) => position,
                    None if position.epoch + 1 < config.epochs => {
                        Position::within_epoch(position.task, position.epoch + 1, 0)
                    }
                    None => Position::within_epoch(position.task + 1, 0, 0),
                };
                (first, record, pass)
            }
            None => (
                Position::within_epoch(0, 0, 0),
                RunRecord {
                    num_tasks: self.scenario.tasks.len(),
                    epochs_per_task: config.epochs,
                    world_size: size,
                    ..Default::default()
                },
                None,
            ),
        };
        let earlier_seconds = record.wall_seconds;
        // The record as a checkpoint within an epoch keeps it: the run's wall time so far.
        let record_now = |record: &RunRecord| RunRecord {
            wall_seconds: earlier_seconds + started.elapsed().as_secs_f64(),
            ..record.clone()
        };
        // Steps of the run before the current pass (for --checkpoint-every-steps).
        let mut steps_before = (0..first.task)
            .map(|t| config.epochs * self.pass_steps(t))
            .sum::<usize>()
            + first.epoch * self.pass_steps(first.task);
        for (task_id, task) in self.scenario.tasks.iter().enumerate().skip(first.task) {
            let first_epoch = if task_id == first.task { first.epoch } else { 0 };
            for epoch in first_epoch..config.epochs {
                let pass_progress = match (task_id, epoch) == (first.task, first.epoch) {
                    true => resumed_pass.take(),
                    false => None,
                };
                // Before every task the optimiser state restarts (the weights too with
                // reset_state_dict), unless the run resumes within the task's first epoch.
                if epoch == 0 && pass_progress.is_none() {
                    if task_id > 0 && config.agent.reset_state_dict {
                        self.learner.reset_weights();
                    }
                    self.learner.reset_optimizer(regime.settings_at(0))?;
                }
                let done_steps = match &pass_progress {
                    Some(_) => first.step.unwrap_or(0),
                    None => 0,
                };
                self.learner.apply(regime.settings_at(epoch))?;
                self.learner.set_progress(epoch as f64 / config.epochs as f64);
                let augment_seed = pass_seed(config.seed ^ 0x0061_7567_6D65_6E74, task_id, epoch);
                let checkpoints = Arc::new(CheckpointSteps::new(config.checkpoint_every_steps, steps_before));
                let mut collate: Box<dyn FnMut(HostBatch) -> Result<StepBatch, TrainError> + Send> = match &mut self
                    .rehearsal
                {
                    Some(rehearsal) => {
                        if let Some(progress) = &pass_progress {
                            let window = progress.rehearsal.clone().ok_or_else(|| {
                                TrainError::Config("the checkpoint holds no rehearsal progress of its epoch".into())
                            })?;
                            rehearsal.set_window(window);
                        }
                        let seed = pass_seed(config.seed ^ 0x6C6F_6261_6C00, task_id, epoch).wrapping_add(rank as u64);
                        // Replays differ per rank: each rank offers its own augmentations.
                        let replay_seed = augment_seed ^ 0x7265_706C_6179_u64.wrapping_add(rank as u64);
                        Box::new(rehearsal.collate(
                            task_id,
                            seed,
                            &train_source.pipeline,
                            replay_seed,
                            done_steps,
                            Arc::clone(&checkpoints),
                        ))
                    }
                    None => Box::new(StepBatch::plain),
                };
                let device = self.device;
                let relabel = self.scenario.relabel.clone();
                let collate = move |batch| collate(relabelled(&relabel, batch))?.staged(device);
                let mut samples = shard(
                    &task.train,
                    Some(pass_seed(config.seed, task_id, epoch)),
                    rank,
                    size,
                    true,
                );
                let steps = samples.len().div_ceil(config.batch_size);
                // A resumed pass goes on with the batches it had not trained.
                samples.drain(..(done_steps * config.batch_size).min(samples.len()));
                let loader = Loader::spawn(
                    train_source.clone(),
                    samples,
                    LoaderConfig {
                        batch_size: config.batch_size,
                        shuffle_seed: None,
                        prefetch: PREFETCH_BATCHES,
                        workers: config.dataloader_workers,
                        augment_seed,
                    },
                    collate,
                );
                observer.epoch_started(task_id, epoch, steps);
                if done_steps > 0 {
                    observer.epoch_resumed(done_steps);
                }
                let lr_at = |step: usize| {
                    let progress = epoch as f64 + step as f64 / steps.max(1) as f64;
                    regime.lr_at(progress, config.epochs)
                        * config.lr_scaling.factor(size, progress, config.warmup_epochs)
                };
                let plan = PassPlan {
                    mask: self.masks.train(task_id),
                    lr_at: &lr_at,
                    first_step: done_steps,
                    progress: pass_progress.unwrap_or_default(),
                    checkpoints: &checkpoints,
                    dropout_seed: pass_seed(config.seed ^ 0x0064_726F_706F_7574, task_id, epoch),
                    accumulation: config.batches_per_allreduce,
                    log_interval: config.log_interval,
                };
                steps_before += steps;
                let here = |steps| Position::within_epoch(task_id, epoch, steps);
                let (learner, agent, rehearsal, checkpointer) = (
                    &mut self.learner,
                    &mut self.agent,
                    &self.rehearsal,
                    &mut self.checkpointer,
                );
                let checkpointing = checkpointer.is_some();
                let mut save_within = |learner: &Learner,
                                       agent: &dyn Agent,
                                       done: usize,
                                       progress: PassProgress,
                                       buffer: Option<BufferState>| {
                    let Some(checkpointer) = checkpointer.as_mut() else {
                        return Ok(());
                    };
                    let snapshot = snapshot(
                        (learner, agent),
                        rehearsal.as_ref(),
                        buffer.map(|b| b.buffer),
                        here(done),
                        size,
                        &record_now(&record),
                        Some(progress),
                    )?;
                    checkpointer.save(snapshot, &*world)
                };
                let local_pass = train_pass(
                    learner,
                    agent.as_mut(),
                    loader,
                    rehearsal.as_ref(),
                    &plan,
                    self.device,
                    &*world,
                    observer,
                    checkpointing.then_some(&mut save_within as &mut SaveWithin),
                )?;
                let local_window = self.rehearsal.as_mut().map(Rehearsal::take_window);
                let pass = local_pass.clone().summed(&*world);
                let rehearsal_window = local_window.as_ref().map(|w| w.summed(&*world));
                record.train_seconds += pass.seconds;

                // The agent consolidates after a task's last pass, before its evaluation (iCaRL
                // chooses the exemplars it classifies by); a pass resumed after that skips it.
                let last_epoch = epoch + 1 == config.epochs;
                if last_epoch && !plan.progress.task_ended {
                    self.end_task(task_id, &test_source)?;
                }
                if !self.agent.trains_on_stream() {
                    self.retrain(task_id, epoch)?;
                }
                observer.evaluation_started(task_id + 1);
                let mut eval = Vec::with_capacity(task_id + 1);
                for j in 0..=task_id {
                    if let Err(stopped) = stop_if_asked(observer, &*world) {
                        // Stopped in evaluation: the checkpoint holds the pass, to evaluate anew.
                        if let Some(checkpointer) = &mut self.checkpointer {
                            let progress = PassProgress {
                                task_ended: last_epoch,
                                ..local_pass.progress(local_window.clone())
                            };
                            let snapshot = snapshot(
                                (&self.learner, self.agent.as_ref()),
                                self.rehearsal.as_ref(),
                                None,
                                here(steps),
                                size,
                                &record_now(&record),
                                Some(progress),
                            )?;
                            checkpointer.save(snapshot, &*world)?;
                        }
                        return Err(stopped);
                    }
                    let samples = shard(&self.scenario.tasks[j].test, None, rank, size, false);
                    let totals = evaluate(
                        (&self.learner, self.agent.as_ref()),
                        self.device,
                        &test_source,
                        &samples,
                        LoaderConfig {
                            batch_size: config.eval_batch_size,
                            shuffle_seed: None,
                            prefetch: PREFETCH_BATCHES,
                            workers: config.dataloader_workers,
                            augment_seed: 0,
                        },
                        &self.masks.test(j),
                        self.scenario.relabel.clone(),
                    )?;
                    eval.push(totals.summed(&*world).into_record(j));
                }
                let epoch_record = EpochRecord {
                    task: task_id,
                    epoch,
                    train_loss: pass.totals.mean_loss(),
                    train_top1: pass.totals.top1(),
                    train_images: pass.fresh_samples,
                    train_seconds: pass.seconds,
                    images_per_second: pass.fresh_samples as f64 / pass.seconds,
                    lr: Some(lr_at(steps.saturating_sub(1))),
                    eval,
                    rehearsal_timing: rehearsal_window.as_ref().map(|w| w.timing),
                    rehearsal_draws: rehearsal_window.as_ref().map(|w| w.draws.clone()),
                };
                observer.epoch_finished(&epoch_record);
                record.epochs.push(epoch_record);
                record.wall_seconds = earlier_seconds + started.elapsed().as_secs_f64();
                if let Some(rehearsal) = &mut self.rehearsal {
                    rehearsal.add_to_total(rehearsal_window.as_ref().expect("a rehearsal run has a window"));
                    record.rehearsal = Some(rehearsal.report(&*world));
                }
                observer.evaluated(&record)?;
                if let Some(checkpointer) = &mut self.checkpointer {
                    let snapshot = snapshot(
                        (&self.learner, self.agent.as_ref()),
                        self.rehearsal.as_ref(),
                        None,
                        Position::after_epoch(task_id, epoch),
                        size,
                        &record,
                        None,
                    )?;
                    checkpointer.save(snapshot, &*world)?;
                }
            }
        }
        record.wall_seconds = earlier_seconds + started.elapsed().as_secs_f64();
        Ok(record)
    }

    /// Ends the training of task `task` for the agent (consolidation), which may go over the
    /// task's training samples (this rank's shard) as `source` presents them (without
    /// augmentation).
    fn end_task(&mut self, task: usize, source: &LoaderSource) -> Result<(), TrainError> {
        let (rank, size) = (self.world.rank(), self.world.size());
        let samples = shard(&self.scenario.tasks[task].train, None, rank, size, false);
        let training_set = LoaderSource {
            set: Arc::clone(&self.data.train),
            ..source.clone()
        };
        let mut batches = Loader::spawn(
            training_set,
            samples,
            LoaderConfig {
                batch_size: self.config.eval_batch_size,
                shuffle_seed: None,
                prefetch: PREFETCH_BATCHES,
                workers: self.config.dataloader_workers,
                augment_seed: 0,
            },
            {
                let relabel = self.scenario.relabel.clone();
                move |batch: HostBatch| tensors_of(&relabelled(&relabel, batch))
            },
        )
        .map(|batch| batch?);
        let num_classes = self.num_classes;
        let seen = self.scenario.classes_seen(task);
        let seen_classes = (seen.len() < num_classes).then(|| class_mask(&seen, num_classes, self.device));
        let world = Arc::clone(&self.world);
        guarded("the end of a task", || {
            self.agent.end_task(TaskEnd {
                learner: &mut self.learner,
                batches: &mut batches,
                seen_classes: seen_classes.as_ref(),
                world: &*world,
                memory: self.rehearsal.as_ref(),
            })
        })
    }

    /// Lets an agent that does not learn from the stream train the model on its memory (this
    /// rank's buffer) before the evaluation of `epoch` of `task`.
    fn retrain(&mut self, task: usize, epoch: usize) -> Result<(), TrainError> {
        let memory = match &self.rehearsal {
            Some(rehearsal) => rehearsal.memory(self.device)?,
            None => {
                return Err(TrainError::Config(format!(
                    "agent {} needs a memory",
                    self.config.agent.name
                )))
            }
        };
        let num_classes = self.num_classes;
        let seen = self.scenario.classes_seen(task);
        let mask = (seen.len() < num_classes).then(|| class_mask(&seen, num_classes, self.device));
        let world = Arc::clone(&self.world);
        let retrain = Retrain {
            learner: &mut self.learner,
            memory,
            batch_size: self.config.batch_size,
            mask: mask.as_ref(),
            settings: self.config.optimizer_regime.settings_at(0),
            seed: pass_seed(self.config.seed ^ 0x0067_6475_6D62, task, epoch),
            world: &*world,
        };
        guarded("training on the memory", || self.agent.before_evaluation(retrain))
    }

    /// The steps of one training pass over task `task` on this rank (the same on every rank).
    fn pass_steps(&self, task: usize) -> usize {
        let samples = self.scenario.tasks[task].train.len();
        samples.div_ceil(self.world.size()).div_ceil(self.config.batch_size)
    }
}

/// The checkpoint of a run at `position` that ends with `record` so far: the learner's state,
/// the agent's, this rank's rehearsal buffer (`buffer`, or a copy of the live one) and totals, and with
/// `progress`, this rank's part of the epoch's pass.
fn snapshot(
    (learner, agent): (&Learner, &dyn Agent),
    rehearsal: Option<&Rehearsal>,
    buffer: Option<dcl_buffer::RehearsalBuffer<u8>>,
    position: Position,
    world_size: usize,
    record: &RunRecord,
    progress: Option<PassProgress>,
) -> Result<Snapshot, TrainError> {
    let learner = learner.snapshot()?;
    let mut state = checkpoint::state_at(position, world_size, record.clone());
    state.optimizer = learner.hyper;
    state.loss_scale = learner.loss_scale;
    let buffer = match rehearsal {
        Some(rehearsal) => {
            let (live, totals) = rehearsal.snapshot(buffer.is_none());
            state.rehearsal = Some(totals);
            buffer.or(live)
        }
        None => None,
    };
    Ok(Snapshot {
        state,
        weights: learner.weights,
        optimizer: learner.optimizer,
        agent: agent.state()?,
        buffer,
        progress,
    })
}

/// Trains `config.model` on the tasks of `scenario` ([`Trainer::new`], then [`Trainer::run`]).
pub fn train(
    config: &RunConfig,
    data: &SplitDataset,
    scenario: &Scenario,
    observer: &mut dyn TrainObserver,
    world: Arc<dyn Communicator>,
) -> Result<RunRecord, TrainError> {
    Trainer::new(config, data, scenario, world)?.run(observer)
}

/// Fails with [`TrainError::Interrupted`] when the observer of any rank asks to stop (every
/// rank calls it at the same point).
fn stop_if_asked(observer: &dyn TrainObserver, world: &dyn Communicator) -> Result<(), TrainError> {
    let mut votes = [f64::from(u8::from(observer.stop_requested()))];
    world.all_reduce_sum_f64(&mut votes);
    if votes[0] > 0.0 {
        return Err(TrainError::Interrupted);
    }
    Ok(())
}

/// The logit masks of a run.
struct Masks {
    /// Per task: the mask of its training loss, if any.
    train: Vec<Option<Tensor>>,
    /// Per task: the mask of its own classes, when tasks have classes of their own.
    task_classes: Vec<Option<Tensor>>,
    task_identity: TaskIdentity,
}

/// How a test task is scored.
struct TestMasks<'a> {
    /// The mask of the run's protocol (task-incremental: the task's classes).
    protocol: Option<&'a Tensor>,
    /// The task-incremental mask, scored on the side in class-incremental runs.
    task_il: Option<&'a Tensor>,
}

impl Masks {
    fn new(scenario: &Scenario, use_mask: bool, num_classes: usize, device: Device) -> Self {
        let all_classes = |classes: &[usize]| classes.len() == num_classes;
        let task_classes: Vec<Option<Tensor>> = scenario
            .tasks
            .iter()
            .map(|t| (!all_classes(&t.classes)).then(|| class_mask(&t.classes, num_classes, device)))
            .collect();
        // Task-incremental: every sample masked to its own task's classes (replayed samples
        // and joint training see several tasks in one batch).
        let own_task_table = (scenario.task_identity == TaskIdentity::Known).then(|| {
            let rows: Vec<Tensor> = (0..num_classes)
                .map(|c| match scenario.tasks.iter().find(|t| t.classes.contains(&c)) {
                    Some(task) => class_mask(&task.classes, num_classes, device),
                    None => Tensor::zeros([num_classes as i64], (Kind::Float, device)),
                })
                .collect();
            Tensor::stack(&rows, 0)
        });
        let train = (0..scenario.tasks.len())
            .map(|t| match scenario.task_identity {
                TaskIdentity::Known => own_task_table
                    .as_ref()
                    .filter(|_| !all_classes(&scenario.tasks[t].classes))
                    .map(Tensor::shallow_clone),
                TaskIdentity::Unknown => {
                    let seen = scenario.classes_seen(t);
                    (use_mask && !all_classes(&seen)).then(|| class_mask(&seen, num_classes, device))
                }
            })
            .collect();
        Masks {
            train,
            task_classes,
            task_identity: scenario.task_identity,
        }
    }

    fn train(&self, task: usize) -> Option<&Tensor> {
        self.train[task].as_ref()
    }

    fn test(&self, task: usize) -> TestMasks<'_> {
        let own = self.task_classes[task].as_ref();
        match self.task_identity {
            TaskIdentity::Known => TestMasks {
                protocol: own,
                task_il: None,
            },
            TaskIdentity::Unknown => TestMasks {
                protocol: None,
                task_il: own,
            },
        }
    }
}

/// Sums over the batches of a pass.
#[derive(Clone)]
struct Totals {
    samples: usize,
    loss_sum: f64,
    top1_hits: i64,
    top5_hits: i64,
    task_il_hits: Option<i64>,
}

impl Totals {
    /// The totals over every rank.
    fn summed(self, world: &dyn Communicator) -> Self {
        let mut values = [
            self.samples as f64,
            self.loss_sum,
            self.top1_hits as f64,
            self.top5_hits as f64,
            self.task_il_hits.unwrap_or(0) as f64,
        ];
        world.all_reduce_sum_f64(&mut values);
        Totals {
            samples: values[0] as usize,
            loss_sum: values[1],
            top1_hits: values[2] as i64,
            top5_hits: values[3] as i64,
            task_il_hits: self.task_il_hits.map(|_| values[4] as i64),
        }
    }

    fn percent(&self, hits: i64) -> f64 {
        100.0 * hits as f64 / self.samples as f64
    }
    fn mean_loss(&self) -> f64 {
        self.loss_sum / self.samples as f64
    }
    fn top1(&self) -> f64 {
        self.percent(self.top1_hits)
    }
    fn into_record(self, task: usize) -> EvalRecord {
        EvalRecord {
            task,
            samples: self.samples,
            loss: self.mean_loss(),
            top1: self.top1(),
            top5: self.percent(self.top5_hits),
            top1_task_il: self.task_il_hits.map(|h| self.percent(h)),
        }
    }
}

impl Pass {
    /// The pass with the loss and top-1 sums of these tensors.
    fn with_sums(&self, loss_sum: &Tensor, hits: &Tensor) -> Result<Self, TrainError> {
        Ok(Pass {
            totals: Totals {
                loss_sum: loss_sum.f_double_value(&[])?,
                top1_hits: hits.f_int64_value(&[])?,
                ..self.totals.clone()
            },
            ..self.clone()
        })
    }

    /// What a checkpoint within the pass keeps of it, with this rank's `rehearsal` so far.
    fn progress(&self, rehearsal: Option<RehearsalWindow>) -> PassProgress {
        PassProgress {
            samples: self.totals.samples,
            fresh_samples: self.fresh_samples,
            loss_sum: self.totals.loss_sum,
            top1_hits: self.totals.top1_hits,
            seconds: self.seconds,
            rehearsal,
            task_ended: false,
        }
    }

    /// The pass over every rank (its time: this rank's).
    fn summed(self, world: &dyn Communicator) -> Self {
        let mut fresh = [self.fresh_samples as f64];
        world.all_reduce_sum_f64(&mut fresh);
        Pass {
            totals: self.totals.summed(world),
            fresh_samples: fresh[0] as usize,
            seconds: self.seconds,
        }
    }
}

/// The outcome of one training pass over a task.
#[derive(Clone)]
struct Pass {
    /// Over every trained sample, representatives included.
    totals: Totals,
    /// The task's own samples in the pass.
    fresh_samples: usize,
    seconds: f64,
}

/// Adds the number of rows of `logits` whose arg-max is the label to `hits`.
fn count_top1(hits: &mut Tensor, logits: &Tensor, labels: &Tensor) -> Result<(), TrainError> {
    let _ = hits.f_add_(&logits.f_argmax(-1, false)?.f_eq_tensor(labels)?.f_sum(Kind::Int64)?)?;
    Ok(())
}

/// Ends a pass's rehearsal draws when dropped ([`Rehearsal::end_pass`]).
struct EndPass<'r>(Option<&'r Rehearsal>);

impl Drop for EndPass<'_> {
    fn drop(&mut self) {
        if let Some(rehearsal) = self.0 {
            rehearsal.end_pass();
        }
    }
}

/// How a training pass runs.
struct PassPlan<'p> {
    /// The mask of the training loss.
    mask: Option<&'p Tensor>,
    /// The learning rate of each step.
    lr_at: &'p dyn Fn(usize) -> f64,
    /// The step the pass starts at (after those of a resumed checkpoint).
    first_step: usize,
    /// This rank's sums over the steps before `first_step`.
    progress: PassProgress,
    checkpoints: &'p CheckpointSteps,
    /// Seeds the random draws (dropout) of each step.
    dropout_seed: u64,
    /// Batches per optimiser step.
    accumulation: usize,
    log_interval: usize,
}

/// Writes a checkpoint within a pass: the learner after `done` steps, this rank's sums over
/// them, and the buffer as their last batch left it (a collective call).
type SaveWithin<'s> =
    dyn FnMut(&Learner, &dyn Agent, usize, PassProgress, Option<BufferState>) -> Result<(), TrainError> + 's;

/// The step a pass asked to stop after `step` ends at, with a checkpoint: with a loader that
/// offers batches to the rehearsal buffer (`offers_ahead`), the next one whose batch it has
/// not offered yet (at most `PREFETCH_BATCHES` batches wait in its queue and one at its hand);
/// with no gradients left accumulated. The same on every rank.
fn stop_step(step: usize, offers_ahead: bool, accumulation: usize) -> usize {
    let earliest = if offers_ahead {
        step + PREFETCH_BATCHES + 2
    } else {
        step
    };
    (earliest + 1).next_multiple_of(accumulation) - 1
}

/// Trains one pass of `plan` over the batches of `loader`, and returns this rank's sums.
///
/// When a stop is asked (on any rank), the pass goes on to [`stop_step`] and ends there with a
/// checkpoint (`save_within`) and [`TrainError::Interrupted`]; without checkpoints, it ends at
/// once. Steps that `plan.checkpoints` names end with a checkpoint too.
#[allow(clippy::too_many_arguments)]
fn train_pass(
    learner: &mut Learner,
    agent: &mut dyn Agent,
    mut loader: Loader<Result<StepBatch, TrainError>>,
    rehearsal: Option<&Rehearsal>,
    plan: &PassPlan,
    device: Device,
    world: &dyn Communicator,
    observer: &mut dyn TrainObserver,
    mut save_within: Option<&mut SaveWithin>,
) -> Result<Pass, TrainError> {
    let started = Instant::now();
    let earlier = &plan.progress;
    // Sums stay tensors so that no step waits for a value.
    let mut loss_sum = Tensor::full([], earlier.loss_sum, (Kind::Double, device));
    let mut hits = Tensor::full([], earlier.top1_hits, (Kind::Int64, device));
    let mut pass = Pass {
        totals: Totals {
            samples: earlier.samples,
            loss_sum: earlier.loss_sum,
            top1_hits: earlier.top1_hits,
            top5_hits: 0,
            task_il_hits: None,
        },
        fresh_samples: earlier.fresh_samples,
        seconds: earlier.seconds,
    };
    // However the pass ends, draws waiting for a step that will not come give up.
    let _end_pass = EndPass(rehearsal);
    let mut step = plan.first_step;
    loop {
        let waited = Instant::now();
        let Some(batch) = loader.next() else { break };
        let mut batch = batch??;
        if let Some(rehearsal) = rehearsal {
            rehearsal.add_wait(waited.elapsed());
        }
        let fresh = batch.fresh;
        // An agent that does not learn from the stream only lets the loader fill the memory.
        let learns = agent.trains_on_stream();
        let batch_size = guarded("the training step", || {
            if !learns {
                return Ok((fresh, None));
            }
            let (images, labels) = (on_device(&batch.images, device)?, on_device(&batch.labels, device)?);
            let replayed = match batch.representatives.take() {
                Some((rep_images, rep_labels)) => {
                    Some((on_device(&rep_images, device)?, on_device(&rep_labels, device)?))
                }
                None => None,
            };
            let payloads = batch
                .representative_payloads
                .as_ref()
                .map(|p| on_device(p, device))
                .transpose()?;
            let class_weights = batch
                .class_weights
                .as_ref()
                .map(|w| w.f_to_device(device))
                .transpose()?;
            learner.set_lr((plan.lr_at)(step));
            // Each step's random draws derive from the step, so that a resumed pass repeats them.
            tch::manual_seed(pass_seed(plan.dropout_seed, step, 0) as i64);
            let outcome = learner.train_step(
                &mut *agent,
                (&images, &labels),
                replayed.as_ref().map(|(images, labels)| Replayed {
                    images,
                    labels,
                    payloads: payloads.as_ref(),
                }),
                plan.mask,
                class_weights.as_ref(),
            )?;
            if let (Some(offer), Some(rehearsal)) = (batch.offer.take(), rehearsal) {
                batch.snapshot = rehearsal.offer_after_step(offer, &outcome.fresh_logits, plan.checkpoints.at(step))?;
            }
            let StepOutcome {
                loss, logits, labels, ..
            } = outcome;
            let size = labels.size()[0];
            tch::no_grad(|| -> Result<(), TrainError> {
                let _ = loss_sum.f_add_(&loss.f_to_kind(Kind::Double)?.f_mul_scalar(size as f64)?)?;
                count_top1(&mut hits, &logits, &labels)
            })?;
            let report = (step + 1) % plan.log_interval == 0;
            let shown = if report { Some(loss.f_double_value(&[])?) } else { None };
            Ok((size as usize, shown))
        })?;
        pass.totals.samples += batch_size.0;
        pass.fresh_samples += fresh;
        observer.batch_finished(fresh, batch_size.1);
        if plan.checkpoints.stop_step().is_none() {
            if let Err(stopped) = stop_if_asked(observer, world) {
                if save_within.is_none() {
                    return Err(stopped);
                }
                let offers_ahead = rehearsal.is_some_and(|r| !r.offers_after_step());
                plan.checkpoints
                    .stop_at(stop_step(step, offers_ahead, plan.accumulation));
            }
        }
        if let Some(save) = save_within.as_mut().filter(|_| plan.checkpoints.at(step)) {
            let buffer = batch.snapshot.take();
            assert!(
                rehearsal.is_none() || buffer.is_some(),
                "the loader copied no buffer for checkpoint step {step}"
            );
            pass.seconds = earlier.seconds + started.elapsed().as_secs_f64();
            let progress = pass
                .with_sums(&loss_sum, &hits)?
                .progress(buffer.as_ref().map(|b| b.window.clone()));
            save(learner, agent, step + 1, progress, buffer)?;
            if plan.checkpoints.stop_step() == Some(step) {
                return Err(TrainError::Interrupted);
            }
        }
        step += 1;
    }
    guarded("the training step", || learner.flush(&mut *agent))?;
    pass.seconds = earlier.seconds + started.elapsed().as_secs_f64();
    let pass = pass.with_sums(&loss_sum, &hits)?;
    // Asked to stop within the last steps: the checkpoint of the whole pass, to evaluate anew.
    if let (Some(save), Some(_)) = (save_within, plan.checkpoints.stop_step()) {
        let window = rehearsal.map(Rehearsal::current_window);
        save(learner, agent, step, pass.progress(window), None)?;
        return Err(TrainError::Interrupted);
    }
    Ok(pass)
}

/// `batch` with its labels as the scenario's `relabel` map says, if it has one.
fn relabelled(relabel: &Option<Arc<Vec<u32>>>, mut batch: HostBatch) -> HostBatch {
    if let Some(map) = relabel {
        for label in &mut batch.labels {
            *label = map[*label as usize] as i64;
        }
    }
    batch
}

/// Loss, top-1 and top-5 of the learner on `samples` of `source` (relabelled as the scenario
/// says), scored as `masks` say.
fn evaluate(
    (learner, agent): (&Learner, &dyn Agent),
    device: Device,
    source: &LoaderSource,
    samples: &[SampleRef],
    loader_config: LoaderConfig,
    masks: &TestMasks,
    relabel: Option<Arc<Vec<u32>>>,
) -> Result<Totals, TrainError> {
    let loader = Loader::spawn(
        source.clone(),
        samples.to_vec(),
        loader_config,
        move |batch: HostBatch| {
            let (images, labels) = tensors_of(&relabelled(&relabel, batch))?;
            Ok((staged(images, device)?, staged(labels, device)?))
        },
    );
    guarded("evaluation", || {
        tch::no_grad(|| evaluate_batches((learner, agent), device, loader, samples.len(), masks))
    })
}

/// The sums of [`evaluate`] over the batches of `loader`.
fn evaluate_batches(
    (learner, agent): (&Learner, &dyn Agent),
    device: Device,
    loader: Loader<Result<(Tensor, Tensor), TrainError>>,
    samples: usize,
    masks: &TestMasks,
) -> Result<Totals, TrainError> {
    let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
    let mut top1 = Tensor::zeros([], (Kind::Int64, device));
    let mut top5 = Tensor::zeros([], (Kind::Int64, device));
    let mut task_il = Tensor::zeros([], (Kind::Int64, device));
    for batch in loader {
        let (images, labels) = batch??;
        let (images, labels) = (on_device(&images, device)?, on_device(&labels, device)?);
        let raw = match agent.classify(learner, &images)? {
            Some(scores) => scores,
            None => learner.predict(&images)?,
        };
        let logits = match masks.protocol {
            Some(mask) => raw.f_add(mask)?,
            None => raw.shallow_clone(),
        };
        let loss = logits.f_cross_entropy_loss::<Tensor>(&labels, None, Reduction::Sum, -100, 0.0)?;
        let _ = loss_sum.f_add_(&loss.f_to_kind(Kind::Double)?)?;
        let k = logits.size()[1].min(5);
        let (_, predicted) = logits.f_topk(k, -1, true, true)?;
        let correct = predicted.f_eq_tensor(&labels.unsqueeze(1))?;
        let _ = top1.f_add_(&correct.f_narrow(1, 0, 1)?.f_sum(Kind::Int64)?)?;
        let _ = top5.f_add_(&correct.f_sum(Kind::Int64)?)?;
        if let Some(mask) = masks.task_il {
            count_top1(&mut task_il, &raw.f_add(mask)?, &labels)?;
        }
    }
    Ok(Totals {
        samples,
        loss_sum: loss_sum.f_double_value(&[])?,
        top1_hits: top1.f_int64_value(&[])?,
        top5_hits: top5.f_int64_value(&[])?,
        task_il_hits: masks.task_il.map(|_| task_il.f_int64_value(&[])).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_scenario(identity: TaskIdentity) -> Scenario {
        use dcl_data::{ClassOrder, ImageSet, Normalization, ScenarioSpec};
        let set = |n: usize| {
            Arc::new(ImageSet {
                images: vec![0; n],
                labels: (0..n).map(|i| (i % 6) as u32).collect(),
                image_shape: [1, 1, 1],
            })
        };
        let data = SplitDataset {
            name: "toy".into(),
            train: set(60),
            test: set(12),
            num_classes: 6,
            normalization: Normalization::uniform(0.0, 1.0),
            kind: dcl_data::Kind::Small,
            input_size: 1,
        };
        let spec = ScenarioSpec::Classes {
            initial_increment: 2,
            increment: 2,
            class_order: ClassOrder::Natural,
            task_identity: identity,
        };
        Scenario::build(&spec, &data, Default::default(), 0).unwrap()
    }

    fn allowed(mask: Option<&Tensor>) -> Option<Vec<usize>> {
        mask.map(|m| {
            Vec::<f32>::try_from(m)
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(_, v)| **v == 0.0)
                .map(|(c, _)| c)
                .collect()
        })
    }

    #[test]
    fn use_mask_restricts_training_to_the_classes_seen_so_far() {
        let scenario = split_scenario(TaskIdentity::Unknown);
        let masked = Masks::new(&scenario, true, 6, Device::Cpu);
        assert_eq!(allowed(masked.train(0)), Some(vec![0, 1]));
        assert_eq!(allowed(masked.train(1)), Some(vec![0, 1, 2, 3]));
        assert_eq!(allowed(masked.train(2)), None, "all classes seen: no mask");
        let unmasked = Masks::new(&scenario, false, 6, Device::Cpu);
        assert!(unmasked.train(0).is_none());
        // Class-incremental evaluation is unmasked, its task-IL view masked per task.
        assert!(unmasked.test(1).protocol.is_none());
        assert_eq!(allowed(unmasked.test(1).task_il), Some(vec![2, 3]));
    }

    #[test]
    fn task_identity_masks_training_and_evaluation_to_the_task() {
        let masks = Masks::new(&split_scenario(TaskIdentity::Known), false, 6, Device::Cpu);
        // Training: each sample's row of the table, by its label: its own task's classes.
        let table = masks.train(1).unwrap();
        assert_eq!(allowed(Some(&table.get(2))), Some(vec![2, 3]));
        assert_eq!(allowed(Some(&table.get(5))), Some(vec![4, 5]));
        assert_eq!(allowed(Some(&table.get(0))), Some(vec![0, 1]));
        assert_eq!(allowed(masks.test(2).protocol), Some(vec![4, 5]));
        assert!(masks.test(2).task_il.is_none());
    }

    #[test]
    fn host_tensors_hold_the_values_in_shape() {
        let images = host_tensor(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 2, 3]).unwrap();
        assert_eq!(images.size(), vec![1, 2, 3]);
        assert_eq!(images.kind(), Kind::Float);
        assert_eq!(
            Vec::<f32>::try_from(images.flatten(0, -1)).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        let labels = host_tensor(&[7i64, 0, 9], &[3]).unwrap();
        assert_eq!(Vec::<i64>::try_from(&labels).unwrap(), vec![7, 0, 9]);
    }

    #[test]
    #[should_panic(expected = "does not hold")]
    fn host_tensors_refuse_a_shape_of_another_size() {
        let _ = host_tensor(&[1.0f32, 2.0], &[3]);
    }

    #[test]
    fn pass_seeds_differ_per_task_and_epoch_and_repeat_per_seed() {
        let seeds = [
            pass_seed(42, 0, 0),
            pass_seed(42, 0, 1),
            pass_seed(42, 1, 0),
            pass_seed(43, 0, 0),
        ];
        for (i, a) in seeds.iter().enumerate() {
            for b in &seeds[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(pass_seed(42, 1, 0), seeds[2]);
    }
}
