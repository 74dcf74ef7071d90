//! The model-backend trait the sampler and the trainers drive.
//!
//! One trait fits both the tiny built-in model and a LLaDA-V checkpoint: the
//! backend owns its tokenizer, chat template and image preprocessing; the
//! engine only sees token ids, images and logits.

use std::any::Any;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::image::SourceImage;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::cache::{CachedPass, KvCache};
use crate::error::Result;
use crate::tokens::{SpecialTokens, TextTokenizer};

/// One prompt: an image (none for a text-only prompt) and the backend's
/// prompt ids (from [`ModelBackend::prompt_ids`]).
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The decoded image, or `None` for a text-only prompt.
    pub image: Option<Arc<SourceImage>>,
    /// Prompt token ids (chat template and image placeholder included where the backend uses them).
    pub ids: Vec<u32>,
}

/// A backend's encoded prompts (vision features, prompt embeddings, masks),
/// computed once per batch and reused for every sampler step.
///
/// Opaque to the engine: each backend stores its own type inside.
pub struct PromptContext {
    batch: usize,
    prompt_lens: Option<Vec<usize>>,
    overrides: Mutex<Vec<Vec<(usize, u32)>>>,
    inner: Box<dyn Any + Send + Sync>,
}

impl PromptContext {
    /// Wraps a backend-specific value for a batch of `batch` prompts.
    pub fn new<T: Any + Send + Sync>(batch: usize, value: T) -> Self {
        Self {
            batch,
            prompt_lens: None,
            overrides: Mutex::new(vec![Vec::new(); batch]),
            inner: Box::new(value),
        }
    }

    /// Replaces prompt position `position` of prompt `i` by the embedding
    /// of `token` from now on (the reference's selection can rewrite prompt
    /// positions, see [`crate::topk`]); backends that implement
    /// [`ModelBackend::prompt_logits`] apply these in every forward pass.
    #[doc(hidden)]
    pub fn override_prompt(&self, i: usize, position: usize, token: u32) {
        let mut o = self.overrides.lock().unwrap_or_else(|p| p.into_inner());
        o[i].retain(|&(p, _)| p != position);
        o[i].push((position, token));
    }

    /// Prompt `i`'s rewritten positions and their tokens, in the order written.
    pub fn prompt_overrides(&self, i: usize) -> Vec<(usize, u32)> {
        self.overrides.lock().unwrap_or_else(|p| p.into_inner())[i].clone()
    }

    /// Records each prompt's length in the model's sequence (image features
    /// included), which the reference's selection rule depends on (see
    /// [`crate::topk`]).
    pub fn with_prompt_lengths(mut self, lengths: Vec<usize>) -> Self {
        debug_assert_eq!(lengths.len(), self.batch);
        self.prompt_lens = Some(lengths);
        self
    }

    /// Prompt `i`'s length in the model's sequence, when the backend gave it.
    pub fn prompt_len(&self, i: usize) -> Option<usize> {
        self.prompt_lens.as_ref().map(|l| l[i])
    }

    /// Number of prompts encoded.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The backend's value, if it is of type `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.inner.downcast_ref()
    }
}

/// A masked-diffusion vision-language model.
///
/// Implementations are registered under [`crate::ComponentKind::Model`].
pub trait ModelBackend: Send + Sync {
    /// Registered kind name (for example `tiny-vlm`).
    fn kind(&self) -> &str;

    /// Vocabulary size of the output head.
    fn vocab_size(&self) -> usize;

    /// Special token ids.
    fn special_tokens(&self) -> &SpecialTokens;

    /// The tokenizer matching the vocabulary.
    fn tokenizer(&self) -> &TextTokenizer;

    /// Device the weights live on.
    fn device(&self) -> &Device;

    /// Compute threads that caption a single prompt fastest, when fewer than
    /// every core (a small model's matrices are too small to split: the
    /// tiny model is faster on one thread than on two). `None`: all cores.
    fn single_prompt_threads(&self) -> Option<usize> {
        None
    }

    /// How to load another checkpoint of this model so it runs like this
    /// one: same device, same weight precision (Stage II loads each round's
    /// trained model with it). Default: this device, `f32` weights.
    fn load_options(&self) -> crate::device::LoadOptions {
        crate::device::LoadOptions::new(self.device().clone(), candle_core::DType::F32)
    }

    /// The prompt ids for a question about an image (applies the backend's
    /// chat template and image placeholder).
    fn prompt_ids(&self, question: &str) -> Result<Vec<u32>>;

    /// The prompt ids for a question without an image (prompts whose
    /// [`Prompt::image`] is `None`). Default: not supported.
    fn text_prompt_ids(&self, _question: &str) -> Result<Vec<u32>> {
        Err(crate::Error::invalid(format!(
            "the {} model needs an image with every prompt",
            self.kind()
        )))
    }

    /// Encodes a batch of prompts once (vision tower, prompt embeddings).
    ///
    /// Differentiable when called inside a training step.
    fn encode_prompts(&self, prompts: &[Prompt]) -> Result<PromptContext>;

    /// One forward pass over `[prompt | response]`.
    ///
    /// # Shapes
    /// - `response`: `[batch, L]`, `u32` token ids (`[MASK]` where unknown)
    /// - returns: `[batch, L, vocab]` logits over the response positions (`f32`)
    fn forward(&self, context: &PromptContext, response: &Tensor) -> Result<Tensor>;

    /// Logits at `positions` of prompt `sample`'s sequence for one forward
    /// pass over `[prompt | response]` (with the context's prompt
    /// overrides), one `vocab`-long row per position. Backends that return
    /// `Some` apply [`PromptContext::prompt_overrides`] in [`forward`](Self::forward)
    /// too; the default `None` means the backend cannot rewrite its prompt,
    /// and the sampler counts such picks without applying them.
    fn prompt_logits(
        &self,
        _context: &PromptContext,
        _sample: usize,
        _response: &[u32],
        _positions: &[usize],
    ) -> Result<Option<Vec<Vec<f32>>>> {
        Ok(None)
    }

    /// Whether [`forward_cached`](Self::forward_cached) is implemented.
    fn supports_cache(&self) -> bool {
        false
    }

    /// A forward pass that keeps or reuses keys and values (see
    /// [`crate::cache`]); for sampling only.
    ///
    /// [`CachedPass::Full`] runs over every position like
    /// [`forward`](Self::forward), with the context's prompt overrides, and
    /// stores every layer's keys and values in `cache`.
    /// [`CachedPass::Window`] embeds only the window's response tokens and
    /// attends to the stored keys and values of every other position; an
    /// error when `cache` holds nothing from this backend.
    ///
    /// # Shapes
    /// - `response`: `[batch, L]` (`u32`), the whole response
    /// - returns: `[batch, L, vocab]` for a full pass, `[batch, window, vocab]` for a window (`f32`)
    fn forward_cached(
        &self,
        _context: &PromptContext,
        _response: &Tensor,
        _cache: &mut KvCache,
        _pass: CachedPass,
    ) -> Result<Tensor> {
        Err(crate::Error::invalid(format!(
            "the {} model cannot cache keys and values between steps; use `cache = \"none\"`",
            self.kind()
        )))
    }

    /// Switches between training (differentiable ops only) and inference
    /// (fused kernels where the backend has them). Default: no-op.
    fn set_training(&self, _training: bool) {}

    /// Trainable variables (`None` for a frozen backend).
    fn varmap(&self) -> Option<&VarMap>;

    /// Writes a checkpoint directory (`config.json`, weights, `tokenizer.json`).
    fn save(&self, dir: &Path) -> Result<()>;
}
