//! Parity with the official ReDiff code itself: everything under
//! `tests/reference/fixtures/official/` was written by
//! `tests/reference/official_parity.py`, which builds a tiny random LLaDA-V
//! model with the official classes, saves it with `save_pretrained` and
//! records what the official code computes on PNG files and questions.
//! Pixels, prompt ids, `torch.topk` picks and generated tokens must be
//! equal; tower, projector, merged features, prompt embeddings and the
//! first step's logits within 1e-4 (f32), so a failure points at the stage
//! that broke.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use candle_core::{Device, Tensor};
use rediff_api::__private::torch_topk_indices;
use rediff_api::cache::{CacheMode, CacheSettings, CachedPass, KvCache};
use rediff_api::model::{ModelBackend, Prompt};
use rediff_api::policy::RefinementPolicy;
use rediff_api::schedule::{uniform_unmask_counts, NoiseSchedule};
use rediff_formats::image::load_image;
use rediff_llada_v::pil::PilImage;
use rediff_llada_v::preprocess::image_tiles_u8;
use rediff_llada_v::prompt::IMAGE_PLACEHOLDER;
use rediff_llada_v::{LladaVBackend, LladaVOptions};
use rediff_sampler::{Sampler, SamplerSettings};
use rediff_standard::{NoRefinement, Refine, RefineOptions};
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Cases {
    generated_with: serde_json::Value,
    live_ids: Vec<u32>,
    images: HashMap<String, ImageCase>,
    generate: Vec<GenerateCase>,
    resize: Vec<ResizeCase>,
    process: Vec<ProcessCase>,
    topk: Vec<TopkCase>,
}

#[derive(Deserialize)]
struct ImageCase {
    file: String,
    question: String,
    prompt_ids: Vec<i64>,
    tiles: usize,
    prompt_length: usize,
}

#[derive(Deserialize, Debug)]
struct GenerateCase {
    image: Option<String>,
    question: String,
    gen_length: usize,
    block_length: usize,
    steps: usize,
    revise: bool,
    revise_topk: Option<f64>,
    revise_start: Option<f64>,
    tokens: Vec<u32>,
    stopped_early: bool,
}

#[derive(Deserialize)]
struct ResizeCase {
    image: String,
    size: [u32; 2],
    mode: String,
    key: String,
}

#[derive(Deserialize)]
struct ProcessCase {
    image: String,
    mode: String,
    key: String,
}

#[derive(Deserialize)]
struct TopkCase {
    n: usize,
    k: usize,
    finite: HashMap<String, f64>,
    indices: Vec<usize>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures/official")
}

fn cases() -> &'static Cases {
    static CASES: OnceLock<Cases> = OnceLock::new();
    CASES.get_or_init(|| {
        let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn expected() -> &'static HashMap<String, Tensor> {
    static EXPECTED: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        candle_core::safetensors::load(fixtures().join("expected.safetensors"), &Device::Cpu)
            .unwrap()
    })
}

fn backend() -> &'static LladaVBackend {
    static BACKEND: OnceLock<LladaVBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        LladaVBackend::load(&fixtures().join("checkpoint"), LladaVOptions::default()).unwrap()
    })
}

fn image_path(name: &str) -> PathBuf {
    fixtures().join(format!("{name}.png"))
}

fn u8_values(t: &Tensor) -> Vec<u8> {
    t.flatten_all().unwrap().to_vec1::<u8>().unwrap()
}

fn max_diff(name: &str, ours: &Tensor, expected: &Tensor) {
    assert_eq!(ours.dims(), expected.dims(), "{name}: shape");
    let d = rediff_nn::ops::max_abs_diff(ours, expected).unwrap();
    eprintln!("{name}: max |diff| = {d:.3e}");
    assert!(d <= TOLERANCE, "{name}: max |diff| {d} > {TOLERANCE}");
}

/// Count of differing bytes and the first difference, for a readable failure.
fn compare_bytes(name: &str, ours: &[u8], expected: &[u8]) {
    assert_eq!(ours.len(), expected.len(), "{name}: length");
    let diffs: Vec<usize> = (0..ours.len())
        .filter(|&i| ours[i] != expected[i])
        .collect();
    assert!(
        diffs.is_empty(),
        "{name}: {} of {} bytes differ; first at {}: ours {} Pillow {}",
        diffs.len(),
        ours.len(),
        diffs[0],
        ours[diffs[0]],
        expected[diffs[0]]
    );
}

#[test]
fn fixture_was_made_by_the_official_code() {
    let w = &cases().generated_with;
    assert_eq!(w["official_commit"].as_str().unwrap().len(), 40, "{w}");
    assert!(
        w["transformers"].as_str().unwrap().starts_with("4.40"),
        "{w}"
    );
}

#[test]
fn pillow_resize_is_reproduced_pixel_for_pixel() {
    for (i, case) in cases().resize.iter().enumerate() {
        let src = load_image(&image_path(&case.image)).unwrap();
        let img = PilImage::from_source(&src).resize(case.size[0], case.size[1]);
        let expected = &expected()[&case.key];
        let ours: Vec<u8> = if expected.dims()[2] == 4 {
            (0..case.size[1])
                .flat_map(|y| (0..case.size[0]).map(move |x| (x, y)))
                .flat_map(|(x, y)| img.pixel(x, y))
                .collect()
        } else {
            img.to_rgb().into_raw()
        };
        compare_bytes(
            &format!(
                "resize {i}: {} ({}) to {:?}",
                case.image, case.mode, case.size
            ),
            &ours,
            &u8_values(expected),
        );
    }
}

#[test]
fn tiles_equal_process_images_for_every_mode() {
    let net = backend().network();
    let tile = net.tower().dims().tile as u32;
    let mut checked = Vec::new();
    let processed = cases()
        .process
        .iter()
        .map(|c| (c.image.clone(), c.mode.clone(), c.key.clone()));
    let captioned = cases()
        .images
        .keys()
        .map(|n| (n.clone(), String::new(), format!("{n}.tiles_u8")));
    for (name, mode, key) in processed.chain(captioned) {
        let src = load_image(&image_path(&name)).unwrap();
        let layout = net.layout(src.dimensions());
        let tiles = image_tiles_u8(&PilImage::from_source(&src), &layout, tile);
        let ours: Vec<u8> = tiles
            .iter()
            .flat_map(|t| (0..3).flat_map(move |c| t.pixels().map(move |p| p.0[c])))
            .collect();
        compare_bytes(
            &format!("{name} {mode} tiles"),
            &ours,
            &u8_values(&expected()[&key]),
        );
        checked.push(name);
    }
    assert!(checked.len() >= 8, "{checked:?}");
}

#[test]
fn topk_picks_the_same_ties_as_torch() {
    for case in &cases().topk {
        let mut v = vec![f64::NEG_INFINITY; case.n];
        for (i, x) in &case.finite {
            v[i.parse::<usize>().unwrap()] = *x;
        }
        let got: BTreeSet<usize> = torch_topk_indices(&v, case.k).into_iter().collect();
        let want: BTreeSet<usize> = case.indices.iter().copied().collect();
        assert_eq!(got, want, "n {} k {}", case.n, case.k);
    }
}

fn prompt(name: Option<&str>, question: &str) -> Prompt {
    let b = backend();
    match name {
        Some(n) => Prompt {
            image: Some(Arc::new(load_image(&image_path(n)).unwrap())),
            ids: b.prompt_ids(question).unwrap(),
        },
        None => Prompt {
            image: None,
            ids: b.text_prompt_ids(question).unwrap(),
        },
    }
}

#[test]
fn prompt_ids_match_tokenizer_image_token() {
    for (name, case) in &cases().images {
        let ours = backend().prompt_ids(&case.question).unwrap();
        let expected: Vec<u32> = case
            .prompt_ids
            .iter()
            .map(|&i| {
                if i == -200 {
                    IMAGE_PLACEHOLDER
                } else {
                    i as u32
                }
            })
            .collect();
        assert_eq!(ours, expected, "{name}");
    }
}

#[test]
fn tower_projector_merge_embeddings_and_logits_match() {
    let b = backend();
    let net = b.network();
    let live: Vec<u32> = cases().live_ids.clone();
    let live = Tensor::new(live.as_slice(), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = cases().images.keys().collect();
    names.sort();
    for name in names {
        let case = &cases().images[name];
        let e = |k: &str| &expected()[&format!("{name}.{k}")];
        let src = load_image(&image_path(name)).unwrap();
        assert_eq!(
            case.file,
            image_path(name).file_name().unwrap().to_str().unwrap()
        );
        let layout = net.layout(src.dimensions());
        assert_eq!(layout.num_tiles(), case.tiles, "{name}: tiles");
        let tiles = net.tiles(&src, &layout).unwrap();
        let tower = net.tower().forward(&tiles).unwrap();
        max_diff(&format!("{name} tower"), &tower, e("tower"));
        let proj = net.projector().forward(&tower).unwrap();
        max_diff(&format!("{name} projector"), &proj, e("projector"));
        let p = prompt(Some(name), &case.question);
        let embeds = b.prompt_embeddings(&p).unwrap();
        assert_eq!(
            embeds.dim(0).unwrap(),
            case.prompt_length,
            "{name}: prompt length"
        );
        max_diff(&format!("{name} prompt embeddings"), &embeds, e("embeds"));
        let ctx = b.encode_prompts(&[p]).unwrap();
        let l = e("logits").dim(0).unwrap();
        let masks =
            Tensor::from_vec(vec![b.special_tokens().mask; l], (1, l), &Device::Cpu).unwrap();
        let logits = b.forward(&ctx, &masks).unwrap().squeeze(0).unwrap();
        let logits = logits.index_select(&live, 1).unwrap();
        max_diff(&format!("{name} first-step logits"), &logits, e("logits"));
    }
}

struct Linear;
impl NoiseSchedule for Linear {
    fn mask_probability(&self, t: f32) -> f32 {
        (1.0 - 1e-3) * t + 1e-3
    }
    fn unmask_counts(&self, masked: usize, steps: usize) -> Vec<usize> {
        uniform_unmask_counts(masked, steps)
    }
}

/// The case's output tokens and its prompt picks (positions the reference
/// rewrites in the prompt).
fn generate(case: &GenerateCase, cache: CacheSettings) -> (Vec<u32>, usize) {
    let b = backend();
    let policy: Box<dyn RefinementPolicy> = if case.revise {
        Box::new(
            Refine::new(RefineOptions {
                revise_start: case.revise_start,
                start: None,
                topk: case.revise_topk,
                ..Default::default()
            })
            .unwrap(),
        )
    } else {
        Box::new(NoRefinement::default())
    };
    let sampler = Sampler {
        model: b,
        schedule: &Linear,
        policy: policy.as_ref(),
        policy_name: if case.revise { "refine" } else { "none" },
        settings: SamplerSettings {
            gen_length: case.gen_length,
            block_length: case.block_length,
            steps: case.steps,
            temperature: 0.0,
            max_block_steps: None,
            cache,
        },
    };
    let ctx = b
        .encode_prompts(&[prompt(case.image.as_deref(), &case.question)])
        .unwrap();
    let mut rng = rediff_nn::rng::stream(0, "official", 0);
    let gen = sampler.generate(&ctx, &mut rng, None).unwrap();
    assert_eq!(gen.stops[0].is_some(), case.stopped_early, "{case:?}");
    assert_eq!(gen.prompt_rewrites_skipped[0], 0);
    (gen.outputs().remove(0), gen.prompt_picks[0])
}

#[test]
fn generated_tokens_equal_the_official_generate() {
    let mut failures = Vec::new();
    let mut prompt_picks = 0;
    for case in &cases().generate {
        let (ours, picks) = generate(case, CacheSettings::OFF);
        prompt_picks += picks;
        if ours != case.tokens {
            failures.push(format!("{case:?}\n  ours {ours:?}"));
        }
    }
    assert!(
        cases().generate.iter().any(|c| c.stopped_early),
        "the fixture has no early end-of-turn"
    );
    assert!(
        prompt_picks > 0,
        "no case exercises the reference's prompt picks"
    );
    assert!(
        failures.is_empty(),
        "{} of {} settings differ:\n{}",
        failures.len(),
        cases().generate.len(),
        failures.join("\n")
    );
}

#[test]
fn a_cache_refreshed_every_step_gives_the_official_tokens() {
    // With a full pass every step the cache only stores: the same tokens
    // as without it, for every setting (the two modes take turns).
    for (i, case) in cases().generate.iter().enumerate() {
        let mode = [CacheMode::Prefix, CacheMode::Dual][i % 2];
        let cache = CacheSettings { mode, refresh: 1 };
        assert_eq!(generate(case, cache).0, case.tokens, "{mode} {case:?}");
    }
}

#[test]
fn a_window_pass_over_an_unchanged_response_repeats_the_full_pass() {
    let b = backend();
    let case = &cases().generate[0];
    let ctx = b
        .encode_prompts(&[prompt(case.image.as_deref(), &case.question)])
        .unwrap();
    let l = 16;
    let ids: Vec<u32> = (0..l as u32)
        .map(|i| {
            if i % 3 == 0 {
                b.special_tokens().mask
            } else {
                40 + i
            }
        })
        .collect();
    let response = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut kv = KvCache::new();
    let full = b
        .forward_cached(&ctx, &response, &mut kv, CachedPass::Full)
        .unwrap();
    let plain = b.forward(&ctx, &response).unwrap();
    let diff = |a: &Tensor, c: &Tensor| -> f32 {
        (a - c)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    assert_eq!(
        diff(&full, &plain),
        0.0,
        "a full cached pass is the plain pass"
    );
    for window in [0..l, 4..12, 8..l] {
        let part = b
            .forward_cached(&ctx, &response, &mut kv, CachedPass::Window(window.clone()))
            .unwrap();
        let want = full.narrow(1, window.start, window.len()).unwrap();
        assert!(
            diff(&part, &want) < 1e-4,
            "{window:?}: {}",
            diff(&part, &want)
        );
    }
    // A changed token inside the window changes the window's logits.
    let mut changed = ids.clone();
    changed[9] = 77;
    let changed = Tensor::new(changed.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let part = b
        .forward_cached(&ctx, &changed, &mut kv, CachedPass::Window(8..l))
        .unwrap();
    assert!(diff(&part, &full.narrow(1, 8, l - 8).unwrap()) > 1e-3);
    // A window of another geometry than the stored pass is an error.
    let short = response.narrow(1, 0, 8).unwrap();
    let err = b
        .forward_cached(&ctx, &short, &mut kv, CachedPass::Window(0..8))
        .unwrap_err();
    assert!(
        err.to_string().contains("cached keys and values are for"),
        "{err}"
    );
}

#[test]
fn a_missing_tower_config_is_a_clear_error() {
    // mm_vision_tower names a directory that is not there and the config has no vision_config.
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("checkpoint");
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["mm_vision_tower"] = "nowhere/siglip-tiny".into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let err = LladaVBackend::load(dir.path(), LladaVOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("config.json")
            && err.contains("nowhere/siglip-tiny")
            && err.contains("vision_config"),
        "{err}"
    );
}
