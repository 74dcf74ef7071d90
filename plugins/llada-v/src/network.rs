//! The LLaDA-V network without its tokenizer: tower, projector, image
//! newline and language model loaded from a checkpoint directory, plus the
//! image-to-features path and the forward pass over embedded prefixes.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rediff_api::cache::{CachedPass, KvCache};
use rediff_api::image::SourceImage;
use rediff_api::{Error, Result};
use rediff_nn::kv::PassKv;

use crate::anyres::AnyresLayout;
use crate::config::LladaVConfig;
use crate::llama::LladaLm;
use crate::merge::merge_tiles;
use crate::pil::PilImage;
use crate::preprocess::image_tiles;
use crate::projector::MlpGeluProjector;
use crate::quant::{quantized_tensors, GgufWeights, QuantSource, QuantType};
use crate::siglip::{is_unused_tower_tensor, SiglipVisionTower, VisionDims, TOWER_PREFIX};
use crate::weights::ShardedWeights;

/// Tiles encoded per tower call (bounds activation memory).
const TILE_BATCH: usize = 8;

/// The weights of a LLaDA-V checkpoint, ready to run.
pub struct LladaV {
    cfg: LladaVConfig,
    tower: SiglipVisionTower,
    projector: MlpGeluProjector,
    image_newline: Tensor,
    lm: LladaLm,
    candidates: Vec<(u32, u32)>,
    max_tiles: usize,
    dtype: DType,
    device: Device,
}

impl LladaV {
    /// Loads `config.json` and the (sharded) safetensors of `dir`,
    /// memory-mapped and converted to `dtype` on `device`. Every expected
    /// tensor must be present with its shape and every stored tensor used
    /// (the tower's post-layernorm excepted: the reference saves it but
    /// never applies it); errors name the file and the tensor.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_with_config(dir, read_config(dir)?, dtype, device)
    }

    /// [`load`](Self::load) with `config.json` already read (by [`read_config`]).
    pub fn load_with_config(
        dir: &Path,
        cfg: LladaVConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::load_quantized(dir, cfg, dtype, device, &Quantization::None)
    }

    /// [`load_with_config`](Self::load_with_config) with the language
    /// model's embedding and linear layers quantized as `quant` says (see
    /// [`crate::quant`]); everything else then loads in f32, whatever `dtype`.
    pub fn load_quantized(
        dir: &Path,
        cfg: LladaVConfig,
        dtype: DType,
        device: &Device,
        quant: &Quantization,
    ) -> Result<Self> {
        let dtype = if matches!(quant, Quantization::None) {
            dtype
        } else {
            DType::F32
        };
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(Error::invalid(format!(
                "llada-v runs in f32, bf16 or f16, not {dtype:?}"
            )));
        }
        let config_path = dir.join("config.json");
        let weights = ShardedWeights::open(dir)?;
        let located = |e: candle_core::Error| Error::checkpoint(dir, e.to_string());
        let vocab = weights
            .shape("lm_head.weight")
            .ok_or_else(|| Error::checkpoint(dir, "missing tensor `lm_head.weight`"))?[0];
        let hyper = cfg
            .vision(dir)
            .map_err(|e| Error::checkpoint(&config_path, e))?;
        let dims =
            VisionDims::from_weights(&weights, &hyper).map_err(|e| Error::checkpoint(dir, e))?;
        if dims.hidden != cfg.mm_hidden_size {
            return Err(Error::checkpoint(
                &config_path,
                format!(
                    "mm_hidden_size {} but the tower's weights are {} wide",
                    cfg.mm_hidden_size, dims.hidden
                ),
            ));
        }
        let vb = weights.var_builder(dtype, device);
        let tower = SiglipVisionTower::new(dims, vb.pp(TOWER_PREFIX)).map_err(located)?;
        let projector = MlpGeluProjector::new(
            dims.hidden,
            cfg.hidden_size,
            vb.pp("model").pp("mm_projector"),
        )
        .map_err(located)?;
        let image_newline = vb
            .pp("model")
            .get(cfg.hidden_size, "image_newline")
            .map_err(located)?;
        let source = match quant {
            Quantization::None => None,
            Quantization::Quantize(q) => Some(QuantSource::Quantize {
                weights: weights.clone(),
                quant: *q,
                device: device.clone(),
            }),
            Quantization::Gguf(path) => {
                let g = GgufWeights::open(path, device)?;
                // The file replaces these; the checkpoint may still hold them.
                for (name, _) in quantized_tensors(&cfg, vocab) {
                    weights.mark_used(&name);
                }
                Some(QuantSource::Gguf(Box::new(g)))
            }
        };
        let lm = LladaLm::new(&cfg, vocab, vb, source.as_ref()).map_err(|e| match quant {
            Quantization::Gguf(path) => Error::checkpoint(path, e.to_string()),
            _ => located(e),
        })?;
        if let Some(QuantSource::Gguf(g)) = &source {
            g.check_all_used()?;
        }
        weights.check_all_used(is_unused_tower_tensor)?;
        let candidates = cfg
            .image_grid_pinpoints
            .resolutions(dims.tile as u32)
            .map_err(|e| Error::checkpoint(&config_path, e))?;
        let max_tiles = cfg
            .max_tiles()
            .map_err(|e| Error::checkpoint(&config_path, e))?;
        Ok(Self {
            cfg,
            tower,
            projector,
            image_newline,
            lm,
            candidates,
            max_tiles,
            dtype,
            device: device.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LladaVConfig {
        &self.cfg
    }

    /// The vision tower.
    pub fn tower(&self) -> &SiglipVisionTower {
        &self.tower
    }

    /// The projector.
    pub fn projector(&self) -> &MlpGeluProjector {
        &self.projector
    }

    /// The language model.
    pub fn lm(&self) -> &LladaLm {
        &self.lm
    }

    /// The `image_newline` vector.
    pub fn image_newline(&self) -> &Tensor {
        &self.image_newline
    }

    /// Weight and activation dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The tiling of an image of `size = (width, height)`.
    pub fn layout(&self, size: (u32, u32)) -> AnyresLayout {
        let d = self.tower.dims();
        AnyresLayout::new(
            size,
            d.tile as u32,
            d.patch as u32,
            &self.candidates,
            self.max_tiles,
        )
    }

    /// The image's feature sequence: preprocessing, tower, projector, merge.
    ///
    /// # Shapes
    /// - returns: `[layout.num_features(), hidden]` (model dtype)
    pub fn image_features(&self, image: &SourceImage) -> Result<Tensor> {
        let layout = self.layout(image.dimensions());
        let tiles = self.tiles(image, &layout)?;
        self.features_from_tiles(&tiles, &layout)
    }

    /// The preprocessed tiles of `image` (see [`crate::preprocess`]).
    ///
    /// # Shapes
    /// - returns: `[layout.num_tiles(), 3, tile, tile]` (model dtype)
    pub fn tiles(&self, image: &SourceImage, layout: &AnyresLayout) -> Result<Tensor> {
        let tile = self.tower.dims().tile as u32;
        let pil = PilImage::from_source(image);
        Ok(image_tiles(&pil, layout, tile, &self.device)?.to_dtype(self.dtype)?)
    }

    /// Tower, projector and merge over already preprocessed tiles.
    ///
    /// # Shapes
    /// - `tiles`: `[layout.num_tiles(), 3, tile, tile]`
    /// - returns: `[layout.num_features(), hidden]`
    pub fn features_from_tiles(&self, tiles: &Tensor, layout: &AnyresLayout) -> Result<Tensor> {
        let n = tiles.dim(0)?;
        let mut projected = Vec::with_capacity(n.div_ceil(TILE_BATCH));
        let mut start = 0;
        while start < n {
            let k = TILE_BATCH.min(n - start);
            let feats = self.tower.forward(&tiles.narrow(0, start, k)?)?;
            projected.push(self.projector.forward(&feats)?);
            start += k;
        }
        Ok(merge_tiles(
            &Tensor::cat(&projected, 0)?,
            &self.image_newline,
            layout,
        )?)
    }

    /// Logits over the response positions for embedded prefixes.
    ///
    /// # Shapes
    /// - `prefix`: `[batch, P, hidden]` (row `b` left-padded by `P - lengths[b]`)
    /// - `response`: `[batch, L]` (`u32`)
    /// - returns: `[batch, L, vocab]` (f32)
    pub fn forward_prefix(
        &self,
        prefix: &Tensor,
        lengths: &[usize],
        response: &Tensor,
    ) -> Result<Tensor> {
        let p = prefix.dim(1)?;
        let l = response.dim(1)?;
        let x = Tensor::cat(&[prefix, &self.lm.embed(response)?], 1)?;
        let pad: Vec<usize> = lengths.iter().map(|&n| p - n).collect();
        let positions: Vec<Vec<u32>> = pad
            .iter()
            .map(|&pd| (0..p + l).map(|j| j.saturating_sub(pd) as u32).collect())
            .collect();
        Ok(self.lm.forward_embeds(&x, &positions, &pad, l)?)
    }

    /// [`forward_prefix`](Self::forward_prefix) with the sampler's key/value
    /// cache (see [`rediff_api::cache`]): a full pass keeps every layer's
    /// keys and values in `cache`; a window pass embeds only the window's
    /// response tokens and attends to the kept ones elsewhere.
    ///
    /// # Shapes
    /// - `prefix`: `[batch, P, hidden]`, `response`: `[batch, L]` (`u32`)
    /// - returns: `[batch, L, vocab]` (full) or `[batch, window, vocab]` (f32)
    pub fn forward_prefix_cached(
        &self,
        prefix: &Tensor,
        lengths: &[usize],
        response: &Tensor,
        cache: &mut KvCache,
        pass: CachedPass,
    ) -> Result<Tensor> {
        let p = prefix.dim(1)?;
        let (batch, l) = response.dims2()?;
        let pad: Vec<usize> = lengths.iter().map(|&n| p - n).collect();
        let positions = |from: usize, n: usize| -> Vec<Vec<u32>> {
            pad.iter()
                .map(|&pd| {
                    (from..from + n)
                        .map(|j| j.saturating_sub(pd) as u32)
                        .collect()
                })
                .collect()
        };
        match pass {
            CachedPass::Full => {
                let x = Tensor::cat(&[prefix, &self.lm.embed(response)?], 1)?;
                let (h, layers) =
                    self.lm
                        .hidden_states_kv(&x, &positions(0, p + l), &pad, None, true)?;
                cache.set(PassKv {
                    layers,
                    batch,
                    prefix_len: p,
                    response_len: l,
                });
                Ok(self.lm.head(&h.narrow(1, p, l)?)?)
            }
            CachedPass::Window(w) => {
                let kv = cache.get::<PassKv>().ok_or_else(|| {
                    Error::invalid("a cached window pass before any full pass of llada-v")
                })?;
                kv.check_window(batch, p, l, &w).map_err(Error::invalid)?;
                let x = self.lm.embed(&response.narrow(1, w.start, w.len())?)?;
                let (h, _) = self.lm.hidden_states_kv(
                    &x,
                    &positions(p + w.start, w.len()),
                    &pad,
                    Some((&kv.layers, p + w.start)),
                    false,
                )?;
                Ok(self.lm.head(&h)?)
            }
        }
    }

    /// Logits at `rows` of one unpadded `[prompt | response]` sequence.
    ///
    /// # Shapes
    /// - `prefix`: `[P, hidden]`, `response`: `[L]` (`u32`)
    /// - returns: `[rows.len(), vocab]` (f32)
    pub fn logits_at(&self, prefix: &Tensor, response: &Tensor, rows: &[usize]) -> Result<Tensor> {
        let x = Tensor::cat(&[prefix, &self.lm.embed(response)?], 0)?.unsqueeze(0)?;
        let t = x.dim(1)?;
        let positions = vec![(0..t as u32).collect::<Vec<_>>()];
        let h = self.lm.hidden_states(&x, &positions, &[0])?;
        let rows32: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(rows32.as_slice(), h.device())?;
        Ok(self.lm.head(&h.index_select(&idx, 1)?)?.squeeze(0)?)
    }
}

/// How the language model's weights are stored in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Quantization {
    /// Dense, in the load dtype.
    #[default]
    None,
    /// Quantized while loading the checkpoint.
    Quantize(QuantType),
    /// Read already quantized from this GGUF file (see [`crate::quant::write_gguf`]).
    Gguf(std::path::PathBuf),
}

/// Reads and validates `config.json`, naming the file on failure.
pub fn read_config(dir: &Path) -> Result<LladaVConfig> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| Error::checkpoint(&config_path, format!("cannot read: {e}")))?;
    let cfg: LladaVConfig = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(&config_path, format!("not a LLaDA-V config: {e}")))?;
    cfg.validate()
        .map_err(|e| Error::checkpoint(&config_path, e))?;
    Ok(cfg)
}
