//! Checkpoints and `--resume`: a run killed at any moment and resumed, again and again, ends
//! with the uninterrupted run's figures; checkpoints load in PyTorch; damaged ones and
//! unwritable directories get one-line errors.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{dcl_command, read_json, stderr, SplitMnist};

/// Split-MNIST with `er`, 5 tasks of 2 epochs (so that resuming inside a task needs the
/// optimiser's state), small enough for a few seconds a run.
fn split_mnist(results: &Path) -> Command {
    SplitMnist {
        model: "mnistnet",
        agent: "er",
        agent_config: "{'buffer_size': 200, 'num_representatives': 16}",
        seed: "3",
        ..SplitMnist::default()
    }
    .command(results)
}

fn resume(results: &Path) -> Command {
    let mut command = dcl_command();
    command.args(["train", "--quiet", "--resume"]).arg(results);
    command
}

/// Starts a Split-MNIST run into `results`, its output discarded, and waits until `file`
/// (relative to `results`) exists.
fn start_until(results: &Path, file: &str) -> Child {
    start_command_until(split_mnist(results), results, file)
}

/// Starts `command`, a run into `results`, its output discarded, and waits until `file`
/// (relative to `results`) exists.
fn start_command_until(mut command: Command, results: &Path, file: &str) -> Child {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    while !results.join(file).exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before writing {file}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// What must not change across interruptions: every figure but timings.
fn figures(summary: &Value) -> Value {
    let epochs: Vec<Value> = summary["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::json!([
                e["task"],
                e["epoch"],
                e["train_loss"],
                e["train_top1"],
                e["eval"],
                e["rehearsal_draws"]
            ])
        })
        .collect();
    serde_json::json!({
        "matrix": summary["accuracy_matrix"],
        "epochs": epochs,
        "buffer": summary["rehearsal"]["world_class_counts"],
        "draws": summary["rehearsal"]["draws"],
    })
}

/// The name of the latest checkpoint of the run in `results`, if any.
fn latest_checkpoint(results: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(results.join("checkpoints"))
        .ok()?
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
        .filter(|name| name.starts_with("task-"))
        .collect();
    names.sort();
    names.pop()
}

/// When a resumed run is stopped.
enum Moment {
    /// This long after its start (loading the data, building the model, the first steps).
    AfterStart(Duration),
    /// This long after it has written a checkpoint newer than the one given (the next
    /// epoch's training, evaluation or checkpoint).
    AfterCheckpoint(Option<String>, Duration),
}

/// Starts `command` and stops it with `signal` at `moment` (unless it ends first); returns
/// whether it ended by itself, successfully.
fn run_until(mut command: Command, results: &Path, moment: Moment, signal: &str) -> bool {
    let mut child: Child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let mut since: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            assert!(status.success(), "a resumed run failed: {}", stderr(&output));
            return true;
        }
        let due = match &moment {
            Moment::AfterStart(delay) => started.elapsed() >= *delay,
            Moment::AfterCheckpoint(before, delay) => {
                if since.is_none() && latest_checkpoint(results) > *before {
                    since = Some(Instant::now());
                }
                since.is_some_and(|t| t.elapsed() >= *delay)
            }
        };
        if due {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "a resumed run makes no progress"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
    assert!(killed.unwrap().success());
    let output = child.wait_with_output().unwrap();
    // A run that finished just as the signal came is fine too.
    output.status.success()
}

#[test]
fn a_run_killed_again_and_again_and_resumed_ends_as_the_uninterrupted_one() {
    let root = tempfile::tempdir().unwrap();
    let whole = root.path().join("whole");
    let output = split_mnist(&whole).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = figures(&read_json(&whole.join("summary.json")));

    // The first start is killed soon after its results directory exists. It also checkpoints
    // every 3 steps (of 10 a pass), so that kill -9 too lands after checkpoints within epochs.
    let broken = root.path().join("broken");
    let mut first = split_mnist(&broken);
    first.args(["--checkpoint-every-steps", "3"]);
    let mut child = start_command_until(first, &broken, "config.json");
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    // Then 12 resumes, each stopped at a random moment (seeded), by kill -9 and SIGTERM in
    // turn: every other one early (while it loads, builds or starts training), the others a
    // random few milliseconds after their next checkpoint (in training, evaluation or the
    // writing of a checkpoint); then one left to finish.
    let mut interruptions = 1;
    let mut random = 0x2545_F491_4F6C_DD1Du64;
    for attempt in 0..12 {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let jitter = Duration::from_millis(random % 400);
        let moment = if attempt % 2 == 0 {
            Moment::AfterStart(jitter + Duration::from_millis(50))
        } else {
            Moment::AfterCheckpoint(latest_checkpoint(&broken), jitter / 8)
        };
        let signal = if attempt % 4 < 2 { "KILL" } else { "TERM" };
        if run_until(resume(&broken), &broken, moment, signal) {
            break;
        }
        interruptions += 1;
    }
    assert!(interruptions >= 10, "only {interruptions} interruptions");
    let output = resume(&broken).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = read_json(&broken.join("summary.json"));
    assert_eq!(summary["status"], "complete");
    let got = figures(&summary);
    for (a, b) in got["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(expected["epochs"].as_array().unwrap())
    {
        assert_eq!(
            a, b,
            "the first epoch where the resumed run differs from the uninterrupted one"
        );
    }
    assert_eq!(got, expected, "a resumed run differs from the uninterrupted one");
    // The latest two checkpoints stay, nothing half-written.
    let mut kept: Vec<String> = std::fs::read_dir(broken.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, ["task-004-epoch-000", "task-004-epoch-001"]);
}

#[test]
fn a_run_stopped_by_a_signal_checkpoints_within_the_epoch_and_resumes_from_that_step() {
    let root = tempfile::tempdir().unwrap();
    // Batches of 16: 38 steps a pass, so a signal lands within an epoch.
    let small_batches = |results: &Path| {
        let mut command = split_mnist(results);
        command.args(["--batch-size", "16"]);
        command
    };
    let whole = root.path().join("whole");
    let output = small_batches(&whole).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let run = root.path().join("run");
    let child = start_command_until(small_batches(&run), &run, "checkpoints/task-000-epoch-000");
    // SIGTERM: the run trains a few more steps, to one whose rehearsal buffer the loader has
    // not moved past yet, writes its checkpoint there and ends.
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143), "{}", stderr(&output));
    let latest = latest_checkpoint(&run).unwrap();
    assert!(latest.contains("-step-"), "no checkpoint within the epoch: {latest}");
    let checkpoints = run.join("checkpoints");
    assert!(checkpoints.join(&latest).join("progress-rank-0.json").exists());
    // Its record holds the wall time up to the stop, beyond the first epoch's end.
    let wall = |checkpoint: &str| {
        read_json(&checkpoints.join(checkpoint).join("state.json"))["record"]["wall_seconds"]
            .as_f64()
            .unwrap()
    };
    assert!(wall(&latest) > wall("task-000-epoch-000"), "{latest}");
    assert_eq!(read_json(&run.join("summary.json"))["status"], "interrupted");
    let output = resume(&run).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("after its step"), "{}", stderr(&output));
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["status"], "complete");
    assert_eq!(figures(&summary), figures(&read_json(&whole.join("summary.json"))));
}

#[test]
fn checkpoints_load_in_pytorch_and_resume_refuses_what_it_cannot_continue() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    let output = split_mnist(&run).arg("--save-all-checkpoints").output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let checkpoints = run.join("checkpoints");
    assert_eq!(std::fs::read_dir(&checkpoints).unwrap().count(), 10, "one per epoch");

    // The weights are a state dict of upstream's mnistnet under its names.
    let venv = std::env::var("VIRTUAL_ENV").expect("VIRTUAL_ENV is not set: run scripts/setup.sh");
    let script = r#"
import sys, torch
from safetensors.torch import load_file
sys.path.insert(0, sys.argv[2])
from pytorch_step import MnistNet
model = MnistNet(10)
state = load_file(sys.argv[1])
model.load_state_dict(state)
print(sorted(state))
"#;
    let weights = checkpoints.join("task-004-epoch-001/model.safetensors");
    let python = Command::new(Path::new(&venv).join("bin/python"))
        .args(["-c", script])
        .arg(&weights)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench"))
        .output()
        .unwrap();
    assert!(python.status.success(), "{}", String::from_utf8_lossy(&python.stderr));

    // A new run from those weights (upstream's --load-checkpoint).
    let fresh = root.path().join("fresh");
    let output = split_mnist(&fresh)
        .arg("--load-checkpoint")
        .arg(checkpoints.join("task-004-epoch-001"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("task-004-epoch-001/model.safetensors"),
        "{}",
        stderr(&output)
    );

    // Options beside --resume, another world size, a damaged checkpoint: one line each.
    let refused = |command: &mut Command, needle: &str| {
        let output = command.output().unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{text}");
        assert!(errors[0].contains(needle), "expected '{needle}' in: {text}");
    };
    refused(
        resume(&run).args(["--epochs", "3"]),
        "with the settings of its config.json; drop --epochs",
    );
    refused(&mut resume(&root.path().join("absent")), "no run to resume there");
    // A run that is still going is not taken over.
    let live = root.path().join("live");
    let mut child = start_until(&live, "summary.json");
    refused(
        &mut resume(&live),
        &format!("the run is still going (process {})", child.id()),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let latest = checkpoints.join("task-004-epoch-001");
    let state = latest.join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, text.replace("\"world_size\": 1", "\"world_size\": 2")).unwrap();
    refused(
        &mut resume(&run),
        "written by 2 worker(s); resume it with as many (mpirun -np 2)",
    );
    std::fs::write(&state, &text).unwrap();
    std::fs::write(latest.join("buffer-rank-0.bin"), b"DCLBUF1\n\x05").unwrap();
    refused(
        &mut resume(&run),
        "rehearsal buffer state: bookkeeping: cannot read the length",
    );
}

#[test]
fn a_checkpoint_that_cannot_be_written_fails_the_run_and_leaves_the_previous_one_resumable() {
    let root = tempfile::tempdir().unwrap();
    let whole = root.path().join("whole");
    let output = split_mnist(&whole).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let run = root.path().join("run");
    let mut child = start_until(&run, "checkpoints/task-000-epoch-001");
    child.kill().unwrap();
    child.wait().unwrap();
    // Resumed, then limited to files smaller than a buffer file (the disk is full, as far as
    // its checkpoints go) once it runs.
    let mut resumed = resume(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while read_json(&run.join("summary.json"))["run"]["pid"] != resumed.id() {
        assert!(
            resumed.try_wait().unwrap().is_none(),
            "the resumed run ended before it ran"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let limited = Command::new("prlimit")
        .args(["--pid", &resumed.id().to_string(), "--fsize=300000"])
        .status()
        .unwrap();
    assert!(limited.success());
    let output = resumed.wait_with_output().unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].contains("File too large"), "{text}");
    assert_eq!(read_json(&run.join("summary.json"))["status"], "failed");
    // The last complete checkpoint is still there and the run resumes from it to the end.
    let output = resume(&run).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["status"], "complete");
    assert_eq!(figures(&summary), figures(&read_json(&whole.join("summary.json"))));
}
