//! Averaged gradient episodic memory (Chaudhry et al. 2019): the samples replayed from the
//! rehearsal buffer do not join the batch; their mean gradient g_ref (all-reduced like the
//! training gradient) constrains the step: when the batch's gradient g points against it
//! (g·g_ref < 0), g is projected to g − (g·g_ref / g_ref·g_ref) g_ref.

use tch::{Kind, Tensor};

use super::{Agent, ReplayUse};
use crate::TrainError;

pub struct Agem;

impl Agent for Agem {
    fn replay_use(&self) -> ReplayUse {
        ReplayUse::Reference
    }

    fn adjust_gradients(
        &mut self,
        _params: &[Tensor],
        grads: &[Tensor],
        reference: Option<&Tensor>,
    ) -> Result<(), TrainError> {
        let Some(reference) = reference else {
            return Ok(());
        };
        let flat = Tensor::f_cat(
            &grads
                .iter()
                .map(|g| g.f_flatten(0, -1)?.f_to_kind(Kind::Float))
                .collect::<Result<Vec<_>, _>>()?,
            0,
        )?;
        let dot = flat.f_dot(reference)?.f_double_value(&[])?;
        let norm = reference.f_dot(reference)?.f_double_value(&[])?;
        if dot >= 0.0 || norm <= 0.0 {
            return Ok(());
        }
        let projected = flat.f_sub(&reference.f_mul_scalar(dot / norm)?)?;
        let mut offset = 0;
        tch::no_grad(|| -> Result<(), TrainError> {
            for grad in grads {
                let n = grad.numel() as i64;
                let part = projected.f_narrow(0, offset, n)?.f_view_as(grad)?;
                grad.shallow_clone().f_copy_(&part)?;
                offset += n;
            }
            Ok(())
        })
    }
}
