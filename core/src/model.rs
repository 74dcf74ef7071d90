//! The model-backend trait the sampler and the trainers drive.
//!
//! One trait fits both the tiny built-in model and a LLaDA-V checkpoint: the
//! backend owns its tokenizer, chat template and image preprocessing; the
//! engine only sees token ids, images and logits.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use image::RgbImage;

use crate::error::Result;
use crate::tokens::{SpecialTokens, TextTokenizer};

/// One prompt: an image and the backend's prompt ids (from [`ModelBackend::prompt_ids`]).
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The decoded RGB image.
    pub image: Arc<RgbImage>,
    /// Prompt token ids (chat template and image placeholder included where the backend uses them).
    pub ids: Vec<u32>,
}

/// A backend's encoded prompts (vision features, prompt embeddings, masks),
/// computed once per batch and reused for every sampler step.
///
/// Opaque to the engine: each backend stores its own type inside.
pub struct PromptContext {
    batch: usize,
    inner: Box<dyn Any + Send + Sync>,
}

impl PromptContext {
    /// Wraps a backend-specific value for a batch of `batch` prompts.
    pub fn new<T: Any + Send + Sync>(batch: usize, value: T) -> Self {
        Self {
            batch,
            inner: Box::new(value),
        }
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

    /// The prompt ids for a question (applies the backend's chat template).
    fn prompt_ids(&self, question: &str) -> Result<Vec<u32>>;

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

    /// Switches between training (differentiable ops only) and inference
    /// (fused kernels where the backend has them). Default: no-op.
    fn set_training(&self, _training: bool) {}

    /// Trainable variables (`None` for a frozen backend).
    fn varmap(&self) -> Option<&VarMap>;

    /// Writes a checkpoint directory (`config.json`, weights, `tokenizer.json`).
    fn save(&self, dir: &Path) -> Result<()>;
}
