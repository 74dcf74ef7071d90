//! Tiny random checkpoints in the exact published LLaDA-V layout (same
//! tensor names and config keys, tiny sizes, special tokens at their
//! published ids), for tests, benchmarks and trying the CLI without the
//! 16 GB download. Names are spelled out here independently of the model
//! code, so a naming slip on either side fails the load tests.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rediff_api::tokens::TextTokenizer;
use rediff_api::{Error, Result};
use serde_json::json;

/// The published special tokens and their ids.
pub const SPECIAL_TOKENS: [(&str, u32); 6] = [
    ("<|startoftext|>", 126_080),
    ("<|endoftext|>", 126_081),
    ("<|mdm_mask|>", 126_336),
    ("<|start_header_id|>", 126_346),
    ("<|end_header_id|>", 126_347),
    ("<|eot_id|>", 126_348),
];

/// Words of the tiny tokenizer (ids 0..), then `\n` and `[UNK]`.
const WORDS: &str = "describe the image . a an red green blue yellow circle square triangle star \
in on at of and with left right top bottom center middle corner big small is are there two one \
system user assistant SYS picture shows";

/// Sizes of a tiny checkpoint.
#[derive(Debug, Clone)]
pub struct TinySpec {
    /// LM width.
    pub hidden: usize,
    /// LM heads.
    pub heads: usize,
    /// LM key/value heads.
    pub kv_heads: usize,
    /// LM MLP width.
    pub intermediate: usize,
    /// LM blocks.
    pub layers: usize,
    /// Vocabulary rows (published: 126464).
    pub vocab: usize,
    /// Tower width.
    pub vision_hidden: usize,
    /// Tower heads.
    pub vision_heads: usize,
    /// Tower MLP width.
    pub vision_intermediate: usize,
    /// Tower layers saved (the reference saves one fewer than the tower has).
    pub vision_layers: usize,
    /// Tile side (published: 384).
    pub tile: usize,
    /// Patch side (published: 14).
    pub patch: usize,
    /// Stored dtype (published: bf16).
    pub dtype: DType,
    /// Weight files (1: `model.safetensors`; more: shards with an index).
    pub shards: usize,
}

impl Default for TinySpec {
    /// Published geometry (384 px tiles, 14 px patches, full vocabulary) at tiny widths.
    fn default() -> Self {
        Self {
            hidden: 32,
            heads: 4,
            kv_heads: 2,
            intermediate: 64,
            layers: 2,
            vocab: 126_464,
            vision_hidden: 24,
            vision_heads: 2,
            vision_intermediate: 48,
            vision_layers: 2,
            tile: 384,
            patch: 14,
            dtype: DType::BF16,
            shards: 2,
        }
    }
}

impl TinySpec {
    /// About 360M parameters (width 1024, 8 blocks, the full vocabulary):
    /// large enough for memory and speed measurements to mean something.
    pub fn medium() -> Self {
        Self {
            hidden: 1024,
            heads: 8,
            kv_heads: 8,
            intermediate: 2816,
            layers: 8,
            vision_hidden: 256,
            vision_heads: 4,
            vision_intermediate: 1024,
            vision_layers: 4,
            ..Self::default()
        }
    }

    /// `tiny` ([`Default`]) or `medium`.
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self::default()),
            "medium" => Ok(Self::medium()),
            other => Err(Error::invalid(format!(
                "unknown checkpoint size `{other}`; expected tiny or medium"
            ))),
        }
    }
}

/// The random checkpoint of `spec` named `name` in the temporary directory,
/// written (seed 0) the first time it is asked for; for the examples.
pub fn cached_checkpoint(name: &str, spec: &TinySpec) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("rediff-llada-v-{name}"));
    if !dir.join("config.json").exists() {
        write_random_checkpoint(&dir, spec, 0)?;
    }
    Ok(dir)
}

/// The tiny word-level tokenizer with the special tokens at their published ids.
pub fn tiny_tokenizer() -> Result<TextTokenizer> {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};
    let mut vocab: HashMap<String, u32> = HashMap::new();
    for (i, w) in WORDS.split_whitespace().enumerate() {
        vocab.insert(w.to_string(), i as u32);
    }
    let n = vocab.len() as u32;
    vocab.insert("\n".into(), n);
    vocab.insert("[UNK]".into(), n + 1);
    for (t, id) in SPECIAL_TOKENS {
        vocab.insert(t.to_string(), id);
    }
    // Fill every other id up to the last special one, as the real
    // vocabulary does (126349 entries), so ids are dense.
    let last = SPECIAL_TOKENS.iter().map(|(_, id)| *id).max().unwrap_or(0);
    let taken: std::collections::HashSet<u32> = vocab.values().copied().collect();
    for id in 0..=last {
        if !taken.contains(&id) {
            vocab.insert(format!("<|reserved_{id}|>"), id);
        }
    }
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut tk = tokenizers::Tokenizer::new(model);
    let split = |pattern: &str, behavior| -> Result<PreTokenizerWrapper> {
        Ok(
            Split::new(SplitPattern::String(pattern.into()), behavior, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?
                .into(),
        )
    };
    tk.with_pre_tokenizer(Some(Sequence::new(vec![
        split(" ", SplitDelimiterBehavior::Removed)?,
        split("\n", SplitDelimiterBehavior::Isolated)?,
    ])));
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|(t, _)| AddedToken::from(t.to_string(), true))
        .collect();
    tk.add_special_tokens(&specials);
    Ok(rediff_formats::HfTokenizer::wrap(tk))
}

/// Every tensor of a checkpoint of `spec`, with its shape, named as the
/// published files name them.
pub fn published_tensor_shapes(spec: &TinySpec) -> Vec<(String, Vec<usize>)> {
    let (d, v, f) = (spec.hidden, spec.vocab, spec.intermediate);
    let hd = d / spec.heads;
    let mut out: Vec<(String, Vec<usize>)> = vec![("model.embed_tokens.weight".into(), vec![v, d])];
    for i in 0..spec.layers {
        let l = format!("model.layers.{i}");
        out.push((
            format!("{l}.self_attn.q_proj.weight"),
            vec![spec.heads * hd, d],
        ));
        out.push((
            format!("{l}.self_attn.k_proj.weight"),
            vec![spec.kv_heads * hd, d],
        ));
        out.push((
            format!("{l}.self_attn.v_proj.weight"),
            vec![spec.kv_heads * hd, d],
        ));
        out.push((
            format!("{l}.self_attn.o_proj.weight"),
            vec![d, spec.heads * hd],
        ));
        out.push((format!("{l}.mlp.gate_proj.weight"), vec![f, d]));
        out.push((format!("{l}.mlp.up_proj.weight"), vec![f, d]));
        out.push((format!("{l}.mlp.down_proj.weight"), vec![d, f]));
        out.push((format!("{l}.input_layernorm.weight"), vec![d]));
        out.push((format!("{l}.post_attention_layernorm.weight"), vec![d]));
    }
    out.push(("model.norm.weight".into(), vec![d]));
    out.push(("lm_head.weight".into(), vec![v, d]));
    let vh = spec.vision_hidden;
    out.push(("model.mm_projector.0.weight".into(), vec![d, vh]));
    out.push(("model.mm_projector.0.bias".into(), vec![d]));
    out.push(("model.mm_projector.2.weight".into(), vec![d, d]));
    out.push(("model.mm_projector.2.bias".into(), vec![d]));
    out.push(("model.image_newline".into(), vec![d]));
    let t = "model.vision_tower.vision_tower.vision_model";
    let g = spec.tile / spec.patch;
    out.push((
        format!("{t}.embeddings.patch_embedding.weight"),
        vec![vh, 3, spec.patch, spec.patch],
    ));
    out.push((format!("{t}.embeddings.patch_embedding.bias"), vec![vh]));
    out.push((
        format!("{t}.embeddings.position_embedding.weight"),
        vec![g * g, vh],
    ));
    for i in 0..spec.vision_layers {
        let l = format!("{t}.encoder.layers.{i}");
        for ln in ["layer_norm1", "layer_norm2"] {
            out.push((format!("{l}.{ln}.weight"), vec![vh]));
            out.push((format!("{l}.{ln}.bias"), vec![vh]));
        }
        for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push((format!("{l}.self_attn.{p}.weight"), vec![vh, vh]));
            out.push((format!("{l}.self_attn.{p}.bias"), vec![vh]));
        }
        out.push((
            format!("{l}.mlp.fc1.weight"),
            vec![spec.vision_intermediate, vh],
        ));
        out.push((format!("{l}.mlp.fc1.bias"), vec![spec.vision_intermediate]));
        out.push((
            format!("{l}.mlp.fc2.weight"),
            vec![vh, spec.vision_intermediate],
        ));
        out.push((format!("{l}.mlp.fc2.bias"), vec![vh]));
    }
    out.push((format!("{t}.post_layernorm.weight"), vec![vh]));
    out.push((format!("{t}.post_layernorm.bias"), vec![vh]));
    out
}

/// The published `config.json` keys, at `spec`'s sizes.
pub fn published_config(spec: &TinySpec) -> serde_json::Value {
    json!({
        "architectures": ["LlavaLLaDAModelLM"],
        "model_type": "llada",
        "attention_bias": false,
        "bos_token_id": 126080,
        "eos_token_id": 126081,
        "hidden_act": "silu",
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "max_position_embeddings": 16384,
        "num_attention_heads": spec.heads,
        "num_hidden_layers": spec.layers,
        "num_key_value_heads": spec.kv_heads,
        "rms_norm_eps": 1e-5,
        "rope_scaling": null,
        "rope_theta": 500000.0,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "vocab_size": spec.vocab,
        "mm_hidden_size": spec.vision_hidden,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_tower": "google/siglip2-so400m-patch14-384",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_patch_merge_type": "spatial_unpad",
        "mm_newline_position": "grid",
        "image_aspect_ratio": "anyres_max_4",
        "image_grid_pinpoints": "(1x1),...,(6x6)",
        "use_mm_proj": true,
        "vision_config": {
            "num_attention_heads": spec.vision_heads,
            "layer_norm_eps": 1e-6,
            "image_size": spec.tile
        }
    })
}

/// Writes a random checkpoint of `spec` into `dir` (config, tokenizer,
/// weights sharded with an index when `spec.shards > 1`). Weights are
/// `N(0, 0.5 / sqrt(fan_in))`, norm gains near 1, drawn from `seed`.
pub fn write_random_checkpoint(dir: &Path, spec: &TinySpec, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shapes = published_tensor_shapes(spec);
    let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(shapes.len());
    for (name, shape) in &shapes {
        let n: usize = shape.iter().product();
        let is_gain = name.ends_with("norm.weight")
            || name.ends_with("layernorm.weight")
            || name.contains("layer_norm") && name.ends_with(".weight");
        let (mean, std) = if is_gain {
            (1.0, 0.1)
        } else if shape.len() == 1 {
            (0.0, 0.1)
        } else {
            let fan_in: usize = shape[1..].iter().product();
            (0.0, 0.5 / (fan_in as f32).sqrt())
        };
        let dist = Normal::new(mean, std).map_err(Error::invalid)?;
        let data: Vec<f32> = (0..n).map(|_| dist.sample(&mut rng)).collect();
        let t = Tensor::from_vec(data, shape.as_slice(), &Device::Cpu)?.to_dtype(spec.dtype)?;
        tensors.push((name.clone(), t));
    }
    let shards = spec.shards.max(1);
    if shards == 1 {
        let map: HashMap<String, Tensor> = tensors.into_iter().collect();
        let path = dir.join(crate::weights::SINGLE_FILE);
        rediff_nn::checkpoint::write_safetensors(&path, &map)?;
    } else {
        let per = tensors.len().div_ceil(shards);
        let mut weight_map = BTreeMap::new();
        let mut total = 0usize;
        for (k, chunk) in tensors.chunks(per).enumerate() {
            let file = format!("model-{:05}-of-{:05}.safetensors", k + 1, shards);
            let map: HashMap<String, Tensor> = chunk.iter().cloned().collect();
            for (name, t) in chunk {
                weight_map.insert(name.clone(), file.clone());
                total += t.elem_count() * t.dtype().size_in_bytes();
            }
            let path = dir.join(&file);
            rediff_nn::checkpoint::write_safetensors(&path, &map)?;
        }
        let index = json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        rediff_nn::checkpoint::write_json(&dir.join(crate::weights::INDEX_FILE), &index)?;
    }
    rediff_nn::checkpoint::write_json(&dir.join("config.json"), &published_config(spec))?;
    tiny_tokenizer()?.save(&dir.join("tokenizer.json"))
}

/// `(RssAnon, RssFile, VmHWM)` of this process in MiB, from
/// `/proc/self/status` (NaN where it cannot be read); for the memory
/// measurements of the examples and benchmarks.
pub fn process_memory_mib() -> (f64, f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("RssAnon:"), field("RssFile:"), field("VmHWM:"))
}
