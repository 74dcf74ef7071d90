//! # rediff-expert-model
//!
//! A Stage II expert that is itself a diffusion checkpoint (any backend
//! rediff can load: the tiny model, or a stronger ReDiff model): it runs
//! refining passes over the draft conditioned on the image and turns the
//! positions it rewrites into `{org, target}` pairs.
//!
//! ```toml
//! [stage2]
//! expert = { kind = "model", checkpoint = "runs/big/models/rediff", gen_length = 24 }
//! ```
//!
//! With a LLaDA-V / ReDiff 8B checkpoint, add `dtype = "bf16"`; `device`
//! defaults to `auto` (the GPU when rediff is built with `--features cuda`).
//!
//! Each pass is one forward pass over the whole draft (no masks): every
//! answer position whose most likely token differs from the draft's, with
//! at least `min_confidence`, is rewritten. Runs of rewritten positions
//! become pairs, each widened until its `org` occurs once in the draft.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use candle_core::Tensor;
use rediff_api::device::{DeviceChoice, WeightDtype};
use rediff_api::expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, ExpertVerdict};
use rediff_api::model::{ModelBackend, Prompt};
use rediff_api::registry::{LoadOptions, Plugin, Registrar, RegistryError};
use rediff_api::tokens::pad_response;
use rediff_api::RevisePair;
use rediff_formats::image::load_image;
use rediff_sampler::choose;
use serde::Deserialize;

/// Options of `model`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelExpertOptions {
    /// Checkpoint directory (relative paths: against the pipeline file).
    pub checkpoint: PathBuf,
    /// Response length the checkpoint works with. Default 24.
    #[serde(default = "default_gen_length")]
    pub gen_length: usize,
    /// Refining passes over the draft. Default 1.
    #[serde(default = "default_passes")]
    pub passes: usize,
    /// Least probability for a rewrite. Default 0 (any change of the argmax).
    #[serde(default)]
    pub min_confidence: f64,
    /// `remask` (default) or `refine`; see the crate docs.
    #[serde(default)]
    pub strategy: Strategy,
    /// `auto` (default: the GPU when rediff is built with `--features cuda`
    /// and one is present, else the CPU), `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceChoice,
    /// Weight dtype: `f32` (default), `bf16`, `f16`, `q8_0` or `q4k` (backends may refuse some).
    #[serde(default)]
    pub dtype: WeightDtype,
}

/// How a pass re-predicts the draft.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Mask each position in turn and predict it from the rest.
    #[default]
    Remask,
    /// Read the whole draft and predict every position at once.
    Refine,
}

fn default_gen_length() -> usize {
    24
}
fn default_passes() -> usize {
    1
}

/// The expert.
pub struct ModelExpert {
    model: Mutex<Box<dyn ModelBackend>>,
    options: ModelExpertOptions,
}

impl ModelExpert {
    /// Wraps a loaded model.
    pub fn new(model: Box<dyn ModelBackend>, options: ModelExpertOptions) -> Self {
        Self {
            model: Mutex::new(model),
            options,
        }
    }

    /// The draft's token ids after the refining passes, and the answer length.
    fn refine(&self, request: &ExpertRequest) -> rediff_api::Result<(Vec<u32>, Vec<u32>)> {
        let model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let image = Arc::new(load_image(&request.image)?);
        let prompt = Prompt {
            image: Some(image),
            ids: model.prompt_ids(&request.question)?,
        };
        let special = model.special_tokens().clone();
        let draft = model.tokenizer().encode(&request.draft)?;
        let mut tokens = pad_response(&draft, special.eot, self.options.gen_length)
            .map_err(|e| rediff_api::Error::invalid(format!("draft of {}: {e}", request.id)))?;
        let vocab = model.vocab_size();
        let mut noise = rediff_nn::rng::stream(0, "model-expert", 0);
        let l = tokens.len();
        for _ in 0..self.options.passes.max(1) {
            // Rows to run and, for each answer position, the row it is read from.
            let rows: Vec<Vec<u32>> = match self.options.strategy {
                Strategy::Refine => vec![tokens.clone()],
                Strategy::Remask => (0..draft.len())
                    .map(|i| {
                        let mut row = tokens.clone();
                        row[i] = special.mask;
                        row
                    })
                    .collect(),
            };
            if rows.is_empty() {
                break;
            }
            let n = rows.len();
            let prompts: Vec<Prompt> = (0..n).map(|_| prompt.clone()).collect();
            let context = model.encode_prompts(&prompts)?;
            let input = Tensor::from_vec(rows.concat(), (n, l), model.device())?;
            let logits = model
                .forward(&context, &input)?
                .to_device(&candle_core::Device::Cpu)?
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let mut next = tokens.clone();
            for (i, slot) in next.iter_mut().enumerate().take(draft.len()) {
                let row = if n == 1 { 0 } else { i };
                let off = (row * l + i) * vocab;
                let c = choose(
                    &logits[off..off + vocab],
                    &special.suppressed,
                    0.0,
                    &mut noise,
                );
                if c.token != *slot
                    && c.confidence >= self.options.min_confidence
                    && !special.is_special(c.token)
                {
                    *slot = c.token;
                }
            }
            tokens = next;
        }
        Ok((draft.clone(), tokens[..draft.len()].to_vec()))
    }

    fn pairs(&self, draft: &[u32], revised: &[u32]) -> rediff_api::Result<Vec<RevisePair>> {
        let model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let occurs = |span: &[u32]| draft.windows(span.len()).filter(|w| *w == span).count();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut i = 0;
        while i < draft.len() {
            if draft[i] == revised[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < draft.len() && draft[i] != revised[i] {
                i += 1;
            }
            let (mut a, mut b) = (start, i);
            // Widen until the span is unique in the draft.
            while occurs(&draft[a..b]) > 1 {
                if a > 0 {
                    a -= 1;
                } else if b < draft.len() {
                    b += 1;
                } else {
                    break;
                }
            }
            match spans.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => spans.push((a, b)),
            }
        }
        spans
            .into_iter()
            .map(|(a, b)| {
                Ok(RevisePair {
                    org: model.tokenizer().decode(&draft[a..b])?,
                    target: model.tokenizer().decode(&revised[a..b])?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl ExpertCorrector for ModelExpert {
    async fn review(&self, request: &ExpertRequest) -> Result<ExpertReply, ExpertError> {
        let fail = |e: rediff_api::Error| ExpertError::new(false, e.to_string());
        let (draft, revised) = self.refine(request).map_err(fail)?;
        let pairs = self.pairs(&draft, &revised).map_err(fail)?;
        Ok(if pairs.is_empty() {
            ExpertVerdict::Right.into()
        } else {
            ExpertVerdict::Revisions(pairs).into()
        })
    }
}

/// Registers the `model` expert.
#[derive(Debug, Default, Clone, Copy)]
pub struct ModelExpertPlugin;

impl Plugin for ModelExpertPlugin {
    fn name(&self) -> &str {
        "rediff-expert-model"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        r.expert(
            "model",
            "a local diffusion checkpoint revises the draft (refining passes, changed spans as pairs)",
            |spec, ctx| {
                let mut options: ModelExpertOptions = spec.options()?;
                options.checkpoint = ctx.resolve(&options.checkpoint);
                let loader = ctx
                    .checkpoints
                    .as_ref()
                    .ok_or_else(|| spec.error("no checkpoint loaders available to load the expert's model"))?;
                let opts = LoadOptions::with_weights(options.device.resolve()?, options.dtype);
                let model = loader.load(&options.checkpoint, &opts)?;
                Ok(Arc::new(ModelExpert::new(model, options)))
            },
        )
    }
}
