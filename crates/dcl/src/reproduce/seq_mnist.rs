//! `dcl reproduce seq-mnist`: the Seq-MNIST benchmark of Buzzega et al. (2020), "Dark
//! Experience for General Continual Learning: a Strong, Simple Baseline" (NeurIPS), as their
//! framework Mammoth runs it: 5 class-incremental tasks of 2 digits, seen once (1 epoch), pixels
//! in [0, 1] (no normalisation); an MLP of two hidden layers of 100 units; plain SGD (no
//! momentum) on batches of 10 stream samples; buffers of 200 and 500 samples (by default;
//! Mammoth also tunes 5120, and other sizes take the settings of the nearest of the three) filled
//! by reservoir sampling over the whole stream (the current task included) and replayed from all
//! of it, 10 samples a step; each method's learning rate and strengths from Mammoth's
//! `utils/best_args.py` for `seq-mnist` (GDumb and offline EWC have none there: ours are named in
//! `METHODS`). The table: final average class-IL
//! accuracy and the task-IL accuracy of the same model (mean ± standard deviation over the
//! seeds) per method and buffer.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};

use super::{dataset_title, final_accuracy, prepare, run_jobs, select, slug, write_tables, Job, QUICK_SAMPLES};
use crate::cli::{ComparisonArgs, SeqMnistArgs};
use crate::stats::mean_std;

/// A method's settings for one buffer size.
struct Settings {
    lr: f64,
    weight_decay: f64,
    /// The `--agent-config` keys beyond the buffer's.
    keys: &'static str,
}

/// Representatives replayed per step: Mammoth's best arguments name a `minibatch_size` of 128
/// for A-GEM, DER (500) and DER++ (200), but its `main.py` sets `minibatch_size` to the batch
/// size whenever a batch size is given, as the best arguments do (commit e75a491,
/// `main.py:431-436`): 10 is what runs.
const REPLAYED: usize = 10;

/// One method of the comparison.
struct Method {
    /// Its name in the table (and `--methods`).
    name: &'static str,
    agent: &'static str,
    /// Whether it keeps a buffer (one row per buffer size) or not (one row).
    buffered: bool,
    /// Whether the buffer is the agent's own (iCaRL's exemplars, GDumb's memory) rather than
    /// a reservoir over the stream.
    curated: bool,
    /// Train each task on the data of every task so far (the upper bound).
    joint: bool,
    settings: fn(usize) -> Settings,
}

const fn sgd(lr: f64, keys: &'static str) -> Settings {
    Settings {
        lr,
        weight_decay: 0.0,
        keys,
    }
}

const fn plain(name: &'static str, agent: &'static str, settings: fn(usize) -> Settings) -> Method {
    Method {
        name,
        agent,
        buffered: false,
        curated: false,
        joint: false,
        settings,
    }
}

const fn buffered(name: &'static str, agent: &'static str, settings: fn(usize) -> Settings) -> Method {
    Method {
        name,
        agent,
        buffered: true,
        curated: false,
        joint: false,
        settings,
    }
}

/// Mammoth's `best_args['seq-mnist']` (`e_lambda` × 2 as dcl's EWC penalty is λ/2 · ΣF(θ−θ*)²,
/// Mammoth's λ · ΣF(θ−θ*)²; `xi` is SI's `epsilon`; `softmax_temp` LwF's `temperature`).
const METHODS: &[Method] = &[
    plain("SGD", "base", |_| sgd(0.03, "")),
    Method {
        joint: true,
        ..plain("Joint", "base", |_| sgd(0.03, ""))
    },
    // Offline EWC: not in Mammoth; online EWC's settings.
    plain("EWC", "ewc", |_| sgd(0.03, "'lambda': 180")),
    plain("oEWC", "online_ewc", |_| sgd(0.03, "'lambda': 180, 'gamma': 1.0")),
    plain("SI", "si", |_| sgd(0.1, "'c': 1.0, 'epsilon': 0.9")),
    plain("LwF", "lwf", |_| Settings {
        weight_decay: 0.0005,
        ..sgd(0.03, "'alpha': 1.0, 'temperature': 2.0")
    }),
    buffered("ER", "er", |buffer| sgd(if buffer == 200 { 0.01 } else { 0.1 }, "")),
    buffered("A-GEM", "agem", |_| sgd(0.1, "")),
    buffered("DER", "der", |buffer| match buffer {
        200 => sgd(0.03, "'alpha': 0.2"),
        500 => sgd(0.03, "'alpha': 1.0"),
        _ => sgd(0.1, "'alpha': 0.5"),
    }),
    buffered("DER++", "derpp", |buffer| match buffer {
        200 => sgd(0.03, "'alpha': 0.2, 'beta': 1.0"),
        500 => sgd(0.03, "'alpha': 1.0, 'beta': 0.5"),
        _ => sgd(0.1, "'alpha': 0.2, 'beta': 0.5"),
    }),
    Method {
        curated: true,
        ..buffered("iCaRL", "icarl", |_| sgd(0.1, ""))
    },
    // GDumb: not in Mammoth's seq-mnist arguments; SGD's learning rate, 50 epochs on the memory.
    Method {
        curated: true,
        ..buffered("GDumb", "gdumb", |_| sgd(0.03, "'epochs': 50"))
    },
];

/// Runs the comparison and writes its table.
pub fn run(args: SeqMnistArgs) -> Result<()> {
    let common = &args.comparison;
    if args.buffers.is_empty() || args.buffers.contains(&0) {
        bail!("--buffers: give one or more sizes of at least 1 sample");
    }
    let methods = select(METHODS, &common.methods, |m| m.name)?;
    let root = prepare(common, "results/seq-mnist")?;
    // The rows: a method without a buffer once, one with a buffer once per size.
    let rows: Vec<(&Method, Option<usize>)> = methods
        .iter()
        .flat_map(|&method| {
            let sizes: Vec<Option<usize>> = if method.buffered {
                args.buffers.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
            sizes.into_iter().map(move |size| (method, size))
        })
        .collect();
    let root = root.as_path();
    let jobs: Vec<Job> = rows
        .iter()
        .flat_map(|&(method, buffer)| (0..common.seeds).map(move |seed| job(common, root, method, buffer, seed)))
        .collect();
    let summaries = run_jobs(&jobs, common, common.threads.unwrap_or(1))?;
    let mut cells = Vec::new();
    for (row, chunk) in rows
        .iter()
        .zip(jobs.chunks(common.seeds).zip(summaries.chunks(common.seeds)))
    {
        let (jobs, summaries) = chunk;
        let accuracies = |task_il: bool| -> Result<Vec<f64>> {
            jobs.iter()
                .zip(summaries)
                .map(|(job, summary)| final_accuracy(summary, task_il, &job.label))
                .collect()
        };
        cells.push((row.0.name, row.1, accuracies(false)?, accuracies(true)?));
    }
    let (markdown, csv) = table(common, &cells);
    write_tables(root, "seq-mnist", &markdown, &csv)
}

/// The buffer size whose settings Mammoth's best arguments give that is nearest to `buffer`
/// (200, 500 or 5120).
fn tuned_size(buffer: usize) -> usize {
    match buffer {
        0..=316 => 200,
        317..=1600 => 500,
        _ => 5120,
    }
}

/// The `dcl train` of `method` with `buffer` samples (if it keeps any) and `seed`.
fn job(args: &ComparisonArgs, root: &Path, method: &Method, buffer: Option<usize>, seed: usize) -> Job {
    let settings = (method.settings)(buffer.map_or(0, tuned_size));
    let mut keys: Vec<String> = Vec::new();
    if let Some(size) = buffer {
        keys.push(format!("'buffer_size': {size}"));
        if !method.curated {
            keys.push("'policy': 'reservoir', 'replay': 'all'".to_owned());
        }
        keys.push(format!("'num_representatives': {REPLAYED}"));
    }
    if !settings.keys.is_empty() {
        keys.push(settings.keys.to_owned());
    }
    let joint = if method.joint {
        ", 'concatenate_tasksets': True"
    } else {
        ""
    };
    let mut flags: Vec<String> = [
        "--model",
        "mlp",
        "--model-config",
        "{'layers': 2, 'units': 100}",
        "--dataset",
        &args.dataset,
        "--normalize",
        "none",
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--optimizer-regime",
        &format!(
            "[{{'epoch': 0, 'optimizer': 'SGD', 'lr': {}, 'momentum': 0, 'weight_decay': {}}}]",
            settings.lr, settings.weight_decay
        ),
        "--seed",
        &seed.to_string(),
        "--agent",
        method.agent,
        "--agent-config",
        &format!("{{{}}}", keys.join(", ")),
        "--tasksets-config",
        &format!("{{'scenario': 'class', 'initial_increment': 2, 'increment': 2{joint}}}"),
    ]
    .map(str::to_owned)
    .to_vec();
    if args.quick {
        flags.extend(QUICK_SAMPLES.map(str::to_owned));
    }
    let (label, dir) = match buffer {
        Some(size) => (
            format!("{} buffer {size} seed {seed}", method.name),
            format!("{}-buffer{size}-seed{seed}", slug(method.name)),
        ),
        None => (
            format!("{} seed {seed}", method.name),
            format!("{}-seed{seed}", slug(method.name)),
        ),
    };
    Job {
        label,
        dir: root.join(dir),
        flags,
    }
}

type Cells<'a> = Vec<(&'a str, Option<usize>, Vec<f64>, Vec<f64>)>;

/// The markdown and CSV tables of `cells` (method, buffer, class-IL and task-IL accuracies).
fn table(args: &ComparisonArgs, cells: &Cells) -> (String, String) {
    let mut md = String::new();
    let protocol = if args.quick {
        "quick variant: the first 3,000 training and 1,000 test images"
    } else {
        "each training image seen once"
    };
    let _ = writeln!(
        md,
        "Seq-{} (5 class-incremental tasks of 2 classes), final average accuracy (%), mean ± std over {} seed(s); \
         {protocol}; batches of 10, Mammoth's seq-mnist settings.\n",
        dataset_title(&args.dataset),
        args.seeds
    );
    let _ = writeln!(md, "| Method | Buffer | Class-IL | Task-IL |");
    let _ = writeln!(md, "|---|---|---|---|");
    let mut csv =
        String::from("method,buffer,seeds,class_il_mean,class_il_std,task_il_mean,task_il_std,class_il_accuracies\n");
    for (method, buffer, class_il, task_il) in cells {
        let (class_mean, class_std) = mean_std(class_il).expect("every row runs at least one seed");
        let (task_mean, task_std) = mean_std(task_il).expect("every row runs at least one seed");
        let size = buffer.map_or("-".to_owned(), |b| b.to_string());
        let _ = writeln!(
            md,
            "| {method} | {size} | {class_mean:.2} ± {class_std:.2} | {task_mean:.2} ± {task_std:.2} |"
        );
        let list: Vec<String> = class_il.iter().map(|v| format!("{v:.4}")).collect();
        let _ = writeln!(
            csv,
            "{method},{size},{},{class_mean:.4},{class_std:.4},{task_mean:.4},{task_std:.4},{}",
            class_il.len(),
            list.join(" ")
        );
    }
    (md, csv)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn method(name: &str) -> &'static Method {
        METHODS.iter().find(|m| m.name == name).unwrap()
    }

    fn args() -> ComparisonArgs {
        ComparisonArgs {
            seeds: 1,
            quick: false,
            methods: None,
            dataset: "mnist".to_owned(),
            dataset_dir: None,
            results_dir: None,
            threads: None,
            jobs: 1,
        }
    }

    fn flag<'a>(job: &'a Job, name: &str) -> &'a str {
        let at = job.flags.iter().position(|f| f == name).unwrap();
        &job.flags[at + 1]
    }

    #[test]
    fn each_buffer_takes_mammoths_settings_and_a_reservoir_over_the_stream() {
        let job = job(&args(), Path::new("r"), method("DER++"), Some(500), 2);
        assert_eq!(job.dir, PathBuf::from("r/derpp-buffer500-seed2"));
        assert_eq!(
            flag(&job, "--agent-config"),
            "{'buffer_size': 500, 'policy': 'reservoir', 'replay': 'all', 'num_representatives': 10, 'alpha': 1.0, 'beta': 0.5}"
        );
        assert_eq!(
            flag(&job, "--optimizer-regime"),
            "[{'epoch': 0, 'optimizer': 'SGD', 'lr': 0.03, 'momentum': 0, 'weight_decay': 0}]"
        );
        assert_eq!(flag(&job, "--batch-size"), "10");
    }

    #[test]
    fn other_buffer_sizes_take_the_settings_of_the_nearest_tuned_one() {
        // Nearest on a log scale: √(200·500) ≈ 316, √(500·5120) = 1600.
        assert_eq!(
            [100, 316, 317, 1000, 1600, 1601, 5120].map(tuned_size),
            [200, 200, 500, 500, 500, 5120, 5120]
        );
        let large = job(&args(), Path::new("r"), method("DER++"), Some(5120), 0);
        assert!(flag(&large, "--optimizer-regime").contains("'lr': 0.1,"));
        assert!(flag(&large, "--agent-config").ends_with("'alpha': 0.2, 'beta': 0.5}"));
    }

    #[test]
    fn curated_memories_keep_their_own_policy_and_plain_methods_have_no_buffer() {
        let icarl = job(&args(), Path::new("r"), method("iCaRL"), Some(200), 0);
        assert_eq!(
            flag(&icarl, "--agent-config"),
            "{'buffer_size': 200, 'num_representatives': 10}"
        );
        let joint = job(&args(), Path::new("r"), method("Joint"), None, 0);
        assert_eq!(joint.dir, PathBuf::from("r/joint-seed0"));
        assert_eq!(flag(&joint, "--agent-config"), "{}");
        assert!(flag(&joint, "--tasksets-config").contains("'concatenate_tasksets': True"));
    }
}
