//! End-to-end tests of the `dcl` binary on the real MNIST files fetched by
//! `scripts/setup.sh` (or wherever `DCL_DATASET_DIR` points).

use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod common;
use common::{dataset_dir, dcl_command, read_json, stderr};

/// Runs the binary with the test environment ([`dcl_command`]).
fn dcl(args: &[&str]) -> Output {
    dcl_command().args(args).output().expect("dcl runs")
}

/// Asserts a user error: exit code 1, one `error:` line containing `needle`, no panic.
fn assert_user_error(output: &Output, needle: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].contains(needle), "expected '{needle}' in: {text}");
}

/// `dcl train` of mnistnet for one epoch per task on the data sets in `data`, into `results`,
/// with `extra` flags.
fn train(data: &Path, results: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--model",
        "mnistnet",
        "--epochs",
        "1",
        "--quiet",
        "--dataset-dir",
        data.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    dcl(&args)
}

/// One epoch on the first `train_samples` MNIST images, at batch 8: a 5,000-image epoch at
/// the default batch of 64 is only 79 steps, too few for mnistnet and its two dropouts.
/// Two threads, so that the result is the same on every 2-core machine.
fn train_small(results: &Path, train_samples: &str, seed: &str) -> Output {
    train_small_with(results, train_samples, seed, &[])
}

/// [`train_small`] with `extra` flags.
fn train_small_with(results: &Path, train_samples: &str, seed: &str, extra: &[&str]) -> Output {
    let flags = [
        "--batch-size",
        "8",
        "--threads",
        "2",
        "--train-samples",
        train_samples,
        "--seed",
        seed,
    ];
    train(&dataset_dir(), results, &[&flags[..], extra].concat())
}

#[test]
fn one_epoch_on_5000_real_images_learns_mnist_and_writes_the_results_contract() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("run");
    let output = train_small(&results, "5000", "1");
    assert!(output.status.success(), "{}", stderr(&output));

    let summary = read_json(&results.join("summary.json"));
    let accuracy = summary["final_average_accuracy"].as_f64().unwrap();
    // Measured over seeds 0-4, native AVX-512 and capped to AVX2: 90.2-93.7 %. The margin
    // of 5 points below the lowest keeps the assertion off the edge on any CPU.
    assert!(accuracy > 85.0, "test top-1 {accuracy} %");
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["completed_tasks"], 1);
    assert_eq!(summary["run"]["seed"], 1);
    assert_eq!(summary["run"]["config_hash"].as_str().unwrap().len(), 16);
    assert_eq!(summary["accuracy_matrix"], serde_json::json!([[accuracy]]));
    assert_eq!(summary["num_tasks"], 1);
    assert_eq!(summary["world_size"], 1);
    assert_eq!(summary["dcl_version"], env!("CARGO_PKG_VERSION"));
    assert!(summary["train_images_per_second"].as_f64().unwrap() > 0.0);
    assert!(summary["wall_time_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["epochs"][0]["train_images"], 5000);
    assert_eq!(summary["epochs"][0]["eval"][0]["samples"], 10000);

    let config = read_json(&results.join("config.json"));
    assert_eq!(config["model"], "mnistnet");
    assert_eq!(config["train_samples"], 5000);
    assert_eq!(config["optimizer_regime"][0]["momentum"], 0.9);
    assert_eq!(config["scenario"]["scenario"], "single");
}

#[test]
fn bf16_autocast_learns_on_the_cpu_and_fp16_asks_for_a_gpu() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("bf16");
    let output = train_small_with(
        &results,
        "5000",
        "1",
        &["--test-samples", "2000", "--device", "cpu", "--amp"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = read_json(&results.join("summary.json"));
    let accuracy = summary["final_average_accuracy"].as_f64().unwrap();
    // Measured over seeds 0-4 (AVX2 path): 86.9-91.9 % (fp32: 90.2-93.7); 7 points of margin.
    assert!(accuracy > 80.0, "test top-1 {accuracy} %");
    assert_eq!(
        read_json(&results.join("config.json"))["amp"],
        "bf16",
        "--amp alone is bf16"
    );
    assert_user_error(
        &train(
            &dataset_dir(),
            &root.path().join("fp16"),
            &["--device", "cpu", "--amp", "fp16"],
        ),
        "--amp fp16 needs a CUDA device; on the CPU use --amp bf16",
    );
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let root = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let results = root.path().join(name);
        let output = train_small(&results, "640", seed);
        assert!(output.status.success(), "{}", stderr(&output));
        let summary = read_json(&results.join("summary.json"));
        (
            summary["accuracy_matrix"].clone(),
            summary["epochs"][0]["train_loss"].clone(),
        )
    };
    let first = run("a", "7");
    assert_eq!(first, run("b", "7"));
    assert_ne!(first, run("c", "8"));
}

#[test]
fn normalize_replaces_the_data_sets_normalisation_and_is_recorded() {
    let root = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let results = root.path().join(name);
        let output = train_small_with(&results, "640", "7", extra);
        assert!(output.status.success(), "{}", stderr(&output));
        let summary = read_json(&results.join("summary.json"));
        let config = read_json(&results.join("config.json"));
        (summary["accuracy_matrix"].clone(), config["normalization"].clone())
    };
    let (default, recorded) = run("default", &[]);
    assert_eq!(recorded, serde_json::Value::Null, "the data set's own is not recorded");
    // MNIST's own normalisation is (0.5, 0.5): naming it gives the same run, bit for bit.
    let (same, recorded) = run("same", &["--normalize", "0.5,0.5"]);
    assert_eq!(same, default);
    assert_eq!(recorded, serde_json::json!([0.5, 0.5]));
    // Pixels in [0, 1] are other inputs, so another run.
    let (raw, recorded) = run("none", &["--normalize", "none"]);
    assert_ne!(raw, default);
    assert_eq!(recorded, serde_json::json!([0.0, 1.0]));
}

#[test]
fn an_existing_results_directory_is_refused_and_left_intact() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("summary.json"), "earlier results").unwrap();
    let output = train_small(root.path(), "64", "1");
    assert_user_error(
        &output,
        "already exists; choose another --results-dir or pass --overwrite",
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("summary.json")).unwrap(),
        "earlier results"
    );
}

/// A copy of MNIST in a temporary directory, with one file replaced by `corrupt`.
fn mnist_with(file: &str, corrupt: impl FnOnce(Vec<u8>) -> Vec<u8>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(dataset_dir().join("mnist")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let target = dir.join(file);
    std::fs::write(&target, corrupt(std::fs::read(&target).unwrap())).unwrap();
    root
}

fn train_on(data: &Path, results: &Path) -> Output {
    train(data, results, &[])
}

#[test]
fn a_truncated_idx_file_is_named_and_no_results_are_written() {
    let data = mnist_with("train-labels-idx1-ubyte", |mut b| {
        b.truncate(b.len() - 100);
        b
    });
    let results = data.path().join("results");
    let output = train_on(data.path(), &results);
    assert_user_error(&output, "train-labels-idx1-ubyte: not a valid IDX file: truncated");
    assert!(!results.exists());
}

#[test]
fn a_label_out_of_range_is_named() {
    let data = mnist_with("t10k-labels-idx1-ubyte", |mut b| {
        b[8 + 17] = 12;
        b
    });
    let output = train_on(data.path(), &data.path().join("results"));
    assert_user_error(&output, "t10k-labels-idx1-ubyte: label 12 of sample 17 is out of range");
}

#[test]
fn a_missing_data_directory_names_the_path_and_the_fetch_command() {
    let root = tempfile::tempdir().unwrap();
    let output = train_on(root.path(), &root.path().join("results"));
    let expected = format!(
        "mnist data directory not found at {}; run `dcl data fetch mnist --dataset-dir {}` first",
        root.path().join("mnist").display(),
        root.path().display()
    );
    assert_user_error(&output, &expected);
}

#[test]
fn unknown_models_and_datasets_list_the_valid_ones() {
    assert_user_error(
        &dcl(&["train", "--model", "resnet9000"]),
        "unknown model 'resnet9000'; valid models: mnistnet, mlp",
    );
    assert_user_error(
        &dcl(&["train", "--model", "mnistnet", "--dataset", "svhn"]),
        "unknown dataset 'svhn'; valid datasets: mnist, fashion-mnist",
    );
    assert_user_error(&dcl(&["data", "fetch", "svhn"]), "unknown dataset 'svhn'");
}

#[test]
fn impossible_settings_are_rejected_before_training() {
    assert_user_error(
        &dcl(&["train", "--model", "mnistnet", "--epochs", "0"]),
        "--epochs must be at least 1",
    );
    assert_user_error(
        &dcl(&["train", "--model", "mnistnet", "--lr=-1"]),
        "--lr must be a finite number >= 0",
    );
    assert_user_error(
        &dcl(&[
            "train",
            "--model",
            "mnistnet",
            "--checkpoint-every-steps",
            "3",
            "--batches-per-allreduce",
            "2",
        ]),
        "--checkpoint-every-steps must be a positive multiple of --batches-per-allreduce (2), not 3",
    );
}

/// Runs `dcl train` on MNIST with `extra` flags into `results`; asserts success.
/// Seed 0, one of the seeds 0-4 over which the accuracy margins below were measured.
fn train_scenario(results: &Path, extra: &[&str]) -> Value {
    let output = train(
        &dataset_dir(),
        results,
        &[&["--threads", "2", "--seed", "0"], extra].concat(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    read_json(&results.join("summary.json"))
}

#[test]
fn split_mnist_class_il_forgets_and_writes_every_results_file() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("split");
    let summary = train_scenario(
        &results,
        &[
            "--train-samples",
            "10000",
            "--batch-size",
            "16",
            "--tasksets-config",
            "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}",
        ],
    );
    assert_eq!(summary["num_tasks"], 5);
    let matrix = summary["accuracy_matrix"].as_array().unwrap();
    assert_eq!(matrix.len(), 5);
    for (i, row) in matrix.iter().enumerate() {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 5);
        for (j, cell) in row.iter().enumerate() {
            assert_eq!(cell.is_null(), j > i, "entry ({i}, {j}) = {cell}");
        }
    }
    // What naive fine-tuning on a shared head guarantees, with margins measured over seeds
    // 0-4 (native AVX-512 and capped to AVX2). Not every task's own accuracy: this protocol
    // (SGD 0.01, momentum 0.9, batch 16, optimiser reset per task) often collapses on a new
    // task, every ReLU of fc1 dead and one class predicted (50 % on a 2-class task), in
    // PyTorch as in dcl (bench/collapse.sh; the README has the frequencies).
    let at = |i: usize, j: usize| matrix[i][j].as_f64().unwrap();
    // The first task is learned: 99.5-99.9 %.
    assert!(at(0, 0) > 95.0, "{matrix:?}");
    // The first task is forgotten completely: 0.00 % after the last task, every seed.
    assert!(at(4, 0) < 5.0, "{matrix:?}");
    // Forgetting 74.4-98.7 points; final average accuracy 9.8-19.1 %.
    assert!(summary["forgetting"].as_f64().unwrap() > 60.0, "{summary}");
    let class_il = summary["final_average_accuracy"].as_f64().unwrap();
    assert!(class_il < 25.0, "{matrix:?}");
    // The task-incremental view of the same run is far better: by 38.5-47.9 points.
    let task_il = summary["task_il"]["final_average_accuracy"].as_f64().unwrap();
    assert!(task_il > class_il + 25.0, "task-IL {task_il} vs class-IL {class_il}");

    let csv = std::fs::read_to_string(results.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 15, "a row per (train task, test task)");
    let tasks = read_json(&results.join("tasks_metrics.json"));
    assert_eq!(tasks.as_array().unwrap().len(), 5);
    assert_eq!(tasks[4]["tasks"].as_array().unwrap().len(), 5);
    assert!(
        read_json(&results.join("dl_metrics.json"))[0]["images_per_second"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        read_json(&results.join("time_metrics.json"))["total_time"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let config = read_json(&results.join("config.json"));
    assert_eq!(config["scenario"]["increment"], 2);
}

#[test]
fn task_incremental_domain_and_permuted_scenarios_run() {
    let root = tempfile::tempdir().unwrap();
    let task_il = train_scenario(
        &root.path().join("task"),
        &[
            "--train-samples",
            "2000",
            "--batch-size",
            "16",
            "--tasksets-config",
            "{'scenario': 'task', 'initial_increment': 2, 'increment': 2}",
        ],
    );
    // Measured over seeds 0-4 (native and AVX2): 91.4-96.1 %.
    assert!(
        task_il["final_average_accuracy"].as_f64().unwrap() > 80.0,
        "{}",
        task_il["accuracy_matrix"]
    );
    assert!(
        task_il.get("task_il").is_none(),
        "a task-IL run is its own task-IL figure"
    );

    let domain = train_scenario(
        &root.path().join("domain"),
        &[
            "--train-samples",
            "600",
            "--tasksets-config",
            "{'scenario': 'domain', 'num_tasks': 3}",
        ],
    );
    let samples: Vec<u64> = domain["epochs"][2]["eval"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["samples"].as_u64().unwrap())
        .collect();
    assert_eq!(samples, vec![3334, 3333, 3333]);
    assert!(domain["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["train_images"] == 200));

    let permuted = train_scenario(
        &root.path().join("permuted"),
        &[
            "--train-samples",
            "600",
            "--tasksets-config",
            "{'scenario': 'permuted', 'num_tasks': 2, 'concatenate_tasksets': True}",
        ],
    );
    let train_images: Vec<u64> = permuted["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["train_images"].as_u64().unwrap())
        .collect();
    assert_eq!(train_images, vec![600, 1200], "task 2 trains on both tasks");
    assert_eq!(permuted["epochs"][1]["eval"][1]["samples"], 10000);
}

#[test]
fn a_yaml_section_overrides_the_command_line_and_print_config_shows_the_result() {
    let root = tempfile::tempdir().unwrap();
    let yaml = root.path().join("config.yaml");
    std::fs::write(
        &yaml,
        "split:\n  batch_size: 16\n  tasksets_config: {increment: 5}\n  agent_config: {reset_state_dict: true}\n",
    )
    .unwrap();
    let output = dcl(&[
        "train",
        "--model",
        "mnistnet",
        "--batch-size",
        "128",
        "--yaml-config",
        yaml.to_str().unwrap(),
        "--config",
        "split",
        "--tasksets-config",
        "{'scenario': 'class', 'increment': 2}",
        "--print-config",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let config: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(config["batch_size"], 16);
    assert_eq!(config["scenario"]["increment"], 5);
    assert_eq!(config["scenario"]["initial_increment"], 5);
    assert_eq!(config["agent"]["reset_state_dict"], true);

    assert_user_error(
        &dcl(&[
            "train",
            "--model",
            "mnistnet",
            "--yaml-config",
            yaml.to_str().unwrap(),
            "--config",
            "other",
        ]),
        "no section 'other' (sections: split)",
    );
}

#[test]
fn impossible_scenarios_are_rejected_before_training() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("never");
    let data = dataset_dir();
    let run = |tasksets: &str| train(&data, &results, &["--tasksets-config", tasksets]);
    assert_user_error(
        &run("{'scenario': 'class', 'initial_increment': 4, 'increment': 4}"),
        "--tasksets-config: 'initial_increment' 4 and 'increment' 4 do not cover the 10 classes",
    );
    assert_user_error(
        &run("{'scenario': 'domain', 'num_tasks': 0}"),
        "--tasksets-config: 'num_tasks' must be at least 1",
    );
    assert_user_error(
        &run("{'scenario': 'domain', 'num_tasks': 20000}"),
        "'num_tasks' 20000 exceeds the 10000 samples to split",
    );
    assert_user_error(
        &run("{'scenario': 'class', 'increment': 2, 'colour': 1}"),
        "--tasksets-config: unknown field `colour`",
    );
    assert!(!results.exists(), "a results directory was created for a rejected run");
    // Malformed flag syntax is a usage error: clap's exit code 2, with the position.
    let malformed = run("{'scenario': 'class' 'increment': 2}");
    assert_eq!(malformed.status.code(), Some(2));
    assert!(
        stderr(&malformed).contains("expected ',' or '}' at character 22"),
        "{}",
        stderr(&malformed)
    );
}

#[test]
fn rehearsal_keeps_split_mnist_from_forgetting_and_reports_its_buffer() {
    let root = tempfile::tempdir().unwrap();
    let split = "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}";
    let summary = train_scenario(
        &root.path().join("er"),
        &[
            "--train-samples",
            "10000",
            "--batch-size",
            "16",
            "--agent",
            "er",
            "--agent-config",
            "{'buffer_size': 200, 'num_representatives': 16}",
            "--tasksets-config",
            split,
        ],
    );
    let accuracy = summary["final_average_accuracy"].as_f64().unwrap();
    // The same protocol without rehearsal ends below 25 % (split_mnist_class_il_forgets…).
    // Measured over seeds 0-4 (native and AVX2): 85.9-91.0 %, against 9.8-19.1 % without
    // rehearsal (split_mnist_class_il_forgets…).
    assert!(accuracy > 75.0, "er final average accuracy {accuracy} %");
    let rehearsal = &summary["rehearsal"];
    assert_eq!(rehearsal["capacity"], 200);
    assert_eq!(rehearsal["policy"], "class_balanced");
    assert_eq!(rehearsal["replay"], "past_tasks");
    assert_eq!(
        rehearsal["final_class_counts"],
        serde_json::json!([20, 20, 20, 20, 20, 20, 20, 20, 20, 20])
    );
    assert!(rehearsal["timing"]["steps"].as_u64().unwrap() > 0);
    assert!(
        summary["epochs"][1]["rehearsal_timing"]["sample_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // About 2,000 images of classes 2 and 3; about 4,000 if the 16 representatives per step counted.
    let images = summary["epochs"][1]["train_images"].as_u64().unwrap();
    assert!(
        (1900..2100).contains(&images),
        "task 2 trained on {images} images of its own"
    );
}

#[test]
fn upstream_agent_names_select_their_pipeline_with_a_notice() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("cat");
    let output = train(
        &dataset_dir(),
        &results,
        &[
            "--train-samples",
            "1000",
            "--agent",
            "nil_cpp_cat",
            "--agent-config",
            "{'rehearsal_size': 5, 'policy': 'upstream', 'replay': 'all'}",
            "--tasksets-config",
            "{'scenario': 'class', 'initial_increment': 5, 'increment': 5}",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("note: upstream's nil_cpp_cat runs as er with the flyweight pipeline"));
    let summary = read_json(&results.join("summary.json"));
    assert_eq!(summary["rehearsal"]["mode"], "flyweight");
    assert_eq!(summary["rehearsal"]["policy"], "upstream");
    assert_eq!(summary["rehearsal"]["capacity"], 50);
    let counts = summary["rehearsal"]["final_class_counts"].as_array().unwrap();
    assert!(
        counts.iter().all(|c| c.as_u64().unwrap() <= 5),
        "a bucket overflowed: {counts:?}"
    );
    let reservoir = train_scenario(
        &root.path().join("reservoir"),
        &[
            "--train-samples",
            "1000",
            "--agent",
            "er",
            "--agent-config",
            "{'buffer_size': 100, 'policy': 'reservoir'}",
            "--tasksets-config",
            "{'scenario': 'class', 'initial_increment': 5, 'increment': 5}",
        ],
    );
    assert_eq!(reservoir["rehearsal"]["policy"], "reservoir");
    let stored: u64 = reservoir["rehearsal"]["final_class_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(stored, 100);
}

/// Starts a Split-MNIST run long enough to be stopped during its third task (20 epochs of
/// about 2,000 images per task), waits until two tasks are complete, sends `signal` (a
/// `kill` argument) and returns the exit status, the summary and standard error.
fn stop_after_two_tasks(signal: &str) -> (std::process::ExitStatus, Value, String) {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("run");
    let mut child = dcl_command()
        .args(["train", "--model", "mlp", "--epochs", "20", "--quiet", "--threads", "1"])
        .args(["--train-samples", "10000", "--batch-size", "32", "--dataset-dir"])
        .arg(dataset_dir())
        .arg("--results-dir")
        .arg(&results)
        .args([
            "--tasksets-config",
            "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dcl runs");
    let started = std::time::Instant::now();
    let completed = |path: &Path| {
        std::fs::read_to_string(path.join("summary.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|s| s["completed_tasks"].as_u64())
            .unwrap_or(0)
    };
    while completed(&results) < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "two tasks did not complete"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    // The watchdog of a killed run settles its summary within a poll or two.
    let settled = std::time::Instant::now();
    let summary = loop {
        let summary = read_json(&results.join("summary.json"));
        if summary["status"] != "running" || settled.elapsed() > std::time::Duration::from_secs(10) {
            break summary;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (status, summary, stderr)
}

/// Asserts that an interrupted run kept the figures of its completed tasks (at least two,
/// not all five) and says it was interrupted.
fn assert_interrupted_with_figures(summary: &Value) {
    assert_eq!(summary["status"], "interrupted", "{summary}");
    let completed = summary["completed_tasks"].as_u64().unwrap();
    assert!((2..5).contains(&completed), "{completed} tasks completed");
    let matrix = summary["accuracy_matrix"].as_array().unwrap();
    assert_eq!(matrix.len() as u64, completed);
    assert!(matrix[0][0].as_f64().unwrap() > 90.0, "{matrix:?}");
    assert!(summary["final_average_accuracy"].as_f64().is_some());
    assert_eq!(summary["num_tasks"], 5);
}

#[test]
fn sigint_and_sigterm_after_two_tasks_leave_their_figures_and_status_interrupted() {
    use std::os::unix::process::ExitStatusExt;
    for (signal, code, name) in [("-INT", 130, "SIGINT"), ("-TERM", 143, "SIGTERM")] {
        let (status, summary, stderr) = stop_after_two_tasks(signal);
        assert_eq!(status.code(), Some(code), "{name}: {status:?} {stderr}");
        assert_eq!(status.signal(), None);
        assert_interrupted_with_figures(&summary);
        assert_eq!(summary["error"], format!("interrupted by {name}"));
        let line = stderr.lines().last().unwrap_or_default();
        assert!(
            line.starts_with(&format!("dcl: interrupted by {name} after ")) && line.contains("partial results in"),
            "{stderr}"
        );
    }
}

#[test]
fn kill_9_after_two_tasks_leaves_their_figures_and_the_watchdog_marks_the_run_interrupted() {
    let (status, summary, _) = stop_after_two_tasks("-KILL");
    assert!(!status.success());
    assert_interrupted_with_figures(&summary);
    assert!(summary["error"].as_str().unwrap().contains("killed"), "{summary}");
}

#[test]
fn overwrite_replaces_the_earlier_run_entirely_and_a_refused_run_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("run");
    let first = train_small(&results, "64", "1");
    assert!(first.status.success(), "{}", stderr(&first));
    let first_run = read_json(&results.join("summary.json"))["run"].clone();
    // A second run refused before training (no slot for a 0-sample buffer) touches nothing.
    let refused = train(
        &dataset_dir(),
        &results,
        &["--overwrite", "--agent", "er", "--agent-config", "{'buffer_size': 0}"],
    );
    assert_user_error(&refused, "the rehearsal buffer ('buffer_size': 0) leaves no slot to it");
    assert_eq!(read_json(&results.join("summary.json"))["run"], first_run);
    // An accepted one replaces every file of the first before writing its own.
    let second = train(
        &dataset_dir(),
        &results,
        &["--overwrite", "--train-samples", "64", "--seed", "2", "--threads", "1"],
    );
    assert!(second.status.success(), "{}", stderr(&second));
    let summary = read_json(&results.join("summary.json"));
    assert_eq!(summary["run"]["seed"], 2);
    assert_ne!(summary["run"]["pid"], first_run["pid"]);
    assert_eq!(read_json(&results.join("config.json"))["seed"], 2);
}

#[test]
fn default_results_directories_of_runs_started_together_never_collide() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset_dir();
    let start = || {
        dcl_command()
            .current_dir(root.path())
            .args(["train", "--model", "mlp", "--epochs", "1", "--quiet", "--threads", "1"])
            .args(["--train-samples", "64", "--dataset-dir"])
            .arg(&data)
            .output()
            .expect("dcl runs")
    };
    let runs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3).map(|_| scope.spawn(start)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert!(run.status.success(), "{}", stderr(run));
    }
    let dirs: Vec<_> = std::fs::read_dir(root.path().join("results")).unwrap().collect();
    assert_eq!(dirs.len(), 3, "three runs, three directories");
    for dir in dirs {
        let summary = read_json(&dir.unwrap().path().join("summary.json"));
        assert_eq!(summary["status"], "complete");
    }
}

#[test]
fn a_slurm_allocation_without_a_launcher_runs_one_worker_with_a_notice() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("slurm");
    let output = dcl_command()
        .env("SLURM_NTASKS", "4")
        .args([
            "train",
            "--model",
            "mlp",
            "--epochs",
            "1",
            "--quiet",
            "--train-samples",
            "64",
        ])
        .arg("--dataset-dir")
        .arg(dataset_dir())
        .arg("--results-dir")
        .arg(&results)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("note: this Slurm allocation has 4 tasks but dcl was started without a launcher"),
        "{}",
        stderr(&output)
    );
    assert_eq!(read_json(&results.join("summary.json"))["world_size"], 1);
    let mismatch = dcl_command()
        .env("PMI_SIZE", "4")
        .args(["train", "--model", "mlp"])
        .output()
        .unwrap();
    assert_user_error(&mismatch, "the launcher started 4 ranks but they joined a world of 1");
}

/// The malformed inputs of the README's error table, each with the one line it gets (and
/// no panic, no stack dump, nothing left behind). Exit code 2: clap's, for malformed flags.
#[test]
fn malformed_inputs_get_the_one_line_errors_of_the_readme_table() {
    let root = tempfile::tempdir().unwrap();
    let path = |name: &str| root.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("a-file"), "x").unwrap();
    std::fs::create_dir(path("notes")).unwrap();
    std::fs::write(root.path().join("notes/thesis.tex"), "x").unwrap();
    let gzipped = mnist_with("train-labels-idx1-ubyte", |bytes| {
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&bytes).unwrap();
        gzip.finish().unwrap()
    });
    let data = dataset_dir().to_str().unwrap().to_owned();
    let gz = gzipped.path().to_str().unwrap().to_owned();
    let yaml = path("absent.yaml");
    let (a_file, notes) = (path("a-file"), path("notes"));
    let rows: Vec<(Vec<&str>, String, i32)> = vec![
        (
            vec!["--dataset-dir", &a_file],
            format!("{a_file}: --dataset-dir is a file, not a directory"),
            1,
        ),
        (
            vec!["--dataset-dir", &gz],
            "train-labels-idx1-ubyte: gzip-compressed".into(),
            1,
        ),
        (
            vec!["--dataset-dir", &data, "--results-dir", &a_file],
            "exists and is not a directory; choose another --results-dir".into(),
            1,
        ),
        (
            vec!["--dataset-dir", &data, "--results-dir", &notes, "--overwrite"],
            "holds files that are not a dcl run".into(),
            1,
        ),
        (
            vec!["--lr", "-1"],
            "--lr must be a finite number >= 0, not -1".into(),
            1,
        ),
        (
            vec!["--normalize", "0.5,0"],
            "--normalize: the mean must be finite and the std a positive number, not '0.5,0'".into(),
            1,
        ),
        (
            vec!["--threads", "0"],
            "invalid value '0' for '--threads <THREADS>'".into(),
            2,
        ),
        (
            vec!["--comm-timeout", "0"],
            "expected a number of seconds > 0, not '0'".into(),
            2,
        ),
        (
            vec!["--agent", "er", "--agent-config", "{'buffer_size': -5}"],
            "'buffer_size': invalid value: integer `-5`, expected a whole number >= 0".into(),
            1,
        ),
        (
            vec![
                "--agent",
                "er",
                "--agent-config",
                "{'buffer_size': 5, 'policy': 'upstream'}",
                "--dataset-dir",
                &data,
            ],
            "the upstream policy needs a slot per class: 5 slots for 10 classes".into(),
            1,
        ),
        (
            vec!["--agent", "er", "--agent-config", "{'num_representatives': 'many'}"],
            "'num_representatives': invalid type: string \"many\", expected a whole number >= 0".into(),
            1,
        ),
        (
            vec!["--optimizer-regime", "[{'epoch': 0, 'betas': [0.9, 1.5]}]"],
            "'betas' at epoch 0 must be two numbers in [0, 1), not (0.9, 1.5)".into(),
            1,
        ),
        (
            vec!["--yaml-config", &yaml],
            format!("cannot read --yaml-config {yaml}: No such file or directory (os error 2)"),
            1,
        ),
    ];
    for (flags, needle, code) in rows {
        let results = root.path().join("never");
        let mut args = vec!["train", "--model", "mnistnet"];
        if !flags.contains(&"--results-dir") {
            args.extend(["--results-dir", results.to_str().unwrap()]);
        }
        args.extend_from_slice(&flags);
        let output = dcl(&args);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{flags:?}: {text}");
        assert!(
            !text.contains("panicked") && !text.contains("Exception raised"),
            "{flags:?}: {text}"
        );
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{flags:?}: {text}");
        assert!(errors[0].contains(&needle), "{flags:?}: expected '{needle}' in: {text}");
        assert!(
            errors[0].matches("os error").count() <= 1,
            "an OS error printed twice: {text}"
        );
        assert!(!results.exists(), "{flags:?} left a results directory");
    }
}

#[test]
fn a_batch_larger_than_the_training_set_gets_a_warning_and_runs() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("big");
    let output = train(
        &dataset_dir(),
        &results,
        &["--train-samples", "100", "--batch-size", "1000"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("note: --batch-size 1000 exceeds the 100 training samples of the largest task"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn running_out_of_memory_is_one_line_with_a_hint_and_the_run_says_failed() {
    use std::os::unix::process::CommandExt;
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("oom");
    let mut command = dcl_command();
    command
        .args([
            "train",
            "--model",
            "mnistnet",
            "--epochs",
            "1",
            "--quiet",
            "--threads",
            "2",
        ])
        .args(["--train-samples", "20000", "--batch-size", "20000", "--dataset-dir"])
        .arg(dataset_dir())
        .arg("--results-dir")
        .arg(&results);
    // 6 GB of address space: libtorch loads (with its CUDA libraries mapped, about 3 GB of
    // addresses: measured VmSize 3.0 GB at the first step), and a batch of 20,000 MNIST images
    // (about 6 GB of activations and gradients) does not fit.
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 6_000_000_000,
                rlim_max: 6_000_000_000,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let output = command.output().unwrap();
    assert_user_error(
        &output,
        "out of memory in the training step (DefaultCPUAllocator: can't allocate memory",
    );
    assert!(stderr(&output).contains("try a smaller --batch-size"));
    let summary = read_json(&results.join("summary.json"));
    assert_eq!(summary["status"], "failed");
    assert!(summary["error"].as_str().unwrap().starts_with("out of memory"));
}

#[test]
fn every_image_model_family_trains_on_fashion_mnist_padded_to_32_pixels() {
    let root = tempfile::tempdir().unwrap();
    let families = [
        ("resnet18", "{}"),
        ("efficientnetv2", "{'variant': 's'}"),
        ("convnext", "{'variant': 'tiny'}"),
    ];
    for (model, config) in families {
        let results = root.path().join(model);
        let output = dcl_command()
            .args([
                "train",
                "--model",
                model,
                "--model-config",
                config,
                "--dataset",
                "fashion-mnist",
            ])
            .args(["--input-size", "32", "--train-samples", "32", "--test-samples", "32"])
            .args([
                "--batch-size",
                "8",
                "--epochs",
                "1",
                "--quiet",
                "--threads",
                "2",
                "--dataset-dir",
            ])
            .arg(dataset_dir())
            .arg("--results-dir")
            .arg(&results)
            .args(["--tasksets-config", "{'scenario': 'task', 'increment': 5}"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{model}: {}", stderr(&output));
        let summary = read_json(&results.join("summary.json"));
        assert_eq!(summary["status"], "complete", "{model}");
        assert_eq!(summary["completed_tasks"], 2, "{model}");
        assert!(
            summary["epochs"][1]["train_loss"].as_f64().unwrap().is_finite(),
            "{model}"
        );
        let config = read_json(&results.join("config.json"));
        assert_eq!(config["input_size"], 32);
    }
    // mnistnet is made for 28x28 and says so; a model cannot take images below its minimum.
    assert_user_error(
        &train(&dataset_dir(), &root.path().join("never"), &["--input-size", "32"]),
        "model mnistnet takes 1x28x28 images, not 1x32x32",
    );
    assert_user_error(
        &dcl(&[
            "train",
            "--model",
            "mnistnet",
            "--input-size",
            "20",
            "--dataset-dir",
            dataset_dir().to_str().unwrap(),
        ]),
        // Smaller than the images: centre-cropped, as torchvision's CenterCrop.
        "model mnistnet takes 1x28x28 images, not 1x20x20",
    );
}

#[test]
fn dcl_models_lists_every_model_with_the_reference_parameter_counts() {
    let output = dcl(&["models"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for (model, count) in [
        ("resnet18", "11,689,512"),
        ("resnet50", "25,557,032"),
        ("efficientnetv2", "54,139,356"),
        ("convnext", "88,591,464"),
    ] {
        let line = text.lines().find(|l| l.starts_with(model)).unwrap_or_default();
        assert!(line.contains(count), "{model}: {text}");
    }
    assert!(text.contains("variant: tiny|small|base|large (default base)"), "{text}");
}

#[test]
fn asking_for_a_gpu_on_a_machine_without_one_is_one_clear_line() {
    if tch::Cuda::is_available() {
        eprintln!("note: a CUDA device is present; the GPU checks are scripts/gpu-check.sh's");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let output = train(&dataset_dir(), &root.path().join("gpu"), &["--device", "cuda"]);
    assert_user_error(&output, "--device cuda: no CUDA device is available");
    assert!(!root.path().join("gpu").exists());
    // auto falls back to the CPU, and says where it ran in config.json.
    let results = root.path().join("auto");
    let output = train(&dataset_dir(), &results, &["--train-samples", "64", "--device", "auto"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(read_json(&results.join("config.json"))["device"], "auto");
}

#[test]
fn runs_are_the_same_whatever_the_number_of_loader_workers() {
    let root = tempfile::tempdir().unwrap();
    let run = |workers: &str| {
        let results = root.path().join(format!("workers-{workers}"));
        let output = train(
            &dataset_dir(),
            &results,
            &[
                "--train-samples",
                "640",
                "--batch-size",
                "16",
                "--threads",
                "1",
                "--dataloader-workers",
                workers,
            ],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let summary = read_json(&results.join("summary.json"));
        (
            summary["accuracy_matrix"].clone(),
            summary["epochs"][0]["train_loss"].clone(),
        )
    };
    let alone = run("0");
    assert_eq!(alone, run("1"));
    assert_eq!(alone, run("3"));
}
