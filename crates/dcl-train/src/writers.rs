//! The files a run leaves in its results directory, all derived from its [`RunRecord`]:
//! `summary.json` (the run's state and identity, and dcl's headline figures), upstream's
//! `dl_metrics.json`, `tasks_metrics.json` and `time_metrics.json`, and `metrics.csv` (one
//! row per training task, epoch and test task). Tasks and epochs are numbered from 0. They
//! are written after every evaluation, so that a run stopped at any point keeps what it
//! measured.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::results::{RunIdentity, RunStatus};
use crate::{EpochRecord, RunDir, RunRecord, Summary, TrainError};

/// The content of `summary.json`: the state of the run, which run it is, and its figures so
/// far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryFile {
    pub status: RunStatus,
    /// What stopped a failed (or killed) run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub run: RunIdentity,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Writes every results file of `record` into `dir`, `summary.json` (with `status`, `error`
/// and `run`) last.
pub fn write_all(
    dir: &RunDir,
    record: &RunRecord,
    status: RunStatus,
    error: Option<&str>,
    run: &RunIdentity,
) -> Result<(), TrainError> {
    dir.write_json("dl_metrics.json", &dl_metrics(record))?;
    dir.write_json("tasks_metrics.json", &tasks_metrics(record))?;
    dir.write_json("time_metrics.json", &time_metrics(record))?;
    dir.write("metrics.csv", metrics_csv(record).as_bytes())?;
    let summary = SummaryFile {
        status,
        error: error.map(str::to_owned),
        run: run.clone(),
        summary: record.summary(),
    };
    dir.write_json("summary.json", &summary)
}

/// A JSON list with one entry per epoch of the run.
fn per_epoch(record: &RunRecord, entry: impl Fn(&EpochRecord) -> Value) -> Value {
    Value::Array(record.epochs.iter().map(entry).collect())
}

/// Upstream's per-epoch training metrics.
pub fn dl_metrics(record: &RunRecord) -> Value {
    per_epoch(record, |e| {
        json!({
            "task": e.task, "epoch": e.epoch, "loss": e.train_loss, "top1": e.train_top1,
            "images": e.train_images, "time": e.train_seconds, "images_per_second": e.images_per_second,
        })
    })
}

fn mean_of(epoch: &EpochRecord, metric: impl Fn(&crate::EvalRecord) -> f64) -> f64 {
    epoch.eval.iter().map(metric).sum::<f64>() / epoch.eval.len() as f64
}

/// Upstream's per-epoch test metrics on every seen task, with their task average.
pub fn tasks_metrics(record: &RunRecord) -> Value {
    per_epoch(record, |e| {
        json!({
            "task": e.task, "epoch": e.epoch, "tasks": e.eval,
            "task_average": {
                "loss": mean_of(e, |t| t.loss), "top1": mean_of(e, |t| t.top1), "top5": mean_of(e, |t| t.top5),
            },
        })
    })
}

/// Upstream's totals: times and mean throughput.
pub fn time_metrics(record: &RunRecord) -> Value {
    json!({
        "total_time": record.wall_seconds,
        "train_time": record.train_seconds,
        "train_images": record.train_images(),
        "images_per_second": record.train_images() as f64 / record.train_seconds,
        "world_size": record.world_size,
    })
}

/// One row per (training task, epoch, test task).
pub fn metrics_csv(record: &RunRecord) -> String {
    let mut csv = String::from(
        "train_task,epoch,test_task,train_loss,train_top1,images_per_second,test_loss,test_top1,test_top5,test_top1_task_il\n",
    );
    for e in &record.epochs {
        for t in &e.eval {
            let task_il = t.top1_task_il.map_or_else(String::new, |v| v.to_string());
            writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{}",
                e.task,
                e.epoch,
                t.task,
                e.train_loss,
                e.train_top1,
                e.images_per_second,
                t.loss,
                t.top1,
                t.top5,
                task_il
            )
            .expect("writing to a String cannot fail");
        }
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EvalRecord;

    fn record() -> RunRecord {
        let eval = |task, top1| EvalRecord {
            task,
            samples: 10,
            loss: 0.5,
            top1,
            top5: 100.0,
            top1_task_il: Some(99.0),
        };
        let epoch = |task, evals| EpochRecord {
            task,
            epoch: 0,
            train_loss: 0.25,
            train_top1: 90.0,
            train_images: 100,
            train_seconds: 2.0,
            images_per_second: 50.0,
            lr: None,
            eval: evals,
            rehearsal_timing: None,
            rehearsal_draws: None,
        };
        RunRecord {
            num_tasks: 2,
            epochs_per_task: 1,
            world_size: 1,
            epochs: vec![
                epoch(0, vec![eval(0, 80.0)]),
                epoch(1, vec![eval(0, 40.0), eval(1, 90.0)]),
            ],
            train_seconds: 4.0,
            wall_seconds: 5.0,
            rehearsal: None,
        }
    }

    #[test]
    fn csv_has_one_row_per_train_task_epoch_and_test_task() {
        let csv = metrics_csv(&record());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3], "1,0,1,0.25,90,50,0.5,90,100,99");
    }

    #[test]
    fn upstream_files_hold_averages_and_totals() {
        let tasks = tasks_metrics(&record());
        assert_eq!(tasks[1]["task_average"]["top1"], 65.0);
        assert_eq!(tasks[1]["tasks"][0]["top1"], 40.0);
        let time = time_metrics(&record());
        assert_eq!(time["images_per_second"], 50.0);
        assert_eq!(time["total_time"], 5.0);
        assert_eq!(dl_metrics(&record())[0]["loss"], 0.25);
    }

    #[test]
    fn every_file_is_written_and_the_summary_says_the_state_of_the_run() {
        let root = tempfile::tempdir().unwrap();
        let dir = RunDir::create(&root.path().join("run"), false).unwrap();
        let run = RunIdentity::new("{}", 3);
        write_all(&dir, &record(), RunStatus::Failed, Some("disk full"), &run).unwrap();
        for name in crate::results::RESULT_FILES.iter().filter(|n| **n != "config.json") {
            assert!(dir.path().join(name).is_file(), "{name} missing");
        }
        let text = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
        let summary: SummaryFile = serde_json::from_str(&text).unwrap();
        assert_eq!(summary.status, RunStatus::Failed);
        assert_eq!(summary.error.as_deref(), Some("disk full"));
        assert_eq!(summary.run, run);
        assert_eq!(summary.summary, record().summary());
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["status"], "failed");
        assert_eq!(json["run"]["seed"], 3);
        assert_eq!(json["final_average_accuracy"], 65.0);
    }
}
