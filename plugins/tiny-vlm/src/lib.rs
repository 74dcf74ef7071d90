//! # rediff-tiny-vlm
//!
//! A small masked-diffusion vision-language model on
//! [candle](https://github.com/huggingface/candle), shaped like LLaDA-V in
//! miniature (image features spliced before the prompt, a bidirectional
//! transformer, logits at every response position) so the synthetic
//! benchmark of [ReDiff](https://arxiv.org/abs/2510.19871) runs on a laptop.
//!
//! A checkpoint directory holds `config.json` ([`TinyVlmConfig`]),
//! `model.safetensors` and `tokenizer.json`.

pub mod config;
pub mod layers;
pub mod model;

pub use config::{TinyVlmConfig, TinyVlmOptions, MODEL_TYPE};
pub use model::{TinyVlm, TinyVlmBackend};

use rediff_api::registry::{Plugin, Registrar, RegistryError};
use rediff_api::Error;

/// Registers the `tiny-vlm` model and its checkpoint loader.
#[derive(Debug, Default, Clone, Copy)]
pub struct TinyVlmPlugin;

impl Plugin for TinyVlmPlugin {
    fn name(&self) -> &str {
        "rediff-tiny-vlm"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        r.model(
            "tiny-vlm",
            "small bidirectional transformer VLM on candle (patch embedding + token embedding)",
            |spec, ctx| {
                let opts: TinyVlmOptions = spec.options()?;
                let tokenizer = ctx.tokenizer.clone().ok_or_else(|| {
                    Error::from(spec.error(
                        "tiny-vlm needs a tokenizer from the data source (use a data source that defines one, such as `shapes`)",
                    ))
                })?;
                let cfg = TinyVlmConfig::new(opts, &tokenizer).map_err(|m| spec.error(m))?;
                Ok(Box::new(TinyVlmBackend::new(cfg, tokenizer, ctx.seed, &ctx.device)?))
            },
        )?;
        r.model_loader(
            MODEL_TYPE,
            "loads tiny-vlm checkpoint directories",
            |dir, opts| {
                if let Some(q) = opts.quant {
                    return Err(rediff_api::Error::checkpoint(
                        dir,
                        format!(
                            "tiny-vlm runs in f32 only, not {}: its matrices are too small for \
block quantization to pay (use --dtype f32)",
                            q
                        ),
                    ));
                }
                if let Some(g) = &opts.gguf {
                    return Err(rediff_api::Error::checkpoint(
                        g,
                        "tiny-vlm cannot load GGUF weights (LLaDA-V checkpoints only)",
                    ));
                }
                Ok(Box::new(TinyVlmBackend::load(
                    dir,
                    &opts.device,
                    opts.dtype,
                )?))
            },
        )
    }
}
