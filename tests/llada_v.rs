//! A LLaDA-V checkpoint in the published layout (tiny random weights) runs
//! through the CLI and the pipeline components exactly like a tiny-vlm
//! checkpoint: both samplers from an image file, batch captioning with
//! images of different sizes, the `model` expert, and the `llada-v` model
//! component a pipeline file names.

mod common;

use std::path::Path;

use common::{builtin_registry, rediff};
use image::{Rgb, RgbImage};
use rediff_api::registry::BuildContext;
use rediff_api::{ComponentSpec, ExpertRequest};
use rediff_llada_v::testing::{write_random_checkpoint, TinySpec};

fn checkpoint(dir: &Path) {
    write_random_checkpoint(dir, &TinySpec::default(), 11).unwrap();
}

fn image(path: &Path, w: u32, h: u32) {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 3) as u8, (y * 5) as u8, 77]))
        .save(path)
        .unwrap();
}

fn generate(model: &Path, args: &[&str]) -> std::process::Output {
    rediff()
        .args(["generate", "--device", "cpu", "--model"])
        .arg(model)
        .args(["--gen-length", "8", "--steps", "4"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn both_samplers_caption_an_image_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llada-v");
    checkpoint(&model);
    let img = tmp.path().join("wide.png");
    image(&img, 500, 260);
    let img = img.to_str().unwrap();
    for sampler in ["denoise", "refine"] {
        let out = generate(&model, &["--image", img, "--sampler", sampler, "--trace"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{sampler}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("4 forward passes"), "{sampler}: {stdout}");
        // Same seed, same caption.
        let again = generate(&model, &["--image", img, "--sampler", sampler]);
        let last = stdout.lines().last().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&again.stdout).trim_end(),
            last,
            "{sampler}"
        );
    }
    // bf16 loads and runs too.
    let out = generate(&model, &["--image", img, "--dtype", "bf16"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn batches_of_different_sizes_caption_like_single_images() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llada-v");
    checkpoint(&model);
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    image(&images.join("a.png"), 384, 384);
    image(&images.join("b.png"), 300, 700);
    let preds = tmp.path().join("preds.json");
    let out = rediff()
        .args(["generate", "--device", "cpu", "--model"])
        .arg(&model)
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&preds)
        .args(["--gen-length", "8", "--steps", "4", "--batch-size", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batch: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&preds).unwrap()).unwrap();
    for name in ["a.png", "b.png"] {
        let single = generate(&model, &["--image", images.join(name).to_str().unwrap()]);
        assert_eq!(
            String::from_utf8_lossy(&single.stdout).trim_end(),
            batch[name],
            "{name}"
        );
    }
}

#[test]
fn the_model_expert_reviews_with_a_llada_v_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llada-v");
    checkpoint(&model);
    let img = tmp.path().join("img.png");
    image(&img, 400, 300);
    let registry = builtin_registry();
    let spec = ComponentSpec::from_toml_str(
        "expert",
        &format!(
            "kind = \"model\"\ncheckpoint = {:?}\ngen_length = 16\ndevice = \"cpu\"\ndtype = \"bf16\"\n",
            model.to_str().unwrap()
        ),
    )
    .unwrap();
    let ctx = BuildContext::new(0).with_checkpoints(registry.checkpoint_loader());
    let expert = registry.build_expert(&spec, &ctx).unwrap();
    let request = ExpertRequest::new(
        "0",
        img,
        "describe the image .",
        "a red circle .",
        "a red circle in the center .",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reply = rt.block_on(expert.review(&request)).unwrap();
    // Random weights rewrite something or nothing; either way every pair
    // must be a same-length span of the draft.
    if let rediff_api::ExpertVerdict::Revisions(pairs) = reply.verdict {
        for p in pairs {
            assert!(request.draft.contains(&p.org), "{p:?}");
            assert_eq!(
                p.org.split_whitespace().count(),
                p.target.split_whitespace().count()
            );
        }
    }
}

#[test]
fn the_llada_v_component_builds_from_pipeline_options_frozen() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llada-v");
    checkpoint(&model);
    let registry = builtin_registry();
    let spec = ComponentSpec::from_toml_str(
        "model",
        &format!(
            "kind = \"llada-v\"\npath = {:?}\ndevice = \"cpu\"\n",
            model.to_str().unwrap()
        ),
    )
    .unwrap();
    let backend = registry
        .build_model(&spec, &BuildContext::default())
        .unwrap();
    assert!(backend.varmap().is_none());
    assert_eq!(backend.kind(), "llada-v");
}

#[test]
fn quantized_cached_generation_and_gguf_files_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llada-v");
    checkpoint(&model);
    let img = tmp.path().join("square.png");
    image(&img, 384, 384);
    let img = img.to_str().unwrap();
    let json = |out: &std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Two blocks of 4, two steps each: with a cache, one window pass per block.
    let base = ["--image", img, "--block-length", "4", "--format", "json"];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        json(&generate(&model, &a))
    };
    let exact = with(&[]);
    let cached = with(&["--cache", "dual"]);
    assert_eq!(exact["forward_passes"], 4);
    assert_eq!(cached["forward_passes"], 4);
    // Quantized at load and from a GGUF file written by `rediff quantize`: the same tokens.
    let q8 = with(&["--dtype", "q8_0", "--cache", "prefix"]);
    let gguf = tmp.path().join("lm.gguf");
    let out = rediff()
        .args(["quantize", "--model"])
        .arg(&model)
        .args(["--dtype", "q8_0", "--out"])
        .arg(&gguf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("q8_0 tensor data"));
    let from_file = with(&["--gguf", gguf.to_str().unwrap(), "--cache", "prefix"]);
    assert_eq!(q8["tokens"], from_file["tokens"]);
    // Bad input: an unknown dtype or cache mode lists the choices; q4k on
    // rows of 32 names the tensor and suggests q8_0; a corrupt GGUF is named.
    let err = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        let out = generate(&model, &a);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = err(&["--dtype", "q4"]);
    assert!(e.contains("expected f32, bf16, f16, q8_0, q4k"), "{e}");
    let e = err(&["--cache", "prefx"]);
    assert!(e.contains("expected none, prefix, dual"), "{e}");
    let e = err(&["--dtype", "q4k"]);
    assert!(e.contains("blocks of 256") && e.contains("use q8_0"), "{e}");
    std::fs::write(&gguf, b"GGUF but not really").unwrap();
    let e = err(&["--gguf", gguf.to_str().unwrap()]);
    assert!(
        e.contains("lm.gguf") && e.contains("not a readable GGUF"),
        "{e}"
    );
}
