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
//! The API key (and any `headers_env` value) is read from the named
//! environment variable when the expert is built; it is sent only in its
//! header and never appears in messages, logs, journals or reports. Replies
//! are capped (`max_tokens`, sent in the field the server honours). Rate
//! limits (429, with `Retry-After` honoured), server errors, timeouts and
//! connection failures are retried with exponential backoff and jitter
//! ([`backon`]); other client errors end the item with the server's message.
//! When items keep failing the same persistent way (a wrong path or key, a
//! chat template that rejects content lists) a circuit breaker stops the run
//! with the likely cause instead of failing every item.

mod breaker;
mod chat;
mod client;
mod failure;
mod options;
mod parse;
mod prompt;

pub use chat::{chat_body, ChatAnswer, ChatClient, ChatError};
pub use client::OpenAiExpert;
pub use options::{ImageMode, OpenAiOptions, OptionError, TokenField};
pub use parse::parse_reply;
pub use prompt::{data_url, image_data_url, system_prompt};

use std::sync::Arc;

use rediff_api::registry::{Plugin, Registrar, RegistryError};

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
                let expert =
                    OpenAiExpert::new(options).map_err(|e| spec.key_error(e.key, e.message))?;
                Ok(Arc::new(expert))
            },
        )
    }
}
