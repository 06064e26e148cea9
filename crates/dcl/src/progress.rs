//! Progress display of a training run: a bar per epoch on a terminal, a line per epoch
//! otherwise.

use std::io::IsTerminal;
use std::time::Instant;

use dcl_train::{EpochRecord, TrainObserver};
use indicatif::{ProgressBar, ProgressStyle};

/// Shows training progress on standard error.
pub struct ProgressDisplay {
    bars: bool,
    bar: Option<ProgressBar>,
    num_tasks: usize,
    num_epochs: usize,
    epoch_started: Instant,
    images: usize,
    last_loss: Option<f64>,
}

impl ProgressDisplay {
    /// Bars unless `quiet` or standard error is not a terminal.
    pub fn new(quiet: bool, num_tasks: usize, num_epochs: usize) -> Self {
        ProgressDisplay {
            bars: !quiet && std::io::stderr().is_terminal(),
            bar: None,
            num_tasks,
            num_epochs,
            epoch_started: Instant::now(),
            images: 0,
            last_loss: None,
        }
    }

    fn images_per_second(&self) -> f64 {
        self.images as f64 / self.epoch_started.elapsed().as_secs_f64().max(1e-9)
    }

    fn refresh_message(&self) {
        if let Some(bar) = &self.bar {
            let loss = self.last_loss.map_or_else(|| "-".to_owned(), |l| format!("{l:.4}"));
            bar.set_message(format!("loss {loss}  {:.0} img/s", self.images_per_second()));
        }
    }
}

impl TrainObserver for ProgressDisplay {
    fn epoch_started(&mut self, task: usize, epoch: usize, num_batches: usize) {
        self.epoch_started = Instant::now();
        self.images = 0;
        self.last_loss = None;
        if self.bars {
            let bar = ProgressBar::new(num_batches as u64);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!(
                "task {}/{} epoch {}/{}",
                task + 1,
                self.num_tasks,
                epoch + 1,
                self.num_epochs
            ));
            self.bar = Some(bar);
        }
    }

    fn epoch_resumed(&mut self, batches_done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(batches_done as u64);
            bar.reset_eta();
        }
    }

    fn batch_finished(&mut self, images: usize, loss: Option<f64>) {
        self.images += images;
        if loss.is_some() {
            self.last_loss = loss;
            self.refresh_message();
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn evaluation_started(&mut self, num_tasks: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("evaluating on {num_tasks} task(s)…"));
        }
    }

    fn epoch_finished(&mut self, record: &EpochRecord) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!(
            "task {}/{} epoch {}/{}: train loss {:.4}, top-1 {:.2}% | test top-1 {:.2}% (mean of {} task(s)) | {:.0} img/s, {:.1} s",
            record.task + 1,
            self.num_tasks,
            record.epoch + 1,
            self.num_epochs,
            record.train_loss,
            record.train_top1,
            record.average_top1(),
            record.eval.len(),
            record.images_per_second,
            record.train_seconds
        );
    }
}
