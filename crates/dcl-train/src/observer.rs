//! The seam between the training loop and whatever displays its progress.

use crate::{EpochRecord, RunRecord, TrainError};

/// Receives progress events from [`crate::train`]. Every method has an empty default,
/// so an observer implements only what it shows.
pub trait TrainObserver {
    /// A task's epoch starts, with `num_batches` training batches.
    fn epoch_started(&mut self, _task: usize, _epoch: usize, _num_batches: usize) {}
    /// The epoch just started resumes after its first `batches_done` batches (a checkpoint
    /// within it).
    fn epoch_resumed(&mut self, _batches_done: usize) {}
    /// A training batch of `images` samples finished; `loss` is its loss every
    /// `log_interval` batches and `None` in between.
    fn batch_finished(&mut self, _images: usize, _loss: Option<f64>) {}
    /// Training of the epoch is over; evaluation on `num_tasks` tasks starts.
    fn evaluation_started(&mut self, _num_tasks: usize) {}
    /// The epoch and its evaluation are complete.
    fn epoch_finished(&mut self, _record: &EpochRecord) {}
    /// The record of the run so far, after every evaluation (results writers save it
    /// here, so that an interrupted run keeps what it measured). An error stops the run.
    fn evaluated(&mut self, _record: &RunRecord) -> Result<(), TrainError> {
        Ok(())
    }
    /// Whether the run should stop between two steps (a signal): asked after every step
    /// on every rank; the run stops with [`TrainError::Interrupted`] when any rank says so.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// An observer that shows nothing.
pub struct Silent;

impl TrainObserver for Silent {}
