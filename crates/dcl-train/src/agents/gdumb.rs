//! GDumb (Prabhu et al. 2020): the model does not learn from the stream at all; the stream
//! only fills a class-balanced memory (the rehearsal buffer, policy `class_balanced`), and before
//! every evaluation the model is trained from scratch on the memory alone for `epochs` epochs,
//! its logits masked to the classes seen so far.
//!
//! Under data parallelism each rank trains on its own memory, the gradients averaged as ever;
//! every rank takes as many steps as the rank with the most batches (the others go round their
//! memory again).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{Agent, Plain, Retrain};
use crate::TrainError;

/// The settings of GDumb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GdumbConfig {
    /// Epochs of training on the memory before every evaluation.
    pub epochs: usize,
}

pub struct Gdumb {
    config: GdumbConfig,
}

impl Gdumb {
    pub fn new(config: GdumbConfig) -> Self {
        Gdumb { config }
    }
}

impl Agent for Gdumb {
    fn trains_on_stream(&self) -> bool {
        false
    }

    fn before_evaluation(&mut self, retrain: Retrain) -> Result<(), TrainError> {
        let Retrain {
            learner,
            memory,
            batch_size,
            mask,
            settings,
            seed,
            world,
        } = retrain;
        let (images, labels) = memory;
        let stored = labels.size()[0] as usize;
        let batches = stored.div_ceil(batch_size.max(1));
        let most = world.all_gather(batches as u64).into_iter().max().unwrap_or(0) as usize;
        if most > 0 && batches == 0 {
            return Err(TrainError::Config(format!(
                "GDumb: the memory of rank {} is empty while others hold samples: give a larger buffer",
                world.rank()
            )));
        }
        learner.reset_weights();
        learner.reset_optimizer(settings)?;
        for epoch in 0..self.config.epochs {
            // Each epoch its own seeded order of the memory.
            tch::manual_seed(seed.wrapping_add(epoch as u64) as i64);
            let order = Tensor::randperm(stored as i64, (tch::Kind::Int64, images.device()));
            for step in 0..most {
                let first = (step % batches) * batch_size;
                let rows = order.f_narrow(0, first as i64, (batch_size.min(stored - first)) as i64)?;
                let batch = (&images.f_index_select(0, &rows)?, &labels.f_index_select(0, &rows)?);
                let _step = learner.train_step(&mut Plain, batch, None, mask, None)?;
            }
            learner.flush(&mut Plain)?;
        }
        Ok(())
    }
}
