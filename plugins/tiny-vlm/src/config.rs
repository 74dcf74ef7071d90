//! The model configuration, stored as `config.json` in a checkpoint.

use rediff_api::tokens::{SpecialTokens, TextTokenizer};
use serde::{Deserialize, Serialize};

/// The `model_type` tiny-vlm checkpoints carry in `config.json`.
pub const MODEL_TYPE: &str = "rediff-tiny-vlm";

/// Standard deviation of token and position embeddings at initialisation.
pub const EMBEDDING_STD: f64 = 0.3;

/// Architecture options a pipeline sets in its `[model]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TinyVlmOptions {
    /// Width of the transformer. Default 96.
    pub hidden_size: usize,
    /// Transformer blocks. Default 3.
    pub num_layers: usize,
    /// Attention heads (divide `hidden_size`). Default 4.
    pub num_heads: usize,
    /// MLP width. Default 256.
    pub intermediate_size: usize,
    /// Input image side; other sizes are resized. Default 48.
    pub image_size: usize,
    /// Patch side (divides `image_size`). Default 16.
    pub patch_size: usize,
    /// Longest prompt in tokens. Default 8.
    pub max_prompt_len: usize,
    /// Longest response in tokens. Default 32.
    pub max_response_len: usize,
    /// RMSNorm epsilon. Default 1e-5.
    pub rms_norm_eps: f64,
    /// Standard deviation of the image position embeddings at
    /// initialisation (token and text position embeddings use 0.3). A larger
    /// value makes where a patch is as salient as what it shows from the
    /// first step. Default 0.3.
    pub image_position_std: f64,
}

impl Default for TinyVlmOptions {
    fn default() -> Self {
        Self {
            hidden_size: 96,
            num_layers: 3,
            num_heads: 4,
            intermediate_size: 256,
            image_size: 48,
            patch_size: 16,
            max_prompt_len: 8,
            max_response_len: 32,
            rms_norm_eps: 1e-5,
            image_position_std: EMBEDDING_STD,
        }
    }
}

/// The full configuration: architecture, vocabulary and special tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyVlmConfig {
    /// Always [`MODEL_TYPE`].
    pub model_type: String,
    /// Output vocabulary size.
    pub vocab_size: usize,
    /// Architecture.
    #[serde(flatten)]
    pub arch: TinyVlmOptions,
    /// Special token ids.
    pub special_tokens: SpecialTokens,
}

fn lookup(tk: &TextTokenizer, name: &str) -> Result<u32, String> {
    tk.token_to_id(name)
        .ok_or_else(|| format!("the tokenizer has no `{name}` token"))
}

impl TinyVlmConfig {
    /// A configuration for `arch` over `tokenizer`'s vocabulary. The mask is
    /// `<|mdm_mask|>`, end of turn `<|eot_id|>`; begin/end of text, header,
    /// image and unknown tokens (and the mask) are never generated.
    pub fn new(arch: TinyVlmOptions, tokenizer: &TextTokenizer) -> Result<Self, String> {
        let mask = lookup(tokenizer, "<|mdm_mask|>")?;
        let eot = lookup(tokenizer, "<|eot_id|>")?;
        let suppressed: Vec<u32> = [
            "<|startoftext|>",
            "<|endoftext|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<image>",
            "[UNK]",
            "<|mdm_mask|>",
        ]
        .iter()
        .filter_map(|n| tokenizer.token_to_id(n))
        .collect();
        let mut all = suppressed.clone();
        all.push(eot);
        let cfg = Self {
            model_type: MODEL_TYPE.into(),
            vocab_size: tokenizer.vocab_size(),
            arch,
            special_tokens: SpecialTokens::new(mask, eot, suppressed, all),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks divisibility and ranges.
    pub fn validate(&self) -> Result<(), String> {
        let a = &self.arch;
        if a.hidden_size == 0 || a.num_heads == 0 || a.hidden_size % a.num_heads != 0 {
            return Err(format!(
                "num_heads {} must divide hidden_size {}",
                a.num_heads, a.hidden_size
            ));
        }
        if a.patch_size == 0 || a.image_size % a.patch_size != 0 {
            return Err(format!(
                "patch_size {} must divide image_size {}",
                a.patch_size, a.image_size
            ));
        }
        if a.num_layers == 0 || a.intermediate_size == 0 {
            return Err("num_layers and intermediate_size must be positive".into());
        }
        if !(a.image_position_std.is_finite() && a.image_position_std >= 0.0) {
            return Err(format!(
                "image_position_std must be a finite value >= 0, got {}",
                a.image_position_std
            ));
        }
        if self.model_type != MODEL_TYPE {
            return Err(format!("model_type must be `{MODEL_TYPE}`"));
        }
        Ok(())
    }

    /// Image patches per image.
    pub fn num_patches(&self) -> usize {
        let side = self.arch.image_size / self.arch.patch_size;
        side * side
    }

    /// Values per patch (`3 * patch_size^2`).
    pub fn patch_dim(&self) -> usize {
        3 * self.arch.patch_size * self.arch.patch_size
    }

    /// Head dimension.
    pub fn head_dim(&self) -> usize {
        self.arch.hidden_size / self.arch.num_heads
    }
}
