//! The in-memory record of a run, from which every report and results file is derived.

use serde::{Deserialize, Serialize};

/// The evaluation of the model on one task's test samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// The task whose test samples were used.
    pub task: usize,
    pub samples: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Top-1 accuracy, in percent.
    pub top1: f64,
    /// Top-5 accuracy, in percent (top-k with k = the number of classes when fewer).
    pub top5: f64,
}

/// One epoch of training on a task, and the evaluation that followed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub task: usize,
    pub epoch: usize,
    pub train_loss: f64,
    /// Top-1 accuracy on the training batches, in percent (with dropout active).
    pub train_top1: f64,
    pub train_images: usize,
    pub train_seconds: f64,
    pub images_per_second: f64,
    /// One entry per task seen so far.
    pub eval: Vec<EvalRecord>,
}

impl EpochRecord {
    /// The mean top-1 accuracy over the evaluated tasks.
    pub fn average_top1(&self) -> f64 {
        mean(self.eval.iter().map(|e| e.top1))
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// Everything measured during a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunRecord {
    pub num_tasks: usize,
    pub world_size: usize,
    pub epochs: Vec<EpochRecord>,
    /// Seconds spent in training steps (evaluation excluded).
    pub train_seconds: f64,
    /// Seconds from the start of training to the end of the last evaluation.
    pub wall_seconds: f64,
}

impl RunRecord {
    /// Row `i` holds the top-1 accuracy on every task after the last epoch of task `i`;
    /// `None` where the task has not been seen yet.
    pub fn accuracy_matrix(&self) -> Vec<Vec<Option<f64>>> {
        (0..self.num_tasks)
            .filter_map(|task| self.epochs.iter().rev().find(|e| e.task == task))
            .map(|last| {
                (0..self.num_tasks)
                    .map(|j| last.eval.iter().find(|e| e.task == j).map(|e| e.top1))
                    .collect()
            })
            .collect()
    }

    /// The total number of training images processed.
    pub fn train_images(&self) -> usize {
        self.epochs.iter().map(|e| e.train_images).sum()
    }

    /// The headline figures of the run, as written to `summary.json`.
    pub fn summary(&self) -> Summary {
        let accuracy_matrix = self.accuracy_matrix();
        let task_averages: Vec<f64> = accuracy_matrix
            .iter()
            .map(|row| mean(row.iter().flatten().copied()))
            .collect();
        Summary {
            dcl_version: crate::DCL_VERSION.to_owned(),
            num_tasks: self.num_tasks,
            world_size: self.world_size,
            final_average_accuracy: task_averages.last().copied().unwrap_or(f64::NAN),
            task_averages,
            accuracy_matrix,
            train_images_per_second: self.train_images() as f64 / self.train_seconds,
            train_time_seconds: self.train_seconds,
            wall_time_seconds: self.wall_seconds,
            epochs: self.epochs.clone(),
        }
    }
}

/// The content of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub dcl_version: String,
    pub num_tasks: usize,
    pub world_size: usize,
    /// See [`RunRecord::accuracy_matrix`]; top-1 in percent.
    pub accuracy_matrix: Vec<Vec<Option<f64>>>,
    /// The mean top-1 over the seen tasks after each task, in percent.
    pub task_averages: Vec<f64>,
    /// The last task average, in percent.
    pub final_average_accuracy: f64,
    pub train_images_per_second: f64,
    pub train_time_seconds: f64,
    pub wall_time_seconds: f64,
    pub epochs: Vec<EpochRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(task: usize, epoch: usize, top1s: &[f64]) -> EpochRecord {
        EpochRecord {
            task,
            epoch,
            train_loss: 0.5,
            train_top1: 80.0,
            train_images: 100,
            train_seconds: 0.5,
            images_per_second: 200.0,
            eval: top1s
                .iter()
                .enumerate()
                .map(|(task, &top1)| EvalRecord { task, samples: 10, loss: 1.0, top1, top5: 100.0 })
                .collect(),
        }
    }

    #[test]
    fn the_matrix_takes_the_last_epoch_of_each_task() {
        let record = RunRecord {
            num_tasks: 2,
            world_size: 1,
            epochs: vec![epoch(0, 0, &[50.0]), epoch(0, 1, &[90.0]), epoch(1, 0, &[60.0, 80.0])],
            train_seconds: 1.5,
            wall_seconds: 2.0,
        };
        let summary = record.summary();
        assert_eq!(summary.accuracy_matrix, vec![vec![Some(90.0), None], vec![Some(60.0), Some(80.0)]]);
        assert_eq!(summary.task_averages, vec![90.0, 70.0]);
        assert_eq!(summary.final_average_accuracy, 70.0);
        assert_eq!(summary.train_images_per_second, 200.0);
    }
}
