//! A LLaDA-V / ReDiff checkpoint as a [`ModelBackend`]: the samplers,
//! evaluation, drafting and the `model` expert drive it like the tiny model.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rediff_api::cache::{CachedPass, KvCache};
use rediff_api::model::{ModelBackend, Prompt, PromptContext};
use rediff_api::tokens::{SpecialTokens, TextTokenizer};
use rediff_api::{Error, Result};

use crate::config::LladaVConfig;
use crate::network::{read_config, LladaV, Quantization};
use crate::prompt::{tokenize_with_image, ChatTemplate, DEFAULT_SYSTEM_PROMPT, IMAGE_PLACEHOLDER};

/// Tokens the reference never lets the sampler write.
const SUPPRESSED: [&str; 4] = [
    "<|endoftext|>",
    "<|startoftext|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
];

/// How to load a checkpoint.
#[derive(Debug, Clone)]
pub struct LladaVOptions {
    /// Device for weights and compute.
    pub device: Device,
    /// Weight and activation dtype (f32, bf16 or f16); logits are f32.
    pub dtype: DType,
    /// System prompt of the chat template.
    pub system_prompt: String,
    /// Quantization of the language model's embedding and linear layers
    /// (the rest then runs in f32).
    pub quant: Quantization,
}

impl Default for LladaVOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            system_prompt: DEFAULT_SYSTEM_PROMPT.into(),
            quant: Quantization::None,
        }
    }
}

impl LladaVOptions {
    /// The quantization that `quant` and `gguf` ask for: the GGUF file when
    /// one is given, else quantizing at load, else none.
    pub fn quantization(
        quant: Option<crate::quant::QuantType>,
        gguf: Option<&Path>,
    ) -> Quantization {
        match (gguf, quant) {
            (Some(path), _) => Quantization::Gguf(path.to_path_buf()),
            (None, Some(q)) => Quantization::Quantize(q),
            (None, None) => Quantization::None,
        }
    }
}

/// The loaded model with its tokenizer and chat template.
pub struct LladaVBackend {
    net: LladaV,
    tokenizer: TextTokenizer,
    special: SpecialTokens,
    template: ChatTemplate,
    bos: u32,
    options: LladaVOptions,
    source: PathBuf,
}

/// Encoded prompts: the embedded prefixes, left-padded to one length.
struct LladaContext {
    prefix: Tensor,
    lengths: Vec<usize>,
}

impl LladaVBackend {
    /// Loads `dir`: the network (see [`LladaV::load`]), `tokenizer.json`,
    /// whose special tokens must sit inside the head's rows, and the chat
    /// template of `tokenizer_config.json`.
    pub fn load(dir: &Path, options: LladaVOptions) -> Result<Self> {
        let cfg = read_config(dir)?;
        let tokenizer = rediff_formats::HfTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let template = ChatTemplate::load(dir)?;
        let (special, bos) = special_tokens(&tokenizer, &cfg, &template, dir)?;
        // Tokenizer problems surface before the (slow) weights load.
        let net = LladaV::load_quantized(dir, cfg, options.dtype, &options.device, &options.quant)?;
        if let Some(&max) = special.all.iter().max() {
            if max as usize >= net.lm().vocab() {
                return Err(Error::checkpoint(
                    dir.join("tokenizer.json"),
                    format!(
                        "special token id {max} is outside the {}-row head",
                        net.lm().vocab()
                    ),
                ));
            }
        }
        Ok(Self {
            net,
            tokenizer,
            special,
            template,
            bos,
            options,
            source: dir.to_path_buf(),
        })
    }

    /// The network.
    pub fn network(&self) -> &LladaV {
        &self.net
    }

    /// The prompt's embeddings with the image features spliced at the
    /// placeholder (what the reference's `prepare_inputs_labels_for_multimodal`
    /// returns).
    ///
    /// # Shapes
    /// - returns: `[prompt length, hidden]`
    pub fn prompt_embeddings(&self, prompt: &Prompt) -> Result<Tensor> {
        let features = match &prompt.image {
            Some(image) => Some(self.net.image_features(image)?),
            None => None,
        };
        let mut parts = Vec::new();
        let mut text: Vec<u32> = Vec::new();
        let mut images = 0;
        let flush = |text: &mut Vec<u32>, parts: &mut Vec<Tensor>| -> Result<()> {
            if !text.is_empty() {
                let ids = Tensor::new(text.as_slice(), &self.options.device)?;
                parts.push(self.net.lm().embed(&ids)?);
                text.clear();
            }
            Ok(())
        };
        for &id in &prompt.ids {
            if id == IMAGE_PLACEHOLDER {
                flush(&mut text, &mut parts)?;
                let features = features.as_ref().ok_or_else(|| {
                    Error::invalid("the prompt has an image placeholder but no image")
                })?;
                parts.push(features.clone());
                images += 1;
            } else {
                text.push(id);
            }
        }
        flush(&mut text, &mut parts)?;
        let expected = usize::from(features.is_some());
        if images != expected {
            return Err(Error::invalid(format!(
                "a LLaDA-V prompt with {expected} image(s) needs {expected} image placeholder(s), \
this one has {images}"
            )));
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}

fn llada_context(context: &PromptContext) -> Result<&LladaContext> {
    context
        .get::<LladaContext>()
        .ok_or_else(|| Error::invalid("prompt context was not made by llada-v"))
}

impl LladaVBackend {
    /// Prompt `i`'s embedded row with the context's prompt overrides
    /// applied, left-padded as in the batch (`padded`) or not.
    fn prompt_row(
        &self,
        context: &PromptContext,
        ctx: &LladaContext,
        i: usize,
        padded: bool,
    ) -> Result<Tensor> {
        let p = ctx.prefix.dim(1)?;
        let pad = p - ctx.lengths[i];
        let mut row = ctx.prefix.get(i)?;
        for (position, token) in context.prompt_overrides(i) {
            let at = pad + position;
            let emb = self.net.lm().embed(&Tensor::new(&[token], row.device())?)?;
            let emb = emb.to_dtype(row.dtype())?;
            let mut parts = Vec::with_capacity(3);
            if at > 0 {
                parts.push(row.narrow(0, 0, at)?);
            }
            parts.push(emb);
            if at + 1 < p {
                parts.push(row.narrow(0, at + 1, p - at - 1)?);
            }
            row = Tensor::cat(&parts, 0)?;
        }
        Ok(if padded {
            row
        } else {
            row.narrow(0, pad, p - pad)?
        })
    }
}

impl LladaVBackend {
    /// The batch's embedded prompts with the context's prompt overrides.
    fn batch_prefix(&self, context: &PromptContext, ctx: &LladaContext) -> Result<Tensor> {
        if (0..context.batch()).all(|i| context.prompt_overrides(i).is_empty()) {
            return Ok(ctx.prefix.clone());
        }
        let rows = (0..context.batch())
            .map(|i| self.prompt_row(context, ctx, i, true))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }
}

/// Special ids from the tokenizer by name, checked against the config.
fn special_tokens(
    tk: &TextTokenizer,
    cfg: &LladaVConfig,
    template: &ChatTemplate,
    dir: &Path,
) -> Result<(SpecialTokens, u32)> {
    let path = dir.join("tokenizer.json");
    let id = |t: &str| {
        tk.token_to_id(t).ok_or_else(|| {
            Error::checkpoint(&path, format!("no `{t}` token (not a LLaDA tokenizer?)"))
        })
    };
    let mask = id("<|mdm_mask|>")?;
    if let Some(m) = cfg.mask_token_id.filter(|&m| m != mask) {
        return Err(Error::checkpoint(
            &path,
            format!("`<|mdm_mask|>` is id {mask}, config.json says mask_token_id {m}"),
        ));
    }
    let eot = id("<|eot_id|>")?;
    let bos = id(template.bos_token())?;
    let suppressed = SUPPRESSED
        .iter()
        .map(|t| id(t))
        .collect::<Result<Vec<_>>>()?;
    let mut all: Vec<u32> = tk.special_ids();
    all.extend([mask, eot, bos]);
    all.extend(&suppressed);
    all.sort_unstable();
    all.dedup();
    Ok((SpecialTokens::new(mask, eot, suppressed, all), bos))
}

impl ModelBackend for LladaVBackend {
    fn kind(&self) -> &str {
        "llada-v"
    }

    fn vocab_size(&self) -> usize {
        self.net.lm().vocab()
    }

    fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn device(&self) -> &Device {
        &self.options.device
    }

    /// Same device and dtype; a GGUF-loaded model's successors are
    /// quantized at load to the GGUF's block type (the file holds the old
    /// weights).
    fn load_options(&self) -> rediff_api::registry::LoadOptions {
        let quant = match &self.options.quant {
            Quantization::None => None,
            Quantization::Quantize(q) => Some(*q),
            Quantization::Gguf(path) => crate::quant::GgufWeights::open(path, &Device::Cpu)
                .ok()
                .and_then(|g| g.quant_type()),
        };
        let mut options =
            rediff_api::registry::LoadOptions::new(self.options.device.clone(), self.options.dtype);
        options.quant = quant.map(crate::quant::QuantType::dtype);
        options
    }

    fn prompt_ids(&self, question: &str) -> Result<Vec<u32>> {
        let text = self
            .template
            .prompt(&self.options.system_prompt, question, true)?;
        tokenize_with_image(&self.tokenizer, &text, self.bos)
    }

    fn text_prompt_ids(&self, question: &str) -> Result<Vec<u32>> {
        let text = self
            .template
            .prompt(&self.options.system_prompt, question, false)?;
        tokenize_with_image(&self.tokenizer, &text, self.bos)
    }

    fn encode_prompts(&self, prompts: &[Prompt]) -> Result<PromptContext> {
        if prompts.is_empty() {
            return Err(Error::invalid("no prompts to encode"));
        }
        let embedded = prompts
            .iter()
            .map(|p| self.prompt_embeddings(p))
            .collect::<Result<Vec<_>>>()?;
        let lengths: Vec<usize> = embedded
            .iter()
            .map(|e| e.dim(0))
            .collect::<candle_core::Result<_>>()?;
        let p = *lengths.iter().max().unwrap_or(&0);
        let rows = embedded
            .iter()
            .zip(&lengths)
            .map(|(e, &n)| {
                if n == p {
                    Ok(e.clone())
                } else {
                    let pad = Tensor::zeros((p - n, e.dim(1)?), e.dtype(), e.device())?;
                    Tensor::cat(&[&pad, e], 0)
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let prefix = Tensor::stack(&rows, 0)?;
        Ok(PromptContext::new(
            prompts.len(),
            LladaContext {
                prefix,
                lengths: lengths.clone(),
            },
        )
        .with_prompt_lengths(lengths))
    }

    fn forward(&self, context: &PromptContext, response: &Tensor) -> Result<Tensor> {
        let ctx = llada_context(context)?;
        let prefix = self.batch_prefix(context, ctx)?;
        self.net.forward_prefix(&prefix, &ctx.lengths, response)
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
        let ctx = llada_context(context)?;
        // A window pass reads the prompt from the cache only.
        let prefix = match pass {
            CachedPass::Full => self.batch_prefix(context, ctx)?,
            CachedPass::Window(_) => ctx.prefix.clone(),
        };
        self.net
            .forward_prefix_cached(&prefix, &ctx.lengths, response, cache, pass)
    }

    fn prompt_logits(
        &self,
        context: &PromptContext,
        sample: usize,
        response: &[u32],
        positions: &[usize],
    ) -> Result<Option<Vec<Vec<f32>>>> {
        let ctx = llada_context(context)?;
        let prefix = self.prompt_row(context, ctx, sample, false)?;
        let response = Tensor::new(response, &self.options.device)?;
        let logits = self.net.logits_at(&prefix, &response, positions)?;
        Ok(Some(logits.to_vec2::<f32>()?))
    }

    fn varmap(&self) -> Option<&candle_nn::VarMap> {
        None
    }

    /// Copies the checkpoint's files (config, tokenizer, index, shards) into
    /// `dir`: the weights are frozen, so the source files are the model.
    fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let entries = std::fs::read_dir(&self.source).map_err(|e| Error::io(&self.source, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&self.source, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let wanted = name.ends_with(".json") || name.ends_with(".safetensors");
            if wanted && path.is_file() {
                let to = dir.join(name);
                if std::fs::hard_link(&path, &to).is_err() {
                    std::fs::copy(&path, &to).map_err(|e| Error::io(&to, e))?;
                }
            }
        }
        Ok(())
    }
}
