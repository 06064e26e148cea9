//! Mixed precision (`--amp`): autocast regions in bfloat16 or float16, and for float16 the
//! dynamic loss scaling of PyTorch's `GradScaler`. Master weights and optimiser state stay in
//! float32; only the operations libtorch's autocast lists run in half precision.
//!
//! Both go through a small C++ shim (csrc/amp.cpp) over libtorch's current API: tch's own
//! `autocast` calls functions libtorch 2.11 deprecates (a warning per call), and tch does not
//! wrap GradScaler's fused unscale-and-check.

use std::ffi::{c_char, c_int};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::{shim, TrainError};

/// The precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Precision {
    /// Float32 everywhere.
    #[default]
    Fp32,
    /// Autocast to bfloat16: float32's range, no loss scaling needed.
    Bf16,
    /// Autocast to float16, with dynamic loss scaling (CUDA only).
    Fp16,
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "off" | "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            "fp16" => Ok(Precision::Fp16),
            _ => Err(format!("expected off, bf16 or fp16, not '{text}'")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "off",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        })
    }
}

impl TryFrom<String> for Precision {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Precision> for String {
    fn from(precision: Precision) -> String {
        precision.to_string()
    }
}

impl Precision {
    /// Refuses a precision `device` cannot run.
    pub fn check(self, device: Device) -> Result<(), TrainError> {
        if self == Precision::Fp16 && device == Device::Cpu {
            return Err(TrainError::Config(
                "--amp fp16 needs a CUDA device; on the CPU use --amp bf16".to_owned(),
            ));
        }
        Ok(())
    }
}

extern "C" {
    fn dcl_autocast_enter(cuda: c_int, half: c_int, was_enabled: *mut c_int, error: *mut c_char, len: usize) -> c_int;
    fn dcl_autocast_exit(cuda: c_int, was_enabled: c_int, error: *mut c_char, len: usize) -> c_int;
    fn dcl_unscale_gradients(
        gradients: *const *mut torch_sys::C_tensor,
        count: usize,
        found_inf: *mut torch_sys::C_tensor,
        inv_scale: *const torch_sys::C_tensor,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// Calls a shim function ([`shim::call`]); its failure is a libtorch error while doing `what`.
pub(crate) fn checked(what: &str, call: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), TrainError> {
    shim::call(call).map_err(|message| crate::guard::torch_error(what, &message))
}

/// Runs `f` with autocast to `precision` on `device` (directly for float32).
pub fn autocast<T>(
    precision: Precision,
    device: Device,
    f: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    if precision == Precision::Fp32 {
        return f();
    }
    let cuda = c_int::from(device.is_cuda());
    let half = c_int::from(precision == Precision::Fp16);
    let mut was_enabled = 0;
    // SAFETY: plain values and a buffer of ERROR_LEN bytes.
    checked("entering autocast", |error, len| unsafe {
        dcl_autocast_enter(cuda, half, &mut was_enabled, error, len)
    })?;
    let result = f();
    // SAFETY: as above; leaves the region entered above, on the same thread.
    checked("leaving autocast", |error, len| unsafe {
        dcl_autocast_exit(cuda, was_enabled, error, len)
    })?;
    result
}

/// Dynamic loss scaling (PyTorch's `GradScaler` with its defaults): the loss is multiplied by
/// the scale before the backward pass; before the optimiser step the gradients are divided by
/// it and checked; a step whose gradients hold an infinity or NaN is skipped and the scale
/// halved, and after `GROWTH_INTERVAL` clean steps in a row the scale doubles.
pub struct GradScaler {
    scale: Tensor,
    growth_tracker: Tensor,
    found_inf: Tensor,
}

impl GradScaler {
    const INITIAL_SCALE: f64 = 65536.0;
    const GROWTH_FACTOR: f64 = 2.0;
    const BACKOFF_FACTOR: f64 = 0.5;
    const GROWTH_INTERVAL: i64 = 2000;

    /// A scaler whose state lives on `device`.
    pub fn new(device: Device) -> Self {
        GradScaler {
            scale: Tensor::full([1], Self::INITIAL_SCALE, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
            found_inf: Tensor::zeros([1], (Kind::Float, device)),
        }
    }

    /// The current scale.
    pub fn scale(&self) -> f64 {
        self.scale.double_value(&[0])
    }

    /// The scale and the growth tracker (clean steps in a row), for checkpoints.
    pub fn state(&self) -> (f64, i64) {
        (self.scale(), self.growth_tracker.int64_value(&[0]))
    }

    /// Restores what [`GradScaler::state`] returned.
    pub fn restore(&mut self, (scale, growth): (f64, i64)) {
        let _ = self.scale.fill_(scale);
        let _ = self.growth_tracker.fill_(growth);
    }

    /// `loss` times the scale.
    pub fn scale_loss(&self, loss: &Tensor) -> Result<Tensor, TrainError> {
        Ok(loss.f_mul(&self.scale.to_kind(loss.kind()))?)
    }

    /// Divides `gradients` by the scale in place and updates the scale; returns whether they
    /// are finite, that is whether the optimiser may step.
    pub fn unscale_and_update(&mut self, gradients: &[Tensor]) -> Result<bool, TrainError> {
        let _ = self.found_inf.f_zero_()?;
        let inv_scale = self.scale.f_reciprocal()?;
        let pointers: Vec<*mut torch_sys::C_tensor> = gradients.iter().map(|g| g.as_ptr() as *mut _).collect();
        // SAFETY: the pointers are live tensors held by `gradients`, `found_inf` and
        // `inv_scale` for the whole call; the shim only reads the pointers.
        checked("unscaling gradients", |error, len| unsafe {
            dcl_unscale_gradients(
                pointers.as_ptr(),
                pointers.len(),
                self.found_inf.as_mut_ptr(),
                inv_scale.as_ptr(),
                error,
                len,
            )
        })?;
        let finite = self.found_inf.double_value(&[0]) == 0.0;
        let _ = self.scale.f_internal_amp_update_scale_(
            &self.growth_tracker,
            &self.found_inf,
            Self::GROWTH_FACTOR,
            Self::BACKOFF_FACTOR,
            Self::GROWTH_INTERVAL,
        )?;
        Ok(finite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions_parse_and_fp16_is_refused_on_the_cpu() {
        assert_eq!("bf16".parse(), Ok(Precision::Bf16));
        assert_eq!("off".parse(), Ok(Precision::Fp32));
        assert!("fp8".parse::<Precision>().unwrap_err().contains("off, bf16 or fp16"));
        let error = Precision::Fp16.check(Device::Cpu).unwrap_err().to_string();
        assert!(error.contains("--amp fp16 needs a CUDA device"), "{error}");
        assert!(Precision::Bf16.check(Device::Cpu).is_ok());
    }

    #[test]
    fn autocast_runs_listed_operations_in_half_precision_inside_the_region_only() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let inside = autocast(Precision::Bf16, Device::Cpu, || Ok(a.matmul(&a))).unwrap();
        assert_eq!(inside.kind(), Kind::BFloat16);
        assert_eq!(a.matmul(&a).kind(), Kind::Float, "the region ends with the call");
        let plain = autocast(Precision::Fp32, Device::Cpu, || Ok(a.matmul(&a))).unwrap();
        assert_eq!(plain.kind(), Kind::Float);
    }

    #[test]
    fn the_scaler_unscales_skips_steps_with_infinities_and_backs_off() {
        let mut scaler = GradScaler::new(Device::Cpu);
        assert_eq!(scaler.scale(), 65536.0);
        let loss = Tensor::from_slice(&[2.0f32]);
        assert_eq!(scaler.scale_loss(&loss).unwrap().double_value(&[0]), 131072.0);
        let gradients = [
            Tensor::from_slice(&[65536.0f32, -131072.0]),
            Tensor::from_slice(&[32768.0f32]),
        ];
        assert!(scaler.unscale_and_update(&gradients).unwrap());
        assert_eq!(Vec::<f32>::try_from(&gradients[0]).unwrap(), vec![1.0, -2.0]);
        assert_eq!(Vec::<f32>::try_from(&gradients[1]).unwrap(), vec![0.5]);
        assert_eq!(scaler.scale(), 65536.0, "one clean step does not grow the scale");
        let overflowed = [Tensor::from_slice(&[1.0f32, f32::INFINITY])];
        assert!(!scaler.unscale_and_update(&overflowed).unwrap());
        assert_eq!(scaler.scale(), 32768.0);
        let nan = [Tensor::from_slice(&[f32::NAN])];
        assert!(!scaler.unscale_and_update(&nan).unwrap());
        assert_eq!(scaler.scale(), 16384.0);
    }
}
