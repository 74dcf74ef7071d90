//! # rediff-llada-v
//!
//! Loads the published [LLaDA-V](https://arxiv.org/abs/2505.16933) and
//! [ReDiff](https://arxiv.org/abs/2510.19871) checkpoints (Hugging Face
//! directories on local disk) and runs them through rediff's
//! [`ModelBackend`](rediff_api::ModelBackend), so both samplers, evaluation,
//! drafting and the `model` expert work on the real 8B model:
//!
//! - [`siglip`]: the SigLIP so400m tower up to its last saved layer;
//! - [`projector`]: the `mlp2x_gelu` projector;
//! - [`anyres`], [`preprocess`], [`merge`]: `anyres_max_4` tiling, spatial
//!   unpadding and the image-newline vector;
//! - [`llama`]: the bidirectional LLaMA language model;
//! - [`network`]: all of it loaded from a directory, without the tokenizer;
//! - [`prompt`]: the chat template and the reference's image-token rule;
//! - [`weights`]: memory-mapped sharded safetensors with a used-tensor ledger;
//! - [`testing`]: tiny random checkpoints in the published layout.
//!
//! Nothing is downloaded: the user passes a directory.

pub mod anyres;
pub mod backend;
pub mod config;
pub mod llama;
pub mod merge;
pub mod network;
pub mod pil;
pub mod preprocess;
pub mod projector;
pub mod prompt;
pub mod quant;
pub mod siglip;
pub mod testing;
pub mod weights;

use std::path::PathBuf;

pub use backend::{LladaVBackend, LladaVOptions};
pub use config::{LladaVConfig, LLADA_MODEL_TYPE, MODEL_TYPE};
pub use network::{LladaV, Quantization};

use crate::quant::QuantType;
use rediff_api::device::{DeviceChoice, WeightDtype};
use rediff_api::registry::{Plugin, Registrar, RegistryError};
use serde::Deserialize;

/// Options of the `llada-v` model component in a pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LladaVModelOptions {
    /// Checkpoint directory (relative paths resolve against the pipeline file's directory).
    pub path: PathBuf,
    /// Weight dtype (default f32); `q8_0` or `q4k` quantize the language
    /// model's embedding and linear layers at load (the rest runs in f32).
    #[serde(default)]
    pub dtype: WeightDtype,
    /// An already-quantized GGUF file of the language model (`rediff
    /// quantize` writes one), instead of quantizing at load.
    #[serde(default)]
    pub gguf: Option<PathBuf>,
    /// `auto` (default: a GPU when the build has the `cuda` feature and one is present), `cpu`, `cuda`, `cuda:N`.
    #[serde(default)]
    pub device: DeviceChoice,
    /// System prompt of the chat template (default: LLaDA-V's).
    #[serde(default)]
    pub system_prompt: Option<String>,
}

/// Registers the `llada-v` model, and the checkpoint loaders and quantizers
/// for `model_type` `llava_llada` and `llada`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LladaVPlugin;

impl Plugin for LladaVPlugin {
    fn name(&self) -> &str {
        "rediff-llada-v"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        r.model(
            "llada-v",
            "a LLaDA-V / ReDiff checkpoint directory (SigLIP + mlp2x_gelu + bidirectional LLaMA), frozen",
            |spec, ctx| {
                let mut opts: LladaVModelOptions = spec.options()?;
                opts.path = ctx.resolve(&opts.path);
                let gguf = opts.gguf.as_ref().map(|g| ctx.resolve(g));
                let options = LladaVOptions {
                    device: opts.device.resolve()?,
                    dtype: opts.dtype.into(),
                    system_prompt: opts
                        .system_prompt
                        .unwrap_or_else(|| prompt::DEFAULT_SYSTEM_PROMPT.into()),
                    quant: LladaVOptions::quantization(QuantType::of(opts.dtype), gguf.as_deref()),
                };
                Ok(Box::new(LladaVBackend::load(&opts.path, options)?))
            },
        )?;
        for model_type in [MODEL_TYPE, LLADA_MODEL_TYPE] {
            r.model_loader(
                model_type,
                "loads LLaDA-V / ReDiff checkpoint directories",
                |dir, opts| {
                    let options = LladaVOptions {
                        device: opts.device.clone(),
                        dtype: opts.dtype,
                        quant: LladaVOptions::quantization(
                            opts.quant.and_then(QuantType::of),
                            opts.gguf.as_deref(),
                        ),
                        ..Default::default()
                    };
                    Ok(Box::new(LladaVBackend::load(dir, options)?))
                },
            )?;
            r.quantizer(
                model_type,
                "writes the language model's embedding and linear layers as GGUF (q8_0, q4k) for --gguf",
                |dir, dtype, out| {
                    let Some(quant) = QuantType::of(dtype) else {
                        return Err(rediff_api::Error::invalid(format!(
                            "`{dtype}` is not a quantized dtype; expected q8_0 or q4k"
                        )));
                    };
                    Ok(quant::write_gguf(dir, quant, out)? as u64)
                },
            )?;
        }
        Ok(())
    }
}
