//! PyTorch 2.11's update rules, one parameter at a time as torch/optim/{sgd,adam,rmsprop}.py's
//! single-tensor versions (PyTorch's choice on the CPU): the same operations with the same
//! scalar arguments, hence the same kernels and roundings. tch has no `alpha` of `add` nor
//! `value` of `addcmul`/`addcdiv`, nor a way to set a gradient to none: those come from the C++
//! shim csrc/optimizer.cpp.

use std::ffi::{c_char, c_int};

use tch::{TchError, Tensor};

use super::state::ParamState;
use crate::regime::{Hyperparameters, OptimizerKind};

/// Updates `param` from its gradient `grad` by the rule of `h`'s optimiser, with weight decay
/// `weight_decay` (its group's); to be called under `no_grad`.
pub(super) fn update(
    param: &mut Tensor,
    grad: &Tensor,
    state: &mut ParamState,
    h: &Hyperparameters,
    weight_decay: f64,
) -> Result<(), TchError> {
    match h.settings.optimizer {
        OptimizerKind::Sgd => sgd(param, grad, state, h, weight_decay),
        OptimizerKind::Adam => adam(param, grad, state, h, weight_decay, false),
        OptimizerKind::AdamW => adam(param, grad, state, h, weight_decay, true),
        OptimizerKind::RmsProp => rms_prop(param, grad, state, h, weight_decay),
    }
}

/// torch/optim/sgd.py's `_single_tensor_sgd`: the momentum buffer starts as the first
/// (decayed) gradient.
fn sgd(
    param: &mut Tensor,
    grad: &Tensor,
    state: &mut ParamState,
    h: &Hyperparameters,
    weight_decay: f64,
) -> Result<(), TchError> {
    let (s, d) = (h.settings, h.details);
    let decayed = with_weight_decay(grad, param, weight_decay)?;
    let mut grad = decayed.as_ref().unwrap_or(grad);
    let nesterov;
    if s.momentum != 0.0 {
        let buf = match &mut state.momentum_buffer {
            Some(buf) => {
                let _ = buf.f_mul_scalar_(s.momentum)?;
                add_(buf, grad, 1.0 - d.dampening)?;
                buf
            }
            slot @ None => slot.insert(clone(grad)?),
        };
        if d.nesterov {
            nesterov = add(grad, buf, s.momentum)?;
            grad = &nesterov;
        } else {
            grad = buf;
        }
    }
    add_(param, grad, -s.lr)
}

/// torch/optim/adam.py's `_single_tensor_adam` (AdamW: `decoupled`), without amsgrad.
fn adam(
    param: &mut Tensor,
    grad: &Tensor,
    state: &mut ParamState,
    h: &Hyperparameters,
    weight_decay: f64,
    decoupled: bool,
) -> Result<(), TchError> {
    let (s, d) = (h.settings, h.details);
    let (beta1, beta2) = s.betas;
    let exp_avg = zeros_if_none(&mut state.exp_avg, param)?;
    let exp_avg_sq = zeros_if_none(&mut state.exp_avg_sq, param)?;
    let step = state.step.get_or_insert(0.0);
    *step += 1.0;
    let step = f64::from(*step);
    let decayed = if decoupled {
        if weight_decay != 0.0 {
            let _ = param.f_mul_scalar_(1.0 - s.lr * weight_decay)?;
        }
        None
    } else {
        with_weight_decay(grad, param, weight_decay)?
    };
    let grad = decayed.as_ref().unwrap_or(grad);
    let _ = exp_avg.f_lerp_(grad, 1.0 - beta1)?;
    let _ = exp_avg_sq.f_mul_scalar_(beta2)?;
    addcmul_(exp_avg_sq, grad, grad, 1.0 - beta2)?;
    let bias_correction1 = 1.0 - beta1.powf(step);
    let bias_correction2 = 1.0 - beta2.powf(step);
    let step_size = s.lr / bias_correction1;
    // Python's `** 0.5` is libm's pow; a constant exponent would let LLVM use sqrt instead.
    let bias_correction2_sqrt = bias_correction2.powf(std::hint::black_box(0.5));
    let mut denom = exp_avg_sq.f_sqrt()?;
    let _ = denom.f_div_scalar_(bias_correction2_sqrt)?;
    let _ = denom.f_add_scalar_(d.eps)?;
    addcdiv_(param, exp_avg, &denom, -step_size)
}

/// torch/optim/rmsprop.py's `_single_tensor_rmsprop`, not centered. PyTorch creates the
/// momentum buffer with the rest of the state, where momentum is on; one whose momentum comes
/// on later fails there, and starts from zero here.
fn rms_prop(
    param: &mut Tensor,
    grad: &Tensor,
    state: &mut ParamState,
    h: &Hyperparameters,
    weight_decay: f64,
) -> Result<(), TchError> {
    let (s, d) = (h.settings, h.details);
    let square_avg = zeros_if_none(&mut state.square_avg, param)?;
    *state.step.get_or_insert(0.0) += 1.0;
    let decayed = with_weight_decay(grad, param, weight_decay)?;
    let grad = decayed.as_ref().unwrap_or(grad);
    let _ = square_avg.f_mul_scalar_(d.alpha)?;
    addcmul_(square_avg, grad, grad, 1.0 - d.alpha)?;
    let mut avg = square_avg.f_sqrt()?;
    let _ = avg.f_add_scalar_(d.eps)?;
    if s.momentum > 0.0 {
        let buf = zeros_if_none(&mut state.momentum_buffer, param)?;
        let _ = buf.f_mul_scalar_(s.momentum)?;
        addcdiv_(buf, grad, &avg, 1.0)?;
        add_(param, buf, -s.lr)
    } else {
        addcdiv_(param, grad, &avg, -s.lr)
    }
}

/// `grad.add(param, alpha=weight_decay)`, a new tensor, where weight decay is on (PyTorch's
/// L2 penalty, which leaves the gradient itself as it is).
fn with_weight_decay(grad: &Tensor, param: &Tensor, weight_decay: f64) -> Result<Option<Tensor>, TchError> {
    (weight_decay != 0.0)
        .then(|| add(grad, param, weight_decay))
        .transpose()
}

/// The buffer in `slot`, created as zeros like `param` (its memory format too) if none yet.
fn zeros_if_none<'a>(slot: &'a mut Option<Tensor>, param: &Tensor) -> Result<&'a mut Tensor, TchError> {
    let buffer = match slot.take() {
        Some(buffer) => buffer,
        None => param.f_zeros_like()?,
    };
    Ok(slot.insert(buffer))
}

/// A copy of `tensor` in its memory format (PyTorch's `clone`).
fn clone(tensor: &Tensor) -> Result<Tensor, TchError> {
    let mut copy = tensor.f_empty_like()?;
    copy.f_copy_(tensor)?;
    Ok(copy)
}

extern "C" {
    fn dcl_add_(
        tensor: *const torch_sys::C_tensor,
        other: *const torch_sys::C_tensor,
        alpha: f64,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn dcl_add(
        tensor: *const torch_sys::C_tensor,
        other: *const torch_sys::C_tensor,
        alpha: f64,
        out: *mut *mut torch_sys::C_tensor,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn dcl_addcmul_(
        tensor: *const torch_sys::C_tensor,
        a: *const torch_sys::C_tensor,
        b: *const torch_sys::C_tensor,
        value: f64,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn dcl_addcdiv_(
        tensor: *const torch_sys::C_tensor,
        a: *const torch_sys::C_tensor,
        b: *const torch_sys::C_tensor,
        value: f64,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn dcl_clear_gradient(tensor: *const torch_sys::C_tensor);
}

/// Calls a shim function ([`crate::shim::call`]); its failure is libtorch's message as tch's
/// error.
fn checked(call: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), TchError> {
    crate::shim::call(call).map_err(TchError::Torch)
}

/// `tensor.add_(other, alpha=alpha)`.
fn add_(tensor: &mut Tensor, other: &Tensor, alpha: f64) -> Result<(), TchError> {
    // SAFETY: live tensors and a buffer of ERROR_LEN bytes.
    checked(|error, len| unsafe { dcl_add_(tensor.as_ptr(), other.as_ptr(), alpha, error, len) })
}

/// `tensor.add(other, alpha=alpha)`.
fn add(tensor: &Tensor, other: &Tensor, alpha: f64) -> Result<Tensor, TchError> {
    let mut out = std::ptr::null_mut();
    // SAFETY: as in `add_`; on success the shim hands over a new tensor.
    checked(|error, len| unsafe { dcl_add(tensor.as_ptr(), other.as_ptr(), alpha, &mut out, error, len) })?;
    // SAFETY: `out` is the new tensor, owned from here on.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// `tensor.addcmul_(a, b, value=value)`.
fn addcmul_(tensor: &mut Tensor, a: &Tensor, b: &Tensor, value: f64) -> Result<(), TchError> {
    // SAFETY: as in `add_`.
    checked(|error, len| unsafe { dcl_addcmul_(tensor.as_ptr(), a.as_ptr(), b.as_ptr(), value, error, len) })
}

/// `tensor.addcdiv_(a, b, value=value)`.
fn addcdiv_(tensor: &mut Tensor, a: &Tensor, b: &Tensor, value: f64) -> Result<(), TchError> {
    // SAFETY: as in `add_`.
    checked(|error, len| unsafe { dcl_addcdiv_(tensor.as_ptr(), a.as_ptr(), b.as_ptr(), value, error, len) })
}

/// `tensor.grad = None`: the next backward pass stores its gradient instead of adding to one.
pub(super) fn clear_gradient(tensor: &Tensor) {
    // SAFETY: a live tensor; the shim only drops its reference to the gradient.
    unsafe { dcl_clear_gradient(tensor.as_ptr()) }
}
