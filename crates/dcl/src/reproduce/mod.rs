//! `dcl reproduce`: comparisons of published continual-learning papers, run with dcl's agents.
//!
//! Every run of a comparison is a `dcl train` process of its own with its own results
//! directory; a directory whose `summary.json` says `complete` and whose run had the same
//! flags (`<directory>.flags`) is reused when the command runs again, so an interrupted
//! comparison continues where it stopped. Up to `--jobs` runs go at
//! once, each writing its lines to `<its directory>.log`. Each comparison builds its runs and
//! writes its tables (markdown and CSV).

mod seq_mnist;
mod three_types;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cli::{ComparisonArgs, ReproduceCommand};

/// Runs the comparison `command` names.
pub fn run(command: ReproduceCommand) -> Result<()> {
    match command {
        ReproduceCommand::ThreeTypes(args) => three_types::run(args),
        ReproduceCommand::SeqMnist(args) => seq_mnist::run(args),
    }
}

/// The flags of every `--quick` variant: the first 3,000 training and 1,000 test images.
const QUICK_SAMPLES: [&str; 4] = ["--train-samples", "3000", "--test-samples", "1000"];

/// One `dcl train` of a comparison.
struct Job {
    /// How the progress lines name it ("DER++ Class-IL seed 0").
    label: String,
    /// Its results directory.
    dir: PathBuf,
    /// Its flags, but for the ones every run shares (threads, data, results directory).
    flags: Vec<String>,
}

/// The methods of `all` that `--methods` names (every one without it), matched by name
/// regardless of case.
fn select<'a, M>(all: &'a [M], chosen: &Option<Vec<String>>, name: fn(&M) -> &str) -> Result<Vec<&'a M>> {
    let Some(names) = chosen else {
        return Ok(all.iter().collect());
    };
    names
        .iter()
        .map(|wanted| {
            all.iter()
                .find(|m| name(m).eq_ignore_ascii_case(wanted))
                .with_context(|| {
                    let known: Vec<&str> = all.iter().map(name).collect();
                    format!("--methods: no method '{wanted}'; the methods: {}", known.join(", "))
                })
        })
        .collect()
}

/// The directory name of a method's runs: lower case, `++` as `pp`, no hyphens.
fn slug(method: &str) -> String {
    method.to_lowercase().replace("++", "pp").replace('-', "")
}

/// Checks the flags every comparison shares and creates the results directory (`default`
/// without `--results-dir`); returns it.
fn prepare(args: &ComparisonArgs, default: &str) -> Result<PathBuf> {
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if !["mnist", "fashion-mnist"].contains(&args.dataset.as_str()) {
        bail!("--dataset: '{}' is not one of mnist, fashion-mnist", args.dataset);
    }
    let root = args.results_dir.clone().unwrap_or_else(|| PathBuf::from(default));
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    Ok(root)
}

/// Runs `jobs` (up to `--jobs` at once, each with `threads` intra-op threads) or reuses their
/// complete results; returns their summaries in the order of `jobs`. After a failed run no
/// further run starts (those started finish); the error is the failure earliest in `jobs`.
fn run_jobs(jobs: &[Job], args: &ComparisonArgs, threads: u32) -> Result<Vec<Value>> {
    let exe = std::env::current_exe().context("cannot find the dcl executable")?;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<Value>>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let parallel = (args.jobs as usize).clamp(1, jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| loop {
                if failed.load(Ordering::SeqCst) {
                    return;
                }
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(index) else { return };
                let result = run_job(&exe, job, args, threads);
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                results.lock().expect("no job panics holding the lock")[index] = Some(result);
            });
        }
    });
    let mut summaries = Vec::with_capacity(jobs.len());
    for (job, result) in jobs.iter().zip(results.into_inner().expect("the jobs are over")) {
        match result {
            Some(result) => summaries.push(result?),
            None => bail!("{}: not run, as an earlier run failed", job.label),
        }
    }
    Ok(summaries)
}

/// One job's summary: from its directory if complete with the same flags, else from a
/// fresh `dcl train`.
fn run_job(exe: &Path, job: &Job, args: &ComparisonArgs, threads: u32) -> Result<Value> {
    let summary_path = job.dir.join("summary.json");
    // The flags of the run in the directory, written once it completed.
    let flags_path = job.dir.with_extension("flags");
    let flags = job.flags.join("\n");
    let complete = |summary: &Value| summary["status"] == "complete";
    let same_flags = std::fs::read_to_string(&flags_path).is_ok_and(|earlier| earlier == flags);
    if let Some(summary) = read_summary(&summary_path).filter(complete).filter(|_| same_flags) {
        eprintln!("{}: done before", job.label);
        return Ok(summary);
    }
    let _ = std::fs::remove_file(&flags_path);
    eprintln!("{}: training…", job.label);
    // The run's own lines go to a log beside its directory (runs at once would interleave).
    let log_path = job.dir.with_extension("log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .args(["train", "--quiet", "--overwrite", "--threads", &threads.to_string()])
        .args(&job.flags)
        .arg("--results-dir")
        .arg(&job.dir);
    if let Some(data) = &args.dataset_dir {
        command.arg("--dataset-dir").arg(data);
    }
    let status = command
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .context("cannot start dcl train")?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        bail!(
            "{} failed ({status}): {last} (its log: {})",
            job.label,
            log_path.display()
        );
    }
    let summary = read_summary(&summary_path)
        .filter(complete)
        .with_context(|| format!("{}: no complete summary in {}", job.label, job.dir.display()))?;
    std::fs::write(&flags_path, flags).with_context(|| format!("cannot write {}", flags_path.display()))?;
    Ok(summary)
}

fn read_summary(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A run's final average accuracy: of its own scenario, or (`task_il`) of the
/// task-incremental view of a class-incremental run.
fn final_accuracy(summary: &Value, task_il: bool, label: &str) -> Result<f64> {
    let scope = if task_il { &summary["task_il"] } else { summary };
    scope["final_average_accuracy"]
        .as_f64()
        .with_context(|| format!("{label}: the summary has no final average accuracy"))
}

/// Writes a comparison's tables as `<stem>.md` and `<stem>.csv` under `root` and prints the
/// markdown.
fn write_tables(root: &Path, stem: &str, markdown: &str, csv: &str) -> Result<()> {
    let md_path = root.join(format!("{stem}.md"));
    let csv_path = root.join(format!("{stem}.csv"));
    std::fs::write(&md_path, markdown).with_context(|| format!("cannot write {}", md_path.display()))?;
    std::fs::write(&csv_path, csv).with_context(|| format!("cannot write {}", csv_path.display()))?;
    print!("{markdown}");
    eprintln!("tables: {} and {}", md_path.display(), csv_path.display());
    Ok(())
}

/// The name of a data set in a table's title.
fn dataset_title(dataset: &str) -> &'static str {
    if dataset == "mnist" {
        "MNIST"
    } else {
        "Fashion-MNIST"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_directory_names_plain() {
        assert_eq!(slug("DER++"), "derpp");
        assert_eq!(slug("A-GEM"), "agem");
        assert_eq!(slug("iCaRL"), "icarl");
    }

    #[test]
    fn methods_are_chosen_by_name_regardless_of_case() {
        fn name<'a>(method: &&'a str) -> &'a str {
            method
        }
        let all = ["ER", "DER++", "A-GEM"];
        assert_eq!(select(&all, &None, name).unwrap().len(), 3);
        let chosen = Some(vec!["der++".to_owned(), "ER".to_owned()]);
        assert_eq!(select(&all, &chosen, name).unwrap(), vec![&"DER++", &"ER"]);
        let error = select(&all, &Some(vec!["GEM".to_owned()]), name).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--methods: no method 'GEM'; the methods: ER, DER++, A-GEM"
        );
    }
}
