//! Fast sampling on a LLaDA-V checkpoint in the published layout: time,
//! analytic FLOPs, load memory and logit error per caption for each
//! speed-up, side by side in one run.
//!
//! ```text
//! cargo bench --bench fast_sampling -- --size medium --out fast.json
//! ```
//!
//! Defaults are the issue's setting: the 360M random `medium` checkpoint, a
//! 384 px image, a 128-token answer in 4 blocks of 32, 32 steps (4 tokens
//! per step). Each configuration runs in a fresh process (this executable
//! in worker mode), so its load memory is its own. The table adds the
//! projection for the published 8B model: its FLOPs for the same passes at
//! the rate this configuration achieved here.
//!
//! Random weights have no confident predictions, so `threshold` decoding
//! falls back to one token per step here; its speed-up on a trained model
//! is measured on tiny-vlm (`configs/fast-sampling.toml`).
//!
//! Under `cargo test` (no `--bench` argument) it runs once on the tiny
//! checkpoint with a short answer and checks the table and the JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use image::{Rgb, RgbImage};
use rediff_api::cache::{CacheMode, CacheSettings, CachedPass, KvCache};
use rediff_api::device::WeightDtype;
use rediff_api::model::{ModelBackend, Prompt, PromptContext};
use rediff_api::policy::RefinementPolicy;
use rediff_api::schedule::{uniform_unmask_counts, NoiseSchedule};
use rediff_api::tokens::{SpecialTokens, TextTokenizer};
use rediff_llada_v::quant::QuantType;
use rediff_llada_v::testing::{cached_checkpoint, process_memory_mib, TinySpec};
use rediff_llada_v::{LladaVBackend, LladaVOptions};
use rediff_sampler::{Sampler, SamplerSettings};
use rediff_standard::{NoRefinement, Threshold, ThresholdOptions};
use serde::{Deserialize, Serialize};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One configuration: weights, cache and policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Config {
    dtype: WeightDtype,
    cache: CacheMode,
    threshold: bool,
}

impl Config {
    fn label(&self) -> String {
        let mut s = self.dtype.to_string();
        s += match self.cache {
            CacheMode::None => ", full recompute",
            CacheMode::Prefix => " + prefix cache",
            CacheMode::Dual => " + dual cache",
        };
        if self.threshold {
            s += " + threshold 0.9";
        }
        s
    }
}

/// The issue's rows, in order (today's bf16 full recompute first), then f32
/// without and with the cache: on CPUs without native bf16 arithmetic f32
/// is the faster dense format.
const CONFIGS: [Config; 8] = [
    Config {
        dtype: WeightDtype::Bf16,
        cache: CacheMode::None,
        threshold: false,
    },
    Config {
        dtype: WeightDtype::Bf16,
        cache: CacheMode::Prefix,
        threshold: false,
    },
    Config {
        dtype: WeightDtype::Bf16,
        cache: CacheMode::Dual,
        threshold: false,
    },
    Config {
        dtype: WeightDtype::Q8_0,
        cache: CacheMode::Prefix,
        threshold: false,
    },
    Config {
        dtype: WeightDtype::Q4k,
        cache: CacheMode::Prefix,
        threshold: false,
    },
    Config {
        dtype: WeightDtype::Q8_0,
        cache: CacheMode::Prefix,
        threshold: true,
    },
    Config {
        dtype: WeightDtype::F32,
        cache: CacheMode::None,
        threshold: false,
    },
    Config {
        dtype: WeightDtype::F32,
        cache: CacheMode::Prefix,
        threshold: false,
    },
];

/// `cargo bench --bench fast_sampling -- [options]`.
#[derive(Debug, Parser)]
#[command(about = "Time per caption of each fast-sampling configuration on a LLaDA-V checkpoint")]
struct BenchArgs {
    /// Random checkpoint in the published layout: tiny or medium (360M).
    #[arg(long, default_value = "medium")]
    size: String,
    /// Response length in tokens.
    #[arg(long, default_value_t = 128)]
    gen_length: usize,
    /// Block length (semi-autoregressive blocks; divides gen-length).
    #[arg(long, default_value_t = 32)]
    block_length: usize,
    /// Sampling steps in all (tokens per step = gen-length / steps).
    #[arg(long, default_value_t = 32)]
    steps: usize,
    /// Side of the square test image in pixels.
    #[arg(long, default_value_t = 384)]
    image: u32,
    /// Only these configuration numbers (1-based, as in the table), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<usize>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "fast_sampling.json")]
    out: PathBuf,
    /// Accepted for `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: measure one configuration (JSON) and write its probe logits here.
    #[arg(long, hide = true, requires = "probe")]
    worker: Option<String>,
    /// Internal: the worker's probe-logits file.
    #[arg(long, hide = true)]
    probe: Option<PathBuf>,
}

/// What one worker measures.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measured {
    config: Config,
    /// Set when the configuration cannot run (its error).
    error: Option<String>,
    load_seconds: f64,
    /// Anonymous resident memory after loading minus before (MiB).
    weights_mib: f64,
    /// Peak resident memory during loading minus before (MiB).
    load_peak_mib: f64,
    encode_seconds: f64,
    generate_seconds: f64,
    full_passes: usize,
    window_passes: usize,
    /// `(query tokens, key tokens, head tokens)` of every pass.
    passes: Vec<(usize, usize, usize)>,
    prompt_len: usize,
}

/// A row of the table.
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    #[serde(flatten)]
    measured: Measured,
    label: String,
    caption_seconds: f64,
    speedup: f64,
    gflop: f64,
    gflop_per_second: f64,
    /// Max |logit - f32 logit| / max |f32 logit| on the probe pass.
    logit_error: Option<f64>,
    /// Share of probe positions whose argmax equals f32's.
    argmax_agreement: Option<f64>,
    /// The 8B model's seconds per caption at this rate.
    projected_8b_seconds: f64,
}

/// The published model's geometry (for the projection).
const H8: Geometry = Geometry {
    hidden: 4096.0,
    inter: 12288.0,
    layers: 32.0,
    vocab: 126_464.0,
    kv_ratio: 1.0,
};
/// Image features of a 384 px image plus a 60-token chat prompt for the 8B model.
const PROMPT_8B: usize = 1485 + 60;

#[derive(Debug, Clone, Copy)]
struct Geometry {
    hidden: f64,
    inter: f64,
    layers: f64,
    vocab: f64,
    kv_ratio: f64,
}

impl Geometry {
    /// FLOPs (2 per multiply-add) of one LM pass: every linear layer over
    /// the queries, scores and values against every key, the head over
    /// `head` positions.
    fn pass_flops(&self, q: f64, keys: f64, head: f64) -> f64 {
        let per_layer = self.hidden * self.hidden * (2.0 + 2.0 * self.kv_ratio)
            + 3.0 * self.hidden * self.inter;
        2.0 * q * per_layer * self.layers
            + 4.0 * q * keys * self.hidden * self.layers
            + 2.0 * head * self.hidden * self.vocab
    }
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if !argv.iter().any(|a| a == "--bench" || a == "--worker") {
        return smoke_test();
    }
    let args = BenchArgs::parse_from(argv);
    if let (Some(cfg), Some(probe)) = (&args.worker, &args.probe) {
        let config: Config = serde_json::from_str(cfg)?;
        let m = measure(&args, config, probe);
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }
    let table = run(&args)?;
    println!("{table}");
    Ok(())
}

/// `cargo test`: the tiny checkpoint, a short answer, every configuration.
fn smoke_test() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("fast.json");
    let args = BenchArgs::parse_from([
        "fast_sampling",
        "--bench",
        "--size",
        "tiny",
        "--gen-length",
        "16",
        "--block-length",
        "8",
        "--steps",
        "4",
        "--out",
        out.to_str().context("path")?,
    ]);
    let table = run(&args)?;
    anyhow::ensure!(table.contains("| 1 | bf16, full recompute |"), "{table}");
    // The tiny model's width (32) is not a multiple of q4k's 256.
    anyhow::ensure!(table.contains("rows in blocks of 256"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let rows = json["rows"].as_array().context("rows")?;
    anyhow::ensure!(rows.len() == CONFIGS.len(), "{json}");
    let prefix = &rows[1];
    anyhow::ensure!(prefix["window_passes"].as_u64() == Some(2), "{prefix}");
    anyhow::ensure!(prefix["full_passes"].as_u64() == Some(2), "{prefix}");
    let q8 = &rows[3];
    let err = q8["logit_error"].as_f64().context("q8_0 logit error")?;
    anyhow::ensure!(err > 0.0 && err < 0.05, "{q8}");
    anyhow::ensure!(
        rows[6]["logit_error"].as_f64() == Some(0.0),
        "f32 is the reference"
    );
    Ok(())
}

/// Measures every configuration in its own process; returns the table.
fn run(args: &BenchArgs) -> anyhow::Result<String> {
    if args.gen_length % args.block_length != 0
        || args.steps % (args.gen_length / args.block_length) != 0
    {
        bail!("--block-length must divide --gen-length, and --steps be a multiple of the blocks");
    }
    let spec = TinySpec::named(&args.size)?;
    let dir = cached_checkpoint(&args.size, &spec)?;
    let tmp = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut measured = Vec::new();
    for (i, config) in CONFIGS.iter().enumerate() {
        if !args.only.is_empty() && !args.only.contains(&(i + 1)) {
            continue;
        }
        eprintln!("[{}/{}] {}", i + 1, CONFIGS.len(), config.label());
        let probe = tmp.path().join(format!("probe-{i}.bin"));
        let out = Command::new(&exe)
            .args([
                "--worker",
                &serde_json::to_string(config)?,
                "--probe",
                probe.to_str().context("path")?,
                "--size",
                &args.size,
                "--gen-length",
                &args.gen_length.to_string(),
                "--block-length",
                &args.block_length.to_string(),
                "--steps",
                &args.steps.to_string(),
                "--image",
                &args.image.to_string(),
            ])
            .output()?;
        if !out.status.success() {
            bail!(
                "worker for {} failed: {}",
                config.label(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let m: Measured = serde_json::from_slice(&out.stdout)
            .with_context(|| String::from_utf8_lossy(&out.stdout).to_string())?;
        measured.push((i, m, probe));
    }
    let reference = measured
        .iter()
        .find(|(_, m, _)| m.config.dtype == WeightDtype::F32 && m.error.is_none())
        .map(|(_, _, p)| read_probe(p))
        .transpose()?;
    let baseline = measured
        .iter()
        .find(|(i, m, _)| *i == 0 && m.error.is_none())
        .map(|(_, m, _)| m.encode_seconds + m.generate_seconds);
    let model = LladaVBackend::load(&dir, LladaVOptions::default())?;
    let cfg = model.network().config().clone();
    let geometry = Geometry {
        hidden: cfg.hidden_size as f64,
        inter: cfg.intermediate_size as f64,
        layers: cfg.num_hidden_layers as f64,
        vocab: model.vocab_size() as f64,
        kv_ratio: cfg.kv_heads() as f64 / cfg.num_attention_heads as f64,
    };
    drop(model);
    let mut rows = Vec::new();
    for (_, m, probe) in measured {
        let caption = m.encode_seconds + m.generate_seconds;
        let flops: f64 = m
            .passes
            .iter()
            .map(|&(q, k, h)| geometry.pass_flops(q as f64, k as f64, h as f64))
            .sum();
        let (logit_error, argmax_agreement) = match (&reference, m.error.is_none()) {
            (Some(r), true) => {
                let p = read_probe(&probe)?;
                let (e, a) = compare_probe(&p, r, geometry.vocab as usize);
                (Some(e), Some(a))
            }
            _ => (None, None),
        };
        // The 8B model: same windows, its prompt and widths.
        let extra = PROMPT_8B as f64 - m.prompt_len as f64;
        let flops_8b: f64 = m
            .passes
            .iter()
            .map(|&(q, k, h)| {
                let q8 = if q == k { q as f64 + extra } else { q as f64 };
                H8.pass_flops(q8, k as f64 + extra, h as f64)
            })
            .sum();
        let rate = flops / m.generate_seconds.max(1e-9);
        rows.push(Row {
            label: m.config.label(),
            caption_seconds: caption,
            speedup: baseline.map_or(f64::NAN, |b| b / caption),
            gflop: flops / 1e9,
            gflop_per_second: rate / 1e9,
            logit_error,
            argmax_agreement,
            projected_8b_seconds: flops_8b / rate,
            measured: m,
        });
    }
    let table = render(args, &rows);
    let json = serde_json::json!({
        "size": args.size,
        "gen_length": args.gen_length,
        "block_length": args.block_length,
        "steps": args.steps,
        "image": args.image,
        "rows": rows,
        "table": table,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)
        .with_context(|| args.out.display().to_string())?;
    Ok(table)
}

fn render(args: &BenchArgs, rows: &[Row]) -> String {
    let mut t = format!(
        "{} checkpoint, {} px image, {} tokens in blocks of {}, {} steps ({} tokens per step)\n\n",
        args.size,
        args.image,
        args.gen_length,
        args.block_length,
        args.steps,
        args.gen_length / args.steps
    );
    t += "| # | configuration | s / caption | speed-up | passes (full + window) | GFLOP | GFLOP/s | load: weights / peak MiB | logit error vs f32 | argmax = f32 | 8B: s / caption |\n";
    t += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let m = &r.measured;
        let n = CONFIGS
            .iter()
            .position(|c| *c == m.config)
            .map_or(0, |i| i + 1);
        if let Some(e) = &m.error {
            t += &format!(
                "| {n} | {} | cannot run: {} | | | | | | | | |\n",
                r.label,
                e.replace('|', "/")
            );
            continue;
        }
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |x| format!("{x:.digits$}"));
        t += &format!(
            "| {n} | {} | {:.2} | {:.1}x | {} + {} | {:.1} | {:.1} | {:.0} / {:.0} | {} | {} | {:.0} |\n",
            r.label,
            r.caption_seconds,
            r.speedup,
            m.full_passes,
            m.window_passes,
            r.gflop,
            r.gflop_per_second,
            m.weights_mib,
            m.load_peak_mib,
            opt(r.logit_error, 4),
            opt(r.argmax_agreement, 3),
            r.projected_8b_seconds,
        );
    }
    t
}

/// Measures one configuration in this process.
fn measure(args: &BenchArgs, config: Config, probe: &Path) -> Measured {
    let mut m = Measured {
        config,
        error: None,
        load_seconds: 0.0,
        weights_mib: 0.0,
        load_peak_mib: 0.0,
        encode_seconds: 0.0,
        generate_seconds: 0.0,
        full_passes: 0,
        window_passes: 0,
        passes: Vec::new(),
        prompt_len: 0,
    };
    if let Err(e) = measure_into(args, &mut m, probe) {
        m.error = Some(e.to_string());
    }
    m
}

fn measure_into(args: &BenchArgs, m: &mut Measured, probe: &Path) -> anyhow::Result<()> {
    let spec = TinySpec::named(&args.size)?;
    let dir = cached_checkpoint(&args.size, &spec)?;
    let before = process_memory_mib();
    let t = Instant::now();
    let model = LladaVBackend::load(
        &dir,
        LladaVOptions {
            dtype: m.config.dtype.into(),
            quant: LladaVOptions::quantization(QuantType::of(m.config.dtype), None),
            ..Default::default()
        },
    )?;
    m.load_seconds = t.elapsed().as_secs_f64();
    let after = process_memory_mib();
    m.weights_mib = after.0 - before.0;
    m.load_peak_mib = after.2 - before.2;
    let side = args.image;
    let prompt = Prompt {
        image: Some(Arc::new(rediff_formats::source_from_rgb(
            RgbImage::from_fn(side, side, |x, y| Rgb([x as u8, y as u8, (x ^ y) as u8])),
        ))),
        ids: model.prompt_ids("describe the image .")?,
    };
    // Probe: one full pass over an all-mask answer, for the logit error.
    let ctx = model.encode_prompts(std::slice::from_ref(&prompt))?;
    let masks = Tensor::full(
        model.special_tokens().mask,
        (1, args.gen_length),
        &Device::Cpu,
    )?;
    let logits = model.forward(&ctx, &masks)?.to_dtype(DType::F32)?;
    write_probe(probe, &logits.flatten_all()?.to_vec1::<f32>()?)?;
    drop(ctx);
    let counting = Counting::new(&model);
    let t = Instant::now();
    let ctx = counting.encode_prompts(std::slice::from_ref(&prompt))?;
    m.encode_seconds = t.elapsed().as_secs_f64();
    m.prompt_len = ctx.prompt_len(0).context("prompt length")?;
    let threshold = Threshold::new(ThresholdOptions::default()).map_err(anyhow::Error::msg)?;
    let policy: &dyn RefinementPolicy = if m.config.threshold {
        &threshold
    } else {
        &NoRefinement::default()
    };
    let sampler = Sampler {
        model: &counting,
        schedule: &Linear,
        policy,
        policy_name: if m.config.threshold {
            "threshold"
        } else {
            "none"
        },
        settings: SamplerSettings {
            gen_length: args.gen_length,
            block_length: args.block_length,
            steps: args.steps,
            temperature: 0.0,
            max_block_steps: None,
            cache: CacheSettings {
                mode: m.config.cache,
                refresh: 0,
            },
        },
    };
    let mut rng = rediff_nn::rng::stream(0, "fast-sampling", 0);
    let t = Instant::now();
    let g = sampler.generate(&ctx, &mut rng, None)?;
    m.generate_seconds = t.elapsed().as_secs_f64();
    m.window_passes = g.window_passes;
    m.full_passes = g.forward_passes - g.window_passes;
    m.passes = counting
        .passes
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .clone();
    Ok(())
}

fn write_probe(path: &Path, values: &[f32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes)?;
    Ok(())
}

fn read_probe(path: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Relative max error and argmax agreement of `a` against `reference`
/// (rows of `vocab` logits).
fn compare_probe(a: &[f32], reference: &[f32], vocab: usize) -> (f64, f64) {
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let err = a
        .iter()
        .zip(reference)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs())) as f64;
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0
    };
    let rows = reference.len() / vocab;
    let same = (0..rows)
        .filter(|&r| {
            argmax(&a[r * vocab..(r + 1) * vocab]) == argmax(&reference[r * vocab..(r + 1) * vocab])
        })
        .count();
    (err / scale, same as f64 / rows.max(1) as f64)
}

/// The reference's linear schedule (uniform unmask counts).
struct Linear;
impl NoiseSchedule for Linear {
    fn mask_probability(&self, t: f32) -> f32 {
        (1.0 - 1e-3) * t + 1e-3
    }
    fn unmask_counts(&self, masked: usize, steps: usize) -> Vec<usize> {
        uniform_unmask_counts(masked, steps)
    }
}

/// Delegates to a model and records each pass's query, key and head tokens.
struct Counting<'a> {
    inner: &'a LladaVBackend,
    passes: Mutex<Vec<(usize, usize, usize)>>,
}

impl<'a> Counting<'a> {
    fn new(inner: &'a LladaVBackend) -> Self {
        Self {
            inner,
            passes: Mutex::new(Vec::new()),
        }
    }

    fn record(
        &self,
        context: &PromptContext,
        response: &Tensor,
        pass: Option<usize>,
    ) -> rediff_api::Result<()> {
        let l = response.dim(1)?;
        let keys = context.prompt_len(0).unwrap_or(0) + l;
        let entry = match pass {
            None => (keys, keys, l),
            Some(w) => (w, keys, w),
        };
        if let Ok(mut p) = self.passes.lock() {
            p.push(entry);
        }
        Ok(())
    }
}

impl ModelBackend for Counting<'_> {
    fn kind(&self) -> &str {
        self.inner.kind()
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn special_tokens(&self) -> &SpecialTokens {
        self.inner.special_tokens()
    }
    fn tokenizer(&self) -> &TextTokenizer {
        self.inner.tokenizer()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
    fn prompt_ids(&self, question: &str) -> rediff_api::Result<Vec<u32>> {
        self.inner.prompt_ids(question)
    }
    fn encode_prompts(&self, prompts: &[Prompt]) -> rediff_api::Result<PromptContext> {
        self.inner.encode_prompts(prompts)
    }
    fn forward(&self, context: &PromptContext, response: &Tensor) -> rediff_api::Result<Tensor> {
        self.record(context, response, None)?;
        self.inner.forward(context, response)
    }
    fn supports_cache(&self) -> bool {
        self.inner.supports_cache()
    }
    fn forward_cached(
        &self,
        context: &PromptContext,
        response: &Tensor,
        cache: &mut KvCache,
        pass: CachedPass,
    ) -> rediff_api::Result<Tensor> {
        let w = match &pass {
            CachedPass::Full => None,
            CachedPass::Window(w) => Some(w.len()),
        };
        self.record(context, response, w)?;
        self.inner.forward_cached(context, response, cache, pass)
    }
    fn prompt_logits(
        &self,
        context: &PromptContext,
        sample: usize,
        response: &[u32],
        positions: &[usize],
    ) -> rediff_api::Result<Option<Vec<Vec<f32>>>> {
        self.inner
            .prompt_logits(context, sample, response, positions)
    }
    fn varmap(&self) -> Option<&candle_nn::VarMap> {
        None
    }
    fn save(&self, dir: &Path) -> rediff_api::Result<()> {
        self.inner.save(dir)
    }
}
