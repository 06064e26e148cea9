//! Where a run's tensors live: `--device auto|cpu|cuda|cuda:N`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::TrainError;

/// The device a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    /// A CUDA device when one is available, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA device N, or (`None`) the one of the rank's local rank.
    Cuda(Option<usize>),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(None)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|n| DeviceChoice::Cuda(Some(n)))
                .ok_or_else(|| format!("expected auto, cpu, cuda or cuda:N, not '{text}'")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(None) => write!(f, "cuda"),
            DeviceChoice::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(choice: DeviceChoice) -> String {
        choice.to_string()
    }
}

impl DeviceChoice {
    /// The device of a rank whose rank on its node is `local_rank`, among `cuda_devices`
    /// CUDA devices: without an index, ranks sharing a node take devices in turn
    /// (`local_rank % cuda_devices`), as Horovod's `local_rank` does.
    pub fn resolve(self, local_rank: usize, cuda_devices: usize) -> Result<Device, TrainError> {
        let cuda = |index: usize| {
            if index < cuda_devices {
                Ok(Device::Cuda(index))
            } else if cuda_devices == 0 {
                Err(TrainError::Config(format!(
                    "--device {self}: no CUDA device is available (none visible to libtorch); use --device cpu or auto"
                )))
            } else {
                Err(TrainError::Config(format!(
                    "--device {self}: this node has {cuda_devices} CUDA device(s), 0 to {}",
                    cuda_devices - 1
                )))
            }
        };
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto if cuda_devices == 0 => Ok(Device::Cpu),
            DeviceChoice::Auto | DeviceChoice::Cuda(None) => cuda(local_rank % cuda_devices.max(1)),
            DeviceChoice::Cuda(Some(index)) => cuda(index),
        }
    }

    /// [`DeviceChoice::resolve`] on this machine's CUDA devices; on CUDA, cuDNN's benchmark
    /// mode is switched on (the fastest convolution algorithm for the run's shapes).
    pub fn resolve_here(self, local_rank: usize) -> Result<Device, TrainError> {
        let devices = if tch::Cuda::is_available() {
            tch::Cuda::device_count() as usize
        } else {
            0
        };
        let device = self.resolve(local_rank, devices)?;
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        Ok(device)
    }
}

extern "C" {
    fn dcl_pin_memory(
        tensor: *const torch_sys::C_tensor,
        out: *mut *mut torch_sys::C_tensor,
        error: *mut std::ffi::c_char,
        len: usize,
    ) -> std::ffi::c_int;
}

/// A copy of the host tensor `tensor` in page-locked memory (needs a CUDA device), from which
/// copies to the device run asynchronously.
pub fn pinned(tensor: &tch::Tensor) -> Result<tch::Tensor, TrainError> {
    let mut out = std::ptr::null_mut();
    // SAFETY: `tensor` is live for the call; on success the shim hands over a new tensor.
    crate::amp::checked("pinning host memory", |error, len| unsafe {
        dcl_pin_memory(tensor.as_ptr(), &mut out, error, len)
    })?;
    // SAFETY: `out` was allocated with `new` as tch's own tensors are, and is owned by no one else.
    Ok(unsafe { tch::Tensor::from_ptr(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_print_and_resolve_per_local_rank() {
        for text in ["auto", "cpu", "cuda", "cuda:1"] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap().to_string(), text);
        }
        assert!("gpu"
            .parse::<DeviceChoice>()
            .unwrap_err()
            .contains("expected auto, cpu, cuda or cuda:N"));
        let auto = DeviceChoice::Auto;
        assert_eq!(auto.resolve(3, 0).unwrap(), Device::Cpu);
        assert_eq!(auto.resolve(3, 2).unwrap(), Device::Cuda(1));
        assert_eq!(DeviceChoice::Cuda(None).resolve(2, 4).unwrap(), Device::Cuda(2));
        assert_eq!(DeviceChoice::Cpu.resolve(0, 8).unwrap(), Device::Cpu);
        let none = DeviceChoice::Cuda(None).resolve(0, 0).unwrap_err().to_string();
        assert!(none.contains("--device cuda: no CUDA device is available"), "{none}");
        let out_of_range = DeviceChoice::Cuda(Some(2)).resolve(0, 2).unwrap_err().to_string();
        assert!(
            out_of_range.contains("--device cuda:2: this node has 2 CUDA device(s), 0 to 1"),
            "{out_of_range}"
        );
        assert_eq!(serde_json::to_value(DeviceChoice::Cuda(Some(1))).unwrap(), "cuda:1");
    }
}
