//! iCaRL (Rebuffi et al. 2017): a memory of exemplars chosen by herding, classification by the
//! nearest mean of exemplars, and distillation from the model as it was at the end of the last
//! task.
//!
//! The memory is the rehearsal buffer, curated: the stream is not offered to it; at the end of
//! every task each class seen so far keeps m = capacity / classes exemplars — the first m of an
//! earlier class (herding order), and for every class of the task, the m training samples
//! (unaugmented) whose running feature mean stays closest to the class mean. Training replays
//! them as `er` does, with LwF's distillation (cross-entropy plus distillation, where Rebuffi et
//! al. use binary cross-entropies). Evaluation scores each class by minus the squared distance
//! of the L2-normalised features to its exemplars' normalised mean (means over every rank's
//! exemplars). Every model of the registry exposes its features.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::lwf::{Lwf, LwfConfig};
use super::{named, take_named, Agent, LossContext, TaskEnd};
use crate::learner::Learner;
use crate::TrainError;

/// The settings of iCaRL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcarlConfig {
    /// The distillation, as LwF's.
    pub distillation: LwfConfig,
}

pub struct Icarl {
    distillation: Lwf,
    /// Per class, the normalised mean of its exemplars' features (zeros: no exemplar).
    means: Option<Tensor>,
}

impl Icarl {
    pub fn new(config: IcarlConfig) -> Self {
        Icarl {
            distillation: Lwf::new(config.distillation),
            means: None,
        }
    }
}

/// `features` scaled to unit length, row by row.
fn normalised(features: &Tensor) -> Result<Tensor, TrainError> {
    let norms = features
        .f_norm_scalaropt_dim(2, [1].as_slice(), true)?
        .f_clamp_min(1e-12)?;
    Ok(features.f_div(&norms)?)
}

/// The rows of `features` (normalised) that herding picks, in order: each time the one that
/// brings the running mean of the picked rows closest to the mean of all.
fn herding(features: &Tensor, count: usize) -> Result<Vec<i64>, TrainError> {
    let n = features.size()[0];
    let mean = features.f_mean_dim([0].as_slice(), true, Kind::Float)?;
    let mut sum = Tensor::f_zeros_like(&mean)?;
    let mut taken = vec![false; n as usize];
    let mut picked = Vec::new();
    for k in 1..=count.min(n as usize) {
        let candidates = features.f_add(&sum)?.f_div_scalar(k as f64)?;
        let distance = candidates
            .f_sub(&mean)?
            .f_square()?
            .f_sum_dim_intlist([1].as_slice(), false, Kind::Float)?;
        let distance = Vec::<f32>::try_from(&distance)?;
        let best = (0..n as usize)
            .filter(|&i| !taken[i])
            .min_by(|&a, &b| distance[a].total_cmp(&distance[b]))
            .expect("fewer picks than rows");
        taken[best] = true;
        picked.push(best as i64);
        sum = sum.f_add(&features.f_narrow(0, best as i64, 1)?)?;
    }
    Ok(picked)
}

impl Agent for Icarl {
    fn stores_stream(&self) -> bool {
        false
    }

    fn extra_loss(&mut self, step: &LossContext) -> Result<Option<Tensor>, TrainError> {
        self.distillation.extra_loss(step)
    }

    fn end_task(&mut self, task: TaskEnd) -> Result<(), TrainError> {
        let memory = task
            .memory
            .ok_or_else(|| TrainError::Config("iCaRL keeps its exemplars in a rehearsal buffer".into()))?;
        let learner: &mut Learner = task.learner;
        let missing = || {
            TrainError::Config(format!(
                "iCaRL classifies by the model's features, which {} does not expose",
                learner.model_name()
            ))
        };
        // This rank's training samples of the task, by class.
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for batch in task.batches {
            let (batch_images, batch_labels) = batch?;
            images.push(batch_images);
            labels.push(batch_labels);
        }
        let images = Tensor::f_cat(&images, 0)?;
        let labels = Tensor::f_cat(&labels, 0)?;
        let label_list = Vec::<i64>::try_from(&labels)?;
        let mut new_classes: Vec<i64> = label_list.clone();
        new_classes.sort_unstable();
        new_classes.dedup();
        let num_classes = memory.num_classes();
        let mut seen: Vec<usize> = (0..num_classes).filter(|&c| memory.class_len(c) > 0).collect();
        seen.extend(new_classes.iter().map(|&c| c as usize));
        seen.sort_unstable();
        seen.dedup();
        let per_class = memory.capacity() / seen.len().max(1);
        let device = learner.device();
        // The exemplars: the first `per_class` of an earlier class, herding's for a new one.
        let (mut kept_images, mut kept_labels) = (Vec::new(), Vec::new());
        for &class in &seen {
            if new_classes.contains(&(class as i64)) {
                let rows: Vec<i64> = (0..label_list.len() as i64)
                    .filter(|&i| label_list[i as usize] == class as i64)
                    .collect();
                let of_class = images.f_index_select(0, &Tensor::from_slice(&rows))?;
                let features = learner.features(&of_class.f_to_device(device)?)?.ok_or_else(missing)?;
                let picked = herding(&normalised(&features)?, per_class)?;
                kept_images.push(of_class.f_index_select(0, &Tensor::from_slice(&picked))?);
            } else {
                let old = memory.class_images(class)?;
                let keep = old.size()[0].min(per_class as i64);
                kept_images.push(old.f_narrow(0, 0, keep)?);
            }
            let count = kept_images.last().map_or(0, |t| t.size()[0]);
            kept_labels.extend(std::iter::repeat_n(class as u32, count as usize));
        }
        let exemplars = Tensor::f_cat(&kept_images, 0)?;
        memory.replace_memory(&exemplars, &kept_labels)?;
        // The class means, over every rank's exemplars.
        let features = normalised(&learner.features(&exemplars.f_to_device(device)?)?.ok_or_else(missing)?)?;
        let width = features.size()[1];
        let index =
            Tensor::from_slice(&kept_labels.iter().map(|&l| l as i64).collect::<Vec<_>>()).f_to_device(device)?;
        let sums =
            Tensor::f_zeros([num_classes as i64, width], (Kind::Float, device))?.f_index_add(0, &index, &features)?;
        let counts = Tensor::f_zeros([num_classes as i64], (Kind::Float, device))?.f_index_add(
            0,
            &index,
            &Tensor::f_ones([index.size()[0]], (Kind::Float, device))?,
        )?;
        let mut totals: Vec<f32> = Vec::<f32>::try_from(sums.f_flatten(0, -1)?.f_to_device(tch::Device::Cpu)?)?;
        totals.extend(Vec::<f32>::try_from(&counts.f_to_device(tch::Device::Cpu)?)?);
        let mut summed = vec![0.0f32; totals.len()];
        task.world.all_reduce_sum_into(&totals, &mut summed);
        let (sums, counts) = summed.split_at(num_classes * width as usize);
        let sums = Tensor::from_slice(sums).f_view([num_classes as i64, width])?;
        let counts = Tensor::from_slice(counts).f_clamp_min(1.0)?.f_unsqueeze(1)?;
        self.means = Some(normalised(&sums.f_div(&counts)?)?.f_to_device(device)?);
        // The teacher for the next task's distillation.
        self.distillation.end_task(TaskEnd {
            learner,
            batches: &mut std::iter::empty(),
            seen_classes: task.seen_classes,
            world: task.world,
            memory: None,
        })
    }

    fn classify(&self, learner: &Learner, images: &Tensor) -> Result<Option<Tensor>, TrainError> {
        let Some(means) = &self.means else {
            return Ok(None);
        };
        let features = normalised(
            &learner
                .features(images)?
                .ok_or_else(|| TrainError::Config(format!("iCaRL: {} exposes no features", learner.model_name())))?,
        )?;
        // Minus the squared distance to every class mean; classes without exemplars never win.
        let distance = features
            .f_unsqueeze(1)?
            .f_sub(&means.f_unsqueeze(0)?)?
            .f_square()?
            .f_sum_dim_intlist([2].as_slice(), false, Kind::Float)?;
        let empty = means
            .f_abs()?
            .f_sum_dim_intlist([1].as_slice(), false, Kind::Float)?
            .f_eq(0.0)?;
        let scores = distance.f_neg()?.f_masked_fill(&empty.f_unsqueeze(0)?, -1e9)?;
        Ok(Some(scores))
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>, TrainError> {
        let mut state = self.distillation.state()?;
        if let Some(means) = &self.means {
            state.extend(named("icarl.means", std::slice::from_ref(means))?);
        }
        Ok(state)
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>, learner: &Learner) -> Result<(), TrainError> {
        self.means = take_named(&state, "icarl.means", learner.device())?.pop();
        let lwf: Vec<(String, Tensor)> = state.into_iter().filter(|(n, _)| n.starts_with("lwf.")).collect();
        self.distillation.load_state(lwf, learner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herding_picks_rows_whose_running_mean_follows_the_mean() {
        // The mean is (0.8, 0.8): row 0 is closest; then (row 0 + row 2) / 2 = (0.6, 0.6) beats
        // (0, 0) with row 1 and (2, 2) with row 3.
        let features = Tensor::from_slice(&[1.0f32, 1.0, -1.0, -1.0, 0.2, 0.2, 3.0, 3.0]).view([4, 2]);
        assert_eq!(herding(&features, 2).unwrap(), vec![0, 2]);
        assert_eq!(herding(&features, 10).unwrap().len(), 4, "at most every row");
    }
}
