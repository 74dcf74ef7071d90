//! The SigLIP vision tower as LLaVA-style models use it: patch embedding,
//! learned positions and pre-norm encoder layers, returning the last
//! *saved* layer's hidden states (the reference drops the tower's final
//! layer and pooling head before saving, and never applies the
//! post-layernorm). See [SigLIP](https://arxiv.org/abs/2303.15343).
//!
//! Sizes are read from the weights (width, MLP width, layer count, patch and
//! tile size); only the head count and epsilon come from the config.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, linear, LayerNorm, LayerNormConfig, Linear, VarBuilder};

use crate::config::VisionHyper;
use crate::weights::ShardedWeights;

/// Prefix of the tower's tensors in a LLaDA-V checkpoint ("vision_tower" twice).
pub const TOWER_PREFIX: &str = "model.vision_tower.vision_tower.vision_model";

/// Tower sizes, read from the stored tensor shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisionDims {
    /// Width (so400m: 1152).
    pub hidden: usize,
    /// MLP width (so400m: 4304).
    pub intermediate: usize,
    /// Encoder layers present in the files (so400m as saved by LLaDA-V: 26).
    pub layers: usize,
    /// Patch side in pixels (14).
    pub patch: usize,
    /// Tile side in pixels (384; patches cover `grid() * patch` of it).
    pub tile: usize,
    /// Attention heads.
    pub heads: usize,
    /// LayerNorm epsilon.
    pub eps: f64,
}

impl VisionDims {
    /// Reads the sizes from `weights` (errors name the missing tensor).
    pub fn from_weights(
        weights: &ShardedWeights,
        hyper: &VisionHyper,
    ) -> std::result::Result<Self, String> {
        let shape = |name: &str| {
            let full = format!("{TOWER_PREFIX}.{name}");
            weights
                .shape(&full)
                .ok_or_else(|| format!("missing tensor `{full}`"))
        };
        let patch_w = shape("embeddings.patch_embedding.weight")?;
        let pos = shape("embeddings.position_embedding.weight")?;
        let fc1 = shape("encoder.layers.0.mlp.fc1.weight")?;
        let (hidden, patch) = match patch_w.as_slice() {
            [h, 3, p, q] if p == q => (*h, *p),
            other => {
                return Err(format!(
                    "patch_embedding.weight has shape {other:?}, expected [hidden, 3, p, p]"
                ))
            }
        };
        let side = hyper.image_size / patch;
        if side * side != pos[0] {
            return Err(format!(
                "position_embedding holds {} positions; {}px tiles of {patch}px patches need {}",
                pos[0],
                hyper.image_size,
                side * side
            ));
        }
        let layer_prefix = format!("{TOWER_PREFIX}.encoder.layers.");
        let layers = weights
            .names()
            .iter()
            .filter_map(|n| {
                n.strip_prefix(&layer_prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1);
        if hidden % hyper.num_attention_heads != 0 {
            return Err(format!(
                "vision width {hidden} is not a multiple of {} heads",
                hyper.num_attention_heads
            ));
        }
        Ok(Self {
            hidden,
            intermediate: fc1[0],
            layers,
            patch,
            tile: hyper.image_size,
            heads: hyper.num_attention_heads,
            eps: hyper.layer_norm_eps,
        })
    }

    /// Patches per tile side (27).
    pub fn grid(&self) -> usize {
        self.tile / self.patch
    }
}

/// Multi-head self-attention with biases, no mask.
#[derive(Debug, Clone)]
pub struct SiglipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl SiglipAttention {
    /// `self_attn.{q,k,v,out}_proj`.
    pub fn new(d: &VisionDims, vb: VarBuilder) -> Result<Self> {
        let h = d.hidden;
        Ok(Self {
            q_proj: linear(h, h, vb.pp("q_proj"))?,
            k_proj: linear(h, h, vb.pp("k_proj"))?,
            v_proj: linear(h, h, vb.pp("v_proj"))?,
            out_proj: linear(h, h, vb.pp("out_proj"))?,
            heads: d.heads,
        })
    }

    /// # Shapes
    /// - `x`: `[tiles, patches, hidden]` -> same
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let hd = c / self.heads;
        let split = |p: &Linear| -> Result<Tensor> {
            p.forward(x)?
                .reshape((b, t, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (
            split(&self.q_proj)?,
            split(&self.k_proj)?,
            split(&self.v_proj)?,
        );
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let probs = softmax_f32(&scores)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, c))?;
        self.out_proj.forward(&out)
    }
}

/// Softmax over the last axis computed in f32 (as the reference does), returned in the input dtype.
pub fn softmax_f32(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    candle_nn::ops::softmax_last_dim(&x.to_dtype(candle_core::DType::F32)?)?.to_dtype(dtype)
}

/// `fc1 -> gelu (tanh approximation) -> fc2`.
#[derive(Debug, Clone)]
pub struct SiglipMlp {
    fc1: Linear,
    fc2: Linear,
}

impl SiglipMlp {
    /// `mlp.fc{1,2}`.
    pub fn new(d: &VisionDims, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: linear(d.hidden, d.intermediate, vb.pp("fc1"))?,
            fc2: linear(d.intermediate, d.hidden, vb.pp("fc2"))?,
        })
    }

    /// # Shapes
    /// - `x`: `[..., hidden]` -> same
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.gelu()?)
    }
}

/// One pre-norm encoder layer.
#[derive(Debug, Clone)]
pub struct SiglipEncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: SiglipAttention,
    layer_norm2: LayerNorm,
    mlp: SiglipMlp,
}

impl SiglipEncoderLayer {
    /// `encoder.layers.N.*`.
    pub fn new(d: &VisionDims, vb: VarBuilder) -> Result<Self> {
        let ln = LayerNormConfig {
            eps: d.eps,
            ..Default::default()
        };
        Ok(Self {
            layer_norm1: layer_norm(d.hidden, ln, vb.pp("layer_norm1"))?,
            self_attn: SiglipAttention::new(d, vb.pp("self_attn"))?,
            layer_norm2: layer_norm(d.hidden, ln, vb.pp("layer_norm2"))?,
            mlp: SiglipMlp::new(d, vb.pp("mlp"))?,
        })
    }

    /// # Shapes
    /// - `x`: `[tiles, patches, hidden]` -> same
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.self_attn.forward(&self.layer_norm1.forward(x)?)?)?;
        &x + self.mlp.forward(&self.layer_norm2.forward(&x)?)?
    }
}

/// The tower up to its last saved layer.
#[derive(Debug, Clone)]
pub struct SiglipVisionTower {
    patch_weight: Tensor,
    patch_bias: Tensor,
    position_embedding: Tensor,
    layers: Vec<SiglipEncoderLayer>,
    dims: VisionDims,
}

impl SiglipVisionTower {
    /// Builds from `vb` at [`TOWER_PREFIX`] (`embeddings.*`, `encoder.layers.N.*`).
    /// The post-layernorm is stored but not part of the features, so not loaded.
    pub fn new(dims: VisionDims, vb: VarBuilder) -> Result<Self> {
        let emb = vb.pp("embeddings");
        let p = dims.patch;
        let patch_weight = emb
            .pp("patch_embedding")
            .get((dims.hidden, 3, p, p), "weight")?
            .reshape((dims.hidden, 3 * p * p))?;
        let patch_bias = emb.pp("patch_embedding").get(dims.hidden, "bias")?;
        let n = dims.grid() * dims.grid();
        let position_embedding = emb
            .pp("position_embedding")
            .get((n, dims.hidden), "weight")?;
        let layers = (0..dims.layers)
            .map(|i| SiglipEncoderLayer::new(&dims, vb.pp("encoder").pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch_weight,
            patch_bias,
            position_embedding,
            layers,
            dims,
        })
    }

    /// The sizes.
    pub fn dims(&self) -> &VisionDims {
        &self.dims
    }

    /// Patch features of normalised tiles (a stride-`patch` convolution,
    /// computed as one matmul over flattened patches).
    ///
    /// # Shapes
    /// - `pixels`: `[tiles, 3, tile, tile]`
    /// - returns: `[tiles, (tile / patch)^2, hidden]`
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (n, c, hgt, wid) = pixels.dims4()?;
        let (p, g) = (self.dims.patch, self.dims.grid());
        if c != 3 || hgt != self.dims.tile || wid != self.dims.tile {
            candle_core::bail!(
                "tiles of shape {:?}, the tower takes [n, 3, {t}, {t}]",
                pixels.dims(),
                t = self.dims.tile
            );
        }
        let covered = g * p;
        let patches = pixels
            .narrow(2, 0, covered)?
            .narrow(3, 0, covered)?
            .contiguous()?
            .reshape((n, 3, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((n, g * g, 3 * p * p))?;
        let mut x = patches
            .broadcast_matmul(&self.patch_weight.t()?)?
            .broadcast_add(&self.patch_bias)?
            .broadcast_add(&self.position_embedding)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }
}

/// Whether `name` is a tower tensor the reference saves but never uses.
pub fn is_unused_tower_tensor(name: &str) -> bool {
    name.starts_with(&format!("{TOWER_PREFIX}.post_layernorm."))
}
