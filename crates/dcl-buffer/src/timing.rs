//! The per-step timing breakdown of the rehearsal pipeline, as upstream reports it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The stages of one augmented minibatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingStage {
    /// The training step waiting for its minibatch.
    Wait,
    /// Copying the fresh samples into the augmented minibatch.
    BatchCopy,
    /// Choosing the representatives.
    Sample,
    /// Copying the representatives into the augmented minibatch.
    RepresentativesCopy,
    /// Offering the fresh samples to the buffer.
    BufferUpdate,
}

/// Accumulated time per stage over a window of steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTimings {
    pub steps: u64,
    pub wait_seconds: f64,
    pub batch_copy_seconds: f64,
    pub sample_seconds: f64,
    pub representatives_copy_seconds: f64,
    pub buffer_update_seconds: f64,
}

impl StepTimings {
    /// Adds `elapsed` to `stage`.
    pub fn add(&mut self, stage: TimingStage, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        match stage {
            TimingStage::Wait => self.wait_seconds += seconds,
            TimingStage::BatchCopy => self.batch_copy_seconds += seconds,
            TimingStage::Sample => self.sample_seconds += seconds,
            TimingStage::RepresentativesCopy => self.representatives_copy_seconds += seconds,
            TimingStage::BufferUpdate => self.buffer_update_seconds += seconds,
        }
    }

    /// Adds another window's totals to this one.
    pub fn merge(&mut self, other: &StepTimings) {
        self.steps += other.steps;
        self.wait_seconds += other.wait_seconds;
        self.batch_copy_seconds += other.batch_copy_seconds;
        self.sample_seconds += other.sample_seconds;
        self.representatives_copy_seconds += other.representatives_copy_seconds;
        self.buffer_update_seconds += other.buffer_update_seconds;
    }

    /// The mean milliseconds per step of each stage, for reports.
    pub fn per_step_ms(&self) -> [(&'static str, f64); 5] {
        let per = |s: f64| {
            if self.steps == 0 {
                0.0
            } else {
                1e3 * s / self.steps as f64
            }
        };
        [
            ("wait", per(self.wait_seconds)),
            ("batch copy", per(self.batch_copy_seconds)),
            ("sample", per(self.sample_seconds)),
            ("representatives copy", per(self.representatives_copy_seconds)),
            ("buffer update", per(self.buffer_update_seconds)),
        ]
    }
}
