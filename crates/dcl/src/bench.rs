//! `dcl bench step`: the bare training step of a model on synthetic data, the Rust side
//! of `bench/compare_step.sh` (whose PyTorch side is `bench/pytorch_step.py`).

use std::time::Instant;

use anyhow::{ensure, Result};
use dcl_models::ModelInput;
use dcl_train::{Learner, OptimizerKind, OptimizerSettings};
use tch::{Kind, Tensor};

use crate::cli::StepArgs;

/// The MNIST-shaped input the step is measured on.
const INPUT: ModelInput = ModelInput { image_shape: [1, 28, 28], num_classes: 10 };

/// Times `args.steps` SGD steps, `args.repeats` times, and reports the median images/s.
pub fn run_step(args: StepArgs) -> Result<()> {
    ensure!(args.batch_size > 0 && args.steps > 0 && args.repeats > 0, "--batch-size, --steps and --repeats must be at least 1");
    tch::set_num_threads(args.threads as i32);
    tch::manual_seed(0);
    let device = dcl_train::trainer::device();
    let sgd = OptimizerSettings { optimizer: OptimizerKind::Sgd, lr: 0.01, momentum: 0.9, weight_decay: 0.0 };
    let mut learner = Learner::new(&args.model, INPUT, sgd, device)?;
    let [c, h, w] = INPUT.image_shape.map(|d| d as i64);
    let b = args.batch_size as i64;
    let images = Tensor::randn([b, c, h, w], (Kind::Float, device));
    let labels = Tensor::randint(INPUT.num_classes as i64, [b], (Kind::Int64, device));
    for _ in 0..args.warmup {
        let _step = learner.train_step(&images, &labels, None)?;
    }
    let mut rates = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        let started = Instant::now();
        for _ in 0..args.steps {
            let _step = learner.train_step(&images, &labels, None)?;
        }
        rates.push((args.steps * args.batch_size) as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    if args.json {
        println!(
            "{}",
            serde_json::json!({"engine": "dcl", "model": args.model, "batch_size": args.batch_size,
                "threads": args.threads, "images_per_second_median": median, "images_per_second": rates})
        );
    } else {
        println!(
            "dcl {} step, batch {}, {} threads: median {median:.0} img/s (min {:.0}, max {:.0}, {} repeats of {} steps)",
            args.model, args.batch_size, args.threads, rates[0], rates[rates.len() - 1], args.repeats, args.steps
        );
    }
    Ok(())
}
