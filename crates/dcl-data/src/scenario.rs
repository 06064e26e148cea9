//! Scenarios: how a data set is cut into the sequence of tasks a continual learner sees.

use crate::SplitDataset;

/// One task of a scenario: the samples to train on and the ones to evaluate it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Indices into the training split.
    pub train: Vec<usize>,
    /// Indices into the test split.
    pub test: Vec<usize>,
}

/// The ordered tasks of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub tasks: Vec<Task>,
}

impl Scenario {
    /// Plain deep learning: one task over the whole data set, or over its first
    /// `train_limit` training samples.
    pub fn single_task(data: &SplitDataset, train_limit: Option<usize>) -> Self {
        let train_len = train_limit.map_or(data.train.len(), |n| n.min(data.train.len()));
        Scenario {
            tasks: vec![Task {
                train: (0..train_len).collect(),
                test: (0..data.test.len()).collect(),
            }],
        }
    }
}
