//! Data-parallel runs of the `dcl` binary under MPICH's `mpirun` (installed by
//! `scripts/setup.sh`), on the real MNIST files.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{dataset_dir, read_json};

/// MPICH's launcher: `mpirun.mpich` where Open MPI is installed too, else `mpirun`.
fn mpirun() -> &'static str {
    let found = |name: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("mpirun.mpich") {
        "mpirun.mpich"
    } else {
        assert!(found("mpirun"), "no mpirun: run scripts/setup.sh (it installs MPICH)");
        "mpirun"
    }
}

/// `dcl train` on `ranks` ranks (1: without a launcher), on MNIST, into `results`.
fn train(ranks: usize, results: &Path, args: &[&str]) -> Command {
    let data = dataset_dir();
    let mut command = if ranks == 1 {
        Command::new(env!("CARGO_BIN_EXE_dcl"))
    } else {
        let mut c = Command::new(mpirun());
        c.args(["-np", &ranks.to_string(), env!("CARGO_BIN_EXE_dcl")]);
        c
    };
    command
        .args(["train", "--dataset", "mnist", "--quiet", "--threads", "1"])
        .args([
            "--dataset-dir",
            data.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ])
        .args(args)
        .env_remove("DCL_DATASET_DIR")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .envs(common::portable_env());
    command
}

fn run(mut command: Command) -> Output {
    let output = command.output().expect("the launcher runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn summary(results: &Path) -> Value {
    read_json(&results.join("summary.json"))
}

/// Asserts that two numbers of two runs' summaries differ by at most `tolerance`.
fn assert_close(a: &Value, b: &Value, tolerance: f64, what: &str) {
    let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!((x - y).abs() <= tolerance, "{what}: {x} vs {y}");
}

#[test]
fn two_ranks_at_half_the_batch_train_like_one_rank_at_the_full_batch() {
    let root = tempfile::tempdir().unwrap();
    // Same global batch, same learning rate: the gradient averaging alone must match.
    let common = [
        "--model",
        "mlp",
        "--epochs",
        "2",
        "--train-samples",
        "1024",
        "--seed",
        "3",
        "--lr-scaling",
        "none",
    ];
    let one = root.path().join("one");
    run(train(1, &one, &[&common[..], &["--batch-size", "64"]].concat()));
    let two = root.path().join("two");
    run(train(2, &two, &[&common[..], &["--batch-size", "32"]].concat()));
    // Two batches of 16 accumulated per all-reduce: the same 64 samples per step.
    let accumulated = root.path().join("accumulated");
    run(train(
        2,
        &accumulated,
        &[&common[..], &["--batch-size", "16", "--batches-per-allreduce", "2"]].concat(),
    ));
    let a = summary(&one);
    for b in [summary(&two), summary(&accumulated)] {
        assert_eq!(b["world_size"], 2);
        for epoch in 0..2 {
            let (x, y) = (&a["epochs"][epoch], &b["epochs"][epoch]);
            assert_eq!(x["train_images"], y["train_images"]);
            assert_close(&x["train_loss"], &y["train_loss"], 1e-4, "train loss");
            assert_close(&x["eval"][0]["loss"], &y["eval"][0]["loss"], 1e-4, "test loss");
            assert_close(&x["eval"][0]["top1"], &y["eval"][0]["top1"], 0.03, "top-1");
            assert_eq!(
                y["eval"][0]["samples"], 10000,
                "the sharded evaluation covers the test set once"
            );
        }
    }
}

#[test]
fn half_precision_all_reduce_trains_like_the_full_precision_one() {
    let root = tempfile::tempdir().unwrap();
    let common = [
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--train-samples",
        "2048",
        "--seed",
        "5",
        "--batch-size",
        "32",
    ];
    let full = root.path().join("full");
    run(train(2, &full, &common));
    let half = root.path().join("half");
    run(train(2, &half, &[&common[..], &["--fp16-allreduce"]].concat()));
    let (a, b) = (summary(&full), summary(&half));
    let (x, y) = (&a["epochs"][0], &b["epochs"][0]);
    assert_close(&x["eval"][0]["loss"], &y["eval"][0]["loss"], 1e-2, "test loss");
    assert_close(&x["eval"][0]["top1"], &y["eval"][0]["top1"], 1.0, "top-1");
    assert_ne!(
        x["eval"][0]["loss"], y["eval"][0]["loss"],
        "fp16 made no difference: was it applied?"
    );
}

#[test]
fn four_oversubscribed_ranks_run_a_continual_scenario_and_only_rank_zero_writes() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("four");
    let output = run(train(
        4,
        &results,
        &[
            "--model",
            "mlp",
            "--epochs",
            "1",
            "--train-samples",
            "2000",
            "--tasksets-config",
            "{'scenario': 'class', 'initial_increment': 5, 'increment': 5}",
        ],
    ));
    let s = summary(&results);
    assert_eq!(s["world_size"], 4);
    assert_eq!(s["num_tasks"], 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("worker(s) on cpu; results in").count(),
        1,
        "one rank reports: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("final average accuracy"))
            .count(),
        1,
        "{stdout}"
    );
}

/// The process ids of the `dcl train` ranks writing to `results`, by rank.
fn rank_pids(results: &Path) -> Vec<u32> {
    let dcl = std::fs::canonicalize(env!("CARGO_BIN_EXE_dcl")).unwrap();
    let mut ranks: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?).into_owned();
            let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).ok()?).into_owned();
            let rank = environ
                .split('\0')
                .find_map(|v| v.strip_prefix("PMI_RANK="))?
                .parse()
                .ok()?;
            (exe == dcl && cmdline.contains("train") && cmdline.contains(results.to_str().unwrap()))
                .then_some((rank, pid))
        })
        .collect();
    ranks.sort();
    ranks.into_iter().map(|(_, pid)| pid).collect()
}

fn signal(pid: u32, which: &str) {
    Command::new("kill")
        .args([which, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
}

/// Waits until rank 0 has written `config.json` (training runs).
fn wait_for_start(results: &Path) {
    let started = Instant::now();
    while !results.join("config.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "the run did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a long 2-rank run with `extra` flags, sends `signal` (a `kill` argument) to rank 1
/// once training runs, and waits for the job to end (at most 30 s); returns its status, the
/// time it took to end and its standard error. Rank 1 is killed at the end in any case.
fn disturb_rank_one(
    results: &Path,
    extra: &[&str],
    signal_to_send: &str,
) -> (std::process::ExitStatus, Duration, String) {
    let mut job = train(
        2,
        results,
        &[&["--model", "mnistnet", "--epochs", "50"], extra].concat(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("the launcher runs");
    wait_for_start(results);
    std::thread::sleep(Duration::from_secs(1));
    let ranks = rank_pids(results);
    assert_eq!(ranks.len(), 2, "found ranks {ranks:?}");
    signal(ranks[1], signal_to_send);
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(30) {
            signal(ranks[1], "-KILL");
            let _ = job.kill();
            panic!("the job still runs 30 s after rank 1 got {signal_to_send}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = sent.elapsed();
    signal(ranks[1], "-KILL");
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status, elapsed, stderr)
}

#[test]
fn killing_one_rank_stops_the_others_with_an_error_within_30_seconds() {
    let root = tempfile::tempdir().unwrap();
    let (status, _, _) = disturb_rank_one(&root.path().join("killed"), &[], "-9");
    assert!(!status.success(), "the job exited successfully after losing a rank");
}

#[test]
fn global_sampling_draws_every_rank_in_proportion_without_duplicates_and_intact() {
    // Rank r holds 100 (r + 1) samples; each names its rank, slot and label in its pixels.
    let output = Command::new(mpirun())
        .args([
            "-np",
            "2",
            env!("CARGO_BIN_EXE_dcl"),
            "bench",
            "sampling",
            "--check",
            "--draws",
            "500",
        ])
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .expect("the launcher runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), 2);
    for report in &reports {
        assert_eq!(report["duplicates"], 0);
        assert_eq!(report["torn"], 0);
        assert_eq!(report["misattributed"], 0, "origins disagree with the samples' tags");
        assert_eq!(report["first_draw_ranks"], 2, "the first draw of a pass was local only");
        let share = report["shares"][1].as_f64().unwrap();
        assert!(
            (share - 2.0 / 3.0).abs() < 0.05,
            "rank 1 holds 2/3 of the samples but gave {share}"
        );
    }
}

#[test]
fn a_stopped_rank_ends_the_job_within_the_deadline_with_an_error_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("stopped");
    // Deadline 3 s, then 1.5 s to hear from the other ranks, then the abort.
    let (status, elapsed, stderr) = disturb_rank_one(&results, &["--comm-timeout", "3"], "-STOP");
    assert!(!status.success());
    assert!(
        elapsed >= Duration::from_secs(3),
        "ended before the deadline: {elapsed:?}"
    );
    assert!(
        stderr.contains("error: rank 0: no progress in") && stderr.contains("rank 1 stopped answering"),
        "{stderr}"
    );
    let summary = summary(&results);
    assert_eq!(summary["status"], "failed", "{summary}");
    assert!(summary["error"].as_str().unwrap().contains("rank 1 stopped answering"));
}

#[test]
fn an_error_under_mpirun_is_printed_once_and_whole() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("refused");
    let output = train(2, &results, &["--model", "mnistnet", "--epochs", "0"])
        .output()
        .expect("the launcher runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(
        errors,
        vec!["error: invalid configuration: --epochs must be at least 1"],
        "{stderr}"
    );
    assert!(!results.exists(), "a refused run left a results directory");
}

#[test]
fn two_rank_rehearsal_shares_one_budget_draws_from_both_buffers_past_tasks_only_and_repeats_exactly() {
    let root = tempfile::tempdir().unwrap();
    let run_once = |name: &str, store: &str| {
        let results = root.path().join(name);
        let agent_config = format!("{{'buffer_size': 201, 'num_representatives': 16, 'store': '{store}'}}");
        run(train(
            2,
            &results,
            &[
                "--model",
                "mlp",
                "--epochs",
                "1",
                "--train-samples",
                "3000",
                "--seed",
                "11",
                "--agent",
                "er",
                "--agent-config",
                &agent_config,
                "--tasksets-config",
                "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}",
            ],
        ));
        summary(&results)
    };
    let first = run_once("a", "tensor");
    let second = run_once("b", "tensor");
    assert_eq!(
        first["accuracy_matrix"], second["accuracy_matrix"],
        "the same seed on 2 ranks gave two results"
    );
    assert_eq!(first["epochs"][4]["train_loss"], second["epochs"][4]["train_loss"]);
    // MNIST has no random transform: raw samples (variable-length records over MPI) replay
    // as the stored tensors did, to the last bit.
    let raw = run_once("raw", "raw");
    assert_eq!(
        first["accuracy_matrix"], raw["accuracy_matrix"],
        "raw storage changed the run"
    );
    assert_eq!(first["epochs"][4]["train_loss"], raw["epochs"][4]["train_loss"]);
    assert_eq!(raw["rehearsal"]["store"], "raw");
    // The global budget, split over the ranks' buffers exactly (not rounded down to 200).
    let rehearsal = &first["rehearsal"];
    assert_eq!(rehearsal["world_capacity"], 201);
    assert_eq!(rehearsal["capacity"], 101, "rank 0 holds its half and the odd slot");
    let stored: u64 = rehearsal["world_class_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(stored, 201);
    assert!(rehearsal["timing"]["sample_seconds"].as_f64().unwrap() > 0.0);
    for (task, epoch) in first["epochs"].as_array().unwrap().iter().enumerate() {
        let draws = &epoch["rehearsal_draws"];
        let per_rank: Vec<u64> = draws["per_rank"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        let per_class: Vec<u64> = draws["per_class"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        if task == 0 {
            assert_eq!(per_rank, vec![0, 0], "representatives during the first task");
            continue;
        }
        // Both ranks' buffers hold about half of the past: both serve draws.
        assert!(
            per_rank.iter().all(|&n| n > 0),
            "task {task}: draws by origin rank {per_rank:?}"
        );
        assert!(
            per_class[2 * task..].iter().all(|&n| n == 0),
            "task {task}: a representative of the current or a later task: {per_class:?}"
        );
        assert!(per_class[..2 * task].iter().sum::<u64>() > 0);
    }
}

/// The name of the latest checkpoint of the run in `results`, if any.
fn latest_checkpoint(results: &Path) -> Option<String> {
    let names = std::fs::read_dir(results.join("checkpoints")).ok()?;
    names
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
        .filter(|name| name.starts_with("task-"))
        .max()
}

/// Waits until `job`, a run into `results`, has written a checkpoint named `at_least` or later.
fn wait_for_checkpoint(job: &mut std::process::Child, results: &Path, at_least: &str) {
    let started = Instant::now();
    while latest_checkpoint(results).is_none_or(|name| name.as_str() < at_least) {
        assert!(job.try_wait().unwrap().is_none(), "the job ended before {at_least}");
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint {at_least}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_two_rank_job_that_loses_a_rank_resumes_as_a_whole_and_ends_as_the_uninterrupted_one() {
    let root = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "mlp",
        "--epochs",
        "2",
        "--train-samples",
        "6000",
        "--seed",
        "5",
        "--agent",
        "er",
        "--agent-config",
        "{'buffer_size': 201, 'num_representatives': 16}",
        "--tasksets-config",
        "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}",
    ];
    let whole = root.path().join("whole");
    run(train(2, &whole, &args));
    // The broken job checkpoints after every step too: killed, it resumes within an epoch.
    let broken = root.path().join("broken");
    let mut job = train(2, &broken, &args)
        .args(["--checkpoint-every-steps", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the launcher runs");
    // Kill rank 1 once the job has written a checkpoint within the second epoch of the second task.
    wait_for_checkpoint(&mut job, &broken, "task-001-epoch-001-step");
    let ranks = rank_pids(&broken);
    assert_eq!(ranks.len(), 2, "found ranks {ranks:?}");
    signal(ranks[1], "-KILL");
    let status = job.wait().unwrap();
    assert!(!status.success(), "the job succeeded without a rank");
    for pid in rank_pids(&broken) {
        signal(pid, "-KILL");
    }
    let resume = || {
        let mut command = Command::new(mpirun());
        command
            .args(["-np", "2", env!("CARGO_BIN_EXE_dcl"), "train", "--quiet", "--resume"])
            .arg(&broken)
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .envs(common::portable_env());
        command
    };
    // Resumed, then stopped by SIGTERM to rank 0 alone in its third task: both ranks go on to
    // one step and checkpoint there, each with its part of the epoch.
    let mut job = resume()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the launcher runs");
    wait_for_checkpoint(&mut job, &broken, "task-002-epoch-000-step");
    signal(rank_pids(&broken)[0], "-TERM");
    assert!(!job.wait().unwrap().success(), "the stopped job ended as complete");
    let latest = broken.join("checkpoints").join(latest_checkpoint(&broken).unwrap());
    assert!(latest.to_string_lossy().contains("-step-"), "{}", latest.display());
    for rank in 0..2 {
        assert!(latest.join(format!("progress-rank-{rank}.json")).exists());
        assert!(latest.join(format!("buffer-rank-{rank}.bin")).exists());
    }
    run(resume());
    let (a, b) = (summary(&whole), summary(&broken));
    assert_eq!(b["status"], "complete");
    assert_eq!(a["accuracy_matrix"], b["accuracy_matrix"], "the resumed job differs");
    for (x, y) in a["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["epochs"].as_array().unwrap())
    {
        assert_eq!(x["train_loss"], y["train_loss"]);
        assert_eq!(x["rehearsal_draws"], y["rehearsal_draws"]);
    }
    assert_eq!(
        a["rehearsal"]["world_class_counts"],
        b["rehearsal"]["world_class_counts"]
    );
}

#[test]
fn every_agent_runs_on_two_ranks_and_der_repeats_exactly() {
    let root = tempfile::tempdir().unwrap();
    let scenario = |kind: &str| format!("{{'scenario': '{kind}', 'initial_increment': 2, 'increment': 2}}");
    let rehearsal = "{'buffer_size': 200, 'num_representatives': 16}";
    for (agent, kind, config) in [
        ("ewc", "task", "{'fisher_samples': 100}"),
        ("online_ewc", "task", "{'fisher_samples': 100}"),
        ("si", "task", "{}"),
        ("lwf", "task", "{}"),
        ("agem", "class", rehearsal),
        ("derpp", "class", rehearsal),
        ("gdumb", "class", "{'buffer_size': 201, 'epochs': 2}"),
        ("icarl", "class", rehearsal),
    ] {
        let results = root.path().join(agent);
        let tasksets = scenario(kind);
        let args = [
            "--model",
            "mlp",
            "--epochs",
            "1",
            "--train-samples",
            "2000",
            "--seed",
            "2",
            "--agent",
            agent,
            "--agent-config",
            config,
            "--tasksets-config",
            &tasksets,
        ];
        run(train(2, &results, &args));
        let first = summary(&results);
        assert_eq!(first["status"], "complete", "{agent}");
        assert_eq!(first["world_size"], 2, "{agent}");
        if agent == "derpp" {
            // Logits stored after each step travel with their samples between the ranks, and
            // every draw waits for the previous step's offers: a second job repeats the first.
            let draws: Vec<u64> = first["rehearsal"]["draws"]["per_rank"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .collect();
            assert!(draws.iter().all(|&n| n > 0), "draws by rank {draws:?}");
            let again = root.path().join("derpp-again");
            run(train(2, &again, &args));
            let second = summary(&again);
            assert_eq!(first["accuracy_matrix"], second["accuracy_matrix"]);
            assert_eq!(first["rehearsal"]["draws"], second["rehearsal"]["draws"]);
        }
    }
}
