//! Choosing the compute device and the weight dtype from a config value or
//! a flag. Devices: `auto` (a CUDA GPU when the build has the `cuda`
//! feature and one is present, otherwise the CPU), `cpu`, `cuda` or
//! `cuda:N`. Dtypes: `f32`, `bf16`, `f16`.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// Where weights and compute live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// GPU 0 when available to this build, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU `N` (an error when the build lacks the `cuda` feature or the GPU is absent).
    Cuda(usize),
}

impl DeviceChoice {
    /// The candle device, or an error saying why the GPU cannot be used.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
            DeviceChoice::Cuda(n) => Device::new_cuda(n).map_err(|e| {
                // candle appends a backtrace to driver errors; keep the cause.
                let text = e.to_string();
                let cause = text.split("    0:").next().unwrap_or(&text).trim();
                Error::invalid(format!(
                    "cannot use cuda:{n} ({cause}); build with `--features cuda` on a machine with an NVIDIA GPU, or use `cpu`"
                ))
            }),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device `{s}`; expected auto, cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Weight dtype as a config value or flag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    /// 32-bit floats (4 bytes per weight; exact).
    #[default]
    F32,
    /// bfloat16 (2 bytes per weight; the published checkpoints' dtype).
    Bf16,
    /// float16 (2 bytes per weight).
    F16,
}

impl From<WeightDtype> for candle_core::DType {
    fn from(d: WeightDtype) -> Self {
        match d {
            WeightDtype::F32 => candle_core::DType::F32,
            WeightDtype::Bf16 => candle_core::DType::BF16,
            WeightDtype::F16 => candle_core::DType::F16,
        }
    }
}

impl FromStr for WeightDtype {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "f16" => Ok(Self::F16),
            _ => Err(format!("unknown dtype `{s}`; expected f32, bf16 or f16")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_rejects_others() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(3)
        );
        let err = "gpu".parse::<DeviceChoice>().unwrap_err();
        assert!(err.contains("auto, cpu, cuda or cuda:N"), "{err}");
        assert!(DeviceChoice::Cpu.resolve().unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn auto_falls_back_to_the_cpu_and_cuda_explains_itself() {
        assert!(DeviceChoice::Auto.resolve().unwrap().is_cpu());
        let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
