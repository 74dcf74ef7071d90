//! Block-quantized language-model weights: GGUF `q8_0` and `q4_K` through
//! candle's quantized tensors ([`QMatMul`]), either quantized at load from
//! the checkpoint's safetensors or read from an already-quantized GGUF file.
//!
//! What is quantized: every linear layer of the language model (attention
//! `q/k/v/o_proj`, MLP `gate/up/down_proj`, `lm_head`) and the token
//! embedding. The vision tower, projector, norms and `image_newline` stay
//! dense (f32), and so do activations.
//!
//! Quantizing at load reads each matrix from the memory-mapped checkpoint a
//! slice of rows at a time, so loading never holds more than the quantized
//! weights plus one slice in f32 (the 126464-row embedding and head are the
//! reason: in f32 either is larger than all the quantized layers together).
//!
//! A GGUF file here holds the quantized tensors under the checkpoint's own
//! names (`model.layers.0.self_attn.q_proj.weight`, ...); write one with
//! [`write_gguf`] (`rediff quantize`).

use std::collections::BTreeSet;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ8_0, GgmlType};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use rediff_api::device::WeightDtype;
use rediff_api::{Error, Result};

use crate::config::LladaVConfig;
use crate::network::read_config;
use crate::weights::ShardedWeights;

/// A GGUF block quantization of a model's linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// `q8_0`: 32 weights per block, one f16 scale.
    Q8_0,
    /// `q4_K`: 256 weights per super-block.
    Q4k,
}

impl QuantType {
    /// Weights per block: a quantized matrix's rows must be a multiple of it.
    pub fn block_size(self) -> usize {
        match self {
            Self::Q8_0 => 32,
            Self::Q4k => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 34,
            Self::Q4k => 144,
        }
    }

    /// candle's GGUF dtype.
    pub fn ggml(self) -> candle_core::quantized::GgmlDType {
        match self {
            Self::Q8_0 => candle_core::quantized::GgmlDType::Q8_0,
            Self::Q4k => candle_core::quantized::GgmlDType::Q4K,
        }
    }

    /// The name GGUF tools use (`q8_0`, `q4k`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4k => "q4k",
        }
    }
}

impl QuantType {
    /// The block quantization a weight dtype asks for (`None`: dense).
    pub fn of(weights: WeightDtype) -> Option<Self> {
        match weights {
            WeightDtype::Q8_0 => Some(Self::Q8_0),
            WeightDtype::Q4k => Some(Self::Q4k),
            _ => None,
        }
    }

    /// The weight dtype of this block quantization.
    pub fn dtype(self) -> WeightDtype {
        match self {
            Self::Q8_0 => WeightDtype::Q8_0,
            Self::Q4k => WeightDtype::Q4k,
        }
    }
}

/// f32 values quantized per slice when reading a checkpoint (16 MiB).
const SLICE_VALUES: usize = 4 << 20;

/// A linear layer without bias of the language model, dense or quantized.
#[derive(Debug, Clone)]
pub enum LmLinear {
    /// Dense weights (the checkpoint's, in the model dtype).
    Dense(Linear),
    /// Block-quantized weights.
    Quant(QMatMul),
}

impl LmLinear {
    /// `weight` of shape `[out, in]` under `vb`, quantized when `quant` is given.
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        vb: VarBuilder,
        quant: Option<&QuantSource>,
    ) -> candle_core::Result<Self> {
        match quant {
            None => Ok(Self::Dense(candle_nn::linear_no_bias(in_dim, out_dim, vb)?)),
            Some(q) => {
                let name = format!("{}.weight", vb.prefix());
                Ok(Self::Quant(QMatMul::from_qtensor(
                    q.qtensor(&name, (out_dim, in_dim))?,
                )?))
            }
        }
    }

    /// # Shapes
    /// - `x`: `[..., in]` -> `[..., out]`
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(l) => l.forward(x),
            Self::Quant(q) => q.forward(&x.contiguous()?),
        }
    }
}

/// The token embedding, dense or quantized (rows dequantized on lookup).
#[derive(Debug, Clone)]
pub enum LmEmbedding {
    /// Dense table.
    Dense(Embedding),
    /// Block-quantized table.
    Quant(Arc<QTensor>),
}

impl LmEmbedding {
    /// `weight` of shape `[vocab, hidden]` under `vb`.
    pub fn new(
        vocab: usize,
        hidden: usize,
        vb: VarBuilder,
        quant: Option<&QuantSource>,
    ) -> candle_core::Result<Self> {
        match quant {
            None => Ok(Self::Dense(Embedding::new(
                vb.get((vocab, hidden), "weight")?,
                hidden,
            ))),
            Some(q) => {
                let name = format!("{}.weight", vb.prefix());
                Ok(Self::Quant(Arc::new(q.qtensor(&name, (vocab, hidden))?)))
            }
        }
    }

    /// # Shapes
    /// - `ids`: `[..]` (`u32`) -> `[.., hidden]` (f32 when quantized)
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(e) => e.forward(ids),
            Self::Quant(q) => q.embedding(ids),
        }
    }
}

/// Where quantized weights come from.
pub enum QuantSource {
    /// Quantize the checkpoint's tensors while loading.
    Quantize {
        /// The checkpoint.
        weights: Arc<ShardedWeights>,
        /// The block format.
        quant: QuantType,
        /// Where the quantized tensors go.
        device: Device,
    },
    /// Read them from a GGUF file.
    Gguf(Box<GgufWeights>),
}

impl QuantSource {
    /// The quantized matrix `name`, which must have `shape` (`[rows, cols]`).
    pub fn qtensor(&self, name: &str, shape: (usize, usize)) -> candle_core::Result<QTensor> {
        match self {
            Self::Quantize {
                weights,
                quant,
                device,
            } => {
                let stored = weights.shape(name).unwrap_or_default();
                if stored != [shape.0, shape.1] {
                    candle_core::bail!(
                        "tensor `{name}` has shape {stored:?}, the model expects [{}, {}]",
                        shape.0,
                        shape.1
                    );
                }
                quantize_rows(weights, name, shape, *quant, device)
            }
            Self::Gguf(g) => g.qtensor(name, shape),
        }
    }
}

/// Quantizes the `[rows, cols]` matrix `name` of `weights`, reading it a
/// slice of rows at a time; errors when a row is not a whole number of blocks.
pub fn quantize_rows(
    weights: &ShardedWeights,
    name: &str,
    (rows, cols): (usize, usize),
    quant: QuantType,
    device: &Device,
) -> candle_core::Result<QTensor> {
    if cols % quant.block_size() != 0 {
        candle_core::bail!(
            "{} quantizes rows in blocks of {} values, but tensor `{name}` has rows of {cols}{}",
            quant.name(),
            quant.block_size(),
            if quant == QuantType::Q4k {
                "; use q8_0 (blocks of 32)"
            } else {
                ""
            }
        );
    }
    let cpu = match quant {
        QuantType::Q8_0 => quantize_blocks::<BlockQ8_0>(weights, name, rows, cols)?,
        QuantType::Q4k => quantize_blocks::<BlockQ4K>(weights, name, rows, cols)?,
    };
    if device.is_cpu() {
        return Ok(cpu);
    }
    let storage = QStorage::from_data(cpu.data()?, device, quant.ggml())?;
    QTensor::new(storage, (rows, cols))
}

fn quantize_blocks<T: GgmlType + 'static>(
    weights: &ShardedWeights,
    name: &str,
    rows: usize,
    cols: usize,
) -> candle_core::Result<QTensor> {
    let per_row = cols / T::BLCK_SIZE;
    let mut blocks: Vec<T> = Vec::with_capacity(rows * per_row);
    let slice = (SLICE_VALUES / cols).max(1);
    let mut r = 0;
    while r < rows {
        let n = slice.min(rows - r);
        let values = weights
            .rows_f32(name, r..r + n)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let at = blocks.len();
        blocks.resize(at + n * per_row, T::zeros());
        T::from_float(&values, &mut blocks[at..]);
        r += n;
    }
    QTensor::new(QStorage::Cpu(Box::new(blocks)), (rows, cols))
}

/// An already-quantized GGUF file of the language model's weights.
pub struct GgufWeights {
    path: PathBuf,
    content: gguf_file::Content,
    file: Mutex<BufReader<std::fs::File>>,
    used: Mutex<BTreeSet<String>>,
    device: Device,
}

impl GgufWeights {
    /// Reads the header and tensor table of `path`; errors name the file.
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| Error::checkpoint(path, format!("not a readable GGUF file: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file: Mutex::new(reader),
            used: Mutex::new(BTreeSet::new()),
            device: device.clone(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The block type most of the file's tensors use (`None`: neither
    /// q8_0 nor q4k).
    pub fn quant_type(&self) -> Option<QuantType> {
        let (mut q8, mut q4) = (0usize, 0usize);
        for info in self.content.tensor_infos.values() {
            match info.ggml_dtype {
                GgmlDType::Q8_0 => q8 += 1,
                GgmlDType::Q4K => q4 += 1,
                _ => {}
            }
        }
        match (q8, q4) {
            (0, 0) => None,
            (a, b) if a >= b => Some(QuantType::Q8_0),
            _ => Some(QuantType::Q4k),
        }
    }

    /// Whether the file has a tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The tensor `name`, which must be a block-quantized `[rows, cols]` matrix.
    pub fn qtensor(&self, name: &str, shape: (usize, usize)) -> candle_core::Result<QTensor> {
        let file = self.path.display();
        let Some(info) = self.content.tensor_infos.get(name) else {
            candle_core::bail!("{file}: no tensor `{name}` (the model expects it)")
        };
        let dims = info.shape.dims();
        if dims != [shape.0, shape.1] {
            candle_core::bail!(
                "{file}: tensor `{name}` has shape {dims:?}, the model expects [{}, {}]",
                shape.0,
                shape.1
            );
        }
        let mut reader = self
            .file
            .lock()
            .map_err(|_| candle_core::Error::Msg("lock poisoned".into()))?;
        let t = self
            .content
            .tensor(&mut *reader, name, &self.device)
            .map_err(|e| candle_core::Error::Msg(format!("{file}: tensor `{name}`: {e}")))?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
        Ok(t)
    }

    /// Errors naming the file and the first tensor the model did not take.
    pub fn check_all_used(&self) -> Result<()> {
        let used = self
            .used
            .lock()
            .map_err(|_| Error::invalid("lock poisoned"))?;
        let unused: Vec<&String> = self
            .content
            .tensor_infos
            .keys()
            .filter(|k| !used.contains(*k))
            .collect();
        match unused.iter().min() {
            None => Ok(()),
            Some(name) => Err(Error::checkpoint(
                &self.path,
                format!(
                    "tensor `{name}` is not a quantized weight of this model ({} unused in all; a GGUF of another checkpoint?)",
                    unused.len()
                ),
            )),
        }
    }
}

/// The names and `[rows, cols]` shapes of the weights that are quantized.
pub fn quantized_tensors(cfg: &LladaVConfig, vocab: usize) -> Vec<(String, (usize, usize))> {
    let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
    let (h, kv, hd) = (cfg.num_attention_heads, cfg.kv_heads(), cfg.head_dim());
    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), (vocab, d)),
        ("lm_head.weight".to_string(), (vocab, d)),
    ];
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj", (h * hd, d)),
            ("self_attn.k_proj", (kv * hd, d)),
            ("self_attn.v_proj", (kv * hd, d)),
            ("self_attn.o_proj", (d, h * hd)),
            ("mlp.gate_proj", (f, d)),
            ("mlp.up_proj", (f, d)),
            ("mlp.down_proj", (d, f)),
        ] {
            out.push((format!("{p}.{name}.weight"), shape));
        }
    }
    out
}

/// Quantizes the language model of the checkpoint `dir` into the GGUF file
/// `out` (written to a temporary name, then renamed); returns the bytes of
/// tensor data written.
pub fn write_gguf(dir: &Path, quant: QuantType, out: &Path) -> Result<usize> {
    let cfg = read_config(dir)?;
    let weights = ShardedWeights::open(dir)?;
    let vocab = weights
        .shape("lm_head.weight")
        .ok_or_else(|| Error::checkpoint(dir, "missing tensor `lm_head.weight`"))?[0];
    let mut tensors = Vec::new();
    for (name, shape) in quantized_tensors(&cfg, vocab) {
        let stored = weights.shape(&name).unwrap_or_default();
        if stored != [shape.0, shape.1] {
            return Err(Error::checkpoint(
                dir,
                format!(
                    "tensor `{name}` has shape {stored:?}, expected [{}, {}]",
                    shape.0, shape.1
                ),
            ));
        }
        let q = quantize_rows(&weights, &name, shape, quant, &Device::Cpu)
            .map_err(|e| Error::checkpoint(dir, e.to_string()))?;
        tensors.push((name, q));
    }
    let bytes = tensors.iter().map(|(_, q)| q.storage_size_in_bytes()).sum();
    let tmp = out.with_extension("gguf.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = BufWriter::new(file);
    let arch = gguf_file::Value::String("llada-v".into());
    let dtype = gguf_file::Value::String(quant.name().into());
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    gguf_file::write(
        &mut w,
        &[
            ("general.architecture", &arch),
            ("rediff.quantization", &dtype),
        ],
        &refs,
    )
    .map_err(|e| Error::checkpoint(&tmp, e.to_string()))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    Ok(bytes)
}
