//! The tiny model against its PyTorch twin
//! (`benches/reference/tiny_vlm_twin.py`), side by side on this machine:
//!
//! ```text
//! cargo bench --bench twin -- --sizes quickstart,large --threads 1,2 --runs 10 --out bench.json
//! ```
//!
//! Every measurement runs in a fresh process per thread count (ours: this
//! executable in worker mode; theirs: the Python script), so thread pools
//! are sized once and neither side warms the other's caches.
//!
//! Under `cargo test` (no `--bench` argument, which `cargo bench` passes)
//! it runs once with tiny budgets and checks the table and the JSON, so the
//! benchmark cannot rot.

macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// candle allocates and frees many mid-sized tensors per step: the same
/// allocator as `rediff`, so timings match what a run sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rediff_api::model::{ModelBackend, Prompt};
use rediff_api::registry::BuildContext;
use rediff_api::{ComponentSpec, Registry};
use rediff_engine::optim::{AdamW, AdamWConfig};
use rediff_engine::parallel::map_scoped;
use rediff_engine::train::{loss_and_grads, TrainBatch};
use rediff_sampler::{Sampler, SamplerSettings};
use serde::{Deserialize, Serialize};

/// Model sizes the benchmark knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchSize {
    /// The quickstart model: width 96, 3 blocks, 4 heads, MLP 256, 48 px images (9 patches).
    Quickstart,
    /// Width 256, 6 blocks, 8 heads, MLP 1024, 64 px images (16 patches).
    Large,
}

/// The measurements, in order.
const OPS: [&str; 6] = [
    "train_step",
    "forward",
    "caption_denoise_1",
    "caption_denoise_8",
    "caption_refine_1",
    "caption_refine_8",
];

/// Time the tiny model against its PyTorch twin (training step, forward
/// pass, captions) at 1 and 2 threads and write the table as JSON.
#[derive(Debug, Parser)]
#[command(name = "twin")]
pub struct BenchArgs {
    /// Model sizes to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "quickstart,large"
    )]
    sizes: Vec<BenchSize>,
    /// Thread counts to measure at (each in its own process).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Timed repetitions per measurement (the median is reported), after 2 warm-ups.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Where to write the table as JSON.
    #[arg(long, default_value = "bench.json")]
    out: PathBuf,
    /// The PyTorch twin script.
    #[arg(long, default_value = "benches/reference/tiny_vlm_twin.py")]
    reference: PathBuf,
    /// Python interpreter with PyTorch installed.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Measure rediff only.
    #[arg(long)]
    no_reference: bool,
    /// Internal: run one process's measurements from this JSON spec file.
    #[arg(long, hide = true)]
    worker: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What one worker process measures (also the Python script's `--spec`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WorkerSpec {
    size: BenchSize,
    threads: usize,
    runs: usize,
    ops: Vec<String>,
    config: SizeConfig,
}

/// The architecture and batch shapes both sides build.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SizeConfig {
    hidden_size: usize,
    num_layers: usize,
    num_heads: usize,
    intermediate_size: usize,
    image_size: usize,
    patch_size: usize,
    max_prompt_len: usize,
    max_response_len: usize,
    rms_norm_eps: f64,
    vocab_size: usize,
    mask: u32,
    eot: u32,
    suppressed: Vec<u32>,
    prompt_len: usize,
    gen_length: usize,
    train_batch: usize,
    forward_batch: usize,
}

/// One worker's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WorkerResult {
    median_s: BTreeMap<String, f64>,
    /// Share of a sampling step spent in the sampler itself, per caption op.
    #[serde(default)]
    sampler_share: BTreeMap<String, f64>,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    size: BenchSize,
    threads: usize,
    op: String,
    rediff_ms: f64,
    pytorch_ms: Option<f64>,
    /// PyTorch time / rediff time: above 1, rediff is faster.
    ratio: Option<f64>,
    sampler_share: Option<f64>,
}

fn size_options(size: BenchSize) -> &'static str {
    match size {
        BenchSize::Quickstart => "hidden_size = 96\nnum_layers = 3\nnum_heads = 4\nintermediate_size = 256\nimage_size = 48\npatch_size = 16\n",
        BenchSize::Large => "hidden_size = 256\nnum_layers = 6\nnum_heads = 8\nintermediate_size = 1024\nimage_size = 64\npatch_size = 16\n",
    }
}

/// The model of `size` over the shapes vocabulary (the quickstart's).
fn build_model(
    registry: &Registry,
    size: BenchSize,
    seed: u64,
) -> anyhow::Result<Box<dyn ModelBackend>> {
    let data = registry.build_data(
        &ComponentSpec::from_toml_str("data", "kind = \"shapes\"\n")?,
        &BuildContext::default(),
    )?;
    let tokenizer = data.tokenizer().context("shapes has a tokenizer")?;
    let spec = format!(
        "kind = \"tiny-vlm\"\n{}max_prompt_len = 8\nmax_response_len = 32\n",
        size_options(size)
    );
    let ctx = BuildContext::new(seed).with_tokenizer(Some(tokenizer));
    let model = registry.build_model(&ComponentSpec::from_toml_str("model", &spec)?, &ctx)?;
    // End-of-turn never wins the argmax, so captions never stop early and
    // both sides run every step (the twin does the same).
    if let Some(vm) = model.varmap() {
        let data = vm.data().lock().expect("varmap lock");
        let head = &data["lm_head.weight"];
        let eot = model.special_tokens().eot as usize;
        let mut w = head.as_tensor().to_vec2::<f32>()?;
        w[eot].iter_mut().for_each(|x| *x = 0.0);
        head.set(&candle_core::Tensor::new(w, model.device())?)?;
    }
    Ok(model)
}

fn size_config(size: BenchSize, model: &dyn ModelBackend) -> anyhow::Result<SizeConfig> {
    let opts: BTreeMap<String, toml::Value> = toml::from_str(size_options(size))?;
    let get = |k: &str| opts[k].as_integer().unwrap_or_default() as usize;
    let s = model.special_tokens();
    Ok(SizeConfig {
        hidden_size: get("hidden_size"),
        num_layers: get("num_layers"),
        num_heads: get("num_heads"),
        intermediate_size: get("intermediate_size"),
        image_size: get("image_size"),
        patch_size: get("patch_size"),
        max_prompt_len: 8,
        max_response_len: 32,
        rms_norm_eps: 1e-5,
        vocab_size: model.vocab_size(),
        mask: s.mask,
        eot: s.eot,
        suppressed: s.suppressed.clone(),
        prompt_len: model.prompt_ids(QUESTION)?.len(),
        gen_length: 24,
        train_batch: 64,
        forward_batch: 256,
    })
}

const QUESTION: &str = "describe the image .";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `f` `runs` times after two warm-ups; returns the median seconds.
fn time_median(runs: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

fn random_prompts(n: usize, cfg: &SizeConfig, ids: &[u32], rng: &mut ChaCha8Rng) -> Vec<Prompt> {
    let s = cfg.image_size as u32;
    (0..n)
        .map(|_| Prompt {
            image: Some(Arc::new(rediff_formats::source_from_rgb(
                RgbImage::from_fn(s, s, |_, _| {
                    image::Rgb([rng.random(), rng.random(), rng.random()])
                }),
            ))),
            ids: ids.to_vec(),
        })
        .collect()
}

/// Worker mode: measure `spec.ops` in this process.
fn work(spec: &WorkerSpec) -> anyhow::Result<WorkerResult> {
    let registry = rediff_builtins::registry()?;
    let model = build_model(&registry, spec.size, 0)?;
    let cfg = &spec.config;
    let ids = model.prompt_ids(QUESTION)?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let l = cfg.gen_length;
    let mut result = WorkerResult {
        median_s: BTreeMap::new(),
        sampler_share: BTreeMap::new(),
    };
    for op in &spec.ops {
        let seconds = match op.as_str() {
            "train_step" => {
                let n = cfg.train_batch;
                let batch = TrainBatch {
                    prompts: random_prompts(n, cfg, &ids, &mut rng),
                    input: (0..n * l)
                        .map(|_| rng.random_range(0..cfg.vocab_size as u32))
                        .collect(),
                    labels: (0..n * l)
                        .map(|_| rng.random_range(0..cfg.vocab_size as u32))
                        .collect(),
                    weights: (0..n * l).map(|_| rng.random::<f32>() / l as f32).collect(),
                };
                let varmap = model.varmap().context("tiny-vlm is trainable")?;
                let mut opt = AdamW::new(
                    varmap,
                    AdamWConfig {
                        beta1: 0.9,
                        beta2: 0.999,
                        eps: 1e-8,
                        weight_decay: 0.01,
                    },
                )?;
                model.set_training(true);
                let t = time_median(spec.runs, || {
                    let (_, grads) = loss_and_grads(model.as_ref(), &batch, spec.threads)?;
                    let norm = opt.grad_norm(&grads)?;
                    opt.step(&grads, 1e-4, if norm > 1.0 { 1.0 / norm } else { 1.0 })?;
                    Ok(())
                })?;
                model.set_training(false);
                t
            }
            "forward" => {
                let n = cfg.forward_batch;
                let prompts = random_prompts(n, cfg, &ids, &mut rng);
                let shards: Vec<(usize, usize)> = (0..spec.threads)
                    .map(|k| (k * n / spec.threads, (k + 1) * n / spec.threads))
                    .collect();
                let mask = model.special_tokens().mask;
                time_median(spec.runs, || {
                    for r in map_scoped(&shards, |&(a, b)| {
                        let ctx = model.encode_prompts(&prompts[a..b])?;
                        let input = candle_core::Tensor::full(mask, (b - a, l), model.device())?;
                        model.forward(&ctx, &input).map(|_| ())
                    }) {
                        r?;
                    }
                    Ok(())
                })?
            }
            caption if caption.starts_with("caption_") => {
                let mut parts = caption.split('_').skip(1);
                let kind = parts.next().unwrap_or_default();
                let tps: usize = parts.next().unwrap_or_default().parse()?;
                let policy_text = if kind == "refine" {
                    "kind = \"refine\"\n"
                } else {
                    "kind = \"none\"\n"
                };
                let policy = registry.build_policy(
                    &ComponentSpec::from_toml_str("policy", policy_text)?,
                    &BuildContext::default(),
                )?;
                let schedule = registry.build_schedule(
                    &ComponentSpec::from_toml_str("schedule", "kind = \"linear\"\n")?,
                    &BuildContext::default(),
                )?;
                let sampler = Sampler {
                    model: model.as_ref(),
                    schedule: schedule.as_ref(),
                    policy: policy.as_ref(),
                    policy_name: kind,
                    settings: SamplerSettings::for_tokens_per_step(l, l, tps, 0.0),
                };
                let prompt = random_prompts(1, cfg, &ids, &mut rng);
                let mut forward = 0.0;
                let mut own = 0.0;
                let t = time_median(spec.runs, || {
                    let ctx = model.encode_prompts(&prompt)?;
                    let gen = sampler.generate(&ctx, &mut rng, None)?;
                    if gen.forward_passes != l / tps {
                        bail!(
                            "{caption}: {} passes instead of {}",
                            gen.forward_passes,
                            l / tps
                        );
                    }
                    forward += gen.forward_time.as_secs_f64();
                    own += gen.sampler_time.as_secs_f64();
                    Ok(())
                })?;
                result
                    .sampler_share
                    .insert(caption.to_string(), own / (own + forward));
                t
            }
            other => bail!("unknown measurement `{other}`"),
        };
        result.median_s.insert(op.clone(), seconds);
    }
    Ok(result)
}

/// Runs our measurements: batched ops and captions in separate worker
/// processes (training steps change the weights the captions would use).
fn run_ours(spec: &WorkerSpec, dir: &Path) -> anyhow::Result<WorkerResult> {
    let path = dir.join(format!("spec-{:?}-{}.json", spec.size, spec.threads));
    let exe = std::env::current_exe()?;
    let mut results = WorkerResult {
        median_s: BTreeMap::new(),
        sampler_share: BTreeMap::new(),
    };
    // Every process has one compute thread per op. Batched work splits the
    // batch over `threads` data-parallel shards (what `rediff run` does). A
    // single caption has no batch to split and its matrices are too small
    // for a second thread to pay off (measured: 22 ms with two threads, 20
    // ms with one), so it runs on one, as `rediff generate --image` does.
    for ops in [&OPS[..2], &OPS[2..]] {
        let mut sub = spec.clone();
        sub.ops = ops
            .iter()
            .map(|o| o.to_string())
            .filter(|o| spec.ops.contains(o))
            .collect();
        if sub.ops.is_empty() {
            continue;
        }
        std::fs::write(&path, serde_json::to_string(&sub)?)?;
        let out = Command::new(&exe)
            .arg("--worker")
            .arg(&path)
            .env("RAYON_NUM_THREADS", "1")
            .output()?;
        if !out.status.success() {
            bail!(
                "benchmark worker failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let r: WorkerResult = serde_json::from_slice(&out.stdout)?;
        results.median_s.extend(r.median_s);
        results.sampler_share.extend(r.sampler_share);
    }
    Ok(results)
}

/// Runs the PyTorch twin, or says why not.
fn run_reference(args: &BenchArgs, spec: &WorkerSpec, dir: &Path) -> Result<WorkerResult, String> {
    let path = dir.join(format!("torch-{:?}-{}.json", spec.size, spec.threads));
    std::fs::write(
        &path,
        serde_json::to_string(spec).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new(&args.python)
        .arg(&args.reference)
        .arg("--spec")
        .arg(&path)
        .env("OMP_NUM_THREADS", spec.threads.to_string())
        .env("MKL_NUM_THREADS", spec.threads.to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args.python))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value: serde_json::Value = serde_json::from_str(text.trim()).map_err(|_| {
        format!(
            "{} failed: {}",
            args.reference.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(err) = value.get("error").and_then(|e| e.as_str()) {
        return Err(err.to_string());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench, a worker process --worker; anything
    // else is `cargo test` (which may pass test-harness flags): the smoke test.
    if !argv.iter().any(|a| a == "--bench" || a == "--worker") {
        return smoke_test();
    }
    run(BenchArgs::parse_from(argv))
}

/// What `cargo test` runs: one tiny measurement without the reference,
/// checking the table, the JSON and the note on the skipped reference.
fn smoke_test() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("bench.json");
    let parse = |extra: &[&str]| {
        let mut argv = vec!["twin", "--sizes", "quickstart", "--threads", "1"];
        argv.extend_from_slice(extra);
        BenchArgs::parse_from(argv)
    };
    let err = run(parse(&["--runs", "0"])).unwrap_err();
    anyhow::ensure!(err.to_string().contains("--runs"), "{err}");
    let mut args = parse(&["--runs", "1", "--python", "/nonexistent/python3"]);
    args.out = out.clone();
    let (table, note) = measure(&args)?;
    anyhow::ensure!(table.contains("| Quickstart | 1 | train_step |"), "{table}");
    anyhow::ensure!(
        note.as_deref()
            .is_some_and(|n| n.contains("cannot run /nonexistent/python3")),
        "{note:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let rows = json["rows"].as_array().context("rows")?;
    anyhow::ensure!(rows.len() == OPS.len(), "{json}");
    for row in rows {
        anyhow::ensure!(row["rediff_ms"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
        anyhow::ensure!(row["pytorch_ms"].is_null(), "{row}");
    }
    // Captions report the sampler's own share of a step.
    anyhow::ensure!(
        rows[2]["sampler_share"].as_f64().unwrap_or(1.0) < 1.0,
        "{json}"
    );
    outln!("twin benchmark: smoke test passed");
    Ok(())
}

/// Runs the benchmark and prints the table.
fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.worker.is_some() {
        return measure(&args).map(|_| ());
    }
    let (table, note) = measure(&args)?;
    outln!("{table}");
    if let Some(note) = &note {
        outln!("PyTorch reference skipped: {note}");
    }
    outln!("wrote {}", args.out.display());
    Ok(())
}

/// Measures, writes the JSON; returns the table and why the reference was skipped.
fn measure(args: &BenchArgs) -> anyhow::Result<(String, Option<String>)> {
    if let Some(path) = &args.worker {
        let spec: WorkerSpec = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        outln!("{}", serde_json::to_string(&work(&spec)?)?);
        return Ok((String::new(), None));
    }
    if args.runs == 0 || args.threads.contains(&0) {
        bail!("--runs and --threads must be at least 1");
    }
    let tmp = tempfile::tempdir()?;
    let registry = rediff_builtins::registry()?;
    let mut rows = Vec::new();
    let mut reference_note: Option<String> = None;
    for &size in &args.sizes {
        let model = build_model(&registry, size, 0)?;
        let config = size_config(size, model.as_ref())?;
        drop(model);
        for &threads in &args.threads {
            let spec = WorkerSpec {
                size,
                threads,
                runs: args.runs,
                ops: OPS.iter().map(|s| s.to_string()).collect(),
                config: config.clone(),
            };
            eprintln!("measuring {size:?} at {threads} thread(s): rediff ...");
            let ours = run_ours(&spec, tmp.path())?;
            let theirs = if args.no_reference || reference_note.is_some() {
                None
            } else {
                eprintln!("measuring {size:?} at {threads} thread(s): PyTorch ...");
                match run_reference(args, &spec, tmp.path()) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        eprintln!("skipping the PyTorch reference: {e}");
                        reference_note = Some(e);
                        None
                    }
                }
            };
            for op in OPS {
                let r = ours.median_s[op];
                let t = theirs.as_ref().and_then(|t| t.median_s.get(op).copied());
                rows.push(Row {
                    size,
                    threads,
                    op: op.to_string(),
                    rediff_ms: r * 1e3,
                    pytorch_ms: t.map(|t| t * 1e3),
                    ratio: t.map(|t| t / r),
                    sampler_share: ours.sampler_share.get(op).copied(),
                });
            }
        }
    }
    let json = serde_json::json!({
        "runs": args.runs,
        "ratio": "pytorch_ms / rediff_ms (above 1: rediff is faster)",
        "rows": rows,
        "reference_skipped": reference_note,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("{}", args.out.display()))?;
    Ok((table(&rows), reference_note))
}

/// The rows as a Markdown table.
fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| size | threads | measurement | rediff ms | PyTorch ms | ratio | sampler share |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_string(), f);
        s.push_str(&format!(
            "| {:?} | {} | {} | {:.2} | {} | {} | {} |\n",
            r.size,
            r.threads,
            r.op,
            r.rediff_ms,
            opt(r.pytorch_ms, &|v| format!("{v:.2}")),
            opt(r.ratio, &|v| format!("{v:.2}")),
            opt(r.sampler_share, &|v| format!("{:.1}%", 100.0 * v)),
        ));
    }
    s
}
