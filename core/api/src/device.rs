//! Choosing the compute device and the weight dtype from a config value or
//! a flag. Devices: `auto` (a CUDA GPU when the build has the `cuda`
//! feature and one is present, otherwise the CPU), `cpu`, `cuda` or
//! `cuda:N`. Dtypes: `f32`, `bf16`, `f16`, and the GGUF block
//! quantizations `q8_0` and `q4k` of a model's linear layers.

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
    /// The language model's linear layers and embedding in GGUF `q8_0`
    /// (blocks of 32 weights, 8.5 bits per weight); the rest in f32.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// The language model's linear layers and embedding in GGUF `q4_K`
    /// (super-blocks of 256 weights, 4.5 bits per weight); the rest in f32.
    #[serde(rename = "q4k")]
    Q4k,
}

impl WeightDtype {
    /// Every dtype's name.
    #[doc(hidden)]
    pub const NAMES: [&'static str; 5] = ["f32", "bf16", "f16", "q8_0", "q4k"];

    /// Whether the linear layers are block-quantized (`q8_0`, `q4k`).
    pub fn is_quantized(self) -> bool {
        matches!(self, Self::Q8_0 | Self::Q4k)
    }
}

/// The dtype of activations and of every weight that is not quantized
/// (f32 for the quantized dtypes).
impl From<WeightDtype> for candle_core::DType {
    fn from(d: WeightDtype) -> Self {
        match d {
            WeightDtype::F32 | WeightDtype::Q8_0 | WeightDtype::Q4k => candle_core::DType::F32,
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
            "q8_0" => Ok(Self::Q8_0),
            "q4k" => Ok(Self::Q4k),
            _ => Err(format!(
                "unknown dtype `{s}`; expected {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4k => "q4k",
        })
    }
}

/// Options for loading a checkpoint directory.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Device to place the weights on.
    pub device: Device,
    /// Weight dtype (`f32`, `bf16`, `f16`); backends may reject some.
    pub dtype: candle_core::DType,
    /// Block quantization of the linear layers (`--dtype q8_0 | q4k`);
    /// backends that cannot quantize refuse it.
    pub quant: Option<WeightDtype>,
    /// An already-quantized GGUF file with the linear layers, instead of
    /// quantizing at load; backends that cannot read one refuse it.
    pub gguf: Option<std::path::PathBuf>,
}

impl LoadOptions {
    /// Load onto `device` with weights in `dtype`.
    pub fn new(device: Device, dtype: candle_core::DType) -> Self {
        Self {
            device,
            dtype,
            quant: None,
            gguf: None,
        }
    }

    /// Load onto `device` with weights as `weights` says (quantized or not).
    #[doc(hidden)]
    pub fn with_weights(device: Device, weights: WeightDtype) -> Self {
        Self {
            quant: weights.is_quantized().then_some(weights),
            ..Self::new(device, weights.into())
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::new(Device::Cpu, candle_core::DType::F32)
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

    #[test]
    fn dtypes_parse_print_and_deserialize_alike() {
        #[derive(serde::Deserialize)]
        struct D {
            dtype: WeightDtype,
        }
        for name in WeightDtype::NAMES {
            let d: WeightDtype = name.parse().unwrap();
            assert_eq!(d.to_string(), name);
            let de: D = toml::from_str(&format!("dtype = \"{name}\"")).unwrap();
            assert_eq!(de.dtype, d);
        }
        assert!(WeightDtype::Q8_0.is_quantized() && WeightDtype::Q4k.is_quantized());
        assert!(!WeightDtype::Bf16.is_quantized());
        assert_eq!(
            candle_core::DType::from(WeightDtype::Q4k),
            candle_core::DType::F32
        );
        let err = "q4_k".parse::<WeightDtype>().unwrap_err();
        assert!(err.contains("f32, bf16, f16, q8_0, q4k"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn auto_falls_back_to_the_cpu_and_cuda_explains_itself() {
        assert!(DeviceChoice::Auto.resolve().unwrap().is_cpu());
        let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
