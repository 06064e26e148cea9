//! Benchmarks: `dcl bench step`, the bare training step of a model on synthetic data (the
//! Rust side of `bench/compare_step.sh`, whose PyTorch side is `bench/pytorch_step.py`), and
//! `dcl bench buffer`, the rehearsal buffer (`bench/compare_buffer.sh`,
//! `bench/buffer_python.py`).

use std::time::Instant;

use anyhow::{ensure, Result};
use dcl_models::{ModelConfig, ModelInput};
use dcl_train::{Learner, OptimizerKind, OptimizerSettings};
use tch::{Kind, Tensor};

use crate::cli::{AllreduceArgs, BufferArgs, LoaderArgs, RehearsalArgs, SamplingArgs, StepArgs};

/// The MNIST-shaped input of the rehearsal benchmark.
const INPUT: ModelInput = ModelInput {
    image_shape: [1, 28, 28],
    num_classes: 10,
};

/// The optimiser of the timed steps: SGD as in `bench/pytorch_step.py`.
const SGD: OptimizerSettings = OptimizerSettings {
    optimizer: OptimizerKind::Sgd,
    lr: 0.01,
    momentum: 0.9,
    weight_decay: 0.0,
    betas: dcl_train::regime::ADAM_BETAS,
};

/// Times `args.steps` SGD steps, `args.repeats` times, and reports the median images/s.
pub fn run_step(args: StepArgs) -> Result<()> {
    ensure!(
        args.batch_size > 0 && args.steps > 0 && args.repeats > 0,
        "--batch-size, --steps and --repeats must be at least 1"
    );
    tch::set_num_threads(args.threads as i32);
    tch::manual_seed(0);
    let device = args.device.resolve_here(0)?;
    let input = ModelInput {
        image_shape: args.input,
        num_classes: args.classes,
    };
    let mut learner = Learner::new(
        &args.model,
        &ModelConfig::new(args.model_config.clone()),
        input,
        SGD,
        device,
        std::sync::Arc::new(dcl_dist::SingleProcess),
    )?;
    learner.set_precision(args.amp)?;
    let [c, h, w] = input.image_shape.map(|d| d as i64);
    let b = args.batch_size as i64;
    let images = Tensor::randn([b, c, h, w], (Kind::Float, device));
    let labels = Tensor::randint(input.num_classes as i64, [b], (Kind::Int64, device));
    // CUDA runs asynchronously: a timed window ends when the device has finished its work.
    let synchronize = || {
        if let tch::Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
    };
    for _ in 0..args.warmup {
        let _step = learner.train_step(&mut dcl_train::agents::Plain, (&images, &labels), None, None, None)?;
    }
    synchronize();
    let mut rates = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        let started = Instant::now();
        for _ in 0..args.steps {
            let _step = learner.train_step(&mut dcl_train::agents::Plain, (&images, &labels), None, None, None)?;
        }
        synchronize();
        rates.push((args.steps * args.batch_size) as f64 / started.elapsed().as_secs_f64());
    }
    let median = median(&mut rates);
    let peak_mb = peak_rss_mb();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"engine": "dcl", "device": format!("{device:?}"), "model": args.model, "model_config": args.model_config,
                "input": args.input, "batch_size": args.batch_size, "threads": args.threads, "amp": args.amp.to_string(),
                "images_per_second_median": median, "images_per_second": rates, "peak_rss_mb": peak_mb})
        );
    } else {
        println!(
            "dcl {} step, batch {}, {} threads: median {median:.0} img/s (min {:.0}, max {:.0}, {} repeats of {} steps), peak {peak_mb:.0} MB",
            args.model, args.batch_size, args.threads, rates[0], rates[rates.len() - 1], args.repeats, args.steps
        );
    }
    Ok(())
}

/// The peak resident memory of this process so far, in MiB (`getrusage`'s `ru_maxrss`).
fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage writes one `rusage` struct, which is plain data.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    usage.ru_maxrss as f64 / 1024.0
}

/// Times whole passes of the loader over a data set's training images, through its training
/// pipeline, and reports the median images/s.
pub fn run_loader(args: LoaderArgs) -> Result<()> {
    use std::sync::Arc;

    use dcl_data::{Augment, Loader, LoaderConfig, LoaderSource, SampleRef, View};
    ensure!(
        args.batch_size > 0 && args.passes > 0,
        "--batch-size and --passes must be at least 1"
    );
    let data = dcl_data::catalog::find(&args.dataset)?.load(&args.dataset_dir, false)?;
    let augment = if args.augment == "crop_flip" {
        Augment::CropFlip
    } else {
        Augment::None
    };
    let [pipeline, _] = data.pipelines(args.input_size, augment).map_err(anyhow::Error::msg)?;
    let source = LoaderSource {
        set: Arc::clone(&data.train),
        views: Arc::new(vec![View::Identity]),
        pipeline,
        keep_records: false,
    };
    let samples: Vec<SampleRef> = (0..data.train.len() as u32)
        .map(|index| SampleRef { index, view: 0 })
        .collect();
    let mut rates = Vec::with_capacity(args.passes);
    for pass in 0..=args.passes as u64 {
        let config = LoaderConfig {
            batch_size: args.batch_size,
            shuffle_seed: Some(pass),
            prefetch: 4,
            workers: args.workers,
            augment_seed: pass,
        };
        let started = Instant::now();
        let mut images = 0;
        for batch in Loader::spawn(source.clone(), samples.clone(), config, |b| b.labels.len()) {
            images += batch?;
        }
        if pass > 0 {
            rates.push(images as f64 / started.elapsed().as_secs_f64());
        }
    }
    let median = median(&mut rates);
    println!(
        "{}",
        serde_json::json!({"engine": "dcl", "dataset": args.dataset, "workers": args.workers,
            "images_per_second_median": median, "images_per_second": rates})
    );
    Ok(())
}

/// The median of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Times `offer` and `sample` on a buffer of synthetic samples; reports the median
/// samples/s of each over the repeats.
pub fn run_buffer(args: BufferArgs) -> Result<()> {
    use dcl_buffer::{BufferConfig, Drawn, InsertionPolicy, RehearsalBuffer};
    use rand::{Rng, SeedableRng};

    ensure!(
        args.batches > 0 && args.repeats > 0 && args.batch_size > 0,
        "--batches, --repeats and --batch-size must be at least 1"
    );
    let sample_len = if args.shape == "mnist" { 28 * 28 } else { 3 * 32 * 32 };
    let num_classes = 10;
    let policy = match args.policy.as_str() {
        "upstream" => InsertionPolicy::Upstream {
            candidates: 8,
            batch_size: args.batch_size,
        },
        "reservoir" => InsertionPolicy::Reservoir,
        _ => InsertionPolicy::ClassBalanced,
    };
    let capacity = args.capacity / num_classes * num_classes;
    let mut buffer = RehearsalBuffer::<f32>::new(BufferConfig {
        capacity,
        num_classes,
        sample_len: dcl_buffer::SampleLen::Fixed(sample_len),
        payload_len: 0,
        policy,
        seed: 0,
    })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let samples: Vec<f32> = (0..args.batch_size * sample_len).map(|_| rng.random::<f32>()).collect();
    let batches: Vec<Vec<u32>> = (0..64)
        .map(|_| {
            (0..args.batch_size)
                .map(|_| rng.random_range(0..num_classes as u32))
                .collect()
        })
        .collect();
    let mut drawn = Drawn::default();
    let (mut offer_rates, mut sample_rates) = (Vec::new(), Vec::new());
    for _ in 0..args.repeats {
        let (mut offering, mut sampling) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for b in 0..args.batches {
            let started = Instant::now();
            drawn.clear();
            buffer.sample(args.representatives, &mut drawn);
            sampling += started.elapsed();
            let started = Instant::now();
            buffer.offer(&samples, &batches[b % batches.len()], &[])?;
            offering += started.elapsed();
        }
        let offered = (args.batches * args.batch_size) as f64;
        offer_rates.push(offered / offering.as_secs_f64());
        sample_rates.push((args.batches * args.representatives) as f64 / sampling.as_secs_f64());
    }
    let (offer, sample) = (median(&mut offer_rates), median(&mut sample_rates));
    if args.json {
        println!(
            "{}",
            serde_json::json!({"engine": "dcl", "shape": args.shape, "policy": args.policy, "capacity": capacity,
                "offer_samples_per_second": offer, "sample_samples_per_second": sample})
        );
    } else {
        println!(
            "dcl buffer ({}, {}, {capacity} slots): offer {offer:.0} samples/s, sample {sample:.0} samples/s (medians of {} repeats)",
            args.shape, args.policy, args.repeats
        );
    }
    Ok(())
}

/// Alternates rounds of rehearsal steps and plain steps of the same total size on MNIST and
/// reports the median step time of each (wait for the minibatch included).
pub fn run_rehearsal(args: RehearsalArgs) -> Result<()> {
    use std::sync::Arc;

    use dcl_data::{Loader, LoaderConfig, LoaderSource, SampleRef, View};
    use dcl_train::rehearsal::{Rehearsal, StepBatch};
    use dcl_train::{BufferSize, PipelineMode, PolicyName, RehearsalConfig, ReplaySource};

    ensure!(
        args.steps > 0 && args.rounds > 0 && args.batch_size > 0,
        "--steps, --rounds and --batch-size must be at least 1"
    );
    tch::set_num_threads(args.threads as i32);
    tch::manual_seed(0);
    let device = args.device.resolve_here(0)?;
    let info = dcl_data::catalog::find("mnist")?;
    let data = info.load(&args.dataset_dir, false)?;
    let source = LoaderSource {
        set: Arc::clone(&data.train),
        views: Arc::new(vec![View::Identity]),
        pipeline: dcl_data::Pipeline {
            transform: dcl_data::Transform::Identity,
            normalization: data.normalization,
        },
        keep_records: false,
    };
    let samples: Vec<SampleRef> = (0..data.train.len() as u32)
        .map(|index| SampleRef { index, view: 0 })
        .collect();
    let mode = if args.mode == "flyweight" {
        PipelineMode::Flyweight
    } else {
        PipelineMode::Standard
    };
    let config = RehearsalConfig {
        size: BufferSize::Total(500),
        policy: PolicyName::ClassBalanced,
        num_candidates: 8,
        num_representatives: args.representatives,
        mode,
        start_task: 0,
        global_sampling: true,
        replay: ReplaySource::All,
        class_weights: false,
        store: dcl_train::StoreMode::Tensor,
    };
    let rehearsal = Rehearsal::new(
        config,
        10,
        INPUT.image_shape,
        0,
        data.train.len(),
        &dcl_dist::SingleProcess,
        args.batch_size,
        0,
    )?;
    let mut learner = Learner::new(
        "mnistnet",
        &ModelConfig::default(),
        INPUT,
        SGD,
        device,
        Arc::new(dcl_dist::SingleProcess),
    )?;
    let synchronize = || {
        if let tch::Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
    };

    // Times `steps` steps of a pass (after 10 warm-up steps), in milliseconds.
    let mut time_steps = |loader: Loader<Result<StepBatch, dcl_train::TrainError>>| -> Result<Vec<f64>> {
        let mut times = Vec::with_capacity(args.steps);
        let mut loader = loader;
        for step in 0..args.steps + 10 {
            let started = Instant::now();
            let Some(batch) = loader.next() else { break };
            let batch = batch??.staged(device)?;
            let on_device = |t: &Tensor| t.to_device_(device, t.kind(), true, false);
            let (images, labels) = (on_device(&batch.images), on_device(&batch.labels));
            let (images, labels) = match batch.representatives {
                None => (images, labels),
                Some((ri, rl)) => (
                    Tensor::cat(&[images, on_device(&ri)], 0),
                    Tensor::cat(&[labels, on_device(&rl)], 0),
                ),
            };
            let _step = learner.train_step(&mut dcl_train::agents::Plain, (&images, &labels), None, None, None)?;
            // A step is over when the device has finished it.
            synchronize();
            if step >= 10 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(times)
    };
    let pass = |batch_size: usize, seed: u64| LoaderConfig {
        batch_size,
        shuffle_seed: Some(seed),
        prefetch: 4,
        workers: 0,
        augment_seed: 0,
    };
    let (mut with, mut plain) = (Vec::new(), Vec::new());
    for round in 0..args.rounds as u64 {
        let collate = rehearsal.collate(0, round, &source.pipeline, 0, 0, Default::default());
        with.extend(time_steps(Loader::spawn(
            source.clone(),
            samples.clone(),
            pass(args.batch_size, round),
            collate,
        ))?);
        let plain_batch = args.batch_size + args.representatives;
        plain.extend(time_steps(Loader::spawn(
            source.clone(),
            samples.clone(),
            pass(plain_batch, round),
            StepBatch::plain,
        ))?);
    }
    let (w, p) = (median(&mut with), median(&mut plain));
    println!(
        "median step: er ({} fresh + {} representatives, {}) {w:.3} ms, base ({} samples) {p:.3} ms: er / base = {:.3}x ({} steps each)",
        args.batch_size, args.representatives, args.mode, args.batch_size + args.representatives, w / p, with.len()
    );
    Ok(())
}

/// Global sampling under mpirun: every rank fills its buffer with samples that name their
/// rank, slot and label, then draws over all buffers, then locally.
pub fn run_sampling(args: SamplingArgs) -> Result<()> {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use dcl_buffer::{BufferConfig, Drawn, InsertionPolicy, RehearsalBuffer, SampleLen, Transport};

    ensure!(
        args.sample_len >= 1 && args.draws > 0 && args.fill > 0,
        "--sample-len, --draws and --fill must be at least 1"
    );
    let world: Arc<dyn dcl_dist::Communicator> = dcl_dist::init()?.0.into();
    let (rank, size) = (world.rank(), world.size());
    let fill = args.fill * (rank + 1);
    let mut buffer = RehearsalBuffer::<u8>::new(BufferConfig {
        capacity: fill.div_ceil(10) * 10,
        num_classes: 10,
        sample_len: SampleLen::Variable,
        payload_len: 1,
        policy: InsertionPolicy::Reservoir,
        seed: rank as u64,
    })?;
    let labels: Vec<u32> = (0..fill as u32).map(|i| i % 10).collect();
    // Sample i of rank r, a record of its own length: r, i (4 bytes, little-endian), then
    // its label `sample_len + i % 3` times; its payload: i.
    let record_len = |i: u32| 5 + args.sample_len + i as usize % 3;
    let mut samples = Vec::new();
    for (i, &label) in (0u32..).zip(&labels) {
        samples.push(rank as u8);
        samples.extend_from_slice(&i.to_le_bytes());
        samples.extend(std::iter::repeat_n(label as u8, record_len(i) - 5));
    }
    let lengths: Vec<u32> = (0..fill as u32).map(|i| record_len(i) as u32).collect();
    let payloads: Vec<f32> = (0..fill).map(|i| i as f32).collect();
    buffer.offer_records(&samples, &lengths, &labels, &payloads)?;
    let buffer = Arc::new(Mutex::new(buffer));
    let service = world.serve_buffer(Arc::clone(&buffer));

    let mut client = service.client(rank as u64, 0);
    let mut from_rank = vec![0u64; size];
    let (mut duplicates, mut torn, mut misattributed) = (0u64, 0u64, 0u64);
    let mut drawn = Drawn::default();
    world.barrier();
    let started = Instant::now();
    // The ranks the very first draw reached: every one holding samples, when the sizes are
    // current from the first step on.
    let mut first_draw_ranks = 0;
    for draw in 0..args.draws {
        drawn.clear();
        client.draw(args.representatives, None, &mut drawn)?;
        if draw == 0 {
            first_draw_ranks = drawn.origins.iter().collect::<HashSet<_>>().len();
        }
        let mut seen = HashSet::new();
        for (((sample, &label), &origin), &payload) in drawn
            .records()
            .zip(&drawn.labels)
            .zip(&drawn.origins)
            .zip(&drawn.payloads)
        {
            let (source, i) = (sample[0], u32::from_le_bytes(sample[1..5].try_into()?));
            from_rank[source as usize] += 1;
            misattributed += u64::from(origin != u32::from(source));
            duplicates += u64::from(!seen.insert((source, i)));
            torn += u64::from(
                sample.len() != record_len(i)
                    || sample[5..].iter().any(|&v| u32::from(v) != label)
                    || payload != i as f32,
            );
        }
    }
    let global_rate = (args.draws * args.representatives) as f64 / started.elapsed().as_secs_f64();
    world.barrier();
    let mut local = dcl_buffer::LocalTransport::new(Arc::clone(&buffer), rank);
    let started = Instant::now();
    for _ in 0..args.draws {
        drawn.clear();
        local.draw(args.representatives, None, &mut drawn)?;
    }
    let local_rate = (args.draws * args.representatives) as f64 / started.elapsed().as_secs_f64();
    drop(client);
    service.stop();

    let total_fill: usize = (0..size).map(|r| args.fill * (r + 1)).sum();
    let drawn_total: u64 = from_rank.iter().sum();
    let shares: Vec<f64> = from_rank.iter().map(|&n| n as f64 / drawn_total as f64).collect();
    let expected: Vec<f64> = (0..size)
        .map(|r| (args.fill * (r + 1)) as f64 / total_fill as f64)
        .collect();
    let uniform = shares.iter().zip(&expected).all(|(s, e)| (s - e).abs() <= 0.1 * e);
    println!(
        "{}",
        serde_json::json!({"rank": rank, "world_size": size, "representatives_per_second_global": global_rate,
            "representatives_per_second_local": local_rate, "shares": shares, "expected_shares": expected,
            "duplicates": duplicates, "torn": torn, "misattributed": misattributed,
            "first_draw_ranks": first_draw_ranks})
    );
    if args.check {
        ensure!(
            uniform,
            "rank {rank}: shares {shares:?} differ from the buffers' shares {expected:?} by more than 10 %"
        );
        ensure!(
            first_draw_ranks == size,
            "rank {rank}: the first draw reached {first_draw_ranks} of the {size} ranks' buffers"
        );
        ensure!(
            duplicates == 0 && torn == 0 && misattributed == 0,
            "rank {rank}: {duplicates} duplicate, {torn} torn and {misattributed} misattributed representatives"
        );
    }
    Ok(())
}

/// dcl's gradient all-reduce (`Communicator::all_reduce_sum_into`, through the trait
/// object as the learner calls it; the learner folds the division into its copy back)
/// against a bare `MPI_Allreduce` of the same buffers, alternating; median milliseconds.
#[cfg(feature = "mpi")]
pub fn run_allreduce(args: AllreduceArgs) -> Result<()> {
    use mpi::collective::SystemOperation;
    use mpi::traits::*;

    ensure!(
        args.floats > 0 && args.repeats > 0 && args.rounds > 0,
        "--floats, --repeats and --rounds must be at least 1"
    );
    let mpi_world = dcl_dist::MpiCommunicator::init()?;
    let world: &dyn dcl_dist::Communicator = &mpi_world;
    let bare = mpi::topology::SimpleCommunicator::world();
    let data: Vec<f32> = (0..args.floats).map(|i| (i % 97) as f32).collect();
    let mut received = vec![0f32; args.floats];
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        for _ in 0..args.repeats {
            world.barrier();
            let started = Instant::now();
            world.all_reduce_sum_into(&data, &mut received);
            ours.push(started.elapsed().as_secs_f64() * 1e3);
        }
        for _ in 0..args.repeats {
            world.barrier();
            let started = Instant::now();
            bare.all_reduce_into(&data[..], &mut received[..], SystemOperation::sum());
            theirs.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (o, t) = (median(&mut ours), median(&mut theirs));
    if world.rank() == 0 {
        println!(
            "all-reduce of {} floats over {} ranks: dcl {o:.2} ms, bare MPI {t:.2} ms: overhead {:.1} %",
            args.floats,
            world.size(),
            100.0 * (o / t - 1.0)
        );
    }
    Ok(())
}

/// Without MPI there is nothing to compare.
#[cfg(not(feature = "mpi"))]
pub fn run_allreduce(_args: AllreduceArgs) -> Result<()> {
    anyhow::bail!("this dcl was built without MPI (cargo feature mpi)")
}

/// A checkpoint of `args.model` after 3 SGD steps and of a full buffer of `args.buffer`
/// float samples: the time the training thread spends on the snapshot (device-to-host copies,
/// the buffer's bytes), the background write (files synced, renamed) and the size on disk.
pub fn run_checkpoint(args: crate::cli::CheckpointArgs) -> Result<()> {
    use dcl_buffer::{BufferConfig, InsertionPolicy, RehearsalBuffer, SampleLen};
    use dcl_train::checkpoint::{self, Checkpointer, Position, Snapshot};

    ensure!(args.buffer > 0, "--buffer must be at least 1");
    tch::set_num_threads(args.threads as i32);
    tch::manual_seed(0);
    let input = ModelInput {
        image_shape: args.input,
        num_classes: args.classes,
    };
    let device = tch::Device::Cpu;
    let mut learner = Learner::new(
        &args.model,
        &ModelConfig::default(),
        input,
        SGD,
        device,
        std::sync::Arc::new(dcl_dist::SingleProcess),
    )?;
    let [c, h, w] = args.input.map(|d| d as i64);
    let images = Tensor::randn([2, c, h, w], (Kind::Float, device));
    let labels = Tensor::randint(args.classes as i64, [2], (Kind::Int64, device));
    for _ in 0..3 {
        let _step = learner.train_step(&mut dcl_train::agents::Plain, (&images, &labels), None, None, None)?;
    }
    let sample_bytes = args.input.iter().product::<usize>() * 4;
    let mut buffer = RehearsalBuffer::<u8>::new(BufferConfig {
        capacity: args.buffer,
        num_classes: args.classes,
        sample_len: SampleLen::Fixed(sample_bytes),
        payload_len: 0,
        policy: InsertionPolicy::Reservoir,
        seed: 0,
    })?;
    let sample: Vec<u8> = (0..sample_bytes).map(|i| (i * 7919 % 251) as u8).collect();
    for i in 0..args.buffer {
        buffer.offer(&sample, &[(i % args.classes) as u32], &[])?;
    }

    let started = Instant::now();
    let learner_state = learner.snapshot()?;
    let buffer = buffer.clone();
    let mut state = checkpoint::state_at(Position::after_epoch(0, 0), 1, Default::default());
    state.optimizer = learner_state.hyper;
    let snapshot = Snapshot {
        state,
        weights: learner_state.weights,
        optimizer: learner_state.optimizer,
        agent: Vec::new(),
        buffer: Some(buffer),
        progress: None,
    };
    let stall = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut checkpointer = Checkpointer::new(&args.dir, 0, 1, false);
    checkpointer.save(snapshot, &dcl_dist::SingleProcess)?;
    checkpointer.finish(&dcl_dist::SingleProcess)?;
    let write = started.elapsed().as_secs_f64();
    let written = args.dir.join("checkpoints/task-000-epoch-000");
    let size: u64 = std::fs::read_dir(&written)?
        .map(|e| Ok(e?.metadata()?.len()))
        .sum::<std::io::Result<u64>>()?;
    std::fs::remove_dir_all(&args.dir)?;
    println!(
        "checkpoint of {} ({}) + {} buffered samples: {:.1} MB; training thread {:.2} s (snapshot), background write {:.2} s ({:.0} MB/s)",
        args.model,
        args.input.map(|d| d.to_string()).join("x"),
        args.buffer,
        size as f64 / 1e6,
        stall,
        write,
        size as f64 / 1e6 / write
    );
    Ok(())
}

/// Times the training step of every agent on MNIST-shaped batches of `args.batch_size` fresh
/// and as many replayed samples (for the agents that replay), after one consolidation (for
/// the agents that consolidate), in alternating rounds; reports each agent's median time per
/// step and its ratio to `er`'s.
pub fn run_agents(args: crate::cli::AgentsArgs) -> Result<()> {
    use dcl_train::agents::{self, DerConfig, EwcConfig, LwfConfig, Method, SiConfig, TaskEnd};
    use dcl_train::learner::Replayed;

    ensure!(
        args.batch_size > 0 && args.steps > 0 && args.repeats > 0,
        "--batch-size, --steps and --repeats must be at least 1"
    );
    tch::set_num_threads(args.threads as i32);
    let ewc = |gamma| EwcConfig {
        lambda: 100.0,
        gamma,
        fisher_samples: 64,
    };
    let methods: Vec<(&str, Method, bool)> = vec![
        ("base", Method::Plain, false),
        ("er", Method::Plain, true),
        ("der", Method::Der(DerConfig { alpha: 0.2, beta: 0.0 }), true),
        ("derpp", Method::Der(DerConfig { alpha: 0.2, beta: 1.0 }), true),
        ("agem", Method::Agem, true),
        ("ewc", Method::Ewc(ewc(None)), false),
        ("online_ewc", Method::Ewc(ewc(Some(1.0))), false),
        ("si", Method::Si(SiConfig { c: 1.0, epsilon: 0.1 }), false),
        (
            "lwf",
            Method::Lwf(LwfConfig {
                alpha: 1.0,
                temperature: 2.0,
            }),
            false,
        ),
    ];
    let b = args.batch_size as i64;
    let batch_of = |rows: i64| {
        (
            Tensor::randn([rows, 1, 28, 28], (Kind::Float, tch::Device::Cpu)),
            Tensor::randint(10, [rows], (Kind::Int64, tch::Device::Cpu)),
        )
    };
    let batch = || batch_of(b);
    tch::manual_seed(0);
    let (images, labels) = batch();
    // Every agent with a learner of its own, consolidated once on a few batches, and its
    // replayed samples: B per set it draws (DER++: two).
    let mut runs = Vec::new();
    for (name, method, replays) in methods {
        let mut learner = Learner::new(
            "mnistnet",
            &ModelConfig::default(),
            INPUT,
            SGD,
            tch::Device::Cpu,
            std::sync::Arc::new(dcl_dist::SingleProcess),
        )?;
        let mut agent = agents::build(&method);
        let mut batches = (0..2).map(|_| Ok(batch()));
        agent.end_task(TaskEnd {
            learner: &mut learner,
            batches: &mut batches,
            seen_classes: None,
            world: &dcl_dist::SingleProcess,
            memory: None,
        })?;
        let rows = b * agent.replay_sets() as i64;
        let (rep_images, rep_labels) = batch_of(rows);
        let payloads = Tensor::randn([rows, 10], (Kind::Float, tch::Device::Cpu));
        let replay = replays.then_some((rep_images, rep_labels, payloads));
        runs.push((name, learner, agent, replay, Vec::new()));
    }
    for round in 0..=args.repeats {
        for (_, learner, agent, replay, times) in &mut runs {
            let started = Instant::now();
            for _ in 0..args.steps {
                let replayed = replay.as_ref().map(|(images, labels, payloads)| Replayed {
                    images,
                    labels,
                    payloads: Some(payloads),
                });
                let _step = learner.train_step(agent.as_mut(), (&images, &labels), replayed, None, None)?;
            }
            // Round 0 warms up.
            if round > 0 {
                times.push(started.elapsed().as_secs_f64() * 1e3 / args.steps as f64);
            }
        }
    }
    let mut medians: Vec<(&str, f64, &[f64])> = Vec::new();
    for (name, _, _, _, times) in &mut runs {
        let m = median(times);
        medians.push((name, m, times));
    }
    let er = medians.iter().find(|(n, ..)| *n == "er").map_or(1.0, |(_, m, _)| *m);
    println!(
        "agent step, mnistnet, {} fresh + {} replayed per set (replay agents; DER++ two sets), {} threads, median of {} rounds of {} steps:",
        args.batch_size, args.batch_size, args.threads, args.repeats, args.steps
    );
    for (name, m, times) in &medians {
        println!(
            "  {name:<11} {m:7.2} ms/step  {:5.2}x er  (min {:.2}, max {:.2})",
            m / er,
            times[0],
            times[times.len() - 1]
        );
    }
    Ok(())
}
