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
    /// Top-1 accuracy with the logits restricted to the task's classes (task-incremental
    /// protocol), in percent; recorded for class-incremental runs, where `top1` is the
    /// class-incremental figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top1_task_il: Option<f64>,
}

/// One epoch of training on a task, and the evaluation that followed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub task: usize,
    pub epoch: usize,
    pub train_loss: f64,
    /// Top-1 accuracy on the training batches (representatives included), in percent,
    /// with dropout active.
    pub train_top1: f64,
    /// The task's own training images of the epoch (representatives not counted).
    pub train_images: usize,
    pub train_seconds: f64,
    /// `train_images / train_seconds`.
    pub images_per_second: f64,
    /// The learning rate of the epoch's last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// One entry per task seen so far.
    pub eval: Vec<EvalRecord>,
    /// The rehearsal pipeline's timing breakdown over the epoch (rehearsal agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal_timing: Option<dcl_buffer::StepTimings>,
    /// Where the epoch's representatives came from, over every worker (rehearsal agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal_draws: Option<crate::rehearsal::DrawCounts>,
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

/// Everything measured during a run (so far).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunRecord {
    pub num_tasks: usize,
    /// Epochs of training per task.
    pub epochs_per_task: usize,
    pub world_size: usize,
    pub epochs: Vec<EpochRecord>,
    /// Seconds spent in training steps (evaluation excluded).
    pub train_seconds: f64,
    /// Seconds from the start of training to the end of the last evaluation.
    pub wall_seconds: f64,
    /// The rehearsal buffer and its timings (rehearsal agents).
    pub rehearsal: Option<crate::rehearsal::RehearsalReport>,
}

impl RunRecord {
    /// The number of tasks whose every epoch is recorded.
    pub fn completed_tasks(&self) -> usize {
        (0..self.num_tasks)
            .take_while(|&task| {
                self.epochs
                    .iter()
                    .any(|e| e.task == task && e.epoch + 1 == self.epochs_per_task)
            })
            .count()
    }

    /// Row `i` holds `metric` on every task after the last epoch of task `i`, for every
    /// completed task; `None` where the task has not been seen yet or the metric was not
    /// recorded.
    fn matrix(&self, metric: impl Fn(&EvalRecord) -> Option<f64>) -> Vec<Vec<Option<f64>>> {
        (0..self.completed_tasks())
            .filter_map(|task| self.epochs.iter().rev().find(|e| e.task == task))
            .map(|last| {
                (0..self.num_tasks)
                    .map(|j| last.eval.iter().find(|e| e.task == j).and_then(&metric))
                    .collect()
            })
            .collect()
    }

    /// The top-1 accuracy matrix of the run's protocol: row `i` = after training task `i`,
    /// entry `j` = top-1 % on test task `j`, `None` where `j > i`; a row per completed task.
    pub fn accuracy_matrix(&self) -> Vec<Vec<Option<f64>>> {
        self.matrix(|e| Some(e.top1))
    }

    /// The total number of training images processed.
    pub fn train_images(&self) -> usize {
        self.epochs.iter().map(|e| e.train_images).sum()
    }

    /// The headline figures of the run, as written to `summary.json`.
    pub fn summary(&self) -> Summary {
        let task_il = self.matrix(|e| e.top1_task_il);
        let has_task_il = task_il.iter().flatten().any(Option::is_some);
        Summary {
            dcl_version: crate::DCL_VERSION.to_owned(),
            num_tasks: self.num_tasks,
            completed_tasks: self.completed_tasks(),
            world_size: self.world_size,
            figures: Figures::from_matrix(self.accuracy_matrix()),
            task_il: has_task_il.then(|| Figures::from_matrix(task_il)),
            train_images_per_second: self.train_images() as f64 / self.train_seconds,
            train_time_seconds: self.train_seconds,
            wall_time_seconds: self.wall_seconds,
            rehearsal: self.rehearsal.clone(),
            epochs: self.epochs.clone(),
        }
    }
}

/// The continual-learning figures derived from an accuracy matrix (percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Row `i` = after training task `i`, entry `j` = top-1 % on test task `j` (`null`
    /// where `j > i`).
    pub accuracy_matrix: Vec<Vec<Option<f64>>>,
    /// The mean top-1 over the seen tasks after each task.
    pub task_averages: Vec<f64>,
    /// The last task average (`None` before the first task is complete).
    pub final_average_accuracy: Option<f64>,
    /// Mean over tasks 0..T-2 of (best accuracy on the task before the last training
    /// task) minus (final accuracy on it); `None` with one task.
    pub forgetting: Option<f64>,
    /// Backward transfer: mean over tasks 0..T-2 of (final accuracy) minus (accuracy right
    /// after training on the task); `None` with one task.
    pub bwt: Option<f64>,
}

impl Figures {
    /// Derives the figures from a complete lower-triangular matrix.
    pub fn from_matrix(matrix: Vec<Vec<Option<f64>>>) -> Self {
        let at = |i: usize, j: usize| matrix[i][j].unwrap_or(f64::NAN);
        let task_averages: Vec<f64> = matrix.iter().map(|row| mean(row.iter().flatten().copied())).collect();
        let t = matrix.len();
        let (forgetting, bwt) = if t < 2 {
            (None, None)
        } else {
            let last = t - 1;
            let forgetting =
                mean((0..last).map(|j| (j..last).map(|i| at(i, j)).fold(f64::MIN, f64::max) - at(last, j)));
            let bwt = mean((0..last).map(|j| at(last, j) - at(j, j)));
            (Some(forgetting), Some(bwt))
        };
        Figures {
            final_average_accuracy: task_averages.last().copied(),
            task_averages,
            accuracy_matrix: matrix,
            forgetting,
            bwt,
        }
    }
}

/// The content of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub dcl_version: String,
    pub num_tasks: usize,
    /// Tasks whose every epoch was trained and evaluated (the rows of the matrix).
    pub completed_tasks: usize,
    pub world_size: usize,
    /// The figures of the run's own protocol (class-, domain- or task-incremental).
    #[serde(flatten)]
    pub figures: Figures,
    /// For class-incremental runs: the same figures under the task-incremental protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_il: Option<Figures>,
    pub train_images_per_second: f64,
    pub train_time_seconds: f64,
    pub wall_time_seconds: f64,
    /// The buffer configuration and the pipeline's timing breakdown (rehearsal agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<crate::rehearsal::RehearsalReport>,
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
            lr: None,
            rehearsal_timing: None,
            rehearsal_draws: None,
            eval: top1s
                .iter()
                .enumerate()
                .map(|(task, &top1)| EvalRecord {
                    task,
                    samples: 10,
                    loss: 1.0,
                    top1,
                    top5: 100.0,
                    top1_task_il: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_matrix_takes_the_last_epoch_of_each_task() {
        let mut record = RunRecord {
            num_tasks: 2,
            epochs_per_task: 2,
            world_size: 1,
            epochs: vec![epoch(0, 0, &[50.0]), epoch(0, 1, &[90.0]), epoch(1, 0, &[60.0, 80.0])],
            train_seconds: 1.5,
            wall_seconds: 2.0,
            rehearsal: None,
        };
        // Task 1 has one epoch of two: only task 0 is complete.
        let partial = record.summary();
        assert_eq!(partial.completed_tasks, 1);
        assert_eq!(partial.figures.accuracy_matrix, vec![vec![Some(90.0), None]]);
        assert_eq!(partial.figures.final_average_accuracy, Some(90.0));
        record.epochs.push(epoch(1, 1, &[60.0, 80.0]));
        let summary = record.summary();
        let figures = &summary.figures;
        assert_eq!(summary.completed_tasks, 2);
        assert_eq!(
            figures.accuracy_matrix,
            vec![vec![Some(90.0), None], vec![Some(60.0), Some(80.0)]]
        );
        assert_eq!(figures.task_averages, vec![90.0, 70.0]);
        assert_eq!(figures.final_average_accuracy, Some(70.0));
        assert_eq!(figures.forgetting, Some(30.0));
        assert_eq!(figures.bwt, Some(-30.0));
        assert!((summary.train_images_per_second - 400.0 / 1.5).abs() < 1e-9);
        let nothing = RunRecord {
            epochs: vec![],
            ..record.clone()
        };
        assert_eq!(nothing.summary().figures.final_average_accuracy, None);
        assert!(summary.task_il.is_none());
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["final_average_accuracy"], 70.0, "figures are at the top level");
        assert!(json.get("task_il").is_none());
    }

    fn matrix(rows: &[&[f64]]) -> Vec<Vec<Option<f64>>> {
        let n = rows.len();
        rows.iter()
            .map(|row| (0..n).map(|j| row.get(j).copied()).collect())
            .collect()
    }

    #[test]
    fn forgetting_takes_the_best_earlier_accuracy_and_bwt_the_one_after_learning() {
        // Task 0: 90 after learning it, 95 after task 1, 50 at the end.
        // Task 1: 80 after learning it, 70 at the end.
        let figures = Figures::from_matrix(matrix(&[&[90.0], &[95.0, 80.0], &[50.0, 70.0, 60.0]]));
        assert_eq!(figures.task_averages, vec![90.0, 87.5, 60.0]);
        assert_eq!(figures.final_average_accuracy, Some(60.0));
        assert_eq!(figures.forgetting, Some(((95.0 - 50.0) + (80.0 - 70.0)) / 2.0));
        assert_eq!(figures.bwt, Some(((50.0 - 90.0) + (70.0 - 80.0)) / 2.0));
    }

    #[test]
    fn no_forgetting_without_a_second_task() {
        let figures = Figures::from_matrix(matrix(&[&[97.0]]));
        assert_eq!((figures.forgetting, figures.bwt), (None, None));
        assert_eq!(figures.final_average_accuracy, Some(97.0));
    }

    #[test]
    fn positive_transfer_gives_positive_bwt_and_negative_forgetting() {
        let figures = Figures::from_matrix(matrix(&[&[60.0], &[70.0, 90.0]]));
        assert_eq!(figures.forgetting, Some(-10.0));
        assert_eq!(figures.bwt, Some(10.0));
    }
}
