//! End-to-end tests of the `dcl` binary on the real MNIST files fetched by
//! `scripts/setup.sh` (or wherever `DCL_DATASET_DIR` points).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{dataset_dir, read_json, stderr};

/// Runs the binary. The tests run side by side on few cores: OpenMP threads that spin
/// while waiting would starve each other (measured: 8 s for this file becomes 115 s).
fn dcl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dcl"))
        .args(args)
        .env_remove("DCL_DATASET_DIR")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .expect("dcl runs")
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
    train(&dataset_dir(), results, &flags)
}

#[test]
fn one_epoch_on_5000_real_images_exceeds_90_percent_and_writes_the_results_contract() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("run");
    let output = train_small(&results, "5000", "9");
    assert!(output.status.success(), "{}", stderr(&output));

    let summary = read_json(&results.join("summary.json"));
    let accuracy = summary["final_average_accuracy"].as_f64().unwrap();
    assert!(accuracy > 90.0, "test top-1 {accuracy} %");
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
}

/// Runs `dcl train` on MNIST with `extra` flags into `results`; asserts success.
fn train_scenario(results: &Path, extra: &[&str]) -> Value {
    let output = train(&dataset_dir(), results, &[&["--threads", "2"], extra].concat());
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
        assert!(
            row[i].as_f64().unwrap() > 75.0,
            "task {i} not learned (2 classes: chance is 50 %): {row:?}"
        );
    }
    // Naive fine-tuning on a shared head forgets the first task completely.
    assert!(matrix[4][0].as_f64().unwrap() < 5.0, "{matrix:?}");
    assert!(summary["forgetting"].as_f64().unwrap() > 80.0);
    assert!(summary["final_average_accuracy"].as_f64().unwrap() < 25.0);
    // The task-incremental view of the same run is far better.
    let task_il = summary["task_il"]["final_average_accuracy"].as_f64().unwrap();
    assert!(task_il > 55.0, "task-IL {task_il}");

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
    assert!(accuracy > 60.0, "er final average accuracy {accuracy} %");
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
    assert_user_error(
        &dcl(&[
            "train",
            "--model",
            "mnistnet",
            "--agent",
            "er",
            "--tasksets-config",
            "{'scenario': 'task', 'increment': 5}",
        ]),
        "does not support task-incremental scenarios",
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
