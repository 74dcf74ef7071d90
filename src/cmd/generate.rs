//! `rediff generate`: caption one image (`--image`), answer a text-only
//! question (neither `--image` nor `--images`), or caption every image of a
//! directory into a predictions file (`--images DIR --out preds.json`);
//! `--format json` prints one JSON object per caption.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rediff_api::cache::{CacheMode, CacheSettings};
use rediff_api::device::{DeviceChoice, WeightDtype};
use rediff_api::model::{ModelBackend, Prompt};
use rediff_api::registry::{BuildContext, LoadOptions};
use rediff_api::{ComponentSpec, TextTokenizer};
use rediff_formats::image::load_image;
use rediff_formats::reference::{read_predictions, write_predictions};
use rediff_nn::rng;
use rediff_sampler::{Generation, Sampler, SamplerSettings, StepEvent};

/// How captions are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The caption as text (with --trace, a coloured step-by-step view first).
    Text,
    /// One JSON object per caption (JSON Lines): caption, token ids, stop,
    /// forward passes, revisions, and with --trace every step's events.
    Json,
}

/// A named set of generation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The official ReDiff / LLaDA-V caption evaluation: the question
    /// "Please describe the image in detail.", 128 tokens in one block of
    /// 128, 128 steps (one token per step, the paper's main setting; pass
    /// --steps 32 for its 4 tokens per step), greedy, and the caption decoded
    /// with special tokens kept up to the first end-of-turn, as its
    /// `generate_demo` writes it.
    ReferenceEval,
}

/// The official evaluation's question.
pub const REFERENCE_QUESTION: &str = "Please describe the image in detail.";

/// File extensions `--images` picks up (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Arguments of `rediff generate`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").args(["image", "images"])))]
pub struct GenerateArgs {
    /// Checkpoint directory (config.json, weights, tokenizer.json): a
    /// rediff run's model (e.g. runs/quickstart/models/rediff-base) or a
    /// LLaDA-V / ReDiff Hugging Face directory; config.json's model_type
    /// picks the backend.
    #[arg(long)]
    model: PathBuf,
    /// Where to run: auto (a CUDA GPU when rediff was built with
    /// `--features cuda` and one is present, else the CPU), cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    /// Weight dtype: f32, bf16 (half the memory; what the published
    /// checkpoints store), f16, or q8_0 / q4k: the language model's
    /// embedding and linear layers quantized at load in those GGUF block
    /// formats (8.5 / 4.5 bits per weight; the rest in f32; LLaDA-V
    /// checkpoints only). The tiny model runs in f32 only.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: WeightDtype,
    /// An already-quantized GGUF file of the language model (`rediff
    /// quantize` writes one) instead of quantizing at load; LLaDA-V only.
    #[arg(long, value_name = "FILE")]
    gguf: Option<PathBuf>,
    /// Reuse attention keys and values between steps (Fast-dLLM's
    /// approximate cache): none (every step recomputes everything; exact),
    /// prefix (keep the prompt and earlier blocks) or dual (also the later
    /// blocks). Faster, slightly different tokens.
    #[arg(long, default_value = "none", value_parser = parse_cache)]
    cache: CacheMode,
    /// With --cache: also recompute everything every N steps inside a
    /// block (0: only at each block's first step).
    #[arg(long, default_value_t = 0)]
    cache_refresh: usize,
    /// Image file to caption (PNG or JPEG); the caption is printed. Without
    /// --image and --images the question is asked without an image (a
    /// text-only prompt, as the reference's `generate` accepts; LLaDA-V
    /// checkpoints only).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Directory of images to caption in batches: every .png, .jpg and .jpeg
    /// file directly in it (not in subdirectories), in file-name order.
    /// Needs --out.
    #[arg(long, value_name = "DIR", requires = "out")]
    images: Option<PathBuf>,
    /// With --images: the predictions file to write, one JSON object
    /// {"image_file_name": "caption", ...} (the CapMAS / CapArena format),
    /// replaced atomically.
    #[arg(long, value_name = "FILE", requires = "images")]
    out: Option<PathBuf>,
    /// With --images: images captioned together in one sampler call.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// With --images: no progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    quiet: bool,
    /// With --images: continue a predictions file a killed or stopped run
    /// left (it is rewritten after every batch): batches whose images it
    /// already holds are skipped, the rest captioned with the same seeds.
    #[arg(long, requires = "images")]
    resume: bool,
    /// Settings of a known protocol; flags given explicitly override them.
    /// reference-eval: the official ReDiff evaluation (question "Please
    /// describe the image in detail.", --gen-length 128, --block-length 128,
    /// --steps 128, greedy, special tokens kept up to the first end-of-turn).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// The question (default "describe the image ."; with --preset
    /// reference-eval, "Please describe the image in detail.").
    #[arg(long)]
    question: Option<String>,
    /// Total sampling steps S; tokens per step = gen-length / S (default:
    /// --gen-length, one token per step).
    #[arg(long)]
    steps: Option<usize>,
    /// Response length L in tokens (default 24; reference-eval: 128).
    #[arg(long)]
    gen_length: Option<usize>,
    /// Block length B for semi-autoregressive decoding (divides L; default
    /// L; reference-eval: 128).
    #[arg(long)]
    block_length: Option<usize>,
    /// The refinement policy, by its registered name with its default
    /// options: `refine` (ReDiff: decoded tokens are rewritten at every
    /// step), `denoise` or `none` (plain masked diffusion: decoded tokens are
    /// final), or any other `rediff components` lists. Options: --policy.
    #[arg(long, default_value = "refine")]
    sampler: String,
    /// A refinement policy with options, as inline TOML, instead of
    /// --sampler: e.g. --policy 'kind = "refine", revise_start = 0.25, topk = 0.5'
    /// (the reference's revise_start and revise_topk) or --policy 'kind =
    /// "threshold", threshold = 0.9'. Options of every built-in policy:
    /// docs/refiners.md.
    #[arg(long, conflicts_with = "sampler")]
    policy: Option<String>,
    /// Guard on the steps one block may take, for policies that run until
    /// the block is decoded (default 4 x max(block length, steps per block));
    /// a block it cuts is reported.
    #[arg(long)]
    max_block_steps: Option<usize>,
    /// Compute threads per tensor op (default: all cores, or for a single
    /// image what the model says serves one prompt best: one thread for a
    /// tiny-vlm checkpoint, whose matrices are too small to split).
    #[arg(long)]
    threads: Option<usize>,
    /// Gumbel temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Seed for sampling noise (with --images, batch i draws from stream i of it).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print every step: masked (_), newly decoded and revised tokens, in
    /// colour on a terminal; with --format json, each caption's step events
    /// (with --images only in that format).
    #[arg(long)]
    trace: bool,
    /// text: the caption; json: one JSON object per caption with its token
    /// ids, stop position, forward passes and revisions (JSON Lines).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Load a plugin library (a `cdylib` built with rediff_api::export_plugin!)
    /// first, e.g. for a checkpoint trained with a plugin's schedule or
    /// model; repeatable. A plugin is native code that runs with your privileges.
    #[arg(long = "plugin", value_name = "PATH")]
    plugins: Vec<PathBuf>,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

fn parse_dtype(s: &str) -> Result<WeightDtype, String> {
    s.parse()
}

fn parse_cache(s: &str) -> Result<CacheMode, String> {
    s.parse()
}

fn policy_spec(args: &GenerateArgs) -> anyhow::Result<ComponentSpec> {
    if let Some(inline) = &args.policy {
        // `a = 1, b = 2` reads as the inline table `{ a = 1, b = 2 }`.
        let text = format!("policy = {{ {inline} }}\n");
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("--policy {inline:?} is not inline TOML: {e}"))?;
        let inner = toml::to_string(&table["policy"])?;
        return Ok(ComponentSpec::from_toml_str("--policy", &inner)?);
    }
    // `denoise` is the plain sampler's name in reports; its policy is `none`.
    let kind = match args.sampler.as_str() {
        "denoise" => "none",
        other => other,
    };
    let text = format!("kind = {}\n", toml::Value::String(kind.to_string()));
    Ok(ComponentSpec::from_toml_str("--sampler", &text)?)
}

fn render_step(ev: &StepEvent, model: &dyn ModelBackend, color: bool) -> String {
    let tk = model.tokenizer();
    let special = model.special_tokens();
    let word = |id: u32| -> String {
        if id == special.mask {
            "_".into()
        } else if id == special.eot {
            "<eot>".into()
        } else {
            tk.id_to_token(id).unwrap_or_else(|| format!("#{id}"))
        }
    };
    let mut parts = Vec::new();
    for (i, &id) in ev.tokens.iter().enumerate() {
        let w = word(id);
        let part = if let Some((_, old)) = ev.revised.iter().find(|(p, _)| *p == i) {
            if color {
                format!("\x1b[33;1m{w}\x1b[0m\x1b[2m({})\x1b[0m", word(*old))
            } else {
                format!("{{{}>{w}}}", word(*old))
            }
        } else if ev.unmasked.contains(&i) {
            if color {
                format!("\x1b[32;1m{w}\x1b[0m")
            } else {
                format!("[{w}]")
            }
        } else if id == special.mask && color {
            format!("\x1b[2m{w}\x1b[0m")
        } else {
            w
        };
        parts.push(part);
    }
    format!(
        "block {} step {:>2}: {}",
        ev.block,
        ev.step,
        parts.join(" ")
    )
}

/// The noise schedule a checkpoint was trained with: its `schedule.toml`
/// (written by `rediff run`), else `linear`, LLaDA-V's and ReDiff's.
fn schedule_spec(model: &Path) -> anyhow::Result<ComponentSpec> {
    let path = model.join(rediff_engine::train::SCHEDULE_FILE);
    if !path.exists() {
        return Ok(ComponentSpec::from_toml_str(
            "schedule (default)",
            "kind = \"linear\"",
        )?);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(ComponentSpec::from_toml_str(
        &path.display().to_string(),
        &text,
    )?)
}

/// The question, lengths and decoding a run uses: the preset's, with
/// explicit flags over them.
#[derive(Debug, Clone)]
struct Protocol {
    question: String,
    steps: usize,
    gen_length: usize,
    block_length: usize,
    /// Decode special tokens too, up to the first end-of-turn (the official
    /// evaluation's `skip_special_tokens=False` and cut at `<|eot_id|>`).
    keep_special: bool,
}

impl Protocol {
    fn of(args: &GenerateArgs) -> Self {
        let reference = args.preset == Some(Preset::ReferenceEval);
        let (question, length) = if reference {
            (REFERENCE_QUESTION, 128)
        } else {
            ("describe the image .", 24)
        };
        let gen_length = args.gen_length.unwrap_or(length);
        Self {
            question: args
                .question
                .clone()
                .unwrap_or_else(|| question.to_string()),
            steps: args.steps.unwrap_or(gen_length),
            gen_length,
            block_length: args.block_length.unwrap_or(gen_length),
            keep_special: reference,
        }
    }

    /// Sample `i`'s caption.
    fn caption(
        &self,
        model: &dyn ModelBackend,
        gen: &Generation,
        i: usize,
    ) -> anyhow::Result<String> {
        let ids = &gen.outputs()[i];
        if !self.keep_special {
            return Ok(model.tokenizer().decode(ids)?);
        }
        let end = gen.stops[i].unwrap_or(ids.len()).min(ids.len());
        Ok(decode_keeping_special(model.tokenizer(), &ids[..end])?)
    }
}

/// `ids` decoded with special tokens written out (as Hugging Face's
/// `decode(..., skip_special_tokens=False)`): runs of ordinary tokens are
/// decoded together, each special token by its string.
fn decode_keeping_special(tok: &TextTokenizer, ids: &[u32]) -> rediff_api::Result<String> {
    let special: std::collections::HashSet<u32> = tok.special_ids().into_iter().collect();
    let mut out = String::new();
    let mut run: Vec<u32> = Vec::new();
    for &id in ids {
        if special.contains(&id) {
            out.push_str(&tok.decode(&run)?);
            run.clear();
            out.push_str(&tok.id_to_token(id).unwrap_or_default());
        } else {
            run.push(id);
        }
    }
    out.push_str(&tok.decode(&run)?);
    Ok(out)
}

/// Runs `rediff generate`: one image, or a directory in batches.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let proto = Protocol::of(&args);
    // Check the cheap things before loading the model.
    if args.trace && args.images.is_some() && args.format != OutputFormat::Json {
        bail!("--trace with --images needs --format json (step events per caption)");
    }
    let batch_images = match (&args.images, &args.out) {
        (Some(dir), Some(out)) => {
            if args.batch_size == 0 {
                bail!("--batch-size must be at least 1");
            }
            Some((list_images(dir)?, out.clone()))
        }
        _ => None,
    };
    super::set_threads(args.threads);
    let registry = crate::registry::with_plugins(&args.plugins)?;
    let mut load = LoadOptions::with_weights(args.device.resolve()?, args.dtype);
    load.gguf = args.gguf.clone();
    let model = registry.load_model(&args.model, &load)?;
    if batch_images.is_none() && args.threads.is_none() {
        // Before the first tensor op: candle reads the thread count per op.
        super::set_threads(model.single_prompt_threads());
    }
    let policy_spec = policy_spec(&args)?;
    let policy_name = policy_spec.kind().to_string();
    let policy = registry.build_policy(&policy_spec, &BuildContext::default())?;
    let schedule =
        registry.build_schedule(&schedule_spec(&args.model)?, &BuildContext::default())?;
    let settings = SamplerSettings {
        gen_length: proto.gen_length,
        block_length: proto.block_length,
        steps: proto.steps,
        temperature: args.temperature,
        max_block_steps: args.max_block_steps,
        cache: CacheSettings {
            mode: args.cache,
            refresh: args.cache_refresh,
        },
    };
    let sampler = Sampler {
        model: model.as_ref(),
        schedule: schedule.as_ref(),
        policy: policy.as_ref(),
        policy_name: &policy_name,
        settings,
    };
    match batch_images {
        Some((images, out)) => caption_directory(&args, &proto, &sampler, &images, &out),
        None => caption_one(&args, &proto, &sampler, args.image.as_deref()),
    }
}

/// Captions one image (or answers a text-only question), optionally
/// tracing every step.
fn caption_one(
    args: &GenerateArgs,
    proto: &Protocol,
    sampler: &Sampler<'_>,
    image: Option<&Path>,
) -> anyhow::Result<()> {
    let model = sampler.model;
    let prompt = match image {
        Some(path) => Prompt {
            image: Some(Arc::new(load_image(path)?)),
            ids: model.prompt_ids(&proto.question)?,
        },
        None => Prompt {
            image: None,
            ids: model.text_prompt_ids(&proto.question).with_context(|| {
                "neither --image nor --images was given, so the question is asked without an image"
            })?,
        },
    };
    let context = model.encode_prompts(&[prompt])?;
    let mut rng = rng::stream(args.seed, "generate", 0);
    let color = std::io::stdout().is_terminal();
    let json = args.format == OutputFormat::Json;
    let mut events = Vec::new();
    let mut trace = |ev: &StepEvent| {
        if json {
            events.push(ev.clone());
        } else {
            outln!("{}", render_step(ev, model, color));
        }
    };
    let gen = sampler
        .generate(
            &context,
            &mut rng,
            if args.trace { Some(&mut trace) } else { None },
        )
        .context("sampling")?;
    let name = image.map(|p| p.display().to_string());
    if json {
        outln!(
            "{}",
            caption_json(model, proto, &gen, 0, name.as_deref(), &events)?
        );
        return Ok(());
    }
    if args.trace {
        outln!(
            "{} forward passes, {} tokens revised, {} remasked",
            gen.forward_passes,
            gen.revisions[0],
            gen.remasks[0]
        );
    }
    outln!("{}", proto.caption(model, &gen, 0)?);
    Ok(())
}

/// The JSON object of sample `i` of `gen`: caption, token ids, stop,
/// forward passes, revisions and (when traced) its step events.
fn caption_json(
    model: &dyn ModelBackend,
    proto: &Protocol,
    gen: &Generation,
    i: usize,
    image: Option<&str>,
    events: &[StepEvent],
) -> anyhow::Result<String> {
    let question = &proto.question;
    let tokens = &gen.outputs()[i];
    let trace: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| e.sample == i)
        .map(|e| {
            serde_json::json!({
                "block": e.block,
                "step": e.step,
                "tokens": e.tokens,
                "unmasked": e.unmasked,
                "revised": e.revised.iter().map(|&(p, old)| serde_json::json!({"position": p, "was": old})).collect::<Vec<_>>(),
                "remasked": e.remasked,
                "stop": e.stop,
                "prompt_picks": e.prompt_picks,
            })
        })
        .collect();
    let mut v = serde_json::json!({
        "image": image,
        "question": question,
        "caption": proto.caption(model, gen, i)?,
        "tokens": tokens,
        "response": gen.responses[i],
        "stop": gen.stops[i],
        "forward_passes": gen.steps[i],
        "revisions": gen.revisions[i],
        "remasks": gen.remasks[i],
        "prompt_picks": gen.prompt_picks[i],
    });
    if !events.is_empty() {
        v["trace"] = serde_json::Value::Array(trace);
    }
    Ok(serde_json::to_string(&v)?)
}

/// The images `--images` captions: `.png`, `.jpg`, `.jpeg` files directly
/// in `dir`, sorted by file name, each with its name (the predictions key).
fn list_images(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("--images {}", dir.display()))?;
    let mut images = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("--images {}", dir.display()))?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
        if !wanted || !path.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            bail!(
                "{}: the file name is not UTF-8 and cannot be a predictions key",
                path.display()
            );
        };
        images.push((name, path));
    }
    if images.is_empty() {
        bail!(
            "--images {}: no .png, .jpg or .jpeg files in it",
            dir.display()
        );
    }
    images.sort();
    Ok(images)
}

/// Captions `images` in batches of `--batch-size` and writes the predictions.
fn caption_directory(
    args: &GenerateArgs,
    proto: &Protocol,
    sampler: &Sampler<'_>,
    images: &[(String, PathBuf)],
    out: &Path,
) -> anyhow::Result<()> {
    let model = sampler.model;
    let prompt_ids = model.prompt_ids(&proto.question)?;
    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(images.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut preds = BTreeMap::new();
    if out.exists() && !args.resume {
        bail!(
            "{} exists: --resume continues it (captioned images are skipped), or choose another --out",
            out.display()
        );
    }
    if args.resume && out.exists() {
        preds = read_predictions(out)?;
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
    }
    let done_before = preds.len();
    let mut captioned = 0usize;
    let mut revisions = 0usize;
    for (b, batch) in images.chunks(args.batch_size).enumerate() {
        // A batch is skipped only when all of it is there, so every caption
        // comes from the same batch and seed stream as in an uninterrupted run.
        if batch.iter().all(|(name, _)| preds.contains_key(name)) {
            bar.inc(batch.len() as u64);
            continue;
        }
        let prompts = batch
            .iter()
            .map(|(_, path)| {
                Ok(Prompt {
                    image: Some(Arc::new(load_image(path)?)),
                    ids: prompt_ids.clone(),
                })
            })
            .collect::<rediff_api::Result<Vec<_>>>()?;
        let context = model.encode_prompts(&prompts)?;
        let mut rng = rng::stream(args.seed, "generate", b as u64);
        let mut events = Vec::new();
        let mut trace = |ev: &StepEvent| events.push(ev.clone());
        let gen = sampler
            .generate(
                &context,
                &mut rng,
                if args.trace { Some(&mut trace) } else { None },
            )
            .with_context(|| format!("sampling {} to {}", batch[0].0, batch[batch.len() - 1].0))?;
        for (i, (name, path)) in batch.iter().enumerate() {
            preds.insert(name.clone(), proto.caption(model, &gen, i)?);
            if args.format == OutputFormat::Json {
                let path = path.display().to_string();
                bar.suspend(|| -> anyhow::Result<()> {
                    outln!(
                        "{}",
                        caption_json(model, proto, &gen, i, Some(&path), &events)?
                    );
                    Ok(())
                })?;
            }
        }
        revisions += gen.revisions.iter().sum::<usize>();
        captioned += batch.len();
        // Rewritten (atomically) after every batch: a kill loses one batch.
        write_predictions(out, &preds)?;
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    write_predictions(out, &preds)?;
    let seconds = started.elapsed().as_secs_f64();
    if args.format == OutputFormat::Json {
        return Ok(());
    }
    let resumed = if done_before > 0 {
        format!(" ({done_before} already in the file)")
    } else {
        String::new()
    };
    outln!(
        "captioned {captioned} images{resumed} in {seconds:.1} s ({:.1} images/s, {:.2} revisions per caption); wrote {}",
        captioned as f64 / seconds.max(1e-9),
        revisions as f64 / captioned.max(1) as f64,
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: GenerateArgs,
    }

    fn protocol(extra: &[&str]) -> Protocol {
        let mut argv = vec!["rediff", "--model", "m"];
        argv.extend(extra);
        Protocol::of(&Cli::parse_from(argv).args)
    }

    #[test]
    fn the_reference_preset_sets_the_official_protocol_and_flags_override_it() {
        let p = protocol(&["--preset", "reference-eval"]);
        assert_eq!(p.question, "Please describe the image in detail.");
        assert_eq!((p.gen_length, p.block_length, p.steps), (128, 128, 128));
        assert!(p.keep_special);
        let p = protocol(&["--preset", "reference-eval", "--steps", "32"]);
        assert_eq!((p.gen_length, p.block_length, p.steps), (128, 128, 32));
        let p = protocol(&[]);
        assert_eq!(p.question, "describe the image .");
        assert_eq!((p.gen_length, p.block_length, p.steps), (24, 24, 24));
        assert!(!p.keep_special);
        let p = protocol(&[
            "--gen-length",
            "32",
            "--block-length",
            "8",
            "--question",
            "q",
        ]);
        assert_eq!((p.gen_length, p.block_length, p.steps), (32, 8, 32));
        assert_eq!(p.question, "q");
    }
}
