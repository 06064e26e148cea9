//! TensorBoard event files, read back with TensorBoard's own reader (the venv's `tensorboard`
//! package, installed for the tests only).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;
use common::{read_json, stderr, SplitMnist};

fn split_mnist_er(results: &Path, extra: &[&str]) -> std::process::Output {
    SplitMnist {
        agent: "er",
        agent_config: "{'buffer_size': 200}",
        ..SplitMnist::default()
    }
    .command(results)
    .args(["--log-interval", "5"])
    .args(extra)
    .output()
    .unwrap()
}

/// Every scalar series of the event files in `dir`, by tag: [[step, value], …].
fn read_events(dir: &Path) -> Value {
    let venv = std::env::var("VIRTUAL_ENV").expect("VIRTUAL_ENV is not set: run scripts/setup.sh");
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
events = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
events.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}))
"#;
    let output = Command::new(Path::new(&venv).join("bin/python"))
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn tensorboard_reads_the_scalars_of_a_run_as_it_goes() {
    let root = tempfile::tempdir().unwrap();
    let results = root.path().join("run");
    let output = split_mnist_er(&results, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let events = read_events(&results.join("tensorboard"));
    let summary = read_json(&results.join("summary.json"));
    let epochs = summary["epochs"].as_array().unwrap();
    // One point per epoch for the epoch scalars, the test accuracy of every task seen so far.
    let mean = events["test/mean_top1"].as_array().unwrap();
    assert_eq!(mean.len(), epochs.len());
    for (point, epoch) in mean.iter().zip(epochs) {
        let evals = epoch["eval"].as_array().unwrap();
        let expected = evals.iter().map(|e| e["top1"].as_f64().unwrap()).sum::<f64>() / evals.len() as f64;
        assert!(
            (point[1].as_f64().unwrap() - expected).abs() < 1e-3,
            "{point} vs {expected}"
        );
    }
    assert_eq!(
        events["test/task_5/top1"].as_array().unwrap().len(),
        2,
        "task 5: its 2 epochs"
    );
    assert_eq!(
        events["test/task_1/top1"].as_array().unwrap().len(),
        10,
        "task 1: every epoch"
    );
    assert_eq!(
        events["test/task_3/top1_task_il"].as_array().unwrap().len(),
        6,
        "tasks 3 to 5"
    );
    for tag in [
        "train/epoch_loss",
        "train/epoch_top1",
        "train/images_per_second",
        "train/lr",
        "rehearsal/sample_ms_per_step",
        "rehearsal/buffer_update_ms_per_step",
    ] {
        assert_eq!(events[tag].as_array().map(Vec::len), Some(10), "{tag}");
    }
    // The training loss every 5 steps, against steps that only grow.
    let loss = events["train/loss"].as_array().unwrap();
    assert!(loss.len() >= 10, "{} loss points", loss.len());
    let steps: Vec<u64> = loss.iter().map(|p| p[0].as_u64().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");

    let quiet = root.path().join("without");
    let output = split_mnist_er(&quiet, &["--tensorboard", "false"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!quiet.join("tensorboard").exists());
}
