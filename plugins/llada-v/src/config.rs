//! `config.json` of a LLaDA-V / ReDiff checkpoint (the LLaVA-LLaDA config
//! with its `mm_*` vision fields), read with serde; keys this crate does not
//! use are kept so a round trip loses nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::anyres::GridPinpoints;

/// `model_type` of LLaDA-V checkpoints as the reference code registers it.
pub const MODEL_TYPE: &str = "llava_llada";
/// `model_type` the published files may carry instead (inherited from
/// LLaDA's config class); such a file is LLaDA-V when it has `mm_*` fields.
pub const LLADA_MODEL_TYPE: &str = "llada";

fn default_rms_norm_eps() -> f64 {
    1e-5
}

fn default_rope_theta() -> f64 {
    500_000.0
}

fn default_projector() -> String {
    "mlp2x_gelu".into()
}

fn default_aspect_ratio() -> String {
    "anyres_max_4".into()
}

fn default_merge() -> String {
    "spatial_unpad".into()
}

/// The fields of `config.json` the model reads. Defaults are the published
/// 8B checkpoint's values where a key may be absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LladaVConfig {
    /// [`MODEL_TYPE`] or [`LLADA_MODEL_TYPE`].
    pub model_type: String,
    /// LM width (4096).
    pub hidden_size: usize,
    /// Gated MLP width (12288).
    pub intermediate_size: usize,
    /// LM blocks (32).
    pub num_hidden_layers: usize,
    /// Query heads (32).
    pub num_attention_heads: usize,
    /// Key/value heads (32; fewer means grouped-query attention).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// RMSNorm epsilon (1e-5).
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base (500000).
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Output vocabulary as the config states it (126349 or 126464 in
    /// published files); the model uses the `lm_head` weight's rows.
    #[serde(default)]
    pub vocab_size: Option<usize>,
    /// Vision feature width entering the projector (1152).
    pub mm_hidden_size: usize,
    /// Projector kind; only `mlp2x_gelu` exists in the published checkpoints.
    #[serde(default = "default_projector")]
    pub mm_projector_type: String,
    /// `anyres_max_N` (N: tiles' worth of grid features kept).
    #[serde(default = "default_aspect_ratio")]
    pub image_aspect_ratio: String,
    /// Grids the image may be tiled into: `"(1x1),...,(6x6)"` or `[[w, h], ...]` in pixels.
    pub image_grid_pinpoints: GridPinpoints,
    /// How tile features are merged; `spatial_unpad` (with newlines) is supported.
    #[serde(default = "default_merge")]
    pub mm_patch_merge_type: String,
    /// The vision tower the checkpoint was trained with (informational).
    #[serde(default)]
    pub mm_vision_tower: Option<String>,
    /// Stored but not read by the reference (the features come from the
    /// last encoder layer saved); kept for round trips.
    #[serde(default)]
    pub mm_vision_select_layer: Option<i64>,
    /// `<|mdm_mask|>` id, when the config states it (checked against the tokenizer).
    #[serde(default)]
    pub mask_token_id: Option<u32>,
    /// Tower hyper-parameters the weights cannot tell; absent in the
    /// published config (the defaults are SigLIP so400m's).
    #[serde(default)]
    pub vision_config: Option<VisionHyper>,
    /// Every other key, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Vision tower settings not recoverable from the weights' shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionHyper {
    /// Attention heads (so400m: 16).
    #[serde(default = "VisionHyper::default_heads")]
    pub num_attention_heads: usize,
    /// LayerNorm epsilon (1e-6).
    #[serde(default = "VisionHyper::default_eps")]
    pub layer_norm_eps: f64,
    /// Tile side in pixels (384; the reference fixes it whatever the tower
    /// config says). With patch 14 the convolution covers 27 x 14 = 378 px
    /// and ignores the last 6 rows and columns, as PyTorch's does.
    #[serde(default = "VisionHyper::default_image_size")]
    pub image_size: usize,
    /// Every other key, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl VisionHyper {
    /// Reads a SigLIP tower's `config.json` (a vision config, or a full
    /// SigLIP config with a `vision_config`), keeping the reference's fixed
    /// 384-pixel tile.
    pub fn from_tower_config(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let mut v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        if v.get("model_type").and_then(|t| t.as_str()) == Some("siglip") {
            v = v.get("vision_config").cloned().unwrap_or_default();
        }
        let heads = v
            .get("num_attention_heads")
            .and_then(|h| h.as_u64())
            .map_or(Self::default_heads(), |h| h as usize);
        let eps = v
            .get("layer_norm_eps")
            .and_then(|e| e.as_f64())
            .unwrap_or_else(Self::default_eps);
        if let Some(act) = v.get("hidden_act").and_then(|a| a.as_str()) {
            if act != "gelu_pytorch_tanh" {
                return Err(format!(
                    "{}: hidden_act `{act}` is not supported (SigLIP uses gelu_pytorch_tanh)",
                    path.display()
                ));
            }
        }
        Ok(Self {
            num_attention_heads: heads,
            layer_norm_eps: eps,
            image_size: Self::default_image_size(),
            extra: Default::default(),
        })
    }

    fn default_heads() -> usize {
        16
    }

    fn default_eps() -> f64 {
        1e-6
    }

    fn default_image_size() -> usize {
        384
    }
}

impl Default for VisionHyper {
    fn default() -> Self {
        Self {
            num_attention_heads: Self::default_heads(),
            layer_norm_eps: Self::default_eps(),
            image_size: Self::default_image_size(),
            extra: Default::default(),
        }
    }
}

impl LladaVConfig {
    /// Key/value heads (defaults to the query heads).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width of the LM.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The tower settings the weights cannot tell (head count, epsilon), as
    /// the reference finds them: the tower is loaded from `mm_vision_tower`,
    /// a directory (absolute, or relative to the working directory as the
    /// reference resolves it, or to the checkpoint `dir`) whose
    /// `config.json` holds them. A `vision_config` in the checkpoint's own
    /// config takes precedence; a hub name of a SigLIP so400m tower gives
    /// so400m's values. Anything else is an error: a wrong head count
    /// would silently change every feature.
    pub fn vision(&self, dir: &Path) -> Result<VisionHyper, String> {
        if let Some(v) = &self.vision_config {
            return Ok(v.clone());
        }
        let Some(tower) = self.mm_vision_tower.as_deref() else {
            return Ok(VisionHyper::default());
        };
        let candidates = [PathBuf::from(tower), dir.join(tower)];
        if let Some(found) = candidates.iter().find(|p| p.join("config.json").is_file()) {
            return VisionHyper::from_tower_config(&found.join("config.json"));
        }
        if tower.contains("so400m") {
            return Ok(VisionHyper::default());
        }
        Err(format!(
            "mm_vision_tower `{tower}` is neither a directory with a config.json (looked in the \
working directory and in {}) nor a SigLIP so400m tower, so the tower's head count is unknown; \
add \"vision_config\": {{\"num_attention_heads\": N}} to config.json",
            dir.display()
        ))
    }

    /// `N` of `anyres_max_N`.
    pub fn max_tiles(&self) -> Result<usize, String> {
        self.image_aspect_ratio
            .strip_prefix("anyres_max_")
            .and_then(|n| n.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| {
                format!(
                    "image_aspect_ratio `{}` is not supported (expected anyres_max_N)",
                    self.image_aspect_ratio
                )
            })
    }

    /// Checks the values this backend relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.model_type != MODEL_TYPE && self.model_type != LLADA_MODEL_TYPE {
            return Err(format!(
                "model_type `{}`, expected `{MODEL_TYPE}` or `{LLADA_MODEL_TYPE}`",
                self.model_type
            ));
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(format!(
                "head dimension {} must be even for RoPE",
                self.head_dim()
            ));
        }
        let kv = self.kv_heads();
        if kv == 0 || self.num_attention_heads % kv != 0 {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {kv}",
                self.num_attention_heads
            ));
        }
        if self.mm_projector_type != "mlp2x_gelu" {
            return Err(format!(
                "mm_projector_type `{}` is not supported (only mlp2x_gelu)",
                self.mm_projector_type
            ));
        }
        if self.mm_patch_merge_type != "spatial_unpad" {
            return Err(format!(
                "mm_patch_merge_type `{}` is not supported (only spatial_unpad)",
                self.mm_patch_merge_type
            ));
        }
        self.max_tiles()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHED: &str = r#"{
        "architectures": ["LlavaLLaDAModelLM"],
        "model_type": "llava_llada",
        "hidden_size": 4096, "intermediate_size": 12288,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "vocab_size": 126464,
        "mm_hidden_size": 1152, "mm_projector_type": "mlp2x_gelu",
        "mm_vision_tower": "google/siglip2-so400m-patch14-384",
        "mm_vision_select_layer": -2, "mm_patch_merge_type": "spatial_unpad",
        "image_aspect_ratio": "anyres_max_4",
        "image_grid_pinpoints": "(1x1),...,(6x6)",
        "tie_word_embeddings": false
    }"#;

    #[test]
    fn reads_the_published_config_and_keeps_unknown_keys() {
        let cfg: LladaVConfig = serde_json::from_str(PUBLISHED).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.kv_heads(), 32);
        assert_eq!(cfg.head_dim(), 128);
        assert_eq!(cfg.max_tiles().unwrap(), 4);
        assert_eq!(cfg.vision(Path::new(".")).unwrap().num_attention_heads, 16);
        assert_eq!(cfg.extra["tie_word_embeddings"], false);
        let back: LladaVConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        let mut cfg: LladaVConfig = serde_json::from_str(PUBLISHED).unwrap();
        cfg.image_aspect_ratio = "pad".into();
        assert!(cfg.validate().unwrap_err().contains("anyres_max_N"));
        let mut cfg: LladaVConfig = serde_json::from_str(PUBLISHED).unwrap();
        cfg.mm_projector_type = "linear".into();
        assert!(cfg.validate().unwrap_err().contains("mlp2x_gelu"));
    }
}
