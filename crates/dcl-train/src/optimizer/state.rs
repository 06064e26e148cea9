//! What an optimiser keeps per variable, and its buffers under PyTorch's names.

use tch::{Device, Kind, TchError, Tensor};

use crate::regime::OptimizerKind;

/// A buffer of a variable's state, as PyTorch's `state_dict` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Buffer {
    Step,
    ExpAvg,
    ExpAvgSq,
    SquareAvg,
    /// SGD's and RMSprop's `momentum_buffer`.
    Momentum,
}

impl Buffer {
    /// Its name, the last component of a state entry's.
    pub fn name(self) -> &'static str {
        match self {
            Buffer::Step => "step",
            Buffer::ExpAvg => "exp_avg",
            Buffer::ExpAvgSq => "exp_avg_sq",
            Buffer::SquareAvg => "square_avg",
            Buffer::Momentum => "momentum_buffer",
        }
    }

    /// The buffers of `kind`'s state, in the order of the optimiser's `state`.
    pub fn of(kind: OptimizerKind) -> &'static [Buffer] {
        match kind {
            OptimizerKind::Sgd => &[Buffer::Momentum],
            OptimizerKind::Adam | OptimizerKind::AdamW => &[Buffer::Step, Buffer::ExpAvg, Buffer::ExpAvgSq],
            OptimizerKind::RmsProp => &[Buffer::Step, Buffer::SquareAvg, Buffer::Momentum],
        }
    }

    /// The buffers of `kind` that a variable's state holds as soon as it holds any (RMSprop's
    /// momentum buffer exists only where momentum was on; SGD's, where it is on).
    pub fn required(kind: OptimizerKind) -> &'static [Buffer] {
        match kind {
            OptimizerKind::Sgd => &[],
            OptimizerKind::RmsProp => &[Buffer::Step, Buffer::SquareAvg],
            OptimizerKind::Adam | OptimizerKind::AdamW => Buffer::of(kind),
        }
    }
}

/// What an optimiser keeps for a variable (PyTorch's `optimizer.state[p]`), filled at its
/// first step with a gradient.
#[derive(Default)]
pub(super) struct ParamState {
    /// Adam's and RMSprop's steps taken. PyTorch keeps a float32 tensor that it reads back with
    /// `.item()` at every step; this is that number, on the host.
    pub step: Option<f32>,
    /// Adam's first moment estimate.
    pub exp_avg: Option<Tensor>,
    /// Adam's second moment estimate.
    pub exp_avg_sq: Option<Tensor>,
    /// RMSprop's running mean of the squared gradient.
    pub square_avg: Option<Tensor>,
    /// SGD's and RMSprop's momentum.
    pub momentum_buffer: Option<Tensor>,
}

impl ParamState {
    /// The slot of a tensor buffer; none for the step count.
    fn slot(&mut self, buffer: Buffer) -> Option<&mut Option<Tensor>> {
        match buffer {
            Buffer::Step => None,
            Buffer::ExpAvg => Some(&mut self.exp_avg),
            Buffer::ExpAvgSq => Some(&mut self.exp_avg_sq),
            Buffer::SquareAvg => Some(&mut self.square_avg),
            Buffer::Momentum => Some(&mut self.momentum_buffer),
        }
    }

    /// The value of a tensor buffer, if held.
    fn tensor(&self, buffer: Buffer) -> Option<&Tensor> {
        match buffer {
            Buffer::Step => None,
            Buffer::ExpAvg => self.exp_avg.as_ref(),
            Buffer::ExpAvgSq => self.exp_avg_sq.as_ref(),
            Buffer::SquareAvg => self.square_avg.as_ref(),
            Buffer::Momentum => self.momentum_buffer.as_ref(),
        }
    }

    /// Whether it holds `buffer`.
    pub fn holds(&self, buffer: Buffer) -> bool {
        match buffer {
            Buffer::Step => self.step.is_some(),
            _ => self.tensor(buffer).is_some(),
        }
    }

    /// The buffers of `kind` it holds (the tensors themselves), the step count as a float32
    /// scalar on `device`.
    pub fn saved(&self, kind: OptimizerKind, device: Device) -> Vec<(Buffer, Tensor)> {
        let value = |buffer: Buffer| match buffer {
            Buffer::Step => self
                .step
                .map(|step| Tensor::scalar_tensor(f64::from(step), (Kind::Float, device))),
            _ => self.tensor(buffer).map(Tensor::shallow_clone),
        };
        Buffer::of(kind)
            .iter()
            .filter_map(|&buffer| Some((buffer, value(buffer)?)))
            .collect()
    }

    /// Puts a saved `tensor` of `buffer` in place, checked against the variable `param`: a copy
    /// on the variable's device, in its memory format.
    pub fn load(&mut self, buffer: Buffer, tensor: &Tensor, param: &Tensor) -> Result<(), String> {
        if self.holds(buffer) {
            return Err("given twice".to_owned());
        }
        let Some(slot) = self.slot(buffer) else {
            self.step = Some(step_count(tensor)?);
            return Ok(());
        };
        if tensor.size() != param.size() || tensor.kind() != param.kind() {
            return Err(format!(
                "{:?} of shape {:?} where the variable is {:?} of shape {:?}",
                tensor.kind(),
                tensor.size(),
                param.kind(),
                param.size()
            ));
        }
        let copy = || -> Result<Tensor, TchError> {
            let mut copy = param.f_empty_like()?;
            copy.f_copy_(tensor)?;
            Ok(copy)
        };
        *slot = Some(copy().map_err(|e| e.to_string())?);
        Ok(())
    }
}

/// A saved step count: a float32 scalar holding a whole number.
fn step_count(tensor: &Tensor) -> Result<f32, String> {
    if tensor.dim() != 0 || tensor.kind() != Kind::Float {
        return Err(format!(
            "a step count is a float32 scalar, not {:?} of shape {:?}",
            tensor.kind(),
            tensor.size()
        ));
    }
    match tensor.f_double_value(&[]) {
        Ok(value) if value >= 0.0 && value.fract() == 0.0 => Ok(value as f32),
        Ok(value) => Err(format!("a step count is a whole number, not {value}")),
        Err(e) => Err(e.to_string()),
    }
}
