//! # rediff-judge
//!
//! Caption metrics scored by an LLM judge behind any OpenAI-compatible
//! chat API (a hosted model, or one on your GPU behind llama.cpp server,
//! vLLM or Ollama), as the ReDiff paper reports them:
//!
//! - **CLAIR** ([Chan et al., 2023](https://arxiv.org/abs/2310.12971)): the
//!   judge's 0-100 likelihood that the caption and the references describe
//!   the same image, with its reason;
//! - **factuality** and **coverage** after CapMAS
//!   ([Lee et al., 2025](https://arxiv.org/abs/2412.15484)): the caption's
//!   atomic propositions judged true or false against the references, and
//!   multiple-choice questions about the image answered from the caption
//!   alone ("I don't know" allowed);
//! - **CAPTURE**-style scene-graph F1
//!   ([Dong et al., 2024](https://arxiv.org/abs/2405.19092)) with the judge
//!   as parser and exact then synonym matching.
//!
//! Registered as the scorer `judge`, usable in `[[eval.scorers]]` and by
//! `rediff score`. Every reply is cached by what was asked (see [`cache`]),
//! so scoring again costs nothing and a killed run resumes where it
//! stopped; a malformed reply is asked again, then recorded as a failure
//! of that caption's metric and left out of its average.

pub mod cache;
pub mod capture;
mod judge;
mod metric;
mod options;
pub mod parse;
pub mod prompts;
mod scorer;

pub use judge::{Judge, JudgeUsage, StepError};
pub use metric::Metric;
pub use options::JudgeOptions;
pub use scorer::{default_cache, JudgeScorer};

use std::sync::Arc;

use rediff_api::registry::{Plugin, Registrar, RegistryError};

/// Registers the `judge` scorer.
#[derive(Debug, Default, Clone, Copy)]
pub struct JudgePlugin;

impl Plugin for JudgePlugin {
    fn name(&self) -> &str {
        "rediff-judge"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        r.scorer(
            "judge",
            "an LLM judge scores CLAIR, factuality, coverage and CAPTURE-style scene-graph F1",
            |spec, ctx| {
                let raw: serde_json::Value = spec.options()?;
                let mut options: JudgeOptions = spec.options()?;
                // The judge reads text unless its table asks for images (the
                // `openai` expert's default is to send them).
                if raw.pointer("/judge/image").is_none() {
                    options.judge.image = rediff_expert_openai::ImageMode::None;
                }
                let cache = match &options.cache {
                    Some(p) => Some(ctx.resolve(p)),
                    None => default_cache(ctx.out_dir.as_deref()),
                };
                options.synonyms = options.synonyms.map(|p| ctx.resolve(&p));
                let scorer = JudgeScorer::new(options, cache)
                    .map_err(|(key, message)| spec.key_error(&key, message))?;
                Ok(Arc::new(scorer))
            },
        )
    }
}
