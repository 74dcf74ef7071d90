//! `rediff generate`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rediff_core::image_io::load_rgb;
use rediff_core::model::{ModelBackend, Prompt};
use rediff_core::registry::{BuildContext, LoadOptions};
use rediff_core::sampler::{Sampler, SamplerSettings, StepEvent};
use rediff_core::tokens::cut_at_eot;
use rediff_core::{rng, ComponentSpec};

/// Which sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplerKind {
    /// Plain masked-diffusion decoding: decoded tokens are final.
    Denoise,
    /// ReDiff refinement: decoded tokens are rewritten at every step.
    Refine,
}

/// Arguments of `rediff generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Checkpoint directory (config.json, weights, tokenizer.json), e.g. runs/quickstart/models/rediff-base.
    #[arg(long)]
    model: PathBuf,
    /// Image file to caption (PNG or JPEG).
    #[arg(long)]
    image: PathBuf,
    /// The question.
    #[arg(long, default_value = "describe the image .")]
    question: String,
    /// Total sampling steps S; tokens per step = gen-length / S.
    #[arg(long, default_value_t = 24)]
    steps: usize,
    /// Response length L in tokens.
    #[arg(long, default_value_t = 24)]
    gen_length: usize,
    /// Block length B for semi-autoregressive decoding (divides L; default L).
    #[arg(long)]
    block_length: Option<usize>,
    /// denoise (plain) or refine (ReDiff).
    #[arg(long, value_enum, default_value_t = SamplerKind::Refine)]
    sampler: SamplerKind,
    /// With refine: first step (within each block) that revises decoded tokens.
    #[arg(long, default_value_t = 0)]
    refine_start: usize,
    /// With refine: revise only this top share (0-1] of decoded tokens by confidence.
    #[arg(long)]
    topk: Option<f64>,
    /// Gumbel temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Seed for sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print every step: masked (_), newly decoded and revised tokens,
    /// in colour on a terminal.
    #[arg(long)]
    trace: bool,
}

fn policy_spec(args: &GenerateArgs) -> anyhow::Result<ComponentSpec> {
    let text = match args.sampler {
        SamplerKind::Denoise => "kind = \"none\"\n".to_string(),
        SamplerKind::Refine => {
            let mut t = format!("kind = \"refine\"\nstart = {}\n", args.refine_start);
            if let Some(k) = args.topk {
                t.push_str(&format!("topk = {k}\n"));
            }
            t
        }
    };
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

/// Captions one image.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let registry = crate::registry::builtin()?;
    let model = registry.load_model(&args.model, &LoadOptions::default())?;
    let image = Arc::new(load_rgb(&args.image)?);
    let policy = registry.build_policy(&policy_spec(&args)?, &BuildContext::default())?;
    let schedule = registry.build_schedule(
        &ComponentSpec::from_toml_str("schedule", "kind = \"linear\"")?,
        &BuildContext::default(),
    )?;
    let settings = SamplerSettings {
        gen_length: args.gen_length,
        block_length: args.block_length.unwrap_or(args.gen_length),
        steps: args.steps,
        temperature: args.temperature,
    };
    let prompt = Prompt {
        image,
        ids: model.prompt_ids(&args.question)?,
    };
    let context = model.encode_prompts(&[prompt])?;
    let sampler = Sampler {
        model: model.as_ref(),
        schedule: schedule.as_ref(),
        policy: policy.as_ref(),
        settings,
    };
    let mut rng = rng::stream(args.seed, "generate", 0);
    let color = std::io::stdout().is_terminal();
    let mut trace = |ev: &StepEvent| println!("{}", render_step(ev, model.as_ref(), color));
    let gen = sampler
        .generate(
            &context,
            &mut rng,
            if args.trace { Some(&mut trace) } else { None },
        )
        .context("sampling")?;
    let out = cut_at_eot(&gen.responses[0], model.special_tokens().eot);
    let caption = model.tokenizer().decode(out)?;
    if args.trace {
        println!(
            "{} forward passes, {} tokens revised",
            gen.forward_passes, gen.revisions[0]
        );
    }
    println!("{caption}");
    Ok(())
}
