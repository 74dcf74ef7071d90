//! # rediff-expert-openai
//!
//! A Stage II expert backed by any OpenAI-compatible chat-completions API:
//! a hosted model, or a model on your own GPU behind vLLM, llama.cpp server
//! or Ollama. As in [ReDiff](https://arxiv.org/abs/2510.19871), the expert
//! sees the image, the question, the reference answer and the draft, and
//! answers `right` or a JSON list of same-length `{org, target}` fixes.
//!
//! ```toml
//! [stage2]
//! expert = { kind = "openai", base_url = "https://api.openai.com/v1", model = "o4-mini", api_key_env = "OPENAI_API_KEY" }
//! ```
//!
//! The API key is read from the named environment variable when the expert
//! is built; it is sent only in the `Authorization` header and never
//! appears in messages, logs, journals or reports. Rate limits (429, with
//! `Retry-After` honoured), server errors, timeouts and connection failures
//! are retried with exponential backoff and jitter ([`backon`]); other client
//! errors end the item with the server's message. When the first requests of
//! a run all fail with 401 the expert reports a fatal error and the run
//! stops instead of failing every item.

mod client;
mod parse;
mod prompt;

pub use client::{OpenAiExpert, OpenAiOptions};
pub use parse::parse_reply;
pub use prompt::{image_data_url, SYSTEM_PROMPT};

use std::sync::Arc;

use rediff_core::registry::{Plugin, Registrar, RegistryError};

/// Registers the `openai` expert.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenAiPlugin;

impl Plugin for OpenAiPlugin {
    fn name(&self) -> &str {
        "rediff-expert-openai"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        r.expert(
            "openai",
            "an OpenAI-compatible chat API (hosted, vLLM, llama.cpp, Ollama) reviews drafts",
            |spec, _| {
                let options: OpenAiOptions = spec.options()?;
                Ok(Arc::new(
                    OpenAiExpert::new(options).map_err(|m| spec.error(m))?,
                ))
            },
        )
    }
}
