//! The tiny vision-language diffusion model: patch embedding of the image,
//! token embeddings, a bidirectional transformer and a head over the
//! vocabulary, plus its [`ModelBackend`] implementation.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Init, Linear, VarBuilder, VarMap};
use image::imageops::FilterType;
use rediff_api::cache::{CachedPass, KvCache};
use rediff_api::image::SourceImage;
use rediff_api::model::{ModelBackend, Prompt, PromptContext};
use rediff_api::tokens::{SpecialTokens, TextTokenizer};
use rediff_api::{Error, Result};
use rediff_nn::checkpoint::{load_varmap, save_varmap, write_json};
use rediff_nn::kv::PassKv;
use rediff_nn::seeded_init::seeded_var_builder;

use crate::config::{TinyVlmConfig, EMBEDDING_STD, MODEL_TYPE};
use crate::layers::{Block, PatchEmbed, RmsNorm};

/// Weights file name in a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// The network.
#[derive(Debug, Clone)]
pub struct TinyVlm {
    embed_tokens: Embedding,
    patch_embed: PatchEmbed,
    pos_image: Tensor,
    pos_text: Tensor,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    cfg: TinyVlmConfig,
}

impl TinyVlm {
    /// Builds every layer under `model.*` plus `lm_head`.
    pub fn new(cfg: &TinyVlmConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.arch.hidden_size;
        let init = Init::Randn {
            mean: 0.0,
            stdev: EMBEDDING_STD,
        };
        let m = vb.pp("model");
        let emb = m
            .pp("embed_tokens")
            .get_with_hints((cfg.vocab_size, d), "weight", init)?;
        let layers = (0..cfg.arch.num_layers)
            .map(|i| Block::new(cfg, m.pp("layers").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let head = vb.pp("lm_head").get_with_hints(
            (cfg.vocab_size, d),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0 / (d as f64).sqrt(),
            },
        )?;
        Ok(Self {
            embed_tokens: Embedding::new(emb, d),
            patch_embed: PatchEmbed::new(cfg, m.pp("patch_embed"))?,
            pos_image: m.get_with_hints(
                (cfg.num_patches(), d),
                "pos_image",
                Init::Randn {
                    mean: 0.0,
                    stdev: cfg.arch.image_position_std,
                },
            )?,
            pos_text: m.get_with_hints(
                (cfg.arch.max_prompt_len + cfg.arch.max_response_len, d),
                "pos_text",
                init,
            )?,
            layers,
            norm: RmsNorm::new(d, cfg.arch.rms_norm_eps, m.pp("norm"))?,
            lm_head: Linear::new(head, None),
            cfg: cfg.clone(),
        })
    }

    /// Embeds images and prompts into the prefix of the sequence.
    ///
    /// # Shapes
    /// - `patches`: `[batch, num_patches, 3 * patch^2]`
    /// - `prompt`: `[batch, prompt_len]` (`u32`)
    /// - returns: `[batch, num_patches + prompt_len, hidden]`
    pub fn embed_prefix(&self, patches: &Tensor, prompt: &Tensor) -> candle_core::Result<Tensor> {
        let lp = prompt.dim(1)?;
        let img = self
            .patch_embed
            .forward(patches)?
            .broadcast_add(&self.pos_image)?;
        let txt = self
            .embed_tokens
            .forward(prompt)?
            .broadcast_add(&self.pos_text.narrow(0, 0, lp)?)?;
        Tensor::cat(&[img, txt], 1)
    }

    /// Logits over the response positions.
    ///
    /// # Shapes
    /// - `prefix`: `[batch, prefix_len, hidden]` (from [`embed_prefix`](Self::embed_prefix))
    /// - `response`: `[batch, L]` (`u32`)
    /// - returns: `[batch, L, vocab]`
    ///
    /// `frozen` (inference only): the weights snapshot from
    /// [`freeze`](Self::freeze), which makes small batches faster.
    pub fn forward(
        &self,
        prefix: &Tensor,
        response: &Tensor,
        training: bool,
        frozen: Option<&FrozenWeights>,
    ) -> candle_core::Result<Tensor> {
        let l = response.dim(1)?;
        let offset = self.cfg.arch.max_prompt_len;
        let resp = self
            .embed_tokens
            .forward(response)?
            .broadcast_add(&self.pos_text.narrow(0, offset, l)?)?;
        let mut x = Tensor::cat(&[prefix, &resp], 1)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, training, frozen.map(|f| &f.blocks[i]))?;
        }
        let start = x.dim(1)? - l;
        let x = self.norm.forward(&x.narrow(1, start, l)?, training)?;
        crate::layers::dense(&x, &self.lm_head, frozen.map(|f| &f.lm_head))
    }

    /// [`forward`](Self::forward) for inference with the sampler's key/value
    /// cache (see [`rediff_api::cache`]): a full pass keeps every layer's
    /// keys and values in `cache`; a window pass embeds only the window's
    /// response tokens and attends to the kept ones elsewhere.
    ///
    /// # Shapes
    /// - `prefix`: `[batch, P, hidden]`, `response`: `[batch, L]` (`u32`)
    /// - returns: `[batch, L, vocab]` (full) or `[batch, window, vocab]`
    pub fn forward_cached(
        &self,
        prefix: &Tensor,
        response: &Tensor,
        frozen: Option<&FrozenWeights>,
        cache: &mut KvCache,
        pass: CachedPass,
    ) -> Result<Tensor> {
        let (batch, l) = response.dims2()?;
        let p = prefix.dim(1)?;
        let offset = self.cfg.arch.max_prompt_len;
        let embed = |from: usize, n: usize| -> candle_core::Result<Tensor> {
            self.embed_tokens
                .forward(&response.narrow(1, from, n)?)?
                .broadcast_add(&self.pos_text.narrow(0, offset + from, n)?)
        };
        let (mut x, stored, start, keep) = match &pass {
            CachedPass::Full => (Tensor::cat(&[prefix, &embed(0, l)?], 1)?, None, 0, true),
            CachedPass::Window(w) => {
                let kv = cache.get::<PassKv>().ok_or_else(|| {
                    Error::invalid("a cached window pass before any full pass of tiny-vlm")
                })?;
                kv.check_window(batch, p, l, w).map_err(Error::invalid)?;
                (embed(w.start, w.len())?, Some(kv), p + w.start, false)
            }
        };
        let mut kept = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let (next, kv) = layer.forward_kv(
                &x,
                frozen.map(|f| &f.blocks[i]),
                stored.map(|s| (&s.layers[i], start)),
            )?;
            x = next;
            if keep {
                kept.push(kv);
            }
        }
        let n = x.dim(1)?;
        let tail = if keep { l } else { n };
        let x = self.norm.forward(&x.narrow(1, n - tail, tail)?, false)?;
        let logits = crate::layers::dense(&x, &self.lm_head, frozen.map(|f| &f.lm_head))?;
        if keep {
            cache.set(PassKv {
                layers: kept,
                batch,
                prefix_len: p,
                response_len: l,
            });
        }
        Ok(logits)
    }

    /// The weights of every linear layer, transposed into contiguous copies
    /// for inference (see [`crate::layers::FrozenBlock`]).
    pub fn freeze(&self) -> candle_core::Result<FrozenWeights> {
        Ok(FrozenWeights {
            blocks: self
                .layers
                .iter()
                .map(Block::freeze)
                .collect::<candle_core::Result<Vec<_>>>()?,
            lm_head: crate::layers::transposed(&self.lm_head)?,
        })
    }
}

/// Converts images to normalised patch vectors in `[-1, 1]`, resizing any
/// image whose size differs from the model's.
///
/// # Shapes
/// - returns: `[batch, num_patches, 3 * patch^2]`
pub fn patchify(images: &[&SourceImage], cfg: &TinyVlmConfig, device: &Device) -> Result<Tensor> {
    let size = cfg.arch.image_size as u32;
    let p = cfg.arch.patch_size;
    let side = cfg.arch.image_size / p;
    let dim = cfg.patch_dim();
    let mut out = Vec::with_capacity(images.len() * cfg.num_patches() * dim);
    for src in images {
        let resized;
        let rgb: &[u8] = if src.dimensions() == (size, size) {
            src.rgb()
        } else {
            let img = rediff_formats::rgb_image(src);
            resized = image::imageops::resize(&img, size, size, FilterType::Triangle).into_raw();
            &resized
        };
        let row = 3 * cfg.arch.image_size;
        for py in 0..side {
            for px in 0..side {
                for c in 0..3 {
                    for y in 0..p {
                        for x in 0..p {
                            let v = rgb[(py * p + y) * row + 3 * (px * p + x) + c];
                            out.push(f32::from(v) / 127.5 - 1.0);
                        }
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(
        out,
        (images.len(), cfg.num_patches(), dim),
        device,
    )?)
}

/// Encoded prompts of the tiny model: the embedded prefix.
struct TinyContext {
    prefix: Tensor,
    /// Inference only: the weights as of encoding (a sampler call never
    /// trains between its steps).
    frozen: Option<Arc<FrozenWeights>>,
}

/// Transposed copies of every linear weight, for inference.
#[derive(Debug, Clone)]
pub struct FrozenWeights {
    blocks: Vec<crate::layers::FrozenBlock>,
    lm_head: Tensor,
}

/// The tiny model as a [`ModelBackend`].
pub struct TinyVlmBackend {
    model: TinyVlm,
    varmap: VarMap,
    tokenizer: TextTokenizer,
    device: Device,
    training: AtomicBool,
    /// Transposed weights for inference, reused across batches. Cleared
    /// whenever the weights may change: on every `set_training` call (the
    /// optimiser only steps in training mode) and every `varmap()` access
    /// (loading and copying weights go through it).
    frozen: Mutex<Option<Arc<FrozenWeights>>>,
}

impl TinyVlmBackend {
    fn invalidate_frozen(&self) {
        if let Ok(mut f) = self.frozen.lock() {
            *f = None;
        }
    }

    fn frozen_weights(&self) -> Result<Arc<FrozenWeights>> {
        let mut f = self
            .frozen
            .lock()
            .map_err(|_| Error::invalid("lock poisoned"))?;
        if let Some(w) = f.as_ref() {
            return Ok(w.clone());
        }
        let w = Arc::new(self.model.freeze()?);
        *f = Some(w.clone());
        Ok(w)
    }

    /// A freshly initialised model; weights drawn from `seed`.
    pub fn new(
        cfg: TinyVlmConfig,
        tokenizer: TextTokenizer,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate().map_err(Error::invalid)?;
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, seed, DType::F32, device);
        let model = TinyVlm::new(&cfg, vb)?;
        Ok(Self {
            model,
            varmap,
            tokenizer,
            device: device.clone(),
            training: AtomicBool::new(false),
            frozen: Mutex::new(None),
        })
    }

    /// Loads a checkpoint directory (`config.json`, `model.safetensors`,
    /// `tokenizer.json`); every error names the file at fault.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        if dtype != DType::F32 {
            return Err(Error::checkpoint(
                dir,
                format!("tiny-vlm runs in f32, not {dtype:?}"),
            ));
        }
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| Error::checkpoint(&config_path, format!("cannot read: {e}")))?;
        let cfg: TinyVlmConfig = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(&config_path, format!("invalid config: {e}")))?;
        cfg.validate()
            .map_err(|e| Error::checkpoint(&config_path, e))?;
        let tokenizer = rediff_formats::HfTokenizer::from_file(&dir.join("tokenizer.json"))?;
        if tokenizer.vocab_size() != cfg.vocab_size {
            return Err(Error::checkpoint(
                dir.join("tokenizer.json"),
                format!(
                    "vocabulary of {} tokens, config.json says {}",
                    tokenizer.vocab_size(),
                    cfg.vocab_size
                ),
            ));
        }
        let backend = Self::new(cfg, tokenizer, 0, device)?;
        load_varmap(&backend.varmap, &dir.join(WEIGHTS_FILE))?;
        Ok(backend)
    }

    fn check_response_len(&self, response: &Tensor) -> Result<()> {
        let l = response.dim(1)?;
        if l > self.model.cfg.arch.max_response_len {
            return Err(Error::invalid(format!(
                "response length {l} exceeds tiny-vlm's max_response_len {}",
                self.model.cfg.arch.max_response_len
            )));
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &TinyVlmConfig {
        &self.model.cfg
    }

    /// The network.
    pub fn network(&self) -> &TinyVlm {
        &self.model
    }
}

impl ModelBackend for TinyVlmBackend {
    fn kind(&self) -> &str {
        MODEL_TYPE
    }

    fn vocab_size(&self) -> usize {
        self.model.cfg.vocab_size
    }

    fn special_tokens(&self) -> &SpecialTokens {
        &self.model.cfg.special_tokens
    }

    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn single_prompt_threads(&self) -> Option<usize> {
        // Measured (the twin benchmark): one caption is slower on two
        // compute threads than on one; its matrices are too small to split.
        Some(1)
    }

    fn prompt_ids(&self, question: &str) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode(question)?;
        if ids.len() > self.model.cfg.arch.max_prompt_len {
            return Err(Error::invalid(format!(
                "question of {} tokens exceeds tiny-vlm's max_prompt_len {}",
                ids.len(),
                self.model.cfg.arch.max_prompt_len
            )));
        }
        Ok(ids)
    }

    fn encode_prompts(&self, prompts: &[Prompt]) -> Result<PromptContext> {
        if prompts.is_empty() {
            return Err(Error::invalid("no prompts to encode"));
        }
        let lp = prompts[0].ids.len();
        if prompts.iter().any(|p| p.ids.len() != lp) {
            return Err(Error::invalid(
                "tiny-vlm needs prompts of equal length within a batch",
            ));
        }
        if lp > self.model.cfg.arch.max_prompt_len {
            return Err(Error::invalid(format!(
                "prompt of {lp} tokens exceeds max_prompt_len {}",
                self.model.cfg.arch.max_prompt_len
            )));
        }
        let images: Vec<&SourceImage> = prompts
            .iter()
            .map(|p| {
                p.image
                    .as_deref()
                    .ok_or_else(|| Error::invalid("tiny-vlm needs an image in every prompt"))
            })
            .collect::<Result<_>>()?;
        let patches = patchify(&images, &self.model.cfg, &self.device)?;
        let ids: Vec<u32> = prompts.iter().flat_map(|p| p.ids.iter().copied()).collect();
        let ids = Tensor::from_vec(ids, (prompts.len(), lp), &self.device)?;
        let prefix = self.model.embed_prefix(&patches, &ids)?;
        let frozen = if self.training.load(Ordering::Relaxed) {
            None
        } else {
            Some(self.frozen_weights()?)
        };
        Ok(PromptContext::new(
            prompts.len(),
            TinyContext { prefix, frozen },
        ))
    }

    fn forward(&self, context: &PromptContext, response: &Tensor) -> Result<Tensor> {
        let ctx = context
            .get::<TinyContext>()
            .ok_or_else(|| Error::invalid("prompt context was not made by tiny-vlm"))?;
        self.check_response_len(response)?;
        let training = self.training.load(Ordering::Relaxed);
        let frozen = if training {
            None
        } else {
            ctx.frozen.as_deref()
        };
        Ok(self
            .model
            .forward(&ctx.prefix, response, training, frozen)?)
    }

    fn supports_cache(&self) -> bool {
        true
    }

    fn forward_cached(
        &self,
        context: &PromptContext,
        response: &Tensor,
        cache: &mut KvCache,
        pass: CachedPass,
    ) -> Result<Tensor> {
        let ctx = context
            .get::<TinyContext>()
            .ok_or_else(|| Error::invalid("prompt context was not made by tiny-vlm"))?;
        if self.training.load(Ordering::Relaxed) {
            return Err(Error::invalid(
                "tiny-vlm caches keys and values for sampling only, not in training mode",
            ));
        }
        self.check_response_len(response)?;
        self.model
            .forward_cached(&ctx.prefix, response, ctx.frozen.as_deref(), cache, pass)
    }

    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
        self.invalidate_frozen();
    }

    fn varmap(&self) -> Option<&VarMap> {
        self.invalidate_frozen();
        Some(&self.varmap)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_json(&dir.join("config.json"), &self.model.cfg)?;
        save_varmap(&self.varmap, &dir.join(WEIGHTS_FILE))?;
        self.tokenizer.save(&dir.join("tokenizer.json"))
    }
}
