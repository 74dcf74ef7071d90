//! The fast paths on random checkpoints in the published layout: the key/
//! value cache over a padded batch, weights quantized at load (q8_0, q4k)
//! against f32, and GGUF files written, read back and refused when they do
//! not match.

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};
use rediff_api::cache::{CachedPass, KvCache};
use rediff_api::model::{ModelBackend, Prompt};
use rediff_llada_v::quant::{write_gguf, QuantType};
use rediff_llada_v::testing::{write_random_checkpoint, TinySpec};
use rediff_llada_v::{LladaVBackend, LladaVOptions, Quantization};
use rediff_nn::ops::max_abs_diff;

fn load(dir: &Path, quant: Quantization) -> rediff_api::Result<LladaVBackend> {
    LladaVBackend::load(
        dir,
        LladaVOptions {
            quant,
            ..Default::default()
        },
    )
}

/// Two prompts with images of different sizes (so the batch is padded).
fn prompts(model: &LladaVBackend) -> Vec<Prompt> {
    let ids = model.prompt_ids("describe the image .").unwrap();
    [(384, 384), (500, 260)]
        .iter()
        .map(|&(w, h)| Prompt {
            image: Some(Arc::new(rediff_formats::source_from_rgb(
                RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 128])),
            ))),
            ids: ids.clone(),
        })
        .collect()
}

fn response(l: usize) -> Tensor {
    let ids: Vec<u32> = (0..2 * l as u32)
        .map(|i| if i % 3 == 0 { 126_336 } else { 30 + i % 11 })
        .collect();
    Tensor::from_vec(ids, (2, l), &Device::Cpu).unwrap()
}

fn logits(model: &LladaVBackend) -> Tensor {
    let ctx = model.encode_prompts(&prompts(model)).unwrap();
    model.forward(&ctx, &response(8)).unwrap()
}

/// Largest |a - b| relative to the largest |b|.
fn relative_error(a: &Tensor, b: &Tensor) -> f32 {
    let scale: f32 = b
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    max_abs_diff(a, b).unwrap() / scale
}

/// Share of positions whose argmax agrees.
fn argmax_agreement(a: &Tensor, b: &Tensor) -> f64 {
    let x = a
        .argmax(2)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    let y = b
        .argmax(2)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    x.iter().zip(&y).filter(|(p, q)| p == q).count() as f64 / x.len() as f64
}

#[test]
fn window_passes_over_a_padded_batch_repeat_the_full_pass() {
    let dir = tempfile::tempdir().unwrap();
    write_random_checkpoint(dir.path(), &TinySpec::default(), 5).unwrap();
    let model = load(dir.path(), Quantization::None).unwrap();
    let ctx = model.encode_prompts(&prompts(&model)).unwrap();
    let r = response(16);
    let mut kv = KvCache::new();
    let full = model
        .forward_cached(&ctx, &r, &mut kv, CachedPass::Full)
        .unwrap();
    for w in [0..16, 8..16, 4..8] {
        let part = model
            .forward_cached(&ctx, &r, &mut kv, CachedPass::Window(w.clone()))
            .unwrap();
        let want = full.narrow(1, w.start, w.len()).unwrap();
        let d = max_abs_diff(&part, &want).unwrap();
        assert!(d < 1e-4, "{w:?} differs by {d}");
    }
    let err = LladaVBackend::load(dir.path(), LladaVOptions::default())
        .unwrap()
        .forward_cached(&ctx, &r, &mut KvCache::new(), CachedPass::Window(0..4))
        .unwrap_err();
    assert!(err.to_string().contains("before any full pass"), "{err}");
}

#[test]
fn q8_0_logits_stay_close_to_f32_and_a_gguf_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    write_random_checkpoint(dir.path(), &TinySpec::default(), 5).unwrap();
    let dense = logits(&load(dir.path(), Quantization::None).unwrap());
    let q8 = logits(&load(dir.path(), Quantization::Quantize(QuantType::Q8_0)).unwrap());
    let err = relative_error(&q8, &dense);
    assert!(err > 0.0 && err < 0.05, "q8_0 relative error {err}");
    assert!(argmax_agreement(&q8, &dense) >= 0.9);
    // The same weights through a GGUF file: the same logits.
    let gguf = dir.path().join("lm.q8_0.gguf");
    let bytes = write_gguf(dir.path(), QuantType::Q8_0, &gguf).unwrap();
    assert!(bytes > 0 && gguf.exists());
    let from_file = logits(&load(dir.path(), Quantization::Gguf(gguf)).unwrap());
    assert_eq!(max_abs_diff(&from_file, &q8).unwrap(), 0.0);
}

#[test]
fn a_models_load_options_reload_its_successors_like_it() {
    let dir = tempfile::tempdir().unwrap();
    write_random_checkpoint(dir.path(), &TinySpec::default(), 5).unwrap();
    let bf16 = LladaVBackend::load(
        dir.path(),
        LladaVOptions {
            dtype: candle_core::DType::BF16,
            ..Default::default()
        },
    )
    .unwrap()
    .load_options();
    assert_eq!((bf16.dtype, bf16.quant), (candle_core::DType::BF16, None));
    let q8 = load(dir.path(), Quantization::Quantize(QuantType::Q8_0))
        .unwrap()
        .load_options();
    assert_eq!(q8.quant, Some(rediff_api::device::WeightDtype::Q8_0));
    // A GGUF holds the old weights: successors are quantized at load to
    // the file's block type instead.
    let gguf = dir.path().join("lm.q8_0.gguf");
    write_gguf(dir.path(), QuantType::Q8_0, &gguf).unwrap();
    let from_file = load(dir.path(), Quantization::Gguf(gguf))
        .unwrap()
        .load_options();
    assert_eq!(
        (from_file.quant, from_file.gguf),
        (Some(rediff_api::device::WeightDtype::Q8_0), None)
    );
    assert!(matches!(from_file.device, Device::Cpu));
}

#[test]
fn q4k_needs_rows_of_256_and_says_to_use_q8_0() {
    let dir = tempfile::tempdir().unwrap();
    write_random_checkpoint(dir.path(), &TinySpec::default(), 5).unwrap();
    let err = load(dir.path(), Quantization::Quantize(QuantType::Q4k))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("q4k quantizes rows in blocks of 256") && err.contains("use q8_0"),
        "{err}"
    );
    assert!(err.contains(".weight`"), "names the tensor: {err}");
}

#[test]
fn q4k_runs_where_rows_are_multiples_of_256() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        hidden: 256,
        heads: 2,
        kv_heads: 2,
        intermediate: 512,
        layers: 1,
        shards: 1,
        ..TinySpec::default()
    };
    write_random_checkpoint(dir.path(), &spec, 5).unwrap();
    let dense = logits(&load(dir.path(), Quantization::None).unwrap());
    let q4 = logits(&load(dir.path(), Quantization::Quantize(QuantType::Q4k)).unwrap());
    let err = relative_error(&q4, &dense);
    assert!(err > 0.0 && err < 0.25, "q4k relative error {err}");
}

#[test]
fn a_gguf_of_another_checkpoint_or_a_corrupt_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_random_checkpoint(dir.path(), &TinySpec::default(), 5).unwrap();
    let other = tempfile::tempdir().unwrap();
    let three_layers = TinySpec {
        layers: 3,
        ..TinySpec::default()
    };
    write_random_checkpoint(other.path(), &three_layers, 5).unwrap();
    let gguf = other.path().join("other.gguf");
    write_gguf(other.path(), QuantType::Q8_0, &gguf).unwrap();
    let err = load(dir.path(), Quantization::Gguf(gguf.clone()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("other.gguf") && err.contains("model.layers.2."),
        "{err}"
    );
    // Wider layers: a shape mismatch, named with the file and the tensor.
    let wide = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        intermediate: 96,
        ..TinySpec::default()
    };
    write_random_checkpoint(wide.path(), &spec, 5).unwrap();
    let gguf = wide.path().join("wide.gguf");
    write_gguf(wide.path(), QuantType::Q8_0, &gguf).unwrap();
    let err = load(dir.path(), Quantization::Gguf(gguf))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("wide.gguf") && err.contains("has shape [96, 32]"),
        "{err}"
    );
    // Not a GGUF file at all.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"definitely not gguf").unwrap();
    let err = load(dir.path(), Quantization::Gguf(junk))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("junk.gguf") && err.contains("not a readable GGUF"),
        "{err}"
    );
}
