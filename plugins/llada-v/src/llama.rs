//! The LLaDA language model: LLaMA blocks with *bidirectional* attention
//! (every position sees every other; the diffusion LM has no causal mask),
//! RMSNorm, a SiLU-gated MLP, rotate-half RoPE and an untied head, with the
//! checkpoint's weight names (`model.layers.N.self_attn.q_proj`, ...). See
//! [LLaDA](https://arxiv.org/abs/2502.09992) and
//! [LLaDA-V](https://arxiv.org/abs/2505.16933).

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{rms_norm, RmsNorm, VarBuilder};

use rediff_nn::kv::LayerKv;

use crate::config::LladaVConfig;
use crate::quant::{LmEmbedding, LmLinear, QuantSource};
use crate::siglip::softmax_f32;

/// Queries attended at once: bounds the score matrix to
/// `heads x ATTENTION_CHUNK x seq` for long image prompts.
const ATTENTION_CHUNK: usize = 1024;

/// RoPE angles as the reference computes them: inverse frequencies and
/// their products with the positions in f32, then cos/sin in f32.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Frequencies `theta^(-2i / head_dim)` for `i < head_dim / 2`.
    pub fn new(head_dim: usize, theta: f64) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        Self { inv_freq }
    }

    /// cos and sin tables for per-row positions.
    ///
    /// # Shapes
    /// - `positions`: `[batch][seq]`
    /// - returns: two `[batch, seq, head_dim / 2]` tensors (`dtype`)
    pub fn tables(
        &self,
        positions: &[Vec<u32>],
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        let mut cos = Vec::with_capacity(b * t * half);
        let mut sin = Vec::with_capacity(b * t * half);
        for row in positions {
            for &p in row {
                for &f in &self.inv_freq {
                    let angle = p as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let cos = Tensor::from_vec(cos, (b, t, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (b, t, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// Attention inputs shared by every layer of one forward pass.
pub struct AttentionInputs {
    /// RoPE cos, `[batch, seq, head_dim / 2]`.
    pub cos: Tensor,
    /// RoPE sin, `[batch, seq, head_dim / 2]`.
    pub sin: Tensor,
    /// Additive key mask `[batch, 1, 1, seq]` (0 or -inf; f32), `None` when no row is padded.
    pub key_mask: Option<Tensor>,
}

/// Bidirectional grouped-query self-attention without biases.
#[derive(Debug, Clone)]
pub struct LladaAttention {
    q_proj: LmLinear,
    k_proj: LmLinear,
    v_proj: LmLinear,
    o_proj: LmLinear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl LladaAttention {
    /// `self_attn.{q,k,v,o}_proj`, quantized when `quant` is given.
    pub fn new(cfg: &LladaVConfig, vb: VarBuilder, quant: Option<&QuantSource>) -> Result<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim());
        let (h, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        Ok(Self {
            q_proj: LmLinear::new(d, h * hd, vb.pp("q_proj"), quant)?,
            k_proj: LmLinear::new(d, kv * hd, vb.pp("k_proj"), quant)?,
            v_proj: LmLinear::new(d, kv * hd, vb.pp("v_proj"), quant)?,
            o_proj: LmLinear::new(h * hd, d, vb.pp("o_proj"), quant)?,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
        })
    }

    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> same
    pub fn forward(&self, x: &Tensor, inputs: &AttentionInputs) -> Result<Tensor> {
        Ok(self.forward_kv(x, inputs, None)?.0)
    }

    /// The forward pass, also returning this pass's keys and values. With
    /// `stored = Some((kv, start))`, `x` is a window at sequence positions
    /// `start..start + seq`: its keys and values replace those positions of
    /// `kv`, and its queries attend to all of them (`inputs.key_mask` then
    /// covers the whole stored sequence).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> same, plus `[batch, kv_heads, seq, head_dim]` keys and values
    pub fn forward_kv(
        &self,
        x: &Tensor,
        inputs: &AttentionInputs,
        stored: Option<(&LayerKv, usize)>,
    ) -> Result<(Tensor, LayerKv)> {
        let (b, t, _) = x.dims3()?;
        let hd = self.head_dim;
        let split = |p: &LmLinear, n: usize| -> Result<Tensor> {
            p.forward(x)?
                .reshape((b, t, n, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = candle_nn::rotary_emb::rope(
            &split(&self.q_proj, self.heads)?,
            &inputs.cos,
            &inputs.sin,
        )?;
        let k = candle_nn::rotary_emb::rope(
            &split(&self.k_proj, self.kv_heads)?,
            &inputs.cos,
            &inputs.sin,
        )?;
        let v = split(&self.v_proj, self.kv_heads)?;
        let own = LayerKv { k, v };
        let all = match stored {
            Some((kv, start)) => kv.splice(&own, start)?,
            None => own.clone(),
        };
        let (k, v) = (self.repeat_kv(all.k)?, self.repeat_kv(all.v)?);
        let kt = k.t()?.contiguous()?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut outs = Vec::with_capacity(t.div_ceil(ATTENTION_CHUNK));
        let mut start = 0;
        while start < t {
            let n = ATTENTION_CHUNK.min(t - start);
            let qc = q.narrow(2, start, n)?;
            let mut scores = (qc.matmul(&kt)? * scale)?.to_dtype(DType::F32)?;
            if let Some(mask) = &inputs.key_mask {
                scores = scores.broadcast_add(mask)?;
            }
            let probs = softmax_f32(&scores)?.to_dtype(v.dtype())?;
            outs.push(probs.matmul(&v)?);
            start += n;
        }
        let out = Tensor::cat(&outs, 2)?
            .transpose(1, 2)?
            .reshape((b, t, self.heads * hd))?;
        Ok((self.o_proj.forward(&out)?, own))
    }

    /// Repeats each key/value head for its group of query heads.
    fn repeat_kv(&self, x: Tensor) -> Result<Tensor> {
        let groups = self.heads / self.kv_heads;
        if groups == 1 {
            return Ok(x);
        }
        let (b, kv, t, hd) = x.dims4()?;
        x.unsqueeze(2)?
            .expand((b, kv, groups, t, hd))?
            .reshape((b, kv * groups, t, hd))
    }
}

/// `down(silu(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub struct LladaMlp {
    gate_proj: LmLinear,
    up_proj: LmLinear,
    down_proj: LmLinear,
}

impl LladaMlp {
    /// `mlp.{gate,up,down}_proj`, quantized when `quant` is given.
    pub fn new(cfg: &LladaVConfig, vb: VarBuilder, quant: Option<&QuantSource>) -> Result<Self> {
        let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: LmLinear::new(d, f, vb.pp("gate_proj"), quant)?,
            up_proj: LmLinear::new(d, f, vb.pp("up_proj"), quant)?,
            down_proj: LmLinear::new(f, d, vb.pp("down_proj"), quant)?,
        })
    }

    /// # Shapes
    /// - `x`: `[..., hidden]` -> same
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?.silu()?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

/// One pre-norm block.
#[derive(Debug, Clone)]
pub struct LladaBlock {
    input_layernorm: RmsNorm,
    self_attn: LladaAttention,
    post_attention_layernorm: RmsNorm,
    mlp: LladaMlp,
}

impl LladaBlock {
    /// `model.layers.N.*`.
    pub fn new(cfg: &LladaVConfig, vb: VarBuilder, quant: Option<&QuantSource>) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_layernorm: rms_norm(d, eps, vb.pp("input_layernorm"))?,
            self_attn: LladaAttention::new(cfg, vb.pp("self_attn"), quant)?,
            post_attention_layernorm: rms_norm(d, eps, vb.pp("post_attention_layernorm"))?,
            mlp: LladaMlp::new(cfg, vb.pp("mlp"), quant)?,
        })
    }

    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> same
    pub fn forward(&self, x: &Tensor, inputs: &AttentionInputs) -> Result<Tensor> {
        Ok(self.forward_kv(x, inputs, None)?.0)
    }

    /// The forward pass with the attention's keys and values (see
    /// [`LladaAttention::forward_kv`]).
    pub fn forward_kv(
        &self,
        x: &Tensor,
        inputs: &AttentionInputs,
        stored: Option<(&LayerKv, usize)>,
    ) -> Result<(Tensor, LayerKv)> {
        let (attn, kv) =
            self.self_attn
                .forward_kv(&self.input_layernorm.forward(x)?, inputs, stored)?;
        let x = (x + attn)?;
        let out = (&x
            + self
                .mlp
                .forward(&self.post_attention_layernorm.forward(&x)?)?)?;
        Ok((out, kv))
    }
}

/// Embeddings, blocks, final norm and head.
#[derive(Debug, Clone)]
pub struct LladaLm {
    embed_tokens: LmEmbedding,
    layers: Vec<LladaBlock>,
    norm: RmsNorm,
    lm_head: LmLinear,
    rope: Rope,
    vocab: usize,
}

impl LladaLm {
    /// `model.embed_tokens`, `model.layers.N`, `model.norm` under `vb_model`
    /// and `lm_head` under `vb_root`, with a vocabulary of `vocab` rows; the
    /// embedding and every linear layer quantized when `quant` is given.
    pub fn new(
        cfg: &LladaVConfig,
        vocab: usize,
        vb_root: VarBuilder,
        quant: Option<&QuantSource>,
    ) -> Result<Self> {
        let d = cfg.hidden_size;
        let m = vb_root.pp("model");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| LladaBlock::new(cfg, m.pp("layers").pp(i), quant))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens: LmEmbedding::new(vocab, d, m.pp("embed_tokens"), quant)?,
            layers,
            norm: rms_norm(d, cfg.rms_norm_eps, m.pp("norm"))?,
            lm_head: LmLinear::new(d, vocab, vb_root.pp("lm_head"), quant)?,
            rope: Rope::new(cfg.head_dim(), cfg.rope_theta),
            vocab,
        })
    }

    /// Rows of the head.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Token embeddings.
    ///
    /// # Shapes
    /// - `ids`: `[..]` (`u32`) -> `[.., hidden]`
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens.forward(ids)
    }

    /// Logits of the last `tail` positions of an embedded sequence.
    ///
    /// `positions[b][t]` is each token's RoPE position; `pad[b]` leading
    /// positions of row `b` are padding that no token attends to.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - returns: `[batch, tail, vocab]` (f32)
    pub fn forward_embeds(
        &self,
        x: &Tensor,
        positions: &[Vec<u32>],
        pad: &[usize],
        tail: usize,
    ) -> Result<Tensor> {
        let t = x.dim(1)?;
        let h = self.hidden_states(x, positions, pad)?;
        self.head(&h.narrow(1, t - tail, tail)?)
    }

    /// The final norm and the head over hidden states.
    ///
    /// # Shapes
    /// - `h`: `[batch, n, hidden]` -> `[batch, n, vocab]` (f32)
    pub fn head(&self, h: &Tensor) -> Result<Tensor> {
        let h = self.norm.forward(&h.contiguous()?)?;
        self.lm_head.forward(&h)?.to_dtype(DType::F32)
    }

    /// The last block's output at every position (before the final norm);
    /// see [`forward_embeds`](Self::forward_embeds) for the arguments.
    pub fn hidden_states(
        &self,
        x: &Tensor,
        positions: &[Vec<u32>],
        pad: &[usize],
    ) -> Result<Tensor> {
        Ok(self.hidden_states_kv(x, positions, pad, None, false)?.0)
    }

    /// [`hidden_states`](Self::hidden_states), plus every layer's keys and
    /// values when `keep` (otherwise none are held past their layer). With `stored = Some((layers, start))`, `x` is a window at
    /// sequence positions `start..` of the stored sequence (`positions` are
    /// the window's, `pad` the stored rows' padding): each layer splices
    /// the window's keys and values into `layers[i]` and attends to all.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, hidden]`, one [`LayerKv`] per layer
    pub fn hidden_states_kv(
        &self,
        x: &Tensor,
        positions: &[Vec<u32>],
        pad: &[usize],
        stored: Option<(&[LayerKv], usize)>,
        keep: bool,
    ) -> Result<(Tensor, Vec<LayerKv>)> {
        let (b, _, _) = x.dims3()?;
        if let Some((layers, _)) = stored {
            if layers.len() != self.layers.len() {
                candle_core::bail!(
                    "{} stored layers for a {}-layer model",
                    layers.len(),
                    self.layers.len()
                );
            }
        }
        let t = match stored {
            Some((layers, _)) => layers[0].seq_len()?,
            None => x.dim(1)?,
        };
        let (cos, sin) = self.rope.tables(positions, x.dtype(), x.device())?;
        let key_mask = if pad.iter().any(|&p| p > 0) {
            let mut m = vec![0f32; b * t];
            for (row, &p) in pad.iter().enumerate() {
                m[row * t..row * t + p].fill(f32::NEG_INFINITY);
            }
            Some(Tensor::from_vec(m, (b, 1, 1, t), x.device())?)
        } else {
            None
        };
        let inputs = AttentionInputs { cos, sin, key_mask };
        let mut h = x.clone();
        let mut kvs = Vec::with_capacity(if keep { self.layers.len() } else { 0 });
        for (i, layer) in self.layers.iter().enumerate() {
            let (next, kv) = layer.forward_kv(&h, &inputs, stored.map(|(l, s)| (&l[i], s)))?;
            h = next;
            if keep {
                kvs.push(kv);
            }
        }
        Ok((h, kvs))
    }
}
