//! The layers of the tiny VLM, one struct each, candle style: `new(cfg, vb)`
//! and `forward`, weight names mirroring the checkpoint keys.
//!
//! In training mode every layer uses only ops that have a backward pass in
//! candle (the fused `rms_norm` and `softmax_last_dim` kernels do not); in
//! inference mode the fused kernels are used. Both compute the same values.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{linear, linear_no_bias, Init, Linear, VarBuilder};

use crate::config::TinyVlmConfig;

/// `N(0, 1 / fan_in)`: at this width the usual fixed 0.02 leaves attention
/// uniform and the model stuck on the language prior for hundreds of steps.
fn weight_init(fan_in: usize) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: 1.0 / (fan_in as f64).sqrt(),
    }
}

fn linear_w(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    // Draw weights from the seeded builder before `linear_no_bias` asks for them
    // with its default (Kaiming) hint.
    vb.get_with_hints((out_dim, in_dim), "weight", weight_init(in_dim))?;
    linear_no_bias(in_dim, out_dim, vb)
}

/// Root-mean-square normalisation with a learned gain.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Gain `weight` of shape `[dim]`, initialised to 1.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    /// # Shapes
    /// - `x`: `[..., dim]` -> `[..., dim]`
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if training {
            let norm = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?;
            x.broadcast_div(&norm)?.broadcast_mul(&self.weight)
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps as f32)
        }
    }
}

/// Bidirectional multi-head self-attention (no causal mask: every position
/// sees every other, as in LLaDA).
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Projections `self_attn.{q,k,v,o}_proj`.
    pub fn new(cfg: &TinyVlmConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.arch.hidden_size;
        Ok(Self {
            q_proj: linear_w(d, d, vb.pp("q_proj"))?,
            k_proj: linear_w(d, d, vb.pp("k_proj"))?,
            v_proj: linear_w(d, d, vb.pp("v_proj"))?,
            o_proj: linear_w(d, d, vb.pp("o_proj"))?,
            num_heads: cfg.arch.num_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let heads = |p: &Linear| -> Result<Tensor> {
            p.forward(x)?
                .reshape((b, t, self.num_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(&self.q_proj)?;
        let k = heads(&self.k_proj)?;
        let v = heads(&self.v_proj)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let probs = if training {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.o_proj.forward(&out)
    }
}

/// Two-layer MLP with SiLU.
#[derive(Debug, Clone)]
pub struct Mlp {
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    /// Projections `mlp.{up,down}_proj`.
    pub fn new(cfg: &TinyVlmConfig, vb: VarBuilder) -> Result<Self> {
        let (d, f) = (cfg.arch.hidden_size, cfg.arch.intermediate_size);
        Ok(Self {
            up_proj: linear_w(d, f, vb.pp("up_proj"))?,
            down_proj: linear_w(f, d, vb.pp("down_proj"))?,
        })
    }

    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down_proj.forward(&self.up_proj.forward(x)?.silu()?)
    }
}

/// Pre-norm transformer block.
#[derive(Debug, Clone)]
pub struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    /// Weights under `layers.N`.
    pub fn new(cfg: &TinyVlmConfig, vb: VarBuilder) -> Result<Self> {
        let (d, eps) = (cfg.arch.hidden_size, cfg.arch.rms_norm_eps);
        Ok(Self {
            input_layernorm: RmsNorm::new(d, eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::new(d, eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let h = (x + self
            .self_attn
            .forward(&self.input_layernorm.forward(x, training)?, training)?)?;
        &h + self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h, training)?)?
    }
}

/// Linear embedding of flattened image patches.
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    proj: Linear,
}

impl PatchEmbed {
    /// Weights `patch_embed.{weight,bias}`.
    pub fn new(cfg: &TinyVlmConfig, vb: VarBuilder) -> Result<Self> {
        let (p, d) = (cfg.patch_dim(), cfg.arch.hidden_size);
        vb.pp("proj")
            .get_with_hints((d, p), "weight", weight_init(p))?;
        vb.pp("proj").get_with_hints(d, "bias", Init::Const(0.0))?;
        Ok(Self {
            proj: linear(p, d, vb.pp("proj"))?,
        })
    }

    /// # Shapes
    /// - `patches`: `[batch, num_patches, 3 * patch^2]` -> `[batch, num_patches, hidden]`
    pub fn forward(&self, patches: &Tensor) -> Result<Tensor> {
        self.proj.forward(patches)
    }
}
