//! Device selection: `auto | cpu | cuda[:N] | metal[:N]`. CUDA and Metal exist only when the
//! crate is built with the `cuda` / `metal` features; asking for them otherwise is an error
//! that says how to get them, never a silent fall-back to the CPU.

use crate::error::{EngineError, Result};
use candle_core::Device;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl FromStr for DeviceChoice {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, ordinal) = match s.split_once(':') {
            Some((k, n)) => (
                k,
                n.parse::<usize>()
                    .map_err(|_| EngineError::Device(s.into(), "bad device ordinal".into()))?,
            ),
            None => (s, 0),
        };
        match kind.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(ordinal)),
            "metal" => Ok(Self::Metal(ordinal)),
            _ => Err(EngineError::Device(
                s.into(),
                "expected auto, cpu, cuda[:N] or metal[:N]".into(),
            )),
        }
    }
}

impl DeviceChoice {
    /// Opens the device. `Auto` takes CUDA, then Metal, when compiled in and present.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(EngineError::Device(
                        format!("cuda:{n}"),
                        "this build has no CUDA support (rebuild with `--features cuda`)".into(),
                    ));
                }
                Device::new_cuda(n).map_err(|e| EngineError::Device(format!("cuda:{n}"), e.to_string()))
            }
            Self::Metal(n) => {
                if !candle_core::utils::metal_is_available() {
                    return Err(EngineError::Device(
                        format!("metal:{n}"),
                        "this build has no Metal support (rebuild with `--features metal`)".into(),
                    ));
                }
                Device::new_metal(n).map_err(|e| EngineError::Device(format!("metal:{n}"), e.to_string()))
            }
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if candle_core::utils::metal_is_available() {
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// A short human name for a device: `cpu`, `cuda:0`, `metal:0`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Memory of the first GPU this build runs on (CUDA: the device's total), or `None` in a build
/// without GPU support, without a GPU, or on Metal (whose memory is the machine's, which the
/// caller already counts). `FREEZE_ATTN_GPU_MEMORY_BYTES` overrides it, to plan for another
/// machine (and for tests).
pub fn gpu_memory() -> Option<u64> {
    if let Some(v) = std::env::var("FREEZE_ATTN_GPU_MEMORY_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return Some(v);
    }
    #[cfg(feature = "cuda")]
    if candle_core::utils::cuda_is_available() {
        if let Ok((_, total)) = candle_core::cuda::cudarc::driver::CudaContext::new(0).and_then(|c| c.mem_get_info()) {
            return Some(total as u64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(1));
        assert_eq!("metal".parse::<DeviceChoice>().unwrap(), DeviceChoice::Metal(0));
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_always_opens_and_auto_never_fails() {
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
        DeviceChoice::Auto.open().unwrap();
    }

    #[cfg(not(any(feature = "cuda", feature = "metal")))]
    #[test]
    fn gpu_without_feature_is_a_clear_error() {
        let e = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
