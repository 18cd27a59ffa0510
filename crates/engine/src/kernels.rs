//! Which kernels a model runs: our own CPU kernels (named by the instruction set they use), or
//! the device-generic path, candle's own ops, which is what CUDA and Metal run.
//!
//! The generic path can also run on the CPU (`FREEZE_ATTN_KERNELS=generic`), so the code a GPU
//! runs is tested on every machine: same model code, same ops, only the device differs. The two
//! paths are different arithmetic (candle's quantized matmuls and batched attention against our
//! fixed-order kernels), so their logits differ in the last bits; each path is exact with itself
//! (a thawed state continues as an uninterrupted run of the same path), and a state written by
//! one loads in the other (the state format and fingerprint do not depend on the kernels).

use crate::error::{EngineError, Result};
use crate::model::cpu::isa::{isa, Isa};
use candle_core::{Device, DeviceLocation};
use serde::{Deserialize, Serialize};

/// The environment variable that asks for the device-generic path on the CPU.
pub const KERNELS_ENV: &str = "FREEZE_ATTN_KERNELS";

/// What the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// Our CPU kernels on the CPU; candle's ops elsewhere.
    #[default]
    Auto,
    /// candle's ops everywhere, the CPU included.
    Generic,
}

impl KernelChoice {
    /// The choice `FREEZE_ATTN_KERNELS` makes (`auto` when unset); another value is an error
    /// that names the variable, never a silent default.
    pub fn from_env() -> Result<Self> {
        match std::env::var(KERNELS_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Self::Auto),
            Ok(v) => v.parse(),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(EngineError::Invalid(format!("{KERNELS_ENV} is not valid text")))
            }
        }
    }
}

impl std::str::FromStr for KernelChoice {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "generic" => Ok(Self::Generic),
            _ => Err(EngineError::Invalid(format!(
                "{KERNELS_ENV}={s:?}: expected `auto` (our CPU kernels) or `generic` (candle's ops, the GPU path)"
            ))),
        }
    }
}

/// The kernels a loaded model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum Kernels {
    /// Our CPU kernels with AVX-512.
    Avx512,
    /// Our CPU kernels with AVX2.
    Avx2,
    /// Our CPU kernels in plain Rust.
    Portable,
    /// candle's ops on the CPU (the code the GPUs run).
    Generic,
    /// candle's ops on CUDA.
    Cuda,
    /// candle's ops on Metal.
    Metal,
}

impl Kernels {
    /// The kernels `choice` gives on `device`.
    pub fn select(choice: KernelChoice, device: &Device) -> Self {
        match device.location() {
            DeviceLocation::Cuda { .. } => Self::Cuda,
            DeviceLocation::Metal { .. } => Self::Metal,
            DeviceLocation::Cpu if choice == KernelChoice::Generic => Self::Generic,
            DeviceLocation::Cpu => match isa() {
                Isa::Avx512 => Self::Avx512,
                Isa::Avx2 => Self::Avx2,
                Isa::Portable => Self::Portable,
            },
        }
    }

    /// Whether these are our CPU kernels (as opposed to candle's ops).
    pub fn is_ours(self) -> bool {
        matches!(self, Self::Avx512 | Self::Avx2 | Self::Portable)
    }

    /// The name `bench --json`, `generate --json` and the app show.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Portable => "portable",
            Self::Generic => "generic",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        }
    }
}

impl std::fmt::Display for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_bad_values_name_the_variable() {
        assert_eq!("generic".parse::<KernelChoice>().unwrap(), KernelChoice::Generic);
        assert_eq!(" Auto ".parse::<KernelChoice>().unwrap(), KernelChoice::Auto);
        let e = "cuda".parse::<KernelChoice>().unwrap_err().to_string();
        assert!(e.contains(KERNELS_ENV) && e.contains("generic"), "{e}");
    }

    #[test]
    fn the_cpu_runs_ours_unless_generic_is_asked_for() {
        let auto = Kernels::select(KernelChoice::Auto, &Device::Cpu);
        assert!(auto.is_ours(), "{auto}");
        assert_eq!(Kernels::select(KernelChoice::Generic, &Device::Cpu), Kernels::Generic);
        assert!(!Kernels::Generic.is_ours() && !Kernels::Cuda.is_ours());
    }
}
