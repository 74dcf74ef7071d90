//! Tiny VLM: gradients reach every variable, fused and training ops agree,
//! and every layer and the whole model survive a save/load round trip.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::RgbImage;
use rediff_api::model::{ModelBackend, Prompt};
use rediff_api::tokens::TextTokenizer;
use rediff_nn::checkpoint::{load_varmap, save_varmap};
use rediff_nn::loss::weighted_loss;
use rediff_nn::seeded_init::seeded_var_builder;
use rediff_tiny_vlm::layers::{Attention, Block, Mlp, PatchEmbed, RmsNorm};
use rediff_tiny_vlm::{TinyVlmBackend, TinyVlmConfig, TinyVlmOptions};

fn tokenizer() -> TextTokenizer {
    rediff_shapes::vocab::build_tokenizer("describe the image .").unwrap()
}

fn small_config() -> TinyVlmConfig {
    TinyVlmConfig::new(
        TinyVlmOptions {
            hidden_size: 16,
            num_layers: 2,
            num_heads: 2,
            intermediate_size: 24,
            image_size: 24,
            patch_size: 8,
            max_prompt_len: 6,
            max_response_len: 8,
            rms_norm_eps: 1e-5,
            ..Default::default()
        },
        &tokenizer(),
    )
    .unwrap()
}

fn prompts(model: &TinyVlmBackend, n: usize) -> Vec<Prompt> {
    (0..n)
        .map(|i| Prompt {
            image: Some(Arc::new(rediff_formats::source_from_rgb(
                RgbImage::from_fn(24, 24, |x, y| {
                    image::Rgb([(x * 10 + i as u32) as u8, (y * 10) as u8, 99])
                }),
            ))),
            ids: model.prompt_ids("describe the image .").unwrap(),
        })
        .collect()
}

fn response(model: &TinyVlmBackend, n: usize) -> Tensor {
    let ids = model
        .tokenizer()
        .encode("one object : a big red circle")
        .unwrap();
    let mut row = ids.clone();
    row.resize(8, model.special_tokens().mask);
    let flat: Vec<u32> = (0..n).flat_map(|_| row.clone()).collect();
    Tensor::from_vec(flat, (n, 8), &Device::Cpu).unwrap()
}

#[test]
fn every_trainable_variable_receives_a_gradient() {
    let model = TinyVlmBackend::new(small_config(), tokenizer(), 1, &Device::Cpu).unwrap();
    model.set_training(true);
    let ctx = model.encode_prompts(&prompts(&model, 3)).unwrap();
    let input = response(&model, 3);
    let logits = model.forward(&ctx, &input).unwrap();
    assert_eq!(logits.dims(), &[3, 8, model.vocab_size()]);
    let labels = Tensor::ones((3, 8), DType::U32, &Device::Cpu).unwrap();
    let weights = Tensor::ones((3, 8), DType::F32, &Device::Cpu).unwrap();
    let loss = weighted_loss(&logits, &labels, &weights).unwrap();
    let grads = loss.backward().unwrap();
    let data = model.varmap().unwrap().data().lock().unwrap();
    assert_eq!(
        data.len(),
        8 * 2 + 7,
        "8 per block + embeddings, patch, positions, norm, head"
    );
    for (name, var) in data.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "zero gradient for {name}");
    }
}

#[test]
fn image_position_std_sets_the_initial_scale_of_the_image_positions() {
    let std_of = |std: f64| {
        let mut cfg = small_config();
        cfg.arch.image_position_std = std;
        let model = TinyVlmBackend::new(cfg, tokenizer(), 4, &Device::Cpu).unwrap();
        let data = model.varmap().unwrap().data().lock().unwrap();
        let v: Vec<f32> = data["model.pos_image"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
    };
    assert_eq!(std_of(0.0), 0.0);
    // 9 patches x 16 values: the sample RMS is within ~15% of the scale.
    let rms = std_of(2.0);
    assert!((rms - 2.0).abs() < 0.3, "{rms}");
    let mut bad = small_config();
    bad.arch.image_position_std = f64::NAN;
    assert!(bad.validate().unwrap_err().contains("image_position_std"));
}

#[test]
fn training_and_inference_ops_agree() {
    let model = TinyVlmBackend::new(small_config(), tokenizer(), 2, &Device::Cpu).unwrap();
    let ctx = model.encode_prompts(&prompts(&model, 2)).unwrap();
    let input = response(&model, 2);
    model.set_training(true);
    let a = model.forward(&ctx, &input).unwrap();
    model.set_training(false);
    let b = model.forward(&ctx, &input).unwrap();
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "{diff}");
}

/// Builds a layer, saves its variables, loads them into a fresh variable map
/// with another seed and checks the reloaded layer computes the same output.
fn layer_round_trip<L>(build: impl Fn(VarBuilder) -> L, run: impl Fn(&L) -> Tensor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.safetensors");
    let vm = VarMap::new();
    let layer = build(seeded_var_builder(&vm, 1, DType::F32, &Device::Cpu));
    let expected = run(&layer).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    save_varmap(&vm, &path).unwrap();
    let vm2 = VarMap::new();
    let fresh = build(seeded_var_builder(&vm2, 2, DType::F32, &Device::Cpu));
    let before = run(&fresh).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_ne!(before, expected, "different seeds give different layers");
    load_varmap(&vm2, &path).unwrap();
    let got = run(&fresh).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got, expected);
}

fn x(shape: (usize, usize, usize)) -> Tensor {
    let n = shape.0 * shape.1 * shape.2;
    let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn each_layer_survives_a_save_load_round_trip() {
    let cfg = small_config();
    let d = cfg.arch.hidden_size;
    layer_round_trip(
        |vb| Attention::new(&cfg, vb).unwrap(),
        |l| l.forward(&x((2, 3, d)), None).unwrap(),
    );
    layer_round_trip(
        |vb| Mlp::new(&cfg, vb).unwrap(),
        |l| l.forward(&x((2, 3, d)), None).unwrap(),
    );
    layer_round_trip(
        |vb| Block::new(&cfg, vb).unwrap(),
        |l| l.forward(&x((2, 3, d)), false, None).unwrap(),
    );
    layer_round_trip(
        |vb| PatchEmbed::new(&cfg, vb).unwrap(),
        |l| l.forward(&x((2, 9, cfg.patch_dim()))).unwrap(),
    );
}

#[test]
fn frozen_weights_give_the_same_block_output() {
    let cfg = small_config();
    let d = cfg.arch.hidden_size;
    let vm = VarMap::new();
    let block = Block::new(&cfg, seeded_var_builder(&vm, 3, DType::F32, &Device::Cpu)).unwrap();
    let input = x((2, 5, d));
    let plain = block.forward(&input, false, None).unwrap();
    let frozen = block.freeze().unwrap();
    let fast = block.forward(&input, false, Some(&frozen)).unwrap();
    let diff = rediff_nn::ops::max_abs_diff(&plain, &fast).unwrap();
    assert!(diff < 1e-5, "frozen path differs by {diff}");
}

#[test]
fn rms_norm_survives_a_save_load_round_trip() {
    // The gain starts at 1 for every seed, so set it to something distinctive first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("norm.safetensors");
    let vm = VarMap::new();
    let norm = RmsNorm::new(
        4,
        1e-5,
        seeded_var_builder(&vm, 1, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let gain = Tensor::new(&[0.5f32, 1.5, -2.0, 3.0], &Device::Cpu).unwrap();
    vm.data().lock().unwrap()["weight"].set(&gain).unwrap();
    let input = x((1, 2, 4));
    let expected = norm
        .forward(&input, true)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    save_varmap(&vm, &path).unwrap();
    let vm2 = VarMap::new();
    let fresh = RmsNorm::new(
        4,
        1e-5,
        seeded_var_builder(&vm2, 2, DType::F32, &Device::Cpu),
    )
    .unwrap();
    load_varmap(&vm2, &path).unwrap();
    let got = fresh
        .forward(&input, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (a, b) in got.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-5);
    }
    // Hand check of one row: x / rms(x) * gain.
    let row: Vec<f32> = input.flatten_all().unwrap().to_vec1::<f32>().unwrap()[..4].to_vec();
    let rms = (row.iter().map(|v| v * v).sum::<f32>() / 4.0 + 1e-5).sqrt();
    let g = [0.5f32, 1.5, -2.0, 3.0];
    for i in 0..4 {
        assert!((expected[i] - row[i] / rms * g[i]).abs() < 1e-5);
    }
}

#[test]
fn checkpoint_round_trip_and_corruption_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = TinyVlmBackend::new(small_config(), tokenizer(), 3, &Device::Cpu).unwrap();
    model.save(dir.path()).unwrap();
    let back = TinyVlmBackend::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
    assert_eq!(back.config(), model.config());
    let ctx_a = model.encode_prompts(&prompts(&model, 2)).unwrap();
    let ctx_b = back.encode_prompts(&prompts(&back, 2)).unwrap();
    let a = model.forward(&ctx_a, &response(&model, 2)).unwrap();
    let b = back.forward(&ctx_b, &response(&back, 2)).unwrap();
    assert_eq!(
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    // Truncated weights: the error names the file.
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 100]).unwrap();
    let err = TinyVlmBackend::load(dir.path(), &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    // Missing config.
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = TinyVlmBackend::load(dir.path(), &Device::Cpu, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn inference_snapshots_follow_weight_updates() {
    let model = TinyVlmBackend::new(small_config(), tokenizer(), 5, &Device::Cpu).unwrap();
    let run = |m: &TinyVlmBackend| {
        let ctx = m.encode_prompts(&prompts(m, 2)).unwrap();
        m.forward(&ctx, &response(m, 2))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let before = run(&model);
    assert_eq!(run(&model), before, "the cached snapshot is reused");
    // Change a weight the way loading or an optimiser would: through the VarMap.
    {
        let vm = model.varmap().unwrap();
        let data = vm.data().lock().unwrap();
        let w = &data["lm_head.weight"];
        w.set(&(w.as_tensor() * 2.0).unwrap()).unwrap();
    }
    let after = run(&model);
    assert_ne!(after, before, "the snapshot was rebuilt");
    // The training path (no snapshot) agrees with the rebuilt snapshot.
    model.set_training(true);
    let plain = run(&model);
    model.set_training(false);
    for (a, b) in after.iter().zip(&plain) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn window_passes_repeat_the_full_pass_and_training_mode_refuses_the_cache() {
    use rediff_api::cache::{CachedPass, KvCache};
    let model = TinyVlmBackend::new(small_config(), tokenizer(), 3, &Device::Cpu).unwrap();
    let ctx = model.encode_prompts(&prompts(&model, 2)).unwrap();
    let input = response(&model, 2);
    let plain = model.forward(&ctx, &input).unwrap();
    let mut kv = KvCache::new();
    let full = model
        .forward_cached(&ctx, &input, &mut kv, CachedPass::Full)
        .unwrap();
    assert!(rediff_nn::ops::max_abs_diff(&full, &plain).unwrap() < 1e-6);
    for w in [0..8, 2..6, 5..8] {
        let part = model
            .forward_cached(&ctx, &input, &mut kv, CachedPass::Window(w.clone()))
            .unwrap();
        let want = full.narrow(1, w.start, w.len()).unwrap();
        let d = rediff_nn::ops::max_abs_diff(&part, &want).unwrap();
        assert!(d < 1e-5, "{w:?} differs by {d}");
    }
    assert!(model
        .forward_cached(&ctx, &input, &mut kv, CachedPass::Window(6..9))
        .is_err());
    model.set_training(true);
    let err = model
        .forward_cached(&ctx, &input, &mut kv, CachedPass::Full)
        .unwrap_err();
    assert!(err.to_string().contains("not in training mode"), "{err}");
}

#[test]
fn quantized_dtypes_and_gguf_files_are_refused_naming_the_checkpoint() {
    use rediff_api::device::WeightDtype;
    use rediff_api::registry::{LoadOptions, Registry};
    let dir = tempfile::tempdir().unwrap();
    let model = TinyVlmBackend::new(small_config(), tokenizer(), 3, &Device::Cpu).unwrap();
    model.save(dir.path()).unwrap();
    let mut registry = Registry::new();
    registry
        .add_plugin(&rediff_tiny_vlm::TinyVlmPlugin)
        .unwrap();
    let q8 = LoadOptions::with_weights(Device::Cpu, WeightDtype::Q8_0);
    let err = registry
        .load_model(dir.path(), &q8)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tiny-vlm runs in f32 only, not q8_0"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    let mut gguf = LoadOptions::default();
    gguf.gguf = Some(dir.path().join("lm.gguf"));
    let err = registry
        .load_model(dir.path(), &gguf)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("lm.gguf") && err.contains("cannot load GGUF"),
        "{err}"
    );
    assert!(registry
        .load_model(dir.path(), &LoadOptions::default())
        .is_ok());
}
