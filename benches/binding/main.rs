//! How a `shapes` model binds attributes to objects, and where plain
//! decoding at one token per step goes wrong.
//!
//! ```text
//! cargo bench --bench binding -- --model runs/quickstart/models/baseline
//! ```
//!
//! On freshly rendered two-object scenes, with a random-order caption as the
//! reference, it measures three things (`docs/results/seeds-history.md` reads them):
//!
//! - **Exclusion**: one attribute of the first object phrase masked, the
//!   rest of the caption visible. The other phrase gives the answer away by
//!   elimination, so a model that has not bound anything still scores high.
//! - **Binding**: every size, colour, shape and place word of both phrases
//!   masked except one *anchor* attribute of the first phrase; accuracy of
//!   each other attribute of that phrase, over scenes whose two objects
//!   differ in both. Only a model that binds the anchor to its object in
//!   the image can score above 0.5.
//! - **Decoding**: plain denoising, greedy, one token per step (the
//!   report's `baseline/denoise @ 1`): the share of captions that end right,
//!   which attribute is decoded first, and the first word after which the
//!   caption can no longer become any right caption, with how many of its
//!   phrase's attributes were visible when it was chosen.
//! - **Steps** (`--tokens-per-step`, default 4 and 8): greedy decoding with
//!   several tokens per step, plain and refining (ReDiff's sampler, revising
//!   from the first step): at which step each caption first leaves every
//!   right caption, how many wrong captions the rewrites repair, and how
//!   many end wrong from a word chosen at their last step, which no sampler
//!   step can revise. `--random-order` adds the same with masks filled in
//!   random order (`remasking = "random"`); `--thresholds 0.6` adds
//!   threshold decoding (plain and with rewrites) at that threshold.
//!
//! Places are compared as positions ("at the center" = "in the middle").
//! Scenes are rendered with the `shapes` defaults (48 px, noise 8, jitter
//! 0.5: the quickstart's), so probe a model trained on other images with care.
//!
//! Under `cargo test` (no `--bench` argument) it checks the caption layout
//! and the consistency test on hand cases, then runs once on an untrained
//! model with a few scenes and checks the table and the JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use rand::SeedableRng;
use rediff_api::model::{ModelBackend, Prompt};
use rediff_api::policy::RefinementPolicy;
use rediff_api::tokens::pad_response;
use rediff_sampler::{Sampler, SamplerSettings, StepEvent};
use rediff_shapes::scene::{Scene, SceneObject};
use rediff_shapes::{caption, oracle, render, ShapesOptions};
use rediff_standard::{
    Linear, LinearOptions, NoRefinement, NoRefinementOptions, Refine, RefineOptions, Remasking,
    Threshold, ThresholdOptions,
};
use rediff_tiny_vlm::TinyVlmBackend;
use serde::Serialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `cargo bench --bench binding -- [options]`.
#[derive(Debug, Parser)]
#[command(
    name = "binding",
    about = "How a shapes model binds attributes to objects, and where decoding at one token per step goes wrong"
)]
struct Args {
    /// A tiny-vlm checkpoint trained on `shapes` (a run's `models/baseline`, say).
    #[arg(long)]
    model: PathBuf,
    /// Two-object scenes rendered for the probe.
    #[arg(long, default_value_t = 400)]
    scenes: usize,
    /// Seed of the scenes, their captions and their pixel noise.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Response length the model was trained with (the pipeline's `gen_length`).
    #[arg(long, default_value_t = 24)]
    gen_length: usize,
    /// Tokens per step of the step anatomy (each divides `--gen-length`).
    #[arg(long, value_delimiter = ',', default_values_t = [4usize, 8])]
    tokens_per_step: Vec<usize>,
    /// Also follow threshold decoding (Fast-dLLM's `threshold`, plain and
    /// with ReDiff's rewrites, `revise = true`) step by step at these
    /// confidence thresholds, e.g. `--thresholds 0.6` (each in (0, 1]).
    #[arg(long, value_delimiter = ',')]
    thresholds: Vec<f64>,
    /// Also follow the fixed budgets with masks filled in random order
    /// (`remasking = "random"`, plain and refining).
    #[arg(long)]
    random_order: bool,
    /// Also write the measurements here as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The attributes of an object phrase.
const ATTRIBUTES: [&str; 4] = ["size", "colour", "shape", "place"];

/// Word positions of attribute `a` of phrase `k` in a two-object caption
/// (`two objects : a S C SH P the W and a S C SH P the W .`); a place is
/// its preposition and its position word, the word last.
fn slots(k: usize, a: usize) -> Vec<usize> {
    let first = 2 + 8 * k; // the connector before the phrase
    match a {
        0..=2 => vec![first + 2 + a],
        _ => vec![first + 5, first + 7],
    }
}

/// The attribute at word position `p` of a two-object caption, if any.
fn attribute_at(p: usize) -> Option<(usize, usize)> {
    (0..2)
        .flat_map(|k| (0..4).map(move |a| (k, a)))
        .find(|&(k, a)| slots(k, a).contains(&p))
}

fn value(o: &SceneObject, a: usize) -> &str {
    [&o.size, &o.color, &o.shape, &o.position][a]
}

/// A place word as a scene position, from the grammar's own table
/// (`center` is the middle); other words unchanged.
fn position(word: &str) -> &str {
    caption::PLACES
        .iter()
        .find(|p| p.1 == word)
        .map_or(word, |p| p.2)
}

/// Whether a partly decoded response (`None` = still masked) can still
/// become one of `rights`.
fn consistent(partial: &[Option<u32>], rights: &[Vec<u32>]) -> bool {
    rights.iter().any(|r| {
        partial
            .iter()
            .zip(r)
            .all(|(p, t)| p.is_none_or(|p| p == *t))
    })
}

/// One probed scene.
struct Case {
    prompt: Prompt,
    /// The reference caption, tokenised and padded.
    reference: Vec<u32>,
    /// Its objects in caption order.
    ordered: Vec<SceneObject>,
    /// Every right caption, tokenised and padded.
    rights: Vec<Vec<u32>>,
}

/// What the probe measured.
#[derive(Debug, Default, Serialize)]
struct Measurements {
    model: String,
    scenes: usize,
    seed: u64,
    /// Accuracy per attribute with only it masked (elimination possible).
    exclusion: BTreeMap<String, f64>,
    /// `binding[anchor][target]`: accuracy from that anchor alone.
    binding: BTreeMap<String, BTreeMap<String, f64>>,
    /// Scenes each binding cell averages over.
    binding_scenes: BTreeMap<String, BTreeMap<String, usize>>,
    /// Captions of plain one-token-per-step decoding that end right.
    decoded_right: f64,
    /// The attribute each caption decoded first, counted.
    first_decoded: BTreeMap<String, usize>,
    /// `first_wrong[attribute][visible]`: captions whose first word that
    /// leaves every right caption was that attribute, chosen with `visible`
    /// attributes of its phrase already decoded.
    first_wrong: BTreeMap<String, BTreeMap<usize, usize>>,
    /// Decoding at several tokens per step, plain and refining.
    steps: Vec<StepAnatomy>,
}

/// Where captions go wrong at several tokens per step.
#[derive(Debug, Default, Serialize)]
struct StepAnatomy {
    tokens_per_step: usize,
    /// `denoise` (plain), `refine` (ReDiff's sampler from the first step),
    /// `threshold@t` or `threshold-revise@t` (then `tokens_per_step` is 1,
    /// the step guard: at least one token per step).
    sampler: String,
    /// Sampler steps of the block (`gen_length / tokens_per_step`): the most
    /// a caption can take.
    steps: usize,
    /// Forward passes a caption took, on average.
    passes_per_caption: f64,
    /// Captions that end right.
    right: f64,
    /// `went_wrong_at[s]`: captions that first leave every right caption
    /// at step `s`.
    went_wrong_at: Vec<usize>,
    /// Captions wrong after some step that end right: repaired by rewrites.
    repaired: usize,
    /// Captions that end wrong whose first wrong word came at their last
    /// step (after it no step is left to revise it).
    wrong_from_last_step: usize,
    /// Captions that end wrong.
    wrong: usize,
    /// Tokens rewritten per caption.
    rewrites_per_caption: f64,
}

fn build_cases(model: &dyn ModelBackend, args: &Args) -> anyhow::Result<Vec<Case>> {
    let defaults = ShapesOptions::default();
    let opts = render::RenderOptions {
        image_size: defaults.image_size,
        noise: defaults.noise,
        jitter: defaults.jitter,
    };
    let eot = model.special_tokens().eot;
    let tokenize = |text: &str| -> anyhow::Result<Vec<u32>> {
        let ids = model.tokenizer().encode(text)?;
        ensure!(
            ids.len() == text.split_whitespace().count(),
            "the model's tokenizer does not give one token per word of `{text}`: not a shapes model?"
        );
        Ok(pad_response(&ids, eot, args.gen_length)?)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let question = defaults.question.clone();
    (0..args.scenes)
        .map(|_| {
            let scene = Scene::random(&mut rng, 2, 2);
            let image = render::render(&scene, &opts, &mut rng);
            let cap = caption::generate(&scene, caption::Order::Random, true, &mut rng);
            Ok(Case {
                prompt: Prompt {
                    image: Some(Arc::new(rediff_formats::source_from_rgb(image))),
                    ids: model.prompt_ids(&question)?,
                },
                reference: tokenize(&cap.text())?,
                ordered: rediff_shapes::pairs::caption_order(&scene, &cap),
                rights: oracle::right_captions(&scene)
                    .iter()
                    .map(|c| tokenize(c))
                    .collect::<anyhow::Result<_>>()?,
            })
        })
        .collect()
}

/// Greedy predictions of `model` at every position of `inputs`.
fn predict(
    model: &dyn ModelBackend,
    ctx: &rediff_api::model::PromptContext,
    inputs: &[Vec<u32>],
) -> anyhow::Result<Vec<Vec<u32>>> {
    let (n, l) = (inputs.len(), inputs[0].len());
    let flat: Vec<u32> = inputs.iter().flatten().copied().collect();
    let logits = model.forward(ctx, &Tensor::from_vec(flat, (n, l), model.device())?)?;
    Ok(logits.argmax(candle_core::D::Minus1)?.to_vec2::<u32>()?)
}

fn measure(args: &Args) -> anyhow::Result<Measurements> {
    let model = TinyVlmBackend::load(&args.model, &Device::Cpu, DType::F32)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let model: &dyn ModelBackend = &model;
    let cases = build_cases(model, args)?;
    let ctx = model.encode_prompts(&cases.iter().map(|c| c.prompt.clone()).collect::<Vec<_>>())?;
    let mask = model.special_tokens().mask;
    let word = |id: u32| -> String {
        let w = model.tokenizer().decode(&[id]).unwrap_or_default();
        position(w.trim()).to_string()
    };
    // Right when the word (the position word, for a place) is right.
    let right = |c: &Case, pred: &[u32], a: usize| {
        let p = *slots(0, a).last().expect("a slot");
        word(pred[p]) == word(c.reference[p])
    };
    let mut m = Measurements {
        model: args.model.display().to_string(),
        scenes: args.scenes,
        seed: args.seed,
        ..Default::default()
    };
    for (a, name) in ATTRIBUTES.iter().enumerate() {
        let inputs: Vec<Vec<u32>> = cases
            .iter()
            .map(|c| {
                let mut x = c.reference.clone();
                slots(0, a).into_iter().for_each(|p| x[p] = mask);
                x
            })
            .collect();
        let pred = predict(model, &ctx, &inputs)?;
        let hits = cases
            .iter()
            .zip(&pred)
            .filter(|(c, p)| right(c, p, a))
            .count();
        m.exclusion
            .insert(name.to_string(), hits as f64 / cases.len() as f64);
    }
    for (anchor, anchor_name) in ATTRIBUTES.iter().enumerate() {
        let inputs: Vec<Vec<u32>> = cases
            .iter()
            .map(|c| {
                let mut x = c.reference.clone();
                for (k, a) in (0..2).flat_map(|k| (0..4).map(move |a| (k, a))) {
                    if (k, a) != (0, anchor) {
                        slots(k, a).into_iter().for_each(|p| x[p] = mask);
                    }
                }
                x
            })
            .collect();
        let pred = predict(model, &ctx, &inputs)?;
        for target in (0..4).filter(|&t| t != anchor) {
            let differ = |a: usize, c: &Case| value(&c.ordered[0], a) != value(&c.ordered[1], a);
            let cells: Vec<bool> = cases
                .iter()
                .zip(&pred)
                .filter(|(c, _)| differ(anchor, c) && differ(target, c))
                .map(|(c, p)| right(c, p, target))
                .collect();
            let acc = cells.iter().filter(|&&h| h).count() as f64 / cells.len().max(1) as f64;
            m.binding
                .entry(anchor_name.to_string())
                .or_default()
                .insert(ATTRIBUTES[target].into(), acc);
            m.binding_scenes
                .entry(anchor_name.to_string())
                .or_default()
                .insert(ATTRIBUTES[target].into(), cells.len());
        }
    }
    decode(model, &ctx, &cases, &mut m)?;
    let refine = Refine::new(RefineOptions {
        start: Some(0),
        ..Default::default()
    })
    .map_err(anyhow::Error::msg)?;
    let refine_random = Refine::new(RefineOptions {
        start: Some(0),
        remasking: Remasking::Random,
        ..Default::default()
    })
    .map_err(anyhow::Error::msg)?;
    let plain = NoRefinement::default();
    let plain_random = NoRefinement {
        options: NoRefinementOptions {
            remasking: Remasking::Random,
        },
    };
    for &k in &args.tokens_per_step {
        ensure!(
            k > 0 && args.gen_length % k == 0,
            "--tokens-per-step {k} does not divide --gen-length {}",
            args.gen_length
        );
        let mut policies: Vec<(&str, &dyn RefinementPolicy)> =
            vec![("denoise", &plain), ("refine", &refine)];
        if args.random_order {
            policies.push(("denoise-random", &plain_random));
            policies.push(("refine-random", &refine_random));
        }
        for (name, policy) in policies {
            m.steps
                .push(step_anatomy(model, &ctx, &cases, k, name, policy)?);
        }
    }
    for &t in &args.thresholds {
        for revise in [false, true] {
            let policy = Threshold::new(ThresholdOptions {
                threshold: t,
                revise,
                ..Default::default()
            })
            .map_err(|e| anyhow::anyhow!("--thresholds {t}: {e}"))?;
            let name = format!("threshold{}@{t}", if revise { "-revise" } else { "" });
            m.steps
                .push(step_anatomy(model, &ctx, &cases, 1, &name, &policy)?);
        }
    }
    Ok(m)
}

/// Plain greedy decoding at one token per step, followed step by step.
fn decode(
    model: &dyn ModelBackend,
    ctx: &rediff_api::model::PromptContext,
    cases: &[Case],
    m: &mut Measurements,
) -> anyhow::Result<()> {
    let l = cases[0].reference.len();
    let mask = model.special_tokens().mask;
    let mut first_decoded: Vec<Option<usize>> = vec![None; cases.len()];
    let mut first_wrong: Vec<Option<(usize, usize)>> = vec![None; cases.len()];
    let mut on_step = |e: &StepEvent| {
        let i = e.sample;
        let partial: Vec<Option<u32>> =
            e.tokens.iter().map(|&t| (t != mask).then_some(t)).collect();
        for &p in &e.unmasked {
            if let Some((_, a)) = attribute_at(p) {
                first_decoded[i].get_or_insert(a);
            }
        }
        if first_wrong[i].is_none() && !consistent(&partial, &cases[i].rights) {
            // One token per step: the word just chosen is the culprit.
            let p = e.unmasked.first().copied().unwrap_or(0);
            let (attr, visible) = match attribute_at(p) {
                Some((k, a)) => {
                    let seen = (0..4)
                        .filter(|&b| b != a)
                        .filter(|&b| slots(k, b).iter().all(|&q| partial[q].is_some()))
                        .count();
                    (a, seen)
                }
                None => (4, 0),
            };
            first_wrong[i] = Some((attr, visible));
        }
    };
    let settings = SamplerSettings::for_tokens_per_step(l, l, 1, 0.0);
    let plain = (&NoRefinement::default() as &dyn RefinementPolicy, "none");
    greedy(model, ctx, settings, plain, ("binding", 0), &mut on_step)?;
    let name = |a: usize| {
        ATTRIBUTES
            .get(a)
            .copied()
            .unwrap_or("structure")
            .to_string()
    };
    m.decoded_right =
        first_wrong.iter().filter(|w| w.is_none()).count() as f64 / cases.len() as f64;
    for a in first_decoded.into_iter().flatten() {
        *m.first_decoded.entry(name(a)).or_default() += 1;
    }
    for (a, visible) in first_wrong.into_iter().flatten() {
        *m.first_wrong
            .entry(name(a))
            .or_default()
            .entry(visible)
            .or_default() += 1;
    }
    Ok(())
}

/// A response as its caption reads so far: the tokens before the stop, then
/// end-of-turn padding (what follows a stop is never output); `None` for a
/// mask before it.
fn as_output(tokens: &[u32], stop: Option<usize>, mask: u32, eot: u32) -> Vec<Option<u32>> {
    let stop = stop.unwrap_or(tokens.len());
    tokens
        .iter()
        .enumerate()
        .map(|(p, &t)| {
            if p >= stop {
                Some(eot)
            } else {
                (t != mask).then_some(t)
            }
        })
        .collect()
}

/// Greedy decoding at `k` tokens per step with `policy`, followed step by step.
fn step_anatomy(
    model: &dyn ModelBackend,
    ctx: &rediff_api::model::PromptContext,
    cases: &[Case],
    k: usize,
    name: &str,
    policy: &dyn RefinementPolicy,
) -> anyhow::Result<StepAnatomy> {
    let l = cases[0].reference.len();
    let settings = SamplerSettings::for_tokens_per_step(l, l, k, 0.0);
    let steps = settings.steps;
    let mask = model.special_tokens().mask;
    let n = cases.len();
    // Per caption: the first step it is wrong after, the last step seen.
    let mut born: Vec<Option<usize>> = vec![None; n];
    let mut last = vec![0usize; n];
    let mut rewrites = 0usize;
    let eot = model.special_tokens().eot;
    let mut on_step = |e: &StepEvent| {
        let i = e.sample;
        let partial = as_output(&e.tokens, e.stop, mask, eot);
        if !consistent(&partial, &cases[i].rights) {
            born[i].get_or_insert(e.step);
        }
        last[i] = e.step;
        rewrites += e.revised.len();
    };
    let generation = greedy(
        model,
        ctx,
        settings,
        (policy, name),
        ("binding-steps", k as u64),
        &mut on_step,
    )?;
    let mut a = StepAnatomy {
        tokens_per_step: k,
        sampler: name.to_string(),
        steps,
        went_wrong_at: vec![0; steps],
        rewrites_per_caption: rewrites as f64 / n as f64,
        ..Default::default()
    };
    for i in 0..n {
        let out = as_output(&generation.responses[i], generation.stops[i], mask, eot);
        let ends_right = consistent(&out, &cases[i].rights);
        if let Some(s) = born[i] {
            a.went_wrong_at[s] += 1;
            if ends_right {
                a.repaired += 1;
            } else if s == last[i] {
                a.wrong_from_last_step += 1;
            }
        }
        if !ends_right {
            a.wrong += 1;
        }
    }
    a.right = (n - a.wrong) as f64 / n as f64;
    a.passes_per_caption = last.iter().map(|&s| s + 1).sum::<usize>() as f64 / n as f64;
    Ok(a)
}

/// Greedy decoding of every case with `policy` (and its report name),
/// the noise stream `(label, index)`, and `on_step` after every step.
fn greedy(
    model: &dyn ModelBackend,
    ctx: &rediff_api::model::PromptContext,
    settings: SamplerSettings,
    (policy, policy_name): (&dyn RefinementPolicy, &str),
    (label, index): (&str, u64),
    on_step: &mut dyn FnMut(&StepEvent),
) -> anyhow::Result<rediff_sampler::Generation> {
    let schedule = Linear::new(LinearOptions::default()).map_err(anyhow::Error::msg)?;
    let sampler = Sampler {
        model,
        schedule: &schedule,
        policy,
        policy_name,
        settings,
    };
    let mut rng = rediff_nn::rng::stream(0, label, index);
    Ok(sampler.generate(ctx, &mut rng, Some(on_step))?)
}

fn table(m: &Measurements) -> String {
    let mut s = format!(
        "binding probe of {} on {} two-object scenes (seed {})\n\n",
        m.model, m.scenes, m.seed
    );
    s += "Exclusion: one attribute of the first phrase masked, the rest of the caption visible\n\n";
    s += "| size | colour | shape | place |\n|---:|---:|---:|---:|\n|";
    for a in ATTRIBUTES {
        s += &format!(" {:.3} |", m.exclusion[a]);
    }
    s += "\n\nBinding: only the anchor attribute of the first phrase visible (0.5 = chance)\n\n";
    s += "| anchor | size | colour | shape | place |\n|---|---:|---:|---:|---:|\n";
    for anchor in ATTRIBUTES {
        s += &format!("| {anchor} |");
        for target in ATTRIBUTES {
            match m.binding[anchor].get(target) {
                Some(acc) => s += &format!(" {acc:.3} |"),
                None => s += " - |",
            }
        }
        s += "\n";
    }
    s += &format!(
        "\nDecoding, plain and greedy at one token per step: {:.3} of captions right\n",
        m.decoded_right
    );
    s += &format!("First attribute decoded: {:?}\n\n", m.first_decoded);
    s += "First word that leaves every right caption, by attributes of its phrase already decoded\n\n";
    s += "| word | 0 | 1 | 2 | 3 |\n|---|---:|---:|---:|---:|\n";
    for (attr, by) in &m.first_wrong {
        s += &format!("| {attr} |");
        for v in 0..4 {
            s += &format!(" {} |", by.get(&v).copied().unwrap_or(0));
        }
        s += "\n";
    }
    if !m.steps.is_empty() {
        s += "\nSteps: greedy decoding at several tokens per step; captions by the step after which they first leave every right caption\n\n";
        s += "| tokens/step | sampler | passes/caption | right | wrong after step 0, 1, ... | repaired by rewrites | wrong | of which first wrong at their last step | rewrites/caption |\n|---:|---|---:|---:|---|---:|---:|---:|---:|\n";
        for a in &m.steps {
            s += &format!(
                "| {} | {} | {:.2} | {:.3} | {:?} | {} | {} | {} | {:.2} |\n",
                a.tokens_per_step,
                a.sampler,
                a.passes_per_caption,
                a.right,
                a.went_wrong_at,
                a.repaired,
                a.wrong,
                a.wrong_from_last_step,
                a.rewrites_per_caption
            );
        }
    }
    s
}

fn run(args: &Args) -> anyhow::Result<String> {
    ensure!(args.scenes > 0, "--scenes must be positive");
    let m = measure(args)?;
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&m)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(table(&m))
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; anything else is `cargo test`.
    if !argv.iter().any(|a| a == "--bench") {
        return smoke_test();
    }
    print!("{}", run(&Args::parse_from(argv))?);
    Ok(())
}

/// A fresh, untrained tiny-vlm over the shapes vocabulary, saved in `dir`.
fn untrained_model(dir: &Path) -> anyhow::Result<()> {
    let tokenizer = rediff_shapes::vocab::build_tokenizer(&ShapesOptions::default().question)?;
    let cfg = rediff_tiny_vlm::TinyVlmConfig::new(
        rediff_tiny_vlm::TinyVlmOptions {
            hidden_size: 16,
            num_layers: 1,
            num_heads: 2,
            intermediate_size: 16,
            ..Default::default()
        },
        &tokenizer,
    )
    .map_err(anyhow::Error::msg)?;
    TinyVlmBackend::new(cfg, tokenizer, 1, &Device::Cpu)?.save(dir)?;
    Ok(())
}

/// What `cargo test` runs.
fn smoke_test() -> anyhow::Result<()> {
    // The layout of `two objects : a big red circle on the left and a small
    // blue square at the center .`
    assert_eq!(slots(0, 0), vec![4]);
    assert_eq!(slots(0, 3), vec![7, 9]);
    assert_eq!(slots(1, 1), vec![13]);
    assert_eq!(slots(1, 3), vec![15, 17]);
    assert_eq!(attribute_at(14), Some((1, 2)));
    assert_eq!(attribute_at(8), None);
    // Consistency: a partial response can still become a right one or not.
    let rights = vec![vec![1, 2, 3], vec![1, 4, 5]];
    assert!(consistent(&[Some(1), None, None], &rights));
    assert!(consistent(&[None, Some(4), None], &rights));
    assert!(!consistent(&[None, Some(2), Some(5)], &rights));
    assert!(consistent(&[Some(1), Some(2), Some(3)], &rights));
    // Output view: masks before the stop are open, everything after it is padding.
    assert_eq!(
        as_output(&[1, 9, 7, 8, 5], Some(3), 9, 0),
        vec![Some(1), None, Some(7), Some(0), Some(0)]
    );
    assert_eq!(as_output(&[1, 9], None, 9, 0), vec![Some(1), None]);

    let dir = tempfile::tempdir()?;
    untrained_model(dir.path())?;
    let out = dir.path().join("binding.json");
    let args = Args::parse_from([
        "binding",
        "--model",
        dir.path().to_str().context("utf-8 path")?,
        "--scenes",
        "6",
        "--thresholds",
        "0.9",
        "--random-order",
        "--out",
        out.to_str().context("utf-8 path")?,
    ]);
    let table = run(&args)?;
    ensure!(
        table.contains("| anchor | size | colour | shape | place |"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    ensure!(json["scenes"] == 6, "{json}");
    for anchor in ATTRIBUTES {
        let row = json["binding"][anchor]
            .as_object()
            .context("a binding row")?;
        ensure!(row.len() == 3, "{json}");
        ensure!(
            row.values()
                .all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap_or(-1.0))),
            "{json}"
        );
    }
    // Every caption either ends right or has one first wrong word.
    let wrong: u64 = json["first_wrong"]
        .as_object()
        .context("first_wrong")?
        .values()
        .flat_map(|by| by.as_object().into_iter().flat_map(|o| o.values()))
        .map(|v| v.as_u64().unwrap_or(0))
        .sum();
    let right = json["decoded_right"].as_f64().context("decoded_right")?;
    ensure!(
        (right * 6.0).round() as u64 + wrong == 6,
        "{right} right + {wrong} wrong != 6: {json}"
    );
    // Step anatomy: 4 and 8 tokens per step, plain and refining in both
    // orders, then threshold 0.9 plain and revising (step guard: one token
    // per step); every caption ends right or wrong, and every one that went
    // wrong at some step either ends wrong or was repaired.
    let steps = json["steps"].as_array().context("steps")?;
    ensure!(steps.len() == 10, "{json}");
    for a in steps {
        let n = |k: &str| a[k].as_u64().unwrap_or(u64::MAX);
        let born: u64 = a["went_wrong_at"]
            .as_array()
            .context("went_wrong_at")?
            .iter()
            .map(|v| v.as_u64().unwrap_or(0))
            .sum();
        let right = (a["right"].as_f64().context("right")? * 6.0).round() as u64;
        ensure!(right + n("wrong") == 6, "{a}");
        ensure!(born == n("repaired") + n("wrong"), "{a}");
        ensure!(n("wrong_from_last_step") <= n("wrong"), "{a}");
        ensure!(a["steps"] == 24 / n("tokens_per_step"), "{a}");
        let passes = a["passes_per_caption"].as_f64().context("passes")?;
        ensure!(
            (1.0..=a["steps"].as_f64().unwrap_or(0.0)).contains(&passes),
            "{a}"
        );
    }
    let names: Vec<&str> = steps.iter().filter_map(|a| a["sampler"].as_str()).collect();
    ensure!(
        names[..4] == ["denoise", "refine", "denoise-random", "refine-random"]
            && names[8..] == ["threshold@0.9", "threshold-revise@0.9"],
        "{names:?}"
    );
    ensure!(
        steps[8]["repaired"] == 0 && steps[8]["rewrites_per_caption"] == 0.0,
        "plain threshold decoding never rewrites: {json}"
    );
    ensure!(
        steps[0]["sampler"] == "denoise" && steps[0]["repaired"] == 0 && steps[2]["repaired"] == 0,
        "plain denoising never repairs, in either order: {json}"
    );
    // A directory that is not a checkpoint is named in the error.
    let err = run(&Args::parse_from([
        "binding",
        "--model",
        "/nonexistent/model",
    ]))
    .unwrap_err();
    ensure!(format!("{err:#}").contains("/nonexistent/model"), "{err:#}");
    println!("binding smoke test passed");
    Ok(())
}
